"""When a child is applied: changed manifest, drift from it, or nothing (idle means idle)."""

from __future__ import annotations

import copy
from typing import Any

from qwen_operator.children import render
from qwen_operator.reconcile import diff, events, snapshot

RESOURCE = {"metadata": {"name": "q", "namespace": "ns", "uid": "u1"}, "spec": {}}


def statefulset() -> dict[str, Any]:
    return diff.with_hash(next(c for c in render.render(RESOURCE) if c["kind"] == "StatefulSet"))


def as_live(desired: dict[str, Any]) -> dict[str, Any]:
    """What the apiserver returns: defaults added, quantities as strings."""
    live = copy.deepcopy(desired)
    live["metadata"] |= {"uid": "x", "resourceVersion": "7", "managedFields": [{"manager": "qwen-operator"}]}
    live["metadata"]["annotations"]["other"] = "kept"
    spec = live["spec"]
    spec["revisionHistoryLimit"] = 10
    pod = spec["template"]["spec"]
    pod["dnsPolicy"] = "ClusterFirst"
    container = pod["containers"][0]
    container["imagePullPolicy"] = "IfNotPresent"
    container["resources"]["limits"]["nvidia.com/gpu"] = "4"
    container["livenessProbe"]["httpGet"]["scheme"] = "HTTP"
    live["status"] = {"replicas": 1}
    return live


def test_hash_is_stable_and_ignores_its_own_annotation() -> None:
    a, b = statefulset(), statefulset()
    assert a == b
    assert diff.manifest_hash(a) == a["metadata"]["annotations"][diff.HASH_ANNOTATION]


def test_live_object_with_defaults_needs_no_apply() -> None:
    desired = statefulset()
    assert diff.drift(desired, as_live(desired)) is None


def test_missing_changed_and_drifted() -> None:
    desired = statefulset()
    assert diff.drift(desired, None) == "missing"
    old = diff.with_hash(
        next(c for c in render.render(RESOURCE, max_model_len=131072) if c["kind"] == "StatefulSet")
    )
    assert diff.drift(desired, as_live(old)) == "changed"
    live = as_live(desired)
    live["spec"]["replicas"] = 5
    assert diff.drift(desired, live) == "drifted"
    live = as_live(desired)
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:latest"
    assert diff.drift(desired, live) == "drifted"


def test_quantities_compare_by_value() -> None:
    assert diff.contains({"cpu": "1"}, {"cpu": "1000m"})
    assert diff.contains({"gpu": 4}, {"gpu": "4"})
    assert not diff.contains({"memory": "96Gi"}, {"memory": "95Gi"})
    assert not diff.contains({"enabled": True}, {"enabled": "true"})
    assert not diff.contains([1, 2], [1])


def test_changed_fields_names_what_moved() -> None:
    desired = statefulset()
    live = as_live(desired)
    live["spec"]["replicas"] = 3
    assert diff.changed_fields(live, desired) == ["spec.replicas"]


def test_empty_values_the_apiserver_omits_match_missing_ones() -> None:
    assert diff.contains({"value": "", "items": [], "map": {}, "flag": False}, {})
    assert not diff.contains({"replicas": 0}, {})
    assert not diff.contains({"value": "x"}, {})


def test_hashing_leaves_the_rendered_manifest_alone() -> None:
    rendered = next(c for c in render.render(RESOURCE) if c["kind"] == "StatefulSet")
    before = copy.deepcopy(rendered)
    stamped = diff.with_hash(rendered)
    assert rendered == before and diff.HASH_ANNOTATION in stamped["metadata"]["annotations"]
    assert diff.manifest_hash(stamped) == diff.manifest_hash(rendered)


def test_a_hand_edit_of_the_launchers_configmap_is_drift() -> None:
    (configmap,) = [
        c
        for c in render.render(RESOURCE)
        if c["kind"] == "ConfigMap" and "-launcher-" in c["metadata"]["name"]
    ]
    desired = diff.with_hash(configmap)
    live = snapshot.child_from({**desired, "metadata": {**desired["metadata"], "resourceVersion": "1"}})
    assert diff.drift(desired, live.manifest) is None
    edited = {**desired["data"], "launcher.py": "print('hello')\n"}
    tampered = snapshot.child_from({**desired, "data": edited})
    assert diff.drift(desired, tampered.manifest) == diff.Drift.DRIFTED
    assert "data" not in live.manifest  # the cache keeps a digest, not 70 KB of sources per resource


def test_a_scale_names_only_the_replicas() -> None:
    """`kubectl scale qtd` changes spec.replicas alone; the live child as the cache keeps it (slim:
    no apiVersion, no kind, a ConfigMap's data as a digest) must not read as changed there."""
    rendered = next(c for c in render.render(RESOURCE) if c["kind"] == "StatefulSet")
    before = as_live(diff.with_hash(rendered))
    desired = diff.with_hash({**rendered, "spec": {**rendered["spec"], "replicas": 3}})
    live = snapshot.child_from(before)
    assert diff.changed_fields(live.manifest, desired) == ["spec.replicas"]
    said = events.applied(desired, live, diff.drift(desired, live.manifest) or diff.Drift.CHANGED)
    assert [e.message for e in said] == ["Scaled StatefulSet q from 1 to 3 replicas"]


def test_an_unchanged_configmap_names_no_data() -> None:
    """The slim ConfigMap keeps its data's digest: equal data is not a changed field."""
    (configmap,) = [
        c
        for c in render.render(RESOURCE)
        if c["kind"] == "ConfigMap" and "-launcher-" in c["metadata"]["name"]
    ]
    desired = diff.with_hash(configmap)
    live = snapshot.child_from(desired)
    assert diff.changed_fields(live.manifest, desired) == []
    edited = snapshot.child_from({**desired, "data": {**desired["data"], "launcher.py": "print('hi')\n"}})
    assert diff.changed_fields(edited.manifest, desired) == ["data"]
