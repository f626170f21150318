"""What /healthz answers: would restarting this process help? And what does it see?

The kubelet restarts a container whose liveness probe fails, so the probe must say "restart
me" exactly when a restart is the cure. 200 while every part of the operator runs: the event
loop (it answers this very request), the reconcile threads and the Lease's threads. An
apiserver or etcd that does not answer is no reason: the watches reconnect and the failed
reconciliations are retried as soon as it answers again, while a restarted operator would
lose its cache and then wait for the same apiserver. 503 when a part has died, which only a
restart cures. The body says what the replica sees, in words that name nothing: its role
(leading, or standing by) and, when the apiserver does not answer or a request hangs, for how
long. The health port needs no credentials, so which pod leads and what the apiserver's error
said go to the log only (lease.py logs each change of holder; `Contact` logs the error that
began an outage and the end of it).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping

log = logging.getLogger(__name__)

SLOW_SECONDS = 5.0
"""A request unanswered this long is reported (etcd away: the apiserver holds requests)."""


class Contact:
    """Whether the apiserver answered this replica's last request, and since when it has not.

    Fed by every request the operator's own client sends (kube.py); Kopf's watches are not
    seen here. When the apiserver answers again after failing, `on_restored` callbacks run
    (the work queue retries what failed at once instead of after its back-off)."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._failing_since: float | None = None
        self._restored: list[Callable[[], None]] = []
        self._in_flight: dict[int, float] = {}
        self._ids = itertools.count()

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Around one request that should be answered promptly (not a watch)."""
        ident = next(self._ids)
        with self._lock:
            self._in_flight[ident] = self._monotonic()
        try:
            yield
        finally:
            with self._lock:
                del self._in_flight[ident]

    def on_restored(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._restored.append(callback)

    def answered(self) -> None:
        with self._lock:
            since, self._failing_since = self._failing_since, None
            callbacks = list(self._restored) if since is not None else []
        if since is not None:
            log.info("the apiserver answers again, after %.0fs", self._monotonic() - since)
        for callback in callbacks:
            callback()

    def failed(self, detail: str) -> None:
        """A request got no answer, or one that says the apiserver cannot serve: the error
        that begins an outage is logged (not the body of /healthz, which anyone reads)."""
        with self._lock:
            began = self._failing_since is None
            if began:
                self._failing_since = self._monotonic()
        if began:
            log.warning("the apiserver does not answer: %s", detail[:300])

    def failing_for(self) -> float | None:
        """Seconds since the apiserver last answered after failing; None while it answers."""
        with self._lock:
            return None if self._failing_since is None else self._monotonic() - self._failing_since

    def describe(self) -> str:
        failing = self.failing_for()
        with self._lock:
            oldest = min(self._in_flight.values(), default=None)
        if failing is not None:
            return f"apiserver not answering for {failing:.0f}s (retrying)"
        waited = 0.0 if oldest is None else self._monotonic() - oldest
        if waited >= SLOW_SECONDS:
            return f"apiserver slow: a request unanswered for {waited:.0f}s"
        return "apiserver answering"


CONTACT = Contact()


def report(parts: Mapping[str, bool], role: str, contact: Contact = CONTACT) -> tuple[bool, str]:
    """(healthy, the body): healthy when every part is alive; the body names the dead ones."""
    dead = sorted(name for name, alive in parts.items() if not alive)
    head = f"unhealthy: {', '.join(dead)} stopped" if dead else "ok"
    return not dead, f"{head}; {role}; {contact.describe()}\n"
