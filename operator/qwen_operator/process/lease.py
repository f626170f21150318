"""Leader election on a coordination.k8s.io Lease: of several replicas, exactly one reconciles.

Why a Lease and not Kopf's peering: peering pauses an operator while a peer of higher
priority is present, but peers of equal priority all keep running (Kopf only warns), a
pause is noticed only after the peering object's next update, and nothing stops the paused
one's work already in flight. It is "freeze while another is present", not leader election.
A Lease is the Kubernetes norm (kube-controller-manager, kube-scheduler, controller-runtime):
the holder renews it; another replica takes it over only after seeing it unrenewed for its
whole duration, with an update conditional on the resourceVersion it saw (two candidates can
never both win), and the holder stops writing on its own clock before anyone may take over.

Timing, after client-go's defaults (`Timings`): a candidate takes over a lease it has seen
unchanged for 15 s (`lease_duration`); the holder stops writing when it has not renewed for
10 s (`renew_deadline`), 5 s before that may happen; it renews every 5 s (`renew_period`:
the operator's one periodic write) and retries a failed request after 2 s (`retry_period`).
Expiry is judged on each replica's monotonic clock, from the moment it saw the lease change,
never from the renewTime another machine's clock wrote.

Followers learn of renewals from a watch of the one Lease, not by polling, so a follower
sends no request while nothing changes. Identity is the pod's name (POD_NAME): stable across
restarts of the container, so a restarted container takes its own lease back at once
instead of waiting out the lease its predecessor held; two live processes never share a pod
name (the kubelet restarts a container after it has died). Out of a pod: host name and a
random suffix.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from qwen_operator.process import clock, metrics
from qwen_operator.process.cache import newer
from qwen_operator.process.kube import ApiError

log = logging.getLogger("qwen_operator.process.lease")
API_VERSION = "coordination.k8s.io/v1"
DEFAULT_NAME = "qwen-operator"
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
WATCH_SECONDS = 300
"""How long one watch request of the Lease lasts before the apiserver ends it (then another)."""


@dataclass(frozen=True)
class Timings:
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    renew_period: float = 5.0
    retry_period: float = 2.0


@dataclass(frozen=True)
class Config:
    """Where the Lease lives and who this replica is."""

    namespace: str
    name: str
    identity: str


def config_from_env(
    env: Mapping[str, str] = os.environ, in_cluster: Path = IN_CLUSTER_NAMESPACE
) -> Config | None:
    """QWEN_OPERATOR_LEASE_NAMESPACE (the manifests set it to the pod's namespace), else the
    namespace of the pod's ServiceAccount; None out of a cluster without it (no election)."""
    namespace = env.get("QWEN_OPERATOR_LEASE_NAMESPACE", "")
    if not namespace and in_cluster.exists():
        namespace = in_cluster.read_text().strip()
    if not namespace:
        return None
    identity = env.get("POD_NAME") or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
    return Config(namespace, env.get("QWEN_OPERATOR_LEASE_NAME") or DEFAULT_NAME, identity)


def micro_time(moment: datetime) -> str:
    """A Kubernetes MicroTime."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Record:
    """What a Lease says, as far as the election reads it."""

    holder: str
    duration: float
    acquire_time: str
    renew_time: str
    transitions: int
    resource_version: str

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> Record:
        spec = raw.get("spec") or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            duration=float(spec.get("leaseDurationSeconds") or Timings.lease_duration),
            acquire_time=str(spec.get("acquireTime") or ""),
            renew_time=str(spec.get("renewTime") or ""),
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=str((raw.get("metadata") or {}).get("resourceVersion") or ""),
        )


class LeaseApi(Protocol):
    """The requests the election makes (kube.Kube implements them; tests an in-memory store)."""

    def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]: ...

    def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]: ...

    def watch_lease(
        self, namespace: str, name: str, resource_version: str | None, seconds: int
    ) -> Iterator[tuple[str, dict[str, Any]]]: ...


class Elector:
    """Takes, renews and releases the Lease; `leading()` says whether this replica may write."""

    def __init__(
        self,
        api: LeaseApi,
        config: Config,
        on_change: Callable[[bool], None] = lambda _: None,
        timings: Timings = Timings(),
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = clock.now,
    ) -> None:
        self._api, self.config, self._on_change, self.t = api, config, on_change, timings
        self._monotonic, self._wall = monotonic, wall
        self._cond = threading.Condition()
        self._seen: Record | None = None
        self._known = False
        """Whether `_seen` reflects the apiserver (None then means: there is no Lease)."""
        self._seen_at = monotonic()
        self._renewed_at: float | None = None
        """When the last successful acquisition or renewal was sent; None while not leading."""
        self._stopping = False
        self._threads: list[threading.Thread] = []

    # -- what the operator asks --------------------------------------------------------------

    def leading(self) -> bool:
        """This replica holds the Lease and renewed it within the renew deadline: it may write."""
        with self._cond:
            return self._valid(self._monotonic())

    def holder(self) -> str:
        with self._cond:
            return self._seen.holder if self._seen else ""

    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def start(self) -> None:
        for name, target in (("lease-elector", self._run), ("lease-watch", self._watch)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, release: bool = True) -> None:
        """Stop electing; hand the Lease over at once (holder emptied) when this replica holds it."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._threads:
            self._threads[0].join(timeout=self.t.retry_period * 2)
        with self._cond:
            was_leading, seen = self._valid(self._monotonic()), self._seen
        self._lost()
        if not (release and was_leading and seen is not None):
            return
        now = micro_time(self._wall())
        spec = {"holderIdentity": "", "leaseDurationSeconds": 1, "acquireTime": now, "renewTime": now,
                "leaseTransitions": seen.transitions}  # fmt: skip
        try:
            self._api.replace_lease(self.config.namespace, self.config.name, self._body(spec, seen))
            log.info("released lease %s/%s", self.config.namespace, self.config.name)
        except ApiError as exc:  # the next leader waits for the lease to expire instead
            log.warning("could not release lease %s/%s: %s", self.config.namespace, self.config.name, exc)

    # -- the election ------------------------------------------------------------------------

    def step(self) -> float:
        """One move (renew, acquire, or wait); the seconds until the next one."""
        now = self._monotonic()
        with self._cond:
            if self._valid(now):
                due = (self._renewed_at or now) + self.t.renew_period
                if now < due:
                    return due - now
                lost, expires = False, None
            else:
                lost, self._renewed_at = self._renewed_at is not None, None
                expires = self._expires(now)
        if lost:
            self._report(False, "not renewed within the renew deadline")
        if expires is not None:
            return expires - now
        return self.t.renew_period if self._attempt(now) else self.t.retry_period

    def _valid(self, now: float) -> bool:
        return self._renewed_at is not None and now < self._renewed_at + self.t.renew_deadline

    def _expires(self, now: float) -> float | None:
        """When another holder's lease, as seen here, runs out; None if it is free to take now."""
        seen = self._seen
        if seen is None or seen.holder in ("", self.config.identity):
            return None
        at = self._seen_at + seen.duration
        return at if now < at else None

    def _attempt(self, now: float) -> bool:
        """Create, take over or renew the Lease; True if this replica holds it afterwards."""
        cfg = self.config
        try:
            if not self._known:
                self._observe(self._api.read_lease(cfg.namespace, cfg.name), now)
            with self._cond:
                seen, held, waiting = self._seen, self._renewed_at is not None, self._expires(now) is not None
            if waiting:
                return False
            body = self._body(self._spec(seen, held), seen)
            if seen is None:
                result = self._api.create_lease(cfg.namespace, body)
            else:
                result = self._api.replace_lease(cfg.namespace, cfg.name, body)
        except ApiError as exc:
            if exc.status == 409:  # someone else wrote it first: look again
                self._refresh(now)
            else:
                log.info("lease %s/%s: %s", cfg.namespace, cfg.name, exc)
            return False
        self._observe(result, now)
        with self._cond:
            if self._stopping:
                return False
            self._renewed_at = now
        if not held:
            self._report(True, "acquired")
        return True

    def _refresh(self, now: float) -> None:
        try:
            self._observe(self._api.read_lease(self.config.namespace, self.config.name), now)
        except ApiError as exc:
            log.info("lease %s/%s: %s", self.config.namespace, self.config.name, exc)

    def _spec(self, seen: Record | None, renewing: bool) -> dict[str, Any]:
        now = micro_time(self._wall())
        ours = seen is not None and seen.holder == self.config.identity
        transitions = 0 if seen is None else seen.transitions + (0 if ours else 1)
        return {
            "holderIdentity": self.config.identity,
            "leaseDurationSeconds": int(self.t.lease_duration),
            "acquireTime": seen.acquire_time if seen is not None and ours and renewing else now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def _body(self, spec: dict[str, Any], seen: Record | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.config.name, "namespace": self.config.namespace}
        if seen is not None:
            meta["resourceVersion"] = seen.resource_version  # the update wins only over what was seen
        return {"apiVersion": API_VERSION, "kind": "Lease", "metadata": meta, "spec": spec}

    def observe(self, raw: Mapping[str, Any] | None) -> None:
        """What the watch delivered: a version of the Lease (None: it was deleted)."""
        self._observe(raw, self._monotonic())

    def _observe(self, raw: Mapping[str, Any] | None, now: float) -> None:
        """A version of the Lease (None: there is none); an older one arriving late is ignored."""
        record = Record.of(raw) if raw else None
        stolen = False
        with self._cond:
            old = self._seen
            if record and old and self._known and newer(old.resource_version, record.resource_version):
                return
            same = (record is None and old is None) or (
                record is not None and old is not None and (record.holder, record.renew_time)
                == (old.holder, old.renew_time)
            )  # fmt: skip
            if not same or not self._known:
                self._seen_at = now
            self._seen, self._known = record, True
            if self._renewed_at is not None and (record is None or record.holder != self.config.identity):
                self._renewed_at, stolen = None, True
            self._cond.notify_all()
        if stolen:
            self._report(False, f"lease now held by {record.holder if record else 'nobody'}")

    def _lost(self) -> None:
        with self._cond:
            held, self._renewed_at = self._renewed_at is not None, None
        if held:
            self._report(False, "stopping")

    def _report(self, leading: bool, why: str) -> None:
        cfg = self.config
        log.info("%s lease %s/%s as %s (%s)", "holding" if leading else "lost", cfg.namespace, cfg.name,
                 cfg.identity, why)  # fmt: skip
        metrics.LEADER.set(1 if leading else 0)
        metrics.LEADERSHIP_CHANGES.labels(change="acquired" if leading else "lost").inc()
        self._on_change(leading)

    # -- threads -----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                delay = self.step()
            except Exception:  # a bug must not end the election: log, and try again
                log.exception("lease election step failed")
                delay = self.t.retry_period
            with self._cond:
                if self._stopping:
                    return
                self._cond.wait(max(delay, 0.05))
                if self._stopping:
                    return

    def _watch(self) -> None:
        """Follow the Lease: each renewal by the holder moves the expiry seen here."""
        cfg, version = self.config, None
        while not self._stopping:
            try:
                for kind, obj in self._api.watch_lease(cfg.namespace, cfg.name, version, WATCH_SECONDS):
                    if kind == "ERROR":
                        version = None  # 410 Gone (or any error): list afresh
                        break
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version or "") or None
                    if kind != "BOOKMARK":
                        self.observe(None if kind == "DELETED" else obj)
                    if self._stopping:
                        return
            except Exception as exc:  # the apiserver went away: the health check says so; retry
                log.debug("lease watch ended: %s", exc)
                with self._cond:
                    self._cond.wait(self.t.retry_period)
