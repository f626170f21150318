"""One reconciliation of one resource: read, render, apply what differs, write status if changed.

Level-triggered and idempotent: it reads the resource and its children fresh from the
apiserver every time, so a restarted operator (or one killed half-way) simply converges.
Writes happen only when something differs, which is what keeps an idle cluster idle.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import api, diff, fallback, metrics, planner, render, status
from .kube import FIELD_MANAGER, ApiError, Kube

log = logging.getLogger("qwen_operator.reconciler")
Key = tuple[str, str]
Planned = tuple[dict[str, Any], dict[str, Any] | None, str]
"""A child to apply: the desired manifest, the live object (None: missing), and why."""


@dataclass
class Outcome:
    """What one reconciliation did (for metrics, logs and tests)."""

    result: str
    applied: list[str] = field(default_factory=list)
    events: list[status.Event] = field(default_factory=list)
    status_written: bool = False


def _controller(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return {}


def ours(live: Mapping[str, Any], res: api.QwenThinkingDeployment) -> bool:
    """The child belongs to this resource; or to an earlier one of the same name (deleted and
    created again before garbage collection came); or it was ours and got orphaned
    (`kubectl delete --cascade=orphan`): no controller, and our field manager applied it.
    Applying takes such a child over, owner reference and all; anything else is left alone."""
    ref = _controller(live)
    if ref:
        return ref.get("uid") == res.metadata.uid or (
            ref.get("kind") == api.KIND and ref.get("name") == res.metadata.name
        )
    managers = {m.get("manager") for m in (live.get("metadata") or {}).get("managedFields") or []}
    return FIELD_MANAGER in managers


def _too_small(res: api.QwenThinkingDeployment, plan: planner.Plan | None) -> status.Problem | None:
    """With preflight, GPUs that cannot hold the weights (and a KV cache) get no crash loop."""
    if plan is None or plan.planned > 0 or not res.spec.context.preflight:
        return None
    return status.Problem("InsufficientGPUMemory", plan.explain())


def _namespace_terminating(exc: Exception) -> bool:
    """Admission refuses new objects in a namespace being deleted (403, not an RBAC denial)."""
    return isinstance(exc, ApiError) and exc.status == 403 and "because it is being terminated" in exc.message


def _immutable(exc: ApiError, desired: Mapping[str, Any]) -> bool:
    """The apiserver refused to change a StatefulSet field that is fixed after creation."""
    return exc.status == 422 and desired["kind"] == "StatefulSet" and "Forbidden" in exc.message


def _ident(manifest: Mapping[str, Any]) -> str:
    return f"{manifest['kind']} {manifest['metadata']['name']}"


def apply_events(desired: Mapping[str, Any], live: Mapping[str, Any] | None, why: str) -> list[status.Event]:
    """What a person wants to read in `kubectl describe` about one apply."""
    what = _ident(desired)
    if why == "missing":
        return [status.Event("Normal", "Created", f"Created {what}")]
    fields = [f for f in diff.changed_fields(live, desired) if not f.startswith("metadata.annotations")]
    if why == "drifted":
        detail = ", ".join(fields) or "managed fields"
        return [status.Event("Normal", "DriftReverted", f"Reverted a manual change to {what}: {detail}")]
    events = []
    if desired["kind"] == "StatefulSet" and live is not None:
        before, after = (live.get("spec") or {}).get("replicas"), desired["spec"]["replicas"]
        if before != after:
            message = f"Scaled {what} from {before} to {after} replicas"
            events.append(status.Event("Normal", "Scaled", message))
            fields = [f for f in fields if f != "spec.replicas"]
    if fields or not events:
        events.append(status.Event("Normal", "Updated", f"Updated {what}: {', '.join(fields) or 'metadata'}"))
    return events


class Reconciler:
    """Reconciles resources by (namespace, name); safe to call from several threads for different keys."""

    def __init__(self, kube: Kube, clock: Callable[[], str] = status.now_rfc3339) -> None:
        self.kube = kube
        self.clock = clock

    def reconcile(self, key: Key) -> Outcome:
        started = time.perf_counter()
        try:
            outcome = self._reconcile(*key)
        except Exception as exc:
            if not _namespace_terminating(exc):
                metrics.RECONCILIATIONS.labels(result="error").inc()
                self._report_error(key, exc)
                raise
            # The namespace is being deleted, the resource with it: nothing to build or retry.
            log.info("%s/%s: namespace is being deleted; not applying", *key)
            outcome = Outcome("terminating")
        finally:
            metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
        metrics.RECONCILIATIONS.labels(result=outcome.result).inc()
        if outcome.applied or outcome.status_written:
            log.info(
                "%s/%s: %s; applied [%s]; status %s", key[0], key[1], outcome.result,
                ", ".join(outcome.applied), "written" if outcome.status_written else "unchanged",
            )  # fmt: skip
        return outcome

    def _report_error(self, key: Key, exc: Exception) -> None:
        """Say in the status (and once in an event) that reconciling fails and is retried."""
        try:
            body = self.kube.get(api.KIND, *key)
            if body is None:
                return
            previous = body.get("status") or {}
            new = status.with_error(previous, body["metadata"].get("generation"), str(exc), self.clock())
            patch = status.status_patch(previous, new)
            if patch is None:
                return
            self.kube.patch_status(key[0], key[1], patch)
            before = {c.get("type"): c.get("reason") for c in previous.get("conditions") or []}
            if before.get(status.RECONCILING) != "ReconcileError":
                self.kube.post_event(body, "Warning", "ReconcileError", f"retrying: {exc}", self.clock())
        except Exception as again:  # the apiserver may be what fails; the retry will tell
            log.debug("%s/%s: could not report the error: %s", key[0], key[1], again)

    def _reconcile(self, namespace: str, name: str) -> Outcome:
        body = self.kube.get(api.KIND, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            metrics.PHASE_TRACKER.set((namespace, name), None)
            metrics.REDUCED_TRACKER.set((namespace, name), False)
            return Outcome("gone")
        previous = body.get("status") or {}
        generation = body["metadata"].get("generation")
        sts = self.kube.get("StatefulSet", namespace, name)
        try:
            res = api.parse_resource(body)
        except api.InvalidResource as exc:
            new = status.invalid(name, generation, sts, exc.field, exc.message, previous, self.clock())
            return self._finish(body, previous, new, Outcome("invalid"))
        plan = self._plan_memory(res)
        planned = None if plan is None else plan.planned
        pods = self.kube.list("Pod", namespace, render.selector_string(name))
        failures = [] if res.spec.paused else fallback.detect(pods)  # paused: the context stays too
        decision = fallback.decide(res, previous.get("context"), planned, failures, self.clock())
        monitor = self.kube.serves(render.SERVICE_MONITOR_API, "servicemonitors")
        children = render.render(res, decision.effective, service_monitor=monitor)
        outcome = Outcome("paused" if res.spec.paused else "unchanged")
        blocked = _too_small(res, plan)
        if blocked is not None:
            outcome.result = "blocked"
        elif not res.spec.paused:
            sts, blocked = self._apply_all(res, children, sts, outcome)
        if decision.reduced is not None:
            metrics.CONTEXT_REDUCTIONS.labels(reason=decision.reduced["reason"]).inc()
            outcome.events += fallback.events(decision)
        report = decision.report(generation)
        new = status.compute(
            res, generation, sts, pods, previous, self.clock(), blocked or decision.problem, report
        )
        if blocked is None or blocked.reason != "InsufficientGPUMemory":
            outcome.events += planner.events(res, (previous.get("context") or {}).get("planned"), planned)
        return self._finish(body, previous, new, outcome)

    def _plan_memory(self, res: api.QwenThinkingDeployment) -> planner.Plan | None:
        """The memory plan; GPU memory from the spec, else the smallest GPU node's label."""
        if planner.KNOWN.get(res.spec.model.id) is None:
            return None
        memory: float | None = res.spec.gpu.memory_gi_b
        if memory is None:
            nodes = self.kube.list("Node", "", planner.node_selector(res.spec))
            memory = planner.smallest_gpu_memory_gib(nodes)
        return planner.plan_for(res.spec, memory)

    def _apply_all(
        self,
        res: api.QwenThinkingDeployment,
        children: list[dict[str, Any]],
        sts: dict[str, Any] | None,
        outcome: Outcome,
    ) -> tuple[dict[str, Any] | None, status.Problem | None]:
        """Apply each child that differs; returns the StatefulSet as it is now, and any problem.

        Every change is first applied as a server-side dry run, so a spec the apiserver rejects
        (a bad quantity the schema let through) changes no child at all: all or nothing.
        """
        plan, problem = self._plan(res, children, sts)
        if problem is None:
            problem = self._dry_run(plan)
        if problem is not None:
            outcome.result = "invalid" if problem.reason == "InvalidSpec" else "blocked"
            return sts, problem
        for desired, live, why in plan:
            applied = self._apply(desired, live)
            if applied is None:  # replaced: its deletion event brings the next pass, which creates it
                message = f"Replacing {_ident(desired)}, pods kept: a field fixed at creation changed"
                outcome.events.append(status.Event("Normal", "Replacing", message))
                applied = dict(live or {})
            else:
                outcome.events += apply_events(desired, live, why)
            outcome.applied.append(_ident(desired))
            outcome.result = "changed"
            if desired["kind"] == "StatefulSet":
                sts = applied
        return sts, None

    def _plan(
        self, res: api.QwenThinkingDeployment, children: list[dict[str, Any]], sts: dict[str, Any] | None
    ) -> tuple[list[Planned], status.Problem | None]:
        """The children to apply, with their live objects and why; a name taken by another owner stops."""
        plan: list[Planned] = []
        for child in children:
            desired = diff.with_hash(child)
            kind, cname = child["kind"], child["metadata"]["name"]
            live = sts if kind == "StatefulSet" else self.kube.get(kind, res.metadata.namespace, cname)
            if live is not None and not ours(live, res):
                message = f"{kind} {cname} exists and is not owned by this resource; rename or delete it"
                return [], status.Problem("NameConflict", message)
            if live is not None and live["metadata"].get("deletionTimestamp"):
                continue  # being deleted: its deletion event brings us back to create it anew
            why = diff.drift(desired, live)
            if why is not None:
                plan.append((desired, live, why))
        return plan, None

    def _dry_run(self, plan: list[Planned]) -> status.Problem | None:
        for desired, _, _ in plan:
            try:
                self.kube.apply(desired, dry_run=True)
            except ApiError as exc:
                if _immutable(exc, desired):
                    continue  # _apply replaces the StatefulSet
                # 500 "unable to convert": what SSA answers for a malformed quantity
                if exc.status not in (400, 422) and not (exc.status == 500 and "convert" in exc.message):
                    raise
                message = f"the apiserver rejects {_ident(desired)}: {exc.message}"
                return status.Problem("InvalidSpec", message)
        return None

    def _apply(self, desired: dict[str, Any], live: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The applied object, or None when the StatefulSet had to be deleted to change."""
        try:
            return self.kube.apply(desired)
        except ApiError as exc:
            if not _immutable(exc, desired) or live is None:
                raise
        # A StatefulSet field that cannot change (volumeClaimTemplates, ...): replace the
        # StatefulSet but keep its pods (orphaned, then adopted by the new one, then rolled).
        meta = desired["metadata"]
        self.kube.delete("StatefulSet", meta["namespace"], meta["name"], propagation="Orphan")
        return None

    def _finish(
        self, body: Mapping[str, Any], previous: Mapping[str, Any], new: dict[str, Any], outcome: Outcome
    ) -> Outcome:
        meta = body["metadata"]
        patch = status.status_patch(previous, new)
        if patch is not None:
            self.kube.patch_status(meta["namespace"], meta["name"], patch)
            outcome.status_written = True
        outcome.events += status.transition_events(previous, new)
        now = self.clock()
        for event in outcome.events:
            try:
                self.kube.post_event(body, event.type, event.reason, event.message, now)
            except ApiError as exc:  # an event is worth a log line, not a failed reconcile
                log.warning("could not post event %s on %s: %s", event.reason, meta["name"], exc)
        key = (meta["namespace"], meta["name"])
        metrics.PHASE_TRACKER.set(key, new.get("phase"))
        ctx = new.get("context") or {}
        metrics.REDUCED_TRACKER.set(key, int(ctx.get("effective") or 0) < int(ctx.get("requested") or 0))
        return outcome
