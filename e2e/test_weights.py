"""Weights downloaded once per resource (model.cache.mode Shared) against once per replica.

On the real control plane: kube-controller-manager's Job controller runs the download Job,
kwok plays its pod (it succeeds a few seconds after it starts, see kwok-stages.yaml) and the
server pods; the operator runs as its ServiceAccount (operator_fixtures), so the RBAC for Jobs
and claims is proven too. Each test scales 1 -> 4 and counts the downloads that started.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pytest
from kubernetes import client, watch

pytest.register_assert_rewrite("e2e.operator_fixtures")  # before its import, for readable failures

from e2e.devcluster.kube import kubectl, wait_for  # noqa: E402
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
from qwen_operator.children import compile_cache, render  # noqa: E402

pytest_plugins = ("e2e.operator_fixtures",)
pytestmark = pytest.mark.e2e

IDLE_SECONDS = 10
SHARED = {"id": "Qwen/Qwen3-235B-A22B-Thinking-2507-FP8", "cache": {"mode": "Shared", "size": "300Gi"}}


class WeightsRecorder:
    """Every status.weights.state the resource reports, from a watch that starts at the current
    resourceVersion (so no write after construction is missed)."""

    def __init__(self, custom: client.CustomObjectsApi, ns: str) -> None:
        self.seen: list[str] = []
        self._watch = watch.Watch()
        self._args = (custom.list_namespaced_custom_object, GROUP, VERSION, ns, PLURAL)
        listed = custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)
        self._since = listed["metadata"]["resourceVersion"]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(Exception):  # stop() ends the stream mid-response
            for event in self._watch.stream(*self._args, resource_version=self._since, timeout_seconds=180):
                state = ((event["object"].get("status") or {}).get("weights") or {}).get("state")
                if state and (not self.seen or self.seen[-1] != state):
                    self.seen.append(state)

    def stop(self) -> list[str]:
        self._watch.stop()
        return self.seen


def _scale_to_four(custom: client.CustomObjectsApi, ns: str) -> dict[str, Any]:
    kubectl("scale", f"qtd/{NAME}", "-n", ns, "--replicas=4")
    wait_for(lambda: get_qtd(custom, ns, NAME)["status"].get("readyReplicas") == 4, 120, "4 ready replicas")
    return wait_phase(custom, ns, NAME, "Ready")


def _server_pods(core_v1: client.CoreV1Api, ns: str) -> list[Any]:
    pods = core_v1.list_namespaced_pod(ns, label_selector=instance(NAME)).items
    return [p for p in pods if p.metadata.labels.get("app.kubernetes.io/component") == "server"]


def test_shared_cache_downloads_once_and_scaling_to_four_starts_no_download(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, core_v1: client.CoreV1Api,
    apps_v1: client.AppsV1Api, api_client: client.ApiClient,
) -> None:  # fmt: skip
    batch_v1 = client.BatchV1Api(api_client)
    recorder = WeightsRecorder(custom, ns)
    apply_yaml(ns, sample(replicas=1, model=SHARED))
    obj = wait_phase(custom, ns, NAME, "Ready")
    wait_for(lambda: recorder.seen and recorder.seen[-1] == "Complete", 10, "the watch to see Complete")
    seen = recorder.stop()
    assert seen[0] in ("Pending", "Downloading") and seen[-1] == "Complete", seen
    uid = obj["metadata"]["uid"]
    claim, job_name = render.weights_claim_name(NAME), render.download_job_name(NAME)
    assert obj["status"]["weights"] == {
        "claim": claim, "job": job_name, "state": "Complete",
        "message": f"downloaded {SHARED['id']}@main into claim {claim}",
    }  # fmt: skip

    (job,) = batch_v1.list_namespaced_job(ns).items
    assert job.metadata.name == job_name and job.metadata.owner_references[0].uid == uid
    assert job.status.succeeded == 1
    pvc = core_v1.read_namespaced_persistent_volume_claim(claim, ns)
    assert pvc.spec.access_modes == ["ReadWriteMany"] and pvc.metadata.owner_references[0].uid == uid
    sts = apps_v1.read_namespaced_stateful_set(NAME, ns)
    assert not sts.spec.template.spec.init_containers
    # no weights volume per replica: each replica's one claim is its compile cache's
    assert [t.metadata.name for t in sts.spec.volume_claim_templates] == [compile_cache.VOLUME]
    # No StatefulSet (no GPU held) until the Job had succeeded.
    assert sts.metadata.creation_timestamp >= job.status.completion_time.replace(microsecond=0)

    obj = _scale_to_four(custom, ns)
    assert condition(obj, "Ready")["status"] == "True"
    (again,) = batch_v1.list_namespaced_job(ns).items  # exactly one Job: no new download
    assert again.metadata.uid == job.metadata.uid and again.status.succeeded == 1
    downloads = core_v1.list_namespaced_pod(ns, label_selector=f"job-name={job_name}").items
    assert len(downloads) == 1, [p.metadata.name for p in downloads]
    servers = _server_pods(core_v1, ns)
    assert len(servers) == 4
    for pod in servers:
        (weights,) = [v for v in pod.spec.volumes if v.name == "weights"]
        assert weights.persistent_volume_claim.claim_name == claim
        assert weights.persistent_volume_claim.read_only
        (mount,) = [m for m in pod.spec.containers[0].volume_mounts if m.name == "weights"]
        assert mount.read_only and not pod.spec.init_containers
    claims = sorted(c.metadata.name for c in core_v1.list_namespaced_persistent_volume_claim(ns).items)
    assert claims == sorted(
        [claim, *(f"{compile_cache.VOLUME}-{NAME}-{i}" for i in range(4))]
    )  # no weights copy
    # Idle means idle: the live claim and Job (defaulted, bound, completed) match what is rendered.
    writes = operator.writes()
    settle(IDLE_SECONDS)
    assert operator.writes() == writes


def test_per_replica_cache_downloads_once_per_replica(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, core_v1: client.CoreV1Api,
    api_client: client.ApiClient,
) -> None:  # fmt: skip
    """The default, for clusters without ReadWriteMany: each replica its own volume and download."""
    del operator
    apply_yaml(ns, sample(replicas=1))
    obj = wait_phase(custom, ns, NAME, "Ready")
    assert "weights" not in obj["status"]
    _scale_to_four(custom, ns)
    assert client.BatchV1Api(api_client).list_namespaced_job(ns).items == []
    servers = _server_pods(core_v1, ns)
    assert len(servers) == 4
    assert all([c.name for c in p.spec.init_containers] == ["fetch-weights"] for p in servers)
    claims = core_v1.list_namespaced_persistent_volume_claim(ns).items
    assert sorted(c.metadata.name for c in claims) == [f"weights-{NAME}-{i}" for i in range(4)]
    assert all(c.spec.access_modes == ["ReadWriteOnce"] for c in claims)
