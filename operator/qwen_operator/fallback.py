"""The out-of-memory fallback: which context the servers run with after a replica did not fit.

Pure functions on typed data. `detect` turns the pods' container states into failures;
`decide` turns the request, the memory plan, the history kept in status and those failures
into a `Decision`: the effective context and what this pass learnt. Everything it needs to
stay idempotent lives in `status.context.history`: a failure already handled there (pod uid
and restart count), or reported about a context other than the one in force, never lowers
the context again, so repeated events and operator restarts converge on the same answer.
The status, its ContextReduced condition and the event are made from the Decision elsewhere
(status.py, events.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from qwen_runtime import record

from . import api, clock, facts
from .problems import Problem
from .vocabulary import CONTEXT_STEP, MEMORY_FAILURES, RESET_ANNOTATION, KubeletReason, Reason

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
        return self.reason in MEMORY_FAILURES

    @property
    def key(self) -> tuple[str, int]:
        return (self.uid, self.restart_count)


def _detail(ended: facts.Terminated) -> str:
    if ended.cause == KubeletReason.OOM_KILLED:
        text = "the kernel killed the container for exceeding its memory limit"
    else:
        text = str(ended.record.get("message") if ended.record else "") or ended.message
    said: dict[str, object] = dict(ended.record or {})
    figures = [f"{k}={said[k]}" for k in ("neededGiB", "availableGiB", "phase") if k in said]
    text = " ".join(text.split())
    full = f"{text} ({', '.join(figures)})" if figures else text
    return full if len(full) <= DETAIL_LIMIT else full[: DETAIL_LIMIT - 3] + "..."


def _failure(pod: facts.Pod, ended: facts.Terminated, restart_count: int) -> Failure | None:
    if not ended.failed:
        return None
    return Failure(
        pod=pod.name,
        uid=pod.uid,
        restart_count=restart_count,
        reason=ended.cause,
        context=record.max_model_len(ended.record) or pod.server_context,
        estimate=record.estimated_max_model_len(ended.record),
        detail=_detail(ended),
    )


def detect(pods: Sequence[facts.Pod]) -> list[Failure]:
    """Failed runs of the server container that still matter: the pod is not serving since.

    A container that is ready again got past its failure, and a pod being deleted is on
    its way out; neither says anything about the context now.
    """
    found: list[Failure] = []
    for pod in pods:
        server = pod.server
        if server is None or pod.deleting or server.ready:
            continue
        runs = ((server.terminated, server.restart_count + 1), (server.last_terminated, server.restart_count))
        for ended, restarts in runs:
            failure = _failure(pod, ended, restarts) if ended else None
            if failure is not None:
                found.append(failure)
    return found


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
    rounded down to a multiple of CONTEXT_STEP. Without one, the next lower step of the
    ladder. Never below the floor.
    """
    if current <= floor:
        return None
    if estimate is not None and 0 < estimate < current:
        wanted = estimate // CONTEXT_STEP * CONTEXT_STEP
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
    history: tuple[api.ContextStep, ...]
    reduced: api.ContextStep | None = None
    """The history entry this pass added (the StatefulSet changes with it)."""
    problem: Problem | None = None
    """A memory failure the fallback cannot cure: at the floor, or the fallback is off."""
    explained: frozenset[str] = field(default_factory=frozenset)
    """Pods whose crash the fallback accounts for (not a problem while it rolls them)."""

    @property
    def in_force(self) -> tuple[api.ContextStep, ...]:
        """The reductions made under the current basis."""
        return _in_force(self.history, self.basis)


def start_context(ctx: api.ContextSpec, planned: int | None) -> int:
    """The request, or with preflight the plan when less fits (tried at the floor at worst)."""
    if ctx.preflight and planned is not None and planned < ctx.max_model_len:
        return max(planned, ctx.min_model_len)
    return ctx.max_model_len


def _in_force(history: Sequence[api.ContextStep], digest: str) -> tuple[api.ContextStep, ...]:
    return tuple(h for h in history if h.basis == digest)


def decide(
    res: api.QwenThinkingDeployment,
    history: Sequence[api.ContextStep],
    planned: int | None,
    failures: Sequence[Failure],
    now: datetime,
) -> Decision:
    """The effective context given the history in status, the plan and the pods' failures."""
    ctx = res.spec.context
    digest = basis(res)
    start = start_context(ctx, planned)
    in_force = _in_force(history, digest)
    current = start if not in_force else min(start, in_force[-1].to)
    current = max(current, ctx.min_model_len)
    handled = {(h.pod_uid, h.restart_count) for h in history}
    memory = [f for f in failures if f.memory]
    fresh = [f for f in memory if f.context == current and f.key not in handled]
    base = Decision(ctx.max_model_len, digest, start, current, planned, tuple(history))
    explained = frozenset(f.pod for f in memory if f not in fresh)
    if not fresh:
        return replace(base, explained=explained)
    if not ctx.fallback:
        off = _not_cured(fresh[0], "the fallback is off (spec.context.fallback)", fresh[0].reason)
        return replace(base, explained=explained, problem=off)
    choices = [(next_context(current, f.estimate, ctx.fallback_steps, ctx.min_model_len), f) for f in fresh]
    target, cause = max(choices, key=lambda c: c[0] or 0)
    if target is None:
        floor = f"the context is at spec.context.minModelLen ({ctx.min_model_len})"
        exhausted = _not_cured(cause, floor, Reason.CONTEXT_FALLBACK_EXHAUSTED)
        return replace(base, explained=explained, problem=exhausted)
    step = api.ContextStep(
        time=clock.rfc3339(now), from_=current, to=target, reason=cause.reason, pod=cause.pod,
        pod_uid=cause.uid, restart_count=cause.restart_count, basis=digest, detail=cause.detail,
    )  # fmt: skip
    kept = (*history, step)[-HISTORY_LIMIT:]
    return replace(
        base, effective=target, history=kept, reduced=step, explained=frozenset(f.pod for f in memory)
    )


def _not_cured(failure: Failure, why: str, reason: str) -> Problem:
    message = (
        f"pod {failure.pod} ran out of memory at {failure.context} tokens ({failure.reason}) and {why}; "
        "use more or larger GPUs per replica, kvCacheDtype fp8, or a lower minModelLen"
    )
    return Problem(reason, message)
