"""Kopf wiring: nothing but the watches and routing; no Kopf records, every event queues its owner."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from qwen_operator.api.vocabulary import GROUP, MANAGED_LABELS, PLURAL, SERVICE_MONITOR_CRD, VERSION
from qwen_operator.process import handlers, metrics
from qwen_operator.process.cache import GPU_NODES, Cache, Indices
from qwen_operator.process.workqueue import WorkQueue
from qwen_operator.reconcile import snapshot
from qwen_operator.reconcile.observe import Key
from testkit.wrappers import gpu_node, resource_raw


def _runtime(resources: dict[Key, list[snapshot.Resource]] | None = None) -> handlers.Runtime:
    crds: dict[str, list[snapshot.Crd]] = {}
    cache = Cache(Indices(resources or {}, (), {}, {GPU_NODES: []}, crds))
    return handlers.Runtime(WorkQueue(lambda key: None), cache)


def _memo(rt: handlers.Runtime) -> kopf.Memo:
    memo = kopf.Memo()
    memo.runtime = rt
    return memo


def test_watches_are_filtered_on_the_server() -> None:
    settings = kopf.OperatorSettings()
    handlers.configure(settings)
    assert settings.peering.standalone
    for group, version, plural in (*handlers.CHILDREN, handlers.PODS):
        (selector,) = settings.watching.label_selectors.collect(
            kopf.Resource(group, version, plural, namespaced=True)
        )
        assert selector == "app.kubernetes.io/managed-by=qwen-operator,app.kubernetes.io/name=qwen-thinking"
    (nodes,) = settings.watching.label_selectors.collect(kopf.Resource("", "v1", "nodes", namespaced=False))
    assert nodes == "nvidia.com/gpu.memory"
    (events,) = settings.watching.field_selectors.collect(kopf.Resource("", "v1", "events", namespaced=True))
    assert events == "involvedObject.kind=StatefulSet,reason=FailedCreate"


def test_an_idle_object_worker_lets_go_of_its_last_event_within_half_a_second() -> None:
    """Kopf keeps a worker, and the whole body of its object's last event, 5 s by default:
    at 500 resources started at once that was 18 MiB of peak RSS (bench/scale.py)."""
    settings = kopf.OperatorSettings()
    assert settings.queueing.idle_timeout == 5.0
    handlers.configure(settings)
    assert settings.queueing.idle_timeout == handlers.WORKER_IDLE_SECONDS == 0.5


def test_no_change_handlers_so_kopf_keeps_no_records_in_the_resource() -> None:
    """on.create/on.update/on.resume would make Kopf write status.kopf (diffbase, progress)."""
    registry = kopf.get_default_registry()
    ours = kopf.Resource(GROUP, VERSION, PLURAL, namespaced=True)
    assert registry._changing.get_all_handlers() == []
    assert registry._spawning.get_all_handlers() == []
    indexed = {h.id for h in registry._indexing.get_all_handlers()}
    # the optional kinds are not there: optional_kinds.py watches them
    assert indexed == {"resources", "serviceaccounts", "configmaps", "statefulsets", "services",
                       "poddisruptionbudgets", "persistentvolumeclaims", "jobs", "horizontalpodautoscalers",
                       "networkpolicies", "pods", "gpu_nodes", "crds", "failures"}  # fmt: skip
    assert any(
        h.selector is not None and h.selector.check(ours) for h in registry._watching.get_all_handlers()
    )


def test_index_handlers_keep_slim_facts_under_the_owner() -> None:
    labels = {"app.kubernetes.io/instance": "q", **MANAGED_LABELS}
    meta = {"name": "q", "namespace": "ns", "labels": labels, "managedFields": [{"manager": "x"}] * 50}
    sts = {"kind": "StatefulSet", "metadata": meta}
    resource = kopf.Resource("apps", "v1", "statefulsets", kind="StatefulSet", namespaced=True)
    registry = kopf.get_default_registry()
    (index,) = [h for h in registry._indexing.get_all_handlers() if h.id == "statefulsets"]
    ((key, child),) = index.fn(body=kopf.Body(sts), resource=resource, namespace="ns").items()  # type: ignore[union-attr]
    assert key == ("ns", "q") and child.kind == "StatefulSet" and child.managers == frozenset({"x"})
    raw = resource_raw(annotations={"kubectl.kubernetes.io/last-applied-configuration": "{...}"})
    (entry,) = handlers.resources(body=kopf.Body(raw), namespace="ns", name="q").values()
    assert entry.annotations == {}  # a copy of the spec in an annotation is not kept


def test_events_queue_the_owning_resource() -> None:
    rt = _runtime()
    labels = {"app.kubernetes.io/instance": "q", **MANAGED_LABELS}
    sts = kopf.Resource("apps", "v1", "statefulsets", kind="StatefulSet", namespaced=True)
    body = kopf.Body({"metadata": {"name": "q", "namespace": "ns"}})
    asyncio.run(handlers.child_event(type="MODIFIED", body=body, resource=sts, namespace="ns", labels=labels,
                                     memo=_memo(rt)))  # fmt: skip
    asyncio.run(handlers.child_event(type="MODIFIED", body=body, resource=sts, namespace="ns", labels={},
                                     memo=_memo(rt)))  # no owner: nothing to do  # fmt: skip
    asyncio.run(handlers.resource_event(type="MODIFIED", body=body, namespace="ns", name="r", memo=_memo(rt)))
    assert rt.queue.pending() == [("ns", "r"), ("ns", "q")]  # the resource at once, the child after a moment


def test_the_echo_of_the_operators_own_apply_still_queues_its_owner() -> None:
    """The pass that applied a child decided the status from the child as it was before."""
    rt = _runtime()
    labels = {"app.kubernetes.io/instance": "q", **MANAGED_LABELS}
    sts = kopf.Resource("apps", "v1", "statefulsets", kind="StatefulSet", namespaced=True)
    ours = {"kind": "StatefulSet", "metadata": {"name": "q", "namespace": "ns", "resourceVersion": "7",
                                                "labels": labels}}  # fmt: skip
    rt.cache.wrote(ours)
    asyncio.run(handlers.child_event(type="MODIFIED", body=kopf.Body(ours), resource=sts, namespace="ns",
                                     labels=labels, memo=_memo(rt)))  # fmt: skip
    assert rt.queue.pending() == [("ns", "q")]


FAILED_CREATE = {
    "metadata": {"name": "q.1", "namespace": "ns", "creationTimestamp": "2026-11-30T08:00:00Z"},
    "involvedObject": {"kind": "StatefulSet", "name": "q", "namespace": "ns", "uid": "sts-uid"},
    "reason": "FailedCreate",
    "message": 'create Pod q-0 in StatefulSet q failed error: pods "q-0" is forbidden: exceeded quota: gpu',
    "lastTimestamp": "2026-11-30T08:00:05Z",
    "count": 3,
}


def test_a_failed_create_is_kept_under_its_statefulset_and_queues_the_resource_of_that_name() -> None:
    registry = kopf.get_default_registry()
    (index,) = [h for h in registry._indexing.get_all_handlers() if h.id == "failures"]
    ((key, failure),) = index.fn(body=kopf.Body(FAILED_CREATE)).items()  # type: ignore[union-attr]
    assert key == ("ns", "q") and failure.owner_uid == "sts-uid" and "exceeded quota" in failure.message
    assert failure.last_seen is not None and failure.last_seen.second == 5
    rt = _runtime({("ns", "q"): []})
    for type_, name in (("MODIFIED", "q"), ("ADDED", "not-ours"), ("DELETED", "q")):
        body = {**FAILED_CREATE, "involvedObject": {**FAILED_CREATE["involvedObject"], "name": name}}
        asyncio.run(handlers.failure_event(type=type_, body=kopf.Body(body), namespace="ns", memo=_memo(rt)))
    assert rt.queue.pending() == [("ns", "q")]


def test_a_deleted_resource_leaves_the_phase_gauge() -> None:
    metrics.PHASE_TRACKER.set(("ns", "gone"), "Ready")
    before = metrics.REGISTRY.get_sample_value("qwen_operator_resources", {"phase": "Ready"})
    body = kopf.Body({"metadata": {"name": "gone", "namespace": "ns"}})
    asyncio.run(
        handlers.resource_event(
            type="DELETED", body=body, namespace="ns", name="gone", memo=_memo(_runtime())
        )
    )
    after = metrics.REGISTRY.get_sample_value("qwen_operator_resources", {"phase": "Ready"})
    assert before is not None and after == before - 1


def test_a_gpu_node_queues_everyone_only_when_its_labels_change() -> None:
    rt = _runtime({("ns", "a"): [], ("ns", "b"): []})
    node: dict[str, Any] = {"metadata": {"name": "n0", "labels": gpu_node("n0").labels}, "status": {"x": 1}}

    def event(type_: str, raw: dict[str, Any]) -> list[Key]:
        rt.queue = WorkQueue(lambda key: None)  # an empty queue per event
        asyncio.run(handlers.node_event(type=type_, body=kopf.Body(raw), name="n0", memo=_memo(rt)))
        return rt.queue.pending()

    assert event("ADDED", node) == [("ns", "a"), ("ns", "b")]
    assert event("MODIFIED", {**node, "status": {"x": 2}}) == []  # a heartbeat
    relabelled = {"metadata": {"name": "n0", "labels": gpu_node("n0", 143771).labels}}
    assert event("MODIFIED", relabelled) == [("ns", "a"), ("ns", "b")]
    assert event("DELETED", relabelled) == [("ns", "a"), ("ns", "b")]


def test_an_optional_crd_queues_everyone_when_it_becomes_served() -> None:
    crds: dict[str, list[snapshot.Crd]] = {}
    rt = handlers.Runtime(WorkQueue(lambda key: None), Cache(Indices({("ns", "a"): []}, (), {}, {}, crds)))
    asyncio.run(handlers.crd_event(memo=_memo(rt)))
    assert rt.queue.pending() == []
    crds[SERVICE_MONITOR_CRD] = [snapshot.Crd(SERVICE_MONITOR_CRD, served=True)]
    asyncio.run(handlers.crd_event(memo=_memo(rt)))
    assert rt.queue.pending() == [("ns", "a")]


def test_the_cache_reads_every_index_kopf_fills_and_the_optional_kinds() -> None:
    registry = kopf.get_default_registry()
    indices: dict[str, Any] = {h.id: {} for h in registry._indexing.get_all_handlers()}
    sts = {"kind": "StatefulSet", "metadata": {"name": "q", "namespace": "ns", "resourceVersion": "1",
           "labels": {"app.kubernetes.io/instance": "q"}}}  # fmt: skip
    plurals = [p for _, _, p in handlers.CHILDREN] + [k.plural for k in handlers.OPTIONAL_CHILDREN]
    for plural in plurals:
        child = snapshot.child_from({**sts, "metadata": {**sts["metadata"], "name": plural}}, plural)
        indices[plural] = {("ns", "q"): [child]}
    indices["failures"] = {("ns", "q"): [snapshot.create_failure_from(FAILED_CREATE)]}
    optional = [indices.pop(k.plural) for k in handlers.OPTIONAL_CHILDREN]
    cache = handlers.cache_over(indices, optional)
    assert sorted(c.name for c in cache.children(("ns", "q"))) == sorted(plurals)
    assert [f.owner for f in cache.create_failures(("ns", "q"))] == ["q"]
