"""The out-of-memory cures: which context and GPU memory utilization the servers run with.

Pure functions on typed data. `detect` turns the pods' container states into failures;
`decide` turns the request, the memory plan, the history kept in status and those failures
into a `Decision`. Each failure gets the cure for its cause (`RULES`), because in vLLM 0.33
`--max-model-len` changes nothing but the check that one full-length request fits the KV
cache (`check_enough_kv_cache_memory`); the pool itself is `requested_memory -
non_kv_cache_memory - cudagraph_memory` (`gpu_worker.determine_available_memory`):

| failure | cure |
| --- | --- |
| KVCacheInsufficient | a shorter context: vLLM's estimate, or one derived from its figures |
| KVCacheInsufficient whose estimate fits the context it ran at | none: reported as it came |
| CudaOOM loading the weights | none: Stalled, InsufficientGPUMemory |
| CudaOOM profiling, allocating, capturing graphs, warming up, serving | more headroom: a lower utilization |
| InsufficientFreeMemory | the utilization that the free memory allows |
| the kubelet's OOMKilled | none: Stalled, HostOutOfMemory (host memory, not GPU) |

A lower utilization concerns one GPU, not the model: it goes to the replica that failed alone
(`Decision.replicas`, by pod name), which its launcher reads from the replicas' ConfigMap at its
next start (children/replicas.py), and the pod template keeps the requested utilization, so the
replicas that serve are not restarted for it. Each failure is judged against its own replica's
utilization. A shorter context stays uniform: requests go to any replica, so every replica must
hold one of the full context; it changes the template, which rolls in the rollout's order. In
pipeline groups (`groups`: a LeaderWorkerSet, one argv for all its pods, rolled by its own
controller) a lower utilization goes to the template too.

Everything it needs to stay idempotent lives in `status.context.history`: a failure already
handled there (pod uid and restart count), or reported about another context or utilization
than the one in force, never cures again, so repeated events and operator restarts converge.
The status, the conditions and the events are made from the Decision elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from qwen_operator import api
from qwen_operator.api.vocabulary import (
    RESET_ANNOTATION,
    KubeletReason,
    LauncherReason,
    Reason,
    Remedy,
)
from qwen_operator.memory.planner import CONTEXT_STEP
from qwen_operator.process import clock
from qwen_operator.reconcile import snapshot
from qwen_operator.reconcile.problems import Problem
from qwen_runtime import record
from qwen_runtime.record import CudaPhase

HISTORY_LIMIT = 20
"""Cures kept in status.context.history (the oldest go first)."""
DETAIL_LIMIT = 512
EPSILON = 1e-6


class Cure(StrEnum):
    """What a cause calls for."""

    SHORTER_CONTEXT = "ShorterContext"
    MORE_HEADROOM = "MoreHeadroom"
    FIT_FREE_MEMORY = "FitFreeMemory"
    NONE = "None"
    """A person must act: more or larger GPUs, a memory limit."""
    NOT_MEMORY = "NotMemory"
    """Not an out-of-memory: reported as the crash it is, the context and utilization stay."""


@dataclass(frozen=True)
class Prescription:
    """The cure for one cause, and how to say the cause."""

    cure: Cure
    words: str
    """The failure in words an admin understands."""
    stalled: Reason | None = None
    """The Stalled reason when there is no cure."""


_HEADROOM = "a peak outside the KV cache was underestimated"
RULES: dict[tuple[str, str | None], Prescription] = {
    (LauncherReason.KV_CACHE_INSUFFICIENT, None): Prescription(
        Cure.SHORTER_CONTEXT, "the KV cache cannot hold one request of the full context"
    ),
    (LauncherReason.CUDA_OOM, CudaPhase.WEIGHT_LOADING): Prescription(
        Cure.NONE, "CUDA out of memory while loading the weights", Reason.INSUFFICIENT_GPU_MEMORY
    ),
    (LauncherReason.CUDA_OOM, CudaPhase.PROFILING): Prescription(
        Cure.MORE_HEADROOM, "CUDA out of memory while profiling the activation peak"
    ),
    (LauncherReason.CUDA_OOM, CudaPhase.KV_CACHE_ALLOCATION): Prescription(
        Cure.MORE_HEADROOM, "CUDA out of memory while allocating the KV cache"
    ),
    (LauncherReason.CUDA_OOM, CudaPhase.CUDA_GRAPH_CAPTURE): Prescription(
        Cure.MORE_HEADROOM, "CUDA out of memory while capturing CUDA graphs"
    ),
    (LauncherReason.CUDA_OOM, CudaPhase.SAMPLER_WARM_UP): Prescription(
        Cure.MORE_HEADROOM, "CUDA out of memory while warming up the sampler"
    ),
    (LauncherReason.CUDA_OOM, CudaPhase.POOLER_WARM_UP): Prescription(
        Cure.MORE_HEADROOM, "CUDA out of memory while warming up the pooler"
    ),
    (LauncherReason.CUDA_OOM, CudaPhase.WARM_UP): Prescription(
        Cure.MORE_HEADROOM, "CUDA out of memory while warming up"
    ),
    (LauncherReason.CUDA_OOM, CudaPhase.SERVING): Prescription(
        Cure.MORE_HEADROOM, "CUDA out of memory while serving"
    ),
    (LauncherReason.CUDA_OOM, None): Prescription(Cure.MORE_HEADROOM, "CUDA out of memory at start-up"),
    (LauncherReason.INSUFFICIENT_FREE_MEMORY, None): Prescription(
        Cure.FIT_FREE_MEMORY, "another process holds GPU memory", Reason.GPU_MEMORY_IN_USE
    ),
    (KubeletReason.OOM_KILLED, None): Prescription(
        Cure.NONE, "the kernel killed the server for its container memory limit", Reason.HOST_OUT_OF_MEMORY
    ),
    (LauncherReason.ENGINE_START_TIMEOUT, None): Prescription(
        Cure.NOT_MEMORY, "the engine did not start in time"
    ),
    (LauncherReason.INVALID_ARGUMENTS, None): Prescription(Cure.NOT_MEMORY, "vLLM refused its arguments"),
    (LauncherReason.LAUNCHER_MISMATCH, None): Prescription(
        Cure.NOT_MEMORY, "the launcher's sources are not those the pod names: it refused to start vLLM"
    ),
    (LauncherReason.UNKNOWN, None): Prescription(Cure.NOT_MEMORY, "the server failed"),
}
"""Every cause the launcher (reason, CUDA phase) and the kubelet report, and its cure."""


MEMORY_FAILURES = frozenset(reason for (reason, _), p in RULES.items() if p.cure != Cure.NOT_MEMORY)
"""Failures the cures act on: those whose prescription is about memory (derived, not restated)."""
UTILIZATION_STEP = 0.03
"""How much the GPU memory utilization falls after a CUDA out of memory outside the KV cache:
about 4 GiB of an 141 GiB H200, 2.4 GiB of an 80 GiB H100, the size of the peaks vLLM's
profiling run misjudges (CUDA graphs, sampler warm-up), in one restart rather than many."""
UTILIZATION_MARGIN = 0.01
"""Kept below what another process leaves free (free / total), for that process's growth."""


