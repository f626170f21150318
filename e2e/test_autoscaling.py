"""Replicas that follow vLLM's queue, end to end: the HorizontalPodAutoscaler the operator
renders is run by the real HPA controller of kube-controller-manager, which reads the
resource's scale subresource and the Pods metric `vllm:num_requests_waiting` from a real
custom metrics API (prometheus-adapter over Prometheus, both built from Go modules, in a
network namespace the apiserver can reach: e2e/devcluster/metricsapi.py), and writes the new
replica count through the scale subresource; the operator then scales the StatefulSet.

What stands in: the servers' /metrics (kwok runs no vLLM), served by the test in vLLM's format.
Needs the local control plane (the apiserver dials into the namespace) and root.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from kubernetes import client

pytest.register_assert_rewrite("e2e.operator_fixtures")

from e2e.conftest import Cluster  # noqa: E402
from e2e.devcluster import metricsapi  # noqa: E402
from e2e.devcluster.kube import kubectl, wait_for  # noqa: E402
from e2e.operator_fixtures import NAME, Operator, apply_ready, get_qtd  # noqa: E402
from qwen_operator.api.vocabulary import QUEUE_METRIC, SCALED_OBJECT_CRD  # noqa: E402

pytest_plugins = ("e2e.operator_fixtures",)
pytestmark = pytest.mark.e2e

AUTOSCALING = {"minReplicas": 1, "maxReplicas": 3, "targetWaitingPerReplica": 2}
HPA_SYNC = 15
"""kube-controller-manager's --horizontal-pod-autoscaler-sync-period (its default)."""
DISCOVERY = 30
"""How often kube-controller-manager refreshes its discovery (a CRD it did not know yet)."""


def hpa(ns: str) -> dict[str, Any]:
    return dict(json.loads(kubectl("get", "hpa", NAME, "-o", "json", "-n", ns).stdout))


def hpa_condition(ns: str, type_: str) -> dict[str, Any]:
    conditions = (hpa(ns).get("status") or {}).get("conditions") or []
    return next((dict(c) for c in conditions if c["type"] == type_), {})


def condition_true(ns: str, type_: str) -> dict[str, Any]:
    """The HPA's condition `type_` once it is True, else {} (not yet, for wait_for)."""
    condition = hpa_condition(ns, type_)
    return condition if condition.get("status") == "True" else {}


def apiserver_port(kubeconfig: Path) -> int:
    doc = yaml.safe_load(kubeconfig.read_text())
    port = urlparse(str(doc["clusters"][0]["cluster"]["server"])).port
    assert port is not None
    return port


def test_the_hpa_controller_scales_the_resource_on_vllms_queue(
    operator: Operator, cluster: Cluster, ns: str, custom: client.CustomObjectsApi, tmp_path: Path
) -> None:
    if not cluster.local:
        pytest.fail(
            "needs the local control plane: the apiserver must reach a network namespace of this host"
        )
    kubectl("delete", "crd", SCALED_OBJECT_CRD, "--ignore-not-found", "--wait=true")  # the HPA, not KEDA
    apply_ready(custom, ns, autoscaling=AUTOSCALING)

    # The HPA controller reads our scale subresource (once its discovery, refreshed every 30 s,
    # knows the CRD), and asks for a metric nobody serves yet.
    able = wait_for(
        lambda: condition_true(ns, "AbleToScale"),
        DISCOVERY + 2 * HPA_SYNC, "the HPA controller reading the scale subresource",
    )  # fmt: skip
    assert able["reason"] == "SucceededGetScale", able
    inactive = wait_for(lambda: hpa_condition(ns, "ScalingActive"), HPA_SYNC + 15, "ScalingActive")
    assert (inactive["status"], inactive["reason"]) == ("False", "FailedGetPodsMetric"), inactive

    pods = [f"{NAME}-{i}" for i in range(AUTOSCALING["maxReplicas"])]
    with metricsapi.serve(
        cluster.kubeconfig, apiserver_port(cluster.kubeconfig), tmp_path, ns, NAME, pods
    ) as api:
        api.exporter.set(5)  # 5 waiting per replica, 2 wanted: ceil(1 x 5 / 2) = 3 replicas
        raw = f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{ns}/pods/*/{QUEUE_METRIC}"

        def served() -> list[dict[str, Any]]:
            items = json.loads(kubectl("get", "--raw", raw).stdout)["items"]
            return [i for i in items if i["describedObject"]["name"] == f"{NAME}-0" and i["value"] == "5"]

        try:
            wait_for(served, 60, f"{QUEUE_METRIC} of {NAME}-0 through the aggregated API")
        except AssertionError as exc:  # the logs as they were when it gave up
            raise AssertionError(f"{exc}\n{api.logs()}") from None
        active = wait_for(
            lambda: condition_true(ns, "ScalingActive"),
            2 * HPA_SYNC + 30, "the HPA reading the metric",
        )  # fmt: skip
        assert active["reason"] == "ValidMetricFound", active
        wait_for(
            lambda: get_qtd(custom, ns, NAME)["spec"]["replicas"] == 3, 2 * HPA_SYNC + 30, "spec.replicas 3"
        )
        ready = wait_for(
            lambda: (o := get_qtd(custom, ns, NAME))["status"].get("readyReplicas") == 3 and o,
            120, "three ready replicas",
        )  # fmt: skip
        assert ready["status"]["phase"] == "Ready"
        status = hpa(ns)["status"]
        assert status["desiredReplicas"] == 3
        (metric,) = status["currentMetrics"]
        assert metric["pods"]["metric"]["name"] == QUEUE_METRIC
        about = "involvedObject.kind=HorizontalPodAutoscaler"
        events = json.loads(
            kubectl("get", "events", "-n", ns, "-o", "json", "--field-selector", about).stdout
        )
        rescaled = [e["message"] for e in events["items"] if e["reason"] == "SuccessfulRescale"]
        assert any("New size: 3" in m and QUEUE_METRIC in m for m in rescaled), rescaled
