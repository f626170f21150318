"""The launcher's stop, the pure part: the first signal goes on, repeats never do, and nothing
is killed unless --kill-after asked for it."""

from __future__ import annotations

import signal

import pytest

from qwen_runtime.argv import shutdown_timeout
from qwen_runtime.stopping import Stop


def test_only_the_first_signal_is_forwarded_and_it_is_remembered() -> None:
    stop = Stop(drain_seconds=1200)
    assert stop.receive(signal.SIGTERM, now=10.0)
    assert not stop.receive(signal.SIGTERM, now=11.0)
    assert not stop.receive(signal.SIGINT, now=12.0)
    assert not stop.receive(signal.SIGHUP, now=13.0)
    assert (stop.first, stop.first_at) == (signal.SIGTERM, 10.0)
    assert stop.dropped == [signal.SIGTERM, signal.SIGINT, signal.SIGHUP]


def test_no_escalation_by_default_however_many_signals_and_however_long() -> None:
    stop = Stop(drain_seconds=1200)
    assert not stop.escalate(now=0.0)
    for second in range(5):
        stop.receive(signal.SIGTERM, now=float(second))
    assert not stop.escalate(now=10**9)


def test_kill_after_counts_from_the_first_signal_not_a_repeat() -> None:
    stop = Stop(kill_after=30.0)
    assert not stop.escalate(now=100.0), "nothing received yet"
    stop.receive(signal.SIGTERM, now=100.0)
    stop.receive(signal.SIGTERM, now=125.0)
    assert not stop.escalate(now=129.9)
    assert stop.escalate(now=130.0)


def test_notices_say_what_happens() -> None:
    stop = Stop(drain_seconds=1200)
    first = stop.notice(signal.SIGTERM, stop.receive(signal.SIGTERM, 0.0))
    assert first == (
        "[qwen-runtime] SIGTERM: forwarded to the server; it finishes the requests in flight for up to "
        "1200 s (--shutdown-timeout)\n"
    )
    repeat = stop.notice(signal.SIGINT, stop.receive(signal.SIGINT, 1.0))
    assert repeat == (
        "[qwen-runtime] SIGINT: not forwarded, the server is already stopping since SIGTERM; "
        "waiting for it to exit\n"
    )
    assert "aborts the requests in flight" in Stop().notice(signal.SIGTERM, True)


@pytest.mark.parametrize(
    ("command", "seconds"),
    [
        (["vllm", "serve", "m", "--shutdown-timeout", "1200"], 1200),
        (["vllm", "serve", "m", "--shutdown_timeout=60"], 60),
        (["vllm", "serve", "m"], 0),
        (["vllm", "serve", "m", "--shutdown-timeout", "soon"], 0),
        (["vllm", "serve", "m", "--shutdown-timeout", "-5"], 0),
    ],
)
def test_the_drain_is_read_from_the_command_line(command: list[str], seconds: int) -> None:
    """vLLM's default, 0, when the flag is absent or not a whole number of seconds."""
    assert shutdown_timeout(command) == seconds
