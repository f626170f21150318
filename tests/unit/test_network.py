"""The NetworkPolicy children (spec.network): the API port open to this namespace and the peers
the spec names; a multi-node group's own ports open between its pods only, by a policy per group
that follows spec.replicas; off when the spec says."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from qwen_operator import api
from qwen_operator.api import vocabulary
from qwen_operator.children import network, registry, render
from qwen_operator.reconcile.decide import decide
from qwen_operator.reconcile.observe import Observed
from testkit.fake import KEY, FakeCluster, reconciler
from testkit.wrappers import resource, resource_raw

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ENVOY = {"matchExpressions": [{"key": "app", "operator": "In", "values": ["envoy"]}]}
GATEWAY = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway"}},
    "podSelector": ENVOY,
}


def policy(spec: dict[str, Any] | None = None, served: frozenset[str] = frozenset()) -> dict[str, Any] | None:
    return next(
        (c for c in render.render(resource_raw(spec), served=served) if c["kind"] == "NetworkPolicy"), None
    )


def test_by_default_only_this_namespace_reaches_the_api_port() -> None:
    found = policy()
    assert found is not None
    spec = found["spec"]
    assert spec["podSelector"] == {"matchLabels": vocabulary.selector_labels("q")}
    assert spec["policyTypes"] == ["Ingress"]  # egress open: the weights download from the hub
    assert spec["ingress"] == [{"ports": [{"port": 8000, "protocol": "TCP"}], "from": [{"podSelector": {}}]}]


def test_the_peers_of_allow_from_are_added_as_written() -> None:
    found = policy({"network": {"allowFrom": [GATEWAY]}})
    assert found is not None
    assert found["spec"]["ingress"][0]["from"] == [{"podSelector": {}}, GATEWAY]


def test_an_exposed_service_opens_the_api_port_to_every_source() -> None:
    """A LoadBalancer's clients come from addresses no selector names; the key guards /v1."""
    key = {"apiKeySecretRef": {"name": "k", "key": "key"}}
    found = policy({"service": {"type": "LoadBalancer"}, "auth": key, "network": {"allowFrom": [GATEWAY]}})
    assert found is not None
    assert found["spec"]["ingress"] == [{"ports": [{"port": 8000, "protocol": "TCP"}]}]


def policies(spec: dict[str, Any], name: str = "q") -> dict[str, dict[str, Any]]:
    children = render.render(resource_raw(spec, name=name), served=frozenset({vocabulary.LWS_CRD}))
    return {c["metadata"]["name"]: c for c in children if c["kind"] == "NetworkPolicy"}


def test_a_group_talks_on_every_port_within_the_group_only() -> None:
    """The resource's policy opens the API port alone; each group's, every port between the
    pods of that group (the LeaderWorkerSet's group index), from no one else."""
    found = policies({"parallelism": {"pipeline": 2}, "replicas": 2})
    assert list(found) == ["q", "q-group-0", "q-group-1"]
    assert found["q"]["spec"]["ingress"] == [
        {"ports": [{"port": 8000, "protocol": "TCP"}], "from": [{"podSelector": {}}]}
    ]
    for index in (0, 1):
        group = found[f"q-group-{index}"]
        pods = {**vocabulary.selector_labels("q"), "leaderworkerset.sigs.k8s.io/group-index": str(index)}
        assert group["spec"]["podSelector"] == {"matchLabels": pods}
        assert group["spec"]["policyTypes"] == ["Ingress"]
        assert group["spec"]["ingress"] == [{"from": [{"podSelector": {"matchLabels": pods}}]}]  # every port
        assert group["metadata"]["labels"] == found["q"]["metadata"]["labels"]  # ours: watched, pruned


def test_every_group_the_leader_worker_set_runs_has_its_policy() -> None:
    """The policies cover the group indices 0 to replicas - 1: the LeaderWorkerSet must not
    surge a group beyond them in a rollout, whose pods would find their group ports closed."""
    spec = {"parallelism": {"pipeline": 2}, "replicas": 3}
    (lws,) = [c for c in render.render(resource_raw(spec)) if c["kind"] == vocabulary.LWS_KIND]
    assert lws["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"]["maxSurge"] == 0
    indices = [
        p["spec"]["podSelector"]["matchLabels"].get(vocabulary.LWS_GROUP_INDEX_LABEL)
        for p in policies(spec).values()
    ]
    assert indices == [None, *(str(i) for i in range(lws["spec"]["replicas"]))]


