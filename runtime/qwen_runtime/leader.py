"""Hold a pipeline worker's stop until its leader has drained: ``python3 -m qwen_runtime wait-leader``.

Why: with ``parallelism.pipeline`` > 1 a replica is a LeaderWorkerSet group, and when the group
stops every pod of it is stopping at once. The leader drains (vLLM's ``--shutdown-timeout``:
it finishes the answers in flight), but it needs every pipeline stage to do so, and a headless
vLLM worker exits at its SIGTERM: the drain would lose its stages and the answers would be cut.
The kubelet sends SIGTERM only once a container's preStop hook has returned, so this command,
the workers' preStop (an ``exec`` hook: allowed under Pod Security "restricted"), is what holds
a worker until its leader is done.

"Done" is the leader's API port no longer accepting a connection: vLLM's HTTP server keeps
listening through the whole drain (a request that still arrives is refused with an error, not by
the socket) and closes only once the engine has stopped, its stages with it. A connection that
fails in any way (refused, unreachable, a name that no longer resolves, or no answer within
``CONNECT_TIMEOUT_SECONDS``) means the leader is gone or going, and the worker may stop:
a worker never waits for a leader it cannot see, so at worst it stops as early as it did
without the hook. The LeaderWorkerSet controller gives every container of the group the
leader's address in ``LWS_LEADER_ADDRESS``, the same name vLLM's ``--master-addr`` uses.

The wait is bounded (``--seconds``, the leader's own grace period, rendered by the operator):
the kubelet has SIGKILLed the leader by then in any case. Exit 0 once the leader is gone, 1 when
the bound ran out first (the kubelet then records a ``FailedPreStopHook`` event with the reason),
and in both cases the worker gets its SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence

__all__ = ["ADDRESS_VAR", "SUBCOMMAND", "answers", "main", "wait"]

SUBCOMMAND = "wait-leader"
ADDRESS_VAR = "LWS_LEADER_ADDRESS"
"""Set by the LeaderWorkerSet controller in every container of a group (sigs.k8s.io/lws v0.8.0,
pkg/utils/pod: ``<lws>-<group>.<subdomain>.<namespace>``, the leader's name in the group's
headless Service, which publishes not-ready addresses: it resolves while the leader stops)."""
POLL_SECONDS = 1.0
"""Between two looks: a worker outlives its leader by at most this (plus one connect)."""
CONNECT_TIMEOUT_SECONDS = 2.0
"""A listening leader answers a connect at once, its kernel does, however busy vLLM is; silence
this long means the pod's address is gone."""
PREFIX = "[qwen-runtime] wait-leader:"


def answers(host: str, port: int, timeout: float) -> bool:
    """True while `host`:`port` accepts a TCP connection (closed again at once, no request sent)."""
    import socket  # here: the launcher imports this module's name, and starts vLLM before the rest

    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:  # refused, unreachable, unresolvable (gaierror), no answer (TimeoutError)
        return False


def wait(
    host: str,
    port: int,
    seconds: float,
    poll: float = POLL_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Return True once the leader no longer accepts connections, False when `seconds` ran out
    first. The last look's connect never runs past the bound."""
    deadline = clock() + seconds
    while True:
        left = deadline - clock()
        if left <= 0:
            return False
        if not answers(host, port, min(CONNECT_TIMEOUT_SECONDS, left)):
            return True
        left = deadline - clock()
        if left <= 0:
            return False
        sleep(min(poll, left))


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python3 -m qwen_runtime {SUBCOMMAND}",
        description="Wait until the group's leader no longer accepts connections (a worker's preStop).",
    )
    parser.add_argument(
        "--address",
        default=os.environ.get(ADDRESS_VAR, ""),
        help=f"the leader's host name or address (default: ${ADDRESS_VAR})",
    )
    parser.add_argument("--port", type=int, default=8000, help="the leader's API port")
    parser.add_argument(
        "--seconds", type=float, required=True, help="the longest wait: the leader's grace period"
    )
    args = parser.parse_args(list(argv))
    if not args.address:
        sys.stderr.write(f"{PREFIX} no leader address (${ADDRESS_VAR} unset): nothing to wait for\n")
        return 0
    started = time.monotonic()
    gone = wait(args.address, args.port, args.seconds)
    took = time.monotonic() - started
    where = f"{args.address}:{args.port}"
    if gone:
        sys.stderr.write(f"{PREFIX} {where} no longer accepts connections after {took:.1f} s\n")
        return 0
    sys.stderr.write(f"{PREFIX} {where} still accepts connections after {took:.1f} s; stopping anyway\n")
    return 1
