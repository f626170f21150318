"""The memory plan calibrated on vLLM's own figures, once a replica has started.

The plan (memory/planner.py) estimates the KV cache from the GPUs' memory, the weights and a
fixed reserve for activations and CUDA graphs; that reserve is a guess, and vLLM's accounting
moves between releases. A start that reached serving has printed the true figures: the KV
cache's size in tokens at the utilization in force (the launcher's start report, kept in
`status.memory.observed`). While what decides the fit is unchanged (`cures.fit_basis`: model,
image, GPUs, parallelism, KV dtype, extra arguments) and the utilization is the one measured,
a new context is planned from them instead: a raise above what the KV cache holds starts at
what fits, with no failed start to learn it.

One request of `maxModelLen` tokens needs a little more KV cache than its own tokens (vLLM's
estimate with 65,536 tokens of KV cache was 65,408), so the fit is the largest multiple of
1024 strictly below the KV cache's size.
"""

from __future__ import annotations

from qwen_operator import api
from qwen_operator.memory.cures import EPSILON, fit_basis
from qwen_operator.memory.planner import CONTEXT_STEP


def observed_fit(
    observed: api.ObservedMemory | None, res: api.QwenThinkingDeployment, utilization: float
) -> int | None:
    """The context vLLM's figures say fits at `utilization`, or None: no figures, figures of
    another basis (set aside until the next start measures them), or of another utilization."""
    if observed is None or not observed.kv_cache_tokens or observed.basis != fit_basis(res):
        return None
    measured = observed.gpu_memory_utilization
    if measured is None or abs(measured - utilization) > EPSILON:
        return None
    return (observed.kv_cache_tokens - 1) // CONTEXT_STEP * CONTEXT_STEP
