"""The admission policies: the checked-in manifests are what qwen_operator.admission generates,
the operator's policy covers every child it writes, and the tenant policy's Python rules (what
`qwen-operator render --policy` runs) refuse the tenant corpus and admit the samples.

That the apiserver's CEL refuses the same cases with the same messages, and that the operator
runs under its policy, is proven on a cluster by e2e/test_admission.py and e2e/test_operator.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from qwen_operator import api, cli
from qwen_operator.admission import operator_writes, tenant
from qwen_operator.api.vocabulary import INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL
from qwen_operator.children import registry, render
from testkit import tenant_cases
from testkit.tenant_cases import ADMITTED, CASES, PARAMS, Case
from testkit.wrappers import resource_raw

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
SAMPLES = sorted((REPO / "samples").glob("*.yaml"))
SHIPPED_PARAMS = MANIFESTS / "tenant-policy" / "params.yaml"


def load(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("which", ["operator", "tenant"])
def test_the_checked_in_policies_are_generated(which: str) -> None:
    """`make policies` writes them; their bindings (hand-written, commented) say the same as the code."""
    where = MANIFESTS if which == "operator" else MANIFESTS / "tenant-policy"
    assert (where / "validatingadmissionpolicy.yaml").read_text() == cli.policy_yaml(which), "make policies"
    source = operator_writes if which == "operator" else tenant
    assert load(where / "validatingadmissionpolicybinding.yaml") == source.binding()


def test_the_operator_policy_matches_every_child_kind_and_only_the_operators_requests() -> None:
    policy = operator_writes.policy()
    matched = {
        (g, r) for rule in policy["spec"]["matchConstraints"]["resourceRules"]
        for g in rule["apiGroups"] for r in rule["resources"]
    }  # fmt: skip
    assert matched == {(c.group, c.plural) for c in registry.KINDS}
    assert all(set(r["operations"]) == {"CREATE", "UPDATE", "DELETE"}
               for r in policy["spec"]["matchConstraints"]["resourceRules"])  # fmt: skip
    (condition,) = policy["spec"]["matchConditions"]
    sa = load(MANIFESTS / "serviceaccount.yaml")["metadata"]
    assert condition["expression"] == (
        f"request.userInfo.username == 'system:serviceaccount:{sa['namespace']}:{sa['name']}'"
    )
    deployment = load(MANIFESTS / "deployment.yaml")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == sa["name"]
    text = yaml.safe_dump(policy)
    for word in ("kube-system", "kube-public", "kube-node-lease", "hostPath", "hostNetwork", "hostPID",
                 "privileged", "serviceAccountName", MANAGED_BY_LABEL):  # fmt: skip
        assert word in text, word


def _pod_spec_paths(obj: Any, path: str = "") -> set[str]:
    """Where a rendered child holds pod specs (a mapping with `containers`)."""
    if isinstance(obj, dict):
        here = {path.lstrip(".")} if "containers" in obj else set()
        return here.union(*(_pod_spec_paths(v, f"{path}.{k}") for k, v in obj.items()))
    if isinstance(obj, list):
        return set().union(*(_pod_spec_paths(v, path) for v in obj))
    return set()


@pytest.mark.parametrize("pipeline", [1, 2])
def test_every_pod_template_the_operator_renders_is_one_the_policy_reads_and_passes(pipeline: int) -> None:
    """The policy looks at the pod specs where the children have them (a new workload kind
    without an entry in POD_TEMPLATES fails here), and what the operator renders passes each
    pod rule as the policy states it: labelled, no ServiceAccount, no token, no host access."""
    spec = {"parallelism": {"pipeline": pipeline}, "model": {"cache": {"mode": "Shared"}}}
    children = render.render(resource_raw(spec), served=frozenset(registry.OPTIONAL_CRDS))
    seen = set()
    for child in children:
        assert child["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY, child["kind"]
        kind = registry.BY_KIND[child["kind"]]
        paths = _pod_spec_paths(child)
        if not paths:
            continue
        seen.add(child["kind"])
        assert {p for p, _ in operator_writes.POD_TEMPLATES[(kind.group, kind.plural)]} >= paths
        for path in paths:
            pod: Any = child
            for key in path.split("."):
                pod = pod[key]
            own = render.service_account_name(child["metadata"]["labels"][INSTANCE_LABEL])
            assert pod["serviceAccountName"] == own
            assert pod["automountServiceAccountToken"] is False
            assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
            assert not any("hostPath" in v for v in pod.get("volumes", []))
            for c in [*pod["containers"], *pod.get("initContainers", [])]:
                assert not (c.get("securityContext") or {}).get("privileged")
    assert seen == ({"StatefulSet", "Job"} if pipeline == 1 else {"LeaderWorkerSet", "Job"})


# -- the tenant policy in Python -------------------------------------------------------------


def test_the_corpus_covers_every_rule_and_the_shipped_params_are_valid() -> None:
    assert set(tenant_cases.by_param()) == {r.key for r in tenant.RULES}
    assert set(PARAMS) == set(tenant.KEYS)
    shipped = tenant.Params.from_configmap(load(SHIPPED_PARAMS))
    assert load(SHIPPED_PARAMS)["metadata"] == {"name": tenant.NAME, "namespace": tenant.NAMESPACE}
    assert not shipped.enforced(tenant.MODELS)  # default: any model
    print(f"{len(CASES)} tenant cases: {tenant_cases.by_param()}")


def _write(tmp_path: Path, name: str, doc: dict[str, Any]) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return str(path)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_render_with_the_policy_refuses_each_tenant_case_naming_its_rule(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The resource is valid (the CRD's rules admit it, render renders it without a policy);
    under the tenant policy it is refused, the message starting with the field and naming the
    parameter whose rule refused it."""
    resource_file = _write(tmp_path, "res.yaml", case.document())
    assert cli.main(["render", "-f", resource_file]) == 0
    capsys.readouterr()
    policy_file = _write(tmp_path, "params.yaml", tenant_cases.configmap())
    assert cli.main(["render", "-f", resource_file, "--policy", policy_file]) == cli.EXIT_INVALID
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {case.field}: "), err
    assert f"({case.param}" in err and "tenant policy" in err, err
    (message,) = tenant.violations(api.parse_resource(case.document()), tenant.Params(PARAMS))
    assert err == f"error: {message}"


