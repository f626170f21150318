"""Make a simulated server fail the way the launcher reports it, to watch the operator react.

    python -m e2e.devcluster.simulate oom POD [--estimate N] [-n NS]  # vLLM's KV cache did not fit
    python -m e2e.devcluster.simulate cuda-oom POD [-n NS]            # CUDA out of memory, no estimate
    python -m e2e.devcluster.simulate bad-args POD [-n NS]            # vLLM refused its arguments

The pod's status is patched as a kubelet would report the crashed container (kwok runs no
containers); the termination message is the launcher's JSON line for that failure.
"""

from __future__ import annotations

import argparse
import json

from kubernetes import client, config

from e2e.devcluster.kube import terminate_container
from qwen_runtime.argv import max_model_len
from qwen_runtime.record import CudaPhase, Reason

PER_TOKEN = 192_512 // 4
"""KV cache bytes per token per GPU of this model at TP 4 in bf16 (for the reported GiB)."""


def _context(core: client.CoreV1Api, namespace: str, pod: str) -> int:
    command = list(core.read_namespaced_pod(pod, namespace).spec.containers[0].command)
    context = max_model_len(command)
    if context is None:
        raise SystemExit(f"pod {namespace}/{pod} has no --max-model-len in its server command")
    return context


def report(kind: str, context: int, estimate: int | None) -> dict[str, object]:
    """The launcher's termination record for a failure of `kind` at `context` tokens."""
    if kind == "oom":
        needed, available = (round(n * PER_TOKEN / 1024**3, 2) for n in (context, estimate or context // 2))
        message = (
            f"ValueError: To serve at least one request with the models's max seq len ({context}), "
            f"({needed} GiB KV cache is needed, which is larger than the available KV cache memory "
            f"({available} GiB)."
        )
        if estimate is not None:
            message += f" Based on the available memory, the estimated maximum model length is {estimate}."
        record: dict[str, object] = {"reason": Reason.KV_CACHE_INSUFFICIENT, "exitCode": 1,
                                     "maxModelLen": context, "neededGiB": needed,
                                     "availableGiB": available}  # fmt: skip
        if estimate is not None:
            record["estimatedMaxModelLen"] = estimate
        return {**record, "message": message}
    if kind == "cuda-oom":
        return {"reason": Reason.CUDA_OOM, "exitCode": 1, "phase": CudaPhase.CUDA_GRAPH_CAPTURE,
                "message": "torch.OutOfMemoryError: CUDA out of memory."}  # fmt: skip
    return {
        "reason": Reason.INVALID_ARGUMENTS,
        "exitCode": 2,
        "message": "vllm serve: error: unrecognized args",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.devcluster.simulate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("kind", choices=("oom", "cuda-oom", "bad-args"))
    parser.add_argument("pod")
    parser.add_argument("-n", "--namespace", default="default")
    parser.add_argument("--estimate", type=int, help="vLLM's estimate of the largest context that fits")
    args = parser.parse_args(argv)
    config.load_kube_config()
    api = client.ApiClient()
    context = _context(client.CoreV1Api(api), args.namespace, args.pod)
    record = report(args.kind, context, args.estimate)
    terminate_container(api, args.namespace, args.pod, "server", "Error", int(str(record["exitCode"])),
                        message=json.dumps(record))  # fmt: skip
    print(f"{args.pod}: server exited with {json.dumps(record)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
