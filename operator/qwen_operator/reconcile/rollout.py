"""Rollouts in the operator's order: which server pod to replace next, if any. Pure.

A replica of this model takes tens of minutes to start, so the order in which a new pod
template reaches the replicas decides how much serving capacity a change costs. The
StatefulSet's own RollingUpdate goes from the highest ordinal down whatever the pods do: it
restarts healthy replicas while a failed one still fails, and it takes a bad template (an image,
a flag vLLM refuses, a context that does not fit) to every replica in turn. So the StatefulSet
is rendered with `updateStrategy: OnDelete`, and the operator deletes the pods itself, one pass
at a time, in this order:

1. replicas on the old template that do not serve (failed, crash-looping, pending, loading):
   all at once, since replacing them costs no capacity;
2. then serving replicas, one at a time, highest ordinal first, each only once every replica on
   the new template serves, and only while `replicas - maxUnavailable` keep serving without it;
3. the first serving replica to take the new template is the canary (remembered in
   `status.rollout.canary`). A replica on the new template that fails (a crash loop, a start-up
   failure, an image or a node it cannot get, or not serving within its startup probe's budget)
   halts the rollout: nothing more is replaced and the status says `RolloutHalted`. A new
   template (another revision), or the failed replica serving again, resumes it: the halt is
   read from the pods on every pass, never stored.

Pods are compared by the StatefulSet controller's own revisions: each pod's
`controller-revision-hash` label against the StatefulSet's `status.updateRevision`. Nothing is
deleted while the controller has not observed the StatefulSet's latest generation (its
updateRevision would be the previous template's), while this pass changes the StatefulSet, or
while the operator holds its writes (paused, blocked). A failure that the out-of-memory cures
explain does not halt: the cure brings a new template, which replaces the failed pod first.

A cure that concerns one replica (a lower GPU memory utilization: memory/cures.py) changes no
template: it goes into that replica's entry of the replicas' ConfigMap (children/replicas.py),
which its launcher reads at start. `restarts` then deletes that pod alone, once the ConfigMap has
the entry, if it does not serve and its last run had another utilization: the StatefulSet
recreates it with the same template, and it starts with its own setting. The other replicas are
not touched.

**A pod that lacks a claim of its StatefulSet.** volumeClaimTemplates are fixed at creation, so a
change of them (the compile cache's claim added to a StatefulSet made without it, weights switched
from Shared to PerReplica) deletes the StatefulSet keeping its pods (decide.replacing) and creates
it anew: the new StatefulSet adopts the pods, whose volumes lack the new template's claim. The
StatefulSet controller (kubernetes pkg/controller/statefulset, v1.36) then wedges, whatever its
update strategy: on every sync it walks the replicas in ordinal order (`runForAll`; for our
`podManagementPolicy: Parallel`, in `slowStartBatch` batches of 1, 2, 4, ... ordinals run together,
ending after the first batch with an error; OrderedReady would end at the first pod), and
`processReplica`, finding `storageMatches` false for an adopted pod, calls `UpdateStatefulPod`: it
creates the missing claim, then updates the pod with the claim's volume, which the apiserver
forbids ("pod updates may not change fields other than ..."). The sync ends with that error (its
status is still written: observedGeneration, updateRevision) and is retried with back-off, so the
controller never gets past that pod: a pod deleted in a later batch is not recreated, and the
operator's highest-ordinal-first order would delete exactly those, one replica lost per step.
Only deleting the pod unwedges it: its deletion is a pod event, which syncs the StatefulSet at
once whatever the back-off, and the controller creates it from the new StatefulSet, with every
claim, and goes on to the next batch.

So while a live pod lacks a claim of its StatefulSet (`missing_claims`, the controller's
`storageMatches` on the snapshot's volumes), the order is the one that unwedges the controller:

1. the lowest-ordinal pod that lacks a claim (the blocker) goes first; with it, every replica below
   it that does not serve and is on an old template; a replica above it that does not serve is left
   as it is until the controller can recreate it (deleted now, it would only stay missing; left, it
   may yet serve);
2. a serving blocker goes as any serving replica does: once every replica on the new template serves
   and no replica below it is missing (those above it come back only after it), only while
   `replicas - maxUnavailable` keep serving without it, the first one being the canary, nothing
   while halted;
3. the next blocker is the next pod that lacks a claim, and so on up the ordinals.

Such a pod is outdated whatever its revision (a pod is judged, as ever, once the controller has
labelled it with one). The claim change comes with a template change in practice (the compile
cache's volume mount and variables; a PerReplica weights volume where the Shared claim was), so
an adopted pod still carries its old `controller-revision-hash`; but a StatefulSet whose template
did not change (made anew by hand, or a template that renders as before) may reuse the pods'
revision, and the pod must go all the same.

A LeaderWorkerSet's groups are replaced by its own controller (RollingUpdate, `maxUnavailable`
from `spec.disruption`, no surge, from the highest index down), which never replaces a group
whose index is below `spec.rolloutStrategy.rollingUpdateConfiguration.partition`. A group cannot
be deleted by the operator instead: the controller recreates a deleted leader from whichever
template its index gets, and a restart recreates the whole group. So the operator holds the
rollout through the partition, which it renders in the LeaderWorkerSet it applies (`partition`,
pure, from the snapshot):

1. the apply that brings a new group template also sets the partition to `replicas - 1`: only
   the highest group takes it, the canary (all groups at once when none serves: nothing to keep);
2. once the canary's leader serves on the new template, the partition goes to 0 and the
   controller replaces the other groups, `maxUnavailable` at a time, each once the previous serve;
3. a group on the new template that fails (`failure`, for any of its pods: the leader's crash,
   a worker's, whose restart makes the controller recreate the whole group, so the evidence is
   often a pod already deleted, which the cache keeps a while) halts the rollout: the partition
   stays, or comes back up to the lowest group the template reached, so no other group takes
   it; `RolloutHalted` says which group (its leader's name) and why. A new template, or the
   failed group serving again, resumes it.

Which template a pod runs is the operator's digest of the group template (TEMPLATE_ANNOTATION on
both pod templates): the controller's `template-revision-hash` label is a hash of its own
encoding of the LeaderWorkerSet, which the operator cannot compute, and the LeaderWorkerSet's
status does not name the current one. The groups are counted by their leaders.

A LeaderWorkerSet applied by an operator from before the digest has none in its templates, nor
its pods. Adding it alone would be a new template, and the controller would restart every group
(tens of minutes each) for nothing: so while the live templates hold everything else rendered
(`as_applied`), the operator renders them without the digest, applies no template change, and
drives no rollout (the partition stays as it is). The first real change of the template brings
the digest, behind the canary as above: the pods without one are on the old template.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from qwen_operator import api
from qwen_operator.api.vocabulary import Reason, RolloutState, Stage, claim_name
from qwen_operator.children import render
from qwen_operator.reconcile import diff, problems, snapshot, stages
from qwen_operator.reconcile.problems import Problem


def ordinal(pod: str) -> int:
    """The StatefulSet ordinal in a pod's name (-1 when it has none)."""
    tail = pod.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def allowed_unavailable(max_unavailable: int | str, want: int) -> int:
    """Replicas that may be down at once: `spec.disruption.maxUnavailable`, a percentage of
    `want` rounded down; at least one, since a StatefulSet has no surge and a rollout must be
    able to take one replica down to replace it."""
    if isinstance(max_unavailable, str):
        count = math.floor(want * float(max_unavailable.rstrip("%")) / 100)
    else:
        count = max_unavailable
    return max(1, count)


