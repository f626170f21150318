"""Multi-node replicas (parallelism.pipeline > 1): the LeaderWorkerSet, its Services, status and
fallback, as pure functions (the real LWS CRD and controller: e2e/test_multinode.py)."""

from __future__ import annotations

from typing import Any

import pytest

from qwen_operator import api
from qwen_operator.api.vocabulary import (
    INFERENCE_POOL_CRD,
    LWS_CRD,
    LWS_KIND,
    LWS_WORKER_INDEX_LABEL,
    Reason,
    Result,
)
from qwen_operator.children import launcher, render
from qwen_operator.memory import cures
from qwen_operator.reconcile import snapshot, status
from qwen_operator.reconcile.decide import decide
from qwen_operator.reconcile.observe import Observed
from testkit.fake import KEY, NOW, FakeCluster, reconciler
from testkit.wrappers import (
    JOB_COMPLETE,
    NAME,
    Pod,
    children,
    download_job,
    kv_record,
    live,
    parsed,
    resource,
)
from tests.unit.test_reconciler import settled

PP2 = {"parallelism": {"tensor": 4, "pipeline": 2}}
LEADERS = {"app.kubernetes.io/name": "qwen-thinking", "app.kubernetes.io/instance": NAME,
           LWS_WORKER_INDEX_LABEL: "0"}  # fmt: skip


