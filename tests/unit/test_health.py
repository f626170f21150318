"""/healthz's verdict and body: healthy while every part runs, whatever the apiserver does."""

from __future__ import annotations

import logging
from typing import Any, cast

import pytest

from qwen_operator.process import handlers, health, lease


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_apiserver_outage_is_reported_but_never_unhealthy(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=health.__name__)
    clock, restored = Clock(), []
    contact = health.Contact(clock)
    contact.on_restored(lambda: restored.append(clock.now))
    ok, body = health.report({"reconcile threads": True}, "leading", contact)
    assert ok and body == "ok; leading; apiserver answering\n"
    contact.failed("ConnectionRefusedError: [Errno 111] Connection refused")
    clock.now += 7
    contact.failed("HTTP 503")
    ok, body = health.report({"reconcile threads": True}, "leading", contact)
    # The error is the log's, not the body's: the health port asks no credentials.
    assert ok and body == "ok; leading; apiserver not answering for 7s (retrying)\n"
    assert "refused" not in body and "503" not in body
    contact.answered()
    contact.answered()
    assert restored == [107.0]  # once, when it came back
    logged = [r.getMessage() for r in caplog.records if r.name == health.__name__]
    assert logged == [  # the error that began the outage, and its end; once each
        "the apiserver does not answer: ConnectionRefusedError: [Errno 111] Connection refused",
        "the apiserver answers again, after 7s",
    ]
    assert contact.failing_for() is None


def test_a_dead_part_is_unhealthy_and_named() -> None:
    ok, body = health.report(
        {"reconcile threads": True, "lease threads": False}, "standing by", health.Contact()
    )
    assert not ok and body.startswith("unhealthy: lease threads stopped; standing by;")


def test_a_request_the_apiserver_holds_is_reported_as_slow() -> None:
    clock = Clock()
    contact = health.Contact(clock)
    with contact.waiting():
        clock.now += 2
        assert contact.describe() == "apiserver answering"
        clock.now += health.SLOW_SECONDS
        assert contact.describe() == "apiserver slow: a request unanswered for 7s"
    assert contact.describe() == "apiserver answering"


class Elector:
    """Stands in for lease.Elector: who holds the Lease, and whether this replica leads."""

    def __init__(self, holder: str, identity: str) -> None:
        self.config = lease.Config("ops", "qwen-operator", identity)
        self._holder = holder

    def leading(self) -> bool:
        return self._holder == self.config.identity

    def holder(self) -> str:
        return self._holder

    def alive(self) -> bool:
        return True


class Queue:
    def alive(self) -> bool:
        return True


def test_the_body_never_names_the_pod_that_leads() -> None:
    """The health port asks no credentials: the leader's pod name is for the log (lease.py)."""

    def replica(holder: str, identity: str) -> handlers.Runtime:
        elector = cast(Any, Elector(holder, identity))
        return handlers.Runtime(cast(Any, Queue()), cast(Any, None), elector=elector)

    ok, body = replica("pod-a", "pod-b").health()
    assert ok and body.startswith("ok; standing by; ")
    assert "pod-a" not in body and "pod-b" not in body
    assert replica("pod-a", "pod-a").health()[1].startswith("ok; leading; ")