@dataclass(frozen=True)
class Replacement:
    """A pod to delete, so that the StatefulSet recreates it from the new template, and why."""

    pod: snapshot.Pod
    why: str


@dataclass(frozen=True)
class Halt:
    """A replica on the new template that failed."""

    pod: str
    stage: Stage
    reason: str
    message: str


@dataclass(frozen=True)
class Rollout:
    """A rollout under way: the counts the status shows, and what this pass replaces."""

    revision: str
    want: int
    updated: int
    serving: int
    canary: str = ""
    canary_stage: Stage | None = None
    halted: tuple[Halt, ...] = ()
    replace: tuple[Replacement, ...] = ()
    waiting: str = ""
    """Why no serving replica is replaced now (the next one waits for it)."""

    @property
    def state(self) -> RolloutState:
        return RolloutState.HALTED if self.halted else RolloutState.ROLLING

    def _who(self, pod: str) -> str:
        return "canary" if pod == self.canary else pod

    def _named(self, pod: str) -> str:
        return f"the canary {pod}" if pod == self.canary else f"pod {pod}"

    @property
    def words(self) -> str:
        """In short, for the Progress column: "rolling 2/3, canary serving",
        "halted: canary CrashLoop KVCacheInsufficient"."""
        if self.halted:
            first = self.halted[0]
            return " ".join(w for w in ("halted:", self._who(first.pod), first.stage, first.reason) if w)
        out = f"rolling {self.updated}/{self.want}"
        if self.canary and self.canary_stage is not None:
            out += f", canary {stages.SHORT.get(self.canary_stage, 'serving')}"
        return out

    @property
    def message(self) -> str:
        """For the conditions: the state, the next step, and how to go on when halted."""
        if self.halted:
            first = self.halted[0]
            return problems.short(
                f"rollout of revision {self.revision} halted: {self._named(first.pod)} failed "
                f"({first.message}); the other replicas keep the old template and serve. A new spec, "
                f"or {first.pod} serving again, resumes it"
            )
        doing = ", ".join(f"replacing {r.pod.name} ({r.why})" for r in self.replace) or self.waiting
        return f"{self.words}: {doing}" if doing else self.words

    def problem(self) -> Problem | None:
        """RolloutHalted, with the failed replica's reason, while it lasts."""
        return None if not self.halted else Problem(Reason.ROLLOUT_HALTED, self.message)

    def status(self) -> api.RolloutStatus:
        return api.RolloutStatus(
            state=self.state, revision=self.revision, updated=self.updated, serving=self.serving,
            halted=[h.pod for h in self.halted] or None, canary=self.canary, message=self.message,
        )  # fmt: skip


