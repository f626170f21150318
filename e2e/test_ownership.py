"""Objects that hold a child's name but are not ours (issue 22): never written, never adopted,
never deleted with the resource.

A tenant's Service, PodDisruptionBudget and ConfigMap, without the operator's labels, carry the
names the resource's children would take. The operator's watches select its labels, so only its
lookup before a first apply can find them; it must leave each one as it was (the whole object,
resourceVersion included), report `Stalled NameConflict` naming them, write no other child,
and the three must survive the resource's deletion (no owner reference of ours on them). The
orphan-then-reapply adoption (ours, found in the cache) is e2e/test_operator.py's
`test_recreated_resource_adopts_the_orphaned_children`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from kubernetes import client

pytest.register_assert_rewrite("e2e.operator_fixtures")

from e2e.devcluster.kube import kubectl, wait_for  # noqa: E402
from e2e.operator_fixtures import (  # noqa: E402
    NAME,
    Operator,
    apply_yaml,
    condition,
    get_qtd,
    sample,
    settle,
)
from qwen_operator import api  # noqa: E402
from qwen_operator.children import render  # noqa: E402

pytest_plugins = ("e2e.operator_fixtures",)
pytestmark = pytest.mark.e2e

THEIRS = {"app": "payments"}
KINDS = ("Service", "PodDisruptionBudget", "ConfigMap")


def child_names(ns: str) -> dict[str, str]:
    """The name the renderer gives the sample's first child of each kind."""
    doc = sample()
    doc["metadata"] |= {"namespace": ns, "uid": "u", "generation": 1}
    names: dict[str, str] = {}
    for manifest in render.render(api.parse_resource(doc)):
        names.setdefault(manifest["kind"], manifest["metadata"]["name"])
    return names


def foreign(kind: str, name: str) -> dict[str, Any]:
    """A tenant's object: its own labels, no owner."""
    meta = {"name": name, "labels": THEIRS}
    if kind == "Service":
        spec = {"selector": THEIRS, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
        return {"apiVersion": "v1", "kind": kind, "metadata": meta, "spec": spec}
    if kind == "PodDisruptionBudget":
        spec = {"selector": {"matchLabels": THEIRS}, "minAvailable": 1}
        return {"apiVersion": "policy/v1", "kind": kind, "metadata": meta, "spec": spec}
    return {"apiVersion": "v1", "kind": kind, "metadata": meta, "data": {"payments.conf": "ledger=primary\n"}}


def read(ns: str, kind: str, name: str) -> dict[str, Any] | None:
    out = kubectl("get", kind.lower(), name, "-n", ns, "-o", "json", "--ignore-not-found").stdout
    return json.loads(out) if out.strip() else None


def test_objects_not_ours_are_left_alone_and_survive_the_resource(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, apps_v1: client.AppsV1Api
) -> None:
    names = child_names(ns)
    for kind in KINDS:
        kubectl("create", "-n", ns, "-f", "-", stdin=yaml.safe_dump(foreign(kind, names[kind])))
    before = {kind: read(ns, kind, names[kind]) for kind in KINDS}

    apply_yaml(ns, sample())

    def stalled() -> dict[str, Any]:
        return condition(get_qtd(custom, ns, NAME), "Stalled")

    wait_for(lambda: stalled().get("reason") == "NameConflict", 60, "Stalled NameConflict")
    message = stalled()["message"]
    for kind in KINDS:
        assert f"{kind} {names[kind]}" in message, message
    settle(5)  # a pass that went on writing would show by now
    assert {kind: read(ns, kind, names[kind]) for kind in KINDS} == before  # byte for byte
    assert apps_v1.list_namespaced_stateful_set(ns).items == []  # nothing of ours was written either

    kubectl("delete", f"qtd/{NAME}", "-n", ns, "--wait=true")
    settle(5)  # the garbage collector's time to delete dependents, had they been ours
    assert {kind: read(ns, kind, names[kind]) for kind in KINDS} == before