def rule_for(reason: str, phase: str | None) -> Prescription | None:
    """The rule of a failure: by reason and phase for a CUDA OOM, by reason otherwise."""
    return RULES.get((reason, phase if reason == LauncherReason.CUDA_OOM else None))


@dataclass(frozen=True)
class Failure:
    """One ended run of a pod's server container."""

    pod: str
    uid: str
    restart_count: int
    """The pod's restart count once this run is its `lastState`: the run's identity."""
    reason: str
    context: int | None
    """The --max-model-len the run had (vLLM's report, else the pod's spec)."""
    utilization: float | None
    """The --gpu-memory-utilization the run had (the launcher's report, else the pod's spec)."""
    detail: str
    said: record.Record | None = None
    """The launcher's record: vLLM's figures."""
    memory_limit: str = ""
    """The container's memory limit (for the kubelet's OOMKilled)."""
    utilization_reported: bool = False
    """The launcher said the run's utilization (else it is the pod spec's, which a replica's own
    setting overrides: the kubelet's OOMKilled leaves no record)."""

    @property
    def memory(self) -> bool:
        """An out-of-memory: its cause has a prescription other than NOT_MEMORY (`RULES`)."""
        return self.reason in MEMORY_FAILURES

    @property
    def key(self) -> tuple[str, int]:
        return (self.uid, self.restart_count)

    @property
    def estimate(self) -> int | None:
        """vLLM's estimate of the longest context that fits, when it printed one."""
        return record.estimated_max_model_len(self.said)

    def _said(self) -> dict[str, object]:
        return dict(self.said) if self.said else {}

    def figure(self, key: str) -> float | None:
        value = self._said().get(key)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    @property
    def rule(self) -> Prescription | None:
        phase = self._said().get("phase")
        return rule_for(self.reason, phase if isinstance(phase, str) else None)


