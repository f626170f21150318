"""The install manifests (kustomize base) and the operator's Dockerfile agree with the code.

That `kubectl apply -k manifests/` works and the RBAC suffices is proven end to end
(e2e/test_operator.py runs the operator with this ServiceAccount's token); here: the static
promises a cluster admin reads in the files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from qwen_operator import cli
from qwen_operator.process import access, endpoints

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
CRD_FILE = "qwenthinkingdeployments.serving.qwen-operator.io.yaml"


def load(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((MANIFESTS / name).read_text()))


def kustomization() -> dict[str, Any]:
    return load("kustomization.yaml")


AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"
USER_ROLES = {"qwen-operator-edit": "clusterrole-edit.yaml", "qwen-operator-view": "clusterrole-view.yaml"}
CHART = MANIFESTS / "helm" / "qwen-operator"


def is_user_role(doc: dict[str, Any]) -> bool:
    """One of the ClusterRoles for the people who use the resources (aggregated into admin, edit
    and view), not the operator's."""
    labels = doc["metadata"].get("labels", {})
    return doc["kind"] == "ClusterRole" and any(k.startswith(AGGREGATE) for k in labels)


METRICS_READER = "qwen-operator-metrics-reader"
"""The ClusterRole that lets a Prometheus read /metrics (clusterrole-metrics-reader.yaml)."""


def is_other_role(doc: dict[str, Any]) -> bool:
    """A ClusterRole that is not the operator's: the users' or the metrics reader's."""
    return is_user_role(doc) or (doc["kind"] == "ClusterRole" and doc["metadata"]["name"] == METRICS_READER)


CLUSTER_SCOPED = "qwen-operator-cluster"
"""The ClusterRole (and its binding) of the operator's cluster-scoped reads, bound cluster-wide
in every mode; `qwen-operator` holds the rules of the namespaces it serves."""


def by_kind() -> dict[str, dict[str, Any]]:
    """The base's objects by kind; of the ClusterRoles and ClusterRoleBindings, the operator's
    namespaced rules (`user_roles`, `cluster_scoped`: the others)."""
    docs = [load(r) for r in kustomization()["resources"]]
    kinds = {
        doc["kind"]: doc
        for doc in docs
        if not is_other_role(doc) and doc["metadata"]["name"] != CLUSTER_SCOPED
    }
    assert len(kinds) == len(docs) - len(USER_ROLES) - 3
    return kinds


def cluster_scoped() -> tuple[dict[str, Any], dict[str, Any]]:
    """The ClusterRole of the cluster-scoped reads and its ClusterRoleBinding."""
    docs = {(d["kind"], d["metadata"]["name"]): d for d in (load(r) for r in kustomization()["resources"])}
    return docs[("ClusterRole", CLUSTER_SCOPED)], docs[("ClusterRoleBinding", CLUSTER_SCOPED)]


def metrics_reader() -> dict[str, Any]:
    docs = [load(r) for r in kustomization()["resources"]]
    (role,) = [d for d in docs if d["metadata"]["name"] == METRICS_READER]
    return role


