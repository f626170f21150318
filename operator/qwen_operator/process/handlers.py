"""Kopf wiring: the watches fill the cache (indices), and every event only queues a resource.

Kopf lists and watches the resources, their children and pods (filtered on the server by the
managed-by label), the StatefulSet controller's FailedCreate events (by a field selector), the
nodes that report GPU memory (filtered by that label) and the CRDs whose presence matters.
Index handlers keep slim facts of each object (snapshot.py); Kopf holds every other handler back
until all indices are filled, so the first reconciliation already sees the whole cluster.
Event handlers only route: they queue the owning resource (all resources when a GPU node or an
optional CRD changes). The reconciliation runs in the work queue's threads (reconciler.py).

The optional kinds (OPTIONAL_CHILDREN: their CRD may come and go) are not Kopf's to watch:
optional_kinds.py does, while the `crds` index says their CRD is served, and its events take
the same way as Kopf's (Runtime.child_changed). Kopf is used through its public API only
(tests/unit/test_kopf_public_api.py).

No change handlers (on.create/on.update): those need Kopf's diffbase and progress records, a
second writer of every resource. The operator writes nothing but its own status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import kopf

from qwen_operator import __version__
from qwen_operator.api.vocabulary import (
    FAILED_CREATE_SELECTOR,
    GPU_MEMORY_LABEL,
    GROUP,
    INSTANCE_LABEL,
    KIND,
    MANAGED_LABELS,
    PLURAL,
    VERSION,
    label_string,
)
from qwen_operator.children import registry
from qwen_operator.process import access, endpoints, health, kube, lease, metrics
from qwen_operator.process.cache import GPU_NODES, Cache, Index, Indices, on_loop
from qwen_operator.process.optional_kinds import OptionalKind, OptionalKinds
from qwen_operator.process.startlog import StartLog
from qwen_operator.process.workqueue import WorkQueue
from qwen_operator.reconcile import snapshot
from qwen_operator.reconcile.act import Actor
from qwen_operator.reconcile.observe import Key, observe
from qwen_operator.reconcile.reconciler import Reconciler

log = logging.getLogger("qwen_operator.process.handlers")
CHILDREN: tuple[tuple[str, str, str], ...] = tuple(
    (c.group, c.version, c.plural) for c in registry.KINDS if c.crd is None
)
"""The child kinds that always exist: Kopf's to watch."""
OPTIONAL_CHILDREN: tuple[OptionalKind, ...] = tuple(
    OptionalKind(c.group, c.version, c.plural, c.kind, c.crd) for c in registry.KINDS if c.crd is not None
)
"""The child kinds whose CRD may come and go: optional_kinds.py watches them, not Kopf."""
PODS = ("", "v1", "pods")
EVENTS = ("", "v1", "events")
NODES = ("", "v1", "nodes")
CRDS = ("apiextensions.k8s.io", "v1", "customresourcedefinitions")
GPU_NODE_LABELS = {GPU_MEMORY_LABEL: kopf.PRESENT}
SETTLE_SECONDS = 0.5
"""How long a child's or pod's event waits for the others of the same change (a pod turns
ready, then its StatefulSet counts it): one reconciliation, one status write, for all of them.
A change to the resource itself is worked at once."""
WORKER_IDLE_SECONDS = 0.5
"""How long Kopf keeps an object's worker after its last event (Kopf: 5 s). An idle worker
holds that event's whole body; when hundreds of resources start at once, thousands of
children and pods each held one, and the peak memory with them. Every event only queues a
key here, so a worker costs nothing to start again."""
WATCH_BACKOFFS = (1.0, 1.0, 2.0, 3.0, 5.0, 5.0, 5.0, 5.0)
"""Kopf's retries of a failed request, its watches' included: at most 5 s apart, so a watch is
back within 5 s of the apiserver's return (Kopf's default grows to 21 s). After the last one
Kopf starts the watch over, so an outage of any length is waited out."""


