"""Validation rules of the API, as the CLI and the operator apply them."""

from __future__ import annotations

from typing import Any

import pytest

from qwen_operator import api
from qwen_operator.api import kubeyaml
from testkit.invalid_cases import CASES, Case, resource, summary


def test_empty_spec_is_the_model_card_deployment() -> None:
    res = api.parse_resource({"metadata": {"name": "qwen3-thinking"}, "spec": {}})
    spec = res.spec
    assert spec.replicas == 1
    assert spec.model.id == "Qwen/Qwen3-235B-A22B-Thinking-2507-FP8"
    assert spec.model.source is None  # Hugging Face, no token: the model is public
    assert (spec.parallelism.tensor, spec.parallelism.expert) == (4, False)
    assert (spec.context.max_model_len, spec.context.min_model_len) == (262144, 32768)
    assert spec.context.fallback and spec.context.preflight
    assert spec.reasoning_parser == "deepseek_r1"
    assert (spec.tool_calling.enabled, spec.tool_calling.parser) == (True, "hermes")
    s = spec.sampling
    assert (s.temperature, s.top_p, s.top_k, s.min_p) == (0.6, 0.95, 20, 0.0)
    assert spec.runtime.gpu_memory_utilization == 0.92
    assert spec.runtime.kv_cache_dtype == "auto"
    assert spec.service.port == 8000
    assert not spec.paused


def test_missing_spec_means_empty_spec() -> None:
    res = api.parse_resource({"metadata": {"name": "x"}})
    assert res.spec == api.QwenThinkingDeploymentSpec()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_invalid_resource_names_the_field(case: Case) -> None:
    """Read as kubectl reads it, then validated: refused, naming the field (or the line)."""
    with pytest.raises((api.InvalidResource, kubeyaml.ManifestError)) as info:
        (doc,) = kubeyaml.load_all(case.document())
        api.parse_resource(doc)
    assert str(info.value).startswith(f"{case.field}: "), str(info.value)


def test_the_corpus_covers_every_category() -> None:
    counts = summary()
    print(f"{len(CASES)} bad resources: {counts}")
    assert len(CASES) >= 60 and len(counts) == 7 and min(counts.values()) >= 5, counts
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize(
    "spec",
    [
        {"parallelism": {"tensor": 8, "expert": True}},
        {"parallelism": {"tensor": 1}},
        {"parallelism": {"tensor": 2, "expert": True}},
        {"context": {"maxModelLen": 32768}},
        {"context": {"maxModelLen": 16384, "minModelLen": 8192}},
        {"context": {"maxModelLen": 1024, "minModelLen": 1024}},
        {"model": {"source": {"pvc": {"claimName": "w", "path": "a/b"}}}},
        {"model": {"source": {"huggingFace": {"tokenSecretRef": {"name": "hf"}}}}},
        {
            "runtime": {
                "extraArgs": [
                    "--enable-prefix-caching",
                    "--max-num-seqs=64",
                    "--max-num-batched-tokens",
                    "8192",
                ]
            }
        },
        {"runtime": {"extraArgs": ["--max-model-length-typo"]}},
        {"runtime": {"gpuMemoryUtilization": 1}},
        {"reasoningParser": "none", "toolCalling": {"enabled": False}},
        {"reasoningParser": "qwen3"},
        {"replicas": 0},
        {"disruption": {"maxUnavailable": "50%"}},
        {"resources": {"requests": {"cpu": 16, "memory": "200Gi"}}},
        # a `$` is no expansion: only `$(` is refused
        {
            "model": {"servedName": "qwen$"},
            "runtime": {"extraArgs": ["--x=$HOME"], "env": [{"name": "A", "value": "$B ${C} $"}]},
        },
    ],
)
def test_valid_specs(spec: dict[str, Any]) -> None:
    api.parse_resource({"metadata": {"name": "ok"}, "spec": spec})


def test_extra_args_rule_matches_prefix_only_on_whole_flags() -> None:
    # `--portable` is not `--port`; `--port=1` and `--port 1` are.
    assert not api.vllm_flags._is_managed("--portable")
    assert api.vllm_flags._is_managed("--port=1")
    assert api.vllm_flags._is_managed("--port 1")
    assert api.vllm_flags._is_managed("-tp")


def test_every_managed_flag_is_rejected_in_both_forms() -> None:
    for flag in api.MANAGED_FLAGS:
        for args in ([flag], [f"{flag}=1"]):
            with pytest.raises(api.InvalidResource):
                api.parse_resource(resource({"spec": {"runtime": {"extraArgs": args}}}))


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"resources": {"limits": {"memory": "1e.5"}}}, "spec.resources.limits.memory"),
        ({"model": {"cache": {"size": "1e.5Gi"}}}, "spec.model.cache.size"),
    ],
)
def test_quantities_the_apiserver_cannot_parse_are_refused(patch: dict[str, Any], field: str) -> None:
    # Kubernetes' published quantity pattern admits a fractional exponent; its parser does not.
    with pytest.raises(api.InvalidResource) as info:
        api.parse_resource(resource({"spec": patch}))
    assert info.value.field == field
    api.parse_resource(resource({"spec": {"resources": {"limits": {"memory": "1e3", "cpu": "2E+1"}}}}))


def test_namespace_defaults_to_default() -> None:
    assert api.parse_resource({"metadata": {"name": "x"}}).metadata.namespace == "default"
