"""What stands between the servers and Ready, read from the pods: pure functions, no I/O.

A `Problem` will not go away without a person (kstatus `Stalled`): an image that cannot be
pulled, a crash loop, a pod that stayed unschedulable. A `Wait` will, given time: a pod
that the scheduler has not placed yet because its claim is still binding or a retry is due.
It is reported as `Reconciling` with the scheduler's message, and becomes the `Unschedulable`
problem only after `UNSCHEDULABLE_GRACE` seconds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from qwen_operator.api.vocabulary import CRASH_REASONS, IMAGE_PULL_FAILURES, KubeletReason, Reason
from qwen_operator.reconcile import snapshot

MESSAGE_LIMIT = 1024
UNSCHEDULABLE_GRACE = 60.0
"""Seconds a pod may stay unschedulable before it is a problem: long enough for a volume claim
to bind and for the scheduler's retries after one (seconds), short enough to page someone
about a GPU nobody has within the minute."""


@dataclass(frozen=True)
class Problem:
    """Why the servers cannot become ready without someone acting (Stalled=True)."""

    reason: str
    """A member of vocabulary.Reason, LauncherReason or KubeletReason."""
    message: str


@dataclass(frozen=True)
class Wait:
    """Why the servers are not ready yet, for a while (Reconciling=True)."""

    reason: str
    message: str
    recheck_after: float | None = None
    """Seconds until it would become a problem: look again then. None: the wait has no deadline,
    and the watched object's next change brings the next look (the download Job)."""


def short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."


def _crash_reason(ended: snapshot.Terminated | None) -> str:
    """The launcher's reason (InvalidArguments, ...) when it said a precise one, else CrashLoopBackOff."""
    cause = ended.cause if ended is not None else ""
    return cause if cause in CRASH_REASONS else Reason.CRASH_LOOP_BACK_OFF


def _container_problem(pod: str, cs: snapshot.Container) -> Problem | None:
    if cs.waiting_reason == KubeletReason.CREATE_CONTAINER_CONFIG_ERROR:
        detail = cs.waiting_message or "a Secret or ConfigMap it reads is missing"
        return Problem(
            Reason.CREATE_CONTAINER_CONFIG_ERROR, short(f"pod {pod} container {cs.name}: {detail}")
        )
    if cs.waiting_reason in IMAGE_PULL_FAILURES:
        detail = cs.waiting_message or f"cannot pull image {cs.image}"
        return Problem(Reason.IMAGE_PULL_BACK_OFF, short(f"pod {pod} container {cs.name}: {detail}"))
    if cs.waiting_reason == KubeletReason.CRASH_LOOP_BACK_OFF:
        last = cs.last_terminated
        detail = f"exit code {last.exit_code if last and last.exit_code is not None else '?'}"
        if last and last.reason:
            detail += f" ({last.reason})"
        if last and last.message:
            detail += f": {last.message}"
        # No restart count in the message: it would change the status (and post an event) per crash.
        return Problem(_crash_reason(last), short(f"pod {pod} container {cs.name} keeps crashing, {detail}"))
    return None


def _unschedulable(pod: snapshot.Pod, now: datetime) -> Problem | Wait | None:
    if pod.unschedulable is None:
        return None
    message = short(f"pod {pod.name}: {pod.unschedulable.message}")
    since = pod.unschedulable.since
    waited = (now - since).total_seconds() if since is not None else UNSCHEDULABLE_GRACE
    if waited >= UNSCHEDULABLE_GRACE:
        return Problem(Reason.UNSCHEDULABLE, message)
    grace = f"waiting for the scheduler (a problem after {UNSCHEDULABLE_GRACE:.0f} s): {message}"
    return Wait(Reason.SCHEDULING, grace, UNSCHEDULABLE_GRACE - waited)


