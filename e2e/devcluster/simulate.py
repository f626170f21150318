"""Make a simulated server fail the way the launcher reports it, to watch the operator cure it.

    python -m e2e.devcluster.simulate oom POD [--estimate N]   # the KV cache: a shorter context
    python -m e2e.devcluster.simulate kv-no-figures POD        # the same, no figures: the ladder
    python -m e2e.devcluster.simulate cuda-oom POD             # CUDA graphs: a lower utilization
    python -m e2e.devcluster.simulate weights-oom POD          # the weights do not fit: Stalled
    python -m e2e.devcluster.simulate free-memory POD [--free 70 --total 79.6]  # another process
    python -m e2e.devcluster.simulate oom-killed POD           # host memory: Stalled
    python -m e2e.devcluster.simulate bad-args POD             # vLLM refused its arguments
    (each takes -n NS)

The pod's status is patched as a kubelet would report the crashed container (kwok runs no
containers); the termination message is the launcher's JSON line for that failure, made by
the launcher's own classifier from vLLM 0.33's line (tests/unit/test_simulate.py checks each).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from kubernetes import client, config

from e2e.devcluster.kube import terminate_container
from qwen_operator.children.replicas import VOLUME as SETTINGS_VOLUME
from qwen_runtime import replica
from qwen_runtime.argv import gpu_memory_utilization, max_model_len
from qwen_runtime.classify import KeyLine, classify, clean
from qwen_runtime.record import CudaPhase, Reason, Record

PER_TOKEN = 192_512 // 4
"""KV cache bytes per token per GPU of this model at TP 4 in bf16 (for the reported GiB)."""
KINDS = ("oom", "kv-no-figures", "cuda-oom", "weights-oom", "free-memory", "oom-killed", "bad-args")


@dataclass(frozen=True)
class Run:
    """What the failed run had: its context and utilization, and vLLM's view of the GPU."""

    context: int
    utilization: float = 0.92
    estimate: int | None = None
    free_gib: float = 70.0
    total_gib: float = 79.6


def _kv_line(run: Run) -> str:
    needed, available = (
        round(n * PER_TOKEN / 1024**3, 2) for n in (run.context, run.estimate or run.context // 2)
    )
    line = (
        f"ValueError: To serve at least one request with the models's max seq len ({run.context}), "
        f"({needed} GiB KV cache is needed, which is larger than the available KV cache memory "
        f"({available} GiB)."
    )
    if run.estimate is not None:
        line += f" Based on the available memory, the estimated maximum model length is {run.estimate}."
    return line


def vllm_lines(kind: str, run: Run) -> tuple[list[str], CudaPhase | None]:
    """What vLLM 0.33 prints for the failure, and the start-up phase it was in."""
    if kind == "oom":
        return [_kv_line(run)], None
    if kind == "cuda-oom":
        return [
            "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 512.00 MiB."
        ], CudaPhase.CUDA_GRAPH_CAPTURE
    if kind == "weights-oom":
        load = "Failed to load model - not enough GPU memory. Try lowering --gpu-memory-utilization"
        return [f"ValueError: {load} (original error: CUDA out of memory)"], CudaPhase.WEIGHT_LOADING
    if kind == "free-memory":
        requested = round(run.total_gib * run.utilization, 2)
        line = (
            f"ValueError: Free memory on device cuda:0 ({run.free_gib}/{run.total_gib} GiB) on startup is "
            f"less than desired GPU memory utilization ({run.utilization}, {requested} GiB). Decrease GPU "
            "memory utilization or reduce GPU memory used by other processes."
        )
        return [line], None
    return ["vllm serve: error: unrecognized arguments: --bogus"], None


def report(kind: str, run: Run) -> Record | None:
    """The launcher's termination record for a failure of `kind`; None for the kubelet's OOM kill
    (the kernel killed the launcher too: it wrote nothing)."""
    if kind == "oom-killed":
        return None
    if kind == "kv-no-figures":
        return {"reason": Reason.KV_CACHE_INSUFFICIENT, "exitCode": 1, "message": "ValueError: KV cache"}
    lines, phase = vllm_lines(kind, run)
    keys = [KeyLine(clean(line), phase) for line in lines]
    record = classify(keys, lines, 2 if kind == "bad-args" else 1, phase, run.context)
    record.setdefault("gpuMemoryUtilization", run.utilization)  # the run's own, as the launcher adds it
    return record


def _run_of(core: client.CoreV1Api, namespace: str, pod: str, args: argparse.Namespace) -> Run:
    command = list(core.read_namespaced_pod(pod, namespace).spec.containers[0].command)
    context = max_model_len(command)
    if context is None:
        raise SystemExit(f"pod {namespace}/{pod} has no --max-model-len in its server command")
    utilization = _own_utilization(core, namespace, pod) or gpu_memory_utilization(command) or 0.92
    return Run(context, utilization, args.estimate, args.free, args.total)


def _own_utilization(core: client.CoreV1Api, namespace: str, pod: str) -> float | None:
    """The pod's own --gpu-memory-utilization, as its launcher would read it from the replicas'
    ConfigMap (the ConfigMap the pod mounts at the launcher's settings directory), if any."""
    spec = core.read_namespaced_pod(pod, namespace).spec
    names = [v.config_map.name for v in spec.volumes or [] if v.config_map and v.name == SETTINGS_VOLUME]
    for name in names:
        try:
            data = core.read_namespaced_config_map(name, namespace).data or {}
        except client.ApiException:
            return None
        if pod in data:
            return replica.parse(pod, data[pod]).utilization
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.devcluster.simulate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("pod")
    parser.add_argument("-n", "--namespace", default="default")
    parser.add_argument("--estimate", type=int, help="vLLM's estimate of the largest context that fits (oom)")
    parser.add_argument("--free", type=float, default=70.0, help="free GiB on the GPU (free-memory)")
    parser.add_argument("--total", type=float, default=79.6, help="total GiB of the GPU (free-memory)")
    args = parser.parse_args(argv)
    config.load_kube_config()
    api = client.ApiClient()
    said = report(args.kind, _run_of(client.CoreV1Api(api), args.namespace, args.pod, args))
    if said is None:
        terminate_container(api, args.namespace, args.pod, "server", "OOMKilled", 137)
        print(f"{args.pod}: server OOMKilled by the kernel (exit 137)")
        return 0
    terminate_container(
        api, args.namespace, args.pod, "server", "Error", said["exitCode"], message=json.dumps(said)
    )
    print(f"{args.pod}: server exited with {json.dumps(said)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
