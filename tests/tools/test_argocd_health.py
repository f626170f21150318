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

from e2e.devcluster.consumers import ARGOCD_CM, ARGOCD_DIR, Health, argocd_health, argocd_tests, kstatus
from tests.unit.test_argocd_health import health_tests, load_case


def expected(test: dict[str, Any]) -> Health:
    return Health(test["healthStatus"]["status"], test["healthStatus"].get("message", ""))


def test_health_tests_pass_as_argo_cd_runs_them() -> None:
    """Argo CD's own test procedure (TestLuaHealthScript: open libs, exact status and message)."""
    records, summary = argocd_tests(ARGOCD_DIR)
    failed = [r for r in records if not r["ok"]]
    assert not failed, failed
    assert len(records) == len(health_tests()), summary
    assert summary.endswith(f"{len(records)} passed, 0 failed")


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
