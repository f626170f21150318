"""/healthz's verdict and body: healthy while every part runs, whatever the apiserver does."""

from __future__ import annotations

from qwen_operator.process import health


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_apiserver_outage_is_reported_but_never_unhealthy() -> None:
    clock, restored = Clock(), []
    contact = health.Contact(clock)
    contact.on_restored(lambda: restored.append(clock.now))
    ok, body = health.report({"reconcile threads": True}, "leading", contact)
    assert ok and body == "ok; leading; apiserver answering\n"
    contact.failed("ConnectionRefusedError: [Errno 111] Connection refused")
    clock.now += 7
    contact.failed("HTTP 503")
    ok, body = health.report({"reconcile threads": True}, "leading", contact)
    assert ok and body == "ok; leading; apiserver not answering for 7s (retrying; last error: HTTP 503)\n"
    contact.answered()
    contact.answered()
    assert restored == [107.0]  # once, when it came back
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
