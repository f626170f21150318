"""The cache the reconciler observes: the watches' indices, with the operator's own writes on top
until the watch echoes them."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from qwen_operator.api.vocabulary import INFERENCE_POOL_CRD, KIND, SERVICE_MONITOR_CRD
from qwen_operator.children import render
from qwen_operator.process.cache import FAILED_POD_SECONDS, GPU_NODES, Cache, Indices, newer, on_loop
from qwen_operator.reconcile import snapshot
from qwen_operator.reconcile.observe import observe
from testkit.wrappers import NAME, NS, Pod, gpu_node, kv_record, live, parsed, resource_raw

KEY = (NS, NAME)


def _indices(**over: Any) -> Indices:
    sts = live(next(m for m in render.render(parsed()) if m["kind"] == "StatefulSet"), resource_version="10")
    base: dict[str, Any] = {
        "resources": {KEY: [snapshot.resource_from(resource_raw(resource_version="10"))]},
        "children": ({KEY: [snapshot.child_from(sts)]},),
        "pods": {},
        "nodes": {GPU_NODES: [gpu_node("b"), gpu_node("a")]},
        "crds": {SERVICE_MONITOR_CRD: [snapshot.Crd(SERVICE_MONITOR_CRD, served=False)]},
    }
    return Indices(**{**base, **over})


def _sts(cache: Cache) -> snapshot.Child:
    (child,) = cache.children(KEY)
    return child


def test_resource_versions_compare_as_integers() -> None:
    assert newer("11", "10") and not newer("10", "10") and not newer("9", "10")
    assert not newer("abc", "10") and not newer("11", "")


def test_the_indices_are_what_is_observed() -> None:
    cache = Cache(_indices())
    obs = observe(KEY, cache)
    assert obs is not None and obs.resource.resource_version == "10"
    assert [c.kind for c in obs.children] == ["StatefulSet"]
    assert [n.name for n in obs.gpu_nodes] == ["a", "b"] and obs.served == frozenset()
    assert observe((NS, "other"), cache) is None


def test_a_write_is_seen_at_once_and_dropped_once_echoed() -> None:
    cache = Cache(_indices())
    written = resource_raw(resource_version="12", status={"phase": "Ready"})
    cache.wrote(written)
    resource = cache.resource(KEY)
    assert resource is not None and resource.status == {"phase": "Ready"}  # not the index's older copy
    assert not cache.seen(KIND, resource_raw(resource_version="11"))  # older, in flight: keep ours
    assert cache.pending_writes() == 1
    assert cache.seen(KIND, written)  # the watch delivered our write: an echo, nothing new
    assert cache.pending_writes() == 0
    assert not cache.seen(KIND, written)  # again: no longer ours to recognise (another pass)
    assert not cache.seen(KIND, resource_raw(resource_version="13"))  # someone else's change


def test_a_newer_index_wins_over_an_older_write() -> None:
    cache = Cache(_indices())
    cache.wrote(resource_raw(resource_version="9", status={"phase": "Old"}))
    resource = cache.resource(KEY)
    assert resource is not None and resource.status == {}


def test_a_created_child_is_seen_before_its_watch_event() -> None:
    cache = Cache(_indices(children=({},)))
    assert cache.children(KEY) == ()
    svc = live(next(m for m in render.render(parsed()) if m["kind"] == "Service"), resource_version="13")
    cache.wrote(svc)
    assert [c.name for c in cache.children(KEY)] == ["q-headless"]


def test_a_child_deleted_by_the_operator_is_gone_once_the_watch_says_so() -> None:
    cache = Cache(_indices())
    sts = live(next(m for m in render.render(parsed()) if m["kind"] == "StatefulSet"), resource_version="14")
    sts["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    cache.wrote(sts)
    assert _sts(cache).deleting  # the delete response: being deleted (orphaning its pods)
    empty = Cache(_indices(children=({},)))
    empty.wrote(sts)
    assert empty.children(KEY) == ()  # the index no longer has it: gone, not "being deleted"
    cache.seen("StatefulSet", sts, deleted=True)
    assert cache.pending_writes() == 0


def test_a_child_the_operator_deleted_stays_hidden_until_the_watch_reports_it() -> None:
    """A deleted autoscaler must not be deleted again by a pass that runs before its watch event."""
    cache = Cache(_indices())
    child = _sts(cache)
    cache.gone(child)
    assert cache.children(KEY) == () and cache.pending_writes() == 1
    stale = live(
        next(m for m in render.render(parsed()) if m["kind"] == "StatefulSet"), resource_version="10"
    )
    cache.seen("StatefulSet", stale)  # an event from before the deletion: still hidden
    assert cache.children(KEY) == ()
    cache.seen("StatefulSet", stale, deleted=True)
    assert cache.pending_writes() == 0
    assert [c.name for c in cache.children(KEY)] == [NAME]  # the index (stale in this test) shows again


def test_an_optional_crd_is_served_only_with_the_version_the_operator_writes() -> None:
    def crd(name: str, versions: list[tuple[str, bool]]) -> dict[str, Any]:
        served = [{"name": v, "served": s} for v, s in versions]
        established = {"conditions": [{"type": "Established", "status": "True"}]}
        return {"metadata": {"name": name}, "spec": {"versions": served}, "status": established}

    pool = INFERENCE_POOL_CRD
    assert snapshot.crd_from(crd(pool, [("v1", True)])).served
    assert not snapshot.crd_from(crd(pool, [("v1alpha2", True), ("v1", False)])).served
    assert not snapshot.crd_from({**crd(pool, [("v1", True)]), "status": {}}).served  # not Established yet


def test_a_served_crd_is_listed() -> None:
    cache = Cache(_indices(crds={SERVICE_MONITOR_CRD: [snapshot.Crd(SERVICE_MONITOR_CRD, served=True)]}))
    assert cache.served() == {SERVICE_MONITOR_CRD}


def test_a_resource_created_again_under_its_name_is_the_live_one() -> None:
    old = snapshot.resource_from(resource_raw(uid="old", resource_version="5"))
    raw = resource_raw(uid="older", resource_version="3")
    raw["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    deleting = snapshot.resource_from(raw)
    cache = Cache(_indices(resources={KEY: [deleting, old]}))
    found = cache.resource(KEY)
    assert found is not None and found.uid == "old"


def test_observe_runs_on_the_event_loop() -> None:
    async def scenario() -> tuple[str, str]:
        loop = asyncio.get_running_loop()
        seen: list[str] = []

        def fn(key: tuple[str, str]) -> str:
            seen.append(threading.current_thread().name)
            return key[1]

        call = on_loop(loop, fn)
        result = await loop.run_in_executor(None, call, KEY)
        return result, seen[0]

    result, thread = asyncio.run(scenario())
    assert (result, thread) == (NAME, threading.main_thread().name)


def test_a_deleted_pod_with_a_failed_run_stays_visible_as_deleting_for_a_while() -> None:
    """LWS recreates a whole group at once: the worker that ran out of memory may be gone before
    its owner's pass; the fallback still finds it (each pod and restart counted once)."""
    now = [1000.0]
    cache = Cache(_indices(), clock=lambda: now[0])
    failed = Pod("q-0-1", uid="w-1").in_group(1).failed(kv_record()).obj()
    failed["metadata"]["namespace"] = NS
    cache.seen("Pod", failed, deleted=True)
    healthy = Pod("q-0", uid="l-1").in_group(0).obj()
    cache.seen("Pod", healthy, deleted=True)  # nothing failed: nothing to keep
    (kept,) = cache.pods(KEY)
    assert (kept.name, kept.deleting) == ("q-0-1", True)
    now[0] += FAILED_POD_SECONDS + 1
    assert cache.pods(KEY) == ()


