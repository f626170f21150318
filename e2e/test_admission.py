"""Least privilege and the tenant policy on the apiserver (issue 22, items 2 and 4).

- The operator's admission policy (in the base `kubectl apply -k manifests/`, so the whole
  session's operator runs under it): as the operator's ServiceAccount (`kubectl --as`), what it
  must not write is refused, what it renders is admitted, and an admin is not concerned.
- Serving named namespaces (the chart's watchNamespaces, the kustomize component
  manifests/namespaced/): `kubectl auth can-i` says the ServiceAccount may create StatefulSets
  in the namespace it serves and not in another.
- The tenant policy (manifests/tenant-policy/ with testkit's parameters): each case of
  testkit/tenant_cases.py is refused at `kubectl apply` with the message `qwen-operator render
  --policy` gives for it (the CEL and the Python rules agree), and the samples and the cases at
  the edge of each rule are admitted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

pytest.register_assert_rewrite("e2e.operator_fixtures")

from e2e.devcluster.consumers import CHART, helm  # noqa: E402
from e2e.devcluster.kube import kubectl, wait_for  # noqa: E402
from e2e.devcluster.toolchain import build  # noqa: E402
from e2e.operator_fixtures import OPERATOR_NAMESPACE, OPERATOR_USER  # noqa: E402
from qwen_operator import api  # noqa: E402
from qwen_operator.admission import tenant  # noqa: E402
from qwen_operator.api.vocabulary import INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL  # noqa: E402
from qwen_operator.children import render  # noqa: E402
from testkit import tenant_cases  # noqa: E402
from testkit.tenant_cases import ADMITTED, CASES, Case  # noqa: E402

pytest_plugins = ("e2e.operator_fixtures",)
pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent
SAMPLES = sorted((REPO / "samples").glob("*.yaml"))
LABELS = {MANAGED_BY_LABEL: MANAGED_BY, INSTANCE_LABEL: "q"}
OWN_ACCOUNT = render.service_account_name("q")
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def as_operator(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """kubectl as the operator's ServiceAccount (impersonated by the admin)."""
    return kubectl(*args, f"--as={OPERATOR_USER}", stdin=stdin, check=False)


def statefulset(name: str, labels: dict[str, str], **pod: Any) -> dict[str, Any]:
    """A StatefulSet shaped as the operator renders one: the resource's own ServiceAccount, no token."""
    selector = {"app": name}
    spec = {"serviceAccountName": OWN_ACCOUNT, "automountServiceAccountToken": False,
            "containers": [{"name": "c", "image": "busybox"}], **pod}  # fmt: skip
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "labels": labels},
        "spec": {"selector": {"matchLabels": selector}, "serviceName": name,
                 "template": {"metadata": {"labels": selector}, "spec": spec}},
    }  # fmt: skip


def create_as_operator(namespace: str, obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """A create (no GET first: the ServiceAccount may not get), server-side dry run: admission runs."""
    return as_operator("create", "--dry-run=server", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(obj))


@pytest.fixture(scope="module")
def operator_policy_active(operator_installed: None, namespace_for_module: str) -> str:
    """The base's policy is installed (operator_installed) and in force: a policy reaches the
    apiserver's admission a moment after it is created."""
    del operator_installed
    wait_for(
        lambda: create_as_operator(namespace_for_module, statefulset("probe", {})).returncode != 0,
        timeout=30, describe="the operator's admission policy in force",
    )  # fmt: skip
    return namespace_for_module


@pytest.fixture(scope="module")
def namespace_for_module(core_v1: client.CoreV1Api) -> Iterator[str]:
    name = f"e2e-admission-{uuid.uuid4().hex[:5]}"
    core_v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core_v1.delete_namespace(name, propagation_policy="Background")


_HOST_PATH = [{"name": "h", "hostPath": {"path": "/etc"}}]
_PRIVILEGED = [{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}]
_KUBE_SYSTEM_SERVICE = {
    "apiVersion": "v1", "kind": "Service", "metadata": {"name": "coredns-x", "labels": LABELS},
    "spec": {"ports": [{"port": 53}]},
}  # fmt: skip
REFUSED_TO_THE_OPERATOR = [
    ("unlabelled-statefulset", statefulset("unlabelled", {}), None, "may write only objects labelled"),
    ("host-path", statefulset("host-path", LABELS, volumes=_HOST_PATH), None, "hostPath"),
    ("kube-system-service", _KUBE_SYSTEM_SERVICE, "kube-system", "may write nothing in kube-system"),
    ("host-network", statefulset("host-network", LABELS, hostNetwork=True), None, "host's network"),
    (
        "other-service-account",
        statefulset("sa", LABELS, serviceAccountName="admin"),
        None,
        "the resource's own ServiceAccount",
    ),
    ("token", statefulset("token", LABELS, automountServiceAccountToken=True), None, "without its token"),
    ("privileged", statefulset("privileged", LABELS, containers=_PRIVILEGED), None, "privileged"),
    (
        "unlabelled-configmap",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}},
        None,
        "labelled",
    ),
]


