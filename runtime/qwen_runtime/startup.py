"""The start report: where a vLLM start's time went, and vLLM's own KV-cache figures.

Why: a start of Qwen3-235B takes minutes to an hour, and nobody could say where the time
went. The launcher already reads vLLM's output for the start-up phases (to attribute a
failure, ``classify.PHASE_MARKERS``); here it also notes when each began, and the figures
vLLM prints once it has sized the KV cache (what really fits, as against the operator's
estimate).

The channel: a failed start reaches the operator through the termination message, but a
start that succeeds ends no container, and the server pods have no API access. So the
launcher prints the report to its stderr, one line, ``PREFIX`` then a JSON object, and the
operator reads it from the pod's log (pods/log, through the apiserver and the kubelet):

* at every phase change and every ``HEARTBEAT_SECONDS`` while the server starts, with
  ``ready`` false: the operator reads the log's last minute (``sinceSeconds``) while a replica
  loads, to say which phase it is in;
* once, when vLLM's API server is up (uvicorn's "Application startup complete"), with
  ``ready`` true: the operator reads it once per start, when the pod turns Ready.

A line is at most ``MAX_LINE_BYTES``; a busy server logs after it, which is why the operator
reads from a time (the pod's Ready transition) rather than from the end.

Schema (keys camelCase)::

    {"ready": true, "phase": "serving", "elapsedSeconds": 412.3,
     "phases": {"engineStart": 20.1, "weightLoading": 312.0, "profiling": 40.2,
                "kvCacheAllocation": 0.4, "cudaGraphCapture": 48.0, "warmUp": 3.1, "serving": 5.2},
     "compileSeconds": 25.4, "vllmVersion": "0.33.0", "gpuMemoryUtilization": 0.92,
     "kvCache": {"memoryGiB": 10.38, "tokens": 268176, "maxConcurrency": 1.02, "maxModelLen": 262144}}

``phases`` is in order, each phase's seconds from its first line to the next phase's (the
current one's so far); ``engineStart`` is the launcher's start to the first weight-loading
line (process start, imports, engine processes). Phases vLLM skipped (no CUDA graphs on a CPU,
with ``--enforce-eager``) are absent. ``compileSeconds`` is vLLM's own torch.compile total
(within ``profiling``), when it printed one. ``gpuMemoryUtilization`` is the run's own
``--gpu-memory-utilization`` (a replica's own setting, ``qwen_runtime.replica``). Standard
library only: the operator imports this module as it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, TypedDict

from .record import CudaPhase

PREFIX = "[qwen-runtime] start "
"""What begins a report line in the server's log."""
HEARTBEAT_SECONDS = 30.0
"""While the server starts, the report is printed again this often (and at each phase change):
the operator's reads of the log's last ``2 x`` this many seconds always find one."""
MAX_LINE_BYTES = 2048


class StartPhase(StrEnum):
    """A phase of a start, in order; the vLLM ones are ``record.CudaPhase``'s values."""

    ENGINE_START = "engineStart"
    """From the launcher's start to the first weight-loading line."""
    WEIGHT_LOADING = CudaPhase.WEIGHT_LOADING.value
    PROFILING = CudaPhase.PROFILING.value
    """The dummy forward pass that measures activation memory; torch.compile runs in it."""
    KV_CACHE_ALLOCATION = CudaPhase.KV_CACHE_ALLOCATION.value
    CUDA_GRAPH_CAPTURE = CudaPhase.CUDA_GRAPH_CAPTURE.value
    WARM_UP = CudaPhase.WARM_UP.value
    SERVING = CudaPhase.SERVING.value
    """vLLM's API server starting, until it accepts requests."""


START_MARKERS: tuple[tuple[bytes, StartPhase], ...] = (
    (b"Warming up model for the compilation", StartPhase.PROFILING),
    (b"GiB for KV cache", StartPhase.KV_CACHE_ALLOCATION),
)
"""Phase lines of vLLM's CPU worker, which prints neither "Model loading took" nor "Available KV
cache memory": without them its compile run (minutes) would count as loading the weights. Only
the start clock reads them; failure classification keeps ``classify.PHASE_MARKERS``."""

