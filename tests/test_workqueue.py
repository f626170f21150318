"""The work queue: de-duplication, one worker per key, re-run when re-added, retry on failure."""

from __future__ import annotations

import threading

from qwen_operator.workqueue import WorkQueue


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
