"""The NetworkPolicy child (spec.network): the API port open to this namespace and the peers the
spec names; a multi-node group's own ports open between its pods only; off when the spec says."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from qwen_operator import api
from qwen_operator.api import vocabulary
from qwen_operator.children import registry, render
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


def test_a_group_talks_on_every_port_within_the_resource_only() -> None:
    served = frozenset({vocabulary.LWS_CRD})
    found = policy({"parallelism": {"pipeline": 2}}, served)
    assert found is not None
    api_port, group = found["spec"]["ingress"]
    assert api_port["ports"] == [{"port": 8000, "protocol": "TCP"}]
    assert group == {"from": [{"podSelector": {"matchLabels": vocabulary.selector_labels("q")}}]}
    assert "ports" not in group  # every port, but only from the resource's own pods


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
