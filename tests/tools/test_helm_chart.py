"""The Helm chart (manifests/helm/qwen-operator), statically: `helm lint`, its values schema,
and what each value renders to, read back through the operator's own CLI parser.

That it renders the kustomize base, that the apiserver accepts it and that the operator runs
as its ServiceAccount is proven on a cluster by e2e/test_helm.py; that its crds/ holds the
checked-in CRD, by tests/unit/test_manifests.py. helm comes from `make tools`.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.devcluster.consumers import CHART, helm
from qwen_operator import cli
from qwen_operator.admission import operator_writes, tenant
from qwen_operator.process import tls

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = "qwenthinkingdeployments.serving.qwen-operator.io.yaml"
MONITORING = REPO / "manifests" / "monitoring"
DIGEST = "sha256:" + "ab" * 32


def template(
    *sets: str, release: str = "qwen-operator", namespace: str = "qwen-operator-system"
) -> list[dict[str, Any]]:
    args = [a for s in sets for a in ("--set", s)]
    out = helm("template", release, str(CHART), "-n", namespace, *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"


def is_user_role(doc: dict[str, Any]) -> bool:
    """A ClusterRole for the people who use the resources (aggregated into admin, edit, view)."""
    labels = doc["metadata"].get("labels") or {}
    return doc["kind"] == "ClusterRole" and any(k.startswith(AGGREGATE) for k in labels)


def is_metrics_reader(doc: dict[str, Any]) -> bool:
    """The ClusterRole that lets a Prometheus read /metrics (`<release>-metrics-reader`)."""
    return doc["kind"] == "ClusterRole" and doc["metadata"]["name"].endswith("-metrics-reader")


def is_beside(doc: dict[str, Any]) -> bool:
    """One of the objects the chart renders beside the operator's own of its kind: the
    cluster-scoped reads' ClusterRole and binding, a watched namespace's RoleBinding, the tenant
    policy (`named` finds them)."""
    name = doc["metadata"]["name"]
    return (
        (doc["kind"] in ("ClusterRole", "ClusterRoleBinding") and name.endswith("-cluster"))
        or (doc["kind"] == "RoleBinding" and not name.endswith("-leader-election"))
        or name.endswith("-tenant-policy")
    )


def named(docs: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Every object by (kind, namespace, name)."""
    return {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d for d in docs}


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One object of each kind; of the ClusterRoles, the operator's (`user_roles`, `is_beside`:
    the others)."""
    docs = [d for d in docs if not is_user_role(d) and not is_beside(d) and not is_metrics_reader(d)]
    kinds = [d["kind"] for d in docs]
    assert len(kinds) == len(set(kinds)), kinds
    return {d["kind"]: d for d in docs}


def user_roles(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if is_user_role(d)}


def metrics_reader(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (role,) = [d for d in docs if is_metrics_reader(d)]
    return role


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (c,) = by_kind(docs)["Deployment"]["spec"]["template"]["spec"]["containers"]
    return dict(c)


def pyproject_version() -> str:
    version: str = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    return version


def test_lint_strict_with_the_defaults_and_every_option() -> None:
    assert "1 chart(s) linted, 0 chart(s) failed" in helm("lint", "--strict", str(CHART)).stdout
    options = [
        "watchNamespaces={llm,team-b}", "metrics.serviceMonitor.enabled=true", f"image.digest={DIGEST}",
        "namespace.create=true", "serviceAccount.create=false", "serviceAccount.name=existing",
        "replicas=0", "workers=8", "logLevel=DEBUG", "priorityClassName=system-cluster-critical",
        "monitoring.prometheusRule.enabled=true", "monitoring.grafanaDashboard.enabled=true",
        "userRoles.enabled=false", "operatorPolicy.enabled=false", "tenantPolicy.enabled=true",
        "tenantPolicy.params.allowedModels={Qwen/*}",
        "userRoles.enabled=false", "metrics.certSecret=metrics-tls", "health.port=9091",
        "metrics.serviceMonitor.tlsConfig.serverName=qwen-operator-metrics.qwen-operator-system.svc",
    ]  # fmt: skip
    out = helm("lint", "--strict", str(CHART), *[a for o in options for a in ("--set", o)]).stdout
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("replicas=-1", "minimum"),
        ("watchNamespaces={Not_A_Namespace}", "watchNamespaces"),
        ("metrics.servicemonitor.enabled=true", "servicemonitor"),  # a typo is an error, not ignored
        ("image.digest=latest", "digest"),
        ("logLevel=LOUD", "logLevel"),
        ("userRoles.enable=false", "enable"),  # a typo is an error, not ignored
        ("tenantPolicy.params.allowedServiceTypes={Internal}", "allowedServiceTypes"),
        ("tenantPolicy.params.allowedImages={x}", "allowedImages"),  # no such parameter
        ("tenantPolicy.params.allowedDigests={latest}", "allowedDigests"),
        ("operatorPolicy.enable=false", "enable"),
        ("metrics.certSecret=Not_A_Secret", "certSecret"),
        ("health.prot=9091", "prot"),  # a typo is an error, not ignored
    ],
)
def test_values_schema_refuses_what_would_break_the_operator(value: str, complaint: str) -> None:
    done = helm("lint", str(CHART), "--set", value, check=False)
    assert done.returncode != 0, done.stdout
    assert complaint in done.stdout + done.stderr


def test_watched_namespaces_become_the_operators_arguments() -> None:
    args = cli.parser().parse_args(container(template())["args"])
    assert (args.command, args.all_namespaces, args.namespace) == ("run", True, [])
    args = cli.parser().parse_args(container(template("watchNamespaces={llm,team-b}"))["args"])
    assert (args.command, args.all_namespaces, args.namespace) == ("run", False, ["llm", "team-b"])


def test_namespaces_are_readable_only_when_serving_named_namespaces() -> None:
    """Kopf lists and watches Namespaces when given --namespace (e2e/test_helm.py saw it stall
    for about a minute without them); serving every namespace needs no such right."""

    def grants(docs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
        rules = by_kind(docs)["ClusterRole"]["rules"]
        return {
            (g, r, v)
            for rule in rules
            for g in rule["apiGroups"]
            for r in rule["resources"]
            for v in rule["verbs"]
        }

    def cluster_grants(docs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
        rules = named(docs)[("ClusterRole", "", "qwen-operator-cluster")]["rules"]
        return {
            (g, r, v)
            for rule in rules
            for g in rule["apiGroups"]
            for r in rule["resources"]
            for v in rule["verbs"]
        }

    everywhere, serving = template(), template("watchNamespaces={llm}")
    assert cluster_grants(serving) - cluster_grants(everywhere) == {
        ("", "namespaces", "list"), ("", "namespaces", "watch")
    }  # fmt: skip
    assert grants(everywhere) == grants(serving)  # the namespaced rules are the same
    assert not any(r == "namespaces" for _, r, _ in grants(everywhere) | cluster_grants(everywhere))
    base = yaml.safe_load((REPO / "manifests" / "clusterrole.yaml").read_text())
    assert by_kind(template())["ClusterRole"]["rules"] == base["rules"]
    cluster = yaml.safe_load((REPO / "manifests" / "clusterrole-cluster.yaml").read_text())
    assert named(everywhere)[("ClusterRole", "", "qwen-operator-cluster")]["rules"] == cluster["rules"]


def test_watched_namespaces_bind_the_namespaced_rules_in_each_and_nowhere_else() -> None:
    """Least privilege: with watchNamespaces the ClusterRole of the namespaced rules is bound by
    a RoleBinding in each namespace and by no ClusterRoleBinding; the cluster-scoped reads stay
    bound cluster-wide. Every namespace, it is one ClusterRoleBinding and no RoleBinding."""
    sa = {"kind": "ServiceAccount", "name": "team-qwen-operator", "namespace": "team-ops"}
    ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole"}
    docs = named(template("watchNamespaces={llm,team-b}", release="team", namespace="team-ops"))
    bindings = {k: d for k, d in docs.items() if k[0] in ("RoleBinding", "ClusterRoleBinding")}
    assert set(bindings) == {
        ("RoleBinding", "team-ops", "team-qwen-operator-leader-election"),
        ("RoleBinding", "llm", "team-qwen-operator"), ("RoleBinding", "team-b", "team-qwen-operator"),
        ("ClusterRoleBinding", "", "team-qwen-operator-cluster"),
    }  # fmt: skip
    for ns in ("llm", "team-b"):
        binding = bindings[("RoleBinding", ns, "team-qwen-operator")]
        assert binding["roleRef"] == {**ref, "name": "team-qwen-operator"}
        assert binding["subjects"] == [sa]
    cluster = bindings[("ClusterRoleBinding", "", "team-qwen-operator-cluster")]
    assert cluster["roleRef"] == {**ref, "name": "team-qwen-operator-cluster"} and cluster["subjects"] == [sa]
    docs = named(template(release="team", namespace="team-ops"))
    assert {k for k in docs if k[0] in ("RoleBinding", "ClusterRoleBinding")} == {
        ("RoleBinding", "team-ops", "team-qwen-operator-leader-election"),
        ("ClusterRoleBinding", "", "team-qwen-operator"),
        ("ClusterRoleBinding", "", "team-qwen-operator-cluster"),
    }  # fmt: skip


def test_the_operator_policy_is_the_bases_for_the_releases_service_account() -> None:
    """On by default, in both modes: the policy of manifests/validatingadmissionpolicy.yaml, named
    after the release, its match condition naming the release's ServiceAccount."""
    base = yaml.safe_load((REPO / "manifests" / "validatingadmissionpolicy.yaml").read_text())
    for sets in ([], ["watchNamespaces={llm}"]):
        docs = named(template(*sets, release="team", namespace="team-ops"))
        policy = docs[("ValidatingAdmissionPolicy", "", "team-qwen-operator-writes")]
        (condition,) = policy["spec"]["matchConditions"]
        user = operator_writes.username("team-ops", "team-qwen-operator")
        assert condition["expression"] == operator_writes.match_condition(user)
        rest = {k: v for k, v in policy["spec"].items() if k != "matchConditions"}
        assert rest == {k: v for k, v in base["spec"].items() if k != "matchConditions"}
        binding = docs[("ValidatingAdmissionPolicyBinding", "", "team-qwen-operator-writes")]
        assert binding["spec"] == {"policyName": "team-qwen-operator-writes", "validationActions": ["Deny"]}
    docs = template("operatorPolicy.enabled=false")
    assert not [d for d in docs if d["kind"].startswith("ValidatingAdmissionPolicy")]


