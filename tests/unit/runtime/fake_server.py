"""A stand-in for ``vllm serve`` that the launcher tests and the benchmark run as the child.

Modes:
  replay FIXTURE CODE [ARGS...]  print a fixture (stdout part, then the part after
                                 a ``### stderr`` line to stderr) and exit with CODE
  wait [--ignore-term] [--term-exit CODE] [--drain SECONDS]
                                 print ``ready pid=N``, then wait for signals: by default
                                 SIGTERM kills it; ``--term-exit`` exits CODE on SIGTERM
                                 or SIGINT; ``--ignore-term`` prints and keeps running;
                                 ``--drain`` prints ``draining`` on the first SIGTERM or SIGINT,
                                 ``got NAME again`` on each later one, and exits 0 SECONDS
                                 after the first (as vLLM with --shutdown-timeout)
  stream BYTES [--serving]       write BYTES of log-like lines to stdout in 64 KiB writes;
                                 ``--serving`` starts them with vLLM's "server is up" line
  stream-lines BYTES [--serving] the same, one write per line (like an unbuffered logger)
  burst BYTES DONE [BLOCK]       write BYTES of log lines in writes of BLOCK bytes (default: one
                                 line each), then create the file DONE and exit 0: DONE appears
                                 only once every write went through
  env NAME                       print NAME=VALUE of its environment (``NAME`` unset: ``NAME``
                                 alone) and exit 0
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

STDERR_SPLIT = "### stderr\n"
SERVING = (
    b"(APIServer pid=1) INFO 11-28 23:59:42 [entry.py:139] Starting vLLM server on http://0.0.0.0:8000\n"
)
LINE = b"(APIServer pid=1) INFO 11-28 23:59:59 [loggers.py:123] Engine 000: Avg prompt throughput: 0.0 tokens/s, Running: 0 reqs\n"  # noqa: E501


def fixture_parts(path: str | Path) -> tuple[bytes, bytes]:
    """(stdout bytes, stderr bytes) of a fixture file."""
    text = Path(path).read_text(encoding="utf-8")
    out, _, err = text.partition(STDERR_SPLIT)
    return out.encode("utf-8"), err.encode("utf-8")


def replay(path: str, code: int) -> int:
    out, err = fixture_parts(path)
    os.write(1, out)
    os.write(2, err)
    return code


def wait(args: list[str]) -> int:
    drain_until: float | None = None

    def on_signal(sig: int, frame: FrameType | None) -> None:
        nonlocal drain_until
        name = signal.Signals(sig).name
        if "--drain" in args:
            if drain_until is None:
                drain_until = time.monotonic() + float(args[args.index("--drain") + 1])
                os.write(1, f"draining after {name}\n".encode())
            else:
                os.write(1, f"got {name} again\n".encode())
            return
        if "--ignore-term" in args:
            os.write(1, f"ignoring {name}\n".encode())
            return
        os.write(1, f"got {name}\n".encode())
        sys.exit(int(args[args.index("--term-exit") + 1]))

    if "--ignore-term" in args or "--term-exit" in args or "--drain" in args:
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    os.write(1, f"ready pid={os.getpid()}\n".encode())
    while drain_until is None or time.monotonic() < drain_until:
        time.sleep(0.05)
    os.write(1, b"drained\n")
    return 0


def stream(total: int, per_line: bool = False, serving: bool = False) -> int:
    block = LINE if per_line else LINE * (65536 // len(LINE))
    written = os.write(1, SERVING[:total]) if serving else 0
    while written < total:
        chunk = block[: total - written]
        os.write(1, chunk)
        written += len(chunk)
    return 0


def burst(total: int, done: str, block: int = len(LINE)) -> int:
    data = (LINE * (total // len(LINE) + 1))[:total]
    for start in range(0, total, block):
        os.write(1, data[start : start + block])
    Path(done).touch()
    return 0


def main(argv: list[str]) -> int:
    mode = argv[0]
    if mode == "replay":
        return replay(argv[1], int(argv[2]))
    if mode == "wait":
        return wait(argv[1:])
    if mode == "stream":
        return stream(int(argv[1]), serving="--serving" in argv)
    if mode == "stream-lines":
        return stream(int(argv[1]), per_line=True, serving="--serving" in argv)
    if mode == "burst":
        return burst(int(argv[1]), argv[2], *(int(a) for a in argv[3:4]))
    if mode == "env":
        name = argv[1]
        os.write(1, (f"{name}={os.environ[name]}\n" if name in os.environ else f"{name}\n").encode())
        return 0
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