@pytest.mark.parametrize(
    ("obj", "namespace_", "refusal"),
    [c[1:] for c in REFUSED_TO_THE_OPERATOR],
    ids=[c[0] for c in REFUSED_TO_THE_OPERATOR],
)
def test_the_operators_service_account_is_refused_what_it_never_renders(
    operator_policy_active: str, obj: dict[str, Any], namespace_: str | None, refusal: str
) -> None:
    """RBAC lets the ServiceAccount create each of these (it may create StatefulSets, Services
    and ConfigMaps everywhere); the admission policy refuses them, naming the rule."""
    ns = namespace_ or operator_policy_active
    verb, group = ("create", "apps") if obj["kind"] == "StatefulSet" else ("create", "")
    plural = {"StatefulSet": "statefulsets", "Service": "services", "ConfigMap": "configmaps"}[obj["kind"]]
    allowed = kubectl("auth", "can-i", verb, f"{plural}.{group}" if group else plural, "-n", ns,
                      f"--as={OPERATOR_USER}", check=False)  # fmt: skip
    assert allowed.stdout.strip() == "yes"  # RBAC says yes: the refusal is the policy's
    done = create_as_operator(ns, obj)
    assert done.returncode != 0, done.stdout
    assert "ValidatingAdmissionPolicy 'qwen-operator-writes'" in done.stderr and refusal in done.stderr, (
        done.stderr
    )


def test_what_the_operator_renders_is_admitted_and_an_admin_is_not_concerned(
    operator_policy_active: str,
) -> None:
    ns = operator_policy_active
    done = create_as_operator(ns, statefulset("ours", LABELS))
    assert done.returncode == 0, done.stderr
    done = kubectl(
        "create", "--dry-run=server", "-n", ns, "-f", "-", stdin=yaml.safe_dump(statefulset("x", {}))
    )
    assert done.returncode == 0  # the policy matches the operator's requests only


def test_the_operator_may_not_take_over_an_object_by_labelling_it(
    operator_policy_active: str, api_client: client.ApiClient
) -> None:
    """An update that adds the label to someone else's object is refused (the confused deputy of
    issue 22: a child's name held by a foreign object). A PATCH as the operator sends it, without
    the GET `kubectl patch` makes first (the ServiceAccount may not get)."""
    ns = operator_policy_active
    kubectl("create", "configmap", "payments-launcher", "-n", ns, "--from-literal=payments.conf=x")
    impersonating = client.ApiClient(api_client.configuration)
    impersonating.set_default_header("Impersonate-User", OPERATOR_USER)
    core = client.CoreV1Api(impersonating)
    body = {"metadata": {"labels": LABELS}, "data": {"launcher.py": "x"}}
    with pytest.raises(client.ApiException) as refused:
        core.patch_namespaced_config_map("payments-launcher", ns, body, dry_run="All")
    assert refused.value.status == 422  # a policy's refusal is Invalid, unless it names another reason
    assert "may not take over an object it did not create" in str(refused.value.body), refused.value.body
    mine = {"metadata": {"name": "mine", "labels": LABELS}, "data": {"a": "b"}}
    core.create_namespaced_config_map(ns, mine)  # its own: created, then updated
    core.patch_namespaced_config_map("mine", ns, {"data": {"a": "c"}})
    data = kubectl("get", "configmap", "payments-launcher", "-n", ns, "-o", "jsonpath={.data}").stdout
    assert json.loads(data) == {"payments.conf": "x"}


# -- serving named namespaces ---------------------------------------------------------------


