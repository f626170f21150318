"""Each replica's progress in the status, as a kubelet reports a 236 GB start (issue 11).

The pod carries QWEN_E2E_MANUAL_KUBELET, so kwok leaves it Pending once scheduled and the test
plays the kubelet: the weights download, the model loads, the server serves, each stamped
minutes apart as a real start would be. The status follows within one reconciliation each
time, and is written once per stage change, never in between (the audit log says so).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

pytest.register_assert_rewrite("e2e.operator_fixtures")

from e2e.conftest import Cluster  # noqa: E402
from e2e.devcluster.kube import StartStage, starting_pod_status, wait_for  # noqa: E402
from e2e.operator_fixtures import (  # noqa: E402
    NAME,
    OPERATOR_USER,
    Operator,
    apply_yaml,
    audit_entries,
    audit_offset,
    condition,
    get_qtd,
    sample,
    settle,
)

pytest_plugins = ("e2e.operator_fixtures",)
pytestmark = pytest.mark.e2e
POD = f"{NAME}-0"
MANUAL = {"name": "QWEN_E2E_MANUAL_KUBELET", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
"""A marker kwok's stages look for (not a literal: any env name will do)."""


def replica(custom: client.CustomObjectsApi, ns: str) -> dict[str, Any]:
    entries = (get_qtd(custom, ns, NAME).get("status") or {}).get("replicaStatus") or [{}]
    return dict(entries[0])


def in_stage(custom: client.CustomObjectsApi, ns: str, stage: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        entry = replica(custom, ns)
        return entry if entry.get("stage") == stage else None

    return check


def status_writes(cluster: Cluster, offset: int, ns: str) -> int:
    assert cluster.audit_log is not None
    return sum(
        1
        for e in audit_entries(cluster.audit_log, offset, OPERATOR_USER)
        if e.get("verb") == "patch"
        and (e.get("objectRef") or {}).get("subresource") == "status"
        and (e.get("objectRef") or {}).get("namespace") == ns
    )


def report(core_v1: client.CoreV1Api, ns: str, stage: StartStage, since: datetime) -> None:
    """What the kubelet writes into the pod's status at that point of the start."""
    core_v1.patch_namespaced_pod_status(POD, ns, {"status": starting_pod_status(stage, since)})


def test_the_stages_of_a_start_one_status_write_each(
    operator: Operator, cluster: Cluster, ns: str, custom: client.CustomObjectsApi, core_v1: client.CoreV1Api,
) -> None:  # fmt: skip
    if cluster.audit_log is None:
        pytest.fail("needs the local cluster's audit log (unset KUBECONFIG)")
    apply_yaml(ns, sample(gpu={"memoryGiB": 141}, runtime={"env": [MANUAL]}))
    wait_for(lambda: replica(custom, ns).get("stage") == "Scheduling", 60, "stage Scheduling")
    settle(2)
    offset = audit_offset(cluster)
    start = datetime.now(UTC) - timedelta(minutes=5)
    timeline: list[tuple[StartStage, str, int]] = [
        ("downloading", "DownloadingWeights", 0), ("loading", "LoadingModel", 3), ("serving", "Serving", 5),
    ]  # fmt: skip
    for stage, expected, minute in timeline:
        since = start + timedelta(minutes=minute)
        report(core_v1, ns, stage, since)
        entry = wait_for(in_stage(custom, ns, expected), 30, f"stage {expected}")
        assert entry["since"] == since.strftime("%Y-%m-%dT%H:%M:%SZ") and entry["pod"] == POD
        obj = get_qtd(custom, ns, NAME)
        if expected != "Serving":
            message = condition(obj, "Reconciling")["message"]
            assert f"0/1 serving; {POD}" in message and entry["since"] in message, message
            assert obj["status"]["progress"].startswith("0/1 serving, 1 ")
        settle(3)  # minutes pass in a real start; here, a few seconds without a report
    obj = wait_for(
        lambda: (o := get_qtd(custom, ns, NAME))["status"].get("phase") == "Ready" and o, 60, "Ready"
    )
    assert obj["status"]["progress"] == "1/1 serving"
    writes = status_writes(cluster, offset, ns)
    print(f"3 stage changes, {writes} status writes")
    assert writes <= len(timeline)
