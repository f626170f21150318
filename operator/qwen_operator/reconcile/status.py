"""The resource's status, built as the API's status models: pure functions, no I/O.

Every condition is made here. kstatus conventions (what Flux, Argo CD and `kubectl wait`
read): `Ready` says whether the servers match the spec, `Reconciling` is True while the
operator or Kubernetes is still moving towards it, `Stalled` is True when it cannot get there
without a person. `ContextReduced` says whether the servers run the requested context.
Reasons are the ones a person can act on, and `lastTransitionTime` moves only when `status`
flips. The status is serialised once (`to_wire`) and written as a merge patch of what differs.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError

from qwen_operator import api
from qwen_operator.api.vocabulary import (
    INFERENCE_POOL_CRD,
    LWS_KIND,
    QUEUE_METRIC,
    SCALED_OBJECT_CRD,
    ConditionType,
    LauncherReason,
    Phase,
    Reason,
    Remedy,
    selector_string,
)
from qwen_operator.children import render
from qwen_operator.memory import cures
from qwen_operator.memory.cures import Decision
from qwen_operator.process import clock
from qwen_operator.reconcile import snapshot, stages, starts
from qwen_operator.reconcile.problems import Problem, Wait, short
from qwen_operator.reconcile.rollout import Rollout as PodRollout

LWS_BUSY = frozenset({"UpdateInProgress"})
"""LeaderWorkerSet conditions that say a rollout of its templates is under way."""

Status = api.QwenThinkingDeploymentStatus
Condition = api.Condition
Truth = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class Rollout:
    """What the StatefulSet reports, reduced to what the status needs."""

    exists: bool
    replicas: int
    ready: int
    updated: int
    settled: bool
    """The StatefulSet controller has seen the latest StatefulSet spec and finished rolling."""


def rollout(sts: snapshot.Child | None, want: int, changing: bool = False) -> Rollout:
    """The StatefulSet's rollout; `changing`: this pass applies a new StatefulSet, so whatever
    the old one reports, the servers do not match the spec yet (kstatus must read InProgress)."""
    if sts is None:
        return Rollout(False, 0, 0, 0, False)
    if sts.kind == LWS_KIND:
        return group_rollout(sts, want, changing)
    st = sts.status
    observed = int(st.get("observedGeneration") or 0) >= sts.generation
    replicas = int(st.get("replicas") or 0)
    updated = int(st.get("updatedReplicas") or 0)
    revisions_equal = st.get("currentRevision") == st.get("updateRevision") or updated >= replicas
    spec_replicas = sts.manifest["spec"].get("replicas")
    settled = observed and revisions_equal and spec_replicas == want and replicas == want and updated >= want
    return Rollout(True, replicas, int(st.get("readyReplicas") or 0), updated, settled and not changing)


def group_rollout(lws: snapshot.Child, want: int, changing: bool) -> Rollout:
    """A LeaderWorkerSet's rollout, in groups (replicas): its status has no observedGeneration;
    it has settled when it counts the wanted groups, all updated, and its Progressing and
    UpdateInProgress condition is not True (Progressing only says a group is not ready yet)."""
    st = lws.status
    replicas, updated = int(st.get("replicas") or 0), int(st.get("updatedReplicas") or 0)
    busy = any(
        isinstance(c, Mapping) and c.get("type") in LWS_BUSY and c.get("status") == "True"
        for c in st.get("conditions") or []
    )
    spec_replicas = lws.manifest["spec"].get("replicas")
    settled = spec_replicas == want and replicas == want and updated >= want and not busy
    return Rollout(True, replicas, int(st.get("readyReplicas") or 0), updated, settled and not changing)


def previous(raw: Mapping[str, Any]) -> Status:
    """The status as last written, typed; foreign keys (Kopf's old records) and junk ignored."""
    known = {f.alias or name for name, f in Status.model_fields.items()}
    try:
        return Status.model_validate({k: v for k, v in raw.items() if k in known})
    except ValidationError:
        return Status()


def phase_of(want: int, ro: Rollout, problem: Problem | None) -> Phase:
    if ro.settled and ro.ready >= want and problem is None:
        return Phase.READY
    if problem is None:
        return Phase.PROGRESSING
    if ro.ready > 0:
        return Phase.DEGRADED
    return Phase.PENDING if problem.reason in WAITING_FOR_THE_CLUSTER else Phase.FAILED


WAITING_FOR_THE_CLUSTER = frozenset(
    {
        Reason.UNSCHEDULABLE,
        Reason.QUOTA_EXCEEDED,
        Reason.WRITE_FORBIDDEN,
        Reason.CREATE_CONTAINER_CONFIG_ERROR,
    }
)
"""Problems of capacity or of a missing object, not of the spec: the phase is Pending, not Failed
(a node, quota or Secret that appears lets the servers start without any change here)."""


def _progress(
    want: int, ro: Rollout, wait: Wait | None, summary: str, pods: PodRollout | None = None
) -> tuple[str, str]:
    if wait is not None:
        return wait.reason, wait.message
    if not ro.exists:
        return Reason.PROGRESSING, "creating the StatefulSet"
    if pods is not None:  # the operator's rollout: its state, its next step, then the replicas
        return Reason.PROGRESSING, f"{pods.message}; {summary}"
    if ro.updated < min(want, ro.replicas):
        return Reason.PROGRESSING, f"rolling out: {ro.updated} of {want} replicas updated; {summary}"
    return Reason.PROGRESSING, summary


def _cond(type_: ConditionType, truth: Truth, reason: str, message: str, generation: int | None) -> Condition:
    return Condition(type=type_, status=truth, reason=reason, message=message, observed_generation=generation)


def kstatus(
    phase: Phase, want: int, ro: Rollout, problem: Problem | None, wait: Wait | None, paused: bool,
    generation: int | None, summary: str = "", pods: PodRollout | None = None,
) -> list[Condition]:  # fmt: skip
    """Ready, Reconciling and Stalled for a valid spec (no timestamps yet); `summary` says what the
    replicas are doing (stages.summary), `pods` the operator's rollout, if one is under way."""
    progress = _progress(want, ro, wait, summary or f"{ro.ready} of {want} replicas ready", pods)
    if phase == Phase.READY:
        ready_msg = "scaled to zero" if want == 0 else f"{ro.ready} of {want} replicas ready"
        ready: tuple[Truth, str, str] = (
            "True",
            Reason.SCALED_TO_ZERO if want == 0 else Reason.READY,
            ready_msg,
        )
    elif problem is not None:
        ready = ("False", problem.reason, problem.message)
    else:
        ready = ("False", *progress)
    if paused:
        reconciling: tuple[Truth, str, str] = (
            "False", Reason.PAUSED, "spec.paused is true: the operator does not change the children",
        )  # fmt: skip
    elif phase == Phase.PROGRESSING:
        reconciling = ("True", *progress)
    else:  # a halted rollout is still named here (kubectl describe), though nothing moves
        reconciling = ("False", Reason(phase), pods.message if pods is not None and pods.halted else "")
    stalled: tuple[Truth, str, str] = ("True", problem.reason, problem.message) if problem else (
        "False", Reason(phase), "",
    )  # fmt: skip
    return [
        _cond(ConditionType.READY, *ready, generation),
        _cond(ConditionType.RECONCILING, *reconciling, generation),
        _cond(ConditionType.STALLED, *stalled, generation),
    ]


def context_reduced(decision: Decision, generation: int | None) -> Condition:
    """True while the servers run with less context than requested, and why."""
    if decision.effective >= decision.requested:
        truth: Truth = "False"
        reason, message = Reason.AS_REQUESTED, f"running the {decision.requested} tokens requested"
    elif (steps := decision.steps(Remedy.SHORTER_CONTEXT)) and decision.effective == steps[-1].to:
        # the last cure's context (a plan calibrated since on vLLM's figures may agree with it)
        last = steps[-1]
        truth, reason = "True", Reason.OUT_OF_MEMORY
        message = (
            f"running {decision.effective} of the {decision.requested} tokens requested after "
            f"{len(steps)} out-of-memory fallback(s); last: {last.reason} on pod {last.pod} "
            f"at {last.from_} tokens"
        )
    else:
        truth, reason = "True", Reason.MEMORY_PLAN
        message = (
            f"running {decision.effective} of the {decision.requested} tokens requested: "
            f"the memory plan fits {decision.planned}"
        )
    if decision.effective < decision.recommended:
        message += (
            f"; below the {decision.recommended} tokens the model card recommends for this thinking model "
            "(long reasoning may be cut short)"
        )
    return _cond(ConditionType.CONTEXT_REDUCED, truth, reason, message, generation)


def utilization_reduced(decision: Decision, generation: int | None) -> Condition:
    """True while the servers, or some replicas (their own utilization), run with a lower GPU
    memory utilization than requested, and why; the message names those replicas."""
    steps = decision.steps(Remedy.LOWER_UTILIZATION)
    own = {p: u for p, u in sorted(decision.replicas.items()) if u < decision.utilization - cures.EPSILON}
    if (decision.utilization >= decision.requested_utilization and not own) or not steps:
        message = f"running at the GPU memory utilization requested ({decision.requested_utilization:g})"
        return _cond(ConditionType.UTILIZATION_REDUCED, "False", Reason.AS_REQUESTED, message, generation)
    last = steps[-1]
    reason = (
        Reason.GPU_MEMORY_IN_USE
        if last.reason == LauncherReason.INSUFFICIENT_FREE_MEMORY
        else Reason.OUT_OF_MEMORY
    )
    running = f"{decision.utilization:g} of the {decision.requested_utilization:g} requested"
    message = f"{last.cause} at utilization {last.utilization_from:g} on pod {last.pod}; "
    if own:
        which = ", ".join(f"{pod} at {value:g}" for pod, value in own.items())
        message += f"its own utilization for {'replica' if len(own) == 1 else 'replicas'} {which}; "
        message += f"the other replicas at {running}"
    else:
        message += f"running at {running}"
    return _cond(ConditionType.UTILIZATION_REDUCED, "True", reason, message, generation)


def merge_conditions(
    previous: Sequence[Condition], new: Sequence[Condition], now: datetime
) -> list[Condition]:
    """Keep lastTransitionTime unless status flipped; keep conditions this pass does not make."""
    before = {c.type: c for c in previous}
    out = []
    for cond in new:
        old = before.get(cond.type)
        same = old is not None and old.status == cond.status and old.last_transition_time
        stamp = old.last_transition_time if same and old else clock.rfc3339(now)
        out.append(cond.model_copy(update={"last_transition_time": stamp}))
    mine = {c.type for c in new}
    return out + [c for c in previous if c.type not in mine]


def context_status(decision: Decision) -> api.ContextStatus:
    utilization = api.UtilizationStatus(
        requested=decision.requested_utilization, effective=decision.utilization
    )
    return api.ContextStatus(
        requested=decision.requested,
        effective=decision.effective,
        planned=decision.planned,
        gpu_memory_utilization=utilization,
        history=list(decision.history) or None,
    )


@dataclass(frozen=True)
class Inputs:
    """What the status of a valid resource is made from."""

    res: api.QwenThinkingDeployment
    sts: snapshot.Child | None
    decision: Decision
    problem: Problem | None
    wait: Wait | None
    pods: tuple[snapshot.Pod, ...] = ()
    sts_changing: bool = False
    """This pass applies a new StatefulSet."""
    weights: api.WeightsStatus | None = None
    """The shared download (model.cache.mode Shared)."""
    served: frozenset[str] = frozenset()
    """The optional CRDs the apiserver serves (which autoscaler, whether an InferencePool)."""
    starts: tuple[snapshot.StartSeen, ...] = ()
    """The servers' start reports (reconcile/starts.py)."""
    rollout: PodRollout | None = None
    """The operator's rollout of a new pod template, while one is under way."""


def build(f: Inputs, before: Status, now: datetime) -> Status:
    """The status of a valid resource."""
    res, generation = f.res, f.res.metadata.generation
    want = res.spec.replicas
    ro = rollout(f.sts, want, f.sts_changing)
    phase = phase_of(want, ro, f.problem)
    entries = [
        e.model_copy(update={"gpu_memory_utilization": f.decision.utilization_of(e.pod)})
        for e in stages.stages(f.pods, f.starts, before.replica_status or ())
    ]
    summary = stages.summary(entries, want)
    conds = kstatus(phase, want, ro, f.problem, f.wait, res.spec.paused, generation, summary, f.rollout)
    conds += [context_reduced(f.decision, generation), utilization_reduced(f.decision, generation)]
    integrations = {
        ConditionType.AUTOSCALING: autoscaling(res, f.served, generation),
        ConditionType.INFERENCE_POOL: inference_pool(res, f.served, generation),
    }
    conds += [c for c in integrations.values() if c is not None]
    gone = {t for t, c in integrations.items() if c is None}  # the spec no longer asks for it
    merged = [c for c in merge_conditions(before.conditions, conds, now) if c.type not in gone]
    return Status(
        observed_generation=generation,
        phase=phase,
        replicas=ro.replicas,
        ready_replicas=ro.ready,
        selector=selector_string(res.metadata.name, res.spec.parallelism.pipeline),
        endpoint=render.endpoint(res),
        context=context_status(f.decision),
        progress=stages.progress(entries, want, None if f.rollout is None else f.rollout.words),
        replica_status=entries or None,
        rollout=None if f.rollout is None else f.rollout.status(),
        weights=f.weights,
        memory=_memory(f, before),
        conditions=merged,
    )


def _memory(f: Inputs, before: Status) -> api.MemoryStatus | None:
    """vLLM's own figures from the last good start, while what decides the fit holds."""
    held = before.memory.observed if before.memory is not None else None
    observed = starts.observed_memory(f.starts, f.pods, cures.fit_basis(f.res), held)
    return None if observed is None else api.MemoryStatus(observed=observed)


def autoscaling(
    res: api.QwenThinkingDeployment, served: frozenset[str], generation: int | None
) -> Condition | None:
    """Which autoscaler follows the queue (KEDA when its CRD is served), or None without one."""
    spec, name = res.spec.autoscaling, res.metadata.name
    if spec is None:
        return None
    scope = (
        f"between {spec.min_replicas} and {spec.max_replicas} replicas, "
        f"{spec.target_waiting_per_replica} waiting requests ({QUEUE_METRIC}) per replica"
    )
    if SCALED_OBJECT_CRD in served:
        message = f"KEDA ScaledObject {name} scales {scope}, from the Prometheus at {spec.prometheus_address}"
        return _cond(ConditionType.AUTOSCALING, "True", Reason.SCALED_OBJECT, message, generation)
    message = (
        f"HorizontalPodAutoscaler {name} scales {scope}, from the custom metrics API "
        "(prometheus-adapter); install KEDA to scale from Prometheus directly"
    )
    return _cond(ConditionType.AUTOSCALING, "True", Reason.HORIZONTAL_POD_AUTOSCALER, message, generation)


def inference_pool(
    res: api.QwenThinkingDeployment, served: frozenset[str], generation: int | None
) -> Condition | None:
    """Whether the InferencePool exists (its CRD served), or None when the spec asks for none."""
    spec, name = res.spec.inference_pool, res.metadata.name
    if spec is None:
        return None
    ref = spec.endpoint_picker_ref
    if INFERENCE_POOL_CRD in served:
        message = (
            f"InferencePool {name} selects the servers on port {render.CONTAINER_PORT} for the endpoint "
            f"picker {ref.kind} {ref.name}"
        )
        return _cond(ConditionType.INFERENCE_POOL, "True", Reason.INFERENCE_POOL_APPLIED, message, generation)
    message = (
        "spec.inferencePool is set, but the apiserver does not serve inference.networking.k8s.io/v1 "
        "InferencePool: install the Gateway API Inference Extension's CRDs (v1.0 or later); the pool "
        "is created once they are served"
    )
    return _cond(ConditionType.INFERENCE_POOL, "False", Reason.INFERENCE_POOL_NOT_SERVED, message, generation)


def invalid(
    resource: snapshot.Resource,
    sts: snapshot.Child | None,
    field: str,
    message: str,
    before: Status,
    now: datetime,
) -> Status:
    """A resource the operator cannot render: Failed, Stalled=True InvalidSpec; the rest kept."""
    text = short(f"{field}: {message}")
    ro = rollout(sts, -1)
    generation = resource.generation
    conds = [
        _cond(ConditionType.READY, "False", Reason.INVALID_SPEC, text, generation),
        _cond(ConditionType.RECONCILING, "False", Reason.INVALID_SPEC, "", generation),
        _cond(ConditionType.STALLED, "True", Reason.INVALID_SPEC, text, generation),
    ]
    return Status(
        observed_generation=generation,
        phase=Phase.FAILED,
        replicas=ro.replicas,
        ready_replicas=ro.ready,
        selector=selector_string(resource.name, 2 if sts is not None and sts.kind == LWS_KIND else 1),
        endpoint=before.endpoint,
        context=before.context,
        weights=before.weights,
        conditions=merge_conditions(before.conditions, conds, now),
    )


def with_error(before: Status, generation: int | None, error: str, now: datetime) -> Status:
    """The last status with Reconciling=True reason ReconcileError: the operator keeps retrying.

    Stalled goes False with the same reason: while the apiserver fails, whether a person is
    needed is not known, and kstatus readers must never see Reconciling and Stalled both True."""
    return reconciling(before, generation, Reason.RECONCILE_ERROR, f"retrying: {error}", now)


def reconciling(
    before: Status, generation: int | None, reason: Reason, message: str, now: datetime
) -> Status:
    """The last status with Reconciling=True for `reason` (and Stalled=False if it was True)."""
    conds = [_cond(ConditionType.RECONCILING, "True", reason, short(message), generation)]
    stalled = condition(before, ConditionType.STALLED)
    if stalled is not None and stalled.status == "True":
        conds.append(_cond(ConditionType.STALLED, "False", reason, "", generation))
    return before.model_copy(update={"conditions": merge_conditions(before.conditions, conds, now)})


def only_progress(before: Status, after: Status) -> bool:
    """Whether `after` differs from `before` only in how far things got (messages, stages,
    replica counts, the progress column, the step a start is at: `Progressing` or
    `Scheduling`), not in what a reader acts on: the generation, the phase, a condition's
    status, why it is stalled or reduced, the context, the selector, the endpoint."""

    def gist(s: Status) -> tuple[Any, ...]:
        conds = sorted(
            (
                c.type,
                c.status,
                c.reason if c.type not in (ConditionType.READY, ConditionType.RECONCILING) else "",
            )
            for c in s.conditions
        )
        return (s.observed_generation, s.phase, s.selector, s.endpoint, s.context, conds)

    return gist(before) == gist(after)


def to_wire(status: Status) -> dict[str, Any]:
    """The status as the apiserver stores it (camelCase, no empty optionals)."""
    return status.model_dump(by_alias=True, mode="json", exclude_none=True)


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any] | None:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`, or None when equal.

    Keys in `old` that `new` lacks are removed (null), Kopf's old `status.kopf` included.
    """
    patch: dict[str, Any] = {k: None for k in old.keys() - new.keys()}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            sub = merge_patch(before, value)
            if sub is not None:
                patch[key] = sub
        elif before != value or type(before) is not type(value):
            patch[key] = value
    return patch or None


def apply_merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """`target` with a JSON merge patch applied, as the apiserver does: `merge_patch`'s inverse."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = apply_merge_patch(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def condition(status: Status, type_: ConditionType) -> Condition | None:
    return next((c for c in status.conditions if c.type == type_), None)
