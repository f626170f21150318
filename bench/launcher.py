"""Cost of the runtime launcher: stream 100 MB of child output through it vs. the child alone.

In a pod, the container's stdout is a pipe the container runtime drains, so
both runs here write into a pipe that this process drains and discards. The
child is ``tests/unit/runtime/fake_server.py`` in two modes:

* one log line (113 bytes) per write, as vLLM's logger writes, after vLLM's
  "Starting vLLM server on" line: the output of a busy server, which is how
  a pod produces 100 MB; the launcher only copies it (the 10 % target);
* the same lines without that line: the launcher is still watching the
  start-up and scans every byte for vLLM's markers (the worst case);
* 64 KiB blocks at the pipe's limit (~1.5 GB/s from one Python process), a
  stress case no server produces: the launcher's fixed costs (its own
  interpreter start, one more pipe copy, the scan) show undiluted.

Wall time is what the target is about; CPU time (``wait4``: the child, plus
the launcher when there is one) shows the cost independent of other load.
The launcher can come out faster than the child alone: in a flood it copies
in big pieces, so the reader downstream (here this process, in a pod the
container runtime) wakes once per piece instead of once per line.

Each variant runs ``ROUNDS`` times, direct and launched back to back, so that
both of a pair meet the same load; the overhead is each pair's, and the table
gives min, median and max (figures differ between runs and machines by tens
of percent on a busy 2-core machine). The target is on the median.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAKE_SERVER = ROOT / "tests" / "unit" / "runtime" / "fake_server.py"
TOTAL_BYTES = 100 * 1000 * 1000
ROUNDS = 9
TARGET_PERCENT = 10.0
VARIANTS = (  # key, label, fake_server mode, extra arguments
    ("serving", "lines, serving", "stream-lines", ["--serving"]),
    ("starting", "lines, start-up", "stream-lines", []),
    ("blocks", "64 KiB blocks", "stream", []),
)


@dataclass(frozen=True)
class Run:
    wall: float
    """Seconds from start to the child's exit, its output read to the end."""
    cpu: float
    """CPU seconds of the process and its children (the launcher and the server)."""


def drain(argv: list[str], env: dict[str, str]) -> Run:
    """Run ``argv``, read its stdout to EOF."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    fd, seen = proc.stdout.fileno(), 0
    while chunk := os.read(fd, 1 << 20):
        seen += len(chunk)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    proc.stdout.close()
    if proc.returncode != 0 or seen != TOTAL_BYTES:
        raise RuntimeError(f"{argv} exited {proc.returncode} after {seen} of {TOTAL_BYTES} bytes")
    return Run(wall, usage.ru_utime + usage.ru_stime)


def pairs(first: list[str], second: list[str], env: dict[str, str]) -> list[tuple[Run, Run]]:
    """``ROUNDS`` runs of each, back to back, alternating which goes first."""
    out = []
    for index in range(ROUNDS):
        order = (first, second) if index % 2 == 0 else (second, first)
        runs = {id(argv): drain(argv, env) for argv in order}
        out.append((runs[id(first)], runs[id(second)]))
    return out


def spread(values: list[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


def percent(base: float, value: float) -> float:
    return 100.0 * (value - base) / base


def main() -> int:
    """Print direct vs. launcher wall and CPU times (min/median/max), and the overhead of each pair."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "runtime"), env.get("PYTHONPATH")]))
    results: dict[str, tuple[float, float, float]] = {}
    load = "/".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"100 MB of child output, {ROUNDS} pairs (direct, launched); min / median / max; load {load}")
    print(
        f"{'child writes':<17}{'direct wall s':>24}{'launcher wall s':>24}{'wall overhead %':>26}"
        f"{'CPU overhead %':>16}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        log = str(Path(tmp) / "termination-log")
        for key, label, mode, extra in VARIANTS:
            child = [sys.executable, str(FAKE_SERVER), mode, str(TOTAL_BYTES), *extra]
            wrapped = [sys.executable, "-m", "qwen_runtime", "--termination-log", log, "--", *child]
            runs = pairs(child, wrapped, env)
            direct = spread([d.wall for d, _ in runs])
            launched = spread([w.wall for _, w in runs])
            results[key] = wall = spread([percent(d.wall, w.wall) for d, w in runs])
            cpu = statistics.median(percent(d.cpu, w.cpu) for d, w in runs)
            print(
                f"{label:<17}{_fmt(direct, '.3f'):>24}{_fmt(launched, '.3f'):>24}{_fmt(wall, '+.1f'):>26}"
                f"{cpu:>+16.1f}",
                flush=True,
            )
    low, median, high = results["serving"]
    verdict = "within" if median < TARGET_PERCENT else "OVER"
    print(
        f"launcher overhead on 100 MB of a serving vLLM's log lines: median {median:+.1f}% wall "
        f"({verdict} the {TARGET_PERCENT:.0f}% target), min {low:+.1f}%, max {high:+.1f}%; "
        f"still scanning (start-up): median {results['starting'][1]:+.1f}%"
    )
    return 0


def _fmt(values: tuple[float, float, float], spec: str) -> str:
    return " / ".join(format(v, spec) for v in values)


if __name__ == "__main__":
    sys.exit(main())
