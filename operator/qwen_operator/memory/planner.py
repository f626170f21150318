"""The memory plan: which context length fits in a replica's GPUs, before vLLM tries.

vLLM refuses to start when the KV cache cannot hold one request of `--max-model-len`
tokens. The plan predicts that from the architecture, so the operator can start from a
context that fits instead of a known crash, and say why in `status.context.planned`.

The formula mirrors vLLM 0.33 (checked against vLLM's own functions by
tests/tools/contract/test_vllm_memory.py), per GPU of a replica of `tensor` GPUs:

    requested = ceil(total_memory * gpu_memory_utilization)       # v1/worker/utils.request_memory
    available = requested - non_kv_cache_memory - cudagraph_memory # gpu_worker.determine_available_memory
    non_kv_cache_memory = weights + non-torch (NCCL, CUDA context growth) + activation peak
                                                                  # utils/mem_utils.memory_profiling

We cannot profile, so `weights/TP + OVERHEAD_GIB` stands for `non_kv_cache_memory + cudagraph_memory`
(weights derived from config.json and the FP8 block quantisation, see `weight_bytes`).
From `available`, vLLM's check_enough_kv_cache_memory (v1/core/kv_cache_planning.py) first
holds back one block of every layer (the block pool's null block), then a context L fits when

    cdiv(L, block_size) * page_size_bytes * layers <= available - page_size_bytes * layers
    page_size_bytes = block_size * kv_heads_per_gpu * (head_dim + head_dim) * dtype_bytes
                                                                  # FullAttentionSpec (kv_cache_interface)

so the largest context is `(available // (block_size * kv_bytes_per_token_per_gpu) - 1) * block_size`,
which is what estimate_max_model_len's binary search finds (capped there at max_model_len).

Pipeline parallelism (`parallelism.pipeline` stages, one pod each) splits the layers: vLLM's
get_pp_indices gives each stage `layers // pipeline` and one more to the stages before the last
for the remainder (94 layers in 4 stages: 23, 24, 24, 23). A GPU then holds its stage's share of
the weights (the embeddings of the first stage and the head of the last are counted pro rata,
within a percent for this model) and the KV cache of its stage's layers only; vLLM gives every
worker the same number of blocks (the smallest), so the stage with the most layers decides.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from typing import Any

from qwen_operator import api

GIB = 1024**3
GB = 1000**3
BLOCK_SIZE = 16
"""vLLM 0.33's default KV cache block size (CacheConfig.DEFAULT_BLOCK_SIZE) on CUDA."""
OVERHEAD_GIB = 6.0
"""Per-GPU memory vLLM needs besides weights and KV cache: the activation peak of its profiling
run, CUDA graphs (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS is on by default), NCCL buffers and the
CUDA context's growth. An estimate for this model at the default batch sizes; no published vLLM
log of this model at TP 4 was found to pin it down. It also covers the gap between the
`nvidia.com/gpu.memory` label (81559 MiB on an H100) and what CUDA reports as total (about
0.5 GiB less, driver reservations)."""
FP8_SCALE_BYTES = 4
"""Block-quantised FP8 checkpoints keep one float32 scale per weight block."""


CONTEXT_STEP = 1024
"""Contexts the operator derives (from the memory plan or vLLM's estimate) are multiples of this."""


