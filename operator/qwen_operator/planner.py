"""The memory plan: which context length fits in a replica's GPUs, before vLLM tries.

vLLM refuses to start when the KV cache cannot hold one request of `--max-model-len`
tokens. The plan predicts that from the architecture, so the operator can start from a
context that fits instead of a known crash, and say why in `status.context.planned`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import api
from .status import Event

GIB = 1024**3
STEP = 1024
"""Planned contexts are multiples of this many tokens."""
OVERHEAD_GIB = 6.0
"""Per-GPU memory vLLM needs besides weights and KV cache (activations at profiling, CUDA
graphs, NCCL buffers); an estimate for this model at the default batch sizes."""


@dataclass(frozen=True)
class Architecture:
    """What the KV cache size depends on (from the model's config.json)."""

    layers: int
    kv_heads: int
    head_dim: int
    weights_bytes: int
    """Size of the checkpoint's tensors, which every replica loads across its GPUs."""

    @classmethod
    def from_config(cls, config: dict[str, Any], weights_bytes: int) -> Architecture:
        head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
        return cls(config["num_hidden_layers"], config["num_key_value_heads"], head_dim, weights_bytes)

    def kv_bytes_per_token(self, kv_dtype_bytes: int) -> int:
        """Keys and values of every layer for one token, all KV heads."""
        return 2 * self.layers * self.kv_heads * self.head_dim * kv_dtype_bytes

    def kv_bytes_per_token_per_gpu(self, tensor: int, kv_dtype_bytes: int) -> int:
        """Tensor parallelism splits KV heads; past their count, heads are replicated."""
        return self.kv_bytes_per_token(kv_dtype_bytes) // min(tensor, self.kv_heads)


KNOWN: dict[str, Architecture] = {
    api.DEFAULT_MODEL: Architecture(layers=94, kv_heads=4, head_dim=128, weights_bytes=236_400_000_000),
}
"""Architectures the operator can plan for; other models get no plan (vLLM decides)."""


@dataclass(frozen=True)
class Plan:
    """The outcome for one replica."""

    max_tokens: int
    """KV cache capacity in tokens for the whole replica."""
    planned: int
    """The largest context (a multiple of STEP, at most the request) that fits, or 0."""
    kv_cache_gib_per_gpu: float


def kv_dtype_bytes(kv_cache_dtype: str) -> int:
    """`auto` keeps the model's bf16 KV cache; fp8 halves it."""
    return 1 if kv_cache_dtype == "fp8" else 2


def plan(
    arch: Architecture,
    gpu_memory_gib: float,
    tensor: int,
    utilization: float,
    kv_cache_dtype: str,
    requested: int,
) -> Plan:
    """Largest context that fits one request in the KV cache of `tensor` GPUs."""
    weights_per_gpu = arch.weights_bytes / tensor
    kv_bytes = gpu_memory_gib * GIB * utilization - weights_per_gpu - OVERHEAD_GIB * GIB
    per_token = arch.kv_bytes_per_token_per_gpu(tensor, kv_dtype_bytes(kv_cache_dtype))
    max_tokens = max(0, int(kv_bytes // per_token))
    planned = min(requested, max_tokens // STEP * STEP)
    return Plan(max_tokens=max_tokens, planned=planned, kv_cache_gib_per_gpu=max(0.0, kv_bytes / GIB))


def gpu_memory_gib_from_label(value: str | None) -> float | None:
    """GPU feature discovery's `nvidia.com/gpu.memory` label is in MiB."""
    try:
        return int(value) / 1024 if value else None
    except ValueError:
        return None


def plan_for(spec: api.QwenThinkingDeploymentSpec, node_gpu_memory_gib: float | None) -> Plan | None:
    """The plan for a spec, or None when the model or the GPU memory is unknown."""
    arch = KNOWN.get(spec.model.id)
    memory = spec.gpu.memory_gi_b or node_gpu_memory_gib
    if arch is None or memory is None:
        return None
    return plan(
        arch,
        memory,
        spec.parallelism.tensor,
        spec.runtime.gpu_memory_utilization,
        spec.runtime.kv_cache_dtype,
        spec.context.max_model_len,
    )


MEMORY_LABEL = "nvidia.com/gpu.memory"
PRODUCT_LABEL = "nvidia.com/gpu.product"


def node_selector(spec: api.QwenThinkingDeploymentSpec) -> str:
    """Nodes whose GPUs the plan considers: those that report GPU memory (and the product)."""
    selector = MEMORY_LABEL
    if spec.gpu.product:
        selector += f",{PRODUCT_LABEL}={spec.gpu.product}"
    return selector


def node_gpu_memory_label(node: dict[str, Any]) -> str | None:
    labels: dict[str, str] = (node.get("metadata") or {}).get("labels") or {}
    return labels.get(MEMORY_LABEL)


def smallest_gpu_memory_gib(nodes: list[dict[str, Any]]) -> float | None:
    """The plan must fit wherever a pod lands, so the smallest GPU among the nodes counts."""
    sizes = [gpu_memory_gib_from_label(node_gpu_memory_label(n)) for n in nodes]
    return min((m for m in sizes if m is not None), default=None)


def events(res: api.QwenThinkingDeployment, before: int | None, planned: int | None) -> list[Event]:
    """One event when the plan changes and says the request does not fit."""
    ctx = res.spec.context
    if planned is None or planned == before or planned >= ctx.max_model_len:
        return []
    start = max(planned, ctx.min_model_len) if ctx.preflight else ctx.max_model_len
    action = f"starting at {start}" + ("" if ctx.preflight else " (preflight is off)")
    if planned < ctx.min_model_len:
        message = (
            f"the memory plan fits {planned} tokens, below minModelLen {ctx.min_model_len}: the weights "
            "leave too little GPU memory for the KV cache (more GPUs per replica, kvCacheDtype fp8 or "
            f"a lower minModelLen would help); {action}"
        )
        return [Event("Warning", "InsufficientGPUMemory", message)]
    message = f"the memory plan fits {planned} of the {ctx.max_model_len} tokens requested; {action}"
    return [Event("Normal", "ContextPlanned", message)]
