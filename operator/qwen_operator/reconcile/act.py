"""Step three of a reconciliation: carry out the plan (reconcile/plan.py), and decide nothing.

`act` runs the plan's operations in order: each lookup, dry run, apply, deletion, status patch
and event is the plan's, with its text and its time. The lookups come first; if any finds an
object, nothing is written and what they found goes back to the decision (`Kind.EXISTS`).
The first write the apiserver refuses ends the plan: its `Status` is read into a typed
refusal (reconcile/refusal.py), which goes back to the decision with what was written before
it; a refusal the decision does not answer (a conflict, an API not served yet, an outage) is
raised for the queue to retry. An event that cannot be posted is worth a log line, not a failed
reconcile.

Each object the apiserver returns is handed to `wrote` (the cache's write-through), so the next
reconciliation sees the operator's own writes at once; a deleted child the plan hides is handed
to `gone`, and a server pod the rollout deleted to `pod_deleted` (the next pass counts it as going,
and replaces no other before it serves again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from qwen_operator.process.kube import ApiError, KubeApi
from qwen_operator.reconcile import refusal, snapshot
from qwen_operator.reconcile.decide import Desired
from qwen_operator.reconcile.plan import Apply, Delete, DeletePod, Lookup, Operation, PatchStatus, Post

log = logging.getLogger("qwen_operator.reconcile.act")


def refusal_of(exc: ApiError, op: Operation) -> refusal.Refusal:
    """The typed refusal of the apiserver's answer to `op`."""
    if isinstance(op, DeletePod):
        return refusal.read(exc.status, exc.body, "Pod", op.ident)
    if isinstance(op, Apply | Delete | Lookup):
        kind = op.child.kind if isinstance(op, Delete) else op.kind
        return refusal.read(exc.status, exc.body, kind, op.ident)
    return refusal.read(exc.status, exc.body, "", "the status")


class Actor:
    """Carries out one `Desired.ops` through a `KubeApi`."""

    def __init__(
        self,
        kube: KubeApi,
        wrote: Callable[[Mapping[str, Any]], None] = lambda _: None,
        gone: Callable[[snapshot.Child], None] = lambda _: None,
        pod_deleted: Callable[[str, str], None] = lambda _ns, _uid: None,
    ) -> None:
        self.kube = kube
        self.wrote = wrote
        self.gone = gone
        """Told of each child deleted and hidden (the cache hides it until the watch reports it)."""
        self.pod_deleted = pod_deleted
        """Told (namespace, uid) of each server pod deleted: the cache shows it as being deleted."""

    def act(self, desired: Desired) -> refusal.Refusal | None:
        """Every operation of the plan, in order; the refusal that stopped it, if one did."""
        done: list[str] = []
        said: list[Any] = []
        found: list[snapshot.Child] = []
        for op in desired.ops:
            if found and not isinstance(op, Lookup):
                break
            if isinstance(op, Post):
                self._post(desired, op)
                continue
            try:
                if isinstance(op, Lookup):
                    found += self._lookup(op)
                    continue
                self._write(desired, op)
            except ApiError as exc:
                answer = refusal_of(exc, op)
                if answer.kind not in refusal.ANSWERED:
                    raise
                return replace(answer, done=tuple(done), said=tuple(said))
            if isinstance(op, Apply | Delete | DeletePod) and not (isinstance(op, Apply) and op.dry_run):
                done.append(op.ident)
                said += op.events
        return refusal.exists(tuple(found)) if found else None

    def _lookup(self, op: Lookup) -> list[snapshot.Child]:
        raw = self.kube.get(op.kind, op.namespace, op.name)
        return [] if raw is None else [snapshot.child_from(raw, op.kind)]

    def _write(self, desired: Desired, op: Apply | Delete | DeletePod | PatchStatus) -> None:
        if isinstance(op, Apply):
            returned = self.kube.apply(op.manifest, dry_run=op.dry_run)
            if not op.dry_run:
                self._record(returned)
        elif isinstance(op, Delete):
            child = op.child
            self._record(
                self.kube.delete(child.kind, child.namespace, child.name, propagation=op.propagation)
            )
            if op.hide:
                self.gone(child)
        elif isinstance(op, DeletePod):
            self.kube.delete_pod(op.namespace, op.name, op.uid)
            self.pod_deleted(op.namespace, op.uid)
        else:
            res = desired.resource
            self._record(self.kube.patch_status(res.namespace, res.name, op.patch))

    def _record(self, obj: Mapping[str, Any]) -> None:
        if obj.get("kind") and (obj.get("metadata") or {}).get("resourceVersion"):
            self.wrote(obj)

    def _post(self, desired: Desired, op: Post) -> None:
        event = op.event
        try:
            self.kube.post_event(desired.resource, event.type, event.reason, event.message, op.time)
        except ApiError as exc:  # an event is worth a log line, not a failed reconcile
            log.warning("could not post event %s on %s: %s", event.reason, desired.resource.name, exc)
