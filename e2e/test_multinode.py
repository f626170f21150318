"""Multi-node replicas (parallelism.pipeline > 1) on the real LeaderWorkerSet.

The CRD, the webhooks and the controller are LWS's own (e2e/devcluster/lws.py: built from its
Go module, on loopback, the webhooks by url with a certificate of the cluster's CA). kwok plays
the nodes: four 4-GPU H100 nodes of this module's own pool, so a TP 4 x PP 2 group (8 GPUs)
needs two of them. The operator runs as its ServiceAccount (operator_fixtures), so the RBAC for
LeaderWorkerSets is proven too.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from kubernetes import client

pytest.register_assert_rewrite("e2e.operator_fixtures")

from e2e.conftest import Cluster  # noqa: E402
from e2e.devcluster import lws, nodes, simulate  # noqa: E402
from e2e.devcluster.kube import kubectl, starting_pod_status, terminate_container, wait_for  # noqa: E402
from e2e.operator_fixtures import (  # noqa: E402
    GROUP,
    NAME,
    PLURAL,
    VERSION,
    Operator,
    apply_yaml,
    condition,
    get_qtd,
    instance,
    sample,
    settle,
    wait_phase,
)
from qwen_operator import api  # noqa: E402
from qwen_operator.api.vocabulary import HASH_ANNOTATION, TEMPLATE_ANNOTATION  # noqa: E402
from qwen_operator.children import render  # noqa: E402
from qwen_runtime.argv import max_model_len  # noqa: E402

pytest_plugins = ("e2e.operator_fixtures",)
pytestmark = pytest.mark.e2e

POOL = ("qwen-e2e.io/pool", "four-gpu")
NODES = [f"lws-node-{i}" for i in range(4)]
WORKER_INDEX = "leaderworkerset.sigs.k8s.io/worker-index"
TP4_PP2 = {
    "parallelism": {"tensor": 4, "pipeline": 2},
    "scheduling": {"nodeSelector": dict([POOL])},
}


@pytest.fixture(scope="module", autouse=True)
def no_crd_left(cluster: Cluster) -> Iterator[None]:
    """The LWS CRD is this module's: absent before (the first test proves the Stalled state),
    removed after."""
    del cluster
    lws.remove_crd()
    yield
    lws.remove_crd()


@pytest.fixture(scope="module")
def four_gpu_nodes(cluster: Cluster) -> Iterator[list[str]]:
    """Four kwok nodes with 4 H100s each, labelled for this module's pool."""
    del cluster
    items = [nodes.node_manifest(n, nodes.GPU_MODELS["H100"], 4) for n in NODES]
    for item in items:
        item["metadata"]["labels"][POOL[0]] = POOL[1]
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}))
    kubectl("wait", "--for=condition=Ready", "--timeout=60s", *[f"node/{n}" for n in NODES])
    yield NODES
    kubectl("delete", "node", *NODES, "--ignore-not-found")