def test_the_tenant_policy_is_off_by_default_and_its_defaults_are_the_kustomize_params() -> None:
    """tenantPolicy.enabled renders manifests/tenant-policy's policy, a binding to a ConfigMap in
    the release's namespace, and that ConfigMap, whose parameters (as the policy reads them)
    are those of manifests/tenant-policy/params.yaml, but for allowedModels when set."""
    assert not [d for d in template() if d["metadata"]["name"].endswith("-tenant-policy")]
    docs = named(template("tenantPolicy.enabled=true", release="team", namespace="team-ops"))
    base = yaml.safe_load(
        (REPO / "manifests" / "tenant-policy" / "validatingadmissionpolicy.yaml").read_text()
    )
    name = "team-qwen-operator-tenant-policy"
    assert docs[("ValidatingAdmissionPolicy", "", name)]["spec"] == base["spec"]
    assert (
        docs[("ValidatingAdmissionPolicyBinding", "", name)]["spec"]
        == tenant.binding(name, name, name, "team-ops")["spec"]
    )
    chart = tenant.Params.from_configmap(docs[("ConfigMap", "team-ops", name)])
    shipped = tenant.Params.from_configmap(
        yaml.safe_load((REPO / "manifests" / "tenant-policy" / "params.yaml").read_text())
    )
    assert {k: (chart.enforced(k), chart.listed(k)) for k in tenant.KEYS} == {
        k: (shipped.enforced(k), shipped.listed(k)) for k in tenant.KEYS
    }
    assert not chart.enforced(tenant.MODELS)
    docs = named(template("tenantPolicy.enabled=true", "tenantPolicy.params.allowedModels={Qwen/*,org/x}",
                          "tenantPolicy.params.allowTrustRemoteCode=true"))  # fmt: skip
    params = tenant.Params.from_configmap(
        docs[("ConfigMap", "qwen-operator-system", "qwen-operator-tenant-policy")]
    )
    assert params.listed(tenant.MODELS) == ["Qwen/*", "org/x"]
    assert params.data[tenant.TRUST_REMOTE_CODE] == "true"


