"""The resource's status, computed from what the cluster shows: pure functions, no I/O.

kstatus conventions (what Flux, Argo CD and `kubectl wait` read): `Ready` says whether the
servers match the spec, `Reconciling` is True while the operator or Kubernetes is still
moving towards it, `Stalled` is True when it cannot get there without a person. Reasons are
the ones a person can act on, and `lastTransitionTime` moves only when `status` flips.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import render, termination
from .api import QwenThinkingDeployment

READY, RECONCILING, STALLED = "Ready", "Reconciling", "Stalled"
OWN_KEYS = ("observedGeneration", "phase", "replicas", "readyReplicas", "selector", "endpoint", "context",
            "conditions")  # fmt: skip
"""The status keys the operator writes (Kopf keeps its own records under `status.kopf`)."""
MESSAGE_LIMIT = 1024
IMAGE_PULL_REASONS = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull")


@dataclass(frozen=True)
class Problem:
    """Why the servers cannot become ready without someone acting."""

    reason: str
    message: str


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the resource."""

    type: str
    reason: str
    message: str


def now_rfc3339(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."


def _container_problem(pod_name: str, status: Mapping[str, Any]) -> Problem | None:
    waiting = (status.get("state") or {}).get("waiting") or {}
    reason = str(waiting.get("reason") or "")
    container = status.get("name", "?")
    if reason in IMAGE_PULL_REASONS:
        detail = waiting.get("message") or f"cannot pull image {status.get('image', '')}"
        return Problem("ImagePullBackOff", _short(f"pod {pod_name} container {container}: {detail}"))
    if reason == "CrashLoopBackOff":
        last = (status.get("lastState") or {}).get("terminated") or {}
        detail = f"exit code {last.get('exitCode', '?')}"
        if last.get("reason"):
            detail += f" ({last['reason']})"
        if last.get("message"):
            detail += f": {last['message']}"
        # No restart count in the message: it would change the status (and post an event) per crash.
        message = f"pod {pod_name} container {container} keeps crashing, {detail}"
        return Problem(_crash_reason(last), _short(message))
    return None


def _crash_reason(terminated: Mapping[str, Any]) -> str:
    """The launcher's reason (InvalidArguments, ...) when it said one, else CrashLoopBackOff."""
    said = termination.reason(terminated) if terminated else ""
    known = said in termination.LAUNCHER_REASONS or said == "OOMKilled"
    return said if known and said != "Unknown" else "CrashLoopBackOff"


def _unschedulable(pod: Mapping[str, Any]) -> Problem | None:
    status = pod.get("status") or {}
    if status.get("phase", "Pending") != "Pending":
        return None
    for cond in status.get("conditions") or []:
        scheduled = cond.get("type") == "PodScheduled" and cond.get("status") == "False"
        if scheduled and cond.get("reason") == "Unschedulable":
            name = pod["metadata"]["name"]
            return Problem("Unschedulable", _short(f"pod {name}: {cond.get('message', '')}"))
    return None


def pod_problem(pods: Sequence[Mapping[str, Any]], explained: frozenset[str] = frozenset()) -> Problem | None:
    """The most actionable problem among the pods: image pulls, then crashes, then scheduling.

    Crashes of the `explained` pods are left out: the context fallback is acting on them.
    """
    found: list[Problem] = []
    for pod in sorted(pods, key=lambda p: str(p["metadata"]["name"])):
        name = pod["metadata"]["name"]
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        status = pod.get("status") or {}
        statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
        for cs in statuses:
            problem = _container_problem(name, cs)
            if problem and not (name in explained and problem.reason != "ImagePullBackOff"):
                found.append(problem)
        problem = _unschedulable(pod)
        if problem:
            found.append(problem)
    rank = {"ImagePullBackOff": 0, "Unschedulable": 2}
    return min(found, key=lambda p: rank.get(p.reason, 1), default=None)


@dataclass(frozen=True)
class ContextReport:
    """What the context fallback contributes to the status."""

    status: dict[str, Any]
    """status.context: requested, effective, planned, history."""
    condition: dict[str, Any] | None = None
    """ContextReduced."""
    explained: frozenset[str] = frozenset()
    """Pods whose crash the fallback accounts for."""


@dataclass(frozen=True)
class Rollout:
    """What the StatefulSet reports, reduced to what the status needs."""

    exists: bool
    replicas: int
    ready: int
    updated: int
    settled: bool
    """The StatefulSet controller has seen the latest StatefulSet spec and finished rolling."""


def rollout(sts: Mapping[str, Any] | None, want: int) -> Rollout:
    if sts is None:
        return Rollout(False, 0, 0, 0, False)
    st = sts.get("status") or {}
    meta = sts.get("metadata") or {}
    observed = int(st.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
    replicas = int(st.get("replicas") or 0)
    updated = int(st.get("updatedReplicas") or 0)
    revisions_equal = st.get("currentRevision") == st.get("updateRevision") or updated >= replicas
    spec_replicas = (sts.get("spec") or {}).get("replicas")
    settled = observed and revisions_equal and spec_replicas == want and replicas == want and updated >= want
    return Rollout(True, replicas, int(st.get("readyReplicas") or 0), updated, settled)


def _phase(want: int, ro: Rollout, problem: Problem | None) -> str:
    if ro.settled and ro.ready >= want and problem is None:
        return "Ready"
    if problem is None:
        return "Progressing"
    if ro.ready > 0:
        return "Degraded"
    return "Pending" if problem.reason == "Unschedulable" else "Failed"


def _progress_message(want: int, ro: Rollout) -> str:
    if not ro.exists:
        return "creating the StatefulSet"
    if ro.updated < min(want, ro.replicas):
        return f"rolling out: {ro.updated} of {want} replicas updated, {ro.ready} ready"
    return f"{ro.ready} of {want} replicas ready"


def conditions_for(
    phase: str, want: int, ro: Rollout, problem: Problem | None, paused: bool, generation: int | None
) -> list[dict[str, Any]]:
    """Ready, Reconciling and Stalled for a valid spec (no timestamps yet)."""
    if phase == "Ready":
        ready_msg = "scaled to zero" if want == 0 else f"{ro.ready} of {want} replicas ready"
        ready = ("True", "ScaledToZero" if want == 0 else "Ready", ready_msg)
    elif problem is not None:
        ready = ("False", problem.reason, problem.message)
    else:
        ready = ("False", "Progressing", _progress_message(want, ro))
    if paused:
        reconciling = ("False", "Paused", "spec.paused is true: the operator does not change the children")
    elif phase == "Progressing":
        reconciling = ("True", "Progressing", _progress_message(want, ro))
    else:
        reconciling = ("False", phase, "")
    stalled = ("True", problem.reason, problem.message) if problem else ("False", phase, "")
    return [
        _cond(READY, *ready, generation),
        _cond(RECONCILING, *reconciling, generation),
        _cond(STALLED, *stalled, generation),
    ]


def _cond(type_: str, status: str, reason: str, message: str, generation: int | None) -> dict[str, Any]:
    cond: dict[str, Any] = {"type": type_, "status": status, "reason": reason, "message": message}
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def merge_conditions(
    previous: Sequence[Mapping[str, Any]], new: Sequence[dict[str, Any]], now: str
) -> list[dict[str, Any]]:
    """Keep lastTransitionTime unless status flipped; keep conditions others own (ContextReduced)."""
    before = {c.get("type"): c for c in previous}
    out = []
    for cond in new:
        old = before.get(cond["type"])
        same = old is not None and old.get("status") == cond["status"] and old.get("lastTransitionTime")
        out.append({**cond, "lastTransitionTime": old["lastTransitionTime"] if same and old else now})
    mine = {c["type"] for c in new}
    out += [dict(c) for c in previous if c.get("type") not in mine]
    return out


def compute(
    res: QwenThinkingDeployment,
    generation: int | None,
    sts: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    previous: Mapping[str, Any],
    now: str,
    blocked: Problem | None = None,
    context: ContextReport | None = None,
) -> dict[str, Any]:
    """The status for a valid resource, given its StatefulSet, pods and last status.

    `blocked` is a problem the operator itself hit (a child name taken by someone else, GPUs
    too small for the weights, an out-of-memory the fallback cannot cure); `context` is what
    the fallback decided (status.context, the ContextReduced condition, the pods it explains).
    """
    want = res.spec.replicas
    ro = rollout(sts, want)
    requested = res.spec.context.max_model_len
    ctx = context or ContextReport({"requested": requested, "effective": requested})
    problem = blocked or pod_problem(pods, ctx.explained)
    phase = _phase(want, ro, problem)
    conds = conditions_for(phase, want, ro, problem, res.spec.paused, generation)
    if ctx.condition is not None:
        conds.append(ctx.condition)
    status: dict[str, Any] = {
        "phase": phase,
        "replicas": ro.replicas,
        "readyReplicas": ro.ready,
        "selector": render.selector_string(res.metadata.name),
        "endpoint": render.endpoint(res),
        "context": ctx.status,
        "conditions": merge_conditions(previous.get("conditions") or [], conds, now),
    }
    if generation is not None:
        status["observedGeneration"] = generation
    return status


def invalid(
    name: str,
    generation: int | None,
    sts: Mapping[str, Any] | None,
    field: str,
    message: str,
    previous: Mapping[str, Any],
    now: str,
) -> dict[str, Any]:
    """The status of a resource the operator cannot render: Failed, Stalled=True InvalidSpec."""
    text = _short(f"{field}: {message}")
    ro = rollout(sts, -1)
    conds = [
        _cond(READY, "False", "InvalidSpec", text, generation),
        _cond(RECONCILING, "False", "InvalidSpec", "", generation),
        _cond(STALLED, "True", "InvalidSpec", text, generation),
    ]
    status: dict[str, Any] = {
        "phase": "Failed",
        "replicas": ro.replicas,
        "readyReplicas": ro.ready,
        "selector": render.selector_string(name),
        "conditions": merge_conditions(previous.get("conditions") or [], conds, now),
    }
    for key in ("endpoint", "context"):
        if previous.get(key) is not None:
            status[key] = previous[key]
    if generation is not None:
        status["observedGeneration"] = generation
    return status


def with_error(previous: Mapping[str, Any], generation: int | None, error: str, now: str) -> dict[str, Any]:
    """The last status with Reconciling=True reason ReconcileError: the operator keeps retrying."""
    cond = _cond(RECONCILING, "True", "ReconcileError", _short(f"retrying: {error}"), generation)
    return {**own(previous), "conditions": merge_conditions(previous.get("conditions") or [], [cond], now)}


def own(status: Mapping[str, Any] | None) -> dict[str, Any]:
    """The part of a status the operator writes, for comparison (None values dropped)."""
    return {k: v for k, v in (status or {}).items() if k in OWN_KEYS and v is not None}


def status_patch(previous: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any] | None:
    """The merge patch that turns `previous` into `new` for our keys, or None when equal."""
    old = own(previous)
    if old == own(new):
        return None
    patch: dict[str, Any] = dict(new)
    for key in old:
        if key not in new:
            patch[key] = None  # merge patch: remove what we no longer report
    return patch


def _by_type(conds: Sequence[Mapping[str, Any]] | None) -> dict[str, Mapping[str, Any]]:
    return {str(c.get("type")): c for c in conds or []}


def transition_events(previous: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[Event]:
    """Events for condition changes a person wants in `kubectl describe`; nothing when unchanged."""
    old, cur = _by_type((previous or {}).get("conditions")), _by_type(new.get("conditions"))
    events: list[Event] = []
    stalled, was = cur.get(STALLED), old.get(STALLED)
    if stalled and stalled.get("status") == "True":
        before = (was or {}).get("status"), (was or {}).get("reason"), (was or {}).get("message")
        if before != ("True", stalled.get("reason"), stalled.get("message")):
            events.append(Event("Warning", str(stalled.get("reason")), str(stalled.get("message"))))
    elif was and was.get("status") == "True" and stalled:
        events.append(Event("Normal", "Recovered", f"no longer stalled ({was.get('reason')})"))
    ready, was_ready = cur.get(READY), old.get(READY)
    if ready and ready.get("status") == "True" and (not was_ready or was_ready.get("status") != "True"):
        events.append(Event("Normal", str(ready.get("reason")), str(ready.get("message"))))
    return events
