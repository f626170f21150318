"""The memory plan, on the model's real architecture (the config.json packaged with the operator).

Expected numbers are worked out by hand in the comments (W = weights, R = reserve):
    W = 236,445,455,360 B (see test_weight_bytes_derived_from_the_architecture)
    W/4 = 59,111,363,840 B per GPU; W/2 = 118,222,727,680 B
    R = 6 GiB = 6,442,450,944 B
    KV bytes per token per GPU at TP 4: bf16 192,512 / 4 = 48,128; fp8 96,256 / 4 = 24,064
    longest context = (kv_budget // (16 x per-token) - 1) x 16   (whole blocks, one null block)
"""

from __future__ import annotations

import hashlib
import json
import math
from importlib import resources

import pytest

from qwen_operator import api
from qwen_operator.children import placement
from qwen_operator.memory import planner
from qwen_operator.reconcile import events
from testkit.wrappers import gpu_node

CONFIG_SHA256 = "053806725f793543a33a942ed4d02730ea384666ba538321187d9e5d97343e57"
"""sha256 of the model's config.json (Hugging Face, Qwen/Qwen3-235B-A22B-Thinking-2507-FP8) as
canonical JSON (sorted keys): the packaged copy must stay the model's."""
ARCH = planner.KNOWN[api.DEFAULT_MODEL]
H100_GIB = 81559 / 1024  # nvidia.com/gpu.memory label, MiB
H200_GIB = 143771 / 1024
WEIGHTS = 236_445_455_360


def _fixture() -> dict[str, object]:
    packaged = resources.files("qwen_operator.memory").joinpath(
        "models", "Qwen--Qwen3-235B-A22B-Thinking-2507-FP8.json"
    )
    config: dict[str, object] = json.loads(packaged.read_text("utf-8"))
    return config


def test_the_packaged_config_is_the_models_config() -> None:
    canonical = json.dumps(_fixture(), sort_keys=True).encode()
    assert hashlib.sha256(canonical).hexdigest() == CONFIG_SHA256
    assert planner.load_config(api.DEFAULT_MODEL) == _fixture()
    assert (_fixture()["num_hidden_layers"], _fixture()["num_key_value_heads"], _fixture()["head_dim"]) == (
        94,
        4,
        128,
    )


def test_known_architecture_matches_the_models_config() -> None:
    assert planner.Architecture.from_config(_fixture()) == ARCH
    assert (ARCH.layers, ARCH.kv_heads, ARCH.head_dim) == (94, 4, 128)


def test_weight_bytes_derived_from_the_architecture() -> None:
    # per layer (hidden 4096, 64 q heads and 4 KV heads of 128, 128 experts of 1536, FP8 128x128 blocks):
    #   q 8192x4096 + k,v 512x4096 + o 4096x8192 = 71,303,168 B fp8 + (2048+128+128+2048) x 4 B scales
    #     = 71,320,576 B
    #   experts 128 x 3 x 1536x4096 = 2,415,919,104 B + 128 x 3 x 384 x 4 B scales = 2,416,508,928 B
    #   router 128x4096 bf16 = 1,048,576 B; norms (128+128+4096+4096) x 2 = 16,896 B
    #   = 2,488,894,976 B; x 94 = 233,956,127,744 B
    # embeddings + untied lm_head 2 x 151936x4096 x 2 = 2,489,319,424 B; final norm 8,192 B
    assert planner.weight_bytes(_fixture()) == WEIGHTS == ARCH.weights_bytes
    assert ARCH.weights_bytes == pytest.approx(236.4e9, rel=0.005)


def test_weights_without_fp8_are_bf16_and_tied_embeddings_count_once() -> None:
    config = dict(_fixture())
    del config["quantization_config"]
    bf16 = planner.weight_bytes(config)
    assert bf16 == 2 * 235_093_634_560  # 235.09 B parameters x 2 B
    tied = planner.weight_bytes({**config, "tie_word_embeddings": True})
    assert bf16 - tied == 151936 * 4096 * 2


def test_weights_of_another_architecture_are_refused() -> None:
    with pytest.raises(ValueError, match="Qwen3MoeForCausalLM"):
        planner.weight_bytes({**_fixture(), "architectures": ["LlamaForCausalLM"]})


def test_kv_bytes_per_token_as_in_the_design() -> None:
    assert ARCH.kv_bytes_per_token(2) == 192_512
    assert ARCH.kv_bytes_per_token(1) == 96_256
    assert ARCH.kv_bytes_per_token_per_gpu(4, 2) == 48_128
    # 4 KV heads: at TP 8 each GPU still holds a whole head (replicated)
    assert ARCH.kv_bytes_per_token_per_gpu(8, 2) == 48_128
    assert ARCH.kv_bytes_per_token_per_gpu(2, 1) == 48_128


