"""The optional integrations on the real apiserver, with the real CRDs from their Go modules:
an InferencePool (Gateway API Inference Extension v1.0.0) and the autoscalers (a KEDA v2.21
ScaledObject, else a HorizontalPodAutoscaler). The operator runs as its ServiceAccount (see
operator_fixtures), so each child also proves the ClusterRole; the last test checks that every
grant for these kinds was used and nothing was refused.

The autoscaling path itself, the HPA controller scaling a resource on a metric served by
prometheus-adapter, is e2e/test_autoscaling.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

pytest.register_assert_rewrite("e2e.operator_fixtures")

from e2e.conftest import Cluster  # noqa: E402
from e2e.devcluster.kube import kubectl, wait_established, wait_for  # noqa: E402
from e2e.devcluster.toolchain import tools  # noqa: E402
from e2e.operator_fixtures import (  # noqa: E402
    API_KEY,
    GROUP,
    INTEGRATION_RESOURCES,
    NAME,
    VERSION,
    Operator,
    apply_ready,
    audit_entries,
    audit_offset,
    condition,
    during_restart,
    get_qtd,
    instance,
    patch_spec,
    reasons,
    settle,
)
from qwen_operator.api.vocabulary import KIND  # noqa: E402

pytest_plugins = ("e2e.operator_fixtures",)
pytestmark = pytest.mark.e2e

INFERENCE_POOL_CRD = (
    "gateway-api-inference-extension",
    Path("config", "crd", "bases", "inference.networking.k8s.io_inferencepools.yaml"),
    "inferencepools.inference.networking.k8s.io",
)
SCALED_OBJECT_CRD = (
    "keda",
    Path("config", "crd", "bases", "keda.sh_scaledobjects.yaml"),
    "scaledobjects.keda.sh",
)
PROMETHEUS_RULE_CRD = (
    "prometheus-operator",
    Path("example", "prometheus-operator-crd", "monitoring.coreos.com_prometheusrules.yaml"),
    "prometheusrules.monitoring.coreos.com",
)
AUTOSCALING = {
    "minReplicas": 1,
    "maxReplicas": 3,
    "targetWaitingPerReplica": 2,
    "scaleDownStabilizationSeconds": 900,
}
POOL = {"endpointPickerRef": {"name": "qwen-epp", "port": {"number": 9002}, "failureMode": "FailOpen"}}


def install_crd(module: str, rel: Path, name: str) -> Path:
    path = tools.module_dir(module) / rel
    kubectl("apply", "--server-side", "-f", str(path))
    wait_established(f"crd/{name}")
    return path


def without_crd(name: str) -> Iterator[None]:
    """The test starts without the CRD and leaves none behind."""
    kubectl("delete", "crd", name, "--ignore-not-found", "--wait=true")
    yield
    kubectl("delete", "crd", name, "--ignore-not-found", "--wait=true")


@pytest.fixture
def no_inference_pool_crd(cluster: Cluster) -> Iterator[None]:
    del cluster
    yield from without_crd(INFERENCE_POOL_CRD[2])


@pytest.fixture
def no_keda_crd(cluster: Cluster) -> Iterator[None]:
    del cluster
    yield from without_crd(SCALED_OBJECT_CRD[2])


@pytest.fixture
def no_prometheus_rule_crd(cluster: Cluster) -> Iterator[None]:
    del cluster
    yield from without_crd(PROMETHEUS_RULE_CRD[2])


def get(kind: str, ns: str, name: str = NAME) -> dict[str, Any] | None:
    out = kubectl("get", kind, name, "-n", ns, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def test_inference_pool_waits_for_its_crd_then_selects_the_servers(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, core_v1: client.CoreV1Api,
    no_inference_pool_crd: None,
) -> None:  # fmt: skip
    """Without the CRD: Ready, and InferencePool=False with the reason. Once the real v1 CRD is
    served, the pool the apiserver admitted (its schema, its CEL) selects exactly the server pods
    on port 8000 and names the endpoint picker; dropped from the spec, it is deleted."""
    del no_inference_pool_crd
    uid = apply_ready(custom, ns, replicas=2, inferencePool=POOL, auth=API_KEY)["metadata"]["uid"]
    waiting = condition(get_qtd(custom, ns, NAME), "InferencePool")
    assert (waiting["status"], waiting["reason"]) == ("False", "InferencePoolNotServed"), waiting
    assert get("inferencepools.inference.networking.k8s.io", ns) is None  # the API is not there at all

    install_crd(*INFERENCE_POOL_CRD)
    pool = wait_for(lambda: get("inferencepool", ns), 60, "the InferencePool once its CRD is served")
    assert [r["uid"] for r in pool["metadata"]["ownerReferences"]] == [uid]
    assert pool["spec"]["targetPorts"] == [{"number": 8000}]
    assert pool["spec"]["endpointPickerRef"] == {**POOL["endpointPickerRef"], "group": "", "kind": "Service"}
    selector = ",".join(f"{k}={v}" for k, v in pool["spec"]["selector"]["matchLabels"].items())
    selected = {p.metadata.name for p in core_v1.list_namespaced_pod(ns, label_selector=selector).items}
    servers = {p.metadata.name for p in core_v1.list_namespaced_pod(ns, label_selector=instance(NAME)).items}
    assert selected == servers == {f"{NAME}-0", f"{NAME}-1"}
    ports = [p.container_port for p in core_v1.read_namespaced_pod(f"{NAME}-0", ns).spec.containers[0].ports]
    assert ports == [8000]
    wait_for(
        lambda: condition(get_qtd(custom, ns, NAME), "InferencePool").get("status") == "True", 30, "True"
    )

    patch_spec(ns, {"inferencePool": None})
    wait_for(lambda: get("inferencepool", ns) is None, 60, "the InferencePool deleted")
    wait_for(lambda: not condition(get_qtd(custom, ns, NAME), "InferencePool"), 30, "its condition gone")
    assert "Deleted" in reasons(ns, NAME)


def test_an_endpoint_picker_that_is_no_service_needs_no_port(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, no_inference_pool_crd: None
) -> None:
    """Our rule mirrors the pool's own CEL (a port only for a Service): a reference to another
    kind, without a port, is admitted by both."""
    del no_inference_pool_crd
    install_crd(*INFERENCE_POOL_CRD)
    ref = {"group": "example.com", "kind": "Picker", "name": "epp"}  # no port: not a Service
    apply_ready(custom, ns, inferencePool={"endpointPickerRef": ref}, auth=API_KEY)
    pool = wait_for(lambda: get("inferencepool", ns), 60, "the InferencePool")
    assert pool["spec"]["endpointPickerRef"] == {**ref, "failureMode": "FailClose"}


def hpa_condition(ns: str, type_: str) -> dict[str, Any]:
    hpa = get("horizontalpodautoscaler", ns) or {}
    return next((c for c in (hpa.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


def test_autoscaler_is_an_hpa_on_the_scale_subresource_until_keda_is_served(
    operator: Operator, cluster: Cluster, ns: str, custom: client.CustomObjectsApi, no_keda_crd: None
) -> None:
    """Without KEDA: a HorizontalPodAutoscaler, which kube-controller-manager's HPA controller
    reads our scale subresource through (AbleToScale=True) and which the operator leaves alone
    while the controller works on it. With KEDA's real CRD: the HPA is deleted and a ScaledObject
    the apiserver admitted takes over; without spec.autoscaling, nothing scales."""
    del no_keda_crd
    obj = apply_ready(custom, ns, autoscaling=AUTOSCALING)
    assert condition(obj, "Autoscaling")["reason"] == "HorizontalPodAutoscaler"
    hpa = wait_for(lambda: get("horizontalpodautoscaler", ns), 30, "the HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": NAME}
    able = wait_for(
        lambda: (c := hpa_condition(ns, "AbleToScale")).get("status") == "True" and c,
        60, "the HPA controller reading the scale subresource",
    )  # fmt: skip
    assert able["reason"] == "SucceededGetScale", able
    offset = audit_offset(cluster)
    settle(16)  # one sync of the HPA controller (15 s): it writes the HPA's status, the operator nothing
    if cluster.audit_log is not None:
        sent = [(e["verb"], e["requestURI"]) for e in audit_entries(cluster.audit_log, offset)
                if e["verb"] != "watch"
                and (e.get("objectRef") or {}).get("resource") != "leases"]  # fmt: skip
        assert sent == [], sent  # the leader's Lease renewals are the one periodic request (test_operator)

    install_crd(*SCALED_OBJECT_CRD)
    so = wait_for(lambda: get("scaledobject", ns), 60, "the ScaledObject once KEDA's CRD is served")
    assert get("horizontalpodautoscaler", ns) is None  # deleted first: two autoscalers would fight
    assert so["spec"]["scaleTargetRef"] == {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": NAME}
    assert (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (1, 3)
    (trigger,) = so["spec"]["triggers"]
    assert (
        trigger["metadata"]["query"] == f'sum(vllm:num_requests_waiting{{namespace="{ns}",service="{NAME}"}})'
    )
    assert trigger["metadata"]["threshold"] == "2"
    behavior = so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 900
    wait_for(
        lambda: condition(get_qtd(custom, ns, NAME), "Autoscaling").get("reason") == "ScaledObject", 30, ""
    )
    rendered = json.dumps({**{k: so[k] for k in ("apiVersion", "kind", "spec")},
                           "metadata": {"name": "dry", "namespace": ns}})  # fmt: skip
    dry = kubectl("apply", "--dry-run=server", "-f", "-", stdin=rendered)  # KEDA's real schema
    assert "(server dry run)" in dry.stdout

    patch_spec(ns, {"autoscaling": None})
    wait_for(lambda: get("scaledobject", ns) is None, 60, "the ScaledObject deleted")
    assert get("horizontalpodautoscaler", ns) is None
    assert "Deleted" in reasons(ns, NAME)


def test_prometheus_rule_waits_for_the_real_crd_then_alerts_on_this_resource_alone(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, no_prometheus_rule_crd: None,
) -> None:  # fmt: skip
    """spec.monitoring.prometheusRule without the Prometheus Operator's CRD: Ready, no rule. Once
    the real CRD (from the prometheus-operator module) is served, the rule it admitted carries the
    shipped server alerts narrowed to this resource, owned by it; dropped from the spec, deleted."""
    del no_prometheus_rule_crd
    uid = apply_ready(custom, ns, monitoring={"prometheusRule": True})["metadata"]["uid"]
    assert get("prometheusrules.monitoring.coreos.com", ns) is None  # the API is not there at all

    install_crd(*PROMETHEUS_RULE_CRD)
    rule = wait_for(lambda: get("prometheusrule", ns), 60, "the PrometheusRule once its CRD is served")
    assert [r["uid"] for r in rule["metadata"]["ownerReferences"]] == [uid]
    rules = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert "QwenThinkingKVCacheFull" in rules and "QwenOperatorDown" not in rules
    assert all(f'namespace="{ns}"' in r["expr"] for r in rules.values()), rules
    assert f'service="{NAME}"' in rules["QwenThinkingQueueBacklog"]["expr"]

    patch_spec(ns, {"monitoring": {"prometheusRule": False}})
    wait_for(lambda: get("prometheusrule", ns) is None, 60, "the PrometheusRule deleted")
    assert "Deleted" in reasons(ns, NAME)


def test_integrations_used_only_their_grants(operator: Operator, cluster: Cluster) -> None:
    """Last in the module: every request for these kinds was allowed, and every grant for them
    was used (creates are audited as patches: server-side apply)."""
    role = json.loads(kubectl("get", "clusterrole", "qwen-operator", "-o", "json").stdout)
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"] if (g, r) in INTEGRATION_RESOURCES}  # fmt: skip
    if cluster.audit_log is None:
        return
    entries = [e for e in audit_entries(cluster.audit_log, operator.audit_offset) if e.get("objectRef")]
    mine = [e for e in entries if (e["objectRef"].get("apiGroup", ""), e["objectRef"]["resource"]) in
            INTEGRATION_RESOURCES]  # fmt: skip
    # the session's operator lived through test_faults' restarts: a watch re-opened while the
    # restarted apiserver's authorizer warmed up is no refusal of a grant (test_operator.py's too)
    refused = [e for e in mine if e["responseStatus"]["code"] == 403 and not during_restart(cluster, e)]
    assert [(e["verb"], e["requestURI"]) for e in refused] == []
    used = {(e["objectRef"].get("apiGroup", ""), e["objectRef"]["resource"], e["verb"]) for e in mine}
    print("integration requests by (group, resource, verb):", sorted(used))
    assert used <= granted, used - granted
    # creates are audited as patches; a watch is audited when it ends, and one still open (or
    # just opened on a CRD this module installed a moment ago) is not in the log yet
    unaudited = {(g, r, v) for g, r in INTEGRATION_RESOURCES for v in ("create", "watch")}
    assert granted - used <= unaudited, granted - used - unaudited
    assert {(g, r, "list") for g, r in INTEGRATION_RESOURCES} <= used  # each kind was read
