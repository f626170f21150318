"""The qwen-operator command as users run it."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from qwen_operator import __version__, api, cli
from qwen_operator.api import crd
from qwen_operator.memory import planner
from testkit.invalid_cases import CASES, Case, resource

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "qwen_operator.cli", *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60, check=False)


def test_crd_prints_the_generated_crd() -> None:
    out = _cli("crd")
    assert out.returncode == 0, out.stderr
    assert out.stdout == crd.crd_yaml()


def test_version() -> None:
    out = _cli("version")
    assert out.returncode == 0
    assert __version__ in out.stdout


def test_render_sample_and_effective_context() -> None:
    sample = str(ROOT / "samples" / "qwen3-235b-thinking.yaml")
    full = _cli("render", "-f", sample)
    assert full.returncode == 0, full.stderr
    docs = list(yaml.safe_load_all(full.stdout))
    assert [d["kind"] for d in docs] == [
        "ServiceAccount",
        "ConfigMap",
        "ConfigMap",
        "Service",
        "Service",
        "StatefulSet",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ]
    reduced = _cli("render", "-f", sample, "--max-model-len", "131072")
    assert reduced.returncode == 0, reduced.stderr
    diff = [
        (a, b) for a, b in zip(full.stdout.splitlines(), reduced.stdout.splitlines(), strict=True) if a != b
    ]
    assert diff == [("        - '262144'", "        - '131072'")]


def test_render_shows_what_each_served_optional_api_adds() -> None:
    doc = resource(
        {
            "spec": {
                "autoscaling": {},
                "inferencePool": {"endpointPickerRef": {"name": "e", "port": {"number": 9002}}},
                "auth": {"apiKeySecretRef": {"name": "qwen-api-key", "key": "key"}},  # an exposed API
            }
        }
    )
    text = yaml.safe_dump(doc)

    def kinds(*served: str) -> list[str]:
        out = _cli("render", "-f", "-", *[a for s in served for a in ("--served", s)], stdin=text)
        assert out.returncode == 0, out.stderr
        return [d["kind"] for d in yaml.safe_load_all(out.stdout)][8:]  # after the PDB and the policy

    assert kinds() == ["HorizontalPodAutoscaler"]  # the InferencePool waits for its CRD
    every = ("servicemonitors.monitoring.coreos.com", "scaledobjects.keda.sh",
             "inferencepools.inference.networking.k8s.io")  # fmt: skip
    assert kinds(*every) == ["ServiceMonitor", "ScaledObject", "InferencePool"]
    assert _cli("render", "-f", "-", "--served", "nope.example.com", stdin=text).returncode == 2


def test_render_rejects_a_context_above_the_request() -> None:
    out = _cli(
        "render", "-f", str(ROOT / "samples" / "qwen3-235b-thinking.yaml"), "--max-model-len", "300000"
    )
    assert out.returncode == 2
    assert "--max-model-len" in out.stderr


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_render_refuses_the_corpus_naming_the_field(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    """`qwen-operator render -f -` (its main, in this process): exit 2, one line naming the field."""
    with open_stdin(case.document()):
        assert cli.main(["render", "-f", "-"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"error: {case.field}: "), lines[0]
    assert captured.out == ""


ONE_PER_KIND = {c.kind: c for c in CASES}


@pytest.mark.parametrize("case", ONE_PER_KIND.values(), ids=ONE_PER_KIND.keys())
def test_render_command_refuses_naming_the_field(case: Case) -> None:
    """The same through the installed command's process, one case per category."""
    out = _cli("render", "-f", "-", stdin=case.document())
    assert out.returncode == 2, out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"error: {case.field}: "), lines[0]
    assert out.stdout == ""


def test_render_missing_file() -> None:
    out = _cli("render", "-f", "/nonexistent.yaml")
    assert out.returncode == 2
    assert "/nonexistent.yaml" in out.stderr


def test_render_not_a_mapping() -> None:
    out = _cli("render", "-f", "-", stdin="- just\n- a list\n")
    assert out.returncode == 2
    assert "QwenThinkingDeployment" in out.stderr