@pytest.mark.parametrize(
    ("kv_bytes", "tokens"),
    [
        (16 * 48_128 * 10, 144),  # 10 blocks, one held back: 9 x 16
        (16 * 48_128 * 10 - 1, 128),  # a byte short of the 10th block
        (16 * 48_128, 0),  # the null block only
        (0, 0),
        (-5, 0),
    ],
)
def test_max_context_counts_whole_blocks_less_the_null_block(kv_bytes: int, tokens: int) -> None:
    assert planner.max_context(kv_bytes, 48_128) == tokens


# memory x 0.92, rounded up, as vLLM's request_memory; then - W/4 - R:
#   H200 label: ceil(143771 MiB x 0.92) = 138,694,434,489 - 59,111,363,840 - R = 73,140,619,705 B
#               // (16 x 48,128) = 94,981 blocks -> (94,981 - 1) x 16 = 1,519,680 tokens
#   H200 141 GiB: 139,285,789,410 -> 73,731,974,626 B -> 95,749 blocks -> 1,531,968 tokens
#   H100 label: ceil(81559 MiB x 0.92) = 78,679,145,186 -> 13,125,330,402 B
#               fp8:  // (16 x 24,064) = 34,089 blocks -> 545,408 tokens
#               bf16: // (16 x 48,128) = 17,044 blocks -> 272,688 tokens (the H100 bf16 answer)
#   H100 80 GiB: 79,027,398,247 -> 13,473,583,463 B; fp8 34,994 blocks -> 559,888; bf16 279,936
#   TP 2 on 80 GiB: 79,027,398,247 - 118,222,727,680 - R < 0 -> weights do not fit
ACCEPTANCE = [
    ("H200 label, bf16", H200_GIB, 4, "auto", 1_519_680, 262144),
    ("H200 141 GiB, bf16", 141, 4, "auto", 1_531_968, 262144),
    ("H100 label, fp8", H100_GIB, 4, "fp8", 545_408, 262144),
    ("H100 80 GiB, fp8", 80, 4, "fp8", 559_888, 262144),
    ("H100 label, bf16", H100_GIB, 4, "auto", 272_688, 262144),
    ("H100 80 GiB, bf16", 80, 4, "auto", 279_936, 262144),
    ("TP 2 on 80 GiB", 80, 2, "auto", 0, 0),
    ("TP 2 on an H100, fp8", H100_GIB, 2, "fp8", 0, 0),
]


@pytest.mark.parametrize(
    ("case", "memory", "tensor", "dtype", "max_tokens", "planned"), ACCEPTANCE, ids=[a[0] for a in ACCEPTANCE]
)
def test_acceptance_table(
    case: str, memory: float, tensor: int, dtype: str, max_tokens: int, planned: int
) -> None:
    result = planner.plan(ARCH, memory, tensor, 0.92, dtype, 262144)
    assert (result.max_tokens, result.planned) == (max_tokens, planned), case
    assert result.weights_fit is (tensor == 4)


def test_a_plan_below_the_request_rounds_down_to_a_step() -> None:
    # H100 label at 0.80: ceil(85,520,809,984 x 0.80) = 68,416,647,988 - W/4 - R = 2,862,833,204 B
    # // (16 x 48,128) = 3,717 blocks -> 59,456 tokens -> 58 x 1024 = 59,392
    result = planner.plan(ARCH, H100_GIB, 4, 0.80, "auto", 262144)
    assert (result.max_tokens, result.planned) == (59_456, 59_392)
    assert planner.plan(ARCH, H200_GIB, 4, 0.92, "auto", 131072).planned == 131072


def test_weights_and_reserve_that_do_not_fit_plan_nothing() -> None:
    # ceil(62 GiB x 0.92) = 61,246,233,641 - W/4 - R = -4,307,581,143 B: no KV cache at all
    result = planner.plan(ARCH, 62, 4, 0.92, "auto", 262144)
    assert (result.max_tokens, result.planned, result.kv_cache_gib_per_gpu) == (0, 0, 0.0)
    assert not result.weights_fit
    # ceil(68.5 GiB x 0.92) = 67,667,209,749 - W/4 - R = 2,113,394,965 B // 770,048 = 2,744 blocks
    # -> 2,743 x 16 = 43,888 tokens -> 42 x 1024 = 43,008
    tight = planner.plan(ARCH, 68.5, 4, 0.92, "auto", 262144)
    assert tight.weights_fit and (tight.max_tokens, tight.planned) == (43_888, 43_008)


