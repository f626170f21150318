"""The launcher's part in a stop: which signals reach vLLM, and when, if ever, it is killed.

Why: a stopping vLLM with ``--shutdown-timeout`` drains, finishing the answers in flight for up
to that long, and exits when the last one ends. It must get the stop once. vLLM 0.33 ignores a
repeat itself, but a repeat can only ever mean "faster" (many servers take a second signal as
"quit now"), and it is nobody's request to cut the drain short: the kubelet may
send one (a deletion with a shorter grace period signals the container again), as may a
person at a terminal. So the first signal is forwarded, every later one is dropped and said so
on stderr; the launcher then waits for vLLM to exit and exits with its code. It kills nothing
itself: the kubelet's SIGKILL at the end of ``terminationGracePeriodSeconds``, which the
operator sizes on the drain, is the only deadline (``--kill-after`` opts into one of the
launcher's own, for use outside Kubernetes).

Pure: the launcher's signal handler asks ``Stop.receive`` and does what it says.
"""

from __future__ import annotations

import signal

__all__ = ["Stop"]

PREFIX = "[qwen-runtime]"


def _name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


class Stop:
    """The signals the launcher received, and whether each goes on to the child."""

    def __init__(self, drain_seconds: int = 0, kill_after: float | None = None) -> None:
        self.drain_seconds = drain_seconds
        """The child's ``--shutdown-timeout``: what the notice tells the log reader to expect."""
        self.kill_after = kill_after
        self.first: int | None = None
        """The signal that started the stop: forwarded, and named in a failure record."""
        self.first_at: float | None = None
        self.dropped: list[int] = []

    def receive(self, sig: int, now: float) -> bool:
        """Record `sig`, received at `now` (monotonic seconds); True: forward it to the child."""
        if self.first is None:
            self.first, self.first_at = sig, now
            return True
        self.dropped.append(sig)
        return False

    def notice(self, sig: int, forwarded: bool) -> str:
        """The line the launcher writes to stderr about `sig`."""
        if not forwarded:
            return (
                f"{PREFIX} {_name(sig)}: not forwarded, the server is already stopping "
                f"since {_name(self.first or sig)}; waiting for it to exit\n"
            )
        if self.drain_seconds > 0:
            drain = f"it finishes the requests in flight for up to {self.drain_seconds} s"
            drain += " (--shutdown-timeout)"
        else:
            drain = "without --shutdown-timeout vLLM aborts the requests in flight"
        return f"{PREFIX} {_name(sig)}: forwarded to the server; {drain}\n"

    def escalate(self, now: float) -> bool:
        """True once ``--kill-after`` has passed since the first signal: SIGKILL the child."""
        if self.kill_after is None or self.first_at is None:
            return False
        return now - self.first_at >= self.kill_after
