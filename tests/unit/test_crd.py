"""The generated CRD: checked-in copy, structural schema, descriptions, rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from qwen_operator import api
from qwen_operator.api import crd
from testkit.maximal import walk

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "qwenthinkingdeployments.serving.qwen-operator.io.yaml"


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_checked_in_crd_equals_generated() -> None:
    assert [p.name for p in CRD_FILE.parent.iterdir()] == [CRD_FILE.name]
    assert CRD_FILE.read_text() == crd.crd_yaml(), "run `make crd` and commit crds/"


def test_schema_is_structural() -> None:
    for path, node in walk(_schema()):
        assert not {"$ref", "anyOf", "allOf", "oneOf", "title", "$defs"} & node.keys(), path
        assert node.get("additionalProperties") is not False, path
        typed = "type" in node or node.get("x-kubernetes-int-or-string")
        assert typed, f"{path} has no type"
        if "additionalProperties" in node:
            assert "properties" not in node, path
        if node.get("x-kubernetes-preserve-unknown-fields"):
            assert node["type"] == "object", path


def test_no_field_is_free_form_and_every_map_is_known() -> None:
    """The Kubernetes objects the spec passes through are typed (api/passthrough.py), so that each
    has bounds: no field keeps unknown fields, which nothing would bound but the request size."""
    kept = {path for path, node in walk(_schema()) if node.get("x-kubernetes-preserve-unknown-fields")}
    assert kept == set()
    maps = {path for path, node in walk(_schema()) if "additionalProperties" in node}
    selectors = [
        f".spec.scheduling.affinity.{kind}.{when}DuringSchedulingIgnoredDuringExecution[]{term}.{which}.matchLabels"
        for kind in ("podAffinity", "podAntiAffinity")
        for when, term in (("required", ""), ("preferred", ".podAffinityTerm"))
        for which in ("labelSelector", "namespaceSelector")
    ]
    assert maps == {
        ".spec.resources.requests",
        ".spec.resources.limits",
        ".spec.scheduling.nodeSelector",
        ".spec.network.allowFrom[].namespaceSelector.matchLabels",
        ".spec.network.allowFrom[].podSelector.matchLabels",
        *selectors,
    }


def test_every_spec_and_status_field_is_described() -> None:
    for path, node in walk(_schema()):
        if path.startswith((".spec.", ".status.")) and not path.endswith(("[]", "{}")):
            assert node.get("description"), f"{path} has no description for kubectl explain"


def test_model_card_defaults_are_in_the_schema() -> None:
    spec = _schema()["properties"]["spec"]
    assert spec["default"] == {}
    props = spec["properties"]
    assert props["replicas"]["default"] == 1
    assert props["parallelism"]["properties"]["tensor"]["default"] == 4
    assert props["context"]["properties"]["maxModelLen"]["default"] == 262144
    assert props["context"]["properties"]["minModelLen"]["default"] == 32768
    assert props["reasoningParser"]["default"] == "deepseek_r1"
    assert props["reasoningParser"]["enum"] == list(api.REASONING_PARSERS)
    assert props["runtime"]["properties"]["kvCacheDtype"]["enum"] == ["auto", "fp8"]
    sampling = props["sampling"]["properties"]
    assert [sampling[k]["default"] for k in ("temperature", "topP", "topK", "minP")] == [0.6, 0.95, 20, 0.0]
    # nested objects default to {} so that `spec: {}` is filled in by the apiserver; those with
    # CEL rules to their full defaults (the apiserver checks a default against its rules as written)
    full = api.QwenThinkingDeploymentSpec().model_dump(by_alias=True, mode="json", exclude_none=True)
    for key in ("model", "parallelism", "context", "toolCalling", "sampling", "runtime"):
        assert props[key]["default"] in ({}, full[key]), key
    # but the model source must not: a default huggingFace would clash with a user's pvc
    assert "default" not in props["model"]["properties"]["source"]


def test_bounds_are_in_the_schema() -> None:
    props = _schema()["properties"]["spec"]["properties"]
    ctx = props["context"]["properties"]["maxModelLen"]
    assert (ctx["minimum"], ctx["maximum"]) == (1024, 262144)
    gmu = props["runtime"]["properties"]["gpuMemoryUtilization"]
    assert (gmu["minimum"], gmu["exclusiveMinimum"], gmu["maximum"]) == (0, True, 1)
    assert props["replicas"]["minimum"] == 0


def test_every_rule_is_a_cel_validation() -> None:
    cel = [r["rule"] for _, node in walk(_schema()) for r in node.get("x-kubernetes-validations", [])]
    expected = [r.cel for cls in crd._models(api.QwenThinkingDeployment).values() for r in cls.rules]
    assert sorted(set(cel)) == sorted(expected)  # a type used in several places has its rules in each
    assert len(expected) == 30
    assert len(cel) == 39  # the label selector's, in each of the 10 places one sits


def test_names_subresources_and_columns() -> None:
    spec = crd.crd()["spec"]
    assert spec["group"] == "serving.qwen-operator.io"
    assert spec["names"]["shortNames"] == ["qtd"]
    assert spec["names"]["categories"]
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert list(columns) == ["Replicas", "Ready", "Context", "Phase", "Progress", "Age", "Endpoint"]
    assert columns["Context"]["jsonPath"] == ".status.context.effective"
    assert columns["Endpoint"]["priority"] == 1


def test_crd_yaml_parses_back() -> None:
    assert yaml.safe_load(crd.crd_yaml()) == crd.crd()


def test_a_new_resource_reads_in_progress_before_the_operator_wrote() -> None:
    status = crd.openapi_schema()["properties"]["status"]
    (cond,) = status["default"]["conditions"]
    assert (cond["type"], cond["status"]) == ("Reconciling", "True")
