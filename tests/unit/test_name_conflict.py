"""Objects that hold a child's name but are not ours: looked up before the first apply, never
written, never adopted (issue: a tenant who names a resource `payments` must not take over
Service `payments`). The fake's watches show only objects with the operator's labels, as the
real cache does, so an unlabelled object is found only by the plan's lookup."""

from __future__ import annotations

import copy
from typing import Any

from qwen_operator import api
from qwen_operator.api.vocabulary import INSTANCE_LABEL, MANAGED_LABELS, Result
from qwen_operator.children import render
from qwen_operator.reconcile import decide, observe
from qwen_operator.reconcile.decide import NAME_CONFLICT_RECHECK_SECONDS
from qwen_operator.reconcile.plan import Apply, Lookup
from testkit.fake import KEY, FakeCluster, Sources, reconciler
from testkit.wrappers import NAME, NS, UID, resource_raw

FOREIGN_KINDS = ("Service", "PodDisruptionBudget", "ConfigMap")


def children() -> list[tuple[str, str]]:
    """(kind, name) of each child the renderer gives this resource."""
    res = api.parse_resource(resource_raw())
    return [(m["kind"], m["metadata"]["name"]) for m in render.render(res)]


def child_names() -> dict[str, str]:
    """A child's name for each kind (the first, for the two Services)."""
    return {kind: name for kind, name in reversed(children())}


def foreign(kind: str, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A tenant's object: no owner, another field manager, its own labels."""
    meta = {"name": name, "namespace": NS, "uid": f"theirs-{kind}", "resourceVersion": "7",
            "labels": labels if labels is not None else {"app": "payments"},
            "managedFields": [{"manager": "kubectl-create", "operation": "Update"}]}  # fmt: skip
    return {"kind": kind, "metadata": meta, "spec": {"selector": {"app": "payments"}}, "data": {"x": "1"}}


def with_foreign(*kinds: str) -> tuple[FakeCluster, dict[tuple[str, str], dict[str, Any]]]:
    cluster = FakeCluster()
    names = child_names()
    planted = {(kind, names[kind]): foreign(kind, names[kind]) for kind in kinds}
    cluster.objects.update(copy.deepcopy(planted))
    return cluster, planted


def test_foreign_objects_of_a_childs_name_are_left_byte_for_byte_alone() -> None:
    cluster, planted = with_foreign(*FOREIGN_KINDS)
    out = reconciler(cluster).reconcile(KEY)
    assert out.result == Result.BLOCKED and cluster.applied() == []
    assert [c for c in cluster.writes() if c != ("patch", "status") and c[1] != "Event"] == []
    for key, obj in planted.items():
        assert cluster.objects[key] == obj, key
    stalled = cluster.condition("Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "NameConflict"
    for kind, name in planted:
        assert f"{kind} {name}" in stalled["message"]
    assert out.recheck_after == NAME_CONFLICT_RECHECK_SECONDS  # no watch tells when it goes away


def test_nothing_at_all_is_applied_while_one_name_is_held() -> None:
    """Not even the children whose names are free: a half-built resource helps nobody."""
    cluster, _ = with_foreign("PodDisruptionBudget")
    reconciler(cluster).reconcile(KEY)
    assert cluster.applied() == [] and ("StatefulSet", NAME) not in cluster.objects


def test_the_name_freed_lets_the_next_pass_create_everything() -> None:
    cluster, planted = with_foreign("Service")
    reconciler(cluster).reconcile(KEY)
    del cluster.objects[next(iter(planted))]
    out = reconciler(cluster).reconcile(KEY)
    assert out.result == Result.CHANGED and "Service" in cluster.applied()
    assert cluster.condition("Stalled").get("reason") != "NameConflict"


def test_an_object_with_our_labels_but_another_instance_is_not_ours() -> None:
    names = child_names()
    labels = {**MANAGED_LABELS, INSTANCE_LABEL: "someone-else"}
    cluster = FakeCluster()
    cluster.objects[("Service", names["Service"])] = foreign("Service", names["Service"], labels)
    assert reconciler(cluster).reconcile(KEY).result == Result.BLOCKED
    assert cluster.condition("Stalled")["reason"] == "NameConflict"


def test_a_child_ours_that_the_watch_has_not_shown_yet_is_applied() -> None:
    """Found by the lookup with this resource as its controller (the watch lags): ours."""
    cluster = FakeCluster()
    reconciler(cluster).reconcile(KEY)
    svc = cluster.objects[("Service", NAME)]
    svc["metadata"]["labels"] = {}  # invisible to the watches, still ours by its owner reference
    assert svc["metadata"]["ownerReferences"][0]["uid"] == UID
    out = reconciler(cluster).reconcile(KEY)
    assert out.result != Result.BLOCKED and "Service" in cluster.applied()
    assert cluster.objects[("Service", NAME)]["metadata"]["labels"][INSTANCE_LABEL] == NAME


def test_lookups_come_first_and_only_for_children_the_cache_lacks() -> None:
    cluster = FakeCluster()
    reconciler(cluster).reconcile(KEY)
    gets = [c for c in cluster.calls if c[0] == "get"]
    assert sorted(kind for _, kind in gets) == sorted(kind for kind, _ in children())  # one per child
    first_write = next(i for i, c in enumerate(cluster.calls) if c[0] != "get")
    assert all(c[0] == "get" for c in cluster.calls[:first_write]) and len(gets) == first_write
    cluster.calls.clear()
    reconciler(cluster).reconcile(KEY)  # every child cached: no lookup
    assert [c for c in cluster.calls if c[0] == "get"] == []


def test_the_plan_puts_every_lookup_before_every_write() -> None:
    observed = observe.observe(KEY, Sources(FakeCluster()))
    assert observed is not None
    ops = decide.decide(observed, decide.clock.now()).ops
    kinds = [type(op) for op in ops]
    assert Lookup in kinds and Apply in kinds
    assert kinds.index(Apply) > max(i for i, k in enumerate(kinds) if k is Lookup)