def test_one_stage_and_no_replicas_render_no_group_policy() -> None:
    assert list(policies({})) == ["q"]
    assert list(policies({"parallelism": {"pipeline": 2}, "replicas": 0})) == ["q"]


def test_group_policy_names_fit_a_dns_label_at_the_bounds() -> None:
    """A name of 52 characters and 1024 replicas, the CRD's bounds: `<name>-group-1023` has 63."""
    name = "a" * api.MAX_NAME_LENGTH
    res = api.parse_resource(resource_raw({"parallelism": {"pipeline": 2}, "replicas": 1024}, name=name))
    assert network.groups(res)[-1]["name"] == network.group_policy_name(name, 1023)
    assert len(network.group_policy_name(name, 1023)) == 63
    with pytest.raises(api.InvalidResource):
        api.parse_resource(resource_raw({"parallelism": {"pipeline": 2}, "replicas": 1025}))


def test_the_group_policies_follow_the_replicas_the_surplus_is_pruned() -> None:
    """A scale (the scale subresource writes spec.replicas) renders the new set on the next pass;
    the policies of groups gone are deleted; back to one stage, all of them."""
    cluster = FakeCluster({"parallelism": {"tensor": 4, "pipeline": 2}, "replicas": 1})
    cluster.crds.add(vocabulary.LWS_CRD)

    def groups() -> list[str]:
        return sorted(n for k, n in cluster.objects if k == "NetworkPolicy" and n != "q")

    reconciler(cluster).reconcile(KEY)
    assert groups() == ["q-group-0"]
    cluster.edit({"parallelism": {"tensor": 4, "pipeline": 2}, "replicas": 3})
    reconciler(cluster).reconcile(KEY)
    assert groups() == ["q-group-0", "q-group-1", "q-group-2"]
    assert (vocabulary.LWS_KIND, "q") in cluster.objects
    assert cluster.objects[(vocabulary.LWS_KIND, "q")]["spec"]["replicas"] == 3
    cluster.edit({"parallelism": {"tensor": 4, "pipeline": 2}, "replicas": 1})
    cluster.calls.clear()
    reconciler(cluster).reconcile(KEY)
    assert groups() == ["q-group-0"] and cluster.calls.count(("delete", "NetworkPolicy")) == 2
    cluster.edit({"parallelism": {"tensor": 4}, "replicas": 1})
    for _ in range(3):  # the LeaderWorkerSet goes first, then the StatefulSet comes
        reconciler(cluster).reconcile(KEY)
    assert groups() == [] and ("NetworkPolicy", "q") in cluster.objects


def test_a_policy_of_the_same_name_not_ours_is_left_alone() -> None:
    """A group policy's name may be taken (another resource named `q-group-1`): pruning deletes
    only what is ours."""
    cluster = FakeCluster({"parallelism": {"tensor": 4, "pipeline": 2}, "replicas": 1})
    cluster.crds.add(vocabulary.LWS_CRD)
    reconciler(cluster).reconcile(KEY)
    theirs = policies({"parallelism": {"pipeline": 2}}, "q-group-1")["q-group-1"]
    cluster.objects[("NetworkPolicy", "q-group-1")] = theirs
    cluster.calls.clear()
    reconciler(cluster).reconcile(KEY)
    assert ("delete", "NetworkPolicy") not in cluster.calls
    assert cluster.objects[("NetworkPolicy", "q-group-1")] is theirs


def test_policy_false_renders_none_and_a_live_one_is_deleted() -> None:
    assert policy({"network": {"policy": False}}) is None
    cluster = FakeCluster()
    reconciler(cluster).reconcile(KEY)
    assert ("NetworkPolicy", "q") in cluster.objects
    cluster.edit({"network": {"policy": False}})
    reconciler(cluster).reconcile(KEY)
    assert ("delete", "NetworkPolicy") in cluster.calls and ("NetworkPolicy", "q") not in cluster.objects


def test_a_peer_needs_a_selector() -> None:
    with pytest.raises(api.InvalidResource, match="namespaceSelector, a podSelector or both"):
        api.parse_resource(resource_raw({"network": {"allowFrom": [{}]}}))


def test_the_registry_entry_is_all_the_operator_needs_to_own_it() -> None:
    kind = registry.BY_KIND["NetworkPolicy"]
    assert kind.pruned and kind.crd is None and kind.api_version == "networking.k8s.io/v1"
    desired = decide(Observed(resource()), NOW)
    assert "NetworkPolicy q" in [a.ident for a in desired.applies]
