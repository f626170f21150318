"""The whole launcher path: a fake server prints vLLM's messages and exits, or gets signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from qwen_runtime.engine import ENGINE_READY_TIMEOUT_S
from tests.unit.runtime.fake_server import fixture_parts
from tests.unit.runtime.helpers import FIXTURES, cases, launcher_argv, popen, run, without_reports
from tests.unit.runtime.test_classify import check

CASES = cases()
WAIT_SECONDS = 20.0


def read_record(path: Path) -> dict[str, Any]:
    lines = path.read_text().splitlines()
    assert len(lines) == 1, lines
    assert len(lines[0].encode()) <= 4095
    record: dict[str, Any] = json.loads(lines[0])
    return record


@pytest.mark.parametrize("name", sorted(CASES))
def test_failure_writes_record_and_passes_exit_code(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    log = tmp_path / "termination-log"
    argv = launcher_argv(log, "replay", str(FIXTURES / name), str(case["exitCode"]), *case.get("argv", []))
    done = run(argv)
    assert done.returncode == case["exitCode"]
    record = read_record(log)
    check(record, case)
    assert record["exitCode"] == case["exitCode"]
    out, err = fixture_parts(FIXTURES / name)
    assert without_reports(done.stdout) == out, "stdout must pass through unchanged"
    assert done.stderr.startswith(err), "stderr must pass through unchanged"
    assert b"[qwen-runtime] termination message: " in done.stderr[len(err) :]


def test_success_writes_nothing(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    done = run(launcher_argv(log, "stream", "1000"))
    assert done.returncode == 0
    assert len(done.stdout) == 1000
    assert not log.exists()


@pytest.mark.parametrize(("given", "seen"), [(None, str(ENGINE_READY_TIMEOUT_S)), ("7200", "7200")])
def test_child_gets_the_engine_start_timeout_unless_the_caller_set_one(
    given: str | None, seen: str, tmp_path: Path
) -> None:
    """The stock image and the baked one behave the same; the pod spec's or the user's value wins."""
    env = {k: v for k, v in os.environ.items() if k != "VLLM_ENGINE_READY_TIMEOUT_S"}
    if given is not None:
        env["VLLM_ENGINE_READY_TIMEOUT_S"] = given
    done = run(launcher_argv(tmp_path / "termination-log", "env", "VLLM_ENGINE_READY_TIMEOUT_S"), env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"VLLM_ENGINE_READY_TIMEOUT_S={seen}\n".encode()
    assert ENGINE_READY_TIMEOUT_S == 2400


def test_arbitrary_exit_code_is_passed_through(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    argv = launcher_argv(log, "replay", str(FIXTURES / "unknown_corrupt_checkpoint.log"), "3")
    done = run(argv)
    assert done.returncode == 3
    assert read_record(log)["exitCode"] == 3


def test_missing_executable_is_127(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    argv = [sys.executable, "-m", "qwen_runtime", "--termination-log", str(log), "--",
            "/nonexistent/vllm", "serve"]  # fmt: skip
    done = run(argv)
    assert done.returncode == 127
    record = read_record(log)
    assert record["reason"] == "Unknown"
    assert "/nonexistent/vllm" in record["message"]


def test_usage_error_without_command(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "qwen_runtime", "--termination-log", str(tmp_path / "t")]
    done = run(argv)
    assert done.returncode == 2
    assert b"-- COMMAND" in done.stderr


def start_waiting_child(
    tmp_path: Path, *child: str, options: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[bytes], int]:
    """Launch ``fake_server wait``; return the launcher and the child's pid once it is ready.

    Reading ``ready`` while the child still runs also proves output is not buffered.
    """
    proc = popen(launcher_argv(tmp_path / "termination-log", "wait", *child, options=options))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith(b"ready pid="), line
    return proc, int(line.split(b"=")[1])


def test_sigterm_reaches_child_and_its_exit_code_comes_back(tmp_path: Path) -> None:
    proc, _ = start_waiting_child(tmp_path, "--term-exit", "0")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=WAIT_SECONDS)
    assert proc.returncode == 0
    assert b"got SIGTERM" in out
    assert not (tmp_path / "termination-log").exists()


def test_sigint_is_forwarded_too(tmp_path: Path) -> None:
    proc, _ = start_waiting_child(tmp_path, "--term-exit", "5")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=WAIT_SECONDS)
    assert proc.returncode == 5
    assert b"got SIGINT" in out
    record = read_record(tmp_path / "termination-log")
    assert record["receivedSignal"] == "SIGINT"
    assert record["exitCode"] == 5


def test_child_killed_by_sigterm_exits_143(tmp_path: Path) -> None:
    proc, _ = start_waiting_child(tmp_path)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=WAIT_SECONDS)
    assert proc.returncode == 128 + signal.SIGTERM
    record = read_record(tmp_path / "termination-log")
    assert record["signal"] == "SIGTERM"
    assert record["receivedSignal"] == "SIGTERM"
    assert record["exitCode"] == 143


def is_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def wait_until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.05)


def test_child_ignoring_sigterm_is_not_escalated_but_dies_with_the_launcher(tmp_path: Path) -> None:
    """Default: no escalation. The kubelet's SIGKILL at the end of the grace period kills PID 1
    and with it the child; outside a container PR_SET_PDEATHSIG gives the same result."""
    proc, child = start_waiting_child(tmp_path, "--ignore-term")
    assert proc.stdout is not None
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout.readline() == b"ignoring SIGTERM\n"
    assert proc.poll() is None, "the launcher keeps waiting for the draining child"
    assert not is_gone(child)
    proc.kill()  # what the kubelet does when terminationGracePeriodSeconds runs out
    proc.communicate(timeout=WAIT_SECONDS)
    wait_until(lambda: is_gone(child), "child to die with the launcher")


DRAIN = 1.0
"""The fake server's drain: long enough for the repeated signals to arrive during it."""


