"""The child never waits on the launcher: its output is read at once and never blocks on ours.

A blocked write stalls vLLM's event loop (it logs from there). These tests stop the reader of the
launcher's output, or the launcher itself, and watch the child finish writing regardless.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from qwen_runtime import pump
from tests.unit.runtime.fake_server import LINE
from tests.unit.runtime.helpers import launcher_argv, launcher_env

WAIT_SECONDS = 30.0


def wait_for_file(path: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not path.exists():
        assert proc.poll() is None or path.exists(), f"launcher exited {proc.returncode} first"
        assert time.monotonic() < deadline, f"the child did not finish writing within {WAIT_SECONDS} s"
        time.sleep(0.01)


def read_all(proc: subprocess.Popen[bytes]) -> bytes:
    out, _ = proc.communicate(timeout=WAIT_SECONDS)
    return out


def lines(total: int) -> bytes:
    return (LINE * (total // len(LINE) + 1))[:total]


def test_a_stalled_log_reader_never_blocks_the_child(tmp_path: Path) -> None:
    """Nobody reads the launcher's stdout (a container runtime stuck on its disk): the child still
    writes 8 MiB, one log line per write, and finishes; later every byte arrives, in order."""
    done, total = tmp_path / "done", 8 << 20
    argv = launcher_argv(tmp_path / "log", "burst", str(total), str(done))
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=launcher_env())
    wait_for_file(done, proc)  # no byte read yet: 8 MiB is far beyond what the pipes hold (~1.1 MiB)
    out = read_all(proc)
    assert proc.returncode == 0
    assert out == lines(total)


def written_by_child(launcher: int) -> int:
    """Bytes the launcher's child has passed to write() so far (``wchar`` of /proc/PID/io)."""
    children = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
    if not children:
        return 0  # not started yet
    (child,) = children
    for line in Path(f"/proc/{child}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError(f"no wchar in /proc/{child}/io")


def child_pipe_size(launcher: int) -> int:
    """The capacity of the pipe that is the launcher's child's stdout."""
    (child,) = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
    fd = os.open(f"/proc/{child}/fd/1", os.O_WRONLY | os.O_NONBLOCK)
    try:
        return int(fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ))
    finally:
        os.close(fd)


def test_beyond_the_bound_the_child_waits_and_nothing_is_lost(tmp_path: Path) -> None:
    """A reader stalled for longer than MAX_PENDING of output: the launcher stops reading the child
    (which then waits, as it would writing to that reader directly) instead of holding more or
    dropping any; once the reader reads, every byte arrives, in order."""
    done, total = tmp_path / "done", pump.MAX_PENDING + (8 << 20)
    argv = launcher_argv(tmp_path / "log", "burst", str(total), str(done), "65536")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=launcher_env())
    try:
        deadline, samples = time.monotonic() + WAIT_SECONDS, [-1]
        while len(set(samples[-3:])) > 1 or len(samples) < 3 or samples[-1] < pump.MAX_PENDING:
            assert time.monotonic() < deadline, f"the child kept writing or never got far: {samples[-3:]}"
            time.sleep(0.5)
            samples.append(written_by_child(proc.pid))
        now = samples[-1]  # no progress for a second, beyond the bound: the child waits
        assert now < total and not done.exists()  # the bound held it, nothing was dropped to let it on
    finally:
        out = read_all(proc)
    assert proc.returncode == 0 and out == lines(total)


def test_a_stopped_launcher_leaves_the_child_a_whole_pipe(tmp_path: Path) -> None:
    """The launcher not running at all (stopped, or not scheduled): a burst of 768 KiB still fits
    the child's pipe, which the launcher enlarged to 1 MiB."""
    ready, done, total = tmp_path / "ready", tmp_path / "done", 768 << 10
    script = (
        "import os, sys, pathlib, time\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        f"while not pathlib.Path({str(ready)!r} + '.go').exists(): time.sleep(0.01)\n"
        f"line = {LINE!r}\n"
        f"data = (line * ({total} // len(line) + 1))[:{total}]\n"
        "for i in range(0, len(data), 113): os.write(1, data[i:i + 113])\n"
        f"pathlib.Path({str(done)!r}).touch()\n"
    )
    argv = [*launcher_argv(tmp_path / "log")[:-1], "-c", script]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=launcher_env())
    try:
        wait_for_file(ready, proc)
        deadline = time.monotonic() + WAIT_SECONDS
        while child_pipe_size(proc.pid) < pump.PIPE_BYTES:  # the launcher may not be there yet
            assert time.monotonic() < deadline, "the launcher did not enlarge the child's pipe"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGSTOP)
        Path(f"{ready}.go").touch()
        deadline = time.monotonic() + WAIT_SECONDS
        while not done.exists():
            assert time.monotonic() < deadline, "the child blocked while the launcher was stopped"
            time.sleep(0.01)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    assert read_all(proc) == lines(total) and proc.returncode == 0


def test_output_waits_in_order_and_files_are_written_as_they_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pump, "MAX_PENDING", 1 << 20)
    monkeypatch.setattr(pump, "FLUSH_SECONDS", 0.1)
    read_end, write_end = os.pipe()
    try:
        out = pump.Output(write_end)
        assert fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ) == pump.PIPE_BYTES  # enlarged: fewer writes
        out.put(b"a" * (3 << 19))  # more than the pipe holds: the rest waits, nothing blocks
        assert out.waiting == 1 << 19 and not out.full
        out.put(b"b" * (1 << 19))
        assert out.full  # the pump reads no more of the child now
        first = os.read(read_end, 1 << 16)
        assert out.flush() > 0 and first == b"a" * len(first)
        out.close()  # nobody reads the rest: dropped once the reader took nothing for FLUSH_SECONDS
        assert not out.queue and out.waiting == 0 and os.get_blocking(write_end)  # flags as they were
    finally:
        os.close(read_end)
        os.close(write_end)
    path = tmp_path / "file"
    with path.open("wb") as fh:
        pump.Output(fh.fileno()).put(b"to a file\n")
    assert path.read_bytes() == b"to a file\n"


def test_pipes_are_enlarged_to_a_mebibyte() -> None:
    read_end, write_end = os.pipe()
    try:
        assert pump.enlarge_pipe(read_end) == pump.PIPE_BYTES  # Linux's default pipe-max-size allows it
    finally:
        os.close(read_end)
        os.close(write_end)
