"""The events a person reads in `kubectl describe`: one per change, never one per watch event.

Pure functions: each says what happened in words, from what the decision knows. The
reconciler posts them after the writes they describe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qwen_operator import api
from qwen_operator.api.vocabulary import ConditionType, EventReason, EventType, Remedy
from qwen_operator.reconcile import diff, snapshot
from qwen_operator.reconcile.status import Status, condition

MESSAGE_LIMIT = 1024


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the resource."""

    type: EventType
    reason: str
    """An EventReason, or the condition reason it announces."""
    message: str


def ident(manifest: Mapping[str, Any]) -> str:
    return f"{manifest['kind']} {manifest['metadata']['name']}"


def applied(desired: Mapping[str, Any], live: snapshot.Child | None, why: diff.Drift) -> list[Event]:
    """What one apply did, in words."""
    what = ident(desired)
    if why == diff.Drift.MISSING or live is None:
        return [Event(EventType.NORMAL, EventReason.CREATED, f"Created {what}")]
    fields = [
        f for f in diff.changed_fields(live.manifest, desired) if not f.startswith("metadata.annotations")
    ]
    if why == diff.Drift.DRIFTED:
        detail = ", ".join(fields) or "managed fields"
        return [
            Event(
                EventType.NORMAL, EventReason.DRIFT_REVERTED, f"Reverted a manual change to {what}: {detail}"
            )
        ]
    out = []
    if desired["kind"] == "StatefulSet":
        before, after = live.manifest["spec"].get("replicas"), desired["spec"]["replicas"]
        if before != after:
            out.append(
                Event(
                    EventType.NORMAL, EventReason.SCALED, f"Scaled {what} from {before} to {after} replicas"
                )
            )
            fields = [f for f in fields if f != "spec.replicas"]
    if fields or not out:
        out.append(
            Event(EventType.NORMAL, EventReason.UPDATED, f"Updated {what}: {', '.join(fields) or 'metadata'}")
        )
    return out


def created_together(said: list[Event]) -> list[Event]:
    """The children created in one pass as one `Created` event (one request, one line in
    `kubectl describe`), in the place of the first; the other events as they were."""
    created = [e for e in said if e.reason == EventReason.CREATED]
    if len(created) < 2:
        return said
    names = ", ".join(e.message.removeprefix("Created ") for e in created)
    merged = Event(EventType.NORMAL, EventReason.CREATED, f"Created {names}"[:MESSAGE_LIMIT])
    first = said.index(created[0])
    rest = [e for e in said if e.reason != EventReason.CREATED]
    return [*rest[:first], merged, *rest[first:]]


def deleted(child: snapshot.Child) -> Event:
    """A child the spec (or the served APIs) no longer asks for is gone."""
    return Event(
        EventType.NORMAL, EventReason.DELETED, f"Deleted {child.kind} {child.name}: no longer wanted"
    )


def replacing(what: str, pods_kept: bool = True, why: str = "a field fixed at creation changed") -> Event:
    """A StatefulSet keeps its pods (orphaned, then adopted); the download Job's pod goes with it
    (the new Job's pod resumes from the files already on the claim)."""
    kept = ", pods kept" if pods_kept else ""
    message = f"Replacing {what}{kept}: {why}"
    return Event(EventType.NORMAL, EventReason.REPLACING, message)


def replacing_pod(pod: str, revision: str, why: str) -> Event:
    """The rollout deleted a server pod: the StatefulSet recreates it from the new template."""
    message = f"Replacing pod {pod} with revision {revision}: {why}"
    return Event(EventType.NORMAL, EventReason.REPLACING_POD, message[:MESSAGE_LIMIT])


def restarting_pod(pod: str, why: str) -> Event:
    """A replica's own settings changed: its pod was deleted, the StatefulSet recreates it with
    the same template, and its launcher reads them at start (children/replicas.py)."""
    message = f"Restarting pod {pod} with its own settings: {why}"
    return Event(EventType.NORMAL, EventReason.RESTARTING_REPLICA, message[:MESSAGE_LIMIT])


