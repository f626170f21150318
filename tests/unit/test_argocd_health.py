"""Argo CD's health script and the Flux/kstatus snippets, statically: the checked-in test data
(manifests/argocd/) covers every case once and holds statuses the operator writes, and the
docs' snippets are the files users apply. Running the script as Argo CD does, and kstatus, is
tests/tools/test_argocd_health.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from e2e.devcluster.consumers import (
    ARGOCD_CM,
    ARGOCD_DIR,
    HEALTH_LUA,
)
from qwen_operator import api
from qwen_operator.api.vocabulary import API_VERSION, GROUP, KIND, ConditionType, Phase, Reason
from qwen_runtime.record import Reason as LauncherReason

HEALTH_KEY = f"resource.customizations.health.{GROUP}_{KIND}"
IGNORE_KEY = f"resource.customizations.ignoreDifferences.{GROUP}_{KIND}"


def health_tests() -> list[dict[str, Any]]:
    tests: list[dict[str, Any]] = yaml.safe_load((ARGOCD_DIR / "health_test.yaml").read_text())["tests"]
    return tests


def load_case(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ARGOCD_DIR / name).read_text())
    return doc


def test_every_testdata_file_is_tested_once() -> None:
    inputs = [t["inputPath"] for t in health_tests()]
    files = sorted(str(p.relative_to(ARGOCD_DIR)) for p in (ARGOCD_DIR / "testdata").glob("*.yaml"))
    assert sorted(inputs) == files
    assert len(set(inputs)) == len(inputs)
    # Upstream names a case by the health it expects: degraded_*.yaml is Degraded, ...
    for test in health_tests():
        prefix = Path(test["inputPath"]).name.split("_")[0].split(".")[0]
        assert prefix == test["healthStatus"]["status"].lower(), test


def test_argocd_cm_snippet_holds_the_script_and_the_replicas_exception() -> None:
    cm = yaml.safe_load(ARGOCD_CM.read_text())
    meta = cm["metadata"]
    assert (cm["kind"], meta["name"], meta["namespace"]) == ("ConfigMap", "argocd-cm", "argocd")
    assert cm["data"][HEALTH_KEY] == HEALTH_LUA.read_text()
    assert not any(".useOpenLibs." in key for key in cm["data"])  # the script needs none
    assert yaml.safe_load(cm["data"][IGNORE_KEY]) == {"jsonPointers": ["/spec/replicas"]}


def test_testdata_are_statuses_the_operator_writes() -> None:
    """Each test object is a QwenThinkingDeployment whose status parses as the operator's status
    model and uses only its vocabulary; never Reconciling and Stalled both True."""
    reasons = {str(r) for r in Reason} | {str(r) for r in LauncherReason}
    for test in health_tests():
        obj = load_case(test["inputPath"])
        assert (obj["apiVersion"], obj["kind"]) == (API_VERSION, KIND)
        api.QwenThinkingDeploymentSpec.model_validate(obj["spec"])
        if "status" not in obj:
            continue
        status = api.QwenThinkingDeploymentStatus.model_validate(obj["status"])
        assert status.phase in set(Phase)
        truth = {c.type: c.status for c in status.conditions}
        assert set(truth) <= {str(t) for t in ConditionType}, test
        assert {ConditionType.READY, ConditionType.RECONCILING, ConditionType.STALLED} <= set(truth)
        assert not (truth[ConditionType.RECONCILING] == "True" and truth[ConditionType.STALLED] == "True")
        assert {c.reason for c in status.conditions} <= reasons, test


GITOPS_PAGE = ARGOCD_DIR.parent.parent / "docs" / "gitops.md"


def docs_section(title: str) -> str:
    """The section of the Install and GitOps page under `## title`, up to the next one."""
    text = GITOPS_PAGE.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def yaml_blocks(text: str) -> list[Any]:
    return [yaml.safe_load(block.split("```", 1)[0]) for block in text.split("```yaml\n")[1:]]


def test_docs_snippets_are_the_files_users_apply() -> None:
    """What the docs tell a user to copy is what the tests check."""
    argo = docs_section("Argo CD")
    assert "--patch-file manifests/argocd/argocd-cm.yaml" in argo
    assert HEALTH_KEY in argo and IGNORE_KEY in argo
    apps = [d for d in yaml.safe_load_all((ARGOCD_DIR / "application.yaml").read_text()) if d]
    model_app = next(a for a in apps if a["spec"].get("ignoreDifferences"))
    snippet = next(b for b in yaml_blocks(argo) if "ignoreDifferences" in (b.get("spec") or {}))
    assert snippet["spec"]["ignoreDifferences"] == model_app["spec"]["ignoreDifferences"]
    assert set(snippet["spec"]["syncPolicy"]["syncOptions"]) <= set(
        model_app["spec"]["syncPolicy"]["syncOptions"]
    )
    flux_file = ARGOCD_DIR.parent / "flux" / "qwen-operator.yaml"
    flux = [d for d in yaml.safe_load_all(flux_file.read_text()) if d]
    (snippet,) = [b for b in yaml_blocks(docs_section("Flux, kstatus and `kubectl wait`")) if b.get("kind")]
    (same,) = [d for d in flux if d["metadata"] == snippet["metadata"]]
    assert {k: v for k, v in same["spec"].items() if k in snippet["spec"]} == snippet["spec"]