def test_chart_version_app_version_and_image_are_the_release() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == pyproject_version()
    base = yaml.safe_load((REPO / "manifests" / "deployment.yaml").read_text())
    (base_container,) = base["spec"]["template"]["spec"]["containers"]
    assert container(template())["image"] == base_container["image"]
    assert base_container["image"].endswith(f":{pyproject_version()}")
    pinned = container(template(f"image.digest={DIGEST}", "image.tag=ignored"))["image"]
    assert pinned == f"ghcr.io/qwen-operator/qwen-operator@{DIGEST}"


def test_values_reach_the_pod() -> None:
    docs = template(
        "replicas=0", "resources.limits.memory=1Gi", "workers=8", "logLevel=DEBUG", "metrics.port=9090",
        "health.port=9091",
    )  # fmt: skip
    deployment = by_kind(docs)["Deployment"]
    assert deployment["spec"]["replicas"] == 0
    c = container(docs)
    assert c["resources"]["limits"]["memory"] == "1Gi"
    env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    assert env["QWEN_OPERATOR_WORKERS"] == "8" and env["QWEN_OPERATOR_LOG_LEVEL"] == "DEBUG"
    assert env["QWEN_OPERATOR_METRICS_PORT"] == "9090" and env["QWEN_OPERATOR_HEALTH_PORT"] == "9091"
    assert c["ports"] == [
        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
        {"name": "health", "containerPort": 9091, "protocol": "TCP"},
    ]
    assert c["livenessProbe"]["httpGet"]["port"] == c["readinessProbe"]["httpGet"]["port"] == "health"
    service_ports = [p["port"] for p in by_kind(docs)["Service"]["spec"]["ports"]]
    assert service_ports == [9090]  # the health port is not behind the Service
    assert "QWEN_OPERATOR_METRICS_CERT_DIR" not in env  # a self-signed certificate by default


