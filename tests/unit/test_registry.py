"""The registry of child kinds is the one table: RBAC, API paths, rendering and pruning follow it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from qwen_operator.api import vocabulary
from qwen_operator.children import registry, render
from qwen_operator.process import handlers, kube
from testkit.wrappers import resource_raw

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_ROLE = ROOT / "manifests" / "clusterrole.yaml"
CHART_CLUSTER_ROLE = ROOT / "manifests" / "helm" / "qwen-operator" / "files" / "clusterrole.yaml"
CLUSTER_SCOPED_ROLE = ROOT / "manifests" / "clusterrole-cluster.yaml"
CHART_CLUSTER_SCOPED_ROLE = CHART_CLUSTER_ROLE.parent / "clusterrole-cluster.yaml"
Rules = dict[tuple[str, str], frozenset[str]]


def rules_of(role: dict[str, object]) -> Rules:
    """(API group, resource) -> verbs, failing on a wildcard or a rule named twice."""
    out: Rules = {}
    for rule in role["rules"]:  # type: ignore[attr-defined]
        assert "resourceNames" not in rule, rule
        for group in rule["apiGroups"]:
            for res in rule["resources"]:
                assert "*" not in (group, res, *rule["verbs"]), rule
                assert (group, res) not in out, f"{group}/{res} is in two rules"
                out[(group, res)] = frozenset(rule["verbs"])
    return out


def needed(access: tuple[registry.Access, ...] | None = None) -> Rules:
    return {(a.group, a.resource): a.verbs for a in (registry.access() if access is None else access)}


@pytest.mark.parametrize(
    ("path", "access"),
    [
        (CLUSTER_ROLE, registry.access()),
        (CHART_CLUSTER_ROLE, registry.access()),
        (CLUSTER_SCOPED_ROLE, registry.cluster_access()),
        (CHART_CLUSTER_SCOPED_ROLE, registry.cluster_access()),
    ],
    ids=["kustomize", "chart", "kustomize-cluster-scoped", "chart-cluster-scoped"],
)
def test_the_cluster_roles_grant_exactly_what_the_registry_needs(
    path: Path, access: tuple[registry.Access, ...]
) -> None:
    granted = rules_of(yaml.safe_load(path.read_text()))
    want = needed(access)
    missing = {k: v - granted.get(k, frozenset()) for k, v in want.items() if v - granted.get(k, frozenset())}
    extra = {k: v - want.get(k, frozenset()) for k, v in granted.items() if v - want.get(k, frozenset())}
    assert (missing, extra) == ({}, {})


def test_the_chart_reads_the_kustomize_rules_through_a_link() -> None:
    """The chart's rules are the kustomize base's file, not a copy that could drift."""
    for chart, base in ((CHART_CLUSTER_ROLE, CLUSTER_ROLE), (CHART_CLUSTER_SCOPED_ROLE, CLUSTER_SCOPED_ROLE)):
        assert chart.is_symlink()
        assert Path(os.path.realpath(chart)) == base.resolve()


def test_namespaced_and_cluster_scoped_rules_are_apart() -> None:
    """A RoleBinding grants a ClusterRole's rules in one namespace, so serving named namespaces
    the namespaced rules must hold nothing cluster-scoped (it would be granted nowhere) and the
    cluster-wide ones nothing namespaced (it would be granted everywhere)."""
    namespaced = {(a.group, a.resource) for a in registry.access()}
    cluster = {(a.group, a.resource) for a in registry.cluster_access()}
    reviews = {("authentication.k8s.io", "tokenreviews"), ("authorization.k8s.io", "subjectaccessreviews")}
    assert cluster == {("", "nodes"), ("apiextensions.k8s.io", "customresourcedefinitions"), *reviews}
    assert not namespaced & cluster
    for a in registry.cluster_access():  # nothing stored is written: a review is answered, not kept
        assert a.verbs <= ({"create"} if (a.group, a.resource) in reviews else {"list", "watch"})


def test_a_dropped_verb_or_an_extra_rule_is_caught() -> None:
    role = yaml.safe_load(CLUSTER_ROLE.read_text())
    statefulsets = next(r for r in role["rules"] if r["resources"] == ["statefulsets"])
    statefulsets["verbs"].remove("delete")
    role["rules"].append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]})
    granted = rules_of(role)
    assert granted[("apps", "statefulsets")] != needed()[("apps", "statefulsets")]
    assert ("", "secrets") not in needed()


def test_every_template_belongs_to_one_kind_and_renders_that_kind() -> None:
    files = [t.file for _, t in registry.TEMPLATES]
    assert len(files) == len(set(files))
    templates = ROOT / "operator" / "qwen_operator" / "children" / "templates"
    assert set(files) == {p.name for p in templates.glob("*.yaml.j2")}
    served = frozenset(registry.OPTIONAL_CRDS)
    pool = {"endpointPickerRef": {"name": "epp", "port": {"number": 9002}}}
    key = {"apiKeySecretRef": {"name": "qwen-api-key", "key": "key"}}
    spec = {
        "autoscaling": {"maxReplicas": 3},
        "inferencePool": pool,
        "auth": key,
        "monitoring": {"prometheusRule": True},
    }
    kinds = {m["kind"]: m["apiVersion"] for m in render.render(resource_raw(spec), served=served)}
    for kind, api_version in kinds.items():
        assert registry.BY_KIND[kind].api_version == api_version


def test_the_api_paths_the_kinds_the_watches_and_the_optional_crds_come_from_the_registry() -> None:
    for child in registry.KINDS:
        assert kube.path(child.kind, "ns", "n") == f"{child.path_prefix}/namespaces/ns/{child.plural}/n"
    always = [(c.group, c.version, c.plural) for c in registry.KINDS if c.crd is None]
    optional = [(c.group, c.version, c.plural, c.kind, c.crd) for c in registry.KINDS if c.crd is not None]
    assert list(handlers.CHILDREN) == always  # Kopf watches them
    assert list(handlers.OPTIONAL_CHILDREN) == optional  # optional_kinds.py watches them
    assert set(registry.OPTIONAL_CRDS) == {
        vocabulary.SERVICE_MONITOR_CRD, vocabulary.PROMETHEUS_RULE_CRD, vocabulary.SCALED_OBJECT_CRD,
        vocabulary.INFERENCE_POOL_CRD, vocabulary.LWS_CRD,
    }  # fmt: skip
    for crd in registry.OPTIONAL_CRDS:
        kind = next(c for c in registry.KINDS if c.crd == crd)
        assert crd == f"{kind.plural}.{kind.group}"


def test_the_workloads_are_replaced_and_deleted_the_pruned_kinds_too() -> None:
    assert {"StatefulSet", vocabulary.LWS_KIND} == registry.WORKLOAD_KINDS
    assert registry.BY_KIND["StatefulSet"].replaced == registry.Propagation.ORPHAN
    assert all(registry.BY_KIND[k].deleted for k in registry.PRUNED_KINDS | registry.WORKLOAD_KINDS)
    assert not registry.BY_KIND["PersistentVolumeClaim"].deleted  # the weights claim outlives every change
