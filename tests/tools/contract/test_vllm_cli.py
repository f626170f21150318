"""The operator's rendered `vllm serve` argv is what vLLM 0.33's own parser accepts and reads.

Every sample and a matrix of spec variations is rendered with the operator's
renderer; the part after the launcher's `--` goes through vllm_check.py in the
cached vLLM virtualenv (one process for all cases), which parses it the way
`vllm serve` does and reports what vLLM read. A missing virtualenv fails the
tests: run `make vllm-env`.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from qwen_operator import api
from qwen_operator.children import render
from tests.tools.contract import vllm_env

pytestmark = pytest.mark.contract

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "samples"
CHECKER = Path(__file__).with_name("vllm_check.py")
MODEL = api.DEFAULT_MODEL
# The model card's own command: `--enable-reasoning` was removed from vLLM.
MODEL_CARD_ARGV = [
    "vllm", "serve", MODEL, "--tensor-parallel-size", "4", "--max-model-len", "262144",
    "--enable-reasoning", "--reasoning-parser", "deepseek_r1",
]  # fmt: skip
_ENV_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
# What vLLM must read from every rendered argv, by argparse destination.
DESTS = [
    "model_tag", "served_model_name", "tensor_parallel_size", "enable_expert_parallel",
    "max_model_len", "gpu_memory_utilization", "kv_cache_dtype", "reasoning_parser",
    "enable_auto_tool_choice", "tool_call_parser", "api_key", "revision", "download_dir",
    "host", "port", "pipeline_parallel_size", "nnodes", "node_rank", "headless", "shutdown_timeout",
]  # fmt: skip
NUMERIC_VARS = {"LWS_WORKER_INDEX": "1"}
"""Variables an integer option reads (a worker's --node-rank): a number stands for them."""


def dummy(env_name: str) -> str:
    """The value a `$(NAME)` reference stands for in these tests (Kubernetes expands it)."""
    return NUMERIC_VARS.get(env_name, f"dummy-{env_name}")


def resource(spec: dict[str, Any], name: str = "qwen3-thinking") -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": name, "namespace": "llm", "uid": "u-1", "generation": 1},
        "spec": copy.deepcopy(spec),
    }


@dataclass
class Case:
    """One rendered argv and what vLLM must read from it."""

    res: api.QwenThinkingDeployment
    max_model_len: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    worker: bool = False
    """The headless worker of a pipeline group (else the leader, or the one pod of a replica)."""

    @property
    def argv(self) -> list[str]:
        return vllm_argv(self.res, self.max_model_len, self.worker)


def vllm_argv(
    res: api.QwenThinkingDeployment, max_model_len: int | None = None, worker: bool = False
) -> list[str]:
    """The rendered command after the launcher's `--`, env references given dummy values."""
    command = render.server_argv(res, max_model_len=max_model_len, worker=worker)
    assert command[:3] == ["python3", "-m", "qwen_runtime"], command
    assert "--" in command, f"no launcher separator in {command}"
    rest = command[command.index("--") + 1 :]
    return [_ENV_REF.sub(lambda m: dummy(m.group(1)), arg) for arg in rest]


def expected_reading(case: Case) -> dict[str, Any]:
    """What the spec says vLLM must run with, by argparse destination."""
    spec = case.res.spec
    hub = spec.model.source is None or spec.model.source.pvc is None
    return {
        "model_tag": render.model_argument(spec),
        "served_model_name": [spec.model.served_name or case.res.metadata.name],
        "tensor_parallel_size": spec.parallelism.tensor,
        "enable_expert_parallel": spec.parallelism.expert,
        "max_model_len": case.max_model_len or spec.context.max_model_len,
        "gpu_memory_utilization": spec.runtime.gpu_memory_utilization,
        "kv_cache_dtype": spec.runtime.kv_cache_dtype,
        # vLLM maps `--reasoning-parser none` and an absent flag to "".
        "reasoning_parser": "" if spec.reasoning_parser == "none" else spec.reasoning_parser,
        "enable_auto_tool_choice": spec.tool_calling.enabled,
        "tool_call_parser": spec.tool_calling.parser if spec.tool_calling.enabled else None,
        # The key never rides on argv (ps, /proc/PID/cmdline): vLLM reads VLLM_API_KEY from the
        # environment (test_the_api_key_reaches_vllm_by_its_environment).
        "api_key": None,
        "revision": (spec.model.revision or None) if hub else None,
        "port": render.CONTAINER_PORT,
        "pipeline_parallel_size": spec.parallelism.pipeline,
        "nnodes": spec.parallelism.pipeline,
        "node_rank": int(NUMERIC_VARS["LWS_WORKER_INDEX"]) if case.worker else 0,
        "headless": case.worker,
        # vLLM's drain on SIGTERM (0, its default, aborts the requests in flight)
        "shutdown_timeout": spec.disruption.drain_seconds,
        **case.extra,
    }