def test_explain_when_the_weights_do_not_fit() -> None:
    text = planner.plan(ARCH, 80, 2, 0.92, "auto", 262144).explain()
    assert text == (
        "the weights need 110.1 GiB per GPU (236.4 GB over 2 GPUs) but only 67.6 GiB is usable "
        "(80.0 GiB x 0.92 - 6.0 GiB reserve): add GPUs per replica (tensor or pipeline) or use larger GPUs"
    )
    # 62.5 GiB x 0.92 - 6 = 51.5 GiB < W/4 = 55.05 GiB, whatever the KV cache dtype
    text = planner.plan(ARCH, 62.5, 4, 0.92, "fp8", 262144).explain()
    assert text.startswith("the weights need 55.1 GiB per GPU (236.4 GB over 4 GPUs) but only 51.5 GiB")


def test_explain_when_a_context_fits() -> None:
    full = planner.plan(ARCH, H100_GIB, 4, 0.92, "auto", 262144).explain()
    assert full == (
        "the KV cache gets 12.2 GiB per GPU (79.6 GiB x 0.92 - 6.0 GiB reserve - 55.1 GiB weights, "
        "236.4 GB over 4 GPUs), 48,128 bytes per token per GPU (bf16 KV cache): room for 272,688 tokens, "
        "so the 262144 requested fit"
    )
    part = planner.plan(ARCH, H100_GIB, 4, 0.80, "auto", 262144).explain()
    assert part.endswith("room for 59,456 tokens, so 59392 of the 262144 requested")


def test_explain_with_no_room_for_one_step() -> None:
    # ceil(66.38 GiB x 0.92) = 65,572,983,695 - W/4 - R = 19,168,911 B // 770,048 = 24 blocks -> 368
    result = planner.plan(ARCH, 66.38, 4, 0.92, "auto", 262144)
    assert (result.max_tokens, result.planned, result.weights_fit) == (368, 0, True)
    assert result.explain().endswith(
        "room for 368 tokens, less than 1024: add GPUs per replica, use larger GPUs, "
        "kvCacheDtype fp8 or a higher gpuMemoryUtilization"
    )


def test_fp8_kv_cache_doubles_the_capacity() -> None:
    auto = planner.plan(ARCH, H100_GIB, 4, 0.92, "auto", 262144)
    fp8 = planner.plan(ARCH, H100_GIB, 4, 0.92, "fp8", 262144)
    # fp8: (34,089 - 1) x 16 = 545,408; bf16: (17,044 - 1) x 16 = 272,688; 2 x 272,688 + 32 = 545,408
    assert fp8.max_tokens == 2 * auto.max_tokens + 32


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


def test_usable_memory_rounds_up_like_vllm() -> None:
    # vLLM: requested_memory = math.ceil(total_memory * gpu_memory_utilization)
    result = planner.plan(ARCH, H100_GIB, 4, 0.92, "auto", 262144)
    assert result.usable_bytes == math.ceil(81559 * 2**20 * 0.92) == 78_679_145_186


def _res(spec: dict[str, object]) -> api.QwenThinkingDeployment:
    return api.parse_resource({"metadata": {"name": "q"}, "spec": spec})


def test_node_selector_and_the_nodes_it_admits() -> None:
    assert placement.node_selector(api.QwenThinkingDeploymentSpec()) == {}
    pinned = _res({"gpu": {"product": "NVIDIA-H200"}}).spec
    assert placement.node_selector(pinned) == {"nvidia.com/gpu.product": "NVIDIA-H200"}
    pool = _res({"scheduling": {"nodeSelector": {"pool": "h200", "zone": "a"}}, "gpu": {"product": "P"}}).spec
    assert placement.node_selector(pool) == {"pool": "h200", "zone": "a", "nvidia.com/gpu.product": "P"}
    assert placement.admits(gpu_node(product="P", pool="h200", zone="a"), placement.node_selector(pool))
    assert not placement.admits(gpu_node(product="P", pool="h200"), placement.node_selector(pool))


