"""The watches of the optional kinds, the operator's own: Kopf watches only what always exists.

ServiceMonitor, PrometheusRule, ScaledObject, InferencePool and LeaderWorkerSet exist only
while their CRD does, and a CRD may come and go while the operator runs (the Prometheus
Operator uninstalled, KEDA reinstalled). Kopf watches such a kind badly: a 404 on the watch of
a resource whose CRD just went away stops the whole operator; what it watches follows API
discovery, which lags the CRD's events (an installed CRD could stay unwatched); and its index
readiness waits for ever on a watcher stopped before its first listing, which holds back the
new objects of every kind. Patching that inside Kopf meant replacing its private functions.
So Kopf watches the CRDs (handlers.crds, an index, and handlers.crd_event) and every kind that
always exists, and this module watches the optional kinds:

- What to watch follows the CRD index, not discovery: a kind is listed, then watched, while
  its CRD is served (`snapshot.crd_from(...).served`); when the CRD goes, its watch stops and
  its index empties (its objects went with it). `OptionalKinds.sync` is told at each event of
  an optional CRD; a 404 also reads the CRD itself, since no event may ever say that a CRD
  has gone (deleted before Kopf first listed the CRDs).
- No error is fatal: a 410 (the version watched from is too old) lists again at once; a 404
  (the API not served yet, or any more, while the CRD index still says it is) or any other
  failure waits (BACKOFFS) and lists again, until the CRD index says the CRD is gone.
- Each event is handled as Kopf's events of the other children are (handlers.child_event,
  through `Handle`): the cache learns the version, and the owner is queued. Nothing else waits
  on these watches, so no kind's readiness can hold back another's.

Each (kind, namespace) is a thread with the kubernetes client (kube.Kube's `list_objects` and
`watch_objects`, counted in qwen_operator_watch_requests_total), as the Lease's watch is: that
client is synchronous, and a stream needs nothing of the event loop. Each kind's index is a
plain mapping of the shape of Kopf's indices, (namespace, instance) -> the slim children
(snapshot.Child), with its own lock: written by the stream threads, read by the cache.

At start-up, before Kopf's watches begin, the kinds whose CRD is served are listed (`prime`),
so the first reconciliation already sees them, as it sees everything Kopf's indices hold.

`kinds` is an input, (group, version, plural, kind, crd) each: handlers.OPTIONAL_CHILDREN, the
registry's child kinds that wait for a CRD (children/registry.py).
"""

from __future__ import annotations

import fnmatch
import logging
import re
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from qwen_operator.api.vocabulary import INSTANCE_LABEL, MANAGED_LABELS, label_string
from qwen_operator.process.kube import ApiError
from qwen_operator.reconcile import snapshot
from qwen_operator.reconcile.observe import Key

log = logging.getLogger("qwen_operator.process.optional_kinds")
CRDS_API = "apiextensions.k8s.io/v1"
WATCH_SECONDS = 600
"""How long one watch request lasts before the apiserver ends it; the next one goes on from the
last version seen (Kopf's watches: handlers.configure, server_timeout)."""
BACKOFFS = (1.0, 1.0, 2.0, 3.0, 5.0)
"""Waits before the 1st, 2nd, ... new list after a failure, then every 5 s (as Kopf's retries,
handlers.WATCH_BACKOFFS): a kind is back within 5 s of the apiserver, or its API, answering."""
PLAIN_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class OptionalKind(NamedTuple):
    """A child kind whose CRD may come and go: its API, its kind, and the CRD that serves it."""

    group: str
    version: str
    plural: str
    kind: str
    crd: str

    @property
    def api(self) -> str:
        return f"{self.group}/{self.version}"


Handle = Callable[[str, str, str, Mapping[str, Any], bool], None]
"""(kind, namespace, owner, the object as the watch delivered it, deleted): what
handlers.child_event does with Kopf's events (Runtime.child_changed)."""


class WatchApi(Protocol):
    """The reads of the streams (kube.Kube); `api` is "group/version", namespace "" is all."""

    def list_objects(
        self, api: str, plural: str, namespace: str, query: Sequence[tuple[str, str]]
    ) -> dict[str, Any]: ...

    def watch_objects(
        self, api: str, plural: str, namespace: str, query: Sequence[tuple[str, str]], resource_version: str,
        seconds: int,
    ) -> Iterator[tuple[str, dict[str, Any]]]: ...  # fmt: skip


