"""The harness itself: simulated GPU nodes, scheduling, garbage collection, crash reports."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from kubernetes import client

from e2e.conftest import Cluster
from e2e.devcluster import cluster as local_cluster
from e2e.devcluster.kube import condition, kubectl, terminate_container, wait_for
from e2e.devcluster.toolchain import gomod, versions

pytestmark = pytest.mark.e2e
GPU = "nvidia.com/gpu"
IMAGE = "registry.invalid/never-pulled:1"  # kwok runs no containers, so nothing is pulled


def gpu_container(gpus: int, name: str = "server") -> client.V1Container:
    limits = {GPU: str(gpus)}
    return client.V1Container(name=name, image=IMAGE, resources=client.V1ResourceRequirements(limits=limits))


def gpu_pod(name: str, gpus: int) -> client.V1Pod:
    spec = client.V1PodSpec(containers=[gpu_container(gpus)], restart_policy="Always")
    return client.V1Pod(metadata=client.V1ObjectMeta(name=name), spec=spec)


def test_server_reports_pinned_version(cluster: Cluster) -> None:
    """The version ldflags reached the binaries: /version is the pinned release."""
    server = json.loads(kubectl("version", "-o", "json").stdout)["serverVersion"]
    if cluster.local:
        assert server["gitVersion"] == versions.KUBERNETES
    assert server["gitVersion"].startswith("v1.")


def test_gpu_nodes_ready(core_v1: client.CoreV1Api) -> None:
    expected = local_cluster.default_nodes()[0]
    nodes = core_v1.list_node(label_selector="nvidia.com/gpu.present=true").items
    assert len(nodes) == expected, [n.metadata.name for n in nodes]
    for node in nodes:
        ready = condition(node, "Ready")
        assert ready is not None and ready.status == "True", (node.metadata.name, ready)
        assert node.status.allocatable[GPU] == "8"
        assert node.status.capacity[GPU] == "8"
        labels = node.metadata.labels
        assert labels["nvidia.com/gpu.count"] == "8"
        assert labels["nvidia.com/gpu.product"].startswith("NVIDIA-H")
        assert int(labels["nvidia.com/gpu.memory"]) > 80_000


def test_statefulset_of_gpu_pods_becomes_ready(
    namespace: str, apps_v1: client.AppsV1Api, core_v1: client.CoreV1Api
) -> None:
    labels = {"app": "gpu-sts"}
    template = client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels=labels),
        spec=client.V1PodSpec(containers=[gpu_container(4)]),
    )
    spec = client.V1StatefulSetSpec(
        replicas=2,
        service_name="gpu-sts",
        selector=client.V1LabelSelector(match_labels=labels),
        template=template,
    )
    sts = client.V1StatefulSet(metadata=client.V1ObjectMeta(name="gpu-sts"), spec=spec)
    apps_v1.create_namespaced_stateful_set(namespace, sts)

    def both_ready() -> bool:
        status = apps_v1.read_namespaced_stateful_set_status("gpu-sts", namespace).status
        return (status.ready_replicas or 0) == 2

    wait_for(both_ready, timeout=90, describe="StatefulSet gpu-sts with 2 ready replicas")
    pods = core_v1.list_namespaced_pod(namespace, label_selector="app=gpu-sts").items
    assert sorted(p.metadata.name for p in pods) == ["gpu-sts-0", "gpu-sts-1"]
    for pod in pods:
        assert pod.spec.node_name, pod.metadata.name
        assert pod.status.phase == "Running"
        assert condition(pod, "Ready").status == "True"


def test_volume_claims_are_provisioned_and_bound(
    namespace: str, apps_v1: client.AppsV1Api, core_v1: client.CoreV1Api
) -> None:
    """The default StorageClass has a (simulated) provisioner: claim templates bind."""
    labels = {"app": "with-cache"}
    mount = client.V1VolumeMount(name="cache", mount_path="/cache")
    container = gpu_container(4)
    container.volume_mounts = [mount]
    claim = client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name="cache"),
        spec=client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"],
            resources=client.V1VolumeResourceRequirements(requests={"storage": "600Gi"}),
        ),
    )
    spec = client.V1StatefulSetSpec(
        replicas=1,
        service_name="with-cache",
        selector=client.V1LabelSelector(match_labels=labels),
        template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels=labels),
            spec=client.V1PodSpec(containers=[container]),
        ),
        volume_claim_templates=[claim],
    )
    meta = client.V1ObjectMeta(name="with-cache")
    apps_v1.create_namespaced_stateful_set(namespace, client.V1StatefulSet(metadata=meta, spec=spec))

    def ready() -> bool:
        status = apps_v1.read_namespaced_stateful_set_status("with-cache", namespace).status
        return (status.ready_replicas or 0) == 1

    wait_for(ready, timeout=90, describe="StatefulSet with-cache ready (its claim bound)")
    pvc = core_v1.read_namespaced_persistent_volume_claim("cache-with-cache-0", namespace)
    assert pvc.status.phase == "Bound"
    assert pvc.spec.storage_class_name == "simulated"
    assert pvc.status.capacity["storage"] == "600Gi"


def test_pod_wanting_too_many_gpus_stays_pending(namespace: str, core_v1: client.CoreV1Api) -> None:
    core_v1.create_namespaced_pod(namespace, gpu_pod("too-big", 9))

    def unschedulable() -> Any:
        pod = core_v1.read_namespaced_pod("too-big", namespace)
        cond = condition(pod, "PodScheduled")
        return cond if cond and cond.status == "False" else None

    cond = wait_for(unschedulable, timeout=60, describe="PodScheduled=False on too-big")
    assert cond.reason == "Unschedulable"
    assert "nvidia.com/gpu" in cond.message
    pod = core_v1.read_namespaced_pod("too-big", namespace)
    assert pod.status.phase == "Pending"
    assert not pod.spec.node_name


def test_deleting_owner_collects_dependents(namespace: str, core_v1: client.CoreV1Api) -> None:
    owner = core_v1.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    ref = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
    meta = client.V1ObjectMeta(name="dependent", owner_references=[ref])
    core_v1.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=meta))
    core_v1.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")

    def dependent_gone() -> bool:
        names = [c.metadata.name for c in core_v1.list_namespaced_config_map(namespace).items]
        return "dependent" not in names

    wait_for(dependent_gone, timeout=60, describe="garbage collection of ConfigMap dependent")


def test_terminate_container_reports_oom_kill(
    namespace: str, api_client: client.ApiClient, core_v1: client.CoreV1Api
) -> None:
    core_v1.create_namespaced_pod(namespace, gpu_pod("crashy", 1))

    def running() -> bool:
        pod = core_v1.read_namespaced_pod("crashy", namespace)
        return pod.status.phase == "Running" and bool(pod.status.container_statuses)

    wait_for(running, timeout=60, describe="pod crashy Running")
    message = "CUDA out of memory. Tried to allocate 2.00 GiB"
    terminate_container(api_client, namespace, "crashy", "server", message=message)
    time.sleep(2)  # give kwok the chance to overwrite the status, which it must not take
    status = core_v1.read_namespaced_pod("crashy", namespace).status.container_statuses[0]
    terminated = status.last_state.terminated
    assert terminated.reason == "OOMKilled"
    assert terminated.exit_code == 137
    assert terminated.message == message
    assert status.restart_count == 1
    assert status.state.waiting.reason == "CrashLoopBackOff"
    assert not status.ready

    # a given restart count, and a container that came back after the crash
    terminate_container(
        api_client,
        namespace,
        "crashy",
        "server",
        reason="Error",
        exit_code=1,
        restart_count=5,
        then="running",
    )
    pod = core_v1.read_namespaced_pod("crashy", namespace)
    status = pod.status.container_statuses[0]
    assert (status.last_state.terminated.reason, status.last_state.terminated.exit_code) == ("Error", 1)
    assert status.restart_count == 5
    assert status.state.running is not None and status.ready
    assert condition(pod, "Ready").status == "True"


def test_audit_log_records_writes_by_user(cluster: Cluster, namespace: str) -> None:
    """The local apiserver logs every request at Metadata level (user, verb, resource)."""
    if cluster.audit_log is None:
        pytest.skip("only the local control plane's audit log location is known")
    audit_log = cluster.audit_log

    def created() -> bool:
        for line in audit_log.read_text().splitlines():
            event = json.loads(line)
            ref = event.get("objectRef", {})
            if (
                event["verb"] == "create"
                and ref.get("resource") == "namespaces"
                and (ref.get("name") == namespace)
            ):
                return bool(event["user"]["username"] == "kubernetes-admin")
        return False

    wait_for(created, timeout=10, describe=f"audit event: kubernetes-admin created {namespace}")


def test_kubernetes_gomod_replaces_every_staging_module() -> None:
    """The checked-in go.mod replaces exactly the staging modules of the pinned tag's go.mod,
    each with its published v0.<minor>.<patch> (no cluster needed, but Go is)."""
    upstream = gomod.staging_modules(gomod.upstream_gomod("k8s.io/kubernetes", versions.KUBERNETES))
    checked_in = (gomod.TOOLCHAIN_DIR / "kubernetes" / "go.mod").read_text()
    replaced = re.findall(r"^\s*(k8s\.io/\S+) => (k8s\.io/\S+) (v\S+)$", checked_in, re.MULTILINE)
    assert upstream, "no staging modules found upstream"
    assert sorted(m for m, _, _ in replaced) == upstream
    assert all(m == target and v == versions.STAGING for m, target, v in replaced)