@dataclass
class Runtime:
    """What the handlers share, in Kopf's memo: set up at start-up, before any watch runs."""

    queue: WorkQueue[Key]
    cache: Cache
    servers: endpoints.Servers | None = None
    nodes: dict[str, snapshot.Node] = field(default_factory=dict)
    """GPU nodes as last seen by the event handler: a change in their labels re-plans everyone."""
    served: frozenset[str] = frozenset()
    elector: lease.Elector | None = None
    """The leader election, when the operator runs with a Lease (see lease.config_from_env)."""
    optional: OptionalKinds | None = None
    """The optional kinds' watches (optional_kinds.py)."""

    def child_changed(
        self, kind: str, namespace: str, owner: str, body: Mapping[str, Any], deleted: bool
    ) -> None:
        """A child or pod changed (or vanished), whoever watches it (Kopf, or optional_kinds.py,
        from its threads): the cache learns that version, and its owner is looked at again.

        Even the echo of the operator's own apply queues the owner: the pass that applied it
        decided the status from the child as it was before (a rollout it started reads in
        progress), so another pass reads what the apply made of it."""
        if not namespace or not owner:
            return
        self.cache.seen(kind, body, deleted=deleted)
        self.queue.add((namespace, owner), after=SETTLE_SECONDS)

    def queue_all(self) -> None:
        for key in self.cache.keys():  # noqa: SIM118 (a method, not a dict)
            self.queue.add(key, after=SETTLE_SECONDS)

    def may_write(self) -> bool:
        return self.elector is None or self.elector.leading()

    def leadership(self, leading: bool) -> None:
        """On the event loop (it reads the indices): a new leader looks at every resource, since
        another replica may have changed anything; one that lost the Lease stops taking work."""
        if leading:
            self.queue.resume()
            self.queue_all()
        else:
            self.queue.pause()

    def health(self) -> tuple[bool, str]:
        parts = {"reconcile threads": self.queue.alive()}
        if self.optional is not None:
            parts["optional kinds' watch threads"] = self.optional.alive()
        if self.elector is None:
            role = "no leader election (a single replica)"
        else:
            parts["lease threads"] = self.elector.alive()
            holder = self.elector.holder()
            if self.elector.leading():
                role = "leading"
            elif holder == self.elector.config.identity:
                role = "not leading: its lease is not renewed in time (writes paused)"
            else:  # who leads is in the log (lease.py), not here: the health port asks no credentials
                role = "standing by"
        return health.report(parts, role)


def configure(settings: kopf.OperatorSettings) -> None:
    """Kopf settings: no peering, server-side filters, Kopf posts only its warnings.

    Scanning stays on: Kopf then watches CRDs, so a ServiceMonitor CRD installed while the
    operator runs gets its watch without a restart.
    """
    settings.peering.standalone = True
    settings.posting.level = logging.WARNING  # our own events say what happened; Kopf only warns
    for child in (*CHILDREN, PODS):
        settings.watching.label_selectors[child] = label_string(MANAGED_LABELS)
    settings.watching.label_selectors[NODES] = GPU_MEMORY_LABEL  # nodes that have the label
    settings.watching.field_selectors[EVENTS] = FAILED_CREATE_SELECTOR  # no other Event at all
    settings.watching.server_timeout = 600
    settings.networking.request_timeout = 60
    settings.networking.error_backoffs = WATCH_BACKOFFS
    settings.queueing.idle_timeout = WORKER_IDLE_SECONDS


def runtime(memo: Any) -> Runtime | None:
    found = getattr(memo, "runtime", None)
    return found if isinstance(found, Runtime) else None


# -- indices: the cache ---------------------------------------------------------------------


@kopf.index(GROUP, VERSION, PLURAL, id="resources")
def resources(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Key, snapshot.Resource]:
    return {(namespace or "", name): snapshot.resource_from(body)}


def _index_children(group: str, version: str, plural: str) -> None:
    """An index of one child kind: (namespace, owner's name) -> snapshot.Child; id = the plural."""

    def index(
        body: kopf.Body, resource: kopf.Resource, namespace: str | None, **_: Any
    ) -> dict[Key, snapshot.Child]:
        child = snapshot.child_from(body, resource.kind)
        return {(namespace or "", child.instance): child} if child.instance else {}

    kopf.index(group, version, plural, labels=MANAGED_LABELS, id=plural)(index)


