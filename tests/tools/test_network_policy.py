"""What the rendered NetworkPolicy of every sample means, as cyclonus's policy engine reads it.

The local control plane enforces no NetworkPolicy (no CNI plugin runs), so the tests of
tests/unit/test_network.py prove what the policy says, not what it does. Here cyclonus's
evaluator of the NetworkPolicy API (e2e/devcluster/netpol.py, built by `make tools`) answers,
for connections between pods, whether a cluster that enforces the policy lets them through.

The servers' pods carry the labels the operator renders on the workload's pod templates (the
StatefulSet's, or the LeaderWorkerSet's leader and worker templates) plus those their
controller adds; the ports are resolved from the rendered Service, ServiceMonitor and container
ports. Nothing is restated here, so a policy whose selector drifts from the pods' labels, or
whose port drifts from the container's, fails these tests.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import product
from typing import Any

import pytest

from e2e.devcluster.netpol import Connection, Outside, Pod, admitted
from qwen_operator.api import vocabulary
from qwen_operator.children import registry, render
from tests.tools.realvllm.rendered import sample_docs

NAMESPACE = "inference"
ELSEWHERE = "tenant-b"
MONITORING = "monitoring"
CLIENT = {"app": "client"}
PROMETHEUS = {"app.kubernetes.io/name": "prometheus"}
GROUP_PORTS = (29501, 41234)
"""Ports a multi-node group uses between its pods: vLLM's --master-port default (torch.distributed's
rendezvous), and one of the ephemeral ports its ZMQ sockets and NCCL pick: no rule can list them."""

# The labels the LeaderWorkerSet controller adds to every pod of a group (sigs.k8s.io/lws
# api/leaderworkerset/v1: SetNameLabelKey, GroupIndexLabelKey, WorkerIndexLabelKey), written
# here as LWS spells them rather than taken from the operator's vocabulary, so a policy keyed on
# a drifted label fails.
LWS_NAME = "leaderworkerset.sigs.k8s.io/name"
LWS_GROUP = "leaderworkerset.sigs.k8s.io/group-index"
LWS_WORKER = vocabulary.LWS_WORKER_INDEX_LABEL

SAMPLES = sample_docs()
MONITORED = {
    "allowFrom": [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": MONITORING}},
            "podSelector": {"matchLabels": PROMETHEUS},
        }
    ]
}
"""spec.network as docs/security.md advises for a Prometheus in the namespace monitoring."""
EXPOSED = {"service": {"type": "LoadBalancer"}, "auth": {"apiKeySecretRef": {"name": "k", "key": "key"}}}


@dataclass(frozen=True)
class Port:
    number: int
    name: str


@dataclass(frozen=True)
class Rendered:
    """One resource as the operator renders it, as far as the network is concerned."""

    policies: list[dict[str, Any]]
    groups: list[list[Pod]]
    """The server pods, by replica: one pod each with one stage, else the group's, leader first."""
    api: list[Pod]
    """The pods the API Service selects."""
    others: list[Pod]
    """Other pods the operator starts in the namespace (the shared download's Job)."""
    api_port: Port
    metrics_port: Port
    service_type: str

    @property
    def servers(self) -> list[Pod]:
        return [pod for group in self.groups for pod in group]


def resource(sample: str, **spec: Any) -> dict[str, Any]:
    """The sample in NAMESPACE, with the spec's top-level fields `spec` replaced."""
    doc = copy.deepcopy(SAMPLES[sample])
    doc["metadata"]["namespace"] = NAMESPACE
    doc["spec"] = {**(doc.get("spec") or {}), **spec}
    return doc


def _matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _container_port(pod_spec: Mapping[str, Any], target: int | str) -> Port:
    """The server container's port a Service's targetPort names (or numbers)."""
    (server,) = [c for c in pod_spec["containers"] if c["name"] == "server"]
    for port in server.get("ports", []):
        if target in (port["containerPort"], port.get("name")):
            return Port(port["containerPort"], port.get("name", ""))
    raise AssertionError(f"the server container has no port {target!r}: {server.get('ports')}")


def _service_port(service: Mapping[str, Any], name: str | int, pod_spec: Mapping[str, Any]) -> Port:
    (port,) = [p for p in service["spec"]["ports"] if name in (p.get("name"), p["port"])]
    return _container_port(pod_spec, port.get("targetPort", port["port"]))


