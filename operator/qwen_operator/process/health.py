"""What /healthz answers: would restarting this process help? And what does it see?

The kubelet restarts a container whose liveness probe fails, so the probe must say "restart
me" exactly when a restart is the cure. 200 while every part of the operator runs: the event
loop (it answers this very request), the reconcile threads and the Lease's threads. An
apiserver or etcd that does not answer is no reason: the watches reconnect and the failed
reconciliations are retried as soon as it answers again, while a restarted operator would
lose its cache and then wait for the same apiserver. 503 when a part has died, which only a
restart cures. The body says what the replica sees: its role (leading, or standing by and
who leads) and, when the apiserver does not answer or a request hangs, for how long.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Mapping

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
        self._last_error = ""
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
            was_failing, self._failing_since = self._failing_since is not None, None
            callbacks = list(self._restored) if was_failing else []
        for callback in callbacks:
            callback()

    def failed(self, detail: str) -> None:
        with self._lock:
            if self._failing_since is None:
                self._failing_since = self._monotonic()
            self._last_error = detail[:300]

    def failing_for(self) -> float | None:
        """Seconds since the apiserver last answered after failing; None while it answers."""
        with self._lock:
            return None if self._failing_since is None else self._monotonic() - self._failing_since

    def describe(self) -> str:
        failing = self.failing_for()
        with self._lock:
            error = self._last_error
            oldest = min(self._in_flight.values(), default=None)
        if failing is not None:
            return f"apiserver not answering for {failing:.0f}s (retrying; last error: {error})"
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