def _children(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{c['kind']}/{c['metadata']['name']}": c for c in render.render(parsed(spec))}


def _lws(spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return _children({**PP2, **(spec or {})})[f"{LWS_KIND}/{NAME}"]


def _template(role: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = _lws(spec)["spec"]["leaderWorkerTemplate"][f"{role}Template"]
    return out


def _after(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def _mounts(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}


# -- render ----------------------------------------------------------------------------------


def test_a_pipeline_renders_a_leader_worker_set_instead_of_the_statefulset() -> None:
    kinds = [(c["kind"], c["metadata"]["name"]) for c in render.render(parsed(PP2))]
    assert kinds == [("ServiceAccount", f"{NAME}-server"), ("ConfigMap", launcher.configmap_name(NAME)),
                     ("Service", NAME), (LWS_KIND, NAME), ("PodDisruptionBudget", NAME),
                     ("NetworkPolicy", NAME), ("NetworkPolicy", f"{NAME}-group-0")]  # fmt: skip
    lws = _lws()
    assert lws["apiVersion"] == "leaderworkerset.x-k8s.io/v1"
    group = lws["spec"]["leaderWorkerTemplate"]
    assert (group["size"], group["restartPolicy"]) == (2, "RecreateGroupOnPodRestart")
    assert lws["spec"]["replicas"] == 1
    assert _lws({"replicas": 3})["spec"]["replicas"] == 3  # the scale subresource's replicas


def test_leader_and_workers_run_vllm_multi_node_without_ray() -> None:
    leader = _template("leader")["spec"]["containers"][0]["command"]
    worker = _template("worker")["spec"]["containers"][0]["command"]
    assert leader == render.server_argv(parsed(PP2))
    for argv in (leader, worker):
        assert _after(argv, "--tensor-parallel-size") == "4"
        assert _after(argv, "--pipeline-parallel-size") == "2"
        assert _after(argv, "--nnodes") == "2"
        assert _after(argv, "--master-addr") == "$(LWS_LEADER_ADDRESS)"
        assert "--distributed-executor-backend" not in argv  # multiprocessing, vLLM's default
    assert _after(leader, "--node-rank") == "0" and "--headless" not in leader
    assert _after(worker, "--node-rank") == "$(LWS_WORKER_INDEX)" and "--headless" in worker
    # the same engine everywhere: only the rank and --headless differ
    assert [a for a in worker if a not in ("--headless", "$(LWS_WORKER_INDEX)")] == [
        a for a in leader if a != "0" or leader[leader.index(a) - 1] != "--node-rank"
    ]


def test_one_stage_renders_no_multi_node_flags() -> None:
    argv = render.server_argv(parsed({}))
    assert not {"--pipeline-parallel-size", "--nnodes", "--node-rank", "--headless"} & set(argv)


def test_probes_on_the_leader_only_and_dev_shm_on_every_pod() -> None:
    leader, worker = _template("leader")["spec"], _template("worker")["spec"]
    assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(leader["containers"][0])
    assert not {"startupProbe", "readinessProbe", "livenessProbe"} & set(worker["containers"][0])
    for pod in (leader, worker):
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
        assert _mounts({"spec": pod})["dshm"]["mountPath"] == "/dev/shm"
        assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 4


def test_each_pod_of_a_group_gets_its_weights() -> None:
    """PerReplica: every pod a claim of its own and the download; Shared: the one claim, read-only,
    and the LeaderWorkerSet waits for the Job like the StatefulSet does."""
    group = _lws()["spec"]["leaderWorkerTemplate"]
    assert [c["metadata"]["name"] for c in group["volumeClaimTemplates"]] == ["weights"]
    for role in ("leader", "worker"):
        assert [c["name"] for c in _template(role)["spec"]["initContainers"]] == ["fetch-weights"]
    shared = {"model": {"cache": {"mode": "Shared"}}}
    kids = _children({**PP2, **shared})
    # the one claim of its own each pod gets is its compile cache's (test_compile_cache.py)
    claims = kids[f"{LWS_KIND}/{NAME}"]["spec"]["leaderWorkerTemplate"]["volumeClaimTemplates"]
    assert [c["metadata"]["name"] for c in claims] == ["compile-cache"]
    for role in ("leader", "worker"):
        pod = _template(role, shared)
        assert _mounts(pod)["weights"]["readOnly"] is True and "initContainers" not in pod["spec"]
        (claim,) = [v for v in pod["spec"]["volumes"] if v["name"] == "weights"]
        assert claim["persistentVolumeClaim"]["claimName"] == f"{NAME}-weights"
    assert f"Job/{NAME}-weights" in kids


def test_the_service_selects_the_leaders_and_the_budget_every_pod() -> None:
    kids = _children(PP2)
    assert kids[f"Service/{NAME}"]["spec"]["selector"] == LEADERS
    budget = kids[f"PodDisruptionBudget/{NAME}"]["spec"]["selector"]["matchLabels"]
    assert LWS_WORKER_INDEX_LABEL not in budget
    assert LWS_WORKER_INDEX_LABEL not in _children({})[f"Service/{NAME}"]["spec"]["selector"]


# -- the API ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parallelism", "field"),
    [({"pipeline": 0}, "pipeline"), ({"pipeline": 9}, "pipeline"), ({"tensor": 8, "pipeline": 2}, "expert")],
)
def test_bad_pipelines_are_refused(parallelism: dict[str, Any], field: str) -> None:
    with pytest.raises(api.InvalidResource) as exc:
        parsed({"parallelism": parallelism})
    assert field in exc.value.field


def test_the_expert_rule_names_the_pipeline() -> None:
    with pytest.raises(api.InvalidResource, match="at any pipeline size"):
        parsed({"parallelism": {"tensor": 8, "pipeline": 2}})
    ok = parsed({"parallelism": {"tensor": 8, "pipeline": 2, "expert": True}})
    assert ok.spec.parallelism.pipeline == 2


@pytest.mark.parametrize("flag", ["--pipeline-parallel-size=2", "-pp", "--nnodes=3", "--node-rank=1",
                                  "--master-addr=x", "--headless"])  # fmt: skip
def test_extra_args_cannot_set_the_multi_node_flags(flag: str) -> None:
    with pytest.raises(api.InvalidResource):
        parsed({"runtime": {"extraArgs": [flag]}})


# -- decide and status -----------------------------------------------------------------------


def _observed(
    spec: dict[str, Any] | None = None, served: bool = True, kids: tuple[snapshot.Child, ...] | None = None,
    pods: tuple[snapshot.Pod, ...] = (),
) -> Observed:  # fmt: skip
    full = {**PP2, **(spec or {})}
    live_kids = children(parsed(full)) if kids is None else kids
    return Observed(resource(full), live_kids, pods, served=frozenset({LWS_CRD} if served else ()))


def test_without_the_lws_api_nothing_is_created_and_the_status_says_why() -> None:
    desired = decide(_observed(served=False, kids=()), NOW)
    assert desired.applies == () and desired.result == Result.BLOCKED
    patch = desired.status_patch or {}
    stalled = {c["type"]: c for c in patch["conditions"]}["Stalled"]
    assert (stalled["status"], stalled["reason"]) == ("True", Reason.LEADER_WORKER_SET_MISSING)
    assert LWS_CRD in stalled["message"] and "parallelism.pipeline to 1" in stalled["message"]


def test_with_the_lws_api_the_leader_worker_set_is_applied_and_the_status_counts_groups() -> None:
    desired = decide(_observed(kids=()), NOW)
    kinds = {"ServiceAccount", "ConfigMap", "Service", LWS_KIND, "PodDisruptionBudget", "NetworkPolicy"}
    assert {a.manifest["kind"] for a in desired.applies} == kinds
    settled = decide(_observed({"replicas": 2}), NOW)
    patch = settled.status_patch or {}
    assert settled.applies == () and patch["phase"] == "Ready"
    assert (patch["replicas"], patch["readyReplicas"]) == (2, 2)
    assert patch["selector"] == ",".join(f"{k}={v}" for k, v in sorted(LEADERS.items()))


@pytest.mark.parametrize(
    ("lws_status", "settled"),
    [
        ({}, True),
        ({"readyReplicas": 1}, True),
        ({"updatedReplicas": 1}, False),
        ({"replicas": 1}, False),
        ({"conditions": [{"type": "UpdateInProgress", "status": "True"}]}, False),
    ],
)
def test_a_group_rollout_settles_when_every_group_is_updated(
    lws_status: dict[str, Any], settled: bool
) -> None:
    manifest = next(m for m in render.render(parsed({**PP2, "replicas": 2})) if m["kind"] == LWS_KIND)
    child = snapshot.child_from(live(manifest, **lws_status))
    ro = status.rollout(child, 2)
    assert ro.exists and ro.settled is settled


def test_a_workers_oom_cures_the_whole_group() -> None:
    """The worker's failure counts though LWS already deletes the group (RecreateGroupOnPodRestart);
    the shorter context goes into the one template every pod of the group runs."""
    worker = Pod(f"{NAME}-0-1", uid="w-1").in_group(1).context(262144).failed(kv_record(262144, 245408))
    leader = Pod(f"{NAME}-0", uid="l-1").in_group(0).context(262144).not_ready().deleting()
    desired = decide(_observed(pods=(leader.facts(), worker.deleting().facts())), NOW)
    (apply,) = desired.applies
    assert apply.manifest["kind"] == LWS_KIND
    for role in ("leaderTemplate", "workerTemplate"):
        command = apply.manifest["spec"]["leaderWorkerTemplate"][role]["spec"]["containers"][0]["command"]
        assert _after(command, "--max-model-len") == "244736"
    assert desired.reduction is not None and desired.reduction.pod == f"{NAME}-0-1"


def test_a_deleted_pod_of_a_single_node_replica_still_says_nothing() -> None:
    pod = Pod().context(262144).failed(kv_record(262144, 245408)).deleting().facts()
    assert cures.detect([pod]) == [] and len(cures.detect([pod], groups=True)) == 1


# -- parallelism.pipeline crossing 1 on a running resource ----------------------------------


def test_switching_to_a_pipeline_deletes_the_statefulset_first_then_creates_the_group() -> None:
    cluster = settled(FakeCluster())
    cluster.crds.add(LWS_CRD)
    cluster.edit({"parallelism": {"tensor": 4, "pipeline": 2}})
    cluster.calls.clear()
    reconciler(cluster).reconcile(KEY)
    assert ("delete", "StatefulSet") in cluster.calls and LWS_KIND not in cluster.applied()
    assert cluster.propagations == ["Foreground"]  # its pods go before the group takes the GPUs
    assert ("Normal", "Replacing") in cluster.events
    assert "parallelism.pipeline changed" in cluster.messages[cluster.events.index(("Normal", "Replacing"))]
    reconciler(cluster).reconcile(KEY)  # the StatefulSet's deletion event
    assert (LWS_KIND, NAME) in cluster.objects and ("StatefulSet", NAME) not in cluster.objects


def test_back_to_one_stage_deletes_the_group_first() -> None:
    cluster = FakeCluster(PP2)
    cluster.crds.add(LWS_CRD)
    settled(cluster)
    assert (LWS_KIND, NAME) in cluster.objects
    cluster.edit({"parallelism": {"tensor": 4}})
    cluster.calls.clear()
    reconciler(cluster).reconcile(KEY)
    assert ("delete", LWS_KIND) in cluster.calls and "StatefulSet" not in cluster.applied()
    reconciler(cluster).reconcile(KEY)
    assert ("StatefulSet", NAME) in cluster.objects and (LWS_KIND, NAME) not in cluster.objects


def test_a_workload_being_deleted_holds_the_new_one_back() -> None:
    res = parsed(PP2)
    stale = live(next(m for m in render.render(parsed({})) if m["kind"] == "StatefulSet"))
    stale["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    kids = (*children(res), snapshot.child_from(stale))
    desired = decide(_observed(kids=tuple(k for k in kids if k.kind != LWS_KIND)), NOW)
    assert desired.deletes == () and LWS_KIND not in {a.manifest["kind"] for a in desired.applies}
    assert decide(_observed(served=False, kids=kids), NOW).deletes == ()  # blocked: the old one serves on


def test_a_shared_cache_holds_the_groups_back_until_the_download_is_complete() -> None:
    """model.cache.mode Shared with a pipeline is supported: one Job, and the LeaderWorkerSet
    waits for it exactly as the StatefulSet does."""
    shared = {**PP2, "model": {"cache": {"mode": "Shared"}}}
    first = decide(_observed(shared, kids=()), NOW)
    kinds = [a.manifest["kind"] for a in first.applies]
    assert "Job" in kinds and "PersistentVolumeClaim" in kinds and LWS_KIND not in kinds
    res = parsed(shared)
    kids = tuple(c for c in children(res) if c.kind not in ("Job", LWS_KIND))
    running = decide(_observed(shared, kids=(*kids, download_job(res, active=1))), NOW)
    assert LWS_KIND not in [a.manifest["kind"] for a in running.applies]
    done = decide(_observed(shared, kids=(*kids, download_job(res, **JOB_COMPLETE))), NOW)
    assert [a.manifest["kind"] for a in done.applies] == [LWS_KIND]


def test_an_inference_pool_routes_to_the_leaders_only() -> None:
    spec = {
        **PP2,
        "inferencePool": {"endpointPickerRef": {"name": "epp", "port": {"number": 9002}}},
        "auth": {"apiKeySecretRef": {"name": "qwen-api-key", "key": "key"}},
    }
    kids = render.render(parsed(spec), served=frozenset({INFERENCE_POOL_CRD}))
    (pool,) = [c for c in kids if c["kind"] == "InferencePool"]
    assert pool["spec"]["selector"]["matchLabels"] == LEADERS
