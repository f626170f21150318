"""The install manifests (kustomize base) and the operator's Dockerfile agree with the code.

That `kubectl apply -k manifests/` works and the RBAC suffices is proven end to end
(e2e/test_operator.py runs the operator with this ServiceAccount's token); here: the static
promises a cluster admin reads in the files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from qwen_operator import cli

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
CRD_FILE = "qwenthinkingdeployments.serving.qwen-operator.io.yaml"


def load(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((MANIFESTS / name).read_text()))


def kustomization() -> dict[str, Any]:
    return load("kustomization.yaml")


def by_kind() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in (load(r) for r in kustomization()["resources"])}


def test_crd_copy_is_the_checked_in_crd() -> None:
    """kustomize reads only below manifests/, so it holds a copy (tests/unit/test_crd.py checks crds/)."""
    assert (MANIFESTS / "crd" / CRD_FILE).read_text() == (REPO / "crds" / CRD_FILE).read_text(), "make crd"


def test_chart_crd_copy_is_the_checked_in_crd() -> None:
    """Helm reads only its chart directory, so its crds/ holds a copy (`make crd` writes it)."""
    chart_crds = MANIFESTS / "helm" / "qwen-operator" / "crds"
    assert (chart_crds / CRD_FILE).read_text() == (REPO / "crds" / CRD_FILE).read_text(), "make crd"
    assert [p.name for p in chart_crds.iterdir()] == [CRD_FILE]


def test_kustomization_lists_every_manifest() -> None:
    listed = set(kustomization()["resources"])
    # argocd/, flux/ and helm/ are other ways to install (tested where they are used), not the
    # base; monitoring/ is its own kustomization (tests/unit/test_monitoring.py, e2e/test_helm.py).
    others = {"argocd", "flux", "helm", "monitoring"}
    yamls = [p.relative_to(MANIFESTS) for p in MANIFESTS.rglob("*.yaml")]
    present = {str(p) for p in yamls if p.parts[0] not in others} - {"kustomization.yaml"}
    assert listed == present
    kinds = set(by_kind())
    assert kinds == {"CustomResourceDefinition", "Namespace", "ServiceAccount", "ClusterRole",
                     "ClusterRoleBinding", "Role", "RoleBinding", "Deployment", "Service"}  # fmt: skip


def test_leader_election_role_grants_the_one_lease_in_the_operators_namespace() -> None:
    """Least privilege for the Lease: a namespaced Role, leases only, every verb but create
    (which a name cannot limit) only on the Lease the Deployment names."""
    kinds = by_kind()
    role, binding = kinds["Role"], kinds["RoleBinding"]
    namespace = kinds["Namespace"]["metadata"]["name"]
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == namespace
    env = {e["name"]: e for e in kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    lease = env["QWEN_OPERATOR_LEASE_NAME"]["value"]
    assert env["QWEN_OPERATOR_LEASE_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": [lease],
         "verbs": ["list", "watch", "update"]},
    ]  # fmt: skip
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}  # fmt: skip
    assert binding["subjects"] == kinds["ClusterRoleBinding"]["subjects"]


def test_binding_names_the_service_account_the_deployment_runs_as() -> None:
    kinds = by_kind()
    sa = kinds["ServiceAccount"]["metadata"]
    subject = kinds["ClusterRoleBinding"]["subjects"][0]
    assert (subject["name"], subject["namespace"]) == (sa["name"], sa["namespace"])
    assert kinds["ClusterRoleBinding"]["roleRef"]["name"] == kinds["ClusterRole"]["metadata"]["name"]
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == sa["name"]


def test_deployment_is_locked_down_and_probed() -> None:
    deployment = by_kind()["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": 8080}
    args = cli.parser().parse_args(container["args"])
    assert args.command == "run" and args.all_namespaces
    # Two replicas: the Lease lets one reconcile; a rolling update hands it over (lease.py).
    assert deployment["spec"]["replicas"] == 2 and deployment["spec"]["strategy"]["type"] == "RollingUpdate"


def test_metrics_service_selects_the_operator_pod() -> None:
    kinds = by_kind()
    labels = kinds["Deployment"]["spec"]["template"]["metadata"]["labels"]
    service = kinds["Service"]["spec"]
    assert service["selector"].items() <= labels.items()
    assert service["ports"][0]["targetPort"] == "metrics"


def test_dockerfile_runs_the_operator_as_non_root() -> None:
    text = (REPO / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines()]
    user = next(line for line in lines if line.startswith("USER "))
    uid = user.split()[1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    pod = by_kind()["Deployment"]["spec"]["template"]["spec"]
    assert int(uid) == pod["securityContext"]["runAsUser"]
    assert 'ENTRYPOINT ["qwen-operator"]' in lines
    assert "EXPOSE 8080" in lines
    assert "PYTHONDONTWRITEBYTECODE=1" in text  # read-only root filesystem
