"""The Helm chart on the cluster: it renders the kustomize base, the apiserver accepts what it
renders (server-side dry run), and `helm install` gives an operator that serves a resource as
the chart's ServiceAccount, within the chart's RBAC.

helm is built from Go modules (`make tools`); the ServiceMonitor and PrometheusRule CRDs are
the Prometheus Operator's own, from its Go module. The monitoring kustomization
(manifests/monitoring/: alerts, dashboard, the operator's ServiceMonitor) passes the same dry run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

pytest.register_assert_rewrite("e2e.operator_fixtures")

from e2e.conftest import Cluster  # noqa: E402
from e2e.devcluster.consumers import CHART, argocd_health, helm, kstatus  # noqa: E402
from e2e.devcluster.kube import kubectl, wait_established  # noqa: E402
from e2e.devcluster.toolchain import build, tools  # noqa: E402
from e2e.operator_fixtures import (  # noqa: E402
    GROUP,
    NAME,
    PLURAL,
    Operator,
    apply_yaml,
    audit_entries,
    audit_offset,
    get_qtd,
    sa_kubeconfig,
    sample,
    settle,
    wait_phase,
)
from qwen_operator.api import crd  # noqa: E402

pytest_plugins = ("e2e.operator_fixtures",)
pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent
HELM_LABELS = {
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
}
PROMETHEUS_OPERATOR_CRDS = {
    name: Path("example", "prometheus-operator-crd", f"monitoring.coreos.com_{name.split('.')[0]}.yaml")
    for name in ("servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com")
}


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def without_helm_labels(value: Any) -> Any:
    """The object without the labels Helm adds (everywhere: metadata, selectors, templates)."""
    if isinstance(value, dict):
        return {k: without_helm_labels(v) for k, v in value.items() if k not in HELM_LABELS}
    if isinstance(value, list):
        return [without_helm_labels(v) for v in value]
    return value


def rbac_key(entry: dict[str, Any]) -> tuple[str, str, str]:
    """(API group, resource[/subresource], verb) of an audited request."""
    ref = entry["objectRef"]
    resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
    return ref.get("apiGroup", ""), resource, entry["verb"]


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (g, r, v)
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }


def keyed(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def test_chart_renders_the_kustomize_base() -> None:
    """With the defaults (and the Namespace `kubectl apply -k` creates), the chart renders the
    base's objects exactly, but for Helm's own labels: RBAC, Deployment, Service, CRD."""
    kubectl_bin = build.binary("kubectl")
    base = subprocess.run([str(kubectl_bin), "kustomize", str(REPO / "manifests")],
                          capture_output=True, text=True, check=True, timeout=60).stdout  # fmt: skip
    rendered = helm("template", "qwen-operator", str(CHART), "-n", "qwen-operator-system",
                    "--set", "namespace.create=true", "--include-crds").stdout  # fmt: skip
    chart = keyed([without_helm_labels(o) for o in docs(rendered)])
    expected = keyed(docs(base))
    assert sorted(chart) == sorted(expected)
    for key, obj in expected.items():
        assert chart[key] == obj, key
    # Helm's labels are really there (what the comparison left out).
    deployment = keyed(docs(rendered))[("Deployment", "qwen-operator")]
    assert deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"


@pytest.fixture(scope="module")
def prometheus_operator_crds(cluster: Cluster) -> Iterator[None]:
    """The Prometheus Operator's ServiceMonitor and PrometheusRule CRDs, for this module (those
    not already present)."""
    del cluster
    added = []
    for name, rel in PROMETHEUS_OPERATOR_CRDS.items():
        if kubectl("get", "crd", name, check=False).returncode != 0:
            path = tools.module_dir("prometheus-operator") / rel
            kubectl("apply", "--server-side", "-f", str(path))
            wait_established(f"crd/{name}")
            added.append(path)
    yield
    for path in added:
        kubectl("delete", "-f", str(path), "--wait=true", "--timeout=60s")


@pytest.mark.parametrize(
    "values",
    [
        [],
        ["namespace.create=true"],
        [
            "watchNamespaces={NAMESPACE}",  # a RoleBinding in each: the namespace must exist
            "metrics.serviceMonitor.enabled=true",
            "monitoring.prometheusRule.enabled=true",
            "monitoring.grafanaDashboard.enabled=true",
            "replicas=0",
            "image.digest=sha256:" + "0" * 64,
            "serviceAccount.annotations.owner=platform",
            "tenantPolicy.enabled=true",
        ],
        ["metrics.enabled=false", "serviceAccount.create=false", "serviceAccount.name=default"],
    ],
    ids=["defaults", "namespace", "options", "minimal"],
)
def test_helm_template_passes_server_side_dry_run(
    namespace: str, prometheus_operator_crds: None, crd_installed: list[str], values: list[str]
) -> None:
    """`helm template | kubectl apply --dry-run=server`: every object is valid for the apiserver
    (schemas, the real ServiceMonitor and PrometheusRule CRDs, RBAC objects, the pod's security
    context)."""
    del prometheus_operator_crds, crd_installed
    sets = [a for v in values for a in ("--set", v.replace("NAMESPACE", namespace))]
    rendered = helm("template", f"dry-{uuid.uuid4().hex[:4]}", str(CHART), "-n", namespace, "--include-crds",
                    *sets).stdout  # fmt: skip
    out = kubectl("apply", "--dry-run=server", "-f", "-", stdin=rendered)
    applied = [line for line in out.stdout.splitlines() if line.strip()]
    assert len(applied) == len(docs(rendered)), out.stdout
    assert all("(server dry run)" in line for line in applied), out.stdout


def test_monitoring_kustomization_passes_server_side_dry_run(
    operator_installed: None, prometheus_operator_crds: None
) -> None:
    """`kubectl apply -k manifests/monitoring/`, after the base: the alerts, the dashboard's
    ConfigMap and the operator's ServiceMonitor, as the apiserver (and the real CRDs) read them."""
    del operator_installed, prometheus_operator_crds
    out = kubectl("apply", "--dry-run=server", "-k", str(REPO / "manifests" / "monitoring"))
    applied = sorted(line.split()[0] for line in out.stdout.splitlines() if "(server dry run)" in line)
    assert applied == [
        "configmap/qwen-operator-dashboard",
        "prometheusrule.monitoring.coreos.com/qwen-operator",
        "servicemonitor.monitoring.coreos.com/qwen-operator",
    ], out.stdout


