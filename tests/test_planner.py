"""The memory plan, on the model's real architecture (shared fixture config.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qwen_operator import api, planner

CONFIG = Path(__file__).resolve().parents[2] / "shared/fixtures/qwen3-235b-a22b-thinking-2507-fp8/config.json"
ARCH = planner.KNOWN[api.DEFAULT_MODEL]
H100_GIB = 81559 / 1024
H200_GIB = 143771 / 1024


def test_known_architecture_matches_the_models_config() -> None:
    config = json.loads(CONFIG.read_text())
    assert planner.Architecture.from_config(config, ARCH.weights_bytes) == ARCH


def test_kv_bytes_per_token_as_in_the_design() -> None:
    assert ARCH.kv_bytes_per_token(2) == 192_512
    assert ARCH.kv_bytes_per_token(1) == 96_256
    assert ARCH.kv_bytes_per_token_per_gpu(4, 2) == 192_512 // 4
    # 4 KV heads: at TP 8 each GPU still holds a whole head (replicated)
    assert ARCH.kv_bytes_per_token_per_gpu(8, 2) == 192_512 // 4
    assert ARCH.kv_bytes_per_token_per_gpu(2, 1) == 96_256 // 2


def test_fp8_kv_cache_doubles_the_capacity() -> None:
    auto = planner.plan(ARCH, H100_GIB, 4, 0.92, "auto", 262144)
    fp8 = planner.plan(ARCH, H100_GIB, 4, 0.92, "fp8", 262144)
    assert fp8.max_tokens in (2 * auto.max_tokens, 2 * auto.max_tokens + 1)


def test_planned_is_a_step_multiple_capped_by_the_request() -> None:
    result = planner.plan(ARCH, H100_GIB, 4, 0.80, "auto", 262144)
    assert 0 < result.planned < 262144
    assert result.planned % planner.STEP == 0
    assert result.planned <= result.max_tokens < result.planned + planner.STEP
    assert planner.plan(ARCH, H200_GIB, 4, 0.92, "auto", 131072).planned == 131072


def test_weights_that_do_not_fit_plan_nothing() -> None:
    result = planner.plan(ARCH, 24.0, 4, 0.92, "auto", 262144)
    assert (result.max_tokens, result.planned, result.kv_cache_gib_per_gpu) == (0, 0, 0.0)


def test_more_memory_or_gpus_never_plan_less() -> None:
    small = planner.plan(ARCH, H100_GIB, 4, 0.85, "auto", 262144).max_tokens
    assert planner.plan(ARCH, H200_GIB, 4, 0.85, "auto", 262144).max_tokens > small
    assert planner.plan(ARCH, H100_GIB, 8, 0.85, "auto", 262144).max_tokens > small
    assert planner.plan(ARCH, H100_GIB, 4, 0.95, "auto", 262144).max_tokens > small


@pytest.mark.parametrize(
    ("label", "gib"), [("81559", 81559 / 1024), ("", None), (None, None), ("80GB", None)]
)
def test_gpu_memory_label(label: str | None, gib: float | None) -> None:
    assert planner.gpu_memory_gib_from_label(label) == gib


def test_plan_for_a_spec() -> None:
    spec = api.QwenThinkingDeploymentSpec()
    assert planner.plan_for(spec, None) is None  # memory unknown
    assert planner.plan_for(spec, H100_GIB) == planner.plan(ARCH, H100_GIB, 4, 0.92, "auto", 262144)
    pinned = api.QwenThinkingDeploymentSpec.model_validate({"gpu": {"memoryGiB": 141}})
    assert planner.plan_for(pinned, H100_GIB) == planner.plan(ARCH, 141, 4, 0.92, "auto", 262144)
    other = api.QwenThinkingDeploymentSpec.model_validate({"model": {"id": "Qwen/Qwen3-8B"}})
    assert planner.plan_for(other, H100_GIB) is None


def _res(spec: dict[str, object]) -> api.QwenThinkingDeployment:
    return api.parse_resource({"metadata": {"name": "q"}, "spec": spec})


def test_node_selector_and_label() -> None:
    assert planner.node_selector(api.QwenThinkingDeploymentSpec()) == "nvidia.com/gpu.memory"
    pinned = _res({"gpu": {"product": "NVIDIA-H200"}}).spec
    assert planner.node_selector(pinned) == "nvidia.com/gpu.memory,nvidia.com/gpu.product=NVIDIA-H200"
    node = {"metadata": {"labels": {"nvidia.com/gpu.memory": "81559"}}}
    assert planner.node_gpu_memory_label(node) == "81559"
    assert planner.node_gpu_memory_label({"metadata": {}}) is None


def test_the_smallest_labelled_gpu_counts() -> None:
    def node(mib: str | None) -> dict[str, object]:
        return {"metadata": {"labels": {} if mib is None else {"nvidia.com/gpu.memory": mib}}}

    assert (
        planner.smallest_gpu_memory_gib([node("143771"), node("81559"), node(None), node("?")])
        == 81559 / 1024
    )
    assert planner.smallest_gpu_memory_gib([node(None)]) is None
    assert planner.smallest_gpu_memory_gib([]) is None


def test_events_only_when_the_plan_changes_and_falls_short() -> None:
    res = _res({})
    assert planner.events(res, None, 262144) == []  # fits
    assert planner.events(res, None, None) == []  # unknown
    (event,) = planner.events(res, None, 210944)
    assert (event.type, event.reason) == ("Normal", "ContextPlanned")
    assert "210944" in event.message and "starting at 210944" in event.message
    assert planner.events(res, 210944, 210944) == []  # no repeat
    (warning,) = planner.events(res, None, 1024)
    assert (warning.type, warning.reason) == ("Warning", "InsufficientGPUMemory")
    assert "starting at 32768" in warning.message
    (off,) = planner.events(_res({"context": {"preflight": False}}), None, 210944)
    assert "starting at 262144 (preflight is off)" in off.message