def _detail(ended: snapshot.Terminated) -> str:
    if ended.cause == KubeletReason.OOM_KILLED:
        text = "the kernel killed the container for exceeding its memory limit"
    else:
        text = str(ended.record.get("message") if ended.record else "") or ended.message
    said: dict[str, object] = dict(ended.record or {})
    figures = [
        f"{k}={said[k]}" for k in ("neededGiB", "availableGiB", "freeGiB", "totalGiB", "phase") if k in said
    ]
    text = " ".join(text.split())
    full = f"{text} ({', '.join(figures)})" if figures else text
    return full if len(full) <= DETAIL_LIMIT else full[: DETAIL_LIMIT - 3] + "..."


def _failure(pod: snapshot.Pod, ended: snapshot.Terminated, restart_count: int) -> Failure | None:
    if not ended.failed:
        return None
    reported = record.int_field(ended.record, "maxModelLen")
    said: dict[str, object] = dict(ended.record) if ended.record else {}
    utilization = said.get("gpuMemoryUtilization")
    told = isinstance(utilization, int | float) and not isinstance(utilization, bool)
    return Failure(
        pod=pod.name,
        uid=pod.uid,
        restart_count=restart_count,
        reason=ended.cause,
        context=reported or pod.server_context,
        utilization=float(utilization) if told else pod.server_utilization,  # type: ignore[arg-type]
        detail=_detail(ended),
        said=ended.record,
        memory_limit=pod.server_memory_limit,
        utilization_reported=told,
    )


def detect(pods: Sequence[snapshot.Pod], groups: bool = False) -> list[Failure]:
    """Failed runs of the server container that still matter: the pod is not serving since.

    A container that is ready again got past its failure, and a pod being deleted is on
    its way out; neither says anything about the memory now. Except in pipeline groups
    (`groups`): every pod of a group counts, leader and workers, and LeaderWorkerSet's
    RecreateGroupOnPodRestart deletes the whole group at the first restart of any of its
    containers, so a worker's out-of-memory is only ever seen on a pod being deleted; the
    cure then applies to the whole group (one argv for all its pods). Each (pod, restart)
    still counts once.
    """
    found: list[Failure] = []
    for pod in pods:
        server = pod.server
        if server is None or (pod.deleting and not groups) or server.ready:
            continue
        runs = ((server.terminated, server.restart_count + 1), (server.last_terminated, server.restart_count))
        for ended, restarts in runs:
            failure = _failure(pod, ended, restarts) if ended else None
            if failure is not None:
                found.append(failure)
    return found