@dataclass(frozen=True)
class Inputs:
    """What the order reads."""

    sts: snapshot.Child | None
    pods: Sequence[snapshot.Pod]
    want: int
    max_unavailable: int | str
    startup_seconds: float
    """The startup probe's budget (initial delay + period x failures): a server running this long
    without serving has failed, whatever the kubelet does next."""
    before: api.RolloutStatus | None
    """The rollout as the status last said it (its canary)."""
    explained: frozenset[str] = frozenset()
    """Pods whose failure the out-of-memory cures account for."""
    hold: bool = False
    """Replace nothing this pass (the StatefulSet changes now, or writes are held)."""
    settings: Mapping[str, float] = field(default_factory=dict)
    """Each replica's own --gpu-memory-utilization, by pod name, as the replicas' ConfigMap holds
    it now (empty while the ConfigMap is still being written)."""


def _serving(pod: snapshot.Pod) -> bool:
    server = pod.server
    return not pod.deleting and server is not None and server.ready


def failure(pod: snapshot.Pod, startup_seconds: float, now: datetime) -> Halt | None:
    """Why a replica on the new template counts as failed, or None: a problem a person must
    solve (problems.of_pod), a failed run since it was created (a start-up failure, before the
    kubelet's back-off says CrashLoopBackOff), or a server that did not serve within its budget."""
    if _serving(pod):
        return None
    entry = stages.stage_of(pod)
    found = problems.of_pod(pod, now)
    if found is not None:
        return Halt(pod.name, entry.stage, found.reason, found.message)
    server = pod.server
    ended = None if server is None else server.terminated or server.last_terminated
    if ended is not None and ended.failed:
        return Halt(
            pod.name, Stage.CRASH_LOOP, ended.cause, f"pod {pod.name}: the server exited ({ended.cause})"
        )
    started = None if server is None else server.running_since
    if started is not None and (now - started).total_seconds() > startup_seconds:
        message = f"pod {pod.name}: not serving {startup_seconds:.0f} s after its server started"
        return Halt(pod.name, entry.stage, Reason.PROGRESSING, message)
    return None


def claim_templates(sts: snapshot.Child) -> tuple[str, ...]:
    """The names of the StatefulSet's volume claim templates."""
    templates = sts.manifest.get("spec", {}).get("volumeClaimTemplates") or []
    names = ((t.get("metadata") or {}).get("name") for t in templates if isinstance(t, Mapping))
    return tuple(str(n) for n in names if n)


def missing_claims(sts: snapshot.Child, pod: snapshot.Pod) -> tuple[str, ...]:
    """The claims of the StatefulSet that the pod's volumes lack: for each volume claim template, a
    volume named after it that mounts the pod's claim (`vocabulary.claim_name`), as the controller's
    `storageMatches` requires. Not empty: the controller wedges on the pod (the module's docstring)."""
    n = ordinal(pod.name)
    wanted = ((t, claim_name(t, sts.name, n)) for t in claim_templates(sts))
    return tuple(claim for t, claim in wanted if (t, claim) not in pod.claims)


