"""Step three of a reconciliation: write what the decision asked for, and nothing else.

Children are applied all or nothing where the apiserver refuses their content. Only the
StatefulSet carries the user's free-form values (its pod template: tolerations, resources,
environment, image); every other child is made of values the schema has checked, so the
StatefulSet is the one the apiserver can refuse for its content. A new StatefulSet is applied
first, and its apply is its own test (its pods wait for the ConfigMap they mount, applied a
moment later); an existing one applied with other children is first applied as a server-side
dry run (a real update would roll pods onto the old launcher); alone, its apply is its own test.
A refusal of the first apply, real or dry, applies nothing and goes back to the decision as a
fact (`observe.Refusal`).

A ResourceQuota can refuse any child. A LoadBalancer or NodePort Service (what quotas commonly
limit) applied with others is dry-run first too, so its refusal applies nothing; a quota that
counts objects of another kind refuses a real apply, and what the pass applied before it stays.
Either way the resource reads Stalled/QuotaExceeded and the queue retries with back-off.

Then the applies, the status patch, and the events (the children created in one pass make one
`Created` event). Each object the apiserver returns is handed to `wrote` (the cache's
write-through), so the next reconciliation sees the operator's own writes at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from qwen_operator.api.vocabulary import Reason
from qwen_operator.children.registry import WORKLOAD_KINDS
from qwen_operator.process import clock
from qwen_operator.process.kube import ApiError, KubeApi
from qwen_operator.reconcile import events, snapshot
from qwen_operator.reconcile.decide import Apply, Desired
from qwen_operator.reconcile.events import Event
from qwen_operator.reconcile.observe import Refusal

log = logging.getLogger("qwen_operator.reconcile.act")


def namespace_terminating(exc: Exception) -> bool:
    """Admission refuses new objects in a namespace being deleted (403, not an RBAC denial)."""
    return isinstance(exc, ApiError) and exc.status == 403 and "because it is being terminated" in exc.message


def not_served(exc: Exception) -> bool:
    """An apply answered 404: the resource's API is not served (yet). Apply never 404s for a
    missing object, it creates it; this is a CRD that is Established a moment before the
    apiserver serves it, or one just removed. The watch of the CRD brings the next pass."""
    return isinstance(exc, ApiError) and exc.status == 404


REPLACEABLE = {"StatefulSet": "Orphan", "LeaderWorkerSet": "Background", "Job": "Background"}
"""Kinds replaced when a field fixed at creation changes, with the propagation of their deletion:
a StatefulSet's pods are kept (adopted by the new one); a LeaderWorkerSet's groups go (its
leader StatefulSet would not be adopted by a new one); the download Job's pod goes (the new
Job resumes from the files on the claim)."""


def _immutable(exc: ApiError, manifest: Mapping[str, Any]) -> bool:
    """The apiserver refused to change a field that is fixed after creation (REPLACEABLE kinds)."""
    fixed = "Forbidden" in exc.message or "field is immutable" in exc.message  # StatefulSet's, Job's
    return exc.status == 422 and manifest["kind"] in REPLACEABLE and fixed


def _quota(exc: ApiError) -> bool:
    """The ResourceQuota admission plugin refused it (403, not an RBAC denial)."""
    return exc.status == 403 and "exceeded quota" in exc.message


def _rejects_content(exc: ApiError) -> bool:
    """400/422, or the 500 "unable to convert" that server-side apply answers for a bad quantity."""
    return exc.status in (400, 422) or (exc.status == 500 and "convert" in exc.message)


QUOTA_SERVICE_TYPES = frozenset({"LoadBalancer", "NodePort"})
"""Service types that ResourceQuotas limit beyond counting objects (services.loadbalancers,
services.nodeports): cloud cost controls that namespaces commonly have."""


def _tested_first(apply: Apply) -> bool:
    """Dry-run before anything of the pass is written: an existing StatefulSet or LeaderWorkerSet
    (the user's free-form values; a new one is its own test), and a Service of a type quotas
    commonly refuse."""
    kind = apply.manifest["kind"]
    if kind in WORKLOAD_KINDS:
        return apply.live is not None
    return kind == "Service" and apply.manifest["spec"].get("type") in QUOTA_SERVICE_TYPES


def _new_statefulset(apply: Apply) -> bool:
    return apply.manifest["kind"] in WORKLOAD_KINDS and apply.live is None


def _new_statefulset_first(applies: tuple[Apply, ...]) -> tuple[Apply, ...]:
    """A StatefulSet that does not exist yet goes first: its apply tests the free-form values
    while nothing else of the pass is written (a dry run would cost one more request)."""
    return (*(a for a in applies if _new_statefulset(a)), *(a for a in applies if not _new_statefulset(a)))


class Actor:
    """Writes one `Desired` through a `KubeApi`."""

    def __init__(
        self,
        kube: KubeApi,
        wrote: Callable[[Mapping[str, Any]], None] = lambda _: None,
        gone: Callable[[snapshot.Child], None] = lambda _: None,
    ) -> None:
        self.kube = kube
        self.wrote = wrote
        self.gone = gone
        """Told of each child deleted (the cache hides it until the watch reports its deletion)."""

    def act(self, desired: Desired) -> Refusal | None:
        """Delete what is no longer wanted; apply, patch the status, post the events; or, when a
        dry run is refused, nothing more. Deletions come first: a stale autoscaler would fight
        the new one (KEDA refuses a ScaledObject whose target an HPA already scales)."""
        said = [self._delete(child) for child in desired.deletes]
        status_written = False
        if desired.applies:
            applies = _new_statefulset_first(desired.applies)
            refusal = self._dry_run(applies)
            if refusal is not None:
                self._post(said, desired)
                return refusal
            tested = int(_new_statefulset(applies[0]))  # an apply that is its own test comes first
            for i, apply in enumerate(applies):
                if desired.status_first and i == tested:  # a new resource says Reconciling early
                    self._patch_status(desired)
                    status_written = True
                try:
                    said += self._apply(apply)
                except ApiError as exc:
                    if _quota(exc):  # a quota counting objects of a kind: what came before stays
                        self._post(events.created_together(said), desired)
                        return Refusal(apply.ident, exc.message, Reason.QUOTA_EXCEEDED, retry=True)
                    if i > 0 or not _rejects_content(exc):
                        raise
                    self._post(said, desired)  # the deletions did happen
                    return Refusal(apply.ident, exc.message)  # the first: nothing else was applied
        if not status_written:
            self._patch_status(desired)
        self._post([*events.created_together(said), *desired.events], desired)
        return None

    def _delete(self, child: snapshot.Child) -> Event:
        if child.kind in WORKLOAD_KINDS:
            # parallelism.pipeline crossed 1: in the foreground, the old workload stays (deleting)
            # until its pods are gone, and the new one waits for it (decide.switching), so it is
            # not hidden: deleting it again before the watch says so is harmless
            self.kube.delete(child.kind, child.namespace, child.name, propagation="Foreground")
            return events.deleted(child)
        self.kube.delete(child.kind, child.namespace, child.name)  # a 404 (gone already) is no error
        self.gone(child)
        return events.deleted(child)

    def _patch_status(self, desired: Desired) -> None:
        if desired.status_patch is not None:
            res = desired.resource
            self._record(self.kube.patch_status(res.namespace, res.name, desired.status_patch))

    def _dry_run(self, applies: tuple[Apply, ...]) -> Refusal | None:
        """With other children in the same pass, the applies `_tested_first` first as dry runs."""
        if len(applies) < 2:
            return None
        for apply in applies:
            if not _tested_first(apply):
                continue
            try:
                self.kube.apply(apply.manifest, dry_run=True)
            except ApiError as exc:
                if _immutable(exc, apply.manifest):
                    continue  # _apply replaces the StatefulSet
                if _quota(exc):
                    return Refusal(apply.ident, exc.message, Reason.QUOTA_EXCEEDED, retry=True)
                if not _rejects_content(exc):
                    raise
                return Refusal(apply.ident, exc.message)
        return None

    def _apply(self, apply: Apply) -> list[Event]:
        try:
            self._record(self.kube.apply(apply.manifest))
            return list(apply.events)
        except ApiError as exc:
            if not _immutable(exc, apply.manifest) or apply.live is None:
                raise
        # A field that cannot change (a StatefulSet's volumeClaimTemplates, a Job's pod template):
        # replace the object; a StatefulSet keeps its pods (orphaned, then adopted by the new one,
        # then rolled). Its deletion event brings the next pass, which creates it anew.
        kind, meta = apply.manifest["kind"], apply.manifest["metadata"]
        propagation = REPLACEABLE[kind]
        self._record(self.kube.delete(kind, meta["namespace"], meta["name"], propagation=propagation))
        return [events.replacing(apply.ident, pods_kept=propagation == "Orphan")]

    def _record(self, obj: Mapping[str, Any]) -> None:
        if obj.get("kind") and (obj.get("metadata") or {}).get("resourceVersion"):
            self.wrote(obj)

    def _post(self, said: list[Event], desired: Desired) -> None:
        now = clock.rfc3339(clock.now())
        for event in said:
            try:
                self.kube.post_event(desired.resource, event.type, event.reason, event.message, now)
            except ApiError as exc:  # an event is worth a log line, not a failed reconcile
                log.warning("could not post event %s on %s: %s", event.reason, desired.resource.name, exc)