def expected_sampling(spec: api.QwenThinkingDeploymentSpec) -> dict[str, Any]:
    """The default sampling parameters vLLM must derive (its names: max_tokens, top_p...)."""
    s = spec.sampling
    out: dict[str, Any] = {
        "temperature": s.temperature,
        "top_p": s.top_p,
        "top_k": s.top_k,
        "min_p": s.min_p,
    }
    if s.presence_penalty is not None:
        out["presence_penalty"] = s.presence_penalty
    if s.max_tokens is not None:
        out["max_tokens"] = s.max_tokens
    return out


KEY_REF = {"name": "qwen-api-key", "key": "key"}
EXTRA = ["--enable-prefix-caching", "--max-num-seqs=64"]
# Spec variations: id -> (spec, max_model_len given to the renderer, extra vLLM readings).
VARIATIONS: dict[str, tuple[dict[str, Any], int | None, dict[str, Any]]] = {
    "empty-spec": ({}, None, {}),
    "tp1": ({"parallelism": {"tensor": 1}}, None, {}),
    "tp2": ({"parallelism": {"tensor": 2}}, None, {}),
    "tp4": ({"parallelism": {"tensor": 4}}, None, {}),
    "tp2-expert": ({"parallelism": {"tensor": 2, "expert": True}}, None, {}),
    "tp4-expert": ({"parallelism": {"tensor": 4, "expert": True}}, None, {}),
    "tp8-expert": ({"parallelism": {"tensor": 8, "expert": True}}, None, {}),
    "kv-fp8": ({"runtime": {"kvCacheDtype": "fp8"}}, None, {}),
    "tools-off": ({"toolCalling": {"enabled": False}}, None, {}),
    "tools-qwen3_xml": ({"toolCalling": {"parser": "qwen3_xml"}}, None, {}),
    "tools-qwen3_coder": ({"toolCalling": {"parser": "qwen3_coder"}}, None, {}),
    "reasoning-none": ({"reasoningParser": "none"}, None, {}),
    "reasoning-qwen3": ({"reasoningParser": "qwen3"}, None, {}),
    "api-key": ({"auth": {"apiKeySecretRef": KEY_REF}}, None, {}),
    "extra-args": (
        {"runtime": {"extraArgs": EXTRA}},
        None,
        {"enable_prefix_caching": True, "max_num_seqs": 64},
    ),
    "fallback-context": ({}, 131072, {}),
    "context-floor": ({"context": {"maxModelLen": 4096, "minModelLen": 1024}}, 1024, {}),
    "served-name": ({"model": {"servedName": "qwen-thinking"}}, None, {}),
    "revision": ({"model": {"revision": "main"}}, None, {}),
    "gpu-util": ({"runtime": {"gpuMemoryUtilization": 0.85}}, None, {}),
    "no-drain": ({"disruption": {"drainSeconds": 0}}, None, {}),
    "longest-drain": ({"disruption": {"drainSeconds": 10800}}, None, {}),
    "sampling": (
        {"sampling": {"temperature": 0.7, "topP": 0.8, "topK": 40, "minP": 0.05}},
        None,
        {},
    ),
    "sampling-penalty-no-max": (
        {"sampling": {"presencePenalty": 1.5, "maxTokens": None}},
        None,
        {},
    ),
    "pvc-source": ({"model": {"source": {"pvc": {"claimName": "w", "path": "q/fp8"}}}}, None, {}),
    "tp4-pp2-leader": (
        {"parallelism": {"tensor": 4, "pipeline": 2}},
        None,
        {"master_addr": dummy("LWS_LEADER_ADDRESS")},
    ),
    "tp8-expert-pp4-leader": ({"parallelism": {"tensor": 8, "expert": True, "pipeline": 4}}, None, {}),
    "everything": (
        {
            "replicas": 2,
            "model": {"servedName": "qwen", "revision": "main"},
            "parallelism": {"tensor": 8, "expert": True},
            "context": {"maxModelLen": 131072, "minModelLen": 32768},
            "reasoningParser": "qwen3",
            "toolCalling": {"enabled": True, "parser": "hermes"},
            "sampling": {"presencePenalty": 0.5, "maxTokens": 81920},
            "runtime": {"kvCacheDtype": "fp8", "gpuMemoryUtilization": 0.9, "extraArgs": EXTRA},
            "auth": {"apiKeySecretRef": KEY_REF},
        },
        65536,
        {"enable_prefix_caching": True, "max_num_seqs": 64},
    ),
}