def switching(kind: str, name: str, to: str) -> Event:
    """parallelism.pipeline crossed 1: one kind of workload gives way to the other."""
    message = f"Replacing {kind} {name} by a {to}: parallelism.pipeline changed; its pods go first"
    return Event(EventType.NORMAL, EventReason.REPLACING, message)


def cured(step: api.ContextStep) -> Event:
    """A Warning when this pass applied an out-of-memory cure: what, why, and vLLM's figures."""
    if step.remedy == Remedy.LOWER_UTILIZATION:
        message = (
            f"Lowered the GPU memory utilization from {step.utilization_from:g} to {step.utilization_to:g} "
            f"after {step.cause or step.reason} on pod {step.pod}: {step.detail}"
        )
        if step.replica:  # that replica's alone (children/replicas.py)
            message = (
                f"Lowered the GPU memory utilization of pod {step.replica} alone from "
                f"{step.utilization_from:g} to {step.utilization_to:g} after {step.cause or step.reason}: "
                f"{step.detail}; it takes it at its next start, the other replicas keep theirs"
            )
        if step.to < step.from_:
            message += f"; the memory plan at {step.utilization_to:g} fits {step.to} tokens"
        return Event(EventType.WARNING, EventReason.UTILIZATION_REDUCED, message[:MESSAGE_LIMIT])
    message = (
        f"Lowered the context from {step.from_} to {step.to} tokens after {step.reason} "
        f"on pod {step.pod}: {step.detail}"
    )
    return Event(EventType.WARNING, EventReason.CONTEXT_REDUCED, message[:MESSAGE_LIMIT])


def below_recommendation(before: int | None, after: int, recommended: int) -> list[Event]:
    """A Warning once, when the context in force falls below the model card's recommendation."""
    if after >= recommended or (before is not None and before < recommended):
        return []
    message = (
        f"the servers run with {after} tokens of context, below the {recommended} the model card strongly "
        "recommends for this thinking model: long reasoning may be cut short (spec.context)"
    )
    return [Event(EventType.WARNING, EventReason.CONTEXT_BELOW_RECOMMENDED, message)]


def planned(ctx: api.ContextSpec, before: int | None, planned: int | None) -> list[Event]:
    """One event when the plan changes and says the request does not fit."""
    if planned is None or planned == before or planned >= ctx.max_model_len:
        return []
    start = max(planned, ctx.min_model_len) if ctx.preflight else ctx.max_model_len
    action = f"starting at {start}" + ("" if ctx.preflight else " (preflight is off)")
    if planned < ctx.min_model_len:
        message = (
            f"the memory plan fits {planned} tokens, below minModelLen {ctx.min_model_len}: the weights "
            "leave too little GPU memory for the KV cache (more GPUs per replica, kvCacheDtype fp8 or "
            f"a lower minModelLen would help); {action}"
        )
        return [Event(EventType.WARNING, EventReason.INSUFFICIENT_GPU_MEMORY, message)]
    message = f"the memory plan fits {planned} of the {ctx.max_model_len} tokens requested; {action}"
    return [Event(EventType.NORMAL, EventReason.CONTEXT_PLANNED, message)]


def transitions(before: Status, after: Status) -> list[Event]:
    """Stalled (a Warning with its reason), recovered, ready: only when a condition changes."""
    out: list[Event] = []
    stalled, was = condition(after, ConditionType.STALLED), condition(before, ConditionType.STALLED)
    if stalled is not None and stalled.status == "True":
        if was is None or (was.status, was.reason, was.message) != ("True", stalled.reason, stalled.message):
            out.append(Event(EventType.WARNING, stalled.reason, stalled.message))
    elif was is not None and was.status == "True" and stalled is not None:
        out.append(Event(EventType.NORMAL, EventReason.RECOVERED, f"no longer stalled ({was.reason})"))
    ready, was_ready = condition(after, ConditionType.READY), condition(before, ConditionType.READY)
    if ready is not None and ready.status == "True" and (was_ready is None or was_ready.status != "True"):
        out.append(Event(EventType.NORMAL, ready.reason, ready.message))
    return out


def reconcile_error(error: str) -> Event:
    return Event(EventType.WARNING, EventReason.RECONCILE_ERROR, f"retrying: {error}")