def basis(res: api.QwenThinkingDeployment) -> str:
    """A digest of the spec fields that decide whether a context fits in the GPUs.

    Cures made under another basis no longer apply: changing the model, GPUs, runtime or the
    request starts again from the request (or the plan). Scaling, pausing, sampling or the
    cures' own settings (the floors) keep what was learnt, so a scale-up does not crash again
    and a lower floor lets a stalled cure go on. The reset annotation, which the operator only
    reads, is part of it.
    """
    spec = res.spec
    fit = {
        "reset": res.metadata.annotations.get(RESET_ANNOTATION, ""),
        "model": [spec.model.id, spec.model.revision],
        "parallelism": spec.parallelism.model_dump(mode="json"),
        "maxModelLen": spec.context.max_model_len,
        "runtime": spec.runtime.model_dump(mode="json", exclude={"min_gpu_memory_utilization"}),
        "gpu": spec.gpu.model_dump(mode="json"),
        "scheduling": spec.scheduling.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(fit, sort_keys=True).encode()).hexdigest()[:12]


def fit_basis(res: api.QwenThinkingDeployment) -> str:
    """A digest of what decides how much KV cache a start gets, the context aside: the model,
    the server image (vLLM's version), the GPUs and where they are, parallelism, the KV dtype and
    the extra vLLM arguments. vLLM's figures measured under another one are set aside
    (status.memory.observed); a change of the context or the utilization keeps them (they say
    what the memory holds, and scale with the utilization)."""
    spec = res.spec
    fit = {
        "model": [spec.model.id, spec.model.revision],
        "parallelism": spec.parallelism.model_dump(mode="json"),
        "image": spec.runtime.image,
        "kvCacheDtype": spec.runtime.kv_cache_dtype,
        "extraArgs": list(spec.runtime.extra_args),
        "gpu": spec.gpu.model_dump(mode="json"),
        "scheduling": spec.scheduling.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(fit, sort_keys=True).encode()).hexdigest()[:12]


def next_context(current: int, estimate: int | None, steps: Sequence[int], floor: int) -> int | None:
    """The context to try after the KV cache could not hold one request at `current`, or None
    at the floor.

    vLLM's estimate, when there is one, is the largest context that fits: take it, rounded
    down to a multiple of CONTEXT_STEP. Without one, the next lower step of the ladder.
    Never below the floor.
    """
    if current <= floor:
        return None
    if estimate is not None and 0 < estimate < current:
        wanted = estimate // CONTEXT_STEP * CONTEXT_STEP
    else:
        wanted = max((s for s in steps if s < current), default=floor)
    return max(wanted, floor)


def derived_estimate(failure: Failure, current: int) -> int | None:
    """vLLM's estimate, else one from its figures: the context times available over needed
    (the KV cache grows linearly with the context)."""
    if failure.estimate is not None:
        return failure.estimate
    needed, available = failure.figure("neededGiB"), failure.figure("availableGiB")
    if needed and available and needed > 0:
        return int(current * available / needed)
    return None


@dataclass(frozen=True)
class Decision:
    """The context and utilization in force, and what this pass learnt."""

    requested: int
    basis: str
    """Digest of the fit-deciding spec fields (see `basis`)."""
    start: int
    """The request, or the plan with preflight: where a new basis starts."""
    effective: int
    planned: int | None
    history: tuple[api.ContextStep, ...]
    requested_utilization: float
    utilization: float
    """The --gpu-memory-utilization in force in the pod template."""
    recommended: int = 0
    """spec.context.recommendedModelLen: below it, people are told."""
    reduced: api.ContextStep | None = None
    """The history entry this pass added (the StatefulSet changes with it)."""
    problem: Problem | None = None
    """A memory failure with no cure (left): at a floor, or a person must act."""
    explained: frozenset[str] = field(default_factory=frozenset)
    """Pods whose crash the cures account for (not a problem while they roll them)."""
    replicas: Mapping[str, float] = field(default_factory=dict)
    """Each replica's own --gpu-memory-utilization, by pod name, where a cure lowered it for that
    replica alone (the replicas' ConfigMap: children/replicas.py)."""

    def utilization_of(self, pod: str) -> float:
        """The utilization a replica starts with: its own, else the template's."""
        return self.replicas.get(pod, self.utilization)

    @property
    def in_force(self) -> tuple[api.ContextStep, ...]:
        """The cures made under the current basis."""
        return _in_force(self.history, self.basis)

    def steps(self, remedy: Remedy) -> tuple[api.ContextStep, ...]:
        return tuple(h for h in self.in_force if h.remedy == remedy)