def sample_cases() -> dict[str, Case]:
    """Every QwenThinkingDeployment in samples/*.yaml (multi-document files too)."""
    cases: dict[str, Case] = {}
    for path in sorted(SAMPLES.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
        ours = [d for d in docs if d.get("kind") == api.KIND]
        for i, doc in enumerate(ours):
            doc.setdefault("metadata", {}).setdefault("namespace", "default")
            suffix = f"-{i}" if len(ours) > 1 else ""
            cases[f"sample-{path.stem}{suffix}"] = Case(api.parse_resource(doc))
    return cases


def variation_cases() -> dict[str, Case]:
    return {
        case_id: Case(api.parse_resource(resource(spec)), max_len, extra)
        for case_id, (spec, max_len, extra) in VARIATIONS.items()
    }


def worker_cases() -> dict[str, Case]:
    """The headless worker of every pipeline variation and sample: the same engine options,
    its rank from LWS, no API server."""
    cases = {**sample_cases(), **variation_cases()}
    return {
        f"{case_id}-worker": Case(c.res, c.max_model_len, {**c.extra}, worker=True)
        for case_id, c in cases.items()
        if c.res.spec.parallelism.pipeline > 1
    }


POSITIVE: dict[str, Case] = {**sample_cases(), **variation_cases(), **worker_cases()}
# Argv vLLM must refuse: the model card's stale flag, and proof that the checker can fail.
NEGATIVE: dict[str, tuple[list[str], str]] = {
    "model-card-enable-reasoning": (MODEL_CARD_ARGV, "--enable-reasoning"),
    "auto-tool-choice-without-parser": (
        ["vllm", "serve", MODEL, "--enable-auto-tool-choice"],
        "--tool-call-parser",
    ),
    "unknown-reasoning-parser": (
        ["vllm", "serve", MODEL, "--reasoning-parser", "no_such_parser"],
        "no_such_parser",
    ),
    "unknown-tool-parser": (
        ["vllm", "serve", MODEL, "--enable-auto-tool-choice", "--tool-call-parser", "nope"],
        "nope",
    ),
    "tensor-not-a-number": (["vllm", "serve", MODEL, "--tensor-parallel-size", "four"], "four"),
    "bad-kv-cache-dtype": (["vllm", "serve", MODEL, "--kv-cache-dtype", "fp3"], "fp3"),
}

# vLLM 0.33 still accepts this option but warns, while parsing, that it is deprecated.
DEPRECATED_ARGV = ["vllm", "serve", MODEL, "--log-config-file", "/dev/null"]


def run_checker(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """One vllm_check.py process over all cases; fails (never skips) without the venv."""
    out = vllm_env.run_in_venv(CHECKER, {"cases": cases, "dests": DESTS})
    out["byId"] = {r["id"]: r for r in out["results"]}
    return out


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    cases = [{"id": k, "argv": c.argv} for k, c in POSITIVE.items()]
    cases += [{"id": k, "argv": argv} for k, (argv, _) in NEGATIVE.items()]
    cases.append({"id": "probe-deprecated-option", "argv": DEPRECATED_ARGV})
    return run_checker(cases)


def test_pinned_vllm_version(report: dict[str, Any]) -> None:
    assert report["vllmVersion"] == vllm_env.VLLM_VERSION


def test_samples_exist() -> None:
    assert any(k.startswith("sample-") for k in POSITIVE), f"no {api.KIND} in {SAMPLES}"


@pytest.mark.parametrize("case_id", sorted(POSITIVE))
def test_rendered_argv_accepted(report: dict[str, Any], case_id: str) -> None:
    result = report["byId"][case_id]
    assert result["ok"], f"vLLM rejected {POSITIVE[case_id].argv}:\n{result['error']}"
    warned = [w for w in result["warnings"] if "deprecat" in w.lower()]
    assert not warned, f"deprecated vLLM options in {POSITIVE[case_id].argv}: {warned}"
    retired = {f for o in report["options"].values() if o["deprecated"] for f in o["flags"]}
    used = {a.split("=", 1)[0] for a in POSITIVE[case_id].argv if a.startswith("-")}
    assert not used & retired, f"vLLM calls these deprecated: {sorted(used & retired)}"


@pytest.mark.parametrize("case_id", sorted(POSITIVE))
def test_vllm_reads_the_spec(report: dict[str, Any], case_id: str) -> None:
    case, result = POSITIVE[case_id], report["byId"][case_id]
    assert result["ok"], result["error"]
    read = {**result["values"], **result["nonDefault"]}
    wrong = {
        k: {"spec": v, "vllm": read.get(k)} for k, v in expected_reading(case).items() if read.get(k) != v
    }
    assert not wrong, f"vLLM reads {case.argv} differently from the spec: {wrong}"


@pytest.mark.parametrize("case_id", sorted(POSITIVE))
def test_sampling_reaches_vllm(report: dict[str, Any], case_id: str) -> None:
    """Keys vLLM does not know in --override-generation-config are dropped without a word."""
    case, result = POSITIVE[case_id], report["byId"][case_id]
    assert result["ok"], result["error"]
    assert result["sampling"] == expected_sampling(case.res.spec)


@pytest.mark.parametrize("case_id", sorted(NEGATIVE))
def test_bad_argv_rejected(report: dict[str, Any], case_id: str) -> None:
    _argv, needle = NEGATIVE[case_id]
    result = report["byId"][case_id]
    assert not result["ok"], f"vLLM accepted {case_id}"
    assert needle in result["error"], result["error"]


def test_deprecated_options_are_noticed(report: dict[str, Any]) -> None:
    """The no-deprecation checks above can fail: vLLM's warning is caught, the flag is known."""
    result = report["byId"]["probe-deprecated-option"]
    assert result["ok"], result["error"]
    assert any("deprecated" in w for w in result["warnings"]), result["warnings"]
    retired = {f for o in report["options"].values() if o["deprecated"] for f in o["flags"]}
    assert {"--log-config-file", "--disable-cascade-attn"} <= retired, sorted(retired)


def test_enable_reasoning_exits_2(report: dict[str, Any]) -> None:
    result = report["byId"]["model-card-enable-reasoning"]
    assert result["exitCode"] == 2, result
    assert "unrecognized arguments: --enable-reasoning" in result["error"]


def test_crd_parsers_are_registered_in_vllm(report: dict[str, Any]) -> None:
    reasoning = set(api.REASONING_PARSERS) - {"none"}
    assert reasoning <= set(report["reasoningParsers"]), reasoning - set(report["reasoningParsers"])
    tools = set(api.TOOL_PARSERS)
    assert tools <= set(report["toolParsers"]), tools - set(report["toolParsers"])


def test_the_api_key_reaches_vllm_by_its_environment() -> None:
    spec = api.parse_resource(resource({"auth": {"apiKeySecretRef": KEY_REF}})).spec
    env = {e["name"]: e for e in render.server_env(spec)}
    secret = env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert (secret["name"], secret["key"]) == (KEY_REF["name"], KEY_REF["key"])
    assert not any(
        "QWEN_API_KEY" in arg or "--api-key" in arg
        for arg in vllm_argv(api.parse_resource(resource({"auth": {"apiKeySecretRef": KEY_REF}})))
    )


def test_server_env_names_known_to_vllm(report: dict[str, Any]) -> None:
    """vLLM ignores a misspelt VLLM_* variable; every one the operator sets must exist."""
    spec = api.parse_resource(resource({"auth": {"apiKeySecretRef": KEY_REF}})).spec
    names = {e["name"] for e in render.server_env(spec) if e["name"].startswith("VLLM_")}
    assert names, "expected VLLM_ENGINE_READY_TIMEOUT_S at least"
    assert names <= set(report["envVars"]), names - set(report["envVars"])


# A value unlike the default spec's, per destination the operator manages.
HOSTILE = {
    "model": "evil/model",
    "served_model_name": "evil",
    "tensor_parallel_size": "8",
    "max_model_len": "1024",
    "gpu_memory_utilization": "0.5",
    "kv_cache_dtype": "fp8",
    "reasoning_parser": "qwen3",
    "override_generation_config": '{"temperature":2.0}',
    "tool_call_parser": "qwen3_xml",
    "api_key": "evil",
    "download_dir": "/tmp/evil",
    "revision": "evil",
    "host": "127.0.0.1",
    "port": "9999",
    "pipeline_parallel_size": "4",
    "nnodes": "4",
    "node_rank": "3",
    "master_addr": "evil.example",
    "headless": "",
    "hf_token": "hf_evil",
    "shutdown_timeout": "99999",
}


def unique_prefixes(flag: str, all_flags: set[str]) -> list[str]:
    """Abbreviations argparse (allow_abbrev) resolves to `flag`: shortest and longest."""
    if not flag.startswith("--"):
        return []
    found = [
        flag[:n]
        for n in range(3, len(flag))
        if flag[:n] not in all_flags and [f for f in all_flags if f.startswith(flag[:n])] == [flag]
    ]
    return sorted({found[0], found[-1]}) if found else []


def managed_spellings(report: dict[str, Any]) -> dict[str, str]:
    """Every way to reach a managed destination in vLLM's parser -> its destination."""
    options: dict[str, dict[str, Any]] = report["options"]
    all_flags = {f for o in options.values() for f in o["flags"]}
    spellings: dict[str, str] = {}
    for dest, opt in options.items():
        if not set(opt["flags"]) & set(api.MANAGED_FLAGS):
            continue
        for flag in opt["flags"]:
            abbrevs = unique_prefixes(flag, all_flags) if report["allowAbbrev"] else []
            for spelling in [flag, *abbrevs]:
                spellings[spelling] = dest
                if spelling.startswith("--"):
                    spellings["--" + spelling[2:].replace("-", "_")] = dest
    return spellings


def test_extra_args_cannot_override_managed_flags(report: dict[str, Any]) -> None:
    """An alias or abbreviation of a managed flag in extraArgs is refused at apply time, or
    at least does not change what vLLM runs with (vLLM takes the last value given)."""
    options, accepted = report["options"], {}
    spellings = managed_spellings(report)
    assert set(HOSTILE) <= set(spellings.values()), set(HOSTILE) - set(spellings.values())
    for spelling, dest in sorted(spellings.items()):
        arg = spelling if options[dest]["switch"] else f"{spelling}={HOSTILE[dest]}"
        try:
            res = api.parse_resource(resource({"runtime": {"extraArgs": [arg]}}))
        except api.InvalidResource:
            continue
        accepted[arg] = Case(res)
    if not accepted:
        return
    second = run_checker([{"id": a, "argv": c.argv} for a, c in accepted.items()])
    leaks = {}
    for arg, case in accepted.items():
        result = second["byId"][arg]
        if not result["ok"]:
            leaks[arg] = f"accepted at apply time, then vLLM refuses it: {result['error'][-200:]}"
            continue
        read = {**result["values"], **result["nonDefault"]}
        wrong = {k: read.get(k) for k, v in expected_reading(case).items() if read.get(k) != v}
        if wrong:
            leaks[arg] = f"overrides the spec: vLLM reads {wrong}"
    if leaks:
        lines = "\n".join(f"  {a!r}: {why}" for a, why in leaks.items())
        pytest.fail(f"runtime.extraArgs reach managed vLLM options:\n{lines}", pytrace=False)
