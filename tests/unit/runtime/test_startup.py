"""The start report: phases timed from vLLM's lines, vLLM's figures, and the line the operator parses."""

from __future__ import annotations

import json

from qwen_runtime import startup
from qwen_runtime.record import CudaPhase
from qwen_runtime.startup import StartClock, StartPhase
from qwen_runtime.watch import OutputWatcher

GPU_LINES = [
    "(APIServer pid=1) INFO 11-28 23:41:02 [utils.py:287] vLLM API server version 0.33.0",
    "(Worker_TP0 pid=281) INFO 11-28 23:41:40 [gpu_model_runner.py:4979] Starting to load model Qwen3...",
    "(Worker_TP0 pid=281) INFO 11-28 23:58:13 [gpu_model_runner.py:5089] Model loading took 55.04 GiB memory",
    "(Worker_TP0 pid=281) INFO 11-28 23:58:30 [monitor.py:34] torch.compile takes 40.12 s in total",
    "(Worker_TP0 pid=281) INFO 11-28 23:58:40 [gpu_worker.py:301] Available KV cache memory: 10.38 GiB",
    "(Worker_TP1 pid=282) INFO 11-28 23:58:40 [gpu_worker.py:301] Available KV cache memory: 10.12 GiB",
    "(EngineCore_DP0 pid=212) INFO 11-28 23:58:41 [kv_cache_utils.py:1147] GPU KV cache size: 268,176 tokens,"
    " "
    "Maximum concurrency for 262,144 tokens per request: 1.02x",
    "(Worker_TP0 pid=281) INFO 11-28 23:58:42 [gpu_model_runner.py:6400] Capturing CUDA graphs (mixed)",
    "(Worker_TP0 pid=281) INFO 11-28 23:59:30 [gpu_model_runner.py:6517] Graph capturing finished in 47 secs",
    "(APIServer pid=1) INFO 11-28 23:59:42 [entry.py:139] Starting vLLM server on http://0.0.0.0:8000",
    "(APIServer pid=1) INFO:     Application startup complete.",
    '(APIServer pid=1) INFO:     10.0.3.7:51234 - "GET /health HTTP/1.1" 200 OK',
]
"""vLLM's start-up lines, in order (one per phase, and the figures)."""


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def feed_lines(watcher: OutputWatcher, clock: Clock, lines: list[str], step: float = 10.0) -> None:
    for line in lines:
        clock.now += step
        watcher.feed(1, (line + "\n").encode())


def test_the_watcher_times_each_phase_and_keeps_vllms_figures() -> None:
    clock = Clock()
    watcher = OutputWatcher(clock=StartClock(clock.now), now=clock)
    feed_lines(watcher, clock, GPU_LINES)
    ((out, line),) = watcher.reports(clock.now)
    assert out == 1 and line.startswith(startup.PREFIX.encode()) and line.endswith(b"\n")
    report = startup.latest(line.decode())
    assert report is not None and report["ready"] is True and report["phase"] == "serving"
    # each phase lasts from its first line to the next phase's; engineStart from the launcher's start
    assert report["phases"] == {
        "engineStart": 20.0, "weightLoading": 10.0, "profiling": 20.0, "kvCacheAllocation": 30.0,
        "cudaGraphCapture": 10.0, "warmUp": 10.0, "serving": 10.0,
    }  # fmt: skip
    assert list(report["phases"]) == [p.value for p in StartPhase]
    assert report["elapsedSeconds"] == 110.0
    assert report["kvCache"] == {"memoryGiB": 10.38, "tokens": 268176, "maxConcurrency": 1.02,
                                 "maxModelLen": 262144}  # fmt: skip
    assert (report["compileSeconds"], report["vllmVersion"]) == (40.12, "0.33.0")
    # the figure lines are not cause lines: nothing for classify
    assert not watcher.key_lines


def test_reports_come_at_phase_changes_and_heartbeats_never_mid_line() -> None:
    clock = Clock()
    watcher = OutputWatcher(clock=StartClock(clock.now), now=clock)
    assert watcher.reports(clock.now) == []  # nothing happened yet
    feed_lines(watcher, clock, GPU_LINES[1:2])
    watcher.feed(1, b"Loading safetensors checkpoint shards:  50%")  # an unfinished line
    assert watcher.reports(clock.now) == [], "a report would split vLLM's line"
    watcher.feed(1, b" done\n")
    ((_, line),) = watcher.reports(clock.now)
    report = startup.latest(line.decode())
    assert report is not None and (report["ready"], report["phase"]) == (False, "weightLoading")
    assert watcher.reports(clock.now) == []  # once per change
    clock.now += startup.HEARTBEAT_SECONDS
    ((_, beat),) = watcher.reports(clock.now)
    again = startup.latest(beat.decode())
    assert again is not None and again["phases"]["weightLoading"] == startup.HEARTBEAT_SECONDS