@dataclass(frozen=True)
class Architecture:
    """What the KV cache and weight sizes depend on (from the model's config.json)."""

    layers: int
    kv_heads: int
    head_dim: int
    weights_bytes: int
    """Size of the checkpoint's tensors, which every replica loads across its GPUs."""

    @classmethod
    def from_config(cls, config: dict[str, Any], weights_bytes: int | None = None) -> Architecture:
        """Weights derived from the config unless given."""
        head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
        size = weight_bytes(config) if weights_bytes is None else weights_bytes
        return cls(config["num_hidden_layers"], config["num_key_value_heads"], head_dim, size)

    def kv_bytes_per_token(self, kv_dtype_bytes: int) -> int:
        """Keys and values of every layer for one token, all KV heads."""
        return 2 * self.layers * self.kv_heads * self.head_dim * kv_dtype_bytes

    def kv_bytes_per_token_per_gpu(self, tensor: int, kv_dtype_bytes: int, pipeline: int = 1) -> int:
        """Tensor parallelism splits KV heads; past their count, heads are replicated. A pipeline
        stage holds the keys and values of its own layers only."""
        per_layer = 2 * self.kv_heads * self.head_dim * kv_dtype_bytes // min(tensor, self.kv_heads)
        return per_layer * stage_layers(self.layers, pipeline)

    def stage_weights_bytes(self, pipeline: int) -> int:
        """Weights of the largest pipeline stage (layers pro rata)."""
        return -(-self.weights_bytes * stage_layers(self.layers, pipeline) // self.layers)


def stage_layers(layers: int, pipeline: int) -> int:
    """Layers of the largest pipeline stage (vLLM's get_pp_indices: the remainder goes one
    each to the stages before the last)."""
    return -(-layers // pipeline)


def _linear_bytes(rows: int, cols: int, block: tuple[int, int] | None) -> int:
    """A linear layer's weight: 1 byte FP8 plus a float32 scale per block, or bf16."""
    if block is None:
        return rows * cols * 2
    return rows * cols + math.ceil(rows / block[0]) * math.ceil(cols / block[1]) * FP8_SCALE_BYTES


def _is_moe_layer(config: dict[str, Any], layer: int) -> bool:
    """Qwen3MoeDecoderLayer's rule: sparse every `decoder_sparse_step` layers, not mlp_only_layers."""
    step = int(config.get("decoder_sparse_step", 1))
    return layer not in config.get("mlp_only_layers", []) and (layer + 1) % step == 0


def _layer_bytes(config: dict[str, Any], layer: int, block: tuple[int, int] | None) -> int:
    hidden, head_dim = int(config["hidden_size"]), int(config.get("head_dim", 128))
    q, kv = int(config["num_attention_heads"]) * head_dim, int(config["num_key_value_heads"]) * head_dim
    attention = _linear_bytes(q, hidden, block) + 2 * _linear_bytes(kv, hidden, block)
    attention += _linear_bytes(hidden, q, block)
    norms = (2 * head_dim + 2 * hidden) * 2  # q_norm, k_norm, input and post-attention RMSNorm (bf16)
    if not _is_moe_layer(config, layer):
        inter = int(config["intermediate_size"])
        return (
            attention + norms + 2 * _linear_bytes(inter, hidden, block) + _linear_bytes(hidden, inter, block)
        )
    inter, experts = int(config["moe_intermediate_size"]), int(config["num_experts"])
    expert = 2 * _linear_bytes(inter, hidden, block) + _linear_bytes(hidden, inter, block)
    router = experts * hidden * 2  # the gate stays bf16 in the FP8 checkpoint
    return attention + norms + router + experts * expert


def weight_bytes(config: dict[str, Any]) -> int:
    """Bytes of a Qwen3MoeForCausalLM checkpoint: FP8 linear layers with block scales (when
    `quantization_config` says fp8), bf16 embeddings, untied lm_head, norms and router."""
    if config.get("architectures") != ["Qwen3MoeForCausalLM"]:
        raise ValueError(f"weight size only known for Qwen3MoeForCausalLM, not {config.get('architectures')}")
    quant = config.get("quantization_config") or {}
    block = None
    if quant.get("quant_method") == "fp8":
        rows, cols = quant["weight_block_size"]
        block = (int(rows), int(cols))
    hidden, vocab = int(config["hidden_size"]), int(config["vocab_size"])
    embeddings = vocab * hidden * 2 * (1 if config.get("tie_word_embeddings") else 2)
    layers = sum(_layer_bytes(config, i, block) for i in range(int(config["num_hidden_layers"])))
    return embeddings + layers + hidden * 2  # + the final norm


def _model_file(model_id: str) -> str:
    return model_id.replace("/", "--") + ".json"


def load_config(model_id: str) -> dict[str, Any]:
    """The config.json shipped in the package for a model id (package data under models/)."""
    text = resources.files(__package__).joinpath("models", _model_file(model_id)).read_text("utf-8")
    config: dict[str, Any] = json.loads(text)
    return config


KNOWN: dict[str, Architecture] = {
    model: Architecture.from_config(load_config(model)) for model in (api.DEFAULT_MODEL,)
}
"""Architectures the operator can plan for; other models get no plan (vLLM decides)."""


def kv_dtype_bytes(kv_cache_dtype: str) -> int:
    """`auto` keeps the model's bf16 KV cache; fp8 halves it."""
    return 1 if kv_cache_dtype == "fp8" else 2


def kv_dtype_name(kv_cache_dtype: str) -> str:
    return "fp8" if kv_cache_dtype == "fp8" else "bf16"


def _gib(n: int) -> float:
    return round(n / GIB, 3)


@dataclass(frozen=True)
class Plan:
    """The outcome for one replica, with every figure that led there (bytes exact, GiB = 2**30)."""

    gpu_memory_gib: float
    gpu_memory_utilization: float
    tensor: int
    kv_cache_dtype: str
    requested: int
    weights_bytes: int
    """The whole checkpoint, all stages."""
    reserve_gib: float
    kv_bytes_per_token: int
    """Keys and values of one token for the whole replica."""
    kv_bytes_per_token_per_gpu: int
    usable_bytes: int
    """ceil(memory x utilisation), vLLM's `requested_memory` per GPU."""
    kv_cache_bytes_per_gpu: int
    """What is left for the KV cache per GPU: usable - weights/TP - reserve (may be negative)."""
    max_tokens: int
    """The longest context one request can have in that KV cache (vLLM's estimate), or 0."""
    planned: int
    """The largest context (a multiple of CONTEXT_STEP, at most the request) that fits, or 0."""
    pipeline: int = 1
    """Pipeline stages (pods) of a replica."""
    stage_weights_bytes: int = 0
    """Weights of the largest stage (all of them with one stage)."""
    stage_layers: int = 0
    """Layers of the largest stage."""

    @property
    def gpus(self) -> int:
        return self.tensor * self.pipeline

    @property
    def weights_bytes_per_gpu(self) -> int:
        return -(-(self.stage_weights_bytes or self.weights_bytes) // self.tensor)

    @property
    def weights_fit(self) -> bool:
        """The weights and the reserve fit in the usable memory (a KV cache may still not)."""
        return self.kv_cache_bytes_per_gpu >= 0

    @property
    def kv_cache_gib_per_gpu(self) -> float:
        return max(0.0, self.kv_cache_bytes_per_gpu / GIB)

    def to_dict(self) -> dict[str, Any]:
        """camelCase figures for `qwen-operator plan -o json` (GiB rounded to 3 places)."""
        return {
            "gpuMemoryGiB": round(self.gpu_memory_gib, 3),
            "gpuMemoryUtilization": self.gpu_memory_utilization,
            "usableGiB": _gib(self.usable_bytes),
            "weightsBytes": self.weights_bytes,
            "weightsGB": round(self.weights_bytes / GB, 3),
            "weightsGiB": _gib(self.weights_bytes),
            "weightsGiBPerGpu": _gib(self.weights_bytes_per_gpu),
            "reserveGiB": self.reserve_gib,
            "kvCacheGiBPerGpu": round(self.kv_cache_gib_per_gpu, 3),
            "kvBytesPerToken": self.kv_bytes_per_token,
            "kvBytesPerTokenPerGpu": self.kv_bytes_per_token_per_gpu,
            "blockSize": BLOCK_SIZE,
            "tensor": self.tensor,
            "pipeline": self.pipeline,
            "stageLayers": self.stage_layers,
            "kvCacheDtype": self.kv_cache_dtype,
            "maxTokens": self.max_tokens,
            "requested": self.requested,
            "planned": self.planned,
            "weightsFit": self.weights_fit,
        }

    def _budget(self) -> str:
        return (
            f"{self.gpu_memory_gib:.1f} GiB x {self.gpu_memory_utilization:g} - "
            f"{self.reserve_gib:.1f} GiB reserve"
        )

    def _weights(self) -> str:
        gpus = f"{self.gpus} GPU{'s' if self.gpus > 1 else ''}"
        if self.pipeline == 1:
            return f"{self.weights_bytes / GB:.1f} GB over {gpus}"
        return (
            f"{self.weights_bytes / GB:.1f} GB over {gpus}: {self.pipeline} pipeline stages of at most "
            f"{self.stage_layers} layers, each over {self.tensor} GPU{'s' if self.tensor > 1 else ''}"
        )

    def explain(self) -> str:
        """One sentence with the numbers (the InsufficientGPUMemory condition's message)."""
        per_gpu, left = self.weights_bytes_per_gpu / GIB, self.usable_bytes / GIB - self.reserve_gib
        if not self.weights_fit:
            return (
                f"the weights need {per_gpu:.1f} GiB per GPU ({self._weights()}) but only {left:.1f} GiB "
                f"is usable ({self._budget()}): add GPUs per replica (tensor or pipeline) or use larger GPUs"
            )
        head = (
            f"the KV cache gets {self.kv_cache_gib_per_gpu:.1f} GiB per GPU ({self._budget()} - "
            f"{per_gpu:.1f} GiB weights, {self._weights()}), "
            f"{self.kv_bytes_per_token_per_gpu:,} bytes per token per GPU ({self.kv_cache_dtype} KV cache)"
        )
        if self.planned == 0:
            return (
                f"{head}: room for {self.max_tokens} tokens, less than {CONTEXT_STEP}: add GPUs per replica, "
                "use larger GPUs, kvCacheDtype fp8 or a higher gpuMemoryUtilization"
            )
        room = f"{head}: room for {self.max_tokens:,} tokens"
        if self.planned == self.requested:
            return f"{room}, so the {self.requested} requested fit"
        return f"{room}, so {self.planned} of the {self.requested} requested"


def max_context(kv_cache_bytes: int, per_token_per_gpu: int) -> int:
    """vLLM's largest context for a per-GPU KV budget: whole blocks, less the null block."""
    blocks = kv_cache_bytes // (BLOCK_SIZE * per_token_per_gpu) if kv_cache_bytes > 0 else 0
    return max(0, (blocks - 1) * BLOCK_SIZE)


def plan(
    arch: Architecture,
    gpu_memory_gib: float,
    tensor: int,
    utilization: float,
    kv_cache_dtype: str,
    requested: int,
    pipeline: int = 1,
) -> Plan:
    """Largest context that fits one request in the KV cache of `tensor` GPUs per stage, in
    `pipeline` stages (the largest stage decides)."""
    usable = math.ceil(gpu_memory_gib * GIB * utilization)
    stage_weights = arch.stage_weights_bytes(pipeline)
    weights_per_gpu = -(-stage_weights // tensor)
    kv_cache = usable - weights_per_gpu - round(OVERHEAD_GIB * GIB)
    per_token = arch.kv_bytes_per_token_per_gpu(tensor, kv_dtype_bytes(kv_cache_dtype), pipeline)
    max_tokens = max_context(kv_cache, per_token)
    return Plan(
        gpu_memory_gib=gpu_memory_gib,
        gpu_memory_utilization=utilization,
        tensor=tensor,
        kv_cache_dtype=kv_dtype_name(kv_cache_dtype),
        requested=requested,
        weights_bytes=arch.weights_bytes,
        reserve_gib=OVERHEAD_GIB,
        kv_bytes_per_token=arch.kv_bytes_per_token(kv_dtype_bytes(kv_cache_dtype)),
        kv_bytes_per_token_per_gpu=per_token,
        usable_bytes=usable,
        kv_cache_bytes_per_gpu=kv_cache,
        max_tokens=max_tokens,
        planned=min(requested, max_tokens // CONTEXT_STEP * CONTEXT_STEP),
        pipeline=pipeline,
        stage_weights_bytes=stage_weights,
        stage_layers=stage_layers(arch.layers, pipeline),
    )


def gpu_memory_gib_from_label(value: str | None) -> float | None:
    """GPU feature discovery's `nvidia.com/gpu.memory` label is in MiB."""
    try:
        return int(value) / 1024 if value else None
    except ValueError:
        return None


def plan_for(
    spec: api.QwenThinkingDeploymentSpec, node_gpu_memory_gib: float | None, utilization: float | None = None
) -> Plan | None:
    """The plan for a spec (at `utilization` when the out-of-memory cure lowered it), or None
    when the model or the GPU memory is unknown."""
    arch = KNOWN.get(spec.model.id)
    memory = spec.gpu.memory_gi_b or node_gpu_memory_gib
    if arch is None or memory is None:
        return None
    return plan(
        arch,
        memory,
        spec.parallelism.tensor,
        utilization or spec.runtime.gpu_memory_utilization,
        spec.runtime.kv_cache_dtype,
        spec.context.max_model_len,
        spec.parallelism.pipeline,
    )