def can_i(user: str, *what: str, namespace: str | None) -> str:
    """`kubectl auth can-i` as `user`: yes or no."""
    where = ["-n", namespace] if namespace else []
    return str(kubectl("auth", "can-i", *what, *where, f"--as={user}", check=False).stdout.strip())


@pytest.fixture
def two_namespaces(core_v1: client.CoreV1Api) -> Iterator[tuple[str, str]]:
    """Namespaces a (served) and b (not); a RoleBinding needs its namespace to exist."""
    suffix = uuid.uuid4().hex[:5]
    names = (f"e2e-served-{suffix}", f"e2e-other-{suffix}")
    for name in names:
        core_v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield names
    for name in names:
        core_v1.delete_namespace(name, propagation_policy="Background")


def apply_rbac(rendered: str) -> str:
    """Apply the RBAC objects (and ServiceAccount) of a rendering; returns them, to delete."""
    objs = [d for d in docs(rendered) if d["kind"] in RBAC_KINDS]
    text = yaml.safe_dump_all(objs)
    kubectl("apply", "-f", "-", stdin=text)
    return text


def assert_served_only(user: str, served: str, other: str) -> None:
    wait_for(
        lambda: can_i(user, "create", "statefulsets.apps", namespace=served) == "yes",
        30,
        f"{user} bound in {served}",
    )
    assert can_i(user, "create", "statefulsets.apps", namespace=other) == "no"
    assert can_i(user, "patch", "services", namespace=other) == "no"
    assert can_i(user, "list", "pods", namespace=other) == "no"
    assert can_i(user, "create", "statefulsets.apps", namespace="kube-system") == "no"
    status = ("patch", "qwenthinkingdeployments.serving.qwen-operator.io", "--subresource=status")
    assert can_i(user, *status, namespace=served) == "yes"
    assert can_i(user, *status, namespace=other) == "no"
    assert can_i(user, "list", "nodes", namespace=None) == "yes"  # cluster-scoped reads stay cluster-wide
    assert can_i(user, "watch", "namespaces", namespace=None) == "yes"  # Kopf's, serving named namespaces
    assert can_i(user, "get", "secrets", namespace=served) == "no"


def test_the_chart_serving_a_namespace_grants_nothing_in_another(
    two_namespaces: tuple[str, str], core_v1: client.CoreV1Api
) -> None:
    served, other = two_namespaces
    release, op_ns = f"ns-{uuid.uuid4().hex[:4]}", f"e2e-chart-ops-{uuid.uuid4().hex[:5]}"
    core_v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=op_ns)))
    rendered = helm(
        "template", release, str(CHART), "-n", op_ns, "--set", f"watchNamespaces={{{served}}}"
    ).stdout
    applied = ""
    try:
        applied = apply_rbac(rendered)
        assert_served_only(f"system:serviceaccount:{op_ns}:{release}-qwen-operator", served, other)
    finally:
        if applied:
            kubectl("delete", "-f", "-", "--wait=false", stdin=applied, check=False)
        core_v1.delete_namespace(op_ns, propagation_policy="Background")


