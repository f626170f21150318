"""What /healthz answers: would restarting this process help? And what does it see?

The kubelet restarts a container whose liveness probe fails, so the probe must say "restart
me" exactly when a restart is the cure. 200 while every part of the operator runs: the event
loop (it answers this very request), the reconcile threads and the Lease's threads. An
apiserver or etcd that does not answer is no reason: the watches reconnect and the failed
reconciliations are retried as soon as it answers again, while a restarted operator would
lose its cache and then wait for the same apiserver. 503 when a part has died, which only a
restart cures. The body says what the replica sees: its role (leading, or standing by and
who leads) and, when the apiserver does not answer, for how long and the last error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping


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
        if failing is None:
            return "apiserver answering"
        with self._lock:
            error = self._last_error
        return f"apiserver not answering for {failing:.0f}s (retrying; last error: {error})"


CONTACT = Contact()


def report(parts: Mapping[str, bool], role: str, contact: Contact = CONTACT) -> tuple[bool, str]:
    """(healthy, the body): healthy when every part is alive; the body names the dead ones."""
    dead = sorted(name for name, alive in parts.items() if not alive)
    head = f"unhealthy: {', '.join(dead)} stopped" if dead else "ok"
    return not dead, f"{head}; {role}; {contact.describe()}\n"