def test_a_pod_the_rollout_deleted_counts_as_going_until_the_watch_says_so() -> None:
    """The next pass must not count it as serving (and replace another) before the watch shows
    its deletion: the rollout replaces one serving replica at a time."""
    pods: dict[Any, list[snapshot.Pod]] = {KEY: [Pod(uid="p0").facts(), Pod(f"{NAME}-1", uid="p1").facts()]}
    now = [0.0]
    cache = Cache(_indices(pods=pods), clock=lambda: now[0])
    cache.pod_deleted(NS, "p0")
    assert [(p.uid, p.deleting) for p in cache.pods(KEY)] == [("p0", True), ("p1", False)]
    pods[KEY] = [Pod(uid="p0").deleting().facts(), pods[KEY][1]]  # the watch: being deleted
    assert [p.deleting for p in cache.pods(KEY)] == [True, False]
    pods[KEY] = [Pod(uid="p0-new").facts(), pods[KEY][1]]  # recreated under its name: a new uid
    assert [p.deleting for p in cache.pods(KEY)] == [False, False]
    cache.pod_deleted(NS, "p1")  # a deletion the watch never reports is forgotten in time
    now[0] = FAILED_POD_SECONDS + 1
    assert [p.deleting for p in cache.pods(KEY)] == [False, False]