def test_a_certificate_secret_is_mounted_where_the_operator_reads_it() -> None:
    c = container(template("metrics.certSecret=metrics-tls"))
    env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == "metrics-tls"]
    assert mount["mountPath"] == env["QWEN_OPERATOR_METRICS_CERT_DIR"] and mount["readOnly"] is True
    pod = by_kind(template("metrics.certSecret=metrics-tls"))["Deployment"]["spec"]["template"]["spec"]
    assert {"name": "metrics-tls", "secret": {"secretName": "metrics-tls"}} in pod["volumes"]
    # The operator reads the files a kubernetes.io/tls Secret mounts (tls.crt, tls.key) from there.
    assert (tls.CERT_FILE, tls.KEY_FILE) == ("tls.crt", "tls.key")


def test_the_metrics_reader_is_the_kustomize_bases_under_the_release_prefix() -> None:
    base = yaml.safe_load((REPO / "manifests" / "clusterrole-metrics-reader.yaml").read_text())
    role = metrics_reader(template(release="team", namespace="team-ops"))
    assert role["metadata"]["name"] == "team-qwen-operator-metrics-reader"
    assert role["rules"] == base["rules"] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]
    assert (CHART / "files" / "clusterrole-metrics-reader.yaml").resolve() == (
        REPO / "manifests" / "clusterrole-metrics-reader.yaml"
    ).resolve()
    docs = template()
    bound = [d for d in docs if d.get("roleRef", {}).get("name") == role["metadata"]["name"]]
    assert bound == []  # bound to no one: whoever runs the Prometheus binds its ServiceAccount


def test_service_monitor_only_when_asked_and_it_selects_the_metrics_service() -> None:
    assert "ServiceMonitor" not in by_kind(template())
    kinds = by_kind(
        template("metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=prom")
    )
    monitor, service = kinds["ServiceMonitor"], kinds["Service"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [service["metadata"]["namespace"]]}
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [p["name"] for p in service["spec"]["ports"]]
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert all(e["honorLabels"] for e in monitor["spec"]["endpoints"])  # the resources' own namespace label
    # As manifests/monitoring's: HTTPS with Prometheus' own token, the self-signed certificate unchecked.
    shipped = yaml.safe_load((MONITORING / "servicemonitor.yaml").read_text())["spec"]["endpoints"][0]
    (endpoint,) = monitor["spec"]["endpoints"]
    for key in ("port", "path", "scheme", "bearerTokenFile", "tlsConfig", "honorLabels"):
        assert endpoint[key] == shipped[key], key
    assert endpoint["scheme"] == "https" and endpoint["tlsConfig"] == {"insecureSkipVerify": True}
    ca = {"ca": {"secret": {"name": "metrics-ca", "key": "ca.crt"}}, "serverName": "x.ops.svc"}
    sets = [f"metrics.serviceMonitor.tlsConfig.ca.secret.name={ca['ca']['secret']['name']}",
            "metrics.serviceMonitor.tlsConfig.ca.secret.key=ca.crt",
            "metrics.serviceMonitor.tlsConfig.serverName=x.ops.svc",
            "metrics.serviceMonitor.tlsConfig.insecureSkipVerify=null"]  # fmt: skip
    verified = by_kind(template("metrics.serviceMonitor.enabled=true", *sets))["ServiceMonitor"]
    assert verified["spec"]["endpoints"][0]["tlsConfig"] == ca
    pod_labels = kinds["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    kinds = by_kind(template("metrics.enabled=false", "metrics.serviceMonitor.enabled=true"))
    assert "Service" not in kinds and "ServiceMonitor" not in kinds


def test_alerts_and_dashboard_are_those_of_manifests_monitoring() -> None:
    """The chart reads manifests/monitoring/ through links (files/): one set of alerts and one
    dashboard for both ways to install, each only when asked for."""
    kinds = by_kind(template())
    assert "PrometheusRule" not in kinds and "ConfigMap" not in kinds
    kinds = by_kind(
        template(
            "monitoring.prometheusRule.enabled=true", "monitoring.prometheusRule.labels.release=prom",
            "monitoring.grafanaDashboard.enabled=true",
            "monitoring.grafanaDashboard.annotations.grafana_folder=LLM",
        )
    )  # fmt: skip
    shipped = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    rule = kinds["PrometheusRule"]
    assert rule["spec"] == shipped["spec"]
    assert rule["metadata"]["labels"]["release"] == "prom"
    dashboard = kinds["ConfigMap"]
    assert dashboard["data"]["qwen-operator-dashboard.json"] == (
        MONITORING / "qwen-operator-dashboard.json"
    ).read_text().rstrip("\n")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "LLM"}
    for link in ("prometheusrule.yaml", "qwen-operator-dashboard.json"):
        assert (CHART / "files" / link).resolve() == (MONITORING / link).resolve()


