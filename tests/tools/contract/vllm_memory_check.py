"""Size the KV cache of the model with vLLM 0.33's own code (run by the vLLM venv's python).

Executed by the cached vLLM virtualenv (see vllm_env.py), never imported by the
project's tests. For each case it does what a vLLM worker and the engine core do
after profiling, minus the GPU:

- ModelConfig from a directory holding the model's config.json (no weights, no
  tokenizer): head size, KV heads per GPU (get_num_kv_heads), attention layers;
- the KV cache dtype as the Attention layer picks it (kv_cache_dtype_str_to_dtype,
  get_kv_quant_mode) and one FullAttentionSpec per layer, as
  Attention.get_kv_cache_spec builds it for a full-attention layer;
- a VllmConfig with CacheConfig(block_size=16) and the KV cache layout resolved
  the way the engine core does it when no backend declares a preference
  (FlashAttention does not);
- request_memory (ceil(total x utilisation)) with a stand-in memory snapshot
  (only total_memory and free_memory are read);
- check_enough_kv_cache_memory (the "To serve at least one request" check, null
  block included) and estimate_max_model_len for the caller's KV cache budget.

stdin:  {"config": {config.json}, "cases": [{"id", "tensor", "kvCacheDtype", "totalBytes",
         "utilization", "availableBytes", "requested", "maxTokens"}]}
stdout: {"vllmVersion", "results": [{"id", "usableBytes", "kvHeadsPerGpu", "headSize",
         "layers", "dtypeBytes", "pageSizeBytes", "bytesPerTokenPerGpu", "nullBlockBytes",
         "estimate", "fitsMaxTokens", "fitsNextBlock", "atRequested"}]}
"""

from __future__ import annotations

import os

os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ["VLLM_LOGGING_LEVEL"] = "WARNING"

import json
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

BLOCK_SIZE = 16
UNBOUNDED = 10_000_000


def _model_config(config: dict[str, Any]) -> Any:
    from vllm.config import ModelConfig

    directory = Path(tempfile.mkdtemp(prefix="qwen-config-"))
    (directory / "config.json").write_text(json.dumps(config))
    return ModelConfig(model=str(directory), skip_tokenizer_init=True, max_model_len=262144)


def _vllm_config(model_config: Any, tensor: int) -> Any:
    from vllm.config import CacheConfig, ParallelConfig, VllmConfig

    return VllmConfig(
        model_config=model_config,
        cache_config=CacheConfig(block_size=BLOCK_SIZE),
        parallel_config=ParallelConfig(tensor_parallel_size=tensor),
    )


def _specs(vllm_config: Any, kv_cache_dtype: str) -> dict[str, Any]:
    """One FullAttentionSpec per attention layer, as Attention.get_kv_cache_spec builds it."""
    from vllm.utils.torch_utils import kv_cache_dtype_str_to_dtype
    from vllm.v1.kv_cache_interface import FullAttentionSpec, get_kv_quant_mode

    mc, pc = vllm_config.model_config, vllm_config.parallel_config
    spec = FullAttentionSpec(
        block_size=vllm_config.cache_config.block_size,
        num_kv_heads=mc.get_num_kv_heads(pc),
        head_size=mc.get_head_size(),
        dtype=kv_cache_dtype_str_to_dtype(kv_cache_dtype, mc),
        kv_quant_mode=get_kv_quant_mode(kv_cache_dtype),
    )
    layers = mc.get_num_layers_by_block_type(pc, "attention")
    return {f"model.layers.{i}.self_attn.attn": spec for i in range(layers)}


def _resolve_layout(vllm_config: Any, specs: dict[str, Any]) -> None:
    from vllm.v1.attention.backends.utils import get_supported_kv_cache_layouts, resolve_kv_cache_layout

    if vllm_config.cache_config.kv_cache_layout is None:
        names = [layout.name for layout in get_supported_kv_cache_layouts([])]
        layout = resolve_kv_cache_layout(vllm_config, [names], specs.values())
        vllm_config.cache_config.kv_cache_layout = layout.name


def _check(vllm_config: Any, specs: dict[str, Any], available: int, max_len: int) -> str:
    """'' when vLLM would start with this --max-model-len, else its error message."""
    from vllm.v1.core.kv_cache_planning import check_enough_kv_cache_memory

    vllm_config.model_config.max_model_len = max_len
    try:
        check_enough_kv_cache_memory(vllm_config, specs, available)
    except ValueError as exc:
        return str(exc)
    return ""


def _usable(total: int, utilization: float) -> int:
    from vllm.config import CacheConfig
    from vllm.v1.worker.utils import request_memory

    snapshot = SimpleNamespace(total_memory=total, free_memory=total, device_="cuda:0")
    return int(request_memory(snapshot, CacheConfig(gpu_memory_utilization=utilization)))


def check_case(model_config: Any, case: dict[str, Any]) -> dict[str, Any]:
    from vllm.v1.core import kv_cache_planning as planning

    vc = _vllm_config(model_config, case["tensor"])
    specs = _specs(vc, case["kvCacheDtype"])
    _resolve_layout(vc, specs)
    spec = next(iter(specs.values()))
    groups = planning.get_kv_cache_groups(vc, dict(specs))
    null_block = planning._pool_bytes_per_block(vc, groups)
    available, ours = case["availableBytes"], case["maxTokens"]
    vc.model_config.max_model_len = UNBOUNDED
    estimate = planning.estimate_max_model_len(vc, specs, available - null_block) if available > 0 else 0
    return {
        "id": case["id"],
        "usableBytes": _usable(case["totalBytes"], case["utilization"]),
        "kvHeadsPerGpu": spec.num_kv_heads,
        "headSize": spec.head_size,
        "layers": len(specs),
        "dtypeBytes": spec.dtype.itemsize,
        "pageSizeBytes": spec.page_size_bytes,
        "bytesPerTokenPerGpu": len(specs) * spec.page_size_bytes // spec.block_size,
        "nullBlockBytes": null_block,
        "estimate": estimate,
        "fitsMaxTokens": _check(vc, specs, available, ours) if ours > 0 else "not checked: 0",
        "fitsNextBlock": _check(vc, specs, available, ours + BLOCK_SIZE),
        "atRequested": _check(vc, specs, available, case["requested"]),
    }


def main() -> int:
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    request = json.load(sys.stdin)

    import vllm

    model_config = _model_config(request["config"])
    results = [check_case(model_config, case) for case in request["cases"]]
    json.dump({"vllmVersion": vllm.__version__, "results": results}, out)
    out.write("\n")
    out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
