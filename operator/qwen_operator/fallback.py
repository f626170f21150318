"""The out-of-memory fallback: which context the servers run with after a replica did not fit.

Pure functions on plain data. `detect` turns the pods' container statuses into failures;
`decide` turns the request, the memory plan, the history kept in status and those failures
into the effective context. Everything it needs to stay idempotent lives in
`status.context.history`: a failure already handled there (pod uid and restart count), or
reported about a context other than the one in force, never lowers the context again, so
repeated events and operator restarts converge on the same answer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from . import api, termination
from .status import ContextReport, Event, Problem

STEP = 1024
"""Contexts derived from vLLM's estimate are multiples of this many tokens."""
HISTORY_LIMIT = 20
"""Reductions kept in status.context.history (the oldest go first)."""
DETAIL_LIMIT = 512


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
    estimate: int | None
    detail: str

    @property
    def memory(self) -> bool:
        return self.reason in termination.MEMORY_REASONS

    @property
    def key(self) -> tuple[str, int]:
        return (self.uid, self.restart_count)


def _detail(reason: str, record: Mapping[str, Any] | None, terminated: Mapping[str, Any]) -> str:
    if reason == "OOMKilled":
        text = "the kernel killed the container for exceeding its memory limit"
    else:
        text = str((record or {}).get("message") or terminated.get("message") or "")
    said = record or {}
    figures = [f"{k}={said[k]}" for k in ("neededGiB", "availableGiB", "phase") if k in said]
    text = " ".join(text.split())
    full = f"{text} ({', '.join(figures)})" if figures else text
    return full if len(full) <= DETAIL_LIMIT else full[: DETAIL_LIMIT - 3] + "..."


def _failure(pod: Mapping[str, Any], terminated: Mapping[str, Any], restart_count: int) -> Failure | None:
    if terminated.get("exitCode") == 0 and terminated.get("reason") != "OOMKilled":
        return None
    record = termination.report(terminated)
    reason = termination.reason(terminated)
    meta = pod.get("metadata") or {}
    return Failure(
        pod=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        restart_count=restart_count,
        reason=reason,
        context=termination.reported_context(record) or termination.context_of(pod),
        estimate=termination.estimate(record),
        detail=_detail(reason, record, terminated),
    )


def detect(pods: Sequence[Mapping[str, Any]]) -> list[Failure]:
    """Failed runs of the server container that still matter: the pod is not serving since.

    A container that is ready again got past its failure, and a pod being deleted is on
    its way out; neither says anything about the context now.
    """
    found: list[Failure] = []
    for pod in pods:
        cs = termination.server_status(pod)
        if cs is None or (pod.get("metadata") or {}).get("deletionTimestamp") or cs.get("ready"):
            continue
        count = int(cs.get("restartCount") or 0)
        current = (cs.get("state") or {}).get("terminated")
        last = (cs.get("lastState") or {}).get("terminated")
        for terminated, restarts in ((current, count + 1), (last, count)):
            failure = _failure(pod, terminated, restarts) if terminated else None
            if failure is not None:
                found.append(failure)
    return found


RESET_ANNOTATION = f"{api.GROUP}/context-reset"
"""Set it to a new value to try the request again without a spec change (the cause is fixed)."""


def basis(res: api.QwenThinkingDeployment) -> str:
    """A digest of the spec fields that decide whether a context fits in the GPUs.

    Reductions made under another basis no longer apply: changing the model, GPUs, runtime
    or the request starts again from the request (or the plan). Scaling, pausing, sampling
    or the fallback's own settings keep what was learnt, so a scale-up does not crash again.
    The reset annotation, which the operator only reads, is part of it.
    """
    spec = res.spec
    fit = {
        "reset": res.metadata.annotations.get(RESET_ANNOTATION, ""),
        "model": [spec.model.id, spec.model.revision],
        "parallelism": spec.parallelism.model_dump(mode="json"),
        "maxModelLen": spec.context.max_model_len,
        "runtime": spec.runtime.model_dump(mode="json"),
        "gpu": spec.gpu.model_dump(mode="json"),
        "scheduling": spec.scheduling.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(fit, sort_keys=True).encode()).hexdigest()[:12]


def next_context(current: int, estimate: int | None, steps: Sequence[int], floor: int) -> int | None:
    """The context to try after a memory failure at `current`, or None at the floor.

    vLLM's estimate, when it printed one, is the largest context that fits: take it,
    rounded down to a multiple of STEP. Without one, the next lower step of the ladder.
    Never below the floor.
    """
    if current <= floor:
        return None
    if estimate is not None and 0 < estimate < current:
        wanted = estimate // STEP * STEP
    else:
        wanted = max((s for s in steps if s < current), default=floor)
    return max(wanted, floor)


