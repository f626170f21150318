"""The work queue: de-duplication, one worker per key, re-run when re-added, retry on failure."""

from __future__ import annotations

import itertools
import threading
import time

from qwen_operator.process.workqueue import Retry, WorkQueue


def test_a_key_added_while_worked_runs_once_more_never_concurrently() -> None:
    started, release = threading.Event(), threading.Event()
    calls: list[str] = []
    active = {"n": 0, "max": 0}
    lock = threading.Lock()
    done = threading.Event()

    def handler(key: str) -> None:
        with lock:
            active["n"] += 1
            active["max"] = max(active["max"], active["n"])
        calls.append(key)
        if len(calls) == 1:
            started.set()
            release.wait(5)
        with lock:
            active["n"] -= 1
        if len(calls) == 2:
            done.set()

    queue: WorkQueue[str] = WorkQueue(handler, workers=3)
    queue.start()
    queue.add("a")
    assert started.wait(5)
    for _ in range(5):  # collapse into one pending run
        queue.add("a")
    release.set()
    assert done.wait(5)
    queue.stop()
    assert calls == ["a", "a"]
    assert active["max"] == 1


def test_failures_are_retried() -> None:
    attempts: list[int] = []
    done = threading.Event()

    def handler(key: str) -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("apiserver unavailable")
        done.set()

    queue: WorkQueue[str] = WorkQueue(handler, workers=1, backoff=(0.01,))
    queue.start()
    queue.add("k")
    assert done.wait(5)
    queue.stop()
    assert len(attempts) == 3
    assert queue.alive() is False


def test_a_retry_backs_off_like_a_failure_and_is_told() -> None:
    """A Retry (a quota the operator cannot watch) waits 1, then 2, ... seconds; here scaled down."""
    stamps: list[float] = []
    told: list[tuple[str, float]] = []
    done = threading.Event()
    waiting: list[int] = []

    def handler(key: str) -> None:
        stamps.append(time.monotonic())
        if len(stamps) < 4:
            raise Retry("QuotaExceeded", "services is forbidden: exceeded quota")
        done.set()

    queue: WorkQueue[str] = WorkQueue(
        handler,
        workers=1,
        backoff=(0.05, 0.1, 0.2),
        on_retry=lambda exc, delay: told.append((str(exc), delay)),
    )
    queue.start()
    queue.add("k")
    while not done.is_set() and len(waiting) < 500:
        waiting.append(queue.backing_off())
        time.sleep(0.002)
    queue.stop()
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert [d for _, d in told] == [0.05, 0.1, 0.2] and len(stamps) == 4
    assert all(gap >= delay for gap, (_, delay) in zip(gaps, told, strict=True))  # never sooner
    assert 1 in waiting and queue.backing_off() == 0  # counted while it waited, forgotten once it passed


def test_a_delayed_add_waits_collapses_and_an_earlier_turn_wins() -> None:
    worked: list[tuple[str, float]] = []
    done = threading.Event()
    started = time.monotonic()

    def handler(key: str) -> None:
        worked.append((key, time.monotonic() - started))
        if len(worked) == 2:
            done.set()

    queue: WorkQueue[str] = WorkQueue(handler, workers=1)
    for _ in range(5):
        queue.add("settle", after=0.3)  # the events of one change: one run, after the moment
    queue.add("later", after=5.0)
    queue.add("later", after=0.1)  # an earlier turn replaces the later one
    assert queue.pending() == ["later", "settle"]
    queue.start()
    assert done.wait(5)
    queue.stop()
    assert [k for k, _ in worked] == ["later", "settle"]
    assert 0.1 <= worked[0][1] < 1.0 and 0.3 <= worked[1][1] < 1.0


def test_an_immediate_add_overtakes_a_waiting_one() -> None:
    done = threading.Event()
    queue: WorkQueue[str] = WorkQueue(lambda key: done.set(), workers=1)
    queue.add("k", after=30.0)
    queue.add("k")
    queue.start()
    assert done.wait(2)
    queue.stop()


def test_a_paused_queue_collects_keys_once_and_works_them_on_resume() -> None:
    calls: list[str] = []
    done = threading.Event()

    def handler(key: str) -> None:
        calls.append(key)
        if len(calls) == 2:
            done.set()

    queue: WorkQueue[str] = WorkQueue(handler, workers=2)
    queue.pause()  # a replica that does not hold the Lease
    queue.start()
    for key in ("a", "b", "a", "b", "a"):
        queue.add(key)
    time.sleep(0.2)
    assert calls == [] and sorted(queue.pending()) == ["a", "b"]
    queue.resume()
    assert done.wait(5)
    queue.stop()
    assert sorted(calls) == ["a", "b"]


def test_retry_failed_works_a_backed_off_key_at_once() -> None:
    attempts: list[float] = []
    done = threading.Event()

    def handler(key: str) -> None:
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise RuntimeError("apiserver unavailable")
        done.set()

    queue: WorkQueue[str] = WorkQueue(handler, workers=1, backoff=(60.0,))
    queue.start()
    queue.add("k")
    deadline = time.monotonic() + 5
    while not (attempts and queue.pending() == ["k"]) and time.monotonic() < deadline:  # its 60 s back-off
        time.sleep(0.01)
    queue.retry_failed()  # the apiserver answers again
    assert done.wait(5)
    queue.stop()
    assert attempts[1] - attempts[0] < 5


def test_retry_failed_starts_the_back_off_over() -> None:
    attempts: list[float] = []
    done = threading.Event()

    def handler(key: str) -> None:
        attempts.append(time.monotonic())
        if len(attempts) < 4:
            raise RuntimeError("refused")
        done.set()

    queue: WorkQueue[str] = WorkQueue(handler, workers=1, backoff=(0.01, 60.0))
    queue.start()
    queue.add("k")
    deadline = time.monotonic() + 5
    while not (len(attempts) == 2 and queue.pending() == ["k"]) and time.monotonic() < deadline:
        time.sleep(0.01)  # the second failure waits 60 s
    queue.retry_failed()  # works it now; it fails once more, and waits the first back-off again
    assert done.wait(5)
    queue.stop()
    assert len(attempts) == 4