ADMISSION: tuple[tuple[re.Pattern[str], Reason], ...] = (
    (re.compile(r"exceeded quota"), Reason.QUOTA_EXCEEDED),
    (re.compile(r"violates PodSecurity"), Reason.POD_SECURITY_VIOLATION),
    (re.compile(r"no PriorityClass with name"), Reason.PRIORITY_CLASS_NOT_FOUND),
    (
        re.compile(r"(maximum|minimum) \S+ usage per |limit to request ratio per "),
        Reason.LIMIT_RANGE_VIOLATED,
    ),
)
"""Which admission plugin refused, from the apiserver's own words (ResourceQuota, PodSecurity,
Priority, LimitRanger)."""


def admission_reason(message: str) -> Reason | None:
    return next((reason for pattern, reason in ADMISSION if pattern.search(message)), None)


def not_created(
    failures: Sequence[snapshot.CreateFailure], sts: snapshot.Child | None, pods: Sequence[snapshot.Pod]
) -> Problem | None:
    """The StatefulSet controller cannot create a pod (or its claim): its latest FailedCreate
    about this very StatefulSet, while pods are missing and no pod was created since (the
    controller retries with back-off, so a cause that went away soon leaves a newer pod)."""
    if sts is None:
        return None
    want = sts.manifest["spec"].get("replicas")
    live = [p for p in pods if not p.deleting]
    if not isinstance(want, int) or len(live) >= want:
        return None
    newest = max((p.created for p in live if p.created is not None), default=None)
    current = [
        (f.last_seen, f) for f in failures
        if f.owner_uid == sts.uid and f.last_seen is not None and (newest is None or f.last_seen > newest)
    ]  # fmt: skip
    if not current:
        return None
    _, latest = max(current, key=lambda seen: seen[0])
    reason = admission_reason(latest.message) or Reason.FAILED_CREATE
    return Problem(reason, short(f"{len(live)} of {want} pods exist; {latest.message}"))


def of_pods(
    pods: Sequence[snapshot.Pod],
    now: datetime,
    explained: frozenset[str] = frozenset(),
    creation: Problem | None = None,
) -> Problem | Wait | None:
    """The most actionable problem among the pods: image pulls, then pods that cannot be created
    (`creation`, from `not_created`) and crashes, then scheduling; else the first wait. Crashes of
    the `explained` pods are left out: the context fallback is acting on them."""
    found: list[Problem] = [] if creation is None else [creation]
    waits: list[Wait] = []
    for pod in sorted(pods, key=lambda p: p.name):
        if pod.deleting:
            continue
        problems, wait = _pod_problems(pod, now, pod.name in explained)
        found += problems
        waits += [] if wait is None else [wait]
    problem = _first(found)
    return problem if problem is not None else min(waits, key=lambda w: w.recheck_after or 0.0, default=None)


RANK: dict[str, int] = {Reason.IMAGE_PULL_BACK_OFF: 0, Reason.UNSCHEDULABLE: 2}
"""Image pulls first, scheduling last: the order in which a person can act on them."""


def _first(found: Sequence[Problem]) -> Problem | None:
    return min(found, key=lambda p: RANK.get(p.reason, 1), default=None)


def _pod_problems(pod: snapshot.Pod, now: datetime, explained: bool) -> tuple[list[Problem], Wait | None]:
    """One pod's problems (a crash the cures explain left out) and its wait for the scheduler."""
    found = []
    for cs in (*pod.init_containers, *pod.containers):
        problem = _container_problem(pod.name, cs)
        if problem and not (explained and problem.reason != Reason.IMAGE_PULL_BACK_OFF):
            found.append(problem)
    scheduling = _unschedulable(pod, now)
    if isinstance(scheduling, Problem):
        return [*found, scheduling], None
    return found, scheduling


def of_pod(pod: snapshot.Pod, now: datetime) -> Problem | None:
    """The one pod's most actionable problem, as `of_pods` ranks them (reconcile/rollout.py reads
    it to tell a failed canary)."""
    return _first(_pod_problems(pod, now, False)[0])