def test_a_cpu_start_reads_the_cpu_figures_and_skips_graphs() -> None:
    clock = StartClock(0.0)
    clock.enter(CudaPhase.WEIGHT_LOADING, 5.0)
    clock.enter(CudaPhase.PROFILING, 7.0)
    clock.note("Explicitly set (1.00/62.72) GiB for KV cache on node 0.")
    clock.note("CPU KV cache size: 65,536 tokens, Maximum concurrency for 4,096 tokens per request: 16.00x")
    clock.note("vLLM server version 0.32.0, serving model tiny")
    clock.enter(CudaPhase.SERVING, 30.0)
    assert not clock.enter(CudaPhase.WARM_UP, 31.0), "an earlier phase does not come back"
    assert not clock.enter(CudaPhase.SAMPLER_WARM_UP, 31.0), "not a start phase"
    clock.ready(32.0)
    report = clock.report(40.0)
    assert report["phases"] == {"engineStart": 5.0, "weightLoading": 2.0, "profiling": 23.0, "serving": 2.0}
    assert report["kvCache"] == {
        "memoryGiB": 1.0,
        "tokens": 65536,
        "maxConcurrency": 16.0,
        "maxModelLen": 4096,
    }
    assert report["vllmVersion"] == "0.32.0" and report["elapsedSeconds"] == 32.0
    assert not clock.due(1000.0), "no heartbeat once ready"


def test_parse_takes_the_final_report_and_only_well_typed_fields() -> None:
    heartbeat = startup.PREFIX + json.dumps(
        {"ready": False, "phase": "profiling", "phases": {"profiling": 3}}
    )
    final = startup.PREFIX + json.dumps({
        "ready": True, "phase": "serving", "phases": {"weightLoading": 1.5, "bogus": 2, "profiling": "x"},
        "kvCache": {"tokens": 10.5, "memoryGiB": 2, "maxModelLen": 4096}, "vllmVersion": 3,
    })  # fmt: skip
    log = "\n".join(["noise", final, heartbeat, "partial" + startup.PREFIX + '{"ready": tr', "more"])
    report = startup.latest(log)
    assert report == {"ready": True, "phase": "serving", "phases": {"weightLoading": 1.5},
                      "kvCache": {"memoryGiB": 2.0, "maxModelLen": 4096}}  # fmt: skip
    assert startup.latest(heartbeat)["phase"] == "profiling"  # type: ignore[index]
    assert startup.latest("no report here") is None


CPU_LINES = [
    "(Worker pid=31177) INFO 12-07 01:16:44 [cpu_model_runner.py:68] Starting to load model /tiny...",
    "(Worker pid=31177) INFO 12-07 01:16:45 [default_loader.py:501] Loading weights took 0.02 seconds",
    "(Worker pid=31177) INFO 12-07 01:16:48 [cpu_model_runner.py:87] Warming up model for the compilation...",
    "(Worker pid=31177) INFO 12-07 01:19:47 [cpu_model_runner.py:91] Warming up done.",
    "(Worker pid=31177) INFO 12-07 01:19:47 [cpu_worker.py:260] Explicitly set (1.0/23.54) GiB for KV cache"
    " on node 0.",
    "(EngineCore pid=30809) INFO 12-07 01:19:47 [kv_cache_utils.py:2327] CPU KV cache size: 65,536 tokens, "
    "Maximum concurrency for 16,384 tokens per request: 4.00x",
    "(APIServer pid=29415) INFO 12-07 01:19:55 [entry.py:140] Starting vLLM server on http://127.0.0.1:52589",
    "INFO:     Application startup complete.",
]
"""What vLLM 0.32's CPU worker prints (e2e/test_realvllm_phases.py's log): no "Model loading took"."""


def test_the_cpu_workers_compile_run_is_profiling_not_weights() -> None:
    clock = Clock()
    watcher = OutputWatcher(clock=StartClock(clock.now), now=clock)
    feed_lines(watcher, clock, CPU_LINES)
    ((_, line),) = watcher.reports(clock.now)
    report = startup.latest(line.decode())
    assert report is not None
    assert list(report["phases"]) == [
        "engineStart",
        "weightLoading",
        "profiling",
        "kvCacheAllocation",
        "serving",
    ]
    assert report["phases"]["weightLoading"] == 20.0 and report["phases"]["profiling"] == 20.0
    assert report["kvCache"] == {
        "memoryGiB": 1.0,
        "tokens": 65536,
        "maxConcurrency": 4.0,
        "maxModelLen": 16384,
    }
    assert watcher.phase == CudaPhase.SERVING, "failure attribution keeps vLLM's GPU phase lines only"