def start_context(ctx: api.ContextSpec, planned: int | None) -> int:
    """The request, or with preflight the plan when less fits (tried at the floor at worst)."""
    if ctx.preflight and planned is not None and planned < ctx.max_model_len:
        return max(planned, ctx.min_model_len)
    return ctx.max_model_len


def _in_force(history: Sequence[api.ContextStep], digest: str) -> tuple[api.ContextStep, ...]:
    return tuple(h for h in history if h.basis == digest)


def _replicas_in_force(runtime: api.RuntimeSpec, in_force: Sequence[api.ContextStep]) -> dict[str, float]:
    """Each replica's own utilization: the last lower-utilization step of its pod (never above
    the request)."""
    out: dict[str, float] = {}
    for h in in_force:
        if h.remedy == Remedy.LOWER_UTILIZATION and h.utilization_to and h.replica:
            out[h.replica] = min(runtime.gpu_memory_utilization, h.utilization_to)
    return out


def _ran_at(failure: Failure, replicas: Mapping[str, float]) -> float | None:
    """The utilization a failed run had: the launcher's word; without it (the kubelet's OOMKilled)
    the replica's own setting, which its launcher read, else the pod spec's."""
    if failure.utilization_reported or failure.pod not in replicas:
        return failure.utilization
    return replicas[failure.pod]


def _utilization_in_force(runtime: api.RuntimeSpec, in_force: Sequence[api.ContextStep]) -> float:
    lowered = [  # the template's: steps of every replica
        h.utilization_to
        for h in in_force
        if h.remedy == Remedy.LOWER_UTILIZATION and h.utilization_to and not h.replica
    ]
    return min([runtime.gpu_memory_utilization, *lowered[-1:]])


def _same(a: float | None, b: float) -> bool:
    return a is None or abs(a - b) < EPSILON


Planned = Callable[[float], int | None]
"""The memory plan's context at a GPU memory utilization (None: no plan)."""


