"""A pipeline worker's preStop (`wait-leader`): it holds the worker while its leader still accepts
connections, returns once the leader has closed its port, and never waits past its bound nor for
a leader it cannot reach. The leader here is a TCP listener on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from qwen_runtime import leader
from tests.unit.runtime.helpers import launcher_env


class FakeLeader:
    """A listening port on 127.0.0.1 that accepts (and drops) every connection until closed:
    what a draining vLLM's API port looks like to a worker, until the leader exits."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self.accepted = 0
        self.closed_at: float | None = None
        self.close_on: int | None = None
        """Close once this many connections were accepted (the waiter saw the leader up)."""
        self._close = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._close.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            conn.close()
            if self.close_on is not None and self.accepted >= self.close_on:
                self._close.set()
        self.sock.close()
        self.closed_at = time.monotonic()

    def close_after(self, seconds: float) -> None:
        threading.Timer(seconds, self._close.set).start()

    def close(self) -> None:
        self._close.set()
        self._thread.join(5)


@pytest.fixture
def fake_leader() -> Iterator[FakeLeader]:
    served = FakeLeader()
    yield served
    served.close()


def never(seconds: float) -> None:
    """A wait that must not pause at all (returns at once, however busy the machine)."""
    raise AssertionError(f"paused {seconds} s")


def free_port() -> int:
    """A loopback port nobody listens on (bound, never listened, released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_the_worker_waits_while_the_leader_drains_and_goes_once_it_closed(fake_leader: FakeLeader) -> None:
    fake_leader.close_after(1.5)
    started = time.monotonic()
    assert leader.wait("127.0.0.1", fake_leader.port, 30, poll=0.1) is True
    done = time.monotonic()
    assert fake_leader.closed_at is not None and fake_leader.closed_at <= done
    assert done - started >= 1.5  # not before the close (how soon after: the fake-clock test below)
    assert fake_leader.accepted >= 5  # it kept looking while the leader drained


def test_a_leader_that_never_closes_is_waited_for_until_the_bound(fake_leader: FakeLeader) -> None:
    started = time.monotonic()
    assert leader.wait("127.0.0.1", fake_leader.port, 1.5, poll=0.1) is False
    assert time.monotonic() - started >= 1.5
    assert fake_leader.accepted >= 5 and fake_leader.closed_at is None


def test_a_refused_connection_returns_at_once() -> None:
    """No leader listening (gone, or not started yet): nothing to wait for."""
    assert leader.wait("127.0.0.1", free_port(), 30, sleep=never) is True


def test_an_unresolvable_leader_returns_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The leader's pod is deleted, so its name left the group's Service (resolution faked: no
    query leaves the machine)."""
    asked: list[object] = []

    def no_such_name(host: object, *args: object, **kwargs: object) -> Any:
        asked.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    assert leader.wait("q-0.q-0.ns", 8000, 30, sleep=never) is True
    assert asked == ["q-0.q-0.ns"]


def test_no_answer_counts_as_gone_and_the_connect_never_outlasts_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A vanished pod address answers nothing: the connect's timeout ends the wait."""
    timeouts: list[float] = []

    def silent(address: tuple[str, int], timeout: float) -> socket.socket:
        timeouts.append(timeout)
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", silent)
    assert leader.wait("10.0.0.1", 8000, 30) is True
    assert timeouts == [leader.CONNECT_TIMEOUT_SECONDS]
    timeouts.clear()
    assert leader.wait("10.0.0.1", 8000, 0.5) is True
    assert timeouts == [pytest.approx(0.5, abs=0.1)]


def test_the_bound_counts_the_looks_and_the_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a clock of our own: looks every `poll` s, the last pause cut to the bound, no look after it."""
    now = [0.0]
    looks: list[tuple[float, float]] = []

    def answers(host: str, port: int, timeout: float) -> bool:
        looks.append((now[0], timeout))
        now[0] += 0.25  # each connect takes a while
        return True

    def sleep(seconds: float) -> None:
        now[0] += seconds

    monkeypatch.setattr(leader, "answers", answers)
    assert leader.wait("h", 1, 5.0, poll=1.0, clock=lambda: now[0], sleep=sleep) is False
    assert now[0] == pytest.approx(5.0)
    assert [at for at, _ in looks] == pytest.approx([0.0, 1.25, 2.5, 3.75])
    assert looks[-1][1] == pytest.approx(1.25)  # the last connect is cut to what is left


def wait_leader(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python3 -m qwen_runtime wait-leader ...` as the kubelet execs it in the worker."""
    base = {k: v for k, v in launcher_env().items() if k != leader.ADDRESS_VAR}
    return subprocess.run(
        [sys.executable, "-m", "qwen_runtime", leader.SUBCOMMAND, *args],
        env={**base, **(env or {})}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_the_hook_reads_the_leaders_address_from_the_environment(fake_leader: FakeLeader) -> None:
    fake_leader.close_on = 2  # up while the hook looks (however slowly it starts), then gone
    done = wait_leader("--port", str(fake_leader.port), "--seconds", "30",
                       env={leader.ADDRESS_VAR: "127.0.0.1"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"127.0.0.1:{fake_leader.port} no longer accepts connections" in done.stderr
    assert fake_leader.closed_at is not None and fake_leader.accepted >= 1


def test_the_hook_fails_at_the_bound_so_the_kubelet_says_so(fake_leader: FakeLeader) -> None:
    """Exit 1: the kubelet's FailedPreStopHook event carries the reason; the worker stops anyway."""
    done = wait_leader("--address", "127.0.0.1", "--port", str(fake_leader.port), "--seconds", "1")
    assert done.returncode == 1, done.stderr
    assert "still accepts connections after 1." in done.stderr


def test_without_a_leader_address_there_is_nothing_to_wait_for() -> None:
    done = wait_leader("--port", str(free_port()), "--seconds", "30")
    assert done.returncode == 0, done.stderr
    assert f"${leader.ADDRESS_VAR} unset" in done.stderr
