"""The memory plan's arithmetic is vLLM 0.33's own: KV bytes per token and the longest context.

vllm_memory_check.py, run by the cached vLLM virtualenv, builds vLLM's ModelConfig from
the packaged config.json, the per-layer FullAttentionSpec for each TP size and KV cache
dtype, and asks vLLM's check_enough_kv_cache_memory ("To serve at least one request ...")
and estimate_max_model_len about the KV budget the planner computed. What cannot run
without a GPU (the profiling run behind `non_kv_cache_memory`) is the planner's stated
reserve; the rest of the budget (request_memory) is vLLM's function too. A missing
virtualenv fails the tests: run `make vllm-env`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from qwen_operator import api
from qwen_operator.memory import planner
from tests.tools.contract import vllm_env

pytestmark = pytest.mark.contract

CHECKER = Path(__file__).with_name("vllm_memory_check.py")
ARCH = planner.KNOWN[api.DEFAULT_MODEL]
H100_GIB, H200_GIB = 81559 / 1024, 143771 / 1024  # nvidia.com/gpu.memory labels (MiB)
MIB, GIB = 1024**2, 1024**3
ESTIMATE = re.compile(r"the estimated maximum model length is (\d+)")

# (id, total bytes, GiB as the planner gets it, tensor, kvCacheDtype, utilisation)
CASES = [
    ("h200-tp4-bf16", 143771 * MIB, H200_GIB, 4, "auto", 0.92),
    ("h200-141gib-tp4-bf16", 141 * GIB, 141.0, 4, "auto", 0.92),
    ("h100-tp4-fp8", 81559 * MIB, H100_GIB, 4, "fp8", 0.92),
    ("h100-tp4-bf16", 81559 * MIB, H100_GIB, 4, "auto", 0.92),
    ("h100-80gib-tp4-bf16", 80 * GIB, 80.0, 4, "auto", 0.92),
    ("h100-tp4-bf16-util-0.80", 81559 * MIB, H100_GIB, 4, "auto", 0.80),
    ("h200-tp2-bf16", 143771 * MIB, H200_GIB, 2, "auto", 0.92),
    ("h200-tp2-fp8", 143771 * MIB, H200_GIB, 2, "fp8", 0.92),
    ("h100-tp2-fp8-weights-do-not-fit", 81559 * MIB, H100_GIB, 2, "fp8", 0.92),
    ("tight-tp4-bf16-368-tokens", round(66.38 * GIB), 66.38, 4, "auto", 0.92),
]
PLANS = {c[0]: planner.plan(ARCH, c[2], c[3], c[5], c[4], 262144) for c in CASES}


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, Any]]:
    """One vllm_memory_check.py process over all cases; fails (never skips) without the venv."""
    cases = [
        {
            "id": case_id,
            "totalBytes": total,
            "tensor": tensor,
            "kvCacheDtype": dtype,
            "utilization": util,
            "availableBytes": PLANS[case_id].kv_cache_bytes_per_gpu,
            "requested": PLANS[case_id].requested,
            "maxTokens": PLANS[case_id].max_tokens,
        }
        for case_id, total, _, tensor, dtype, util in CASES
    ]
    payload = {"config": planner.load_config(api.DEFAULT_MODEL), "cases": cases}
    report = vllm_env.run_in_venv(CHECKER, payload)
    assert report["vllmVersion"] == vllm_env.VLLM_VERSION
    return {r["id"]: r for r in report["results"]}


IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("case_id", IDS)
def test_kv_bytes_per_token_per_gpu(results: dict[str, dict[str, Any]], case_id: str) -> None:
    got, plan = results[case_id], PLANS[case_id]
    assert (got["layers"], got["headSize"]) == (ARCH.layers, ARCH.head_dim)
    assert got["kvHeadsPerGpu"] == ARCH.kv_heads // plan.tensor
    assert got["dtypeBytes"] == planner.kv_dtype_bytes("fp8" if plan.kv_cache_dtype == "fp8" else "auto")
    assert got["bytesPerTokenPerGpu"] == plan.kv_bytes_per_token_per_gpu
    assert got["pageSizeBytes"] == planner.BLOCK_SIZE * plan.kv_bytes_per_token_per_gpu // ARCH.layers
    # the block pool's null block: one block of every layer
    assert got["nullBlockBytes"] == planner.BLOCK_SIZE * plan.kv_bytes_per_token_per_gpu


def test_the_design_figures() -> None:
    """192,512 B bf16 / 96,256 B fp8 per token for the replica; a quarter per GPU at TP 4."""
    assert PLANS["h100-tp4-bf16"].kv_bytes_per_token == 192_512
    assert PLANS["h100-tp4-fp8"].kv_bytes_per_token == 96_256
    assert PLANS["h100-tp4-bf16"].kv_bytes_per_token_per_gpu == 192_512 // 4


@pytest.mark.parametrize("case_id", IDS)
def test_usable_memory_is_vllms_request_memory(results: dict[str, dict[str, Any]], case_id: str) -> None:
    assert results[case_id]["usableBytes"] == PLANS[case_id].usable_bytes


@pytest.mark.parametrize("case_id", IDS)
def test_longest_context_is_what_vllm_accepts(results: dict[str, dict[str, Any]], case_id: str) -> None:
    got, plan = results[case_id], PLANS[case_id]
    assert got["estimate"] == plan.max_tokens
    if plan.max_tokens > 0:
        assert got["fitsMaxTokens"] == "", got["fitsMaxTokens"]
    assert got["fitsNextBlock"] != "", f"vLLM accepts {plan.max_tokens + planner.BLOCK_SIZE} tokens too"


@pytest.mark.parametrize("case_id", IDS)
def test_the_request_fits_exactly_when_planned(results: dict[str, dict[str, Any]], case_id: str) -> None:
    """planned == requested iff vLLM starts with --max-model-len 262144; else its estimate is ours."""
    got, plan = results[case_id], PLANS[case_id]
    refusal = got["atRequested"]
    assert (refusal == "") is (plan.planned == plan.requested), refusal
    if refusal and plan.kv_cache_bytes_per_gpu > 0:
        assert "To serve at least one request" in refusal
        found = ESTIMATE.search(refusal)
        assert (int(found.group(1)) if found else 0) == plan.max_tokens, refusal
    elif refusal:
        assert "No available memory for the cache blocks" in refusal


def test_the_h100_bf16_case() -> None:
    """The acceptance line: H100, TP 4, bf16 KV, 0.92 -> 272,688 tokens fit, so 262144 is planned."""
    plan = PLANS["h100-tp4-bf16"]
    assert (plan.kv_cache_bytes_per_gpu, plan.max_tokens, plan.planned) == (13_125_330_402, 272_688, 262144)


def test_the_cases_cover_both_outcomes() -> None:
    """Plans below the request and plans of nothing are among the cases vLLM checks."""
    planned = {case_id: (p.max_tokens, p.planned) for case_id, p in PLANS.items()}
    # H200 TP 2: 138,694,434,489 - 118,222,727,680 - 6 GiB = 14,029,255,865 B per GPU;
    # bf16 96,256 B/token/GPU: // 1,540,096 = 9,109 blocks -> 145,728 tokens -> 145,408 planned;
    # fp8: // 770,048 = 18,218 blocks -> 291,472 tokens -> the 262144 requested
    assert planned["h200-tp2-bf16"] == (145_728, 145_408)
    assert planned["h200-tp2-fp8"] == (291_472, 262144)
    assert planned["h100-tp4-bf16-util-0.80"] == (59_456, 59_392)
    assert planned["h100-tp2-fp8-weights-do-not-fit"] == (0, 0)
    assert planned["tight-tp4-bf16-368-tokens"] == (368, 0)