def choose(
    res: api.QwenThinkingDeployment,
    history: Sequence[api.ContextStep],
    planned_at: Planned,
    failures: Sequence[Failure],
    now: datetime,
    groups: bool = False,
) -> Decision:
    """The context and utilization given the history in status, the plan and the pods' failures.

    A lower utilization goes to the failed replica alone (`Decision.replicas`), or with `groups`
    (pipeline groups: one argv for all their pods) to the template."""
    ctx, digest = res.spec.context, basis(res)
    in_force = _in_force(history, digest)
    utilization = _utilization_in_force(res.spec.runtime, in_force)  # the template's
    own = {} if groups else _replicas_in_force(res.spec.runtime, in_force)
    planned = planned_at(utilization)
    start = start_context(ctx, planned)
    current = max(start if not in_force else min(start, in_force[-1].to), ctx.min_model_len)
    handled = {(h.pod_uid, h.restart_count) for h in history}
    memory = [f for f in failures if f.memory]
    fresh = [
        f
        for f in memory
        if f.context == current
        and _same(_ran_at(f, own), own.get(f.pod, utilization))
        and f.key not in handled
    ]
    base = Decision(
        ctx.max_model_len, digest, start, current, planned, tuple(history),
        res.spec.runtime.gpu_memory_utilization, utilization, ctx.recommended_model_len,
        explained=frozenset(f.pod for f in memory if f not in fresh), replicas=own,
    )  # fmt: skip
    if not fresh:
        return base
    if not ctx.fallback:
        off = _not_cured(fresh[0], "the out-of-memory cures are off (spec.context.fallback)", fresh[0].reason)
        return replace(base, problem=off)
    cures = [cure(f, base, res.spec, now) for f in fresh]
    stops = [c for c in cures if isinstance(c, Problem)]
    if stops:
        return replace(base, problem=stops[0])
    steps = [c for c in cures if isinstance(c, api.ContextStep)]
    step = max(steps, key=lambda s: (s.remedy == Remedy.SHORTER_CONTEXT, s.to, s.utilization_to or 0))
    lowered = step.utilization_to
    if lowered is not None and not groups:  # that replica's alone: the template and context stay
        step = step.model_copy(update={"replica": step.pod})
        kept = (*history, step)[-HISTORY_LIMIT:]
        return replace(
            base, history=kept, reduced=step, replicas={**own, step.pod: lowered},
            explained=frozenset(f.pod for f in memory),
        )  # fmt: skip
    if lowered is not None:  # less memory: the plan at the new utilization may fit less
        utilization, planned = lowered, planned_at(lowered)
        start = start_context(ctx, planned)
        step = step.model_copy(update={"to": max(min(current, start), ctx.min_model_len)})
    kept = (*history, step)[-HISTORY_LIMIT:]
    return replace(
        base, start=start, effective=step.to, utilization=utilization, planned=planned, history=kept,
        reduced=step, explained=frozenset(f.pod for f in memory),
    )  # fmt: skip


def cure(failure: Failure, now_in_force: Decision, spec: api.QwenThinkingDeploymentSpec, now: datetime) -> (
    api.ContextStep | Problem
):  # fmt: skip
    """The cure of one fresh memory failure: a step to record, or a problem a person must solve."""
    rule = failure.rule
    if rule is None or rule.cure in (Cure.NONE, Cure.NOT_MEMORY):
        return _stopped(failure, rule, now_in_force.utilization_of(failure.pod), spec)
    if rule.cure == Cure.SHORTER_CONTEXT:
        return _shorter_context(failure, rule, now_in_force, spec, now)
    return _lower_utilization(failure, rule, now_in_force, spec, now)


def _step(
    failure: Failure, rule: Prescription, d: Decision, now: datetime, **change: object
) -> api.ContextStep:
    fields: dict[str, object] = {
        "time": clock.rfc3339(now), "from_": d.effective, "to": d.effective, "reason": failure.reason,
        "cause": rule.words, "pod": failure.pod, "pod_uid": failure.uid,
        "restart_count": failure.restart_count, "basis": d.basis, "detail": failure.detail, **change,
    }  # fmt: skip
    return api.ContextStep.model_validate(fields)


def _shorter_context(
    failure: Failure, rule: Prescription, d: Decision, spec: api.QwenThinkingDeploymentSpec, now: datetime
) -> api.ContextStep | Problem:
    ctx = spec.context
    if failure.estimate is not None and failure.estimate >= d.effective:
        return _contradicted(failure, failure.estimate, d.effective)
    if failure.figure("availableGiB") == 0 and failure.figure("neededGiB") is None:
        message = (
            f"pod {failure.pod}: vLLM found no memory at all for the KV cache at utilization "
            f"{d.utilization_of(failure.pod):g} ({failure.detail}); no context can fit: use more or larger "
            "GPUs per replica, or a higher gpuMemoryUtilization"
        )
        return Problem(Reason.INSUFFICIENT_GPU_MEMORY, message)
    target = next_context(
        d.effective, derived_estimate(failure, d.effective), ctx.fallback_steps, ctx.min_model_len
    )
    if target is None:
        floor = f"the context is at spec.context.minModelLen ({ctx.min_model_len})"
        return _not_cured(failure, floor, Reason.CONTEXT_FALLBACK_EXHAUSTED)
    return _step(failure, rule, d, now, remedy=Remedy.SHORTER_CONTEXT, to=target)


