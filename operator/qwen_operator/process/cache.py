"""The cache the reconciler observes: Kopf's indices, plus the operator's own writes until echoed.

Kopf's indices (see handlers.py), and the optional kinds' own (optional_kinds.py), hold the
slim facts of every watched object, filtered on the server by label. They lag behind the
operator's own writes by one watch event, so a reconciliation that runs right after another
could see the status or a child as it was before and write again. The overlay closes that
gap (write-through): each object the operator wrote is kept until the watch delivers that
version or a newer one.

A pod deleted with a failed server run stays visible (as being deleted) for FAILED_POD_SECONDS: a
LeaderWorkerSet recreates a whole group at the first restart of any of its containers, and on
a fast node the worker that ran out of memory is gone before the pass that should cure it.

resourceVersions are compared as integers, which they are for every apiserver backed by
etcd; where one is not an integer, the index wins (at worst one redundant, idempotent apply).

Kopf mutates its indices on the event loop; `Cache` is read there too (see `on_loop`), and
the overlay has its own lock because writes are recorded from the worker threads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from qwen_operator.api.vocabulary import KIND
from qwen_operator.reconcile import snapshot
from qwen_operator.reconcile.observe import Key

T = TypeVar("T")
Index = Mapping[Any, Iterable[Any]]
"""A Kopf index (key -> store of values) or any mapping of the same shape."""
ObjectKey = tuple[str, str, str]
"""(kind, namespace, name)."""
GPU_NODES = "gpu"
"""The one key of the nodes index."""
FAILED_POD_SECONDS = 600.0
"""How long a deleted pod's failed run stays visible: long enough for its owner's next pass
(the fallback counts each pod and restart once), short enough to keep memory flat."""


def _rv(value: str) -> int | None:
    return int(value) if value.isdigit() else None


def newer(candidate: str, than: str) -> bool:
    """`candidate` is a later resourceVersion of the same object than `than`."""
    a, b = _rv(candidate), _rv(than)
    return a is not None and b is not None and a > b


@dataclass(frozen=True)
class Indices:
    """Kopf's indices by what they hold."""

    resources: Index
    """(namespace, name) -> snapshot.Resource"""
    children: tuple[Index, ...]
    """One per child kind: (namespace, instance) -> snapshot.Child"""
    pods: Index
    """(namespace, instance) -> snapshot.Pod"""
    nodes: Index
    """GPU_NODES -> snapshot.Node"""
    crds: Index
    """CRD name -> snapshot.Crd"""
    failures: Index = dataclasses.field(default_factory=dict)
    """(namespace, StatefulSet name) -> snapshot.CreateFailure"""


Written = snapshot.Resource | snapshot.Child


def _key_of(obj: Written) -> ObjectKey:
    kind = KIND if isinstance(obj, snapshot.Resource) else obj.kind
    return (kind, obj.namespace, obj.name)


def _pick(indexed: T | None, written: T | None) -> T | None:
    """The newer of what the watch delivered and what the operator wrote."""
    if written is None:
        return indexed
    if indexed is None:
        return None if getattr(written, "deleting", False) else written
    if newer(getattr(written, "resource_version", ""), getattr(indexed, "resource_version", "")):
        return written
    return indexed


def _live(candidates: Iterable[T]) -> T | None:
    """Of several objects under one name (one deleted, one created again): the live, newest one."""
    found = list(candidates)
    return min(
        found,
        key=lambda o: (getattr(o, "deleting", False), -(_rv(getattr(o, "resource_version", "")) or 0)),
        default=None,
    )