@pytest.fixture(scope="module")
def lws_controller(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[lws.Controller]:
    lws.install_crd()
    with lws.running(cluster.kubeconfig, tmp_path_factory.mktemp("lws")) as controller:
        yield controller


@pytest.fixture
def group_ns(ns: str, core_v1: client.CoreV1Api) -> str:
    """The test namespace, where the LWS pod webhooks apply."""
    core_v1.patch_namespace(ns, {"metadata": {"labels": dict([lws.NAMESPACE_LABEL])}})
    return ns


def lws_object(ns: str, name: str = NAME) -> dict[str, Any] | None:
    out = kubectl("get", "leaderworkerset", name, "-n", ns, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def server_pods(core_v1: client.CoreV1Api, ns: str) -> list[client.V1Pod]:
    pods = core_v1.list_namespaced_pod(ns, label_selector=instance(NAME)).items
    return [p for p in pods if p.metadata.deletion_timestamp is None]


def templates_at(ns: str) -> list[int | None]:
    """The context of the leader's and the workers' templates, in that order."""
    group = (lws_object(ns) or {})["spec"]["leaderWorkerTemplate"]
    return [
        max_model_len(group[r]["spec"]["containers"][0]["command"])
        for r in ("leaderTemplate", "workerTemplate")
    ]


def command_of(pod: client.V1Pod) -> list[str]:
    """The server container's command."""
    return list(pod.spec.containers[0].command)


def test_a_pipeline_waits_for_the_lws_api_then_creates_the_leader_worker_set(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, apps_v1: client.AppsV1Api
) -> None:
    """Without the CRD: Stalled LeaderWorkerSetMissing, nothing created; the CRD installed while
    the operator runs: the LeaderWorkerSet is created (the real schema accepts it), no restart."""
    apply_yaml(ns, sample(**TP4_PP2))
    stalled = wait_phase(custom, ns, NAME, "Failed")
    assert condition(stalled, "Stalled")["reason"] == "LeaderWorkerSetMissing"
    assert lws.CRD_NAME in condition(stalled, "Stalled")["message"]
    assert apps_v1.list_namespaced_stateful_set(ns).items == []
    lws.install_crd()
    created = wait_for(lambda: lws_object(ns), 60, "LeaderWorkerSet created once its CRD is served")
    group = created["spec"]["leaderWorkerTemplate"]
    assert (group["size"], group["restartPolicy"]) == (2, "RecreateGroupOnPodRestart")
    uid = get_qtd(custom, ns, NAME)["metadata"]["uid"]
    assert [r["uid"] for r in created["metadata"]["ownerReferences"]] == [uid]
    wait_for(
        lambda: condition(get_qtd(custom, ns, NAME), "Stalled")["reason"] != "LeaderWorkerSetMissing",
        60, "Stalled no longer LeaderWorkerSetMissing",
    )  # fmt: skip


@pytest.mark.parametrize(
    "spec",
    [TP4_PP2, {**TP4_PP2, "model": {"cache": {"mode": "Shared"}}},
     {"parallelism": {"tensor": 8, "expert": True, "pipeline": 4}},
     {**TP4_PP2, "model": {"source": {"pvc": {"claimName": "weights"}}}}],
    ids=["per-replica", "shared-cache", "tp8-pp4", "pvc"],
)  # fmt: skip
def test_the_real_lws_admission_accepts_what_the_operator_renders(
    lws_controller: lws.Controller, group_ns: str, spec: dict[str, Any]
) -> None:
    """Server-side dry run: the CRD's schema and LWS's own defaulting and validating webhooks."""
    del lws_controller
    doc = sample(**spec)
    doc["metadata"]["namespace"] = group_ns
    manifest = next(m for m in render.render(api.parse_resource(doc)) if m["kind"] == "LeaderWorkerSet")
    out = kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", "-o", "json",
                  stdin=json.dumps(manifest))  # fmt: skip
    defaulted = json.loads(out.stdout)
    assert defaulted["spec"]["leaderWorkerTemplate"]["size"] == spec["parallelism"]["pipeline"]
    assert defaulted["spec"]["rolloutStrategy"]["type"] == "RollingUpdate"


def leader_selector() -> str:
    labels = {
        "app.kubernetes.io/instance": NAME,
        "app.kubernetes.io/name": "qwen-thinking",
        WORKER_INDEX: "0",
    }
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def endpoint_pods(ns: str) -> set[str]:
    """The pods the client Service's EndpointSlices list."""
    out = kubectl("get", "endpointslices", "-n", ns, "-l", f"kubernetes.io/service-name={NAME}", "-o", "json")
    return {a["targetRef"]["name"] for s in json.loads(out.stdout)["items"] for a in s.get("endpoints") or []}


def assert_one_group_on_two_nodes(core_v1: client.CoreV1Api, ns: str, ready: dict[str, Any]) -> None:
    pods = server_pods(core_v1, ns)
    assert sorted(p.metadata.name for p in pods) == [f"{NAME}-0", f"{NAME}-0-1"]
    assert len({p.spec.node_name for p in pods}) == 2, [(p.metadata.name, p.spec.node_name) for p in pods]
    by_index = {p.metadata.labels[WORKER_INDEX]: p for p in pods}
    leader, worker = by_index["0"].spec.containers[0], by_index["1"].spec.containers[0]
    assert "--headless" in worker.command and "--headless" not in leader.command
    assert leader.startup_probe is not None and worker.startup_probe is None
    env = {e.name: e.value for e in worker.env}  # LWS's pod webhook gave them
    assert env["LWS_WORKER_INDEX"] == "1" and env["LWS_LEADER_ADDRESS"].startswith(f"{NAME}-0.")
    assert ready["status"]["selector"] == leader_selector()
    assert wait_for(lambda: endpoint_pods(ns), 60, "the Service's endpoints") == {f"{NAME}-0"}


def assert_scales_to_two_groups(custom: client.CustomObjectsApi, core_v1: client.CoreV1Api, ns: str) -> None:
    """Through our scale subresource: 2 groups, 4 pods on 4 nodes; its selector finds the leaders."""
    kubectl("scale", f"qtd/{NAME}", "-n", ns, "--replicas=2")
    wait_for(lambda: (lws_object(ns) or {}).get("spec", {}).get("replicas") == 2, 60, "LWS replicas 2")
    scaled = wait_phase(custom, ns, NAME, "Ready", timeout=120)
    assert (scaled["status"]["replicas"], scaled["status"]["readyReplicas"]) == (2, 2)
    pods = server_pods(core_v1, ns)
    assert len(pods) == 4 and len({p.spec.node_name for p in pods}) == 4
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}/{NAME}/scale"
    scale = json.loads(kubectl("get", "--raw", path).stdout)
    assert scale["spec"]["replicas"] == 2 and scale["status"]["replicas"] == 2
    leaders = core_v1.list_namespaced_pod(ns, label_selector=scale["status"]["selector"]).items
    assert sorted(p.metadata.name for p in leaders) == [f"{NAME}-0", f"{NAME}-1"]
    assert_a_policy_per_group(core_v1, ns, 2)


