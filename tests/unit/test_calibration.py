"""A new context planned from vLLM's own figures of the last start (issue 25, item 3): while what
decides the fit holds, a raise above what the KV cache holds starts at what fits; another image,
GPU, parallelism or KV dtype (or another utilization) sets the figures aside."""

from __future__ import annotations

from typing import Any

from qwen_operator import api
from qwen_operator.memory import calibration, cures
from qwen_operator.reconcile.decide import decide
from qwen_operator.reconcile.observe import Observed
from testkit.fake import NOW
from testkit.wrappers import Pod, kv_record, parsed, resource

TOKENS = 65536
"""The KV cache vLLM reported (the CPU build with a 1 GiB budget); it estimated 65,408 fits."""


def observed_status(spec: dict[str, Any], tokens: int = TOKENS, utilization: float = 0.92) -> dict[str, Any]:
    figures = {"pod": "q-0", "startedAt": "2026-01-01T00:00:00Z", "gpuMemoryUtilization": utilization,
               "maxModelLen": 16384, "kvCacheTokens": tokens, "kvCacheGiB": 1.0,
               "basis": cures.fit_basis(parsed(spec))}  # fmt: skip
    return {"memory": {"observed": figures}}


def figures(spec: dict[str, Any], **kw: Any) -> api.ObservedMemory:
    return api.ObservedMemory.model_validate(observed_status(spec, **kw)["memory"]["observed"])


def context_of(spec: dict[str, Any], status: dict[str, Any] | None) -> int:
    desired = decide(Observed(resource(spec, status=status)), NOW)
    sts = next(a.manifest for a in desired.applies if a.kind == "StatefulSet")
    command = sts["spec"]["template"]["spec"]["containers"][0]["command"]
    return int(command[command.index("--max-model-len") + 1])


def test_the_fit_is_the_largest_step_below_the_kv_cache() -> None:
    spec: dict[str, Any] = {}
    assert calibration.observed_fit(figures(spec), parsed(spec), 0.92) == 64512  # vLLM's estimate: 65408
    assert calibration.observed_fit(figures(spec, tokens=65537), parsed(spec), 0.92) == 65536
    assert calibration.observed_fit(None, parsed(spec), 0.92) is None


def test_a_raise_above_the_observed_kv_cache_starts_at_what_fits() -> None:
    raised = {"context": {"maxModelLen": 262144}}
    assert context_of(raised, observed_status({})) == 64512  # the figures' basis ignores the context
    assert context_of(raised, None) == 262144  # without figures: the request (one failed start)


def test_a_context_within_the_observed_kv_cache_is_as_requested() -> None:
    spec = {"context": {"maxModelLen": 32768}}
    assert context_of(spec, observed_status(spec)) == 32768


def test_another_image_gpu_or_kv_dtype_sets_the_figures_aside() -> None:
    base: dict[str, Any] = {"context": {"maxModelLen": 262144}}
    status = observed_status({})
    for change in ({"runtime": {"image": "vllm/vllm-openai:v0.34.0"}}, {"gpu": {"product": "H200"}},
                   {"gpu": {"memoryGiB": 141}}, {"runtime": {"kvCacheDtype": "fp8"}}):  # fmt: skip
        assert context_of({**base, **change}, status) == 262144, change


def test_figures_of_another_utilization_are_not_used() -> None:
    spec: dict[str, Any] = {}
    assert calibration.observed_fit(figures(spec, utilization=0.85), parsed(spec), 0.92) is None


def test_after_a_cure_the_calibrated_plan_still_says_out_of_memory() -> None:
    """The cure lowered 262144 to 64512; the next start measured vLLM's figures, by which the plan
    also fits 64512: ContextReduced still names the out-of-memory cure, not the plan."""
    raised = {"context": {"maxModelLen": 262144}}
    first = decide(Observed(resource(raised)), NOW)
    assert first.status_patch is not None
    pods = (Pod().context(262144).failed(kv_record(262144, 65408)).facts(),)
    cured = decide(Observed(resource(raised, status=first.status_patch), pods=pods), NOW)
    assert cured.status_patch is not None and cured.reduction is not None and cured.reduction.to == 64512
    status = {**cured.status_patch, **observed_status({})}
    after = decide(Observed(resource(raised, status=status)), NOW)
    reduced = next(c for c in (after.after.conditions or []) if c.type == "ContextReduced")
    assert (reduced.status, reduced.reason) == ("True", "OutOfMemory")
