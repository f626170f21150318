"""A de-duplicating work queue with retry back-off, worked by a few threads.

Kopf's handlers only say "look at this resource again"; many events for one resource (a
StatefulSet and three pods changing at once) collapse into one pending key, a key is never
worked by two threads at once, and a key added while it is being worked runs once more
afterwards. Failures come back after an exponential back-off.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger("qwen_operator.workqueue")
K = TypeVar("K", bound=Hashable)
BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class WorkQueue(Generic[K]):
    """Keys to work on; `handler(key)` runs in a worker thread and raises to ask for a retry, or
    returns a number of seconds after which to work the key again (None: only on the next add)."""

    def __init__(
        self, handler: Callable[[K], float | None], workers: int = 4, backoff: Sequence[float] = BACKOFF
    ) -> None:
        self._handler = handler
        self._workers = workers
        self._backoff = tuple(backoff)
        self._cond = threading.Condition()
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._failures: dict[K, int] = {}
        self._timers: set[threading.Timer] = set()
        self._threads: list[threading.Thread] = []
        self._stopping = False

    def start(self) -> None:
        for i in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"reconcile-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            for timer in self._timers:
                timer.cancel()
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    def pending(self) -> list[K]:
        """Keys waiting for a worker, in order."""
        with self._cond:
            return list(self._queue)

    def add(self, key: K) -> None:
        with self._cond:
            if self._stopping or key in self._dirty:
                return
            self._dirty.add(key)
            if key not in self._processing:
                self._queue.append(key)
                self._cond.notify()

    def add_after(self, key: K, delay: float) -> None:
        def fire() -> None:
            with self._cond:
                self._timers.discard(timer)
            self.add(key)

        timer = threading.Timer(delay, fire)
        timer.daemon = True
        with self._cond:
            if self._stopping:
                return
            self._timers.add(timer)
        timer.start()

    def _next(self) -> K | None:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            key = self._queue.popleft()
            self._dirty.discard(key)
            self._processing.add(key)
            return key

    def _done(self, key: K) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:  # added again while it was worked
                self._queue.append(key)
                self._cond.notify()

    def _work(self) -> None:
        while (key := self._next()) is not None:
            try:
                again = self._handler(key)
            except Exception as exc:
                failures = self._failures.get(key, 0)
                self._failures[key] = failures + 1
                delay = self._backoff[min(failures, len(self._backoff) - 1)]
                log.warning("%s failed (attempt %d), retrying in %.0fs: %s", key, failures + 1, delay, exc)
                self.add_after(key, delay)
            else:
                self._failures.pop(key, None)
                if again is not None:
                    self.add_after(key, again)
            finally:
                self._done(key)
