"""The model card's deployment as defaults, and the bounds the API keeps: model, image,
weights, contexts, parallelism, names."""

from __future__ import annotations

__all__ = [
    "BAKED_IMAGE",
    "CAPABILITIES",
    "COMPILE_CACHE_FLOOR",
    "COMPILE_CACHE_SIZE",
    "DECODE_TOKENS_PER_SECOND",
    "DEFAULT_ANSWER_TOKENS",
    "DEFAULT_IMAGE",
    "DEFAULT_MODEL",
    "DRAIN_SECONDS",
    "FALLBACK_STEPS",
    "MANAGED_ENV",
    "MAX_CONTEXT",
    "MAX_DRAIN_SECONDS",
    "MAX_ENV_VALUE",
    "MAX_LABEL_VALUE",
    "MAX_NAME_LENGTH",
    "MAX_PIPELINE",
    "MAX_QUALIFIED_NAME",
    "MIN_CONTEXT",
    "OTHER_CACHE_FLOOR",
    "RECOMMENDED_CONTEXT",
    "TENSOR_SIZES",
    "WEIGHTS_CACHE_FLOOR",
    "WEIGHTS_GIB",
]

DEFAULT_MODEL = "Qwen/Qwen3-235B-A22B-Thinking-2507-FP8"
DEFAULT_IMAGE = "vllm/vllm-openai:v0.33.0"
"""The unmodified vLLM image: the launcher reaches the pods in a ConfigMap (render.py)."""
BAKED_IMAGE = "ghcr.io/qwen-operator/qwen-runtime:0.1.0-vllm0.33.0"
"""The optional image with the launcher baked in (runtime/Dockerfile), for air-gapped mirrors."""
WEIGHTS_CACHE_FLOOR = "221Gi"
"""The default model's weights: 236,445,455,360 B is 220.2 GiB (planner.weight_bytes)."""
WEIGHTS_GIB = 220.2
"""The same weights in GiB, rounded down: GPUs with less memory in all cannot hold them."""
OTHER_CACHE_FLOOR = "1Gi"
"""Any other model: no weights cache smaller than this."""
COMPILE_CACHE_SIZE = "10Gi"
"""Each replica's bound on its compile artifacts (torch.compile, inductor, Triton): one
configuration of this model writes a few GiB at TP 4 (a directory per GPU rank, plus the
kernels), so the three quarters kept before a start hold a few configurations; a claim of this
size costs little beside the weights' 600Gi."""
COMPILE_CACHE_FLOOR = "1Gi"
"""Below this the bound would remove the artifacts of the configuration in use at every start."""
RECOMMENDED_CONTEXT = 131072
"""The model card: a thinking model wants at least this context for its reasoning."""

MANAGED_ENV = ("PYTHONPATH", "QWEN_LAUNCHER_DIGEST")
"""Environment the server needs as the operator sets it: the launcher is imported from PYTHONPATH
and checks its sources against QWEN_LAUNCHER_DIGEST (qwen_runtime.integrity.DIGEST_VAR)."""
CAPABILITIES = ("IPC_LOCK",)
"""Capabilities a user may add to the server (IPC_LOCK: pinned memory for RDMA/GPUDirect);
any of them takes the pods out of Pod Security "restricted"."""
MAX_CONTEXT = 262144
MIN_CONTEXT = 1024
FALLBACK_STEPS = (262144, 196608, 131072, 98304, 65536, 32768)
"""The ladder of contexts the fallback steps down when vLLM gave no estimate."""
MAX_NAME_LENGTH = 52
MAX_ENV_VALUE = 4096
"""An env variable's literal value: 4 KiB, so 64 of them stay a fraction of a pod template (a
LeaderWorkerSet holds two, etcd takes 1.5 MiB a request); more is a file, in a ConfigMap."""
MAX_QUALIFIED_NAME = 317
"""A label key, a taint key, a resource name: a 253-character prefix, a slash, a 63-character
name. Also each key of a map the spec passes through (a CRD bounds map keys only by CEL)."""
MAX_LABEL_VALUE = 63

DECODE_TOKENS_PER_SECOND = 30
"""An ordinary decode speed of one sequence of this model in a loaded batch (4 H100s, FP8):
alone it decodes faster, among dozens of others slower. The drain is sized on it."""
DEFAULT_ANSWER_TOKENS = 32768
"""The model card's output length, the default `sampling.maxTokens`."""
DRAIN_SECONDS = 1200
"""vLLM's `--shutdown-timeout` by default: the default answer, started just before SIGTERM,
finishes at the ordinary speed: 32768 tokens / 30 tokens/s = 1092 s, rounded up to 20 minutes
(enough down to 27.3 tokens/s). vLLM exits as soon as its last request ends: an idle server
stops in seconds, whatever this is."""
MAX_DRAIN_SECONDS = 10800
"""The longest answer the API allows (`sampling.maxTokens` up to 262144) at the same speed is
8738 s; 3 hours bounds a typo, not a real drain."""

TENSOR_SIZES = (1, 2, 4, 8)
MAX_PIPELINE = 8