def user_roles() -> dict[str, dict[str, Any]]:
    docs = [load(r) for r in kustomization()["resources"]]
    return {doc["metadata"]["name"]: doc for doc in docs if is_user_role(doc)}


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (g, r, v)
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }


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
    # namespaced/ is a Component of the base, tenant-policy/ an optional kustomization
    # (tests/unit/test_admission.py).
    others = {"argocd", "flux", "helm", "monitoring", "namespaced", "tenant-policy"}
    yamls = [p.relative_to(MANIFESTS) for p in MANIFESTS.rglob("*.yaml")]
    present = {str(p) for p in yamls if p.parts[0] not in others} - {"kustomization.yaml"}
    assert listed == present
    kinds = set(by_kind())
    assert kinds == {"CustomResourceDefinition", "Namespace", "ServiceAccount", "ClusterRole",
                     "ClusterRoleBinding", "Role", "RoleBinding", "Deployment", "Service",
                     "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}  # fmt: skip


def test_users_roles_aggregate_into_admin_edit_and_view() -> None:
    """`qwen-operator-edit` into admin and edit: the resources, their scale, their status read;
    `qwen-operator-view` into view: read only. Neither writes the status (the operator's), and
    neither names anything but QwenThinkingDeployments."""
    roles = user_roles()
    assert set(roles) == set(USER_ROLES)
    edit, view = roles["qwen-operator-edit"], roles["qwen-operator-view"]
    assert edit["metadata"]["labels"] == {f"{AGGREGATE}admin": "true", f"{AGGREGATE}edit": "true"}
    assert view["metadata"]["labels"] == {f"{AGGREGATE}view": "true"}
    group, plural = "serving.qwen-operator.io", "qwenthinkingdeployments"
    read = ("get", "list", "watch")
    assert grants(edit["rules"]) == {
        *{(group, plural, v) for v in (*read, "create", "update", "patch", "delete", "deletecollection")},
        (group, f"{plural}/status", "get"),
        *{(group, f"{plural}/scale", v) for v in ("get", "update", "patch")},
    }
    assert grants(view["rules"]) == {
        (group, f"{plural}{sub}", v) for sub in ("", "/status", "/scale") for v in read
    }
    for role in roles.values():
        assert "aggregationRule" not in role and "namespace" not in role["metadata"]


def test_chart_renders_the_users_roles_from_the_same_files() -> None:
    """The chart reads the rules and aggregation labels through links to the base's files (as
    it reads the operator's ClusterRole), prefixes the names with the release, and leaves them
    out with userRoles.enabled=false (tests/tools/test_helm_chart.py renders it with helm)."""
    for name, file in USER_ROLES.items():
        assert (CHART / "files" / file).resolve() == (MANIFESTS / file).resolve(), name
    template = (CHART / "templates" / "userroles.yaml").read_text()
    assert "{{- if .Values.userRoles.enabled }}" in template
    assert '{{- range $role := list "edit" "view" }}' in template
    assert 'printf "files/clusterrole-%s.yaml" $role' in template
    assert '{{ include "qwen-operator.fullname" $ }}-{{ $role }}' in template
    assert "toYaml $base.rules" in template and "toYaml $base.metadata.labels" in template
    assert yaml.safe_load((CHART / "values.yaml").read_text())["userRoles"] == {"enabled": True}
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["properties"]["userRoles"]["properties"] == {"enabled": {"type": "boolean"}}


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
    role, binding = cluster_scoped()
    assert binding["subjects"] == kinds["ClusterRoleBinding"]["subjects"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": role["metadata"]["name"]}  # fmt: skip


def test_the_cluster_scoped_role_reads_only_cluster_scoped_resources() -> None:
    """Serving named namespaces binds `qwen-operator` per namespace and this one cluster-wide:
    it must hold nothing namespaced (that would be granted everywhere) and write nothing but the
    reviews behind /metrics (answered, never stored)."""
    role, _ = cluster_scoped()
    assert grants(role["rules"]) == {
        ("", "nodes", "list"), ("", "nodes", "watch"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
        ("authentication.k8s.io", "tokenreviews", "create"),
        ("authorization.k8s.io", "subjectaccessreviews", "create"),
    }  # fmt: skip


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
    # Probes on the health port (plain HTTP, no credentials), never on the metrics port (HTTPS,
    # a token needed): the kubelet could not pass either.
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": 8443, "health": 8081}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (env["QWEN_OPERATOR_METRICS_PORT"], env["QWEN_OPERATOR_HEALTH_PORT"]) == ("8443", "8081")
    assert endpoints.METRICS_PORT == 8443 and endpoints.HEALTH_PORT == 8081  # the operator's defaults
    args = cli.parser().parse_args(container["args"])
    assert args.command == "run" and args.all_namespaces
    # Two replicas: the Lease lets one reconcile; a rolling update hands it over (lease.py).
    assert deployment["spec"]["replicas"] == 2 and deployment["spec"]["strategy"]["type"] == "RollingUpdate"


def test_metrics_service_selects_the_operator_pod() -> None:
    kinds = by_kind()
    labels = kinds["Deployment"]["spec"]["template"]["metadata"]["labels"]
    service = kinds["Service"]["spec"]
    assert service["selector"].items() <= labels.items()
    assert [(p["port"], p["targetPort"]) for p in service["ports"]] == [(8443, "metrics")]  # no health port


def test_the_metrics_reader_grants_get_metrics_and_nothing_else_and_is_bound_to_no_one() -> None:
    """Bound by whoever runs the Prometheus (docs/monitoring.md): the base binds it to no one,
    and the operator's own role does not include it (the operator asks; it never reads)."""
    role = metrics_reader()
    assert role["rules"] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]
    assert access.PATH == "/metrics" and access.VERB == "get"  # what the operator's review asks
    bindings = [load(r) for r in kustomization()["resources"]]
    assert not any(d.get("roleRef", {}).get("name") == METRICS_READER for d in bindings)
    assert all("nonResourceURLs" not in r for r in by_kind()["ClusterRole"]["rules"])


def test_dockerfile_runs_the_operator_as_non_root() -> None:
    text = (REPO / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines()]
    user = next(line for line in lines if line.startswith("USER "))
    uid = user.split()[1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    pod = by_kind()["Deployment"]["spec"]["template"]["spec"]
    assert int(uid) == pod["securityContext"]["runAsUser"]
    assert 'ENTRYPOINT ["qwen-operator"]' in lines
    assert "EXPOSE 8443 8081" in lines
    assert "PYTHONDONTWRITEBYTECODE=1" in text  # read-only root filesystem


def test_the_namespaced_component_binds_the_namespaced_rules_in_the_namespaces_it_serves() -> None:
    """manifests/namespaced/ (a kustomize Component, uncommented in the base's kustomization):
    the ClusterRoleBinding of the namespaced rules is deleted, a RoleBinding per namespace binds
    them instead, and the operator's arguments name the same namespaces; Kopf may list and watch
    Namespaces. e2e/test_admission.py renders it with kubectl and asks `kubectl auth can-i`."""
    component = yaml.safe_load((MANIFESTS / "namespaced" / "kustomization.yaml").read_text())
    assert component["kind"] == "Component" and component["resources"] == ["rolebindings.yaml"]
    assert "# components:\n# - namespaced\n" in (MANIFESTS / "kustomization.yaml").read_text()
    patches = component["patches"]
    deleted = yaml.safe_load(patches[0]["patch"])
    binding = by_kind()["ClusterRoleBinding"]
    assert deleted == {"$patch": "delete", "apiVersion": binding["apiVersion"], "kind": "ClusterRoleBinding",
                       "metadata": {"name": binding["metadata"]["name"]}}  # fmt: skip
    role, _ = cluster_scoped()
    assert patches[1]["target"] == {"kind": "ClusterRole", "name": role["metadata"]["name"]}
    (namespaces_rule,) = yaml.safe_load(patches[1]["patch"])
    assert namespaces_rule["value"] == {
        "apiGroups": [""],
        "resources": ["namespaces"],
        "verbs": ["list", "watch"],
    }
    assert patches[2]["target"] == {"kind": "Deployment", "name": by_kind()["Deployment"]["metadata"]["name"]}
    (args,) = yaml.safe_load(patches[2]["patch"])
    parsed = cli.parser().parse_args(args["value"])
    bindings = list(yaml.safe_load_all((MANIFESTS / "namespaced" / "rolebindings.yaml").read_text()))
    assert [b["metadata"]["namespace"] for b in bindings] == parsed.namespace == ["llm"]
    assert not parsed.all_namespaces
    for rb in bindings:
        assert rb["roleRef"] == binding["roleRef"] and rb["subjects"] == binding["subjects"]
