"""Argo CD's health script and kstatus over the checked-in test data (manifests/argocd/).

The script runs in gopher-lua with Argo CD's contract (toolchain/luahealth; the e2e suite
shows that runner passes Argo CD's own 1000-odd upstream health tests and runs the script over
live objects); kstatus is cli-utils' status.Compute, what Flux reads. Both binaries come from
`make tools`: a missing one fails these tests, it never skips them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.devcluster.consumers import (
    ARGOCD_CM,
    ARGOCD_DIR,
    HEALTH_LUA,
    Health,
    argocd_health,
    argocd_tests,
    kstatus,
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


def expected(test: dict[str, Any]) -> Health:
    return Health(test["healthStatus"]["status"], test["healthStatus"].get("message", ""))


def test_every_testdata_file_is_tested_once() -> None:
    inputs = [t["inputPath"] for t in health_tests()]
    files = sorted(str(p.relative_to(ARGOCD_DIR)) for p in (ARGOCD_DIR / "testdata").glob("*.yaml"))
    assert sorted(inputs) == files
    assert len(set(inputs)) == len(inputs)
    # Upstream names a case by the health it expects: degraded_*.yaml is Degraded, ...
    for test in health_tests():
        prefix = Path(test["inputPath"]).name.split("_")[0].split(".")[0]
        assert prefix == test["healthStatus"]["status"].lower(), test


def test_health_tests_pass_as_argo_cd_runs_them() -> None:
    """Argo CD's own test procedure (TestLuaHealthScript: open libs, exact status and message)."""
    records, summary = argocd_tests(ARGOCD_DIR)
    failed = [r for r in records if not r["ok"]]
    assert not failed, failed
    assert len(records) == len(health_tests()), summary
    assert summary.endswith(f"{len(records)} passed, 0 failed")


def test_argocd_cm_snippet_holds_the_script_and_the_replicas_exception() -> None:
    cm = yaml.safe_load(ARGOCD_CM.read_text())
    meta = cm["metadata"]
    assert (cm["kind"], meta["name"], meta["namespace"]) == ("ConfigMap", "argocd-cm", "argocd")
    assert cm["data"][HEALTH_KEY] == HEALTH_LUA.read_text()
    assert not any(".useOpenLibs." in key for key in cm["data"])  # the script needs none
    assert yaml.safe_load(cm["data"][IGNORE_KEY]) == {"jsonPointers": ["/spec/replicas"]}


def test_argocd_cm_gives_the_same_health_without_open_libs() -> None:
    """What a user installs (argocd-cm, Lua's standard libraries closed) reads every case alike."""
    tests = health_tests()
    objects = [load_case(t["inputPath"]) for t in tests]
    assert argocd_health(objects, argocd_cm=ARGOCD_CM) == [expected(t) for t in tests]
    assert argocd_health(objects) == [expected(t) for t in tests]


def test_the_runner_closes_the_standard_libraries_as_argo_cd_does(tmp_path: Path) -> None:
    """A script calling string.format works with open libs only: the restricted mode is real."""
    script = tmp_path / "health.lua"
    script.write_text('return {status = "Healthy", message = string.format("%d ready", 1)}\n')
    obj = load_case("testdata/healthy.yaml")
    assert argocd_health([obj], script=script, open_libs=True) == [Health("Healthy", "1 ready")]
    with pytest.raises(AssertionError, match="string"):
        argocd_health([obj], script=script)


def test_a_status_argo_cd_does_not_know_reads_unknown(tmp_path: Path) -> None:
    script = tmp_path / "health.lua"
    script.write_text('return {status = "Fine", message = "all good"}\n')
    result = argocd_health([load_case("testdata/healthy.yaml")], script=script)
    assert result == [Health("Unknown", "Lua returned an invalid health status")]


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


# What kstatus (Flux) computes for each case. A resource with no status at all reads Current:
# kstatus cannot tell a resource no controller has seen yet from one without conditions
# (the e2e suite measures how long that lasts on a real cluster).
KSTATUS = {
    "progressing_noStatus.yaml": "Current",
    "progressing_creating.yaml": "InProgress",
    "progressing_scheduling.yaml": "InProgress",
    "progressing_generationNotObserved.yaml": "InProgress",
    "progressing_scaling.yaml": "InProgress",
    "progressing_rollingOut.yaml": "InProgress",
    "healthy.yaml": "Current",
    "healthy_scaledToZero.yaml": "Current",
    "healthy_contextReduced.yaml": "Current",
    "healthy_reconcileError.yaml": "InProgress",
    "degraded_insufficientGPUMemory.yaml": "Failed",
    "degraded_contextFallbackExhausted.yaml": "Failed",
    "degraded_oneReplicaStalled.yaml": "Failed",
    "suspended_paused.yaml": "InProgress",
    "suspended_pausedReady.yaml": "Current",
}


def test_kstatus_reads_every_case() -> None:
    tests = health_tests()
    assert sorted(KSTATUS) == sorted(Path(t["inputPath"]).name for t in tests)
    results = kstatus([load_case(t["inputPath"]) for t in tests])
    got = {Path(t["inputPath"]).name: r.status for t, r in zip(tests, results, strict=True)}
    assert got == KSTATUS
    # Failed carries the Stalled condition's message: what `flux get kustomizations` shows.
    for test, result in zip(tests, results, strict=True):
        if result.status == "Failed":
            conditions = load_case(test["inputPath"])["status"]["conditions"]
            stalled = next(c for c in conditions if c["type"] == "Stalled")
            assert result.message == stalled["message"]


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
