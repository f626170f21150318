"""A de-duplicating, delaying work queue with retry back-off, worked by a few threads.

Kopf's handlers only say "look at this resource again"; many events for one resource (a
StatefulSet and three pods changing at once) collapse into one pending key, a key is never
worked by two threads at once, and a key added while it is being worked runs once more
afterwards. An add may ask for a delay: the events of one change (a pod turns ready, then
its StatefulSet counts it) arrive within a moment of each other, and waiting that moment
turns several status writes into one. A key already due sooner keeps its turn. Failures come
back after an exponential back-off; a handler may also ask to be run again after a while.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger("qwen_operator.process.workqueue")
K = TypeVar("K", bound=Hashable)
BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
"""Seconds before the 1st, 2nd, ... retry of a failing key; then every minute, never faster."""


class Retry(Exception):
    """Nothing failed, but the key waits on something no watch reports (a ResourceQuota): back off
    as after a failure, and say so at INFO (it is the cluster's state, not the operator's error)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class WorkQueue(Generic[K]):
    """Keys to work on; `handler(key)` runs in a worker thread and raises to ask for a retry, or
    returns a number of seconds after which to work the key again (None: only on the next add)."""

    def __init__(
        self,
        handler: Callable[[K], float | None],
        workers: int = 4,
        backoff: Sequence[float] = BACKOFF,
        on_retry: Callable[[Exception, float], None] = lambda exc, delay: None,
    ) -> None:
        self._handler = handler
        self._on_retry = on_retry
        """Told of each back-off (the metrics count them)."""
        self._workers = workers
        self._backoff = tuple(backoff)
        self._cond = threading.Condition()
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        """Keys that will be worked: queued, or waiting for their time."""
        self._due: dict[K, float] = {}
        """Waiting keys and when they are due (time.monotonic)."""
        self._timeline: list[tuple[float, int, K]] = []
        self._order = itertools.count()
        self._processing: set[K] = set()
        self._failures: dict[K, int] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._paused = False

    def start(self) -> None:
        for i in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"reconcile-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def backing_off(self) -> int:
        """Keys waiting for a retry after a failure (or a Retry)."""
        with self._cond:
            return len(self._failures)

    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    def pause(self) -> None:
        """Workers take no key until `resume` (a replica that does not hold the Lease); keys
        still collect, each once, and the one a worker holds is finished (its writes fenced)."""
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def retry_failed(self) -> None:
        """Work every key that is waiting out a back-off now, its back-off started over: what
        failed because the apiserver was away may succeed now that it answers again (an
        apiserver just started may still refuse for a moment: retried after 1 s, not 10)."""
        with self._cond:
            failed = list(self._failures)
            self._failures.clear()
        for key in failed:
            self.add(key)

    def pending(self) -> list[K]:
        """Keys that will be worked: those queued, then those waiting, by when they are due."""
        with self._cond:
            return [*self._queue, *sorted(self._due, key=lambda k: self._due[k])]

    def add(self, key: K, after: float = 0.0) -> None:
        """Work `key` once more, in `after` seconds at the latest (sooner if already due sooner)."""
        with self._cond:
            if self._stopping:
                return
            due = time.monotonic() + after
            if key in self._dirty and (key not in self._due or self._due[key] <= due):
                return  # already queued, or waiting for an earlier turn
            self._dirty.add(key)
            if after <= 0:
                self._due.pop(key, None)
                if key not in self._processing:
                    self._queue.append(key)
            else:
                self._due[key] = due
                heapq.heappush(self._timeline, (due, next(self._order), key))
            self._cond.notify()

    def add_after(self, key: K, delay: float) -> None:
        self.add(key, after=delay)

    def _promote(self) -> float | None:
        """Move waiting keys whose time has come to the queue; seconds until the next one is due."""
        now = time.monotonic()
        while self._timeline:
            due, _, key = self._timeline[0]
            if self._due.get(key) != due:  # superseded by an earlier turn, or already queued
                heapq.heappop(self._timeline)
                continue
            if due > now:
                return due - now
            heapq.heappop(self._timeline)
            del self._due[key]
            if key not in self._processing:
                self._queue.append(key)
        return None

    def _next(self) -> K | None:
        with self._cond:
            while True:
                if self._stopping:
                    return None
                wait = self._promote()
                if self._queue and not self._paused:
                    key = self._queue.popleft()
                    self._dirty.discard(key)
                    self._processing.add(key)
                    return key
                self._cond.wait(wait)

    def _done(self, key: K) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty and key not in self._due:  # added again while it was worked
                self._queue.append(key)
                self._cond.notify()

    def _work(self) -> None:
        while (key := self._next()) is not None:
            try:
                again = self._handler(key)
            except Exception as exc:
                with self._cond:
                    failures = self._failures.get(key, 0)
                    self._failures[key] = failures + 1
                delay = self._backoff[min(failures, len(self._backoff) - 1)]
                level = logging.INFO if isinstance(exc, Retry) else logging.WARNING
                log.log(level, "%s: %s (attempt %d), retrying in %.0fs", key, exc, failures + 1, delay)
                self._on_retry(exc, delay)
                self.add(key, after=delay)
            else:
                with self._cond:
                    self._failures.pop(key, None)
                if again is not None:
                    self.add(key, after=again)
            finally:
                self._done(key)
