"""What each replica is doing: its stage, since when, from what the kubelet reports. Pure.

A 236 GB model takes 30 to 60 minutes to download and load: the stage tells a slow download
from a hang, and while the server starts, the launcher's start report (reconcile/starts.py)
names the phase it is in (`phase`); once it serves, where the start's time went (`lastStart`,
kept until a later start replaces it). `since` is always a time the kubelet wrote (a container's startedAt, a
condition's transition), never the operator's clock, so a replica's entry changes only when
its stage does: the status is written once per stage change, never once per minute. Its age
is what a person reads (`kubectl get qtd` shows the Progress column; the conditions' messages
name the slowest replica and since when).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from qwen_operator import api
from qwen_operator.api.vocabulary import CRASH_REASONS, FETCH_CONTAINER, PHASE_WORDS, KubeletReason, Stage
from qwen_operator.process import clock
from qwen_operator.reconcile import snapshot, starts

WORDS = {
    Stage.SCHEDULING: "waiting to start",
    Stage.DOWNLOADING_WEIGHTS: "downloading weights",
    Stage.LOADING_MODEL: "loading the model",
    Stage.SERVING: "serving",
    Stage.CRASH_LOOP: "crash-looping",
}
SHORT = {
    Stage.SCHEDULING: "scheduling",
    Stage.DOWNLOADING_WEIGHTS: "downloading",
    Stage.LOADING_MODEL: "loading",
    Stage.CRASH_LOOP: "crash-looping",
}


def _stamp(moment: datetime | None) -> str | None:
    return None if moment is None else clock.rfc3339(moment)


def _crashing(pod: snapshot.Pod) -> snapshot.Container | None:
    return next(
        (
            c
            for c in (*pod.init_containers, *pod.containers)
            if c.waiting_reason == KubeletReason.CRASH_LOOP_BACK_OFF
        ),
        None,
    )


def stage_of(
    pod: snapshot.Pod, seen: snapshot.StartSeen | None = None, before: api.ReplicaStatus | None = None
) -> api.ReplicaStatus:
    """One pod's stage, the kubelet's time it began, restarts, the last reason, the start-up phase
    while it starts (`seen`: the launcher's report of this run) and the last start's account
    (this run's once it serves, else the one `before` held)."""
    entry = _stage_of(pod)
    last = before.last_start if before is not None else None
    report = seen.report if seen is not None else None
    if report is not None and report.get("ready") and entry.stage == Stage.SERVING:
        assert seen is not None
        last = starts.last_start(seen)
    phase = (
        str(report.get("phase") or "") if report is not None and entry.stage == Stage.LOADING_MODEL else ""
    )
    return entry.model_copy(update={"phase": phase, "last_start": last})


def _stage_of(pod: snapshot.Pod) -> api.ReplicaStatus:
    server = pod.server
    restarts = server.restart_count if server is not None else 0
    crashing = _crashing(pod)
    if crashing is not None:
        ended = crashing.last_terminated
        cause = ended.cause if ended is not None else ""
        reason = cause if cause in CRASH_REASONS else KubeletReason.CRASH_LOOP_BACK_OFF
        return api.ReplicaStatus(
            pod=pod.name, stage=Stage.CRASH_LOOP, since=_stamp(crashing.last_finished), restarts=restarts,
            reason=reason,
        )  # fmt: skip
    if server is not None and server.ready:
        since = pod.ready_since or server.running_since
        return api.ReplicaStatus(pod=pod.name, stage=Stage.SERVING, since=_stamp(since), restarts=restarts)
    if server is not None and server.running_since is not None:
        return api.ReplicaStatus(
            pod=pod.name, stage=Stage.LOADING_MODEL, since=_stamp(server.running_since), restarts=restarts
        )
    fetch = next((c for c in pod.init_containers if c.name == FETCH_CONTAINER), None)
    if fetch is not None and fetch.running_since is not None:
        return api.ReplicaStatus(
            pod=pod.name,
            stage=Stage.DOWNLOADING_WEIGHTS,
            since=_stamp(fetch.running_since),
            restarts=restarts,
        )
    waiting = next(
        (c.waiting_reason for c in (*pod.init_containers, *pod.containers) if c.waiting_reason), ""
    )
    reason = KubeletReason.UNSCHEDULABLE if pod.unschedulable is not None else waiting
    return api.ReplicaStatus(
        pod=pod.name, stage=Stage.SCHEDULING, since=_stamp(pod.created), restarts=restarts, reason=reason
    )


def stages(
    pods: Sequence[snapshot.Pod],
    seen: Sequence[snapshot.StartSeen] = (),
    before: Sequence[api.ReplicaStatus] = (),
) -> list[api.ReplicaStatus]:
    """Every live server pod's stage and template revision, by name."""
    previous: Mapping[str, api.ReplicaStatus] = {e.pod: e for e in before}
    return [
        stage_of(p, starts.current(seen, p), previous.get(p.name)).model_copy(update={"revision": p.revision})
        for p in sorted(pods, key=lambda p: p.name)
        if not p.deleting
    ]


def progress(entries: Sequence[api.ReplicaStatus], want: int, rollout: str | None = None) -> str:
    """In short, for the printer column: "1/2 serving, 1 downloading"; during a rollout its
    state first: "rolling 2/3, canary serving; 2/3 serving, 1 loading"."""
    serving = sum(1 for e in entries if e.stage == Stage.SERVING)
    parts = [f"{serving}/{want} serving"]
    for stage, word in SHORT.items():
        count = sum(1 for e in entries if e.stage == stage)
        if count:
            parts.append(f"{count} {word}")
    return ", ".join(parts) if rollout is None else f"{rollout}; {', '.join(parts)}"


def summary(entries: Sequence[api.ReplicaStatus], want: int) -> str:
    """For a condition's message: how many serve, and the replica furthest from serving."""
    waiting = [e for e in entries if e.stage != Stage.SERVING]
    head = f"{len(entries) - len(waiting)}/{want} serving"
    if not waiting:
        return head
    order = list(Stage)
    slowest = min(waiting, key=lambda e: (order.index(e.stage), e.since or "", e.pod))
    since = f" since {slowest.since}" if slowest.since else ""
    why = f" ({slowest.reason})" if slowest.reason else ""
    phase = f": {PHASE_WORDS.get(slowest.phase, slowest.phase)}" if slowest.phase else ""
    return f"{head}; {slowest.pod} {WORDS[slowest.stage]}{phase}{why}{since}"