@pytest.mark.parametrize(("case_id", "spec"), ADMITTED, ids=[c for c, _ in ADMITTED])
def test_the_same_params_admit_what_sits_at_the_edge_of_each_rule(case_id: str, spec: dict[str, Any]) -> None:
    res = api.parse_resource(tenant_cases.admitted(case_id, spec))
    assert tenant.violations(res, tenant.Params(PARAMS)) == []


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.stem for p in SAMPLES])
@pytest.mark.parametrize("params", ["corpus", "shipped"])
def test_the_samples_pass_the_policy(sample: Path, params: str, tmp_path: Path) -> None:
    policy_file = (
        _write(tmp_path, "params.yaml", tenant_cases.configmap())
        if params == "corpus"
        else str(SHIPPED_PARAMS)
    )
    assert cli.main(["render", "-f", str(sample), "--policy", policy_file]) == 0


def test_without_parameters_no_rule_is_enforced_and_trust_remote_code_is_refused() -> None:
    """A parameter left out leaves its rule off, but --trust-remote-code is refused unless the
    policy says "true": the one switch that is off by default."""
    nothing = tenant.Params({})
    trusting = tenant.Params({tenant.TRUST_REMOTE_CODE: " True "})
    for case in CASES:
        res = api.parse_resource(case.document())
        expected = 1 if case.param == tenant.TRUST_REMOTE_CODE else 0
        assert len(tenant.violations(res, nothing)) == expected, case.id
        assert tenant.violations(res, trusting) == [], case.id


def test_an_empty_list_allows_nothing() -> None:
    res = api.parse_resource(tenant_cases.admitted("x", {"service": {"type": "ClusterIP"}}))
    (message,) = tenant.violations(res, tenant.Params({tenant.SERVICE_TYPES: " , "}))
    assert message.startswith('spec.service.type: Service type "ClusterIP"')


@pytest.mark.parametrize(
    ("doc", "complaint"),
    [
        ({"kind": "Secret", "data": {}}, "ConfigMap"),
        ({"kind": "ConfigMap", "data": {"allowedImages": "x"}}, "unknown key 'allowedImages'"),
        ({"kind": "ConfigMap", "data": {"allowedModels": 1}}, "string"),
    ],
)
def test_render_refuses_a_policy_file_that_is_no_tenant_policy(
    doc: dict[str, Any], complaint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy_file = _write(tmp_path, "params.yaml", {"apiVersion": "v1", "metadata": {"name": "p"}, **doc})
    sample = str(SAMPLES[0])
    assert cli.main(["render", "-f", sample, "--policy", policy_file]) == cli.EXIT_INVALID
    err = capsys.readouterr().err
    assert err.startswith(f"error: --policy {policy_file}: ") and complaint in err, err


def test_the_rules_messages_in_cel_are_the_python_messages() -> None:
    """Each CEL message expression builds the Python message: the same words around the same
    value (the e2e suite compares them on the apiserver; here, their fixed parts)."""
    for rule in tenant.RULES:
        assert f"({rule.key}" in rule.message_cel
        assert "is not allowed by the tenant policy" in rule.message_cel
    assert [v["expression"] for v in tenant.policy()["spec"]["validations"][1:]] == [
        r.cel for r in tenant.RULES
    ]