def test_run_watches_the_named_namespaces_or_all(monkeypatch: pytest.MonkeyPatch) -> None:
    import kopf

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(kopf, "run", lambda **kw: calls.append(kw))
    for argv in (["run", "-n", "a", "--namespace", "b"], ["run"], ["run", "--all-namespaces"]):
        assert cli.main(argv) == 0
    assert [(c["clusterwide"], c["namespaces"]) for c in calls] == [
        (False, ["a", "b"]),
        (True, []),
        (True, []),
    ]
    assert all(c["standalone"] for c in calls)  # no peering objects to create or RBAC for them


# --- plan ---

H100_SAMPLE = str(ROOT / "samples" / "qwen3-235b-thinking-h100-fp8kv.yaml")


def test_plan_json_has_the_inputs_and_the_figures() -> None:
    out = _cli("plan", "-f", H100_SAMPLE, "-o", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    expected = planner.plan(planner.KNOWN[api.DEFAULT_MODEL], 80, 4, 0.94, "fp8", 262144)
    assert doc == {"name": "qwen3-thinking-h100", "model": api.DEFAULT_MODEL, **expected.to_dict()}
    # the sample's inputs: memoryGiB 80, TP 4, fp8 KV cache, utilisation 0.94
    assert (doc["gpuMemoryGiB"], doc["tensor"], doc["kvCacheDtype"], doc["gpuMemoryUtilization"]) == (
        80,
        4,
        "fp8",
        0.94,
    )
    # ceil(80 GiB x 0.94) = 80,745,385,165 - 59,111,363,840 - 6 GiB = 15,191,570,381 B
    # // (16 x 24,064) = 39,456 blocks -> 39,455 x 16 = 631,280 tokens
    assert (doc["maxTokens"], doc["planned"], doc["weightsFit"]) == (631_280, 262144, True)


def test_plan_text_shows_the_arithmetic_and_the_flag_wins_over_the_spec() -> None:
    out = _cli("plan", "-f", H100_SAMPLE, "--gpu-memory-gib", "141")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "qwen3-thinking-h100: planned 262144 of 262144 tokens requested"
    assert "141.0 GiB x 0.94" in out.stdout and "80 GiB" not in out.stdout
    assert any(line.strip().startswith("weights per GPU    236.445 GB") for line in lines)
    assert "24,064 per GPU" in out.stdout


def test_plan_says_when_the_weights_do_not_fit(capsys: pytest.CaptureFixture[str]) -> None:
    doc = resource({"spec": {"parallelism": {"tensor": 2}}})
    with open_stdin(yaml.safe_dump(doc)):
        assert cli.main(["plan", "-f", "-", "--gpu-memory-gib", "80", "-o", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert (plan["planned"], plan["weightsFit"], plan["weightsGiBPerGpu"]) == (0, False, 110.103)
    with open_stdin(yaml.safe_dump(doc)):
        assert cli.main(["plan", "-f", "-", "--gpu-memory-gib", "80"]) == 0
    assert "the weights need 110.1 GiB per GPU (236.4 GB over 2 GPUs)" in capsys.readouterr().out


def test_plan_explains_pipeline_parallelism(capsys: pytest.CaptureFixture[str]) -> None:
    """TP 2 does not hold the weights on 80 GiB GPUs; TP 2 x PP 2 does: the plan says why."""
    doc = resource({"spec": {"parallelism": {"tensor": 2, "pipeline": 2}}})
    with open_stdin(yaml.safe_dump(doc)):
        assert cli.main(["plan", "-f", "-", "--gpu-memory-gib", "80"]) == 0
    text = capsys.readouterr().out
    assert "pipeline           2 stages, one pod (node) each" in text
    assert "the largest stage has 47: it holds those layers' weights and KV cache" in text
    assert "110.103 GiB a stage, / 2 = 55.052 GiB" in text
    assert "48,128 per GPU" in text  # 2 x 47 layers x 4 KV heads / 2 x 128 x 2 B
    with open_stdin(yaml.safe_dump(doc)):
        assert cli.main(["plan", "-f", "-", "--gpu-memory-gib", "80", "-o", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    figures = (plan["pipeline"], plan["stageLayers"], plan["weightsFit"], plan["planned"])
    assert figures == (2, 47, True, 262144)


def test_plan_of_several_resources_is_a_json_list(capsys: pytest.CaptureFixture[str]) -> None:
    docs = [
        resource({"metadata": {"name": n}, "spec": {"gpu": {"memoryGiB": m}}})
        for n, m in (("a", 80), ("b", 141))
    ]
    with open_stdin(yaml.safe_dump_all(docs)):
        assert cli.main(["plan", "-f", "-", "-o", "json"]) == 0
    plans = json.loads(capsys.readouterr().out)
    assert [(p["name"], p["gpuMemoryGiB"], p["planned"]) for p in plans] == [
        ("a", 80, 262144),
        ("b", 141, 262144),
    ]


@pytest.mark.parametrize(
    ("args", "patch", "message"),
    [
        (
            [],
            {},
            "error: qwen3-thinking: GPU memory unknown: pass --gpu-memory-gib or set spec.gpu.memoryGiB",
        ),
        (
            ["--gpu-memory-gib", "80"],
            {"spec": {"model": {"id": "Qwen/Qwen3-8B"}}},
            "error: qwen3-thinking: no architecture known for model Qwen/Qwen3-8B",
        ),
        (["--gpu-memory-gib", "0"], {}, "error: --gpu-memory-gib: must be positive"),
    ],
)
def test_plan_refuses_what_it_cannot_plan(
    args: list[str], patch: dict[str, Any], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with open_stdin(yaml.safe_dump(resource(patch))):
        assert cli.main(["plan", "-f", "-", *args]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [message]
    assert captured.out == ""


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_plan_invalid_exits_2_naming_the_field(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    with open_stdin(case.document()):
        assert cli.main(["plan", "-f", "-", "--gpu-memory-gib", "80"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {case.field}: "), captured.err
    assert captured.out == ""


@contextmanager
def open_stdin(text: str) -> Iterator[None]:
    """`-f -` reads sys.stdin; give it a document for an in-process run."""
    saved = sys.stdin
    sys.stdin = io.StringIO(text)
    try:
        yield
    finally:
        sys.stdin = saved


def test_plan_shows_vllms_observed_figures_beside_the_estimate_while_their_basis_holds(
    tmp_path: Path,
) -> None:
    """`kubectl get qtd -o yaml | qwen-operator plan -f -`: the status's status.memory.observed."""
    from qwen_operator.memory import cures

    doc = yaml.safe_load(Path(H100_SAMPLE).read_text())
    res = api.parse_resource(doc)
    observed = {"pod": "qwen3-thinking-h100-0", "startedAt": "2026-01-01T00:00:00Z", "vllmVersion": "0.33.0",
                "gpuMemoryUtilization": 0.94, "maxModelLen": 262144, "kvCacheGiB": 13.9,
                "kvCacheTokens": 598_000, "maxConcurrency": 2.28, "basis": cures.fit_basis(res)}  # fmt: skip
    path = tmp_path / "live.yaml"
    path.write_text(yaml.safe_dump({**doc, "status": {"memory": {"observed": observed}}}))
    out = _cli("plan", "-f", str(path))
    assert out.returncode == 0, out.stderr
    assert "observed           598,000 tokens of KV cache (13.9 GiB per GPU)" in out.stdout
    assert "estimate/observed  631,280 estimated vs 598,000 observed tokens (+33,280)" in out.stdout
    as_json = json.loads(_cli("plan", "-f", str(path), "-o", "json").stdout)
    assert as_json["observed"]["kvCacheTokens"] == 598_000
    # measured under another image: set aside
    path.write_text(
        yaml.safe_dump({**doc, "status": {"memory": {"observed": {**observed, "basis": "other"}}}})
    )
    assert "observed" not in _cli("plan", "-f", str(path)).stdout