def group_policies(ns: str) -> dict[str, dict[str, Any]]:
    out = json.loads(kubectl("get", "networkpolicies", "-n", ns, "-l", instance(NAME), "-o", "json").stdout)
    return {p["metadata"]["name"]: p for p in out["items"] if p["metadata"]["name"] != NAME}


def assert_a_policy_per_group(core_v1: client.CoreV1Api, ns: str, groups: int) -> None:
    """One NetworkPolicy a group (children/network.py), each selecting, by the labels the real
    LWS controller and webhook put on the pods, exactly its group's leader and worker."""
    want = [f"{NAME}-group-{g}" for g in range(groups)]

    def found() -> dict[str, dict[str, Any]] | None:
        policies = group_policies(ns)
        return policies if sorted(policies) == want else None

    policies = wait_for(found, 30, f"the policies {want}")
    for g in range(groups):
        labels = policies[f"{NAME}-group-{g}"]["spec"]["podSelector"]["matchLabels"]
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        pods = core_v1.list_namespaced_pod(ns, label_selector=selector).items
        assert sorted(p.metadata.name for p in pods) == [f"{NAME}-{g}", f"{NAME}-{g}-1"]


def last_cure(custom: client.CustomObjectsApi, ns: str) -> dict[str, Any] | None:
    history = ((get_qtd(custom, ns, NAME).get("status") or {}).get("context") or {}).get("history") or []
    return history[-1] if history else None


def all_pods_at(core_v1: client.CoreV1Api, ns: str, context: int) -> bool:
    pods = server_pods(core_v1, ns)
    return len(pods) == 4 and all(max_model_len(command_of(p)) == context for p in pods)


