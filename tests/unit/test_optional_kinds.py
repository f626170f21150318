"""The optional kinds' own watches: a CRD that comes and goes never stops the operator, and
while it is served its objects reach the cache and queue their owner, as Kopf's kinds do.

`FakeApi` is an apiserver of the optional kinds: objects, resourceVersions, watch streams fed
as objects change, a 404 while a kind is not served, and the end of a kind's streams when its
CRD is deleted (as the real apiserver ends them).
"""

from __future__ import annotations

import contextlib
import copy
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest

from qwen_operator.api.vocabulary import (
    INSTANCE_LABEL,
    MANAGED_LABELS,
    PROMETHEUS_RULE_CRD,
    SERVICE_MONITOR_CRD,
)
from qwen_operator.children.registry import OPTIONAL_CRDS
from qwen_operator.process import handlers, kube, metrics, optional_kinds
from qwen_operator.process.cache import Cache, Indices
from qwen_operator.process.kube import ApiError
from qwen_operator.process.optional_kinds import KindIndex, OptionalKind, OptionalKinds, Stream
from qwen_operator.process.workqueue import WorkQueue
from qwen_operator.reconcile import snapshot

MONITORS = OptionalKind(
    "monitoring.coreos.com", "v1", "servicemonitors", "ServiceMonitor", SERVICE_MONITOR_CRD
)
RULES = OptionalKind("monitoring.coreos.com", "v1", "prometheusrules", "PrometheusRule", PROMETHEUS_RULE_CRD)
KINDS = (MONITORS, RULES)
SELECTOR = (
    "labelSelector",
    "app.kubernetes.io/managed-by=qwen-operator,app.kubernetes.io/name=qwen-thinking",
)
FAST = (0.01,)
"""Back-offs short enough for a test."""

Event = tuple[str, str, str, bool]
"""What a handled event says: (kind, namespace, owner, deleted)."""


def until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.005)
    raise AssertionError("not within the time")


def obj(kind: OptionalKind, name: str = "q", ns: str = "ns", owner: str = "q", **spec: Any) -> dict[str, Any]:
    meta = {"name": name, "namespace": ns, "labels": {INSTANCE_LABEL: owner, **MANAGED_LABELS}}
    return {"apiVersion": kind.api, "kind": kind.kind, "metadata": meta, "spec": spec}


def crd(name: str, established: bool = True) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"versions": [{"name": OPTIONAL_CRDS[name], "served": True}]},
        "status": {"conditions": [{"type": "Established", "status": str(established)}]},
    }