def test_the_smallest_labelled_gpu_among_admitted_nodes_counts() -> None:
    spec = api.QwenThinkingDeploymentSpec()
    nodes = [gpu_node("a", 143771), gpu_node("b", 81559), gpu_node("c", 24576, pool="small")]
    assert placement.smallest_gpu_memory_gib(nodes, spec) == 24576 / 1024
    big = _res({"scheduling": {"nodeSelector": {"pool": "big"}}}).spec
    assert placement.smallest_gpu_memory_gib(nodes, big) is None
    bad = gpu_node("d", 1)
    bad.labels["nvidia.com/gpu.memory"] = "?"
    assert placement.smallest_gpu_memory_gib([bad, nodes[0]], spec) == 143771 / 1024
    assert placement.smallest_gpu_memory_gib([], spec) is None


def test_events_only_when_the_plan_changes_and_falls_short() -> None:
    res = _res({})
    assert events.planned(res.spec.context, None, 262144) == []  # fits
    assert events.planned(res.spec.context, None, None) == []  # unknown
    (event,) = events.planned(res.spec.context, None, 210944)
    assert (event.type, event.reason) == ("Normal", "ContextPlanned")
    assert "210944" in event.message and "starting at 210944" in event.message
    assert events.planned(res.spec.context, 210944, 210944) == []  # no repeat
    (warning,) = events.planned(res.spec.context, None, 1024)
    assert (warning.type, warning.reason) == ("Warning", "InsufficientGPUMemory")
    assert "starting at 32768" in warning.message
    (off,) = events.planned(_res({"context": {"preflight": False}}).spec.context, None, 210944)
    assert "starting at 262144 (preflight is off)" in off.message


# -- pipeline parallelism: the layers split across stages ----------------------------------
#   stages of 94 layers (vLLM get_pp_indices: layers // pp, the remainder one each to the stages
#   before the last): PP 2 -> 47, 47; PP 3 -> 31, 32, 31; PP 4 -> 23, 24, 24, 23


@pytest.mark.parametrize(("pipeline", "largest"), [(1, 94), (2, 47), (3, 32), (4, 24), (8, 12)])
def test_the_largest_stage_holds_ceil_layers_over_pipeline(pipeline: int, largest: int) -> None:
    assert planner.stage_layers(94, pipeline) == largest


def test_tp4_pp2_holds_half_the_weights_and_half_the_kv_per_gpu() -> None:
    # stage: 47 of 94 layers -> W/2 = 118,222,727,680 B; per GPU /4 = 29,555,681,920 B
    # usable = ceil(80 GiB x 0.92) = 79,027,398,247 B
    # KV budget = 79,027,398,247 - 29,555,681,920 - 6,442,450,944 = 43,029,265,383 B
    # KV per token per GPU = 2 x 47 layers x 4 heads / 4 x 128 x 2 B = 24,064
    # blocks = 43,029,265,383 // (16 x 24,064) = 111,757 -> (111,757 - 1) x 16 = 1,788,096 tokens
    result = planner.plan(ARCH, 80, 4, 0.92, "auto", 262144, pipeline=2)
    assert result.stage_layers == 47
    assert result.stage_weights_bytes == WEIGHTS // 2
    assert result.weights_bytes_per_gpu == 29_555_681_920
    assert result.kv_bytes_per_token_per_gpu == 24_064
    assert result.kv_cache_bytes_per_gpu == 43_029_265_383
    assert result.max_tokens == 1_788_096
    assert result.planned == 262144
    assert result.to_dict()["pipeline"] == 2 and result.to_dict()["stageLayers"] == 47


def test_a_pipeline_makes_gpus_too_small_for_one_stage_enough() -> None:
    # TP 2 on 80 GiB: W/2 = 110.1 GiB per GPU, no fit; TP 2 x PP 2: W/4 = 55.1 GiB per GPU, fits
    assert not planner.plan(ARCH, 80, 2, 0.92, "auto", 262144).weights_fit
    two_nodes = planner.plan(ARCH, 80, 2, 0.92, "auto", 262144, pipeline=2)
    assert two_nodes.weights_fit and two_nodes.planned == 262144
    assert "2 pipeline stages of at most 47 layers, each over 2 GPUs" in two_nodes.explain()
    # PP 4: the largest stage (24 layers) decides: ceil(W x 24 / 94) = 60,369,052,433 B
    assert planner.plan(ARCH, 80, 2, 0.92, "auto", 262144, pipeline=4).stage_weights_bytes == 60_369_052_433


def test_plan_for_reads_the_pipeline_of_the_spec() -> None:
    spec = api.QwenThinkingDeploymentSpec.model_validate({"parallelism": {"tensor": 2, "pipeline": 2}})
    found = planner.plan_for(spec, 80)
    assert found is not None and (found.tensor, found.pipeline, found.stage_layers) == (2, 2, 47)