def test_tp4_pp2_groups_on_two_nodes_scale_and_a_workers_oom_cures_the_group(
    operator: Operator, lws_controller: lws.Controller, four_gpu_nodes: list[str], group_ns: str,
    custom: client.CustomObjectsApi, core_v1: client.CoreV1Api, api_client: client.ApiClient,
) -> None:  # fmt: skip
    del operator, four_gpu_nodes
    ns = group_ns
    apply_yaml(ns, sample(**TP4_PP2))
    assert_one_group_on_two_nodes(core_v1, ns, wait_phase(custom, ns, NAME, "Ready", timeout=120))
    assert_scales_to_two_groups(custom, core_v1, ns)
    # A worker of group 1 runs out of KV cache (LWS recreates the group): the cure goes into the
    # one template of every group, and every pod rolls to it
    said = simulate.report("oom", simulate.Run(262144, estimate=200000))
    assert said is not None
    terminate_container(api_client, ns, f"{NAME}-1-1", "server", "Error", 1, message=json.dumps(said))
    step = wait_for(lambda: last_cure(custom, ns), 60, "a context reduction in the status")
    assert step["pod"] == f"{NAME}-1-1" and step["to"] <= 200000
    # The cure is in the status first, then in the LeaderWorkerSet (a kill in between loses nothing)
    wait_for(lambda: templates_at(ns) == [step["to"]] * 2, 30, "both templates on the shorter context")
    wait_for(lambda: all_pods_at(core_v1, ns, step["to"]), 180, "all 4 pods on the shorter context")
    wait_phase(custom, ns, NAME, "Ready", timeout=120)
    # Back to one group: the second group's policy is pruned with it
    kubectl("scale", f"qtd/{NAME}", "-n", ns, "--replicas=1")
    wait_for(lambda: len(server_pods(core_v1, ns)) == 2, 120, "one group's pods")
    assert_a_policy_per_group(core_v1, ns, 1)


# -- rollouts behind a canary group (reconcile/rollout.py) ---------------------------------------

GROUPS = 3
MANUAL = {"name": "QWEN_E2E_MANUAL_KUBELET", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
"""kwok leaves a pod whose server carries this Pending: the test plays its kubelet."""
PARTITION = ("spec", "rolloutStrategy", "rollingUpdateConfiguration", "partition")


@pytest.fixture
def six_gpu_nodes(four_gpu_nodes: list[str]) -> Iterator[list[str]]:
    """Two more nodes of the pool for this test: three TP 4 x PP 2 groups need six."""
    more = [f"lws-node-{i}" for i in range(len(four_gpu_nodes), 6)]
    items = [nodes.node_manifest(n, nodes.GPU_MODELS["H100"], 4) for n in more]
    for item in items:
        item["metadata"]["labels"][POOL[0]] = POOL[1]
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}))
    kubectl("wait", "--for=condition=Ready", "--timeout=60s", *[f"node/{n}" for n in more])
    yield [*four_gpu_nodes, *more]
    kubectl("delete", "node", *more, "--ignore-not-found")


def ready_pod(pod: client.V1Pod) -> bool:
    conditions = pod.status.conditions or [] if pod.status else []
    return pod.metadata.deletion_timestamp is None and any(
        c.type == "Ready" and c.status == "True" for c in conditions
    )


def digest_of(pod: client.V1Pod) -> str:
    return str((pod.metadata.annotations or {}).get(TEMPLATE_ANNOTATION) or "")