class FakeApi:
    """The optional kinds on an apiserver (optional_kinds.WatchApi)."""

    def __init__(self, served: Sequence[OptionalKind] = ()) -> None:
        self._lock = threading.Lock()
        self.served = {k.plural for k in served}
        self.crds = {k.crd: crd(k.crd) for k in served}
        self.objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
        self.rv = 100
        self.requests: list[tuple[str, str, str]] = []
        """(verb, plural, namespace)"""
        self.queries: list[tuple[tuple[str, str], ...]] = []
        self._streams: list[tuple[str, str, queue.Queue[tuple[str, dict[str, Any]] | None]]] = []
        self.expire = 0
        """How many of the next watches answer 410 Gone at once."""
        self.watchers: list[OptionalKinds] = []

    def watcher(self, kinds: Sequence[OptionalKind], handle: Any, **kw: Any) -> OptionalKinds:
        """OptionalKinds over this apiserver, stopped when the test ends."""
        self.watchers.append(OptionalKinds(self, kinds, handle, **{"backoffs": FAST, **kw}))
        return self.watchers[-1]

    def close(self) -> None:
        for watcher in self.watchers:
            watcher.stop()
        self.end_watches()

    # -- what a test does to the cluster ---------------------------------------------------------

    def install(self, kind: OptionalKind) -> None:
        with self._lock:
            self.crds[kind.crd] = crd(kind.crd)
            self.served.add(kind.plural)

    def uninstall(self, kind: OptionalKind) -> None:
        """The CRD goes, its objects with it, and the apiserver ends the kind's watches."""
        with self._lock:
            self.crds.pop(kind.crd, None)
            self.served.discard(kind.plural)
            self.objects.pop(kind.plural, None)
            for plural, _, stream in self._streams:
                if plural == kind.plural:
                    stream.put(None)

    def put(self, kind: OptionalKind, raw: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.rv += 1
            stored = copy.deepcopy(raw)
            stored["metadata"]["resourceVersion"] = str(self.rv)
            meta = stored["metadata"]
            objects = self.objects.setdefault(kind.plural, {})
            type_ = "MODIFIED" if (meta["namespace"], meta["name"]) in objects else "ADDED"
            objects[(meta["namespace"], meta["name"])] = stored
            self._emit(kind.plural, type_, stored)
            return stored

    def delete(self, kind: OptionalKind, ns: str, name: str, quietly: bool = False) -> None:
        with self._lock:
            self.rv += 1
            gone = self.objects.get(kind.plural, {}).pop((ns, name))
            gone["metadata"]["resourceVersion"] = str(self.rv)
            if not quietly:
                self._emit(kind.plural, "DELETED", gone)

    def end_watches(self) -> None:
        with self._lock:
            for _, _, stream in self._streams:
                stream.put(None)

    def _emit(self, plural: str, type_: str, raw: dict[str, Any]) -> None:
        for watched, ns, stream in self._streams:
            if watched == plural and ns in ("", raw["metadata"]["namespace"]):
                stream.put((type_, copy.deepcopy(raw)))

    def watches(self, plural: str) -> int:
        with self._lock:
            return sum(1 for p, _, _ in self._streams if p == plural)

    # -- optional_kinds.WatchApi ------------------------------------------------------------------

    def list_objects(
        self, api: str, plural: str, namespace: str, query: Sequence[tuple[str, str]]
    ) -> dict[str, Any]:
        with self._lock:
            self.requests.append(("list", plural, namespace))
            self.queries.append(tuple(query))
            if plural == "customresourcedefinitions":
                (name,) = [v.removeprefix("metadata.name=") for k, v in query if k == "fieldSelector"]
                return {"items": [self.crds[name]] if name in self.crds else []}
            if plural not in self.served:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            items = [copy.deepcopy(o) for (ns, _), o in self.objects.get(plural, {}).items()
                     if namespace in ("", ns)]  # fmt: skip
            return {"metadata": {"resourceVersion": str(self.rv)}, "items": items}

    def watch_objects(
        self, api: str, plural: str, namespace: str, query: Sequence[tuple[str, str]], resource_version: str,
        seconds: int,
    ) -> Iterator[tuple[str, dict[str, Any]]]:  # fmt: skip
        with self._lock:
            self.requests.append(("watch", plural, namespace))
            if plural not in self.served:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            if self.expire:
                self.expire -= 1
                gone = {
                    "kind": "Status",
                    "code": 410,
                    "reason": "Expired",
                    "message": "too old resource version",
                }
                return iter([("ERROR", gone)])
            stream: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
            entry = (plural, namespace, stream)
            self._streams.append(entry)
        return self._follow(entry)

    def _follow(
        self, entry: tuple[str, str, queue.Queue[tuple[str, dict[str, Any]] | None]]
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        try:
            with contextlib.suppress(queue.Empty):  # a stream left open ends as the apiserver's do
                while (item := entry[2].get(timeout=10)) is not None:
                    yield item
        finally:
            with self._lock:
                self._streams.remove(entry)


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.bodies: list[Mapping[str, Any]] = []

    def __call__(self, kind: str, ns: str, owner: str, body: Mapping[str, Any], deleted: bool) -> None:
        self.events.append((kind, ns, owner, deleted))
        self.bodies.append(body)


@pytest.fixture
def api() -> Iterator[FakeApi]:
    fake = FakeApi()
    yield fake
    fake.close()


def watcher(api: FakeApi, record: Recorder, **kw: Any) -> OptionalKinds:
    return api.watcher(KINDS, record, **kw)


def names(index: KindIndex) -> list[str]:
    return sorted(c.name for store in index.values() for c in store)


# -- a CRD installed after the operator started, deleted, installed again ----------------------------


def test_a_crd_installed_after_the_start_is_listed_then_watched(api: FakeApi) -> None:
    record = Recorder()
    kinds = watcher(api, record)
    kinds.prime()  # no CRD yet: nothing listed, nothing watched
    assert kinds.watching() == frozenset() and [r[0:2] for r in api.requests] == [
        ("list", "customresourcedefinitions"), ("list", "customresourcedefinitions"),
    ]  # fmt: skip
    api.install(MONITORS)
    api.put(MONITORS, obj(MONITORS, "early"))  # there before the stream lists
    kinds.sync({SERVICE_MONITOR_CRD})
    assert kinds.watching() == {"servicemonitors"}
    until(lambda: api.watches("servicemonitors") == 1)
    assert ("list", "servicemonitors", "") in api.requests
    assert api.queries[-1] == (SELECTOR,)  # filtered on the server, as Kopf's watches are
    api.put(MONITORS, obj(MONITORS, "q", endpoints=[{"interval": "30s"}]))
    until(lambda: len(record.events) == 2)
    index = kinds.indices["servicemonitors"]
    (child,) = [c for c in index[("ns", "q")] if c.name == "q"]
    assert child.kind == "ServiceMonitor" and child.manifest["spec"] == {"endpoints": [{"interval": "30s"}]}
    api.put(MONITORS, obj(MONITORS, "q", endpoints=[{"interval": "5m"}]))  # a hand edit is seen
    until(lambda: len(record.events) == 3)
    assert [c.manifest["spec"] for c in index[("ns", "q")] if c.name == "q"] == [
        {"endpoints": [{"interval": "5m"}]}
    ]
    assert record.events == [("ServiceMonitor", "ns", "q", False)] * 3
    api.delete(MONITORS, "ns", "early")
    until(lambda: len(record.events) == 4)
    assert record.events[-1] == ("ServiceMonitor", "ns", "q", True) and names(index) == ["q"]


def test_a_crd_deleted_seconds_after_install_stops_its_watch_and_empties_its_index(api: FakeApi) -> None:
    record = Recorder()
    kinds = watcher(api, record)
    api.install(MONITORS)
    kinds.sync({SERVICE_MONITOR_CRD})
    until(lambda: api.watches("servicemonitors") == 1)
    api.put(MONITORS, obj(MONITORS))
    until(lambda: names(kinds.indices["servicemonitors"]) == ["q"])
    api.uninstall(MONITORS)  # the apiserver ends the watch; the CRD's DELETED event follows
    kinds.sync(set())
    assert kinds.watching() == frozenset() and len(kinds.indices["servicemonitors"]) == 0
    assert record.events[-1] == ("ServiceMonitor", "ns", "q", True)  # its owner looks again
    until(lambda: api.watches("servicemonitors") == 0)
    lists = api.requests.count(("list", "servicemonitors", ""))
    time.sleep(0.1)
    assert api.requests.count(("list", "servicemonitors", "")) == lists  # no request while not served


def test_a_crd_gone_before_its_first_listing_holds_nothing_back_and_comes_back(api: FakeApi) -> None:
    """Kopf's index readiness waited for ever on such a watch, and with it every new object of
    every kind. Here each kind has its own streams, and nothing waits on another."""
    record = Recorder()
    kinds = watcher(api, record)
    api.install(RULES)
    kinds.sync({SERVICE_MONITOR_CRD, PROMETHEUS_RULE_CRD})  # the CRD went before this stream listed
    kinds.sync({PROMETHEUS_RULE_CRD})
    until(lambda: api.watches("prometheusrules") == 1)
    api.put(RULES, obj(RULES, "rule"))
    until(lambda: ("PrometheusRule", "ns", "q", False) in record.events)
    assert len(kinds.indices["servicemonitors"]) == 0
    api.install(MONITORS)  # installed again
    kinds.sync({SERVICE_MONITOR_CRD, PROMETHEUS_RULE_CRD})
    until(lambda: api.watches("servicemonitors") == 1)
    api.put(MONITORS, obj(MONITORS))
    until(lambda: names(kinds.indices["servicemonitors"]) == ["q"])
    assert names(kinds.indices["prometheusrules"]) == ["rule"]


def test_a_404_while_the_crd_says_served_waits_and_lists_again(api: FakeApi) -> None:
    """Established, but this apiserver does not serve it yet (or any more): never fatal."""
    record = Recorder()
    kinds = watcher(api, record)
    api.crds[SERVICE_MONITOR_CRD] = crd(SERVICE_MONITOR_CRD)  # the CRD is there, its API not yet
    kinds.sync({SERVICE_MONITOR_CRD})
    until(lambda: api.requests.count(("list", "servicemonitors", "")) >= 3)  # 404, 404, ...
    api.install(MONITORS)
    until(lambda: api.watches("servicemonitors") == 1)
    api.put(MONITORS, obj(MONITORS))
    until(lambda: names(kinds.indices["servicemonitors"]) == ["q"])
    assert kinds.alive()


def test_a_crd_gone_with_no_event_to_say_so_stops_its_kind_at_the_first_404(api: FakeApi) -> None:
    """Deleted after `prime` listed it and before Kopf first listed the CRDs: no event comes."""
    record = Recorder()
    api.install(MONITORS)
    api.put(MONITORS, obj(MONITORS))
    kinds = watcher(api, record)
    kinds.prime()
    until(lambda: api.watches("servicemonitors") == 1)
    api.uninstall(MONITORS)  # and no sync: the CRD index never had it
    until(lambda: kinds.watching() == frozenset())
    assert len(kinds.indices["servicemonitors"]) == 0 and record.events == [
        ("ServiceMonitor", "ns", "q", True)
    ]
    crd_reads = api.requests.count(("list", "customresourcedefinitions", ""))
    time.sleep(0.1)
    assert api.requests.count(("list", "customresourcedefinitions", "")) == crd_reads


def test_a_404_of_a_crd_still_there_only_waits(api: FakeApi) -> None:
    record = Recorder()
    api.install(MONITORS)
    kinds = watcher(api, record)
    kinds.prime()
    api.served.discard("servicemonitors")  # this apiserver does not serve it for a moment
    api.end_watches()
    until(lambda: api.requests.count(("list", "customresourcedefinitions", "")) >= 4)
    assert kinds.watching() == {"servicemonitors"}
    api.served.add("servicemonitors")
    api.put(MONITORS, obj(MONITORS))
    until(lambda: names(kinds.indices["servicemonitors"]) == ["q"])


def test_a_410_lists_again_at_once_and_what_went_meanwhile_is_handled_as_deleted(api: FakeApi) -> None:
    record = Recorder()
    api.install(MONITORS)
    for name in ("a", "b"):
        api.put(MONITORS, obj(MONITORS, name, owner=name))
    kinds = watcher(api, record)
    kinds.prime()
    assert names(kinds.indices["servicemonitors"]) == ["a", "b"] and record.events == []
    until(lambda: api.watches("servicemonitors") == 1)
    api.delete(MONITORS, "ns", "a", quietly=True)  # missed: the watch breaks off first
    api.expire = 1
    api.end_watches()
    until(lambda: ("ServiceMonitor", "ns", "a", True) in record.events)
    assert names(kinds.indices["servicemonitors"]) == ["b"]
    assert ("ServiceMonitor", "ns", "b", False) in record.events  # each listed object, as Kopf


def test_prime_lists_the_served_kinds_before_anything_else_and_queues_nothing(api: FakeApi) -> None:
    record = Recorder()
    api.install(MONITORS)
    api.put(MONITORS, obj(MONITORS))
    kinds = watcher(api, record)
    kinds.prime()  # returns with the index filled: the first reconciliation sees the monitor
    assert names(kinds.indices["servicemonitors"]) == ["q"] and record.events == []
    assert kinds.watching() == {"servicemonitors"}
    crd_queries = [q for q in api.queries if q != (SELECTOR,)]
    assert crd_queries == [(("fieldSelector", f"metadata.name={SERVICE_MONITOR_CRD}"),),
                           (("fieldSelector", f"metadata.name={PROMETHEUS_RULE_CRD}"),)]  # fmt: skip
    until(lambda: api.watches("servicemonitors") == 1)
    assert api.requests.count(("list", "servicemonitors", "")) == 1  # the watch goes on from there


def test_prime_gives_up_at_once_when_the_apiserver_does_not_answer() -> None:
    class Silent(FakeApi):
        def list_objects(self, *args: Any) -> dict[str, Any]:
            self.requests.append(("list", args[1], args[2]))
            raise ApiError(0, "ConnectTimeout", "no answer")

    silent = Silent()
    watcher(silent, Recorder()).prime()
    assert len(silent.requests) == 1


def test_a_stream_stopped_while_an_event_is_on_its_way_changes_nothing(api: FakeApi) -> None:
    record = Recorder()
    index = KindIndex()
    stream = Stream(api, MONITORS, "", (SELECTOR,), index, record)
    stream.stop()
    stream._event(obj(MONITORS), deleted=False)
    api.install(MONITORS)
    api.put(MONITORS, obj(MONITORS))
    stream.list()
    assert len(index) == 0 and record.events == [] and stream.version is None


def test_a_watch_that_ends_at_once_again_and_again_does_not_spin() -> None:
    class Empty(FakeApi):
        def watch_objects(self, *args: Any, **kw: Any) -> Iterator[tuple[str, dict[str, Any]]]:
            self.requests.append(("watch", args[1], args[2]))
            return iter(())

    empty = Empty([MONITORS])
    kinds = empty.watcher([MONITORS], Recorder(), backoffs=(0.05,))
    started = time.monotonic()
    kinds.sync({SERVICE_MONITOR_CRD})
    until(lambda: empty.requests.count(("watch", "servicemonitors", "")) >= 2)
    time.sleep(0.2)
    kinds.stop()
    watches = empty.requests.count(("watch", "servicemonitors", ""))
    assert watches <= (time.monotonic() - started) / 0.05 + 1  # one per back-off at most


def test_an_unexpected_error_is_logged_and_the_kind_listed_again(
    api: FakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    calls = {"n": 0}

    def flaky(*event: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug")

    api.install(MONITORS)
    kinds = api.watcher([MONITORS], flaky)
    kinds.sync({SERVICE_MONITOR_CRD})
    until(lambda: api.watches("servicemonitors") == 1)
    api.put(MONITORS, obj(MONITORS))
    until(lambda: calls["n"] >= 2)  # listed again: the object is handled once more
    assert kinds.alive() and "watch of servicemonitors.monitoring.coreos.com" in caplog.text


# -- namespaces ---------------------------------------------------------------------------------------


def test_named_namespaces_are_watched_each_and_patterns_filter_one_watch_of_all(api: FakeApi) -> None:
    assert optional_kinds.scopes([])[0] == ("",)
    assert optional_kinds.scopes(["a", "b", "a"])[0] == ("a", "b")
    where, keep = optional_kinds.scopes(["team-*,!team-x", "ops"])
    assert where == ("",) and [n for n in ("team-a", "team-x", "ops", "dev") if keep(n)] == ["team-a", "ops"]
    assert optional_kinds.matches("dev", "!team-*") and not optional_kinds.matches("team-a", "!team-*")

    record = Recorder()
    api.install(MONITORS)
    kinds = api.watcher([MONITORS], record, namespaces=["a", "b"])
    kinds.sync({SERVICE_MONITOR_CRD})
    until(lambda: api.watches("servicemonitors") == 2)
    for ns in ("a", "b", "c"):
        api.put(MONITORS, obj(MONITORS, ns=ns))
    until(lambda: len(record.events) == 2)
    assert sorted(k[0] for k in kinds.indices["servicemonitors"]) == ["a", "b"]

    patterned = api.watcher([MONITORS], Recorder(), namespaces=["a*"])
    api.put(MONITORS, obj(MONITORS, ns="ab"))
    patterned.prime()
    assert sorted(k[0] for k in patterned.indices["servicemonitors"]) == ["a", "ab"]


# -- the operator's wiring: the cache, the queue, Kopf's CRD index ----------------------------------


def _runtime(api: FakeApi) -> tuple[handlers.Runtime, dict[str, list[snapshot.Crd]]]:
    crds: dict[str, list[snapshot.Crd]] = {}
    queue_: WorkQueue[tuple[str, str]] = WorkQueue(lambda key: None)
    rt_: list[handlers.Runtime] = []
    kinds = api.watcher(
        handlers.OPTIONAL_CHILDREN, lambda *e: rt_[0].child_changed(*e),
        forget=lambda kind: rt_[0].cache.forget(kind),
    )  # fmt: skip
    optional = tuple(kinds.indices[k.plural] for k in kinds.kinds)
    cache = Cache(Indices({("ns", "q"): []}, optional, {}, {}, crds))
    rt_.append(handlers.Runtime(queue_, cache, optional=kinds))
    return rt_[0], crds


def test_the_crd_index_drives_the_watch_and_events_reach_the_cache_and_queue(api: FakeApi) -> None:
    import asyncio

    import kopf

    rt, crds = _runtime(api)
    memo = kopf.Memo()
    memo.runtime = rt
    api.install(MONITORS)
    crds[SERVICE_MONITOR_CRD] = [snapshot.Crd(SERVICE_MONITOR_CRD, served=True)]
    asyncio.run(handlers.crd_event(memo=memo))
    assert rt.optional is not None and rt.optional.watching() == {"servicemonitors"}
    assert rt.queue.pending() == [("ns", "q")]  # every resource, as before
    until(lambda: api.watches("servicemonitors") == 1)
    rt.queue = WorkQueue(lambda key: None)
    ours = rt.cache.wrote  # the operator's apply, not echoed yet when the CRD goes
    ours(
        {
            **obj(MONITORS, "unechoed"),
            "metadata": {**obj(MONITORS, "unechoed")["metadata"], "resourceVersion": "1"},
        }
    )
    api.put(MONITORS, obj(MONITORS))
    until(lambda: rt.queue.pending() == [("ns", "q")])
    assert sorted(c.name for c in rt.cache.children(("ns", "q"))) == ["q", "unechoed"]

    api.uninstall(MONITORS)
    del crds[SERVICE_MONITOR_CRD]
    asyncio.run(handlers.crd_event(memo=memo))
    assert rt.optional.watching() == frozenset() and rt.cache.children(("ns", "q")) == ()


def test_kopf_watches_no_optional_kind() -> None:
    """Their CRD may be absent: Kopf would warn at each start, and stop on a 404."""
    import kopf

    registry = kopf.get_default_registry()
    optional = {k.plural for k in handlers.OPTIONAL_CHILDREN}
    assert optional == {"servicemonitors", "prometheusrules", "scaledobjects", "inferencepools",
                        "leaderworkersets"}  # fmt: skip
    assert {k.crd for k in handlers.OPTIONAL_CHILDREN} == set(OPTIONAL_CRDS)
    for k in handlers.OPTIONAL_CHILDREN:
        assert k.version == OPTIONAL_CRDS[k.crd] and kube.KINDS[k.kind] == (f"/apis/{k.api}", k.plural)
        resource = kopf.Resource(k.group, k.version, k.plural, kind=k.kind, namespaced=True)
        handlers_for_it = [
            h
            for h in [*registry._watching.get_all_handlers(), *registry._indexing.get_all_handlers()]
            if h.selector is not None and h.selector.check(resource)
        ]
        assert handlers_for_it == [], k.plural
    assert not {p for _, _, p in handlers.CHILDREN} & optional


# -- the requests ---------------------------------------------------------------------------------------


class _Stream:
    def __init__(self, lines: list[dict[str, Any]]) -> None:
        self._data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
        self.released = False

    def stream(self, amt: Any = None, decode_content: Any = None) -> Iterator[bytes]:
        yield self._data

    def release_conn(self) -> None:
        self.released = True


class _Response:
    def __init__(self, status: int, body: Any) -> None:
        self.status, self.reason = status, ""
        self.data = json.dumps(body).encode() if not isinstance(body, _Stream) else b""
        self.response = body

    def read(self) -> bytes:
        return bytes(self.data)


class _Client:
    """Stands in for kubernetes.client.ApiClient: records requests, answers in turn."""

    def __init__(self, *answers: _Response) -> None:
        self.answers = list(answers)
        self.sent: list[dict[str, Any]] = []

    def param_serialize(self, **kw: Any) -> tuple[str, str, dict[str, str], Any, None]:
        self.sent.append(kw)
        return kw["method"], kw["resource_path"], kw["header_params"], kw["body"], None

    def call_api(self, *args: Any, **kw: Any) -> _Response:
        return self.answers.pop(0)


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_reads_are_not_fenced_and_are_counted_apart_from_the_reconcilers() -> None:
    stream = _Stream([{"type": "ADDED", "object": {"metadata": {"name": "q"}}},
                      {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}}])  # fmt: skip
    listed = _Response(200, {"items": [], "metadata": {"resourceVersion": "7"}})
    missing = _Response(404, {"message": "the server could not find the requested resource"})
    client = _Client(listed, _Response(200, stream), missing)
    api = kube.Kube(client, may_write=lambda: False)  # type: ignore[arg-type]  # a standby replica
    before = {verb: sample("qwen_operator_watch_requests_total", verb=verb, resource="servicemonitors")
              for verb in ("list", "watch")}  # fmt: skip
    reconciler = sample("qwen_operator_api_requests_total", verb="list", resource="servicemonitors")
    assert (
        api.list_objects(MONITORS.api, "servicemonitors", "ns", [SELECTOR])["metadata"]["resourceVersion"]
        == "7"
    )
    events = list(api.watch_objects(MONITORS.api, "servicemonitors", "", [SELECTOR], "7", 600))
    assert [t for t, _ in events] == ["ADDED", "BOOKMARK"] and stream.released
    assert [(s["method"], s["resource_path"]) for s in client.sent] == [
        ("GET", "/apis/monitoring.coreos.com/v1/namespaces/ns/servicemonitors"),
        ("GET", "/apis/monitoring.coreos.com/v1/servicemonitors"),
    ]
    assert client.sent[1]["query_params"] == [
        SELECTOR, ("watch", "true"), ("allowWatchBookmarks", "true"), ("resourceVersion", "7"),
        ("timeoutSeconds", "600"),
    ]  # fmt: skip
    errors = sample("qwen_operator_api_errors_total", verb="watch", resource="servicemonitors", code="404")
    with pytest.raises(ApiError) as raised:
        list(api.watch_objects(MONITORS.api, "servicemonitors", "", [SELECTOR], "9", 600))
    assert raised.value.status == 404
    assert (
        sample("qwen_operator_api_errors_total", verb="watch", resource="servicemonitors", code="404")
        == errors + 1
    )
    after = {verb: sample("qwen_operator_watch_requests_total", verb=verb, resource="servicemonitors")
             for verb in ("list", "watch")}  # fmt: skip
    assert after == {"list": before["list"] + 1, "watch": before["watch"] + 2}
    assert sample("qwen_operator_api_requests_total", verb="list", resource="servicemonitors") == reconciler