@pytest.fixture
def session_operator_stopped(operator: Operator) -> Iterator[None]:
    """No other operator serves the cluster while the chart's runs (it would act on the same
    resources): the session's is stopped for the test and started again after it."""
    operator.kill(signal.SIGTERM)
    try:
        yield
    finally:
        operator.start()


def test_helm_install_serves_a_resource_as_the_charts_service_account(
    cluster: Cluster,
    session_operator_stopped: None,
    ns: str,
    core_v1: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    tmp_path: Path,
) -> None:
    """`helm install` on the cluster, then the operator with the arguments of the chart's
    Deployment and a token of the chart's ServiceAccount: a sample in the watched namespace
    becomes Ready, one elsewhere is left alone, and no request was refused."""
    del session_operator_stopped
    release, op_ns = "qwen-helm", f"qwen-helm-{uuid.uuid4().hex[:5]}"
    fullname = f"{release}-qwen-operator"
    # The operator's namespace enforces Pod Security "restricted", as manifests/namespace.yaml does.
    restricted = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")}
    core_v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=op_ns, labels=restricted)))
    watch = f"watchNamespaces={{{ns}}}"
    op: Operator | None = None
    try:
        helm("install", release, str(CHART), "-n", op_ns, "--set", watch, "--wait", "--timeout", "120s")
        status = json.loads(helm("status", release, "-n", op_ns, "-o", "json").stdout)
        assert status["info"]["status"] == "deployed"
        # kwok ran the chart's pod: it passed admission (Pod Security restricted) and became Ready.
        deploy = json.loads(kubectl("get", "deployment", fullname, "-n", op_ns, "-o", "json").stdout)
        assert deploy["status"]["readyReplicas"] == 2  # one leads, one stands by
        pod = deploy["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["args"] == ["run", "--namespace", ns]
        # The same code, as a local process, with the chart's arguments and ServiceAccount.
        token = kubectl(
            "create", "token", pod["serviceAccountName"], "-n", op_ns, "--duration=1h"
        ).stdout.strip()
        offset = audit_offset(cluster)
        env = {e["name"]: e for e in container["env"]}
        assert (
            env["QWEN_OPERATOR_LEASE_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
        )
        lease = (op_ns, env["QWEN_OPERATOR_LEASE_NAME"]["value"])
        op = Operator(sa_kubeconfig(cluster, token, tmp_path / "kubeconfig"), tmp_path / "operator.log",
                      args=container["args"], lease=lease)  # fmt: skip
        op.start()
        apply_yaml(ns, sample())
        ready = wait_phase(custom, ns, NAME, "Ready")
        assert [h.status for h in kstatus([ready])] == ["Current"]
        assert [h.status for h in argocd_health([ready])] == ["Healthy"]
        kubectl("scale", f"qtd/{NAME}", "-n", ns, "--replicas=2")
        kubectl("wait", f"qtd/{NAME}", "-n", ns, "--for=condition=Ready", "--timeout=120s")
        assert get_qtd(custom, ns, NAME)["status"]["readyReplicas"] == 2
        # A resource outside the watched namespaces is not this operator's.
        apply_yaml(op_ns, sample())
        settle(5)
        assert get_qtd(custom, op_ns, NAME)["status"] == crd.NEW_STATUS  # as created: no operator wrote
        if cluster.audit_log is not None:
            user = f"system:serviceaccount:{op_ns}:{fullname}"
            entries = audit_entries(cluster.audit_log, offset, user)
            assert entries, f"no request of {user} in the audit log"
            refused = [
                (e["verb"], e["requestURI"])
                for e in entries
                if e.get("responseStatus", {}).get("code") == 403
            ]
            assert refused == []
            role = json.loads(kubectl("get", "clusterrole", fullname, "-o", "json").stdout)
            cluster_scoped = json.loads(
                kubectl("get", "clusterrole", f"{fullname}-cluster", "-o", "json").stdout
            )
            elect = json.loads(
                kubectl("get", "role", f"{fullname}-leader-election", "-n", op_ns, "-o", "json").stdout
            )
            rules = [*role["rules"], *cluster_scoped["rules"], *elect["rules"]]
            # the namespaced rules are bound in the served namespace alone (least privilege)
            assert kubectl("get", "clusterrolebinding", fullname, check=False).returncode != 0
            assert kubectl("get", "rolebinding", fullname, "-n", ns, check=False).returncode == 0
            used = {rbac_key(e) for e in entries if e.get("objectRef")}
            assert used <= grants(rules), used - grants(rules)
            assert ("coordination.k8s.io", "leases", "update") in used  # it elected on the release's Lease
            assert ("", "namespaces", "watch") in used  # Kopf's, when it serves named namespaces
            assert {  # the watched namespace, and its own for the Lease
                e["objectRef"]["namespace"] for e in entries if e.get("objectRef", {}).get("namespace")
            } <= {ns, op_ns}
    finally:
        if op is not None:
            op.kill(signal.SIGTERM)
        kubectl("delete", PLURAL + "." + GROUP, "--all", "-n", op_ns, "--wait=false", check=False)
        helm("uninstall", release, "-n", op_ns, "--wait", "--timeout", "60s", check=False)
        core_v1.delete_namespace(op_ns, propagation_policy="Background")
