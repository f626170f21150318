"""Where a start's time went: which server logs to read for the launcher's start report, and
what the status says of it. Pure.

The channel (qwen_runtime.startup): a failed start reaches the operator in the termination
message, but one that succeeds ends no container, and the server pods have no API access. The
launcher prints a one-line report to the server's log, and the operator reads it back through
pods/log, the kubelet's copy of the log (no port of the pod is reached, so no NetworkPolicy
opening, and nothing runs in the pod for it). It reads:

* once per start, when the server turns Ready, from `START_LOG_LOOKBACK_SECONDS` before the
  pod's Ready transition: the final report (`ready` true), which the status keeps
  (`replicaStatus[].lastStart`), so a restarted operator does not read it again;
* every `LOADING_READ_SECONDS` while a server starts, the log's last two heartbeats' worth:
  the phase it is in, for `replicaStatus[].phase` and `Reconciling`'s message.

Each read is bounded (`limitBytes`): a log read never costs more than a megabyte.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from qwen_operator import api
from qwen_operator.api.vocabulary import (
    PHASE_WORDS,
    START_LOG_LOOKBACK_SECONDS,
    StartPhase,
    StartReport,
)
from qwen_operator.process import clock
from qwen_operator.reconcile import snapshot
from qwen_runtime.startup import HEARTBEAT_SECONDS

LOADING_WINDOW_SECONDS = int(2 * HEARTBEAT_SECONDS)
"""How far back a read of a starting server's log looks: two heartbeats, so one is in it."""


@dataclass(frozen=True)
class LogRead:
    """One read of a server's log (pods/log), for one run of its container."""

    pod: str
    uid: str
    started_at: datetime
    final: bool
    """For the start report of a server that turned Ready (once), else for the phase it is in."""
    since_time: datetime | None = None
    since_seconds: int | None = None


def reads(pods: Sequence[snapshot.Pod], recorded: Mapping[str, str]) -> list[LogRead]:
    """The reads that would tell something new: a Ready server whose start the status does not
    hold yet (`recorded`: pod -> lastStart.startedAt), and each server still starting. The
    caller (process/startlog.py) makes each final read once, and a starting one at most every
    LOADING_READ_SECONDS."""
    out = []
    for pod in pods:
        server = pod.server
        if pod.deleting or server is None or server.running_since is None:
            continue
        started = server.running_since
        if server.ready:
            if recorded.get(pod.name) == clock.rfc3339(started):
                continue
            ready = pod.ready_since or started
            since = max(started, ready - timedelta(seconds=START_LOG_LOOKBACK_SECONDS))
            out.append(LogRead(pod.name, pod.uid, started, final=True, since_time=since))
        else:
            out.append(LogRead(pod.name, pod.uid, started, final=False, since_seconds=LOADING_WINDOW_SECONDS))
    return out


def recorded(status: Mapping[str, object]) -> dict[str, str]:
    """pod -> the startedAt of the start `status.replicaStatus[].lastStart` describes."""
    out = {}
    for entry in status.get("replicaStatus") or []:  # type: ignore[attr-defined]
        if isinstance(entry, Mapping) and isinstance(entry.get("lastStart"), Mapping):
            out[str(entry.get("pod"))] = str(entry["lastStart"].get("startedAt"))
    return out


def duration(seconds: float) -> str:
    """As a person says it: 48s, 1m40s, 1h2m."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m" if minutes else f"{hours}h"


def words(report: StartReport) -> str:
    """ "weights 5m12s, profiling 1m40s (compile 1m10s), graphs 48s": every phase of a second or
    more, in order."""
    parts = []
    for phase, seconds in (report.get("phases") or {}).items():
        if seconds < 1:
            continue
        part = f"{PHASE_WORDS.get(phase, phase)} {duration(seconds)}"
        compiled = report.get("compileSeconds")
        if phase == StartPhase.PROFILING and compiled:
            part += f" (compile {duration(compiled)})"
        parts.append(part)
    return ", ".join(parts)


def last_start(seen: snapshot.StartSeen) -> api.StartStatus:
    """The status's account of a start that reached serving."""
    report = seen.report
    return api.StartStatus(
        started_at=clock.rfc3339(seen.started_at),
        seconds=report.get("elapsedSeconds"),
        summary=words(report),
        phases=[api.PhaseTime(phase=p, seconds=s) for p, s in (report.get("phases") or {}).items()] or None,
        compile_seconds=report.get("compileSeconds"),
    )


def current(starts: Iterable[snapshot.StartSeen], pod: snapshot.Pod) -> snapshot.StartSeen | None:
    """The report of the pod's current run of its server, if one was read."""
    server = pod.server
    if server is None or server.running_since is None:
        return None
    return next((s for s in starts if s.uid == pod.uid and s.started_at == server.running_since), None)


def observed_memory(
    seen: Iterable[snapshot.StartSeen],
    pods: Sequence[snapshot.Pod],
    basis: str,
    before: api.ObservedMemory | None,
) -> api.ObservedMemory | None:
    """vLLM's KV-cache figures from the latest start that reached serving and reported them,
    under the current `basis`; else what the status held, while its basis holds."""
    by_uid = {p.uid: p for p in pods}
    found = [
        s for s in seen
        if s.report.get("ready") and (s.report.get("kvCache") or {}).get("tokens") and s.uid in by_uid
    ]  # fmt: skip
    if found:
        latest = max(found, key=lambda s: s.started_at)
        pod = by_uid[latest.uid]
        kv = latest.report.get("kvCache") or {}
        server = pod.server
        return api.ObservedMemory(
            pod=latest.pod,
            started_at=clock.rfc3339(latest.started_at),
            vllm_version=latest.report.get("vllmVersion", ""),
            image=server.image if server is not None else "",
            gpu_memory_utilization=_utilization(latest.report) or pod.server_utilization,
            max_model_len=kv.get("maxModelLen") or pod.server_context,
            kv_cache_gib=kv.get("memoryGiB"),
            kv_cache_tokens=kv.get("tokens"),
            max_concurrency=kv.get("maxConcurrency"),
            basis=basis,
        )
    if before is not None and before.basis == basis:
        return before
    return None


def _utilization(report: StartReport) -> float | None:
    """The run's own --gpu-memory-utilization, as its launcher reported it (a replica's own setting
    overrides the pod spec's: children/replicas.py)."""
    value = report.get("gpuMemoryUtilization")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
