"""Step one of a reconciliation: every fact the decision needs, read from the cache, no request.

`observe` gathers one resource's world into a frozen `Observed`: the resource, its children,
its pods, the StatefulSet controller's refusals to create them, the nodes that report GPU
memory and which optional APIs are served. It reads a `Sources` (the watches' cache: see
cache.py) and never the apiserver, so a reconciliation with nothing to do makes no API request
at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from qwen_operator.reconcile import snapshot
from qwen_operator.reconcile.refusal import Refusal

Key = tuple[str, str]
"""(namespace, name) of a QwenThinkingDeployment."""


class Sources(Protocol):
    """What the watches know (cache.Cache in the operator; plain data in tests)."""

    def resource(self, key: Key) -> snapshot.Resource | None: ...

    def children(self, key: Key) -> tuple[snapshot.Child, ...]: ...

    def pods(self, key: Key) -> tuple[snapshot.Pod, ...]: ...

    def create_failures(self, key: Key) -> tuple[snapshot.CreateFailure, ...]: ...

    def gpu_nodes(self) -> tuple[snapshot.Node, ...]: ...

    def served(self) -> frozenset[str]: ...


@dataclass(frozen=True)
class Observed:
    """One resource's world, as the watches show it now."""

    resource: snapshot.Resource
    children: tuple[snapshot.Child, ...] = ()
    pods: tuple[snapshot.Pod, ...] = ()
    gpu_nodes: tuple[snapshot.Node, ...] = ()
    """Every node that reports GPU memory; the decision keeps those the pods can land on."""
    served: frozenset[str] = frozenset()
    """Optional CRDs whose API is served (registry.OPTIONAL_CRDS)."""
    refusal: Refusal | None = field(default=None)
    """Set on the second decision of a pass whose plan the apiserver refused (reconcile/refusal.py)."""
    status_written_at: datetime | None = None
    """When this operator process last wrote the resource's status (unknown after a restart)."""
    starting: int = 0
    """How many resources this operator process last left Progressing: decide spaces the
    progress-only status writes by it (decide.status_interval)."""
    create_failures: tuple[snapshot.CreateFailure, ...] = ()
    """The StatefulSet controller's FailedCreate events about a StatefulSet of the resource's name."""
    starts: tuple[snapshot.StartSeen, ...] = ()
    """The start reports the servers' launchers printed, read from their logs (reconcile/starts.py):
    the one read a pass may make, once per start and while a replica starts."""

    @property
    def key(self) -> Key:
        return (self.resource.namespace, self.resource.name)

    def child(self, kind: str, name: str) -> snapshot.Child | None:
        """The live child of that kind and name; of several (one being deleted), the live one."""
        found = [c for c in self.children if c.kind == kind and c.name == name]
        return min(found, key=lambda c: c.deleting, default=None)


def observe(key: Key, sources: Sources) -> Observed | None:
    """The resource's world, or None when the resource is gone."""
    resource = sources.resource(key)
    if resource is None:
        return None
    return Observed(
        resource=resource,
        children=sources.children(key),
        pods=sources.pods(key),
        create_failures=sources.create_failures(key),
        gpu_nodes=sources.gpu_nodes(),
        served=sources.served(),
    )