def plan(f: Inputs, now: datetime) -> Rollout | None:
    """The rollout of the StatefulSet's update revision, or None when every replica runs it with
    its claims (or the workload is not a StatefulSet whose revisions are known)."""
    sts = f.sts
    if sts is None or sts.kind != "StatefulSet":
        return None
    revision = str(sts.status.get("updateRevision") or "")
    live = [p for p in f.pods if not p.deleting and 0 <= ordinal(p.name) < f.want]
    lacking = {p.name: claims for p in live if p.revision and (claims := missing_claims(sts, p))}
    outdated = [p for p in live if p.name in lacking or (p.revision and p.revision != revision)]
    if not revision or not outdated:
        return None
    updated = [p for p in live if p.revision == revision and p.name not in lacking]
    serving = sum(1 for p in live if _serving(p))
    before = f.before if f.before is not None and f.before.revision == revision else None
    canary = before.canary if before is not None else ""
    failures = (failure(p, f.startup_seconds, now) for p in updated if p.name not in f.explained)
    halted = tuple(h for h in failures if h is not None)
    base = Rollout(revision, f.want, len(updated), serving, canary, halted=halted)
    base = _with_canary(base, updated)
    observed = int(sts.status.get("observedGeneration") or 0) >= sts.generation
    if f.hold or halted or not observed:
        return base
    blocker = min((p for p in outdated if p.name in lacking), key=lambda p: ordinal(p.name), default=None)
    if blocker is None:
        return _by_serving(base, f, live, updated, outdated, serving)
    return _unwedging(base, f, live, updated, outdated, serving, Blocker(blocker, lacking[blocker.name]))


def _by_serving(
    r: Rollout, f: Inputs, live: Sequence[snapshot.Pod], updated: Sequence[snapshot.Pod],
    outdated: Sequence[snapshot.Pod], serving: int,
) -> Rollout:  # fmt: skip
    """Every pod has its claims: the replicas that do not serve, then the serving ones, highest
    ordinal first."""
    idle = [p for p in outdated if not _serving(p)]
    if idle:
        return _replacing(r, [Replacement(p, "not serving: replaced first") for p in idle])
    return _next_serving(r, f, live, updated, outdated, serving)


@dataclass(frozen=True)
class Blocker:
    """The lowest-ordinal pod that lacks a claim of its StatefulSet: the controller goes no further."""

    pod: snapshot.Pod
    claims: tuple[str, ...]

    @property
    def why(self) -> str:
        return (
            f"the lowest ordinal whose volumes lack the claim {', '.join(self.claims)} of the StatefulSet's "
            "volumeClaimTemplates: the StatefulSet controller recreates no pod beyond it until it is replaced"
        )


def _unwedging(
    r: Rollout, f: Inputs, live: Sequence[snapshot.Pod], updated: Sequence[snapshot.Pod],
    outdated: Sequence[snapshot.Pod], serving: int, blocker: Blocker,
) -> Rollout:  # fmt: skip
    """A pod lacks a claim: the blocker first, with the replicas below it that do not serve; a serving
    blocker within the serving replicas' rules (the module's docstring)."""
    at = ordinal(blocker.pod.name)
    idle = [p for p in outdated if not _serving(p) and ordinal(p.name) <= at]
    if idle:
        why = {blocker.pod.name: f"not serving, {blocker.why}"}
        return _replacing(r, [Replacement(p, why.get(p.name, "not serving: replaced first")) for p in idle])
    return _next_serving(r, f, live, updated, outdated, serving, blocker)


def _with_canary(r: Rollout, updated: Sequence[snapshot.Pod]) -> Rollout:
    pod = next((p for p in updated if p.name == r.canary), None)
    if pod is None:
        return r
    return replace(r, canary_stage=stages.stage_of(pod).stage)


def _replacing(r: Rollout, pods: list[Replacement], canary: str | None = None) -> Rollout:
    out = replace(r, replace=tuple(pods))
    return out if canary is None else replace(out, canary=canary, canary_stage=Stage.SCHEDULING)