def test_the_kustomize_component_serving_a_namespace_grants_nothing_in_another(
    two_namespaces: tuple[str, str], tmp_path: Path
) -> None:
    """As docs/security.md says: the component enabled in manifests/kustomization.yaml, the
    namespace `llm` of manifests/namespaced/ replaced by the one served. A kustomization around
    it prefixes the names, so that its ServiceAccount is not the session operator's (which the
    base binds everywhere)."""
    served, other = two_namespaces
    copy = tmp_path / "manifests"
    shutil.copytree(REPO / "manifests", copy, ignore=shutil.ignore_patterns("helm"))
    base = copy / "kustomization.yaml"
    text = base.read_text()
    assert "# components:\n# - namespaced\n" in text
    base.write_text(text.replace("# components:\n# - namespaced\n", "components:\n- namespaced\n"))
    for name in ("kustomization.yaml", "rolebindings.yaml"):
        path = copy / "namespaced" / name
        path.write_text(path.read_text().replace("llm", served))
    prefix = f"e2e-{uuid.uuid4().hex[:4]}-"
    (tmp_path / "wrap").mkdir()
    (tmp_path / "wrap" / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": ["../manifests"], "namePrefix": prefix})
    )
    kubectl_bin = build.binary("kubectl")
    rendered = subprocess.run([str(kubectl_bin), "kustomize", str(tmp_path / "wrap")], capture_output=True,
                              text=True, check=True, timeout=60).stdout  # fmt: skip
    deployment = next(d for d in docs(rendered) if d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["args"] == ["run", "--namespace", served]
    bindings = [d for d in docs(rendered) if d["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert f"{prefix}qwen-operator" not in {
        d["metadata"]["name"] for d in bindings if d["kind"] == "ClusterRoleBinding"
    }
    applied = ""
    try:
        applied = apply_rbac(rendered)
        assert_served_only(f"system:serviceaccount:{OPERATOR_NAMESPACE}:{prefix}qwen-operator", served, other)
    finally:
        if applied:
            kubectl("delete", "-f", "-", "--wait=false", stdin=applied, check=False)


# -- the tenant policy ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tenant_policy(crd_installed: list[str], namespace_for_module: str) -> Iterator[str]:
    """manifests/tenant-policy/ as shipped but for its parameters (testkit's), for this module's
    tests only; in force once a case is refused. Removed afterwards (it binds every namespace)."""
    del crd_installed
    rendered = kubectl("kustomize", str(REPO / "manifests" / "tenant-policy")).stdout
    objs = docs(rendered)
    (params,) = [d for d in objs if d["kind"] == "ConfigMap"]
    params["data"] = dict(tenant_cases.PARAMS)
    text = yaml.safe_dump_all(objs)
    kubectl("apply", "-f", "-", stdin=text)
    probe = yaml.safe_dump(CASES[0].document())
    try:
        wait_for(
            lambda: kubectl("apply", "--dry-run=server", "-n", namespace_for_module, "-f", "-", stdin=probe,
                            check=False).returncode != 0,
            timeout=30, describe="the tenant policy in force",
        )  # fmt: skip
        yield namespace_for_module
    finally:
        kubectl("delete", "-f", "-", "--wait=true", stdin=text, check=False)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_tenant_policy_refuses_each_case_with_the_clis_message(tenant_policy: str, case: Case) -> None:
    """The CEL (apiserver) and Python (`render --policy`) rules agree: the apiserver's refusal at
    `kubectl apply` carries exactly the message the CLI gives, which names the rule's parameter."""
    (expected,) = tenant.violations(api.parse_resource(case.document()), tenant.Params(tenant_cases.PARAMS))
    done = kubectl(
        "apply", "-n", tenant_policy, "-f", "-", stdin=yaml.safe_dump(case.document()), check=False
    )
    assert done.returncode != 0, done.stdout
    assert expected in done.stderr, done.stderr
    assert f"({case.param}" in done.stderr and "qwen-operator-tenant-policy" in done.stderr


@pytest.mark.parametrize(("case_id", "spec"), ADMITTED, ids=[c for c, _ in ADMITTED])
def test_the_tenant_policy_admits_what_sits_at_the_edge_of_each_rule(
    tenant_policy: str, case_id: str, spec: dict[str, Any]
) -> None:
    doc = yaml.safe_dump(tenant_cases.admitted(case_id, spec))
    done = kubectl("apply", "--dry-run=server", "-n", tenant_policy, "-f", "-", stdin=doc, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_the_tenant_policy_admits_the_samples(tenant_policy: str, sample: Path) -> None:
    done = kubectl("apply", "--dry-run=server", "-n", tenant_policy, "-f", str(sample), check=False)
    assert done.returncode == 0, done.stderr


def test_the_tenant_policy_refuses_an_update_too(tenant_policy: str) -> None:
    """Created within the policy, then changed outside it: refused, and the resource unchanged."""
    doc = tenant_cases.admitted("update", {})
    kubectl("apply", "-n", tenant_policy, "-f", "-", stdin=yaml.safe_dump(doc))
    doc["spec"] = {"service": {"type": "NodePort"}, "auth": {"apiKeySecretRef": {"name": "k", "key": "k"}}}
    done = kubectl("apply", "-n", tenant_policy, "-f", "-", stdin=yaml.safe_dump(doc), check=False)
    assert done.returncode != 0 and "(allowedServiceTypes)" in done.stderr, done.stderr
    kubectl("delete", "qtd", doc["metadata"]["name"], "-n", tenant_policy, "--wait=false")
