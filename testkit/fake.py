"""An in-memory cluster for the reconciler's unit tests: the apiserver's writes and the watches.

`FakeCluster` is both a `kube.KubeApi` (what `act` writes) and an `observe.Sources` (what the
watches show), over one store of raw objects, so a test drives a whole reconciliation with
no network and no type: ignore. Real behaviour (server-side apply, schemas, garbage
collection) is the e2e suite's business; this fake only keeps objects and counts calls.
Benchmarks do not use it (tests/unit/test_layout.py).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from qwen_operator.api.vocabulary import FIELD_MANAGER, INSTANCE_LABEL, KIND, MANAGED_LABELS
from qwen_operator.children import registry
from qwen_operator.process.kube import ApiError
from qwen_operator.reconcile import snapshot
from qwen_operator.reconcile.act import Actor
from qwen_operator.reconcile.observe import Key, observe
from qwen_operator.reconcile.reconciler import Reconciler
from qwen_operator.reconcile.status import apply_merge_patch

from .wrappers import NAME, NS, resource_raw

WRITES = ("apply", "patch", "delete", "create")
NOW = datetime(2026, 1, 1, tzinfo=UTC)
CHILD_KINDS = tuple(registry.BY_KIND)
"""What the watches of child kinds show (the registry's)."""


STATUS_REASONS = {400: "BadRequest", 403: "Forbidden", 404: "NotFound", 409: "Conflict", 422: "Invalid"}


def refused(code: int, message: str, *causes: tuple[str, str]) -> ApiError:
    """The error of a request the apiserver refused, with the `Status` object it returns
    (metav1.Status: code, reason, message, details.causes of (reason, field): a cause's type is
    its `reason`)."""
    reason = STATUS_REASONS.get(code, "InternalError")
    body = {
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason,
        "details": {"causes": [{"reason": r, "field": f, "message": message} for r, f in causes]},
        "code": code,
    }  # fmt: skip
    return ApiError(code, reason, message, body)


class FakeCluster:
    """Objects by (kind, name) in one namespace; every write recorded as (verb, kind)."""

    def __init__(self, spec: Mapping[str, Any] | None = None, **meta: Any) -> None:
        self._rv = itertools.count(2)
        self.objects: dict[tuple[str, str], dict[str, Any]] = {(KIND, NAME): resource_raw(spec, **meta)}
        self.pods: list[dict[str, Any]] = []
        self.failures: list[snapshot.CreateFailure] = []
        """The StatefulSet controller's FailedCreate events."""
        self.nodes: list[snapshot.Node] = []
        self.crds: set[str] = set()
        self.calls: list[tuple[str, str]] = []
        self.events: list[tuple[str, str]] = []
        self.messages: list[str] = []
        self.refuse_dry_run: str | None = None
        """Kind whose dry run the apiserver answers 422."""
        self.propagations: list[str] = []
        """The propagation policy of each delete."""
        self.on_apply: Callable[[Mapping[str, Any], bool], None] | None = None
        """Called before each apply; raise an ApiError to simulate the apiserver refusing it."""

    # -- what the tests look at ------------------------------------------------------------

    def writes(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[0] in WRITES]

    def applied(self) -> list[str]:
        return [kind for verb, kind in self.calls if verb == "apply"]

    @property
    def resource(self) -> dict[str, Any]:
        return self.objects[(KIND, NAME)]

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.resource.get("status") or {})

    def condition(self, type_: str) -> dict[str, Any]:
        return next((dict(c) for c in self.status.get("conditions") or [] if c["type"] == type_), {})

    def edit(self, spec: Mapping[str, Any] | None = None, **annotations: str) -> None:
        """A user changes the spec (a new generation) or annotations."""
        meta = self.resource["metadata"]
        if spec is not None:
            self.resource["spec"] = dict(spec)
            meta["generation"] += 1
        meta["annotations"] = {**meta.get("annotations", {}), **annotations}
        self._bump(self.resource)

    def _bump(self, obj: dict[str, Any]) -> None:
        obj["metadata"]["resourceVersion"] = str(next(self._rv))

    # -- observe.Sources ---------------------------------------------------------------------

    def resource_facts(self, key: Key) -> snapshot.Resource | None:
        raw = self.objects.get((KIND, key[1]))
        return None if raw is None else snapshot.resource_from(raw)

    def children(self, key: Key) -> tuple[snapshot.Child, ...]:
        """What the operator's watches show: children with its labels (a label selector), of
        this instance (the cache's index); an object without them is invisible, as in a cluster."""
        return tuple(
            snapshot.child_from(o)
            for (kind, _), o in sorted(self.objects.items())
            if kind in CHILD_KINDS and _labelled(o, key[1])
        )

    def pods_of(self, key: Key) -> tuple[snapshot.Pod, ...]:
        return tuple(snapshot.pod_from(p) for p in self.pods)

    def create_failures(self, key: Key) -> tuple[snapshot.CreateFailure, ...]:
        return tuple(f for f in self.failures if (f.namespace, f.owner) == key)

    def gpu_nodes(self) -> tuple[snapshot.Node, ...]:
        return tuple(self.nodes)

    def served(self) -> frozenset[str]:
        return frozenset(self.crds)

    # -- kube.KubeApi ---------------------------------------------------------------------------

    def apply(self, manifest: Mapping[str, Any], dry_run: bool = False) -> dict[str, Any]:
        kind, name = str(manifest["kind"]), str(manifest["metadata"]["name"])
        self.calls.append(("apply-dry-run" if dry_run else "apply", kind))
        if dry_run and self.refuse_dry_run == kind:
            raise refused(422, f"{kind} is invalid: spec.x: Invalid value", ("FieldValueInvalid", "spec.x"))
        if self.on_apply is not None:
            self.on_apply(manifest, dry_run)
        obj = copy.deepcopy(dict(manifest))
        meta = obj["metadata"]
        meta |= {"uid": f"uid-{kind}-{name}", "generation": 1,
                 "managedFields": [{"manager": FIELD_MANAGER, "operation": "Apply"}]}  # fmt: skip
        if kind == "StatefulSet":
            replicas = obj["spec"]["replicas"]
            counts = {"replicas": replicas, "readyReplicas": replicas, "updatedReplicas": replicas}
            obj["status"] = {"observedGeneration": 1, "currentRevision": "a", "updateRevision": "a", **counts}
        self._bump(obj)
        if not dry_run:
            self.objects[(kind, name)] = obj
        return copy.deepcopy(obj)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get", kind))
        found = self.objects.get((kind, name))
        return None if found is None else copy.deepcopy(found)

    def delete(self, kind: str, namespace: str, name: str, propagation: str = "Background") -> dict[str, Any]:
        self.calls.append(("delete", kind))
        self.propagations.append(propagation)
        return self.objects.pop((kind, name), {})

    def delete_pod(self, namespace: str, name: str, uid: str) -> dict[str, Any]:
        """A server pod deleted (the rollout): gone at once, if it is still that uid."""
        self.calls.append(("delete", "Pod"))
        found = next((p for p in self.pods if p["metadata"]["name"] == name), None)
        if found is None or found["metadata"].get("uid") != uid:
            return {}
        self.pods.remove(found)
        return copy.deepcopy(found)

    def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append(("patch", "status"))
        obj = self.objects[(KIND, name)]
        obj["status"] = apply_merge_patch(obj.get("status") or {}, patch)
        self._bump(obj)
        return copy.deepcopy(obj)

    def post_event(self, owner: snapshot.Resource, type_: str, reason: str, message: str, now: str) -> None:
        self.calls.append(("create", "Event"))
        self.events.append((type_, reason))
        self.messages.append(message)


def _labelled(obj: Mapping[str, Any], instance: str) -> bool:
    labels = obj["metadata"].get("labels") or {}
    managed = all(labels.get(k) == v for k, v in MANAGED_LABELS.items())
    return managed and labels.get(INSTANCE_LABEL) == instance


class Sources:
    """The cluster's watches, under the names observe.Sources asks for."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster

    def resource(self, key: Key) -> snapshot.Resource | None:
        return self.cluster.resource_facts(key)

    def children(self, key: Key) -> tuple[snapshot.Child, ...]:
        return self.cluster.children(key)

    def pods(self, key: Key) -> tuple[snapshot.Pod, ...]:
        return self.cluster.pods_of(key)

    def create_failures(self, key: Key) -> tuple[snapshot.CreateFailure, ...]:
        return self.cluster.create_failures(key)

    def gpu_nodes(self) -> tuple[snapshot.Node, ...]:
        return self.cluster.gpu_nodes()

    def served(self) -> frozenset[str]:
        return self.cluster.served()


def reconciler(cluster: FakeCluster, now: datetime = NOW) -> Reconciler:
    sources = Sources(cluster)
    return Reconciler(lambda key: observe(key, sources), Actor(cluster), now=lambda: now)


KEY = (NS, NAME)