def _next_serving(
    r: Rollout, f: Inputs, live: Sequence[snapshot.Pod], updated: Sequence[snapshot.Pod],
    outdated: Sequence[snapshot.Pod], serving: int, blocker: Blocker | None = None,
) -> Rollout:  # fmt: skip
    """The next serving replica (the blocker, else the highest ordinal), once the previous one
    serves again and capacity allows. With a blocker, only the missing replicas below it are
    waited for: the controller recreates those beyond it only once it is replaced."""
    starting = [p.name for p in updated if not _serving(p)]
    if starting:
        return replace(r, waiting=f"waiting for {', '.join(starting)} to serve")
    at = f.want if blocker is None else ordinal(blocker.pod.name)
    absent = set(range(f.want)) - {ordinal(p.name) for p in live}
    missing = sorted(n for n in absent if n < at)
    if missing:
        return replace(r, waiting=f"waiting for {len(missing)} missing replica(s)")
    floor = f.want - allowed_unavailable(f.max_unavailable, f.want)
    if serving - 1 < floor:
        words = f"waiting: {serving} serve, and spec.disruption.maxUnavailable keeps {floor} serving"
        if blocker is not None and absent:
            beyond = ", ".join(str(n) for n in sorted(absent))
            words += (
                f"; the StatefulSet controller recreates {beyond} only once {blocker.pod.name} is replaced"
            )
        return replace(r, waiting=words)
    pod = max(outdated, key=lambda p: ordinal(p.name)) if blocker is None else blocker.pod
    first = not r.canary
    why = "the canary: the first serving replica on the new template" if first else "the next serving replica"
    if blocker is not None:
        why = f"{why}, {blocker.why}"
    return _replacing(r, [Replacement(pod, why)], canary=pod.name if first else None)


@dataclass(frozen=True)
class Groups:
    """What the rollout of a LeaderWorkerSet's groups reads."""

    name: str
    """The LeaderWorkerSet's (the resource's): the leader of group i is pod `name-i`."""
    lws: snapshot.Child | None
    """The LeaderWorkerSet as it is now (before this pass's apply)."""
    revision: str
    """The digest of the group template rendered by this pass (render.template_digest)."""
    pods: Sequence[snapshot.Pod]
    want: int
    max_unavailable: int | str
    startup_seconds: float
    before: api.RolloutStatus | None
    """The rollout as the status last said it (its canary)."""
    explained: frozenset[str] = frozenset()
    """Pods whose failure the out-of-memory cures account for: the cure brings a new template."""


def leader_name(name: str, index: int) -> str:
    """The name of group `index`'s leader pod (the leader StatefulSet's ordinal)."""
    return f"{name}-{index}"


def _leaders(f: Groups) -> dict[int, snapshot.Pod]:
    """The live leader of each wanted group, by index."""
    return {p.group: p for p in f.pods if p.leader and not p.deleting and 0 <= p.group < f.want}


def _group_halts(
    f: Groups, revision: str, leaders: Mapping[int, snapshot.Pod], now: datetime
) -> tuple[Halt, ...]:
    """The groups on `revision` that failed, each named by its leader: a group whose leader serves
    on it has not; else the first failure among its pods on it, a deleted one's too (a restart
    recreates the group, so a failed run is mostly seen on a pod going away)."""
    out = []
    reached = sorted({p.group for p in f.pods if p.revision == revision and 0 <= p.group < f.want})
    for index in reached:
        leader = leaders.get(index)
        if leader is not None and leader.revision == revision and _serving(leader):
            continue
        pods = sorted(
            (p for p in f.pods if p.group == index and p.revision == revision and p.name not in f.explained),
            key=lambda p: (p.deleting, not p.leader, p.name),
        )
        found = next((h for p in pods if (h := failure(p, f.startup_seconds, now)) is not None), None)
        if found is not None:
            out.append(replace(found, pod=leader_name(f.name, index)))
    return tuple(out)


REVISION_FIELDS = ("leaderWorkerTemplate", "networkConfig")
"""What the LeaderWorkerSet controller's revision holds (its revision_utils.getPatch, v0.8.0): a
change anywhere else in the spec (replicas, the rollout strategy and its partition) makes no new
revision and replaces no group."""


def as_applied(rendered: dict[str, Any], live: snapshot.Child | None) -> dict[str, Any]:
    """The rendered LeaderWorkerSet as this pass applies it: without the template digest when the
    live one, made by an operator from before the digest, has none and its templates hold all
    else rendered (diff.contains, as a drift is judged): the digest alone would be a new template
    and roll every group. Otherwise as rendered, with the digest: a created LeaderWorkerSet, one
    that has it, and one whose template really changes (its groups without the digest are then
    on the old template)."""
    if live is None or render.template_digest(live.manifest):
        return rendered
    bare = render.without_template_digest(rendered)
    want, have = bare["spec"], live.manifest.get("spec") or {}
    held = all(diff.contains(want.get(key), have.get(key)) for key in REVISION_FIELDS)
    return bare if held else rendered


