"""Every field of the spec has a bound, and a resource at all of them renders children that etcd
can store.

etcd takes at most 1.5 MiB a request; the apiserver writes each child as one. The largest child
is the StatefulSet, or with parallelism.pipeline above 1 the LeaderWorkerSet, which holds the pod
template twice (leader and workers). A free-form field would put no bound on it (a 1.4 MB
resource once rendered a 2.8 MB LeaderWorkerSet that could never be applied); the passed-through
Kubernetes types are typed (api/passthrough.py) so that the schema bounds every string, list and
map, and testkit/maximal.py builds the resource at every one of those bounds from the schema.
"""

from __future__ import annotations

import json
import re

import pytest

from qwen_operator import api
from qwen_operator.api import MAX_ENV_VALUE, MAX_QUALIFIED_NAME
from qwen_operator.api.vocabulary import Result
from qwen_operator.children import render
from qwen_operator.children.registry import OPTIONAL_CRDS
from qwen_operator.reconcile import decide
from testkit.fake import KEY, FakeCluster, reconciler
from testkit.maximal import (
    SOURCES,
    Source,
    maximal_resource,
    maximal_spec,
    spec_schema,
    value_from_sizes,
    walk,
)

ETCD_REQUEST_BYTES = decide.ETCD_REQUEST_BYTES
BUDGET_BYTES = decide.CHILD_BYTES_LIMIT
"""What a child may take at most: a third of etcd's limit stays for what the apiserver adds to
the object it stores (managedFields, which name every map key and env variable again; the
status the workload controllers write). The decision refuses to apply a child above it."""


def test_the_limits_are_etcds_and_a_third_below_it() -> None:
    assert (ETCD_REQUEST_BYTES, BUDGET_BYTES) == (1572864, 1 << 20)  # --max-request-bytes' default


def test_a_child_over_the_limit_is_stalled_with_its_size_and_nothing_is_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Unreachable through the CRD's bounds (the tests above); a resource admitted by an older CRD
    is reported, not applied and refused by etcd on every pass."""
    monkeypatch.setattr(decide, "CHILD_BYTES_LIMIT", 200_000)
    cluster = FakeCluster(maximal_spec(pipeline=1))
    cluster.crds.update(OPTIONAL_CRDS)
    out = reconciler(cluster).reconcile(KEY)
    assert cluster.applied() == [] and out.result == Result.BLOCKED
    stalled = cluster.condition("Stalled")
    assert stalled["reason"] == "ChildTooLarge"
    assert re.search(r"StatefulSet \S+ would be [\d,]+ bytes of JSON, over the 200,000", stalled["message"])


def test_every_string_list_and_map_of_the_spec_is_bounded() -> None:
    """What the apiserver enforces: maxLength, maxItems, maxProperties, and for a map's keys (which
    a CRD cannot give a maxLength) a CEL rule of the object holding the map."""
    for path, node in walk(spec_schema(), "spec"):
        assert not node.get("x-kubernetes-preserve-unknown-fields"), f"{path} is free-form: no bound"
        if node.get("type") == "string" or node.get("x-kubernetes-int-or-string"):
            assert "maxLength" in node or "enum" in node, f"{path} has no maxLength"
        if node.get("type") == "array":
            assert "maxItems" in node, f"{path} has no maxItems"
        for key, child in node.get("properties", {}).items():
            if "additionalProperties" in child:
                assert "maxProperties" in child, f"{path}.{key} has no maxProperties"
                rules = [r["rule"] for r in node.get("x-kubernetes-validations", [])]
                bound = f"self.{key}.all(k, k.size() <= {MAX_QUALIFIED_NAME}"
                assert any(bound in r for r in rules), f"{path}.{key}: no rule bounds its keys"


def test_the_maximal_resource_sits_at_the_bounds_and_is_valid() -> None:
    doc = maximal_resource()
    spec = api.parse_resource(doc).spec  # the CLI accepts it (e2e/test_crd.py: so does the apiserver)
    assert len(spec.runtime.env) == 64 and {len(e.value or "") for e in spec.runtime.env} == {MAX_ENV_VALUE}
    assert len({e.name for e in spec.runtime.env}) == 64  # distinct: the renderer keeps one per name
    assert len(spec.runtime.extra_args) == 64 and len(spec.scheduling.tolerations) == 32
    assert len(spec.scheduling.node_selector) == 64
    assert {len(k) for k in spec.scheduling.node_selector} == {MAX_QUALIFIED_NAME}
    affinity = spec.scheduling.affinity
    assert affinity is not None and affinity.pod_anti_affinity is not None
    terms = affinity.pod_anti_affinity.required_during_scheduling_ignored_during_execution
    assert terms is not None and len(terms) == api.MAX_POD_TERMS
    # an env variable is a value or a valueFrom: the value (4 KiB) is the longer
    assert max(value_from_sizes().values()) < MAX_ENV_VALUE


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("pipeline", [1, 2], ids=["statefulset", "leaderworkerset"])
def test_a_resource_at_every_bound_renders_children_etcd_can_store(pipeline: int, source: Source) -> None:
    doc = maximal_resource(pipeline, source)
    res = api.parse_resource(doc)
    sizes: dict[str, int] = {}
    for served in (frozenset(OPTIONAL_CRDS), frozenset()):  # KEDA's ScaledObject, or the HPA
        for child in render.render(res, served=served):  # of each kind, the largest (NetworkPolicies)
            size = len(json.dumps(child))
            sizes[child["kind"]] = max(sizes.get(child["kind"], 0), size)
    largest = max(sizes, key=lambda kind: sizes[kind])
    print(
        f"pipeline {pipeline}, {source}: the resource {len(json.dumps(doc))} B; the largest child, "
        f"{largest}, {sizes[largest]} B ({sizes[largest] / ETCD_REQUEST_BYTES:.0%} of etcd's limit); {sizes}"
    )
    assert largest == ("LeaderWorkerSet" if pipeline > 1 else "StatefulSet")
    for kind, size in sizes.items():
        assert size < ETCD_REQUEST_BYTES, f"{kind}: {size} B, over etcd's request limit"
        assert size <= BUDGET_BYTES, f"{kind}: {size} B leaves too little of etcd's limit to the apiserver"


def test_the_resource_itself_is_within_the_budget_of_a_child() -> None:
    """The resource is stored too (with its status and managedFields): at every bound, it leaves
    as much of etcd's limit as its largest child does."""
    assert len(json.dumps(maximal_resource())) <= BUDGET_BYTES
