"""The write plan: the typed operations one reconciliation makes, in the order it makes them.

`decide` builds the plan (pure); `act` carries it out one operation after the other and stops
at the first refusal, which goes back to `decide` as a fact. So the plan is all a reader needs
to know what a pass writes: every dry run, apply, deletion (with its propagation), status
patch and event, with its text and its time.

The order (`order`):
0. lookups: each child about to be created that the cache does not hold is read by name first.
   The cache holds only objects with the operator's labels, so an object of that name that is
   not ours (a tenant's Service `payments`) is invisible to it; a server-side apply with force
   would take it over, and the garbage collector would delete it with the resource. A lookup
   that finds one stops the plan before anything is written, and `decide` judges it;
1. deletions: a stale autoscaler would fight the new one (KEDA refuses a ScaledObject whose
   target an HPA already scales); a workload of the other kind must go before the new one;
2. dry runs, when a pass applies several children: an existing workload (the user's free-form
   values: a real update would roll pods onto a half-applied pass) and a Service of a type
   quotas commonly refuse; a refusal then applies nothing;
3. a new workload first: its apply is its own test (its pods wait for the ConfigMap they mount,
   applied a moment later), so a create needs no dry run. What its pods cannot be created
   without (their ServiceAccount: admission refuses a pod whose account does not exist) goes
   before it, so then the new workload is tested by a dry run first (step 2): a workload the
   apiserver refuses still leaves no child behind;
4. the status, before the other applies when the pass must say Reconciling early (a first pass)
   or record a cure before the StatefulSet changes; else after them;
5. the server pods the rollout replaces (reconcile/rollout.py), after the status: it says which
   replica is replaced and why before the replica stops serving. A pass that replaces pods
   applies no workload (the rollout waits for the StatefulSet controller's new revision);
6. the events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qwen_operator.children import registry
from qwen_operator.children.registry import Propagation
from qwen_operator.reconcile import diff, events, snapshot
from qwen_operator.reconcile.events import Event

QUOTA_SERVICE_TYPES = frozenset({"LoadBalancer", "NodePort"})
"""Service types that ResourceQuotas limit beyond counting objects (services.loadbalancers,
services.nodeports): cloud cost controls that namespaces commonly have."""


@dataclass(frozen=True)
class Apply:
    """One child to apply (server-side), and what to say once it is."""

    manifest: dict[str, Any]
    """The rendered manifest with its hash annotation."""
    live: snapshot.Child | None
    why: diff.Drift
    events: tuple[Event, ...]
    dry_run: bool = False
    """Only a server-side dry run: the apiserver's verdict, nothing written."""

    @property
    def ident(self) -> str:
        return events.ident(self.manifest)

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @property
    def workload(self) -> bool:
        return self.kind in registry.WORKLOAD_KINDS

    @property
    def pods_need(self) -> bool:
        return registry.BY_KIND[self.kind].pods_need

    @property
    def stales_rollout(self) -> bool:
        """A workload whose spec this apply may change: its controller's rollout status is of the
        old spec, so the servers do not match the resource yet. A drift of metadata alone (a
        label edited by hand) changes no spec, no generation, and leaves the rollout as it is."""
        if not self.workload:
            return False
        return self.live is None or self.why != diff.Drift.DRIFTED or not self._spec_held()

    @property
    def may_not_roll(self) -> bool:
        """A changed workload whose live spec holds all that is rendered: the change may be to
        metadata only, and then no event follows the apply (decide.ROLLOUT_RECHECK_SECONDS)."""
        return self.workload and self.why == diff.Drift.CHANGED and self._spec_held()

    def _spec_held(self) -> bool:
        live = None if self.live is None else self.live.manifest.get("spec")
        return live is not None and diff.contains(self.manifest.get("spec"), live)

    @property
    def tested_first(self) -> bool:
        """Worth a dry run before anything of a pass with other applies is written."""
        if self.workload:
            return self.live is not None
        return self.kind == "Service" and self.manifest["spec"].get("type") in QUOTA_SERVICE_TYPES


@dataclass(frozen=True)
class Delete:
    """One child to delete, with its propagation."""

    child: snapshot.Child
    propagation: Propagation
    events: tuple[Event, ...]
    hide: bool = True
    """Hidden from the cache until the watch reports it gone (a deletion in the foreground stays
    visible, as being deleted, until its pods are gone)."""

    @property
    def ident(self) -> str:
        return f"{self.child.kind} {self.child.name}"


@dataclass(frozen=True)
class DeletePod:
    """One server pod to delete so that its StatefulSet recreates it from the new template (the
    rollout's order: reconcile/rollout.py). Deleted only if it is still this very pod (a uid
    precondition): a pod of that name recreated since is already on the new template."""

    namespace: str
    name: str
    uid: str
    why: str
    events: tuple[Event, ...]

    @property
    def ident(self) -> str:
        return f"Pod {self.name}"


@dataclass(frozen=True)
class Lookup:
    """Read one child by name before it is first applied: is the name free, or held?"""

    kind: str
    namespace: str
    name: str

    @property
    def ident(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class PatchStatus:
    """A merge patch of the resource's status subresource."""

    patch: dict[str, Any]


@dataclass(frozen=True)
class Post:
    """One event on the resource, at the decision's time."""

    event: Event
    time: str


Operation = Lookup | Apply | Delete | PatchStatus | DeletePod | Post


def order(
    deletes: tuple[Delete, ...],
    applies: tuple[Apply, ...],
    status: PatchStatus | None,
    status_first: bool,
    said: tuple[Event, ...],
    time: str,
    pods: tuple[DeletePod, ...] = (),
) -> tuple[Operation, ...]:
    """The plan, in the order of the module's docstring."""
    news = tuple(a for a in applies if a.workload and a.live is None)
    needs = tuple(a for a in applies if a.pods_need and a.live is None)
    rest = tuple(a for a in applies if a not in news and a not in needs)
    tested = tuple(a for a in applies if a.tested_first or (a in news and needs))
    dry = tuple(Apply(a.manifest, a.live, a.why, (), dry_run=True) for a in tested)
    ops: list[Operation] = [*lookups(applies), *deletes, *(dry if len(applies) > 1 else ())]
    ops += (*needs, *news)
    if status is not None and status_first:
        ops.append(status)
    ops += rest
    if status is not None and not status_first:
        ops.append(status)
    ops += pods
    ops += [Post(e, time) for e in said]
    return tuple(ops)


def lookups(applies: tuple[Apply, ...]) -> tuple[Lookup, ...]:
    """One read per child the plan creates and the cache does not hold (step 0)."""
    return tuple(
        Lookup(a.kind, str(a.manifest["metadata"]["namespace"]), str(a.manifest["metadata"]["name"]))
        for a in applies if a.live is None
    )  # fmt: skip