def test_a_draining_child_gets_the_stop_once_and_is_waited_for(tmp_path: Path) -> None:
    """The kubelet may signal again (and a person may press Ctrl-C): the child, draining after
    the first SIGTERM, sees none of the repeats, nothing kills it, and its exit code (0, no
    record) is the launcher's once it has drained."""
    proc, _ = start_waiting_child(tmp_path, "--drain", str(DRAIN), "--shutdown-timeout", "1")
    assert proc.stdout is not None
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout.readline() == b"draining after SIGTERM\n"
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=WAIT_SECONDS)
    elapsed = time.monotonic() - sent
    assert proc.returncode == 0, err
    assert out == b"drained\n", "no repeat reached the child"
    assert elapsed >= DRAIN, "the launcher waited for the drain"
    assert b"SIGTERM: forwarded to the server; it finishes the requests in flight for up to 1 s" in err
    assert err.count(b"not forwarded, the server is already stopping since SIGTERM") == 2, err
    assert not (tmp_path / "termination-log").exists()


def test_without_a_drain_the_notice_says_the_requests_are_aborted(tmp_path: Path) -> None:
    proc, _ = start_waiting_child(tmp_path, "--term-exit", "0")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=WAIT_SECONDS)
    assert b"without --shutdown-timeout vLLM aborts the requests in flight" in err


def test_kill_after_escalates_to_sigkill(tmp_path: Path) -> None:
    proc, child = start_waiting_child(tmp_path, "--ignore-term", options=("--kill-after", "0.2"))
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=WAIT_SECONDS)
    assert b"ignoring SIGTERM" in out
    assert proc.returncode == 128 + signal.SIGKILL
    record = read_record(tmp_path / "termination-log")
    assert record["signal"] == "SIGKILL"
    assert record["receivedSignal"] == "SIGTERM"
    assert is_gone(child)


def test_child_runs_in_its_own_process_group(tmp_path: Path) -> None:
    proc, child = start_waiting_child(tmp_path, "--term-exit", "0")
    try:
        assert os.getpgid(child) == child
        assert os.getpgid(child) != os.getpgid(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=WAIT_SECONDS)


def test_unwritable_termination_log_keeps_the_exit_code(tmp_path: Path) -> None:
    log = tmp_path / "missing-dir" / "termination-log"
    argv = launcher_argv(log, "replay", str(FIXTURES / "kv_cache_insufficient.log"), "1")
    done = run(argv)
    assert done.returncode == 1
    assert b"cannot write termination log" in done.stderr
    assert b'"reason": "KVCacheInsufficient"' in done.stderr, "the record still reaches the log"


def test_child_killed_from_outside_says_so(tmp_path: Path) -> None:
    """E.g. the kernel's OOM killer: the launcher got no signal, the child died of SIGKILL."""
    proc, child = start_waiting_child(tmp_path)
    os.kill(child, signal.SIGKILL)
    proc.communicate(timeout=WAIT_SECONDS)
    assert proc.returncode == 128 + signal.SIGKILL
    record = read_record(tmp_path / "termination-log")
    assert record["reason"] == "Unknown"
    assert record["signal"] == "SIGKILL"
    assert "receivedSignal" not in record
    assert record["message"].startswith("killed by SIGKILL")