def partition(f: Groups, now: datetime) -> int:
    """The partition to render in the LeaderWorkerSet: 0 when it is created, at rest, or once the
    canary serves; `replicas - 1` when this pass brings a new template and some group serves
    (the highest group alone takes it); while a group on the new template fails, the lowest
    group the template reached (no other takes it); else as it is (the canary starts). Without
    a digest (`as_applied`: a LeaderWorkerSet from before it, whose template this pass keeps),
    as it is: no template comes, so nothing is to be held or released."""
    if f.lws is None:
        return 0
    if not f.revision:
        return render.partition_of(f.lws.manifest)
    if f.want <= 1:
        return 0
    leaders = _leaders(f)
    if render.template_digest(f.lws.manifest) != f.revision:
        return f.want - 1 if any(_serving(p) for p in leaders.values()) else 0
    if all(p.revision == f.revision for p in leaders.values()):
        return 0
    if _group_halts(f, f.revision, leaders, now):
        return min(p.group for p in f.pods if p.revision == f.revision and 0 <= p.group < f.want)
    canary = leaders.get(f.want - 1)
    if canary is not None and canary.revision == f.revision and _serving(canary):
        return 0
    return min(render.partition_of(f.lws.manifest), f.want - 1)


def group_plan(f: Groups, revision: str, held: int, now: datetime) -> Rollout | None:
    """The rollout of the groups to `revision` (the template the LeaderWorkerSet holds after this
    pass, whose partition is `held`), or None when every group runs it. Nothing is replaced by
    the operator: the counts, the canary, the halt, and what the controller does next."""
    if f.lws is None or not revision:
        return None
    leaders = _leaders(f)
    if all(p.revision == revision for p in leaders.values()):
        return None
    updated = [p for p in leaders.values() if p.revision == revision]
    serving = sum(1 for p in leaders.values() if _serving(p))
    before = f.before if f.before is not None and f.before.revision == revision else None
    canary = before.canary if before is not None and before.canary else ""
    if not canary and held > 0:
        canary = leader_name(f.name, f.want - 1)
    base = _with_canary(
        Rollout(
            revision, f.want, len(updated), serving, canary, halted=_group_halts(f, revision, leaders, now)
        ),
        updated,
    )
    if base.halted:
        return base
    if held > 0:
        who = canary or leader_name(f.name, f.want - 1)
        waiting = f"waiting for the canary {who} to serve; the other groups keep the old template"
    else:
        step = allowed_unavailable(f.max_unavailable, f.want)
        waiting = f"the LeaderWorkerSet controller replaces the other groups, {step} at a time"
    return replace(base, waiting=waiting)


EPSILON = 1e-6


def ran_at(pod: snapshot.Pod, ended: snapshot.Terminated) -> float | None:
    """The --gpu-memory-utilization an ended run had: the launcher's record, else the pod spec's."""
    said = ended.record.get("gpuMemoryUtilization") if ended.record is not None else None
    if isinstance(said, int | float) and not isinstance(said, bool):
        return float(said)
    return pod.server_utilization


def restarts(f: Inputs) -> tuple[Replacement, ...]:
    """Replicas to start again with their own settings: each one with an entry in the replicas'
    ConfigMap (`settings`) that does not serve, whose server is not running (it failed, and waits
    to be restarted), and whose last run had another utilization than its entry. Deleting the pod
    is what makes it read the entry: the kubelet restarts the container of the same pod, which
    may still see the file as it was (a ConfigMap volume is updated with a delay). A pod whose run
    already had its setting is left alone, so a pod is restarted once per setting."""
    if f.hold or not f.settings:
        return ()
    out = []
    for pod in sorted(f.pods, key=lambda p: ordinal(p.name)):
        own, server = f.settings.get(pod.name), pod.server
        if own is None or server is None or pod.deleting or _serving(pod) or server.running_since is not None:
            continue
        if not 0 <= ordinal(pod.name) < f.want:
            continue
        ended = server.terminated or server.last_terminated
        if ended is None or not ended.failed:
            continue
        ran = ran_at(pod, ended)
        if ran is not None and abs(ran - own) < EPSILON:
            continue
        had = "another" if ran is None else f"{ran:g}"
        why = f"not serving; its last run had --gpu-memory-utilization {had}, it starts with its own {own:g}"
        out.append(Replacement(pod, why))
    return tuple(out)
