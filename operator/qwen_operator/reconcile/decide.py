"""Step two of a reconciliation: what should be, from what is. Pure: no client, no clock.

`decide(observed, now)` returns a `Desired`: the children to apply (only those that differ),
the status as a merge patch of what changed, the events, and when to look again. It reads
the facts in `Observed` and nothing else, so it is tested as a table.

Which problem the status reports is settled here once, by a chain of small policies in
order of precedence (`BLOCKERS`, then the fallback's, then the pods'); the first that
finds one wins. A blocker also means no child is applied.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from qwen_operator import api
from qwen_operator.api.vocabulary import (
    FIELD_MANAGER,
    INSTANCE_LABEL,
    KIND,
    LOADING_READ_SECONDS,
    LWS_CRD,
    LWS_KIND,
    MANAGED_LABELS,
    ConditionType,
    Phase,
    Reason,
    Result,
    Stage,
)
from qwen_operator.children import compile_cache, placement, registry, render, replicas, weights
from qwen_operator.children.registry import Propagation
from qwen_operator.memory import calibration, cures, planner
from qwen_operator.process import clock
from qwen_operator.reconcile import diff, events, problems, rollout, snapshot, status
from qwen_operator.reconcile.events import Event
from qwen_operator.reconcile.observe import Key, Observed
from qwen_operator.reconcile.plan import Apply, Delete, DeletePod, Operation, PatchStatus, order
from qwen_operator.reconcile.problems import Problem, Wait
from qwen_operator.reconcile.refusal import Kind as RefusalKind

STATUS_INTERVAL = 5.0
"""The least seconds between two status writes that only report progress (messages, stages,
counts); more while many resources start (`PROGRESS_WRITES_PER_SECOND`). A start that races
through its stages in seconds (a small model, a simulated node) writes its status two or
three times, not six. A change of generation, phase, condition or context is written at once."""

PROGRESS_WRITES_PER_SECOND = 2.0
"""The operator-wide pace of progress-only status writes. With many resources starting at once
(a hundred created together), each one's progress is written every `starting / 2` s rather
than every 5 s (50 s for 100), so the apiserver meets about 2 such writes a second however
many start, and a mass start costs under one progress write per resource. On GPUs a stage
(the download, the load) lasts minutes, so every stage is still seen; a write that matters
(phase, condition, context) is never held."""


ROLLOUT_RECHECK_SECONDS = 2.0
"""A pass that applies a changed workload whose live spec already holds everything rendered
looks again this long after (`Apply.may_not_roll`). The change may be metadata only (an orphan
adopted by a recreated resource, whose uid is in the hash; a label of a new operator version):
then there is no new generation, the workload controller writes nothing, and the watch brings
only our own write's echo. Without the second look the resource stayed Progressing until
something else moved. It reads the write-through cache and writes only if the status changed;
the apply it follows has matched the hash, so it does not repeat."""


def status_interval(starting: int) -> float:
    """Seconds between two progress-only status writes of one resource, while `starting`
    resources are Progressing."""
    return max(STATUS_INTERVAL, starting / PROGRESS_WRITES_PER_SECOND)


@dataclass(frozen=True)
class Desired:
    """What one reconciliation should write, and what it tells the metrics and the queue."""

    key: Key
    resource: snapshot.Resource
    result: Result
    applies: tuple[Apply, ...] = ()
    deletes: tuple[Delete, ...] = ()
    """Children to delete: ours no longer rendered (registry.PRUNED_KINDS), a workload of the other
    kind, or one the apiserver will not change in place (replaced)."""
    pod_deletes: tuple[DeletePod, ...] = ()
    """Server pods the rollout replaces this pass (reconcile/rollout.py)."""
    status_patch: dict[str, Any] | None = None
    status_first: bool = False
    """Write the status before the children: a resource with no status yet reads as done to
    kstatus (Flux, `kubectl wait`), so the first pass says Reconciling before anything slow.
    And a pass that cures a memory failure records the cure (status.context.history) before
    the StatefulSet changes: the change replaces the failed pod, the failure's only evidence,
    so an operator killed between the two writes would otherwise forget the cure and undo it."""
    events: tuple[Event, ...] = ()
    """Posted after the status patch."""
    phase: Phase | None = None
    after: status.Status | None = None
    """The whole status after this pass (the per-resource gauges read it)."""
    want: int = 0
    """spec.replicas (the per-resource gauges)."""
    reduced: bool = False
    """The servers run below the requested context (the gauge)."""
    reduction: api.ContextStep | None = None
    """The reduction this pass made (the counter)."""
    recheck_after: float | None = None
    """Seconds after which to look again though nothing changed (a wait that may become a problem)."""
    ops: tuple[Operation, ...] = ()
    """The whole write plan, in order (reconcile/plan.py): what `act` carries out."""


@dataclass(frozen=True)
class Situation:
    """What the policies read: the observation and what the decision derived from it."""

    observed: Observed
    res: api.QwenThinkingDeployment
    plan: planner.Plan | None
    decision: cures.Decision
    children: tuple[dict[str, Any], ...]


NAME_CONFLICT_RECHECK_SECONDS = 300.0
"""A child's name held by an object that is not ours: look it up again this long after. Its
owner may delete or rename it, and no watch of ours sees an object without our labels; one
read per child every five minutes, only while the conflict lasts."""


def owned(child: snapshot.Child, res: api.QwenThinkingDeployment) -> bool:
    """The child belongs to this resource; or to an earlier one of the same name (deleted and
    created again before garbage collection came); or it was ours and got orphaned
    (`kubectl delete --cascade=orphan`): no controller, our labels for this resource, and our
    field manager applied it. Applying takes such a child over, owner reference and all;
    anything else (a tenant's object that only shares the name) is left alone."""
    ref = child.controller
    if ref is not None:
        return ref.uid == res.metadata.uid or (ref.kind == KIND and ref.name == res.metadata.name)
    labels = child.manifest["metadata"].get("labels") or {}
    ours = labels.get(INSTANCE_LABEL) == res.metadata.name and all(
        labels.get(key) == value for key, value in MANAGED_LABELS.items()
    )
    return ours and FIELD_MANAGER in child.managers


def too_small(p: Situation) -> Problem | None:
    """With preflight, GPUs that cannot hold the weights (and a KV cache) get no crash loop."""
    if p.plan is None or p.plan.planned > 0 or not p.res.spec.context.preflight:
        return None
    return Problem(Reason.INSUFFICIENT_GPU_MEMORY, p.plan.explain())


ETCD_REQUEST_BYTES = 1_572_864
"""etcd's default limit on a request (--max-request-bytes): no object larger is ever stored."""
CHILD_BYTES_LIMIT = 1_048_576
"""The most JSON a rendered child may take: a third of etcd's limit stays for what the apiserver
adds to the stored object (managedFields, status). tests/unit/test_bounds.py holds the largest
child of a resource at every bound of the CRD below it."""


def too_large(p: Situation) -> Problem | None:
    """A child no apiserver would store: say so with its size, rather than fail every apply."""
    for manifest in p.children:
        size = len(json.dumps(manifest, separators=(",", ":")))
        if size > CHILD_BYTES_LIMIT:
            message = (
                f"{manifest['kind']} {manifest['metadata']['name']} would be {size:,} bytes of JSON, over "
                f"the {CHILD_BYTES_LIMIT:,} a child may take (etcd stores at most {ETCD_REQUEST_BYTES:,} "
                "a request): shorten runtime.env, scheduling.affinity or scheduling.tolerations, or "
                "install the operator's CRD, whose bounds refuse such a resource"
            )
            return Problem(Reason.CHILD_TOO_LARGE, message)
    return None


def name_conflict(p: Situation) -> Problem | None:
    """A child's name is held by an object this resource does not own (in the cache, or found by
    the plan's lookup): nothing is written, to it or to any other child."""
    held = [
        f"{live.kind} {live.name}" for m in p.children
        if (live := p.observed.child(m["kind"], m["metadata"]["name"])) is not None and not owned(live, p.res)
    ]  # fmt: skip
    if not held:
        return None
    names = ", ".join(held)
    message = (
        f"{names} {'exists' if len(held) == 1 else 'exist'} in namespace {p.res.metadata.namespace} and "
        f"{'is' if len(held) == 1 else 'are'} not owned by this resource: nothing was written; rename "
        "the resource, or delete or rename the object (looked up again every 5 minutes)"
    )
    return Problem(Reason.NAME_CONFLICT, message)


def refused(p: Situation) -> Problem | None:
    """The apiserver refused a write of the children: its content (a value the schema let
    through), or a quota, a policy or RBAC forbade it. A field fixed at creation is no problem:
    the object is replaced (`replacing`)."""
    refusal = p.observed.refusal
    if refusal is None or refusal.kind not in (RefusalKind.INVALID, RefusalKind.FORBIDDEN):
        return None
    verb = "forbids" if refusal.kind == RefusalKind.FORBIDDEN else "rejects"
    return Problem(refusal.reason, problems.short(f"the apiserver {verb} {refusal.what}: {refusal.message}"))


def no_leader_worker_set(p: Situation) -> Problem | None:
    """A pipeline needs the LeaderWorkerSet API; without it nothing is created or changed (the
    CRD's arrival is watched: the next pass goes ahead by itself)."""
    if not render.multi_node(p.res.spec) or LWS_CRD in p.observed.served:
        return None
    message = (
        f"parallelism.pipeline {p.res.spec.parallelism.pipeline} runs each replica as a LeaderWorkerSet "
        f"group, but the cluster does not serve {LWS_CRD}: install LeaderWorkerSet (sigs.k8s.io/lws) "
        "or set parallelism.pipeline to 1"
    )
    return Problem(Reason.LEADER_WORKER_SET_MISSING, message)


BLOCKERS: tuple[Callable[[Situation], Problem | None], ...] = (
    no_leader_worker_set, too_small, too_large, name_conflict, refused,
)  # fmt: skip
"""Problems that stop every apply, in order of precedence."""


def first_blocker(p: Situation) -> Problem | None:
    return next((found for blocker in BLOCKERS if (found := blocker(p)) is not None), None)


def _applies(p: Situation) -> tuple[Apply, ...]:
    out = []
    for manifest in p.children:
        desired = diff.with_hash(manifest)
        live = p.observed.child(manifest["kind"], manifest["metadata"]["name"])
        if live is not None and live.deleting:
            continue  # being deleted: its deletion event brings us back to create it anew
        why = diff.drift(desired, None if live is None else live.manifest)
        if why is not None:
            out.append(Apply(desired, live, why, tuple(events.applied(desired, live, why))))
    return tuple(out)


def gated(applies: tuple[Apply, ...], download: weights.Download | None) -> tuple[Apply, ...]:
    """With a shared cache, the StatefulSet (or LeaderWorkerSet) is applied only once the download
    Job has succeeded (weights.py says why its pods do not wait instead); every other child goes
    ahead."""
    if download is None or download.complete:
        return applies
    return tuple(a for a in applies if a.manifest["kind"] not in registry.WORKLOAD_KINDS)


def switching(p: Situation, applies: tuple[Apply, ...]) -> tuple[tuple[Apply, ...], tuple[Delete, ...]]:
    """parallelism.pipeline crossed 1: the workload of the other kind (ours, same name) is deleted
    first (act.py: in the foreground, so it stays, deleting, until its pods are gone), and the
    new one is applied only once it has gone: never both on the GPUs, nor a LeaderWorkerSet's
    leader StatefulSet and ours under one name. Every other child goes ahead."""
    name, kind = p.res.metadata.name, render.workload_kind(p.res.spec)
    other = next(k for k in sorted(registry.WORKLOAD_KINDS) if k != kind)
    stale = p.observed.child(other, name)
    if stale is None or not owned(stale, p.res):
        return applies, ()
    held = tuple(a for a in applies if a.manifest["kind"] not in registry.WORKLOAD_KINDS)
    if stale.deleting:
        return held, ()
    said = (events.deleted(stale), events.switching(stale.kind, stale.name, kind))
    return held, (Delete(stale, Propagation.FOREGROUND, said, hide=False),)


def replacing(p: Situation, applies: tuple[Apply, ...]) -> tuple[tuple[Apply, ...], tuple[Delete, ...]]:
    """The apiserver will not change a field fixed at creation (a StatefulSet's
    volumeClaimTemplates, a Job's pod template): the object is deleted with its kind's
    propagation (a StatefulSet's pods are kept, orphaned, then adopted by the new one and
    rolled: pods that lack a new claim template's claim in the order that keeps the StatefulSet
    controller going, rollout.py), and nothing else is applied; its deletion event brings the
    pass that creates it anew."""
    refusal = p.observed.refusal
    if refusal is None or refusal.kind != RefusalKind.FIELD_IMMUTABLE:
        return applies, ()
    found = next((a for a in applies if a.ident == refusal.what and a.live is not None), None)
    kind = registry.BY_KIND.get(found.kind) if found is not None else None
    if found is None or found.live is None or kind is None or kind.replaced is None:
        return applies, ()
    said = (events.replacing(found.ident, kind.replaced == Propagation.ORPHAN, kind.replaced_because),)
    return (), (Delete(found.live, kind.replaced, said, hide=False),)


def _download_or_pods(
    download: weights.Download | None, pods: Problem | Wait | None
) -> Problem | Wait | None:
    """A failed download, then the pods' problems, then the download's wait, then the pods'."""
    found = None if download is None else download.found
    if isinstance(found, Problem) or isinstance(pods, Problem):
        return found if isinstance(found, Problem) else pods
    return found or pods


def in_use(observed: Observed, child: snapshot.Child) -> bool:
    """A pod of the resource mounts it, or a pod template of its children names it (a StatefulSet
    not rolled yet, a download Job): the pods running an old launcher, and those a workload not yet
    changed will create, need its ConfigMap. A pod the watch saw deleted mounts nothing."""
    if child.kind not in registry.MOUNTED_KINDS:
        return False
    return any(child.name in pod.mounts for pod in observed.pods if not pod.gone) or any(
        child.name in other.mounts for other in observed.children if other is not child
    )


def _deletes(p: Situation) -> tuple[Delete, ...]:
    """Our child of a pruned kind that this pass does not render: an autoscaler, InferencePool,
    PrometheusRule or NetworkPolicy the spec dropped, or whose CRD came (the
    HorizontalPodAutoscaler gives way to a KEDA ScaledObject) or went; a launcher ConfigMap of
    other sources once nothing mounts it (`in_use`)."""
    rendered = {(m["kind"], m["metadata"]["name"]) for m in p.children}
    return tuple(
        Delete(c, Propagation.BACKGROUND, (events.deleted(c),)) for c in p.observed.children
        if c.kind in registry.PRUNED_KINDS and (c.kind, c.name) not in rendered
        and not c.deleting and owned(c, p.res) and not in_use(p.observed, c)
    )  # fmt: skip


def _result(
    res: api.QwenThinkingDeployment, blocker: Problem | None, applies: tuple[Apply, ...],
    deletes: tuple[Delete | DeletePod, ...],
) -> Result:  # fmt: skip
    if blocker is not None:
        return Result.INVALID if blocker.reason == Reason.INVALID_SPEC else Result.BLOCKED
    if res.spec.paused:
        return Result.PAUSED
    return Result.CHANGED if applies or deletes else Result.UNCHANGED


def decide(observed: Observed, now: datetime) -> Desired:
    """The children to apply, the status and the events for one resource."""
    if observed.refusal is not None and observed.refusal.kind == RefusalKind.NAMESPACE_TERMINATING:
        return terminating(observed, now)
    if observed.refusal is not None and observed.refusal.kind == RefusalKind.EXISTS:
        # what the plan's lookups found joins the observation: judged like a cached child
        observed = replace(observed, children=(*observed.children, *observed.refusal.found))
    try:
        res = api.parse_resource(observed.resource.body())
    except api.InvalidResource as exc:
        return _invalid(observed, exc, now)
    before = status.previous(observed.resource.status)
    memory = placement.smallest_gpu_memory_gib(observed.gpu_nodes, res.spec)
    plans: dict[float, planner.Plan | None] = {}

    seen = before.memory.observed if before.memory is not None else None

    def planned_at(utilization: float) -> int | None:
        """vLLM's own figures where they hold (memory/calibration.py), else the estimate."""
        plans[utilization] = plan = planner.plan_for(res.spec, memory, utilization)
        fit = calibration.observed_fit(seen, res, utilization)
        return fit if fit is not None else None if plan is None else plan.planned

    groups = render.multi_node(res.spec)
    failures = [] if res.spec.paused else cures.detect(observed.pods, groups)  # paused: context stays
    history = (before.context.history if before.context else None) or []
    decision = cures.choose(res, history, planned_at, failures, now, groups)
    plan = plans.get(decision.utilization) or planner.plan_for(res.spec, memory, decision.utilization)
    children = rendered(observed, res, decision)
    grouped, held_partition = (_groups(observed, res, before, decision) if groups else None), 0
    if grouped is not None:
        children, held_partition = _partitioned(children, grouped, now)
    p = Situation(observed, res, plan, decision, children)
    blocker = first_blocker(p)
    held = blocker is not None or res.spec.paused
    applies = () if held else _applies(p)
    deletes = () if held else _deletes(p)
    download = weights.download(res, observed, [a.manifest["kind"] for a in applies])
    applies = gated(applies, download)
    said: list[Event] = [] if observed.refusal is None else list(observed.refusal.said)
    if not held:
        applies, stale = switching(p, applies)
        applies, replaced = replacing(p, applies)
        deletes = (*deletes, *stale, *replaced)
    sts = observed.child(render.workload_kind(res.spec), res.metadata.name)
    creation = problems.not_created(observed.create_failures, sts, observed.pods)
    pods = problems.of_pods(observed.pods, now, decision.explained, creation)
    changing = any(a.stales_rollout for a in applies)
    workload_deleted = any(d.child.kind in registry.WORKLOAD_KINDS for d in deletes)
    ordering = rollout.Inputs(
        sts, observed.pods, res.spec.replicas, res.spec.disruption.max_unavailable,
        render.startup_seconds(res), before.rollout, decision.explained,
        hold=held or changing or workload_deleted or observed.refusal is not None,
        settings=settings_in_force(observed, res, decision, applies),
    )  # fmt: skip
    rolling = rollout.plan(ordering, now)
    if grouped is not None:
        rolling = _group_rollout(grouped, applies, held_partition, now)
    halted = None if rolling is None else rolling.problem()
    found = blocker or halted or decision.problem or _download_or_pods(download, pods)
    problem, wait = (found, None) if isinstance(found, Problem) else (None, found)
    shared = None if download is None else download.status
    inputs = status.Inputs(
        res, sts, decision, problem, wait, observed.pods, changing, weights=shared, served=observed.served,
        starts=observed.starts, rollout=rolling,
    )  # fmt: skip
    replacements = _pod_deletes(observed, rolling, rollout.restarts(ordering))
    after = status.build(inputs, before, now)
    if decision.reduced is not None:
        said.append(events.cured(decision.reduced))
    if blocker is None or blocker.reason != Reason.INSUFFICIENT_GPU_MEMORY:
        said += events.planned(
            res.spec.context, before.context.planned if before.context else None, decision.planned
        )
        was = before.context.effective if before.context else None
        said += events.below_recommendation(was, decision.effective, res.spec.context.recommended_model_len)
    result = _result(res, blocker, applies, (*deletes, *replacements))
    conflict = blocker is not None and blocker.reason == Reason.NAME_CONFLICT
    again = NAME_CONFLICT_RECHECK_SECONDS if conflict else None
    return _desired(
        observed, after, before, said, applies, result, decision, wait, now, deletes, again, replacements
    )


def _groups(
    observed: Observed, res: api.QwenThinkingDeployment, before: status.Status, decision: cures.Decision
) -> rollout.Groups:
    """What the rollout of the LeaderWorkerSet's groups reads; its revision is set by `_partitioned`."""
    return rollout.Groups(
        res.metadata.name, observed.child(LWS_KIND, res.metadata.name), "", observed.pods, res.spec.replicas,
        res.spec.disruption.max_unavailable, render.startup_seconds(res), before.rollout, decision.explained,
    )  # fmt: skip


def _partitioned(
    children: tuple[dict[str, Any], ...], grouped: rollout.Groups, now: datetime
) -> tuple[tuple[dict[str, Any], ...], int]:
    """The children with the rollout's partition in the LeaderWorkerSet (reconcile/rollout.py), and
    that partition: part of the desired manifest, so a pass whose partition and template have not
    changed applies nothing. A live LeaderWorkerSet from before the template digest keeps its
    templates without it while they hold all else rendered (rollout.as_applied): an operator
    upgrade alone restarts no group."""
    out, held = [], 0
    for manifest in children:
        if manifest["kind"] == LWS_KIND:
            manifest = rollout.as_applied(manifest, grouped.lws)
            held = rollout.partition(replace(grouped, revision=render.template_digest(manifest)), now)
            manifest = render.with_partition(manifest, held)
        out.append(manifest)
    return tuple(out), held


def _group_rollout(
    grouped: rollout.Groups, applies: tuple[Apply, ...], rendered_partition: int, now: datetime
) -> rollout.Rollout | None:
    """The groups' rollout to the template the LeaderWorkerSet holds after this pass: the rendered
    one when this pass applies it, else the live one (a paused or blocked resource, a download not
    done: nothing moves, and no rollout is said to)."""
    applied = next((a.manifest for a in applies if a.kind == LWS_KIND), None)
    if applied is not None:
        return rollout.group_plan(grouped, render.template_digest(applied), rendered_partition, now)
    live = grouped.lws
    if live is None:
        return None
    held = render.partition_of(live.manifest)
    return rollout.group_plan(grouped, render.template_digest(live.manifest), held, now)


def rendered(
    observed: Observed, res: api.QwenThinkingDeployment, decision: cures.Decision
) -> tuple[dict[str, Any], ...]:
    """Every child, the StatefulSet with the compile cache's claim template unless it is live
    without it and the claim would be the only reason its pods roll (compile_cache.claim_deferred:
    an operator upgrade alone restarts no replica). From the snapshot alone."""
    args = (res, decision.effective, observed.served, decision.utilization, decision.replicas)
    children = tuple(render.render(*args))
    sts = next((c for c in children if c["kind"] == "StatefulSet"), None)  # none for a LeaderWorkerSet
    live = observed.child("StatefulSet", res.metadata.name)
    if live is None or sts is None or compile_cache.claimed(live.manifest) or not compile_cache.claimed(sts):
        return children
    without = tuple(render.render(*args, compile_claim=False))
    kept = next(c for c in without if c["kind"] == "StatefulSet")
    return without if compile_cache.claim_deferred(live.manifest, sts, kept) else children


def settings_in_force(
    observed: Observed, res: api.QwenThinkingDeployment, decision: cures.Decision, applies: tuple[Apply, ...]
) -> dict[str, float]:
    """The replicas' own settings as their ConfigMap holds them now: the decision's, once the live
    ConfigMap has them (it exists and this pass does not write it); else none, so that no pod is
    restarted before the entry it is restarted for can be read (children/replicas.py)."""
    name = replicas.configmap_name(res.metadata.name)
    live = observed.child("ConfigMap", name)
    writing = any(a.kind == "ConfigMap" and a.manifest["metadata"]["name"] == name for a in applies)
    return dict(decision.replicas) if live is not None and not live.deleting and not writing else {}


def _pod_deletes(
    observed: Observed, rolling: rollout.Rollout | None, restarts: tuple[rollout.Replacement, ...] = ()
) -> tuple[DeletePod, ...]:
    """The pods the rollout replaces, then those restarted with their own settings (each once),
    with the event that says why."""
    ns = observed.resource.namespace
    revision = "" if rolling is None else rolling.revision
    out = [
        DeletePod(ns, r.pod.name, r.pod.uid, r.why, (events.replacing_pod(r.pod.name, revision, r.why),))
        for r in (() if rolling is None else rolling.replace)
    ]
    taken = {d.name for d in out}
    out += [
        DeletePod(ns, r.pod.name, r.pod.uid, r.why, (events.restarting_pod(r.pod.name, r.why),))
        for r in restarts if r.pod.name not in taken
    ]  # fmt: skip
    return tuple(out)


def _written(
    deletes: tuple[Delete | DeletePod, ...], applies: tuple[Apply, ...], said: list[Event]
) -> tuple[Event, ...]:
    """What the writes of a pass say (the children created in one pass make one event), then the
    decision's own events."""
    done = [*(e for d in deletes for e in d.events), *(e for a in applies for e in a.events)]
    return tuple(events.created_together([*done, *said]))


def held_for(observed: Observed, before: status.Status, after: status.Status, now: datetime) -> float | None:
    """Seconds to hold back a status change that only reports progress (`status_interval`
    after the last write), or None to write it now."""
    last = observed.status_written_at
    if last is None or not status.only_progress(before, after):
        return None
    left = status_interval(observed.starting) - (now - last).total_seconds()
    return left if left > 0 else None


def _desired(
    observed: Observed, after: status.Status, before: status.Status, said: list[Event],
    applies: tuple[Apply, ...], result: Result, decision: cures.Decision | None, wait: Wait | None,
    now: datetime, deletes: tuple[Delete, ...] = (), again: float | None = None,
    pod_deletes: tuple[DeletePod, ...] = (),
) -> Desired:  # fmt: skip
    ctx = after.context
    patch = status.merge_patch(observed.resource.status, status.to_wire(after))
    recheck = again if wait is None else wait.recheck_after
    if any(a.may_not_roll for a in applies):
        recheck = ROLLOUT_RECHECK_SECONDS if recheck is None else min(recheck, ROLLOUT_RECHECK_SECONDS)
    if any(e.stage == Stage.LOADING_MODEL for e in after.replica_status or ()):  # the phase it is in
        recheck = LOADING_READ_SECONDS if recheck is None else min(recheck, LOADING_READ_SECONDS)
    # a pass that replaces pods writes its status at once: it names the canary (status.rollout),
    # which the next pass reads back
    held = None if patch is None or pod_deletes else held_for(observed, before, after, now)
    if held is not None:
        patch, recheck = None, min(held, recheck if recheck is not None else held)
    first = before.observed_generation is None or (decision is not None and decision.reduced is not None)
    announced = (*said, *events.transitions(before, after))
    written = _written((*deletes, *pod_deletes), applies, list(announced))
    status_op = None if patch is None else PatchStatus(patch)
    return Desired(
        key=observed.key,
        resource=observed.resource,
        result=result,
        applies=applies,
        deletes=deletes,
        pod_deletes=pod_deletes,
        status_patch=patch,
        status_first=first,  # never held: a first status, or a changed context
        events=announced,
        ops=order(deletes, applies, status_op, first, written, clock.rfc3339(now), pod_deletes),
        phase=after.phase,
        after=after,
        want=_want(observed.resource),
        reduced=ctx is not None and (ctx.effective or 0) < (ctx.requested or 0),
        reduction=None if decision is None else decision.reduced,
        recheck_after=recheck,
    )


def _want(resource: snapshot.Resource) -> int:
    """spec.replicas as the apiserver stored it (an invalid resource has one too)."""
    value = resource.spec.get("replicas", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _invalid(observed: Observed, exc: api.InvalidResource, now: datetime) -> Desired:
    before = status.previous(observed.resource.status)
    name = observed.resource.name
    sts = observed.child("StatefulSet", name) or observed.child(LWS_KIND, name)
    after = status.invalid(observed.resource, sts, exc.field, exc.message, before, now)
    return _desired(observed, after, before, [], (), Result.INVALID, None, None, now)


def terminating(observed: Observed, now: datetime) -> Desired:
    """The namespace is being deleted: Reconciling=True NamespaceTerminating, nothing applied."""
    before = status.previous(observed.resource.status)
    message = f"namespace {observed.resource.namespace} is being deleted: nothing is created, nothing retried"
    after = status.reconciling(
        before, observed.resource.generation, Reason.NAMESPACE_TERMINATING, message, now
    )
    patch = status.merge_patch(observed.resource.status, status.to_wire(after))
    return Desired(
        key=observed.key,
        resource=observed.resource,
        result=Result.TERMINATING,
        status_patch=patch,
        phase=after.phase,
        ops=order((), (), None if patch is None else PatchStatus(patch), False, (), clock.rfc3339(now)),
    )


def failed(observed: Observed, error: str, now: datetime) -> Desired:
    """Reconciling=True ReconcileError in the status, and one event per streak of errors."""
    before = status.previous(observed.resource.status)
    after = status.with_error(before, observed.resource.generation, error, now)
    was = status.condition(before, ConditionType.RECONCILING)
    said = [] if was is not None and was.reason == Reason.RECONCILE_ERROR else [events.reconcile_error(error)]
    patch = status.merge_patch(observed.resource.status, status.to_wire(after))
    status_op = None if patch is None else PatchStatus(patch)
    return Desired(
        key=observed.key,
        resource=observed.resource,
        result=Result.ERROR,
        status_patch=patch,
        events=tuple(said),
        ops=order((), (), status_op, False, tuple(said), clock.rfc3339(now)),
        phase=after.phase,
        after=after,
        want=_want(observed.resource),
    )
