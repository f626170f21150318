"""Restarts until a replica fits, by cause of the out-of-memory: each cause its cure, against the
context-only policy (every memory failure lowers the context, as the operator did before).

A simulated replica of four 80 GB GPUs (79.6 GiB as CUDA reports it, the 236.4 GB of weights
split four ways, bf16 KV cache) starts at the operator's context and utilization, and fails
as vLLM 0.33 would, in vLLM's order:

1. free memory below `utilization x total` (another process holds some): InsufficientFreeMemory
   (`request_memory`, v1/worker/utils.py);
2. the weights do not fit the GPUs: CudaOOM while loading (gpu_model_runner.load_model);
3. a peak outside the KV cache that vLLM's profiling underestimates by E GiB, if
   `utilization x total + E` exceeds what is free: CudaOOM while capturing CUDA graphs;
4. the KV cache (`utilization x total - weights - activations`) cannot hold one request of the
   context: KVCacheInsufficient with vLLM's estimate (check_enough_kv_cache_memory);
5. the host: a container memory limit below what the process needs: the kubelet's OOMKilled.

Both policies run the operator's own `cures.detect` and `cures.decide` on pod statuses,
with preflight on and the memory plan at the utilization in force; the context-only policy
files every memory failure as a KV-cache failure with no figures (the ladder). A restart here
is a weight load of this model: tens of minutes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from qwen_operator import api
from qwen_operator.api.vocabulary import MAX_MODEL_LEN_FLAG, SERVER_CONTAINER
from qwen_operator.memory import cures, planner
from qwen_operator.reconcile import snapshot
from qwen_runtime.argv import GPU_MEMORY_UTILIZATION

NOW = datetime(2026, 1, 1, tzinfo=UTC)
GIB = 1024**3
TOTAL_GIB = 79.6
LABEL_MIB = 81559  # nvidia.com/gpu.memory of an H100 80GB
ARCH = planner.KNOWN[api.DEFAULT_MODEL]
WEIGHTS_GIB = ARCH.weights_bytes / 4 / GIB
PER_TOKEN = ARCH.kv_bytes_per_token_per_gpu(4, 2)


@dataclass(frozen=True)
class Cluster:
    """What is true of the GPUs and the host, which the policies do not know."""

    name: str
    held_gib: float = 0.0
    """GPU memory another process holds."""
    peak_error_gib: float = 0.0
    """How much vLLM's profiling underestimates the peak outside the KV cache."""
    weights_gib: float = WEIGHTS_GIB
    host_short: bool = False
    """The container's memory limit is below what the server needs."""
    kv_error_gib: float = 0.0
    """How much less KV cache vLLM finds than the memory plan expects."""


def run(cluster: Cluster, context: int, utilization: float) -> dict[str, Any] | None:
    """vLLM's start at this context and utilization: None when it serves, else the launcher's record."""
    budget = utilization * TOTAL_GIB
    free = TOTAL_GIB - cluster.held_gib
    if budget > free:
        return {"reason": "InsufficientFreeMemory", "exitCode": 1, "freeGiB": round(free, 2),
                "totalGiB": TOTAL_GIB, "gpuMemoryUtilization": utilization}  # fmt: skip
    if cluster.weights_gib > budget:
        return {"reason": "CudaOOM", "exitCode": 1, "phase": "weightLoading"}
    if budget + cluster.peak_error_gib > free:
        return {"reason": "CudaOOM", "exitCode": 1, "phase": "cudaGraphCapture"}
    if cluster.host_short:
        return {"reason": "OOMKilled"}
    kv = budget - cluster.weights_gib - planner.OVERHEAD_GIB - cluster.kv_error_gib
    fits = planner.max_context(int(kv * GIB), PER_TOKEN)
    if fits < context:
        needed = round(context * PER_TOKEN / GIB, 2)
        return {"reason": "KVCacheInsufficient", "exitCode": 1, "maxModelLen": context, "neededGiB": needed,
                "availableGiB": round(max(kv, 0.0), 2), "estimatedMaxModelLen": fits}  # fmt: skip
    return None