for _group, _version, _plural in CHILDREN:
    _index_children(_group, _version, _plural)


@kopf.index("v1", "pods", labels=MANAGED_LABELS, id="pods")
def pods(body: kopf.Body, namespace: str | None, **_: Any) -> dict[Key, snapshot.Pod]:
    pod = snapshot.pod_from(body)
    return {(namespace or "", pod.instance): pod} if pod.instance else {}


@kopf.index("v1", "events", id="failures")
def failures(body: kopf.Body, **_: Any) -> dict[Key, snapshot.CreateFailure]:
    """The StatefulSet controller's FailedCreate events (the only Events watched, by a field
    selector): it sets no condition when admission refuses its pods, this is all it says."""
    failure = snapshot.create_failure_from(body)
    return {(failure.namespace, failure.owner): failure} if failure.owner else {}


@kopf.index("v1", "nodes", labels=GPU_NODE_LABELS, id="gpu_nodes")
def gpu_nodes(body: kopf.Body, **_: Any) -> dict[str, snapshot.Node]:
    return {GPU_NODES: snapshot.node_from(body)}


def _optional_crd(name: str, **_: Any) -> bool:
    return name in registry.OPTIONAL_CRDS


@kopf.index(*CRDS, when=_optional_crd, id="crds")
def crds(body: kopf.Body, name: str, **_: Any) -> dict[str, snapshot.Crd]:
    return {name: snapshot.crd_from(body)}


# -- life cycle -----------------------------------------------------------------------------


def cache_over(indices: Mapping[str, Any], optional: Sequence[Index] = ()) -> Cache:
    """The cache over Kopf's indices, as Kopf hands them to handlers (by index handler id), and
    the optional kinds' (optional_kinds.py)."""
    children = (*(indices[plural] for _, _, plural in CHILDREN), *optional)
    return Cache(
        Indices(
            indices["resources"], children, indices["pods"], indices["gpu_nodes"], indices["crds"],
            indices["failures"],
        )
    )  # fmt: skip


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    """Build the cache over Kopf's indices and the optional kinds', the reconciler and its
    queue, the leader election and the HTTP server; list the optional kinds whose CRD is served
    before Kopf's watches start. With a Lease, the queue works only while this replica holds it."""
    configure(settings)
    loop = asyncio.get_running_loop()
    election = lease.config_from_env()
    identity = election.identity if election else "standalone"
    api = kube.Kube(kube.load_client(f"qwen-operator/{__version__} ({identity})"), lambda: rt.may_write())
    optional = OptionalKinds(
        api, OPTIONAL_CHILDREN, lambda *event: rt.child_changed(*event),
        namespaces=tuple(getattr(memo, "namespaces", None) or ()), forget=lambda kind: cache.forget(kind),
    )  # fmt: skip
    cache = cache_over(kwargs, [optional.indices[kind.plural] for kind in optional.kinds])
    reconciler = Reconciler(
        on_loop(loop, lambda key: observe(key, cache)),
        Actor(api, cache.wrote, cache.gone, cache.pod_deleted),
        starts=StartLog(api.pod_log).collect,
    )  # fmt: skip
    workers = int(os.environ.get("QWEN_OPERATOR_WORKERS", "4"))
    queue: WorkQueue[Key] = WorkQueue(
        lambda key: reconciler.reconcile(key).recheck_after, workers=workers, on_retry=metrics.retried
    )
    metrics.BACKING_OFF.set_function(queue.backing_off)
    rt = memo.runtime = Runtime(queue, cache, optional=optional)
    await loop.run_in_executor(None, optional.prime)
    health.CONTACT.on_restored(queue.retry_failed)
    if election is None:
        log.warning("no leader election (QWEN_OPERATOR_LEASE_NAMESPACE unset): run one replica only")
    else:
        queue.pause()
        rt.elector = lease.Elector(api, election, lambda leading: _on_loop(loop, rt.leadership, leading))
        rt.elector.start()
        log.info("electing on lease %s/%s as %s", election.namespace, election.name, identity)
    queue.start()
    served = endpoints.Config.from_env()
    # Readiness is liveness: the health port opens only once the operator has started (its
    # caches listed, /metrics listening), and a replica standing by is ready too (its metrics
    # are scraped like the leader's).
    rt.servers = await endpoints.start(served, access.Reviewer(api), rt.health, rt.health)
    log.info("metrics on https://%s:%d/metrics (TokenReview and SubjectAccessReview), "
             "/healthz and /readyz on http://%s:%d", served.host, rt.servers.port(rt.servers.metrics),
             served.host, rt.servers.port(rt.servers.health))  # fmt: skip