READY_MARKER = b"Application startup complete"
"""uvicorn's line once the API server accepts requests (``/health`` answers from then on)."""

FIGURE_MARKERS: tuple[bytes, ...] = (
    b"KV cache size: ",
    b"Available KV cache memory",
    b"GiB for KV cache",
    b"torch.compile take",
    b"torch.compile took",
    b"server version ",
    b"LLM engine (v",
)
"""Lines whose figures go into the report (the output watcher keeps them, until ready)."""

_NUM = r"(\d+(?:\.\d+)?)"
_TOKENS = re.compile(
    r"KV cache size: ([\d,]+) tokens, Maximum concurrency for ([\d,]+) tokens per request: " + _NUM
)
_MEMORY = re.compile(r"Available KV cache memory: " + _NUM + r" GiB")
_CPU_MEMORY = re.compile(r"set \(" + _NUM + r"/" + _NUM + r"\) GiB for KV cache")
_COMPILE = re.compile(r"torch\.compile (?:takes|took) " + _NUM + r" s in total")
_VERSION = re.compile(r"server version (v?[0-9][\w.+-]*?)(?:,|\s|$)|LLM engine \((v?[0-9][\w.+-]*)\)")


class KvCache(TypedDict, total=False):
    """vLLM's own figures once the KV cache is sized (per replica: the first worker's)."""

    memoryGiB: float
    tokens: int
    maxConcurrency: float
    maxModelLen: int


class Report(TypedDict, total=False):
    """One report line's object (see the module docstring)."""

    ready: bool
    phase: str
    elapsedSeconds: float
    phases: dict[str, float]
    compileSeconds: float
    vllmVersion: str
    gpuMemoryUtilization: float
    kvCache: KvCache


class StartClock:
    """The phases a start went through, when each began, and the figures seen; pure (the caller
    gives the times, seconds on any monotonic clock)."""

    def __init__(self, started: float, utilization: float | None = None) -> None:
        self.started = started
        self.utilization = utilization
        """The run's --gpu-memory-utilization (the replica's own, when it has one)."""
        self.entered: dict[StartPhase, float] = {StartPhase.ENGINE_START: started}
        self.ready_at: float | None = None
        self.figures: Report = {}
        self.last_printed = started
        """The first heartbeat comes ``HEARTBEAT_SECONDS`` in (a phase change prints before)."""

    @property
    def phase(self) -> StartPhase:
        return max(self.entered, key=lambda p: self.entered[p])

    def enter(self, phase: CudaPhase | StartPhase, now: float) -> bool:
        """Note the first line of ``phase``; True when it is a change (later phases only)."""
        try:
            step = StartPhase(phase.value)
        except ValueError:
            return False  # a failure-only phase (sampler warm-up): not a start phase
        order = list(StartPhase)
        if step in self.entered or order.index(step) < order.index(self.phase):
            return False
        self.entered[step] = now
        return True

    def ready(self, now: float) -> bool:
        """The API server is up; True the first time."""
        if self.ready_at is not None:
            return False
        self.enter(StartPhase.SERVING, now)
        self.ready_at = now
        return True

    def note(self, line: str) -> None:
        """Take what a figure line says (``FIGURE_MARKERS``); the first worker's figures win."""
        kv: KvCache = self.figures.setdefault("kvCache", {})
        if (m := _TOKENS.search(line)) and "tokens" not in kv:
            kv["tokens"] = int(m.group(1).replace(",", ""))
            kv["maxModelLen"] = int(m.group(2).replace(",", ""))
            kv["maxConcurrency"] = float(m.group(3))
        if (m := _MEMORY.search(line) or _CPU_MEMORY.search(line)) and "memoryGiB" not in kv:
            kv["memoryGiB"] = float(m.group(1))
        if (m := _COMPILE.search(line)) and "compileSeconds" not in self.figures:
            self.figures["compileSeconds"] = float(m.group(1))
        if (m := _VERSION.search(line)) and "vllmVersion" not in self.figures:
            self.figures["vllmVersion"] = (m.group(1) or m.group(2)).removeprefix("v")

    def report(self, now: float) -> Report:
        """The report as of ``now`` (the current phase counted so far, or up to ready)."""
        end = self.ready_at if self.ready_at is not None else now
        ordered = sorted(self.entered.items(), key=lambda item: item[1])
        phases = {}
        for (phase, began), (_, ended) in zip(ordered, [*ordered[1:], (None, end)], strict=True):
            phases[phase.value] = round(max(0.0, ended - began), 1)
        out: Report = {
            "ready": self.ready_at is not None,
            "phase": self.phase.value,
            "elapsedSeconds": round(end - self.started, 1),
            "phases": phases,
        }
        for key in ("compileSeconds", "vllmVersion"):
            if key in self.figures:
                out[key] = self.figures[key]
        if self.utilization is not None:
            out["gpuMemoryUtilization"] = self.utilization
        if self.figures.get("kvCache"):
            out["kvCache"] = dict(self.figures["kvCache"])  # type: ignore[typeddict-item]
        return out

    def due(self, now: float) -> bool:
        """A heartbeat is due (while starting)."""
        return self.ready_at is None and now - self.last_printed >= HEARTBEAT_SECONDS

    def line(self, now: float) -> bytes:
        """The report line to print now (and remember when)."""
        self.last_printed = now
        return format_line(self.report(now))


