"""The CRD on a real apiserver: schema, defaults, CEL rules, subresources, explain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.devcluster.kube import kubectl
from qwen_operator import crd
from testkit.invalid_cases import INVALID, resource

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "samples").glob("*.yaml"))

pytestmark = pytest.mark.usefixtures("crd_installed")


def _apply(doc: dict[str, Any], namespace: str, *flags: str) -> Any:
    return kubectl("apply", "-n", namespace, *flags, "-f", "-", stdin=yaml.safe_dump(doc), check=False)


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_sample_accepted_by_server_dry_run(sample: Path, namespace: str) -> None:
    out = kubectl("apply", "-n", namespace, "--dry-run=server", "-f", str(sample), check=False)
    assert out.returncode == 0, out.stderr
    assert "(server dry run)" in out.stdout


@pytest.mark.parametrize(("case", "patch", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_rejected_naming_the_rule(
    case: str, patch: dict[str, Any], field: str, namespace: str
) -> None:
    out = _apply(resource(patch), namespace, "--dry-run=server")
    assert out.returncode != 0, f"{case} was accepted: {out.stdout}"
    assert field in out.stderr, out.stderr


def test_empty_spec_is_defaulted_to_the_model_card(namespace: str) -> None:
    out = _apply(resource({}), namespace, "--dry-run=server", "-o", "json")
    assert out.returncode == 0, out.stderr
    spec = json.loads(out.stdout)["spec"]
    assert spec["replicas"] == 1
    assert spec["model"]["id"] == "Qwen/Qwen3-235B-A22B-Thinking-2507-FP8"
    assert "source" not in spec["model"]
    assert spec["parallelism"] == {"tensor": 4, "expert": False}
    assert spec["context"]["maxModelLen"] == 262144
    assert spec["context"]["minModelLen"] == 32768
    assert spec["reasoningParser"] == "deepseek_r1"
    assert spec["toolCalling"] == {"enabled": True, "parser": "hermes"}
    assert spec["sampling"] == {"temperature": 0.6, "topP": 0.95, "topK": 20, "minP": 0, "maxTokens": 32768}
    assert spec["runtime"]["gpuMemoryUtilization"] == 0.92


def test_scale_and_status_subresources(namespace: str) -> None:
    assert _apply(resource({}), namespace).returncode == 0
    kubectl("scale", "-n", namespace, "qtd/qwen3-thinking", "--replicas=3")
    got = json.loads(kubectl("get", "-n", namespace, "qtd/qwen3-thinking", "-o", "json").stdout)
    assert got["spec"]["replicas"] == 3
    # a status written through the main resource is ignored: status is a subresource
    got["status"] = {"phase": "Ready"}
    kubectl("replace", "-n", namespace, "-f", "-", stdin=json.dumps(got))
    again = json.loads(kubectl("get", "-n", namespace, "qtd/qwen3-thinking", "-o", "json").stdout)
    assert again["status"] == crd.NEW_STATUS  # the schema's default, not what the main resource said
    patch = json.dumps({"status": {"phase": "Ready", "replicas": 3, "selector": "a=b"}})
    kubectl(
        "patch", "-n", namespace, "qtd/qwen3-thinking", "--subresource=status", "--type=merge", "-p", patch
    )
    scale = json.loads(
        kubectl(
            "get",
            "--raw",
            f"/apis/serving.qwen-operator.io/v1alpha1/namespaces/{namespace}/qwenthinkingdeployments/qwen3-thinking/scale",
        ).stdout
    )
    assert scale["spec"]["replicas"] == 3
    assert scale["status"] == {"replicas": 3, "selector": "a=b"}


def test_printer_columns_and_short_name(namespace: str) -> None:
    assert _apply(resource({}), namespace).returncode == 0
    header = kubectl("get", "qtd", "-n", namespace, "-o", "wide").stdout.splitlines()[0].split()
    assert header == ["NAME", "REPLICAS", "READY", "CONTEXT", "PHASE", "PROGRESS", "AGE", "ENDPOINT"]


def test_kubectl_explain_describes_fields() -> None:
    out = kubectl("explain", "qtd.spec.context.maxModelLen").stdout
    assert "262144" in out and "--max-model-len" in out
    out = kubectl("explain", "qwenthinkingdeployments.spec.parallelism").stdout
    assert "tensor" in out and "expert" in out