def _on_loop(loop: asyncio.AbstractEventLoop, fn: Any, *args: Any) -> None:
    """Run `fn(*args)` on the event loop from another thread; nothing once the loop is closed."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """Stop the reconciler first, then hand the Lease over, so the next leader starts at once."""
    rt = runtime(memo)
    if rt is None:
        return
    if rt.optional is not None:
        rt.optional.stop()
    if rt.servers is not None:
        await rt.servers.stop()
    await asyncio.get_running_loop().run_in_executor(None, rt.queue.stop)
    if rt.elector is not None:
        await asyncio.get_running_loop().run_in_executor(None, rt.elector.stop)


# -- events: route only ---------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, PLURAL)
async def resource_event(
    type: str, body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo, **_: Any
) -> None:
    """Any change (labels and annotations too): reconcile. A deleted resource leaves the metrics."""
    rt = runtime(memo)
    if rt is None or not namespace:
        return
    rt.cache.seen(KIND, body, deleted=type == "DELETED")
    if type == "DELETED":
        metrics.PHASE_TRACKER.set((namespace, name), None)
        metrics.REDUCED_TRACKER.set((namespace, name), False)
        metrics.RESOURCE_TRACKER.set((namespace, name), None)
        return
    rt.queue.add((namespace, name))


@kopf.on.event("v1", "pods", labels=MANAGED_LABELS)
async def child_event(
    type: str, body: kopf.Body, resource: kopf.Resource, namespace: str | None, labels: Mapping[str, str],
    memo: kopf.Memo, **_: Any,
) -> None:  # fmt: skip
    """A child or pod changed (or vanished): its owner is named by the instance label."""
    rt = runtime(memo)
    if rt is not None:
        rt.child_changed(resource.kind or "", namespace or "", labels.get(INSTANCE_LABEL, ""), body,
                         deleted=type == "DELETED")  # fmt: skip


for _group, _version, _plural in CHILDREN:
    kopf.on.event(_group, _version, _plural, labels=MANAGED_LABELS)(child_event)


@kopf.on.event("v1", "events")
async def failure_event(type: str, body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    """A FailedCreate of a StatefulSet (new, or repeated: its count went up): look at the resource
    of that name, if there is one; a deleted event changes nothing."""
    rt = runtime(memo)
    owner = str((body.get("involvedObject") or {}).get("name") or "")
    if rt is None or not namespace or not owner or type == "DELETED":
        return
    if rt.cache.knows((namespace, owner)):
        rt.queue.add((namespace, owner), after=SETTLE_SECONDS)


@kopf.on.event("v1", "nodes", labels=GPU_NODE_LABELS)
async def node_event(type: str, body: kopf.Body, name: str, memo: kopf.Memo, **_: Any) -> None:
    """A GPU node came, went or changed its labels: every resource's plan may change."""
    rt = runtime(memo)
    if rt is None:
        return
    node = None if type == "DELETED" else snapshot.node_from(body)
    if rt.nodes.get(name) == node:
        return  # a status heartbeat: nothing the plan reads
    if node is None:
        rt.nodes.pop(name, None)
    else:
        rt.nodes[name] = node
    rt.queue_all()


@kopf.on.event(*CRDS, when=_optional_crd)
async def crd_event(memo: kopf.Memo, **_: Any) -> None:
    """An optional CRD was installed, became served or went away: its kind's watch starts or
    stops (optional_kinds.py), and every resource may change."""
    rt = runtime(memo)
    if rt is None:
        return
    served = rt.cache.served()
    if rt.optional is not None:
        rt.optional.sync(served)
    if served != rt.served:
        rt.served = served
        rt.queue_all()