def _lower_utilization(
    failure: Failure, rule: Prescription, d: Decision, spec: api.QwenThinkingDeploymentSpec, now: datetime
) -> api.ContextStep | Problem:
    floor = spec.runtime.min_gpu_memory_utilization
    own = d.utilization_of(failure.pod)  # the failed replica's
    if rule.cure == Cure.FIT_FREE_MEMORY:
        free, total = failure.figure("freeGiB"), failure.figure("totalGiB")
        if not free or not total:
            return _stopped(failure, rule, own, spec)
        wanted = math.floor((free / total - UTILIZATION_MARGIN) * 100 + EPSILON) / 100
        held = f"another process holds {total - free:.1f} of the {total:.1f} GiB of its GPU"
    else:
        wanted = round(own - UTILIZATION_STEP, 2)
        held = f"{rule.words} at utilization {own:g} ({failure.detail})"
    target = max(floor, min(wanted, round(own - 0.01, 2)))  # always lower, never below the floor
    if target >= own - EPSILON or (wanted < floor - EPSILON and rule.cure == Cure.FIT_FREE_MEMORY):
        stalled = Reason.GPU_MEMORY_IN_USE if rule.cure == Cure.FIT_FREE_MEMORY else Reason.HEADROOM_EXHAUSTED
        message = (
            f"pod {failure.pod}: {held}; spec.runtime.minGpuMemoryUtilization ({floor:g}) leaves no lower "
            "utilization to try: free that GPU, use more or larger GPUs per replica, or lower the floor"
        )
        return Problem(stalled, message)
    return _step(
        failure,
        rule,
        d,
        now,
        remedy=Remedy.LOWER_UTILIZATION,
        utilization_from=own,
        utilization_to=target,
    )


def _stopped(
    failure: Failure, rule: Prescription | None, utilization: float, spec: api.QwenThinkingDeploymentSpec
) -> Problem:
    """No cure: say the cause and what a person can do."""
    words = rule.words if rule is not None else failure.reason
    if rule is not None and rule.stalled == Reason.HOST_OUT_OF_MEMORY:
        limit = failure.memory_limit or "none set"
        advice = (
            f"limit {limit}; this is host memory, not GPU memory: raise spec.resources.limits.memory; the "
            "context and utilization stay"
        )
    elif rule is not None and rule.stalled == Reason.GPU_MEMORY_IN_USE:
        advice = f"{failure.detail}; free that GPU"
    else:
        advice = (
            f"at utilization {utilization:g}, {failure.detail}: the weights do not fit "
            f"{spec.parallelism.tensor} GPU(s); use more GPUs per replica (parallelism.tensor) or larger GPUs"
        )
    reason = rule.stalled if rule is not None and rule.stalled else failure.reason
    return Problem(reason, f"pod {failure.pod}: {words} ({advice})")


def _contradicted(failure: Failure, estimate: int, current: int) -> Problem:
    """A KV-cache report whose own estimate fits the context in force: the report contradicts
    itself, so it is no evidence that a shorter context cures anything. Cutting the context on
    it (the ladder's next step) would cost context for nothing; it is reported as the launcher's
    failure instead, with its message, and the context and history stay."""
    message = (
        f"pod {failure.pod}: {failure.reason} at {current} tokens, yet vLLM estimates that {estimate} "
        f"fit: a report that contradicts itself cures nothing, the context stays ({failure.detail})"
    )
    return Problem(failure.reason, message)


def _not_cured(failure: Failure, why: str, reason: str) -> Problem:
    message = (
        f"pod {failure.pod} ran out of memory at {failure.context} tokens ({failure.reason}) and {why}; "
        "use more or larger GPUs per replica, kvCacheDtype fp8, or a lower minModelLen"
    )
    return Problem(reason, message)