class Cache:
    """`observe.Sources` over Kopf's indices, with the operator's unechoed writes on top."""

    def __init__(self, indices: Indices, clock: Callable[[], float] = time.monotonic) -> None:
        self._indices = indices
        self._lock = threading.Lock()
        self._written: dict[ObjectKey, Written] = {}
        self._gone: dict[ObjectKey, str] = {}
        """Children the operator deleted, by the resourceVersion they had, until the watch says so."""
        self._clock = clock
        self._failed_pods: dict[Key, dict[str, tuple[float, snapshot.Pod]]] = {}
        """Deleted pods with a failed server run, by owner and uid, with when they went."""
        self._deleted_pods: dict[tuple[str, str], float] = {}
        """Server pods the rollout deleted, by (namespace, uid), with when: shown as being deleted
        until the watch says so, so the next pass does not count them as serving."""

    # -- write-through ---------------------------------------------------------------------

    def wrote(self, raw: Mapping[str, Any]) -> None:
        """Remember an object the apiserver returned for the operator's write (any thread)."""
        kind = str(raw.get("kind") or "")
        obj: Written = snapshot.resource_from(raw) if kind == KIND else snapshot.child_from(raw)
        with self._lock:
            key = _key_of(obj)
            held = self._written.get(key)
            if held is None or not newer(held.resource_version, obj.resource_version):
                self._written[key] = obj

    def gone(self, child: snapshot.Child) -> None:
        """The operator deleted this child: hidden until the watch reports the deletion (or a
        newer object of that name), so the next pass does not delete it again."""
        with self._lock:
            self._gone[_key_of(child)] = child.resource_version

    def seen(self, kind: str, raw: Mapping[str, Any], deleted: bool = False) -> bool:
        """The watch delivered this version of an object: an older write of ours is echoed.
        True when it is the very version one of the operator's writes returned: the pass that
        wrote it already saw it (through `wrote`), so it asks for no other."""
        meta = raw.get("metadata") or {}
        key = (kind, str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        version = snapshot.resource_version(raw)
        with self._lock:
            held = self._written.get(key)
            echo = held is not None and not deleted and held.resource_version == version
            if held is not None and (deleted or not newer(held.resource_version, version)):
                del self._written[key]
            if key in self._gone and (deleted or newer(version, self._gone[key])):
                del self._gone[key]
        if deleted and kind == "Pod":
            self._keep_failed(raw)
        return echo

    def _keep_failed(self, raw: Mapping[str, Any]) -> None:
        """Keep a deleted pod whose server's last run failed (see FAILED_POD_SECONDS)."""
        pod = snapshot.pod_from(raw)
        server = pod.server
        runs = () if server is None else (server.terminated, server.last_terminated)
        if pod.instance and any(run is not None and run.failed for run in runs):
            key = (str((raw.get("metadata") or {}).get("namespace") or ""), pod.instance)
            with self._lock:
                self._failed_pods.setdefault(key, {})[pod.uid] = (
                    self._clock(),
                    replace(pod, deleting=True, gone=True),
                )

    def pod_deleted(self, namespace: str, uid: str) -> None:
        """The operator deleted this pod (the rollout): it counts as going from now on."""
        with self._lock:
            self._deleted_pods[(namespace, uid)] = self._clock()

    def forget(self, kind: str) -> None:
        """Every object of `kind` went away with its CRD (optional_kinds.py): a write of that kind
        not echoed yet never will be, and must not stand in for an object that is gone."""
        with self._lock:
            for key in [k for k in self._written if k[0] == kind]:
                del self._written[key]
            for key in [k for k in self._gone if k[0] == kind]:
                del self._gone[key]

    def pending_writes(self) -> int:
        with self._lock:
            return len(self._written) + len(self._gone)

    # -- observe.Sources --------------------------------------------------------------------

    def resource(self, key: Key) -> snapshot.Resource | None:
        indexed = _live(self._indices.resources.get(key, ()))
        with self._lock:
            written = self._written.get((KIND, *key))
        found = _pick(indexed, written if isinstance(written, snapshot.Resource) else None)
        return None if found is None or found.deleting else found

    def children(self, key: Key) -> tuple[snapshot.Child, ...]:
        namespace, instance = key
        indexed: dict[tuple[str, str], list[snapshot.Child]] = {}
        for index in self._indices.children:
            for child in index.get(key, ()):
                indexed.setdefault((child.kind, child.name), []).append(child)
        with self._lock:
            written = {
                (c.kind, c.name): c
                for c in self._written.values()
                if isinstance(c, snapshot.Child) and c.namespace == namespace and c.instance == instance
            }
            gone = {(kind, name) for kind, ns, name in self._gone if ns == namespace}
        out = []
        for ident in sorted((indexed.keys() | written.keys()) - gone):
            found = _pick(_live(indexed.get(ident, ())), written.get(ident))
            if found is not None:
                out.append(found)
        return tuple(out)

    def pods(self, key: Key) -> tuple[snapshot.Pod, ...]:
        indexed = list(self._indices.pods.get(key, ()))
        with self._lock:
            kept = self._failed_pods.get(key, {})
            for uid, (went, _) in list(kept.items()):
                if self._clock() - went > FAILED_POD_SECONDS:
                    del kept[uid]
            if not kept:
                self._failed_pods.pop(key, None)
            uids = {p.uid for p in indexed}
            gone = [pod for uid, (_, pod) in kept.items() if uid not in uids]
            indexed = [self._going(key[0], pod) for pod in indexed]
        return tuple(sorted([*indexed, *gone], key=lambda p: p.name))

    def _going(self, namespace: str, pod: snapshot.Pod) -> snapshot.Pod:
        """The pod as being deleted if the operator deleted it and the watch has not said so yet
        (the lock is held)."""
        key = (namespace, pod.uid)
        went = self._deleted_pods.get(key)
        if went is None:
            return pod
        if pod.deleting or self._clock() - went > FAILED_POD_SECONDS:
            del self._deleted_pods[key]
            return pod
        return replace(pod, deleting=True)

    def create_failures(self, key: Key) -> tuple[snapshot.CreateFailure, ...]:
        return tuple(self._indices.failures.get(key, ()))

    def gpu_nodes(self) -> tuple[snapshot.Node, ...]:
        return tuple(sorted(self._indices.nodes.get(GPU_NODES, ()), key=lambda n: n.name))

    def served(self) -> frozenset[str]:
        return frozenset(c.name for store in self._indices.crds.values() for c in store if c.served)

    def knows(self, key: Key) -> bool:
        """The watch has a resource of that key (whatever its state)."""
        return key in self._indices.resources

    def keys(self) -> list[Key]:
        """Every resource the watch knows (to queue them all when a node or a CRD changes)."""
        return list(self._indices.resources.keys())


def on_loop(
    loop: asyncio.AbstractEventLoop, fn: Callable[[Key], T], timeout: float = 30.0
) -> Callable[[Key], T]:
    """`fn` run on the event loop from a worker thread: Kopf's indices are only read there."""

    async def run(key: Key) -> T:
        return fn(key)

    def call(key: Key) -> T:
        return asyncio.run_coroutine_threadsafe(run(key), loop).result(timeout)

    return call