def format_line(report: Report) -> bytes:
    return (PREFIX + json.dumps(report, separators=(",", ":"), sort_keys=False) + "\n").encode()[
        :MAX_LINE_BYTES
    ]


def parse_reports(log: str) -> list[Report]:
    """Every report line in a piece of the server's log, oldest first (a line broken off by a
    byte limit, or not JSON, is skipped)."""
    found: list[Report] = []
    for line in log.splitlines():
        at = line.find(PREFIX)
        if at < 0:
            continue
        try:
            value = json.loads(line[at + len(PREFIX) :])
        except ValueError:
            continue
        if isinstance(value, dict) and isinstance(value.get("phases"), Mapping):
            found.append(_clean(value))
    return found


def latest(log: str) -> Report | None:
    """The last report in ``log``: the final one when the start completed, else the latest heartbeat."""
    reports = parse_reports(log)
    final = [r for r in reports if r.get("ready")]
    chosen = final or reports
    return chosen[-1] if chosen else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _clean(value: Mapping[str, Any]) -> Report:
    """Only well-typed fields (the log is text anyone in the container could print)."""
    phases = {str(k): n for k, v in value["phases"].items() if (n := _number(v)) is not None and k in _PHASES}
    out: Report = {"ready": value.get("ready") is True, "phases": phases}
    if str(value.get("phase")) in _PHASES:
        out["phase"] = str(value["phase"])
    for key in ("elapsedSeconds", "compileSeconds"):
        if (n := _number(value.get(key))) is not None:
            out[key] = n
    if isinstance(value.get("vllmVersion"), str):
        out["vllmVersion"] = value["vllmVersion"][:64]
    if (n := _number(value.get("gpuMemoryUtilization"))) is not None and 0 < n <= 1:
        out["gpuMemoryUtilization"] = n
    kv = value.get("kvCache")
    if isinstance(kv, Mapping):
        clean: KvCache = {}
        for key in ("memoryGiB", "maxConcurrency"):
            if (n := _number(kv.get(key))) is not None:
                clean[key] = n  # type: ignore[literal-required]
        for key in ("tokens", "maxModelLen"):
            if (n := _number(kv.get(key))) is not None and n == int(n):
                clean[key] = int(n)  # type: ignore[literal-required]
        if clean:
            out["kvCache"] = clean
    return out


_PHASES = frozenset(p.value for p in StartPhase)
