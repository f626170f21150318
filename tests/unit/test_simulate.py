"""The failures the e2e suite and `make demo` inject are the launcher's own records of vLLM's lines."""

from __future__ import annotations

import pytest

from e2e.devcluster import simulate
from qwen_operator.memory import cures
from qwen_operator.memory.cures import Cure
from qwen_runtime.record import CudaPhase, Reason

RUN = simulate.Run(262144, 0.92, 245408, 70.0, 79.6)


def test_a_simulated_kv_cache_oom_carries_vllms_figures() -> None:
    for estimate in (245408, None):
        said = simulate.report("oom", simulate.Run(262144, estimate=estimate))
        assert said is not None and said["reason"] == Reason.KV_CACHE_INSUFFICIENT
        assert said["maxModelLen"] == 262144 and said.get("estimatedMaxModelLen") == estimate
        assert said["neededGiB"] > said["availableGiB"] > 0


@pytest.mark.parametrize(
    ("kind", "reason", "phase", "cure"),
    [
        ("oom", Reason.KV_CACHE_INSUFFICIENT, None, Cure.SHORTER_CONTEXT),
        ("kv-no-figures", Reason.KV_CACHE_INSUFFICIENT, None, Cure.SHORTER_CONTEXT),
        ("cuda-oom", Reason.CUDA_OOM, CudaPhase.CUDA_GRAPH_CAPTURE, Cure.MORE_HEADROOM),
        ("weights-oom", Reason.CUDA_OOM, CudaPhase.WEIGHT_LOADING, Cure.NONE),
        ("free-memory", Reason.INSUFFICIENT_FREE_MEMORY, None, Cure.FIT_FREE_MEMORY),
        ("bad-args", Reason.INVALID_ARGUMENTS, None, Cure.NOT_MEMORY),
    ],
)
def test_each_simulated_failure_is_classified_as_its_cause(
    kind: str, reason: Reason, phase: CudaPhase | None, cure: Cure
) -> None:
    said = simulate.report(kind, RUN)
    assert said is not None and said["reason"] == reason and said.get("phase") == phase
    rule = cures.rule_for(reason, phase)
    assert rule is not None and rule.cure == cure


def test_the_free_memory_figures_are_vllms() -> None:
    said = simulate.report("free-memory", RUN)
    assert said is not None
    assert (said["freeGiB"], said["totalGiB"], said["gpuMemoryUtilization"]) == (70.0, 79.6, 0.92)


def test_the_kubelets_oom_kill_leaves_no_record() -> None:
    assert simulate.report("oom-killed", RUN) is None
    kinds = {"oom", "kv-no-figures", "cuda-oom", "weights-oom", "free-memory", "oom-killed", "bad-args"}
    assert set(simulate.KINDS) == kinds