def test_a_release_prefixes_its_cluster_scoped_objects() -> None:
    """Two releases (or a release beside `kubectl apply -k manifests/`) never share a ClusterRole."""
    kinds = by_kind(template(release="team", namespace="team-ops"))
    assert kinds["ClusterRole"]["metadata"]["name"] == "team-qwen-operator"
    binding = kinds["ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == "team-qwen-operator"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "team-qwen-operator", "namespace": "team-ops"}
    ]
    assert kinds["Deployment"]["spec"]["template"]["spec"]["serviceAccountName"] == "team-qwen-operator"
    assert "Namespace" not in kinds  # helm install --create-namespace, or namespace.create=true
    kinds = by_kind(template("serviceAccount.create=false", "serviceAccount.name=existing"))
    assert "ServiceAccount" not in kinds
    assert kinds["ClusterRoleBinding"]["subjects"][0]["name"] == "existing"


def test_users_roles_are_the_kustomize_bases_under_the_release_prefix() -> None:
    """`<release>-edit` and `<release>-view`: the labels (aggregation) and rules of
    manifests/clusterrole-edit.yaml and clusterrole-view.yaml, plus the chart's labels; none with
    userRoles.enabled=false. The operator's ClusterRole is unchanged beside them."""
    docs = template(release="team", namespace="team-ops")
    roles = user_roles(docs)
    assert set(roles) == {"team-qwen-operator-edit", "team-qwen-operator-view"}
    for role in ("edit", "view"):
        base = yaml.safe_load((REPO / "manifests" / f"clusterrole-{role}.yaml").read_text())
        rendered = roles[f"team-qwen-operator-{role}"]
        assert rendered["rules"] == base["rules"], role
        assert base["metadata"]["labels"].items() <= rendered["metadata"]["labels"].items(), role
        assert rendered["metadata"]["labels"]["app.kubernetes.io/instance"] == "team"
        assert "namespace" not in rendered["metadata"]
    assert by_kind(docs)["ClusterRole"]["metadata"]["name"] == "team-qwen-operator"
    assert user_roles(template("userRoles.enabled=false")) == {}
    assert set(user_roles(template())) == {"qwen-operator-edit", "qwen-operator-view"}


def test_each_release_elects_on_its_own_lease_which_only_its_role_grants() -> None:
    """Two replicas by default; a release's Lease is named after it (two releases never share one),
    and its Role grants that Lease alone, in the release's namespace."""
    kinds = by_kind(template(release="team", namespace="team-ops"))
    deployment = kinds["Deployment"]
    assert deployment["spec"]["replicas"] == 2 and deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    env = {e["name"]: e for e in container(list(kinds.values()))["env"]}
    assert env["QWEN_OPERATOR_LEASE_NAME"]["value"] == "team-qwen-operator"
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    role, binding = kinds["Role"], kinds["RoleBinding"]
    assert role["metadata"]["namespace"] == "team-ops"
    named = [r for r in role["rules"] if r.get("resourceNames")]
    assert [r["resourceNames"] for r in named] == [["team-qwen-operator"]]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}  # fmt: skip
    assert binding["subjects"] == kinds["ClusterRoleBinding"]["subjects"]