@dataclass(frozen=True)
class Decision:
    """The context in force and what this pass learnt."""

    requested: int
    basis: str
    """Digest of the fit-deciding spec fields (see `basis`)."""
    start: int
    """The request, or the plan with preflight: where a new basis starts."""
    effective: int
    planned: int | None
    history: list[dict[str, Any]]
    reduced: dict[str, Any] | None = None
    """The history entry this pass added (the StatefulSet changes with it)."""
    problem: Problem | None = None
    """A memory failure the fallback cannot cure: at the floor, or the fallback is off."""
    explained: frozenset[str] = field(default_factory=frozenset)
    """Pods whose crash the fallback accounts for (not a problem while it rolls them)."""

    def report(self, generation: int | None) -> ContextReport:
        """status.context, the ContextReduced condition and the pods explained, for the status."""
        ctx: dict[str, Any] = {"requested": self.requested, "effective": self.effective}
        if self.planned is not None:
            ctx["planned"] = self.planned
        if self.history:
            ctx["history"] = self.history
        return ContextReport(ctx, condition(self, generation), self.explained)


def start_context(ctx: api.ContextSpec, planned: int | None) -> int:
    """The request, or with preflight the plan when less fits (tried at the floor at worst)."""
    if ctx.preflight and planned is not None and planned < ctx.max_model_len:
        return max(planned, ctx.min_model_len)
    return ctx.max_model_len


def _in_force(history: Sequence[Mapping[str, Any]], digest: str) -> list[Mapping[str, Any]]:
    return [h for h in history if h.get("basis") == digest]


def _key(entry: Mapping[str, Any]) -> tuple[str, int]:
    return (str(entry.get("podUID", "")), int(entry.get("restartCount") or 0))


def decide(
    res: api.QwenThinkingDeployment,
    previous: Mapping[str, Any] | None,
    planned: int | None,
    failures: Sequence[Failure],
    now: str,
) -> Decision:
    """The effective context given the last status.context, the plan and the pods' failures."""
    ctx = res.spec.context
    history = [dict(h) for h in (previous or {}).get("history") or []]
    digest = basis(res)
    start = start_context(ctx, planned)
    in_force = _in_force(history, digest)
    current = start if not in_force else min(start, int(in_force[-1]["to"]))
    current = max(current, ctx.min_model_len)
    handled = {_key(h) for h in history}
    memory = [f for f in failures if f.memory]
    fresh = [f for f in memory if f.context == current and f.key not in handled]
    base = Decision(ctx.max_model_len, digest, start, current, planned, history)
    explained = frozenset(f.pod for f in memory if f not in fresh)
    if not fresh:
        return replace(base, explained=explained)
    if not ctx.fallback:
        off = _not_cured(fresh[0], "the fallback is off (spec.context.fallback)")
        return replace(base, explained=explained, problem=off)
    choices = [(next_context(current, f.estimate, ctx.fallback_steps, ctx.min_model_len), f) for f in fresh]
    target, cause = max(choices, key=lambda c: c[0] or 0)
    if target is None:
        floor = f"the context is at spec.context.minModelLen ({ctx.min_model_len})"
        exhausted = _not_cured(cause, floor, "ContextFallbackExhausted")
        return replace(base, explained=explained, problem=exhausted)
    entry = {
        "time": now, "from": current, "to": target, "reason": cause.reason, "pod": cause.pod,
        "podUID": cause.uid, "restartCount": cause.restart_count, "basis": digest, "detail": cause.detail,
    }  # fmt: skip
    others = frozenset(f.pod for f in memory)
    history = [*history, entry][-HISTORY_LIMIT:]
    return Decision(ctx.max_model_len, digest, start, target, planned, history, entry, explained=others)


def _not_cured(failure: Failure, why: str, reason: str | None = None) -> Problem:
    message = (
        f"pod {failure.pod} ran out of memory at {failure.context} tokens ({failure.reason}) and {why}; "
        "use more or larger GPUs per replica, kvCacheDtype fp8, or a lower minModelLen"
    )
    return Problem(reason or failure.reason, message)


def condition(decision: Decision, generation: int | None) -> dict[str, Any]:
    """ContextReduced: True while the servers run with less than requested, and why."""
    cond: dict[str, Any] = {"type": "ContextReduced"}
    if decision.effective >= decision.requested:
        cond |= {"status": "False", "reason": "AsRequested",
                 "message": f"running the {decision.requested} tokens requested"}  # fmt: skip
    elif decision.effective < decision.start:
        steps = _in_force(decision.history, decision.basis)
        last = steps[-1]
        cond |= {
            "status": "True",
            "reason": "OutOfMemory",
            "message": f"running {decision.effective} of the {decision.requested} tokens requested after "
            f"{len(steps)} out-of-memory fallback(s); last: {last.get('reason')} on pod {last.get('pod')} "
            f"at {last.get('from')} tokens",
        }
    else:
        cond |= {
            "status": "True",
            "reason": "MemoryPlan",
            "message": f"running {decision.effective} of the {decision.requested} tokens requested: "
            f"the memory plan fits {decision.planned}",
        }
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def events(decision: Decision) -> list[Event]:
    """A Warning when this pass lowered the context."""
    step = decision.reduced
    if step is None:
        return []
    message = (
        f"Lowered the context from {step['from']} to {step['to']} tokens after {step['reason']} "
        f"on pod {step['pod']}: {step['detail']}"
    )
    return [Event("Warning", "ContextReduced", message[:1024])]