def pod(uid: str, context: int, utilization: float, said: dict[str, Any]) -> snapshot.Pod:
    """Pod 0 as the watch shows it after its server container ended with `said`."""
    if said["reason"] == "OOMKilled":
        terminated: dict[str, Any] = {"exitCode": 137, "reason": "OOMKilled", "message": ""}
    else:
        terminated = {"exitCode": 1, "reason": "Error", "message": json.dumps(said)}
    argv = [
        "vllm",
        "serve",
        "m",
        MAX_MODEL_LEN_FLAG,
        str(context),
        GPU_MEMORY_UTILIZATION,
        f"{utilization:g}",
    ]
    return snapshot.pod_from({
        "metadata": {"name": "q-0", "uid": uid},
        "spec": {"containers": [{"name": SERVER_CONTAINER, "command": argv,
                                 "resources": {"limits": {"memory": "256Gi"}}}]},
        "status": {"containerStatuses": [{"name": SERVER_CONTAINER, "ready": False, "restartCount": 1,
                                          "lastState": {"terminated": terminated}}]},
    })  # fmt: skip


Policy = Callable[[dict[str, Any]], dict[str, Any]]


def by_cause(said: dict[str, Any]) -> dict[str, Any]:
    return said


def context_only(said: dict[str, Any]) -> dict[str, Any]:
    """The policy before: every memory failure walks the context (no figures: the ladder)."""
    if said["reason"] == "KVCacheInsufficient":
        return said
    return {"reason": "KVCacheInsufficient", "exitCode": 1}


def converge(cluster: Cluster, policy: Policy) -> tuple[int, str]:
    """Restarts until a replica serves (and at what), or stalls (and why)."""
    res = api.parse_resource({"metadata": {"name": "q", "namespace": "b"}, "spec": {}})

    def planned_at(utilization: float) -> int | None:
        plan = planner.plan_for(res.spec, LABEL_MIB / 1024, utilization)
        return None if plan is None else plan.planned

    history: tuple[api.ContextStep, ...] = ()
    for restarts in range(32):
        decision = cures.choose(res, history, planned_at, [], NOW)
        said = run(cluster, decision.effective, decision.utilization)
        if said is None:
            return restarts, f"{decision.effective} at {decision.utilization:g}"
        failed = pod(f"u{restarts}", decision.effective, decision.utilization, policy(said))
        decision = cures.choose(res, decision.history, planned_at, cures.detect([failed]), NOW)
        if decision.problem is not None:
            return restarts + 1, f"Stalled: {decision.problem.reason}"
        history = decision.history
    raise AssertionError("no convergence")


CLUSTERS = [
    Cluster("fits"),
    Cluster("KV cache 1.5 GiB smaller than planned", kv_error_gib=1.5),
    Cluster("CUDA graphs 10 GiB more than profiled", peak_error_gib=10.0),
    Cluster("CUDA graphs 12 GiB more than profiled", peak_error_gib=12.0),
    Cluster("another process holds 10 GiB", held_gib=10.0),
    Cluster("another process holds 30 GiB", held_gib=30.0),
    Cluster("weights do not fit (TP 2)", weights_gib=WEIGHTS_GIB * 2),
    Cluster("host memory limit too low", host_short=True),
]


def main() -> int:
    head = f"H100 80GB x 4 (CUDA total {TOTAL_GIB} GiB), bf16 KV cache; request 262144 at 0.92"
    print(f"{head}, floors 32768 / 0.8")
    print(f"{'cause':<40} | {'by cause: restarts, outcome':<38} | context only: restarts, outcome")
    totals = {"cause": 0, "context": 0}
    started = time.perf_counter()
    for cluster in CLUSTERS:
        cured, plain = converge(cluster, by_cause), converge(cluster, context_only)
        totals["cause"] += cured[0]
        totals["context"] += plain[0]
        print(f"{cluster.name:<40} | {cured[0]:>2}, {cured[1]:<34} | {plain[0]:>2}, {plain[1]}")
    elapsed = time.perf_counter() - started
    print(f"total restarts: by cause {totals['cause']}, context only {totals['context']} "
          f"(simulated through detect + decide: {elapsed * 1000:.1f} ms)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