def lws_digest(ns: str) -> str:
    meta = (lws_object(ns) or {})["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["metadata"]
    return str((meta.get("annotations") or {}).get(TEMPLATE_ANNOTATION) or "")


def lws_partition(ns: str) -> int:
    value: Any = lws_object(ns) or {}
    for key in PARTITION:
        value = value.get(key) or {} if isinstance(value, dict) else {}
    return value if isinstance(value, int) else 0


def leaders(core_v1: client.CoreV1Api, ns: str) -> dict[str, client.V1Pod]:
    return {
        p.metadata.name: p for p in server_pods(core_v1, ns) if p.metadata.labels.get(WORKER_INDEX) == "0"
    }


def groups_serving(custom: client.CustomObjectsApi, core_v1: client.CoreV1Api, ns: str) -> dict[str, str]:
    """Three groups serving on six nodes; the leaders' uids by name."""
    apply_yaml(ns, sample(**TP4_PP2, replicas=GROUPS))
    wait_phase(custom, ns, NAME, "Ready", timeout=180)

    def all_serving() -> dict[str, client.V1Pod] | None:
        found = leaders(core_v1, ns)
        return found if sum(ready_pod(p) for p in found.values()) == GROUPS else None

    found = wait_for(all_serving, 60, "three serving leaders")
    assert len(server_pods(core_v1, ns)) == 2 * GROUPS
    return {name: p.metadata.uid for name, p in found.items()}


def serve(core_v1: client.CoreV1Api, ns: str, pod: client.V1Pod) -> None:
    """Play the kubelet of a Pending pod of the new template: its server runs and is ready."""
    status = starting_pod_status("serving", datetime.now(UTC))
    core_v1.patch_namespaced_pod_status(pod.metadata.name, ns, {"status": status})


def canary_waits(
    core_v1: client.CoreV1Api, ns: str, uids: dict[str, str], new: str
) -> dict[str, client.V1Pod]:
    """The new template reached the highest group alone (its pods Pending), the others serve on."""
    canary = f"{NAME}-{GROUPS - 1}"

    def recreated() -> dict[str, client.V1Pod] | None:
        pods = {p.metadata.name: p for p in server_pods(core_v1, ns)}
        group = [pods.get(canary), pods.get(f"{canary}-1")]
        return pods if all(p is not None and digest_of(p) == new for p in group) else None

    wait_for(recreated, 60, "the canary group recreated from the new template")
    settle(5)  # and it stays so: no other group is replaced while the canary does not serve
    pods = {p.metadata.name: p for p in server_pods(core_v1, ns)}
    assert sorted(n for n, p in pods.items() if digest_of(p) == new) == [canary, f"{canary}-1"], pods
    for i in range(GROUPS - 1):
        leader = pods[f"{NAME}-{i}"]
        assert leader.metadata.uid == uids[leader.metadata.name] and ready_pod(leader)
        assert digest_of(leader) != new and ready_pod(pods[f"{NAME}-{i}-1"])
    assert lws_partition(ns) == GROUPS - 1
    return pods


def test_a_new_template_rolls_the_canary_group_first_then_the_rest(
    operator: Operator, lws_controller: lws.Controller, six_gpu_nodes: list[str], group_ns: str,
    custom: client.CustomObjectsApi, core_v1: client.CoreV1Api,
) -> None:  # fmt: skip
    """The apply that brings the new template sets the partition to replicas - 1: only the
    highest group takes it; once its leader serves, the partition goes to 0 and the controller
    replaces the others one at a time (maxUnavailable 1): never fewer than two groups serve."""
    del operator, six_gpu_nodes
    ns = group_ns
    uids = groups_serving(custom, core_v1, ns)
    old = lws_digest(ns)
    apply_yaml(ns, sample(**TP4_PP2, replicas=GROUPS, runtime={"env": [MANUAL]}))
    new = wait_for(lambda: (d := lws_digest(ns)) != old and d, 30, "the new template in the LeaderWorkerSet")
    canary_waits(core_v1, ns, uids, new)
    canary_said(custom, ns, new)

    roll_the_rest(custom, core_v1, ns, uids, new)


def canary_said(custom: client.CustomObjectsApi, ns: str, new: str) -> None:
    """The status names the highest group as the canary of the new template, in the Progress words too."""
    obj = get_qtd(custom, ns, NAME)
    assert obj["status"]["rollout"]["canary"] == f"{NAME}-{GROUPS - 1}"
    assert obj["status"]["rollout"]["revision"] == new
    assert obj["status"]["progress"].startswith(f"rolling 1/{GROUPS}, canary scheduling"), obj["status"]


def roll_the_rest(
    custom: client.CustomObjectsApi, core_v1: client.CoreV1Api, ns: str, uids: dict[str, str], new: str
) -> None:
    """Play the kubelet of each group the controller recreates from the new template: the groups
    are replaced from the highest index down, one at a time (never fewer than two serve), and
    the rollout ends at rest (partition 0, no `status.rollout`)."""
    replaced: list[str] = []
    fewest = GROUPS

    def rolled() -> bool:
        nonlocal fewest
        pods = server_pods(core_v1, ns)
        for pod in pods:
            if digest_of(pod) == new and pod.status.phase == "Pending":
                serve(core_v1, ns, pod)
        now = leaders(core_v1, ns)
        fewest = min(fewest, sum(ready_pod(p) for p in now.values()))
        for name, uid in sorted(uids.items(), reverse=True):
            if (name not in now or now[name].metadata.uid != uid) and name not in replaced:
                replaced.append(name)
        return len(pods) == 2 * GROUPS and all(digest_of(p) == new and ready_pod(p) for p in pods)

    wait_for(rolled, 180, "every group on the new template and serving", interval=0.2)
    assert replaced == [f"{NAME}-{i}" for i in reversed(range(GROUPS))], replaced
    assert fewest >= GROUPS - 1, fewest
    wait_phase(custom, ns, NAME, "Ready", timeout=120)
    assert lws_partition(ns) == 0
    assert "rollout" not in get_qtd(custom, ns, NAME)["status"]
    entries = get_qtd(custom, ns, NAME)["status"]["replicaStatus"]
    assert {e["revision"] for e in entries} == {new} and len(entries) == 2 * GROUPS


def test_a_canary_group_that_fails_halts_with_the_others_serving_on_the_old_template(
    operator: Operator, lws_controller: lws.Controller, six_gpu_nodes: list[str], group_ns: str,
    custom: client.CustomObjectsApi, core_v1: client.CoreV1Api, api_client: client.ApiClient,
) -> None:  # fmt: skip
    del operator, six_gpu_nodes
    ns = group_ns
    uids = groups_serving(custom, core_v1, ns)
    old = lws_digest(ns)
    apply_yaml(ns, sample(**TP4_PP2, replicas=GROUPS, runtime={"env": [MANUAL]}))
    new = wait_for(lambda: (d := lws_digest(ns)) != old and d, 30, "the new template in the LeaderWorkerSet")
    canary = f"{NAME}-{GROUPS - 1}"
    canary_waits(core_v1, ns, uids, new)
    # the canary's leader starts, and vLLM refuses its arguments
    core_v1.patch_namespaced_pod_status(
        canary, ns, {"status": starting_pod_status("loading", datetime.now(UTC))}
    )
    said = simulate.report("bad-args", simulate.Run(262144))
    assert said is not None
    terminate_container(api_client, ns, canary, "server", "Error", 2, message=json.dumps(said))

    def halted() -> dict[str, Any] | None:
        obj = get_qtd(custom, ns, NAME)
        return obj if condition(obj, "Stalled").get("reason") == "RolloutHalted" else None

    obj = wait_for(halted, 60, "Stalled RolloutHalted")
    assert "InvalidArguments" in condition(obj, "Stalled")["message"]
    rollout = obj["status"]["rollout"]
    assert (rollout["state"], rollout["halted"], rollout["canary"]) == ("Halted", [canary], canary)
    assert obj["status"]["progress"].startswith("halted: canary CrashLoop InvalidArguments"), obj["status"]
    settle(5)  # and it stays so: exactly one group on the new template, the others serve on the old one
    pods = {p.metadata.name: p for p in server_pods(core_v1, ns)}
    assert sorted(n for n, p in pods.items() if digest_of(p) == new) == [canary, f"{canary}-1"], pods
    for i in range(GROUPS - 1):
        leader, worker = pods[f"{NAME}-{i}"], pods[f"{NAME}-{i}-1"]
        assert leader.metadata.uid == uids[leader.metadata.name] and ready_pod(leader) and ready_pod(worker)
        assert digest_of(leader) == old and digest_of(worker) == old
    assert lws_partition(ns) == GROUPS - 1
    assert condition(get_qtd(custom, ns, NAME), "Stalled")["reason"] == "RolloutHalted"
    entries = {e["pod"]: e for e in get_qtd(custom, ns, NAME)["status"]["replicaStatus"]}
    assert entries[f"{NAME}-0"]["revision"] == old and entries[f"{canary}-1"]["revision"] == new

    # a new spec (here: the old one back) resumes it: the canary group goes back, the others stay
    apply_yaml(ns, sample(**TP4_PP2, replicas=GROUPS))
    wait_for(
        lambda: (x := server_pods(core_v1, ns)) and len(x) == 2 * GROUPS
        and all(digest_of(p) == old and ready_pod(p) for p in x),
        120, "every group on the old template and serving",
    )  # fmt: skip
    wait_phase(custom, ns, NAME, "Ready", timeout=120)
    now = leaders(core_v1, ns)
    assert [now[f"{NAME}-{i}"].metadata.uid for i in range(GROUPS - 1)] == [
        uids[f"{NAME}-{i}"] for i in range(GROUPS - 1)
    ]
    assert "rollout" not in get_qtd(custom, ns, NAME)["status"] and lws_partition(ns) == 0


def pointer(key: str) -> str:
    """A map key as a JSON-pointer segment."""
    return key.replace("~", "~0").replace("/", "~1")


def test_an_operator_upgrade_restarts_no_group_and_the_next_template_rolls_behind_the_canary(
    operator: Operator, lws_controller: lws.Controller, six_gpu_nodes: list[str], group_ns: str,
    custom: client.CustomObjectsApi, core_v1: client.CoreV1Api,
) -> None:  # fmt: skip
    """A LeaderWorkerSet as an operator from before the template digest left it: no digest in its
    templates nor on its pods, another applied hash. The new operator's start applies nothing
    to its templates (rollout.as_applied): no group is recreated, the LeaderWorkerSet keeps its
    generation, and the status says no rollout. The next spec change brings the digest, behind
    the canary: the groups without it are the old template."""
    del six_gpu_nodes
    ns = group_ns
    groups_serving(custom, core_v1, ns)
    operator.kill(signal.SIGTERM)  # the older operator: gone while its LeaderWorkerSet is made so
    try:
        strip = [
            {"op": "remove", "path": f"/spec/leaderWorkerTemplate/{role}/metadata/annotations/"
             f"{pointer(TEMPLATE_ANNOTATION)}"} for role in render.GROUP_TEMPLATES
        ]  # fmt: skip
        strip.append(
            {"op": "replace", "path": f"/metadata/annotations/{pointer(HASH_ANNOTATION)}", "value": "older"}
        )
        kubectl("patch", "leaderworkerset", NAME, "-n", ns, "--type=json", "-p", json.dumps(strip))

        def settled() -> dict[str, str] | None:
            pods = server_pods(core_v1, ns)
            done = len(pods) == 2 * GROUPS and all(not digest_of(p) and ready_pod(p) for p in pods)
            return {p.metadata.name: p.metadata.uid for p in pods} if done else None

        wait_for(settled, 180, "every group recreated without the digest, serving")
        settle(3)  # the controller at rest: no group still to replace
        uids = wait_for(settled, 10, "every group serving without the digest")
        before = lws_object(ns) or {}
    finally:
        operator.start()  # the upgraded operator
    assert before["metadata"]["annotations"][HASH_ANNOTATION] == "older"
    # the upgraded operator's pass: it applies its hash (a change of metadata alone), nothing else
    wait_for(
        lambda: (lws_object(ns) or {})["metadata"]["annotations"][HASH_ANNOTATION] != "older",
        60, "the operator's apply of the LeaderWorkerSet",
    )  # fmt: skip
    settle(8)
    after = lws_object(ns) or {}
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"]["leaderWorkerTemplate"] == before["spec"]["leaderWorkerTemplate"]
    assert lws_digest(ns) == "" and lws_partition(ns) == 0
    pods = server_pods(core_v1, ns)
    assert {p.metadata.name: p.metadata.uid for p in pods} == uids
    assert all(ready_pod(p) and not digest_of(p) for p in pods)
    obj = wait_phase(custom, ns, NAME, "Ready", timeout=60)
    assert "rollout" not in obj["status"], obj["status"]
    assert not obj["status"]["progress"].startswith(("rolling", "halted")), obj["status"]
    assert all(not e.get("revision") for e in obj["status"]["replicaStatus"]), obj["status"]

    # the first real change: the digest comes, to the highest group alone while the others serve
    apply_yaml(ns, sample(**TP4_PP2, replicas=GROUPS, runtime={"env": [MANUAL]}))
    new = wait_for(lambda: lws_digest(ns), 30, "the new template, with its digest, in the LeaderWorkerSet")
    leader_uids = {n: uids[n] for n in leaders(core_v1, ns)}
    canary_waits(core_v1, ns, leader_uids, new)
    canary_said(custom, ns, new)
    roll_the_rest(custom, core_v1, ns, leader_uids, new)