def _meta(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = raw.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _owner(raw: Mapping[str, Any]) -> str:
    labels = _meta(raw).get("labels")
    return str(labels.get(INSTANCE_LABEL) or "") if isinstance(labels, Mapping) else ""


def _stub(child: snapshot.Child) -> dict[str, Any]:
    """What is left of a child that went while nobody watched: enough to handle its deletion."""
    meta = {"namespace": child.namespace, "name": child.name, "resourceVersion": child.resource_version,
            "labels": {INSTANCE_LABEL: child.instance}}  # fmt: skip
    return {"kind": child.kind, "metadata": meta}


class KindIndex(Mapping[Key, tuple[snapshot.Child, ...]]):
    """One optional kind's objects, (namespace, instance) -> snapshot.Child, as Kopf's indices
    hold the other kinds' for the cache. Written by the stream threads and read by the cache on
    the event loop, so every access holds the lock, and a read returns a copy.

    A write takes a stream's `stopped` event and does nothing once it is set, under the same
    lock that `clear` holds: a stream stopped while an event was on its way cannot put an
    object back into the index its CRD's deletion emptied."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owners: dict[tuple[str, str], Key] = {}
        """(namespace, name) -> the key the object is kept under."""
        self._owned: dict[Key, dict[str, snapshot.Child]] = {}

    def __getitem__(self, key: Key) -> tuple[snapshot.Child, ...]:
        with self._lock:
            return tuple(self._owned[key].values())

    def __iter__(self) -> Iterator[Key]:
        with self._lock:
            return iter(list(self._owned))

    def __len__(self) -> int:
        with self._lock:
            return len(self._owned)

    def _drop(self, namespace: str, name: str) -> snapshot.Child | None:
        key = self._owners.pop((namespace, name), None)
        if key is None:
            return None
        owned = self._owned[key]
        child = owned.pop(name)
        if not owned:
            del self._owned[key]
        return child

    def _put(self, child: snapshot.Child) -> None:
        self._drop(child.namespace, child.name)
        if child.instance:  # not one of the operator's children: not kept (as Kopf's index)
            key = (child.namespace, child.instance)
            self._owners[(child.namespace, child.name)] = key
            self._owned.setdefault(key, {})[child.name] = child

    def put(self, child: snapshot.Child, unless: threading.Event) -> bool:
        """Keep `child` in place of the object of that name; False (nothing done) once `unless`."""
        with self._lock:
            if unless.is_set():
                return False
            self._put(child)
            return True

    def drop(self, namespace: str, name: str, unless: threading.Event) -> bool:
        with self._lock:
            if unless.is_set():
                return False
            self._drop(namespace, name)
            return True

    def replace(
        self, children: Iterable[snapshot.Child], namespace: str, unless: threading.Event
    ) -> list[snapshot.Child] | None:
        """What a list of `namespace` ("": all) found takes the place of what was kept there;
        the objects gone since (None, nothing done, once `unless` is set)."""
        with self._lock:
            if unless.is_set():
                return None
            before = {ident for ident in self._owners if not namespace or ident[0] == namespace}
            fresh = list(children)
            for child in fresh:
                self._put(child)
            now = {(c.namespace, c.name) for c in fresh}
            gone = [self._drop(ns, name) for ns, name in sorted(before - now)]
            return [c for c in gone if c is not None]

    def clear(self) -> list[snapshot.Child]:
        """Forget every object (their CRD went); the objects that were kept."""
        with self._lock:
            gone = [c for owned in self._owned.values() for c in owned.values()]
            self._owners.clear()
            self._owned.clear()
            return gone


def matches(namespace: str, pattern: str) -> bool:
    """Kopf's namespace patterns (`run -n 'team-*,!team-x'`): comma-separated globs; one that
    starts with `!` excludes; the first includes (a leading exclusion implies `*` before it),
    and a later inclusion includes again only what the first included."""
    globs = [g.strip() for g in pattern.split(",")]
    if not globs or globs[0].startswith("!"):
        globs.insert(0, "*")
    matched = first = fnmatch.fnmatchcase(namespace, globs[0])
    for glob in globs[1:]:
        if glob.startswith("!"):
            matched = matched and not fnmatch.fnmatchcase(namespace, glob.lstrip("!"))
        else:
            matched = matched or (first and fnmatch.fnmatchcase(namespace, glob))
    return matched


def scopes(namespaces: Sequence[str]) -> tuple[tuple[str, ...], Callable[[str], bool]]:
    """Where to list and watch ("": every namespace), and which namespaces' objects to keep:
    each named namespace on its own (as Kopf watches them); with a pattern among them, every
    namespace, keeping those that match one (the ClusterRole allows that)."""
    if not namespaces:
        return ("",), lambda _: True
    if all(PLAIN_NAMESPACE.match(n) for n in namespaces):
        return tuple(dict.fromkeys(namespaces)), lambda _: True
    return ("",), lambda ns: any(matches(ns, p) for p in namespaces)


class Stream:
    """One optional kind, listed and then watched in one namespace ("": all), in a thread of its
    own until `stop`. It never raises: see the module's docstring for what a failure does."""

    def __init__(
        self, api: WatchApi, kind: OptionalKind, namespace: str, query: Sequence[tuple[str, str]],
        index: KindIndex, handle: Handle, keep: Callable[[str], bool] = lambda _: True,
        backoffs: Sequence[float] = BACKOFFS, not_found: Callable[[Stream], None] = lambda _: None,
    ) -> None:  # fmt: skip
        self._api, self.kind, self.namespace, self._query = api, kind, namespace, tuple(query)
        self._index, self._handle, self._keep, self._backoffs = index, handle, keep, tuple(backoffs)
        self._not_found = not_found
        """Told of each 404 (OptionalKinds asks whether the CRD is still there)."""
        self.stopped = threading.Event()
        self.version: str | None = None
        """The resourceVersion to watch from; None: list first."""
        self._failures = 0
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"{self.kind.plural}.{self.kind.group} in {self.namespace or 'all namespaces'}"

    def start(self) -> None:
        name = f"watch-{self.kind.plural}" + (f"-{self.namespace}" if self.namespace else "")
        self._thread = threading.Thread(target=self.run, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """No event is handled after this. The thread ends at its stream's next line or end (the
        apiserver ends the watches of a deleted CRD's resource; any other within WATCH_SECONDS)."""
        self.stopped.set()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                if self.version is None:
                    self.list()
                    if self.version is None:  # stopped meanwhile
                        continue
                self._watch()
            except ApiError as exc:
                self.version = None
                if exc.status != 410:  # 410: the version is too old, list again at once
                    self._wait(exc)
            except Exception as exc:  # a bug must not end the stream: log, and list again
                log.exception("watch of %s failed", self)
                self.version = None
                self._wait(exc)

    def list(self, handle: bool = True) -> None:
        """List afresh: the index holds what the apiserver holds now, each object is handled (as
        Kopf handles each listed object), and those gone meanwhile as deleted. `handle` False at
        start-up: nothing is queued before Kopf knows the resources."""
        listed = self._api.list_objects(self.kind.api, self.kind.plural, self.namespace, self._query)
        items = [i for i in listed.get("items") or [] if isinstance(i, Mapping) and self._kept(i)]
        children = [snapshot.child_from(item, self.kind.kind) for item in items]
        gone = self._index.replace(children, self.namespace, self.stopped)
        if gone is None:
            return
        self.version = str(_meta(listed).get("resourceVersion") or "")
        log.debug("listed %s: %d objects", self, len(children))
        if handle:
            for item in items:
                self._handled(item, deleted=False)
            for child in gone:
                self._handled(_stub(child), deleted=True)

    def _watch(self) -> None:
        delivered = False
        for type_, obj in self._api.watch_objects(
            self.kind.api, self.kind.plural, self.namespace, self._query, self.version or "", WATCH_SECONDS
        ):
            if self.stopped.is_set():
                return
            if type_ == "ERROR":  # the status of a failed watch: 410 Gone, most often
                raise ApiError(
                    int(obj.get("code") or 0), str(obj.get("reason") or ""), str(obj.get("message"))
                )
            delivered = True
            self._failures = 0
            self.version = str(_meta(obj).get("resourceVersion") or "") or self.version
            if type_ != "BOOKMARK" and self._kept(obj):
                self._event(obj, deleted=type_ == "DELETED")
        if not delivered and not self.stopped.is_set():
            self._wait(None)  # a stream that ends at once, again and again, must not spin

    def _kept(self, raw: Mapping[str, Any]) -> bool:
        return self._keep(str(_meta(raw).get("namespace") or ""))

    def _event(self, raw: Mapping[str, Any], deleted: bool) -> None:
        meta = _meta(raw)
        if deleted:
            kept = self._index.drop(
                str(meta.get("namespace") or ""), str(meta.get("name") or ""), self.stopped
            )
        else:
            kept = self._index.put(snapshot.child_from(raw, self.kind.kind), self.stopped)
        if kept:
            self._handled(raw, deleted)

    def _handled(self, raw: Mapping[str, Any], deleted: bool) -> None:
        namespace, owner = str(_meta(raw).get("namespace") or ""), _owner(raw)
        if namespace and owner:
            self._handle(self.kind.kind, namespace, owner, raw, deleted)

    def _wait(self, exc: Exception | None) -> None:
        delay = self._backoffs[min(self._failures, len(self._backoffs) - 1)] if self._backoffs else 0.0
        self._failures += 1
        if isinstance(exc, ApiError) and exc.status == 404:
            log.info("%s is not served (though its CRD is, or was); listing again in %.0f s", self, delay)
            self._not_found(self)
        elif exc is not None:
            log.warning("watch of %s failed (%s); listing again in %.0f s", self, exc, delay)
        self.stopped.wait(delay)


class OptionalKinds:
    """The optional kinds' indices (for the cache), and their streams while their CRD is served."""

    def __init__(
        self, api: WatchApi, kinds: Iterable[Sequence[str]], handle: Handle, namespaces: Sequence[str] = (),
        forget: Callable[[str], None] = lambda kind: None, backoffs: Sequence[float] = BACKOFFS,
    ) -> None:  # fmt: skip
        self.kinds = tuple(OptionalKind(*k) for k in kinds)
        self.indices = {k.plural: KindIndex() for k in self.kinds}
        self._api, self._handle, self._forget, self._backoffs = api, handle, forget, tuple(backoffs)
        self._scopes, self._keep = scopes(namespaces)
        self._query = (("labelSelector", label_string(MANAGED_LABELS)),)
        self._lock = threading.Lock()
        self._streams: dict[str, tuple[Stream, ...]] = {}

    def watching(self) -> frozenset[str]:
        """The plurals streamed now."""
        with self._lock:
            return frozenset(self._streams)

    def alive(self) -> bool:
        """Every stream's thread runs (a stream never ends by itself before `stop`)."""
        with self._lock:
            streams = [s for group in self._streams.values() for s in group]
        return all(s.alive() for s in streams)

    def _served(self, kind: OptionalKind) -> bool:
        """Whether the kind's CRD is served now, as the apiserver says (one list, by its name)."""
        query = (("fieldSelector", f"metadata.name={kind.crd}"),)
        listed = self._api.list_objects(CRDS_API, "customresourcedefinitions", "", query)
        items = [i for i in listed.get("items") or [] if isinstance(i, Mapping)]
        return any(snapshot.crd_from(item).served for item in items)

    def prime(self) -> None:
        """At start-up, before Kopf's watches: each kind whose CRD is served now is listed in this
        thread, then watched. A failure is logged and left to the streams and the CRDs' events."""
        for kind in self.kinds:
            try:
                served = self._served(kind)
            except ApiError as exc:
                log.warning("could not read the CRD %s (%s): its events will tell", kind.crd, exc)
                if exc.status == 0:
                    return  # no answer at all: the next request would wait as long, for nothing
                continue
            if served:
                self._start(kind, list_here=True)

    def _not_found(self, stream: Stream) -> None:
        """A 404 of a kind whose CRD the CRD index says is served: mostly an apiserver that
        serves it a moment late, but it may be a CRD gone with no event to say so (deleted
        between `prime` and Kopf's first listing of the CRDs, where no event ever comes).
        The CRD is read: gone, the kind stops as its deletion's event would have stopped it."""
        try:
            if self._served(stream.kind):
                return
        except ApiError:
            return
        self._stop(stream.kind, only=stream)

    def sync(self, served: Collection[str]) -> None:
        """Stream each kind whose CRD is served (its name in `served`); stop the others."""
        for kind in self.kinds:
            if kind.crd in served:
                self._start(kind)
            else:
                self._stop(kind)

    def stop(self) -> None:
        """The operator stops: every stream ends (the indices are left as they are)."""
        with self._lock:
            streams = [s for group in self._streams.values() for s in group]
            self._streams.clear()
        for stream in streams:
            stream.stop()

    def _start(self, kind: OptionalKind, list_here: bool = False) -> None:
        with self._lock:
            if kind.plural in self._streams:
                return
            streams = tuple(
                Stream(self._api, kind, ns, self._query, self.indices[kind.plural], self._handle, self._keep,
                       self._backoffs, self._not_found)
                for ns in self._scopes
            )  # fmt: skip
            self._streams[kind.plural] = streams
        log.info("%s.%s is served: listing and watching it", kind.plural, kind.group)
        for stream in streams:
            if list_here:
                try:
                    stream.list(handle=False)
                except Exception as exc:  # the stream lists again
                    log.warning("could not list %s (%s): retrying", stream, exc)
            stream.start()

    def _stop(self, kind: OptionalKind, only: Stream | None = None) -> None:
        """Stop the kind's streams and forget its objects; with `only`, if that stream is still
        one of them (not if the kind was started again meanwhile)."""
        with self._lock:
            if only is not None and only not in self._streams.get(kind.plural, ()):
                return
            streams = self._streams.pop(kind.plural, ())
        if not streams:
            return
        for stream in streams:
            stream.stop()
        gone = self.indices[kind.plural].clear()
        self._forget(kind.kind)
        log.info("%s.%s is not served any more: watch stopped, %d objects forgotten", kind.plural, kind.group,
                 len(gone))  # fmt: skip
        for child in gone:
            self._handle(kind.kind, child.namespace, child.instance, _stub(child), True)