def _pods(workload: Mapping[str, Any]) -> tuple[list[list[Pod]], dict[str, Any]]:
    """The pods the workload's controller starts (by replica), and the leader's pod spec."""
    name, spec = workload["metadata"]["name"], workload["spec"]
    if workload["kind"] == "StatefulSet":
        template = spec["template"]
        pods = [
            [
                Pod(
                    NAMESPACE,
                    {**template["metadata"]["labels"], "statefulset.kubernetes.io/pod-name": f"{name}-{i}"},
                )
            ]
            for i in range(spec["replicas"])
        ]
        return pods, template["spec"]
    group = spec["leaderWorkerTemplate"]
    leader, worker = group["leaderTemplate"], group["workerTemplate"]
    pods = [
        [
            Pod(
                NAMESPACE,
                {
                    **(leader if w == 0 else worker)["metadata"]["labels"],
                    LWS_NAME: name,
                    LWS_GROUP: str(g),
                    LWS_WORKER: str(w),
                },
            )
            for w in range(group["size"])
        ]
        for g in range(spec["replicas"])
    ]
    return pods, leader["spec"]


def rendered(doc: Mapping[str, Any]) -> Rendered:
    children = render.render(doc, served=frozenset(registry.OPTIONAL_CRDS))
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for child in children:
        by_kind.setdefault(child["kind"], []).append(child)
    (workload,) = by_kind.get("StatefulSet", []) + by_kind.get("LeaderWorkerSet", [])
    groups, pod_spec = _pods(workload)
    (service,) = [s for s in by_kind["Service"] if s["spec"].get("clusterIP") != "None"]
    (monitor,) = by_kind["ServiceMonitor"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert _matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    others = [Pod(NAMESPACE, job["spec"]["template"]["metadata"]["labels"]) for job in by_kind.get("Job", [])]
    servers = [pod for group in groups for pod in group]
    return Rendered(
        policies=by_kind.get("NetworkPolicy", []),
        groups=groups,
        api=[pod for pod in servers if _matches(service["spec"]["selector"], pod.labels)],
        others=others,
        api_port=_service_port(service, service["spec"]["ports"][0]["name"], pod_spec),
        metrics_port=_service_port(service, endpoint["port"], pod_spec),
        service_type=service["spec"]["type"],
    )


def verdicts(policies: list[dict[str, Any]], cases: Mapping[str, tuple[Connection, bool]]) -> None:
    """Asks the evaluator about every case at once; a failure lists each case that differs."""
    got = admitted(policies, [connection for connection, _ in cases.values()])
    wrong = {
        what: f"{'admitted' if ok else 'denied'}, expected {'admitted' if expected else 'denied'}"
        for (what, (_, expected)), ok in zip(cases.items(), got, strict=True)
        if ok != expected
    }
    assert not wrong, wrong


def to(port: Port, source: Pod | Outside, destination: Pod) -> Connection:
    return Connection(source, destination, port.number, port.name)


def test_every_sample_is_here_and_one_is_multi_node() -> None:
    """The group's cases below run on the samples with pipeline > 1: there must be one."""
    assert len(SAMPLES) >= 6
    multi = [name for name in SAMPLES if rendered(resource(name)).groups[0][1:]]
    assert multi == ["qwen3-235b-thinking-multinode"]


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_the_api_port_admits_this_namespace_and_no_other(sample: str) -> None:
    """A pod of the resource's namespace reaches the API; a pod of another namespace, even one
    that carries the servers' own labels, and a client outside the cluster do not."""
    r = rendered(resource(sample))
    assert r.policies and r.api and r.service_type == "ClusterIP"
    assert r.api_port == Port(8000, "http") and r.metrics_port == r.api_port  # vLLM serves /metrics there
    cases: dict[str, tuple[Connection, bool]] = {}
    for i, dest in enumerate(r.api):
        cases |= {
            f"a pod of {NAMESPACE} -> API pod {i}": (to(r.api_port, Pod(NAMESPACE, CLIENT), dest), True),
            f"a pod of {ELSEWHERE} -> API pod {i}": (to(r.api_port, Pod(ELSEWHERE, CLIENT), dest), False),
            f"a pod of {ELSEWHERE} with the servers' labels -> API pod {i}": (
                to(r.api_port, Pod(ELSEWHERE, dest.labels), dest),
                False,
            ),
            f"a Prometheus in {MONITORING} -> /metrics of API pod {i}": (
                to(r.metrics_port, Pod(MONITORING, PROMETHEUS), dest),
                False,
            ),
            f"a client outside the cluster -> API pod {i}": (
                to(r.api_port, Outside("203.0.113.7"), dest),
                False,
            ),
        }
    verdicts(r.policies, cases)


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_no_other_port_is_open_to_anyone_outside_the_group(sample: str) -> None:
    """Only the API port is open to the namespace: the servers' other ports (a group's
    torch.distributed and ZMQ traffic) admit nobody outside the group: not a pod of the
    namespace, not the download Job's, not another replica's server with one stage."""
    r = rendered(resource(sample))
    cases: dict[str, tuple[Connection, bool]] = {}
    for port in GROUP_PORTS:
        for i, dest in enumerate(r.servers):
            cases[f"a pod of {NAMESPACE} -> server {i}:{port}"] = (
                Connection(Pod(NAMESPACE, CLIENT), dest, port),
                False,
            )
            cases[f"a pod of {ELSEWHERE} with the servers' labels -> server {i}:{port}"] = (
                Connection(Pod(ELSEWHERE, dest.labels), dest, port),
                False,
            )
            for j, other in enumerate(r.others):
                cases[f"the operator's pod {j} ({other.labels}) -> server {i}:{port}"] = (
                    Connection(other, dest, port),
                    False,
                )
        if len(r.groups[0]) == 1 and len(r.groups) > 1:  # one stage: replicas do not talk
            cases[f"replica 1 -> replica 0:{port}"] = (
                Connection(r.groups[1][0], r.groups[0][0], port),
                False,
            )
    assert cases
    verdicts(r.policies, cases)


MULTI_NODE: dict[str, dict[str, Any]] = {
    "qwen3-235b-thinking-multinode": {"replicas": 2},
    "qwen3-235b-thinking": {"replicas": 2, "parallelism": {"tensor": 4, "pipeline": 2}},
}
"""The multi-node sample, and the model card's split over two nodes; two groups each."""


@pytest.mark.parametrize("sample", sorted(MULTI_NODE))
def test_a_group_talks_on_every_port_within_itself(sample: str) -> None:
    """The leader and the worker of a group reach each other on any port (vLLM's ranks pick
    theirs at start); another resource's server, even with the same group index, and a pod of
    the namespace do not."""
    r = rendered(resource(sample, **MULTI_NODE[sample]))
    assert len(r.groups) == 2 and all(len(group) == 2 for group in r.groups)
    cases: dict[str, tuple[Connection, bool]] = {}
    for g, (leader, worker) in enumerate(r.groups):
        stranger = dict(worker.labels, **{vocabulary.INSTANCE_LABEL: "another-resource"})
        for port in GROUP_PORTS:
            cases[f"group {g}: leader -> worker:{port}"] = (Connection(leader, worker, port), True)
            cases[f"group {g}: worker -> leader:{port}"] = (Connection(worker, leader, port), True)
            cases[f"another resource's server of group {g} -> group {g} worker:{port}"] = (
                Connection(Pod(NAMESPACE, stranger), worker, port),
                False,
            )
            cases[f"a pod of {NAMESPACE} -> group {g} worker:{port}"] = (
                Connection(Pod(NAMESPACE, CLIENT), worker, port),
                False,
            )
    verdicts(r.policies, cases)


def _across_groups(r: Rendered) -> dict[str, tuple[Connection, bool]]:
    """Every pod of a group to every pod of another group, on the group's ports: denied."""
    cases: dict[str, tuple[Connection, bool]] = {}
    for g, group in enumerate(r.groups):
        for h, other in enumerate(r.groups):
            for (i, source), (j, dest), port in product(enumerate(group), enumerate(other), GROUP_PORTS):
                if g != h:
                    cases[f"group {g} pod {i} -> group {h} pod {j}:{port}"] = (
                        Connection(source, dest, port),
                        False,
                    )
    return cases


@pytest.mark.parametrize("sample", sorted(MULTI_NODE))
def test_the_group_boundary_is_the_group(sample: str) -> None:
    """One policy per group (children/network.py): group 0's leader is denied group 1's worker
    on 29501, and every pod of a group every port of another group's pods but the API port,
    which a leader serves to the whole namespace."""
    r = rendered(resource(sample, **MULTI_NODE[sample]))
    (leader0, worker0), (leader1, worker1) = r.groups
    cases = _across_groups(r) | {
        "group 0 leader -> group 1 worker:29501": (Connection(leader0, worker1, 29501), False),
        "group 1 worker -> group 0 leader:29501": (Connection(worker1, leader0, 29501), False),
        "group 0 worker -> group 1 leader's API port": (to(r.api_port, worker0, leader1), True),
    }
    verdicts(r.policies, cases)


def test_a_group_index_dropped_from_its_policy_opens_the_other_groups() -> None:
    """Control: the denial across groups is the group index's doing. A group policy whose peer
    selector lacks the index admits the other group, as the single rule of the resource did."""
    r = rendered(resource("qwen3-235b-thinking-multinode", replicas=2))
    (leader0, _), (_, worker1) = r.groups
    crossing = Connection(leader0, worker1, 29501)
    drifted = copy.deepcopy(r.policies)
    for policy in drifted:
        for rule in policy["spec"]["ingress"]:
            for peer in rule.get("from", []):
                peer.get("podSelector", {}).get("matchLabels", {}).pop(LWS_GROUP, None)
    assert admitted(r.policies, [crossing]) == [False]
    assert admitted(drifted, [crossing]) == [True]


def test_a_new_group_before_its_policy_is_closed_not_open() -> None:
    """Scaling up renders the new group's policy in the same pass as the LeaderWorkerSet; should
    its pods start before the policy is enforced, the resource's policy already selects them:
    their API port is the namespace's, their group ports admit no one (their own group
    included) until it is, so the window fails closed, and no other group ever reaches them."""
    before = rendered(resource("qwen3-235b-thinking-multinode", replicas=2))
    after = rendered(resource("qwen3-235b-thinking-multinode", replicas=3))
    (leader0, _), _, (leader2, worker2) = after.groups

    def cases(own_group: bool) -> dict[str, tuple[Connection, bool]]:
        return {
            "new group 2: leader -> worker:29501": (Connection(leader2, worker2, 29501), own_group),
            "group 0 leader -> new group 2 worker:29501": (Connection(leader0, worker2, 29501), False),
            "a pod of the namespace -> new group 2 leader's API port": (
                to(after.api_port, Pod(NAMESPACE, CLIENT), leader2),
                True,
            ),
        }

    verdicts(before.policies, cases(own_group=False))  # its policy not yet there
    verdicts(after.policies, cases(own_group=True))
    assert len(after.policies) == len(before.policies) + 1


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_allow_from_admits_the_named_peers_on_the_metrics_port_only(sample: str) -> None:
    """spec.network.allowFrom naming the monitoring namespace's Prometheus: it scrapes /metrics
    (the API port); other pods there, and a Prometheus elsewhere, stay out; so do the group's ports."""
    r = rendered(resource(sample, network=MONITORED))
    cases: dict[str, tuple[Connection, bool]] = {}
    for i, dest in enumerate(r.api):
        cases |= {
            f"Prometheus in {MONITORING} -> /metrics of API pod {i}": (
                to(r.metrics_port, Pod(MONITORING, PROMETHEUS), dest),
                True,
            ),
            f"another pod of {MONITORING} -> API pod {i}": (
                to(r.api_port, Pod(MONITORING, CLIENT), dest),
                False,
            ),
            f"a Prometheus in {ELSEWHERE} -> API pod {i}": (
                to(r.api_port, Pod(ELSEWHERE, PROMETHEUS), dest),
                False,
            ),
            f"a pod of {NAMESPACE} -> API pod {i}": (to(r.api_port, Pod(NAMESPACE, CLIENT), dest), True),
            f"Prometheus in {MONITORING} -> API pod {i}:29501": (
                Connection(Pod(MONITORING, PROMETHEUS), dest, 29501),
                False,
            ),
        }
    verdicts(r.policies, cases)


@pytest.mark.parametrize("sample", ["qwen3-235b-thinking", "qwen3-235b-thinking-multinode"])
def test_an_exposed_service_opens_the_api_port_and_nothing_else(sample: str) -> None:
    """A LoadBalancer's clients come from addresses no selector names: its API port is open to
    every source (the key guards /v1), the group's ports stay closed."""
    r = rendered(resource(sample, **EXPOSED))
    assert r.service_type == "LoadBalancer"
    cases: dict[str, tuple[Connection, bool]] = {}
    for i, dest in enumerate(r.api):
        cases |= {
            f"a client outside the cluster -> API pod {i}": (
                to(r.api_port, Outside("203.0.113.7"), dest),
                True,
            ),
            f"a pod of {ELSEWHERE} -> API pod {i}": (to(r.api_port, Pod(ELSEWHERE, CLIENT), dest), True),
        }
    for i, dest in enumerate(r.servers):
        cases[f"a client outside the cluster -> server {i}:29501"] = (
            Connection(Outside("203.0.113.7"), dest, 29501),
            False,
        )
        cases[f"a pod of {ELSEWHERE} -> server {i}:29501"] = (
            Connection(Pod(ELSEWHERE, CLIENT), dest, 29501),
            False,
        )
    verdicts(r.policies, cases)


def test_the_evaluator_sees_a_selector_drift_and_a_policy_turned_off() -> None:
    """Controls: the cases above can fail. A policy selecting a label the pods lack guards
    nothing, and so does no policy (network.policy: false): the other namespace gets in."""
    r = rendered(resource("qwen3-235b-thinking"))
    (dest,) = r.api
    intruder = to(r.api_port, Pod(ELSEWHERE, CLIENT), dest)
    drifted = copy.deepcopy(r.policies)
    drifted[0]["spec"]["podSelector"]["matchLabels"][vocabulary.INSTANCE_LABEL] = "renamed"
    off = rendered(resource("qwen3-235b-thinking", network={"policy": False}))
    assert off.policies == []
    assert admitted(r.policies, [intruder]) == [False]
    assert admitted(drifted, [intruder]) == [True]
    assert admitted(off.policies, [intruder]) == [True]
