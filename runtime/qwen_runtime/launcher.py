"""Run the server as a child, pass its output through, and explain its death.

Why a launcher: the operator can only react to a failure it can read, and
vLLM's reasons live in a log that can be gigabytes long. The launcher is PID 1
of the server container and:

* streams the child's stdout/stderr to its own fds 1/2 unchanged, as raw
  bytes the moment they arrive (no line buffering, no decoding), and never
  makes the child wait: its own output does not block it, the child's pipes
  are 1 MiB, and a flood is copied in big pieces (``qwen_runtime.pump``);
* keeps only a bounded view of that output (``watch.OutputWatcher``);
* forwards the first SIGTERM, SIGINT or SIGHUP to the child and drops any later one
  (``qwen_runtime.stopping``): vLLM drains on SIGTERM when it has ``--shutdown-timeout``
  (the operator sets it; vLLM's default, 0, aborts the requests in flight);
* exits with the child's exit code, or 128 + N when signal N killed it;
* gives the child vLLM's engine-start timeout unless the environment sets one
  (``engine.ENGINE_READY_TIMEOUT_S``);
* runs the child with its replica's own ``--gpu-memory-utilization`` when the operator set one
  for this pod (``qwen_runtime.replica``), and says on stderr which it used;
* on failure writes one JSON line to the termination log
  (schema: ``qwen_runtime.record``);
* times the start-up phases and prints a start report to its stdout, one line, at each phase
  change, every 30 s while starting and once ready (``qwen_runtime.startup``): the channel of a
  start that succeeds, read by the operator from the pod's log.

Stopping a child that ignores SIGTERM: by default the launcher does not
escalate, and waits for the child whatever it receives. vLLM may legitimately need
the whole grace period to drain, and the
kubelet already enforces ``terminationGracePeriodSeconds``: when it expires the
container runtime SIGKILLs every process of the container (and with the
launcher as PID 1 of the container's PID namespace, the kernel would kill the
child with it anyway). Outside a container the
child gets the same guarantee from ``PR_SET_PDEATHSIG``: if the launcher is
SIGKILLed, so is the child. ``--kill-after SECONDS`` opts into escalation: that
long after the first forwarded signal, the child's process group gets SIGKILL.

The child runs in its own process group, so a terminal's Ctrl-C reaches it
once (forwarded by the launcher), not twice.

The child is started first, everything else is imported while it starts: the
launcher's own start adds to the server's.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from . import engine, replica
from .argv import gpu_memory_utilization, shutdown_timeout
from .stopping import Stop

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import FrameType

    from .watch import OutputWatcher

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
POLL_SECONDS = 0.5
DRAIN_SECONDS = 2.0
_PR_SET_PDEATHSIG = 1


class _State:
    """What signal handlers and the copy loop share."""

    def __init__(self, stop: Stop) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.stop = stop
        self.pending: list[int] = []
        """Signals to forward once the child exists (one received while it was being started)."""


def run(command: Sequence[str], termination_log: str, kill_after: float | None = None) -> int:
    """Run ``command`` to completion; return the exit code the launcher should exit with."""
    command, said = replica.apply(command, os.environ)
    if said:
        with contextlib.suppress(OSError):
            os.write(2, f"[qwen-runtime] {said}\n".encode())
    state = _State(Stop(shutdown_timeout(command), kill_after))
    previous = {sig: signal.signal(sig, _forwarder(state)) for sig in FORWARDED_SIGNALS}
    started = time.monotonic()
    try:
        try:
            state.proc = _spawn(command)
        except OSError as error:
            return _cannot_start(command, error, termination_log)
        for sig in state.pending:
            _send(state.proc, sig)
        from .startup import StartClock  # while the child starts
        from .watch import OutputWatcher

        watcher = OutputWatcher(clock=StartClock(started, gpu_memory_utilization(command)))
        _copy(state, watcher)
        code = _wait(state)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if code != 0:
        try:
            _report(state, watcher, code, command, termination_log)
        except Exception as error:  # the exit code matters more than the message
            sys.stderr.write(f"[qwen-runtime] could not classify the failure: {error!r}\n")
    return code


def _spawn(command: Sequence[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=engine.child_environment(os.environ),
        process_group=0,
        preexec_fn=_die_with_parent,
    )


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL me when the launcher dies (Linux only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _forwarder(state: _State) -> Callable[[int, FrameType | None], None]:
    def handler(sig: int, frame: FrameType | None) -> None:
        forward = state.stop.receive(sig, time.monotonic())
        with contextlib.suppress(OSError):  # a closed stderr must not stop the forwarding
            os.write(2, state.stop.notice(sig, forward).encode())
        if not forward:
            return
        if state.proc is None:
            state.pending.append(sig)
        else:
            _send(state.proc, sig)

    return handler


def _send(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)


def _copy(state: _State, watcher: OutputWatcher) -> None:
    """Pump both pipes to fds 1/2 until EOF, or shortly after the child is gone.

    Grandchildren (vLLM's engine processes) may hold the pipes open after the
    child exits; the launcher then gives them ``DRAIN_SECONDS`` to finish.
    """
    from . import pump

    proc = state.proc
    assert proc is not None and proc.stdout is not None and proc.stderr is not None
    deadline: float | None = None

    def tick(now: float) -> bool:
        nonlocal deadline
        _maybe_escalate(state, now)
        if deadline is None and proc.poll() is not None:
            deadline = now + DRAIN_SECONDS
        return deadline is not None and now >= deadline

    pump.pump({proc.stdout.fileno(): 1, proc.stderr.fileno(): 2}, watcher.feed, tick, POLL_SECONDS,
              extra=watcher.reports)  # fmt: skip
    watcher.finish()


def _maybe_escalate(state: _State, now: float) -> None:
    """``--kill-after`` only: never by default, however many signals came."""
    proc = state.proc
    if proc is None:
        return
    if proc.returncode is None and state.stop.escalate(now):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def _wait(state: _State) -> int:
    proc = state.proc
    assert proc is not None
    while True:
        try:
            returncode = proc.wait(timeout=POLL_SECONDS)
            break
        except subprocess.TimeoutExpired:
            _maybe_escalate(state, time.monotonic())
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    return returncode if returncode >= 0 else 128 - returncode


def _report(
    state: _State,
    watcher: OutputWatcher,
    code: int,
    command: Sequence[str],
    termination_log: str,
) -> None:
    from . import termination
    from .argv import max_model_len
    from .record import Reason

    assert state.proc is not None
    record = watcher.classify(code, max_model_len(command))
    utilization = gpu_memory_utilization(command)
    if utilization is not None and "gpuMemoryUtilization" not in record:  # the run's own (per replica)
        record["gpuMemoryUtilization"] = utilization
    returncode = state.proc.returncode
    if returncode is not None and returncode < 0:
        record["signal"] = termination.signal_name(-returncode)
        if record["reason"] == Reason.UNKNOWN and state.stop.first is None:
            # Nobody asked it to stop: most often the kernel's OOM killer (host memory).
            record["message"] = f"killed by {record['signal']}; last error: {record.get('message', '')}"
    if state.stop.first is not None:
        record["receivedSignal"] = termination.signal_name(state.stop.first)
    termination.write(termination_log, record)


def _cannot_start(command: Sequence[str], error: OSError, termination_log: str) -> int:
    from . import termination
    from .record import Reason

    code = 127 if isinstance(error, FileNotFoundError) else 126
    message = f"cannot execute {command[0]!r}: {error.strerror or error}"
    sys.stderr.write(f"[qwen-runtime] {message}\n")
    termination.write(termination_log, {"reason": Reason.UNKNOWN, "exitCode": code, "message": message})
    return code
