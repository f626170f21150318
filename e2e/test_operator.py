"""The operator end to end: the acceptance list of issue 4, on the real control plane.

The operator runs as a process authenticated with a token of the ServiceAccount that
`manifests/` creates (see operator_fixtures), so every test also proves the RBAC.
"""

from __future__ import annotations

import collections
import contextlib
import json
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, watch

pytest.register_assert_rewrite("e2e.operator_fixtures")  # before its import, for readable failures

from e2e.conftest import Cluster  # noqa: E402
from e2e.devcluster.kube import kubectl, terminate_container, wait_established, wait_for  # noqa: E402
from e2e.operator_fixtures import (  # noqa: E402
    GROUP,
    INTEGRATION_RESOURCES,
    LEASE_NAME,
    NAME,
    OPERATOR_NAMESPACE,
    OPERATOR_USER,
    PLURAL,
    VERSION,
    Operator,
    apply_ready,
    apply_yaml,
    audit_entries,
    audit_offset,
    audit_writes,
    condition,
    during_restart,
    events,
    get_qtd,
    instance,
    patch_spec,
    reasons,
    sample,
    server_command,
    settle,
    sts_context,
    untouched,
    wait_phase,
)
from qwen_operator import api  # noqa: E402
from qwen_operator.api.vocabulary import (  # noqa: E402
    COMPONENT_LABEL,
    MANAGED_LABELS,
    Component,
    selector_labels,
    selector_string,
)
from qwen_operator.children import launcher, render, security, stopping  # noqa: E402
from qwen_operator.memory import planner  # noqa: E402
from qwen_operator.process import clock, lease  # noqa: E402
from qwen_operator.reconcile.problems import UNSCHEDULABLE_GRACE  # noqa: E402
from qwen_runtime import integrity  # noqa: E402

pytest_plugins = ("e2e.operator_fixtures",)
pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent
IDLE_SECONDS = 60
AS_REQUESTED = {"gpuMemoryUtilization": {"requested": 0.92, "effective": 0.92}}


def seconds_between(earlier: str, later: str) -> float:
    start, end = clock.parse(earlier), clock.parse(later)
    assert start is not None and end is not None
    return (end - start).total_seconds()


def owned_by(obj: Any, uid: str) -> bool:
    refs = obj.metadata.owner_references or []
    return (
        len(refs) == 1
        and refs[0].uid == uid
        and refs[0].controller
        and refs[0].kind == "QwenThinkingDeployment"
    )


def ready_pods(core_v1: client.CoreV1Api, ns: str, name: str) -> list[Any]:
    pods = core_v1.list_namespaced_pod(ns, label_selector=instance(name)).items
    return [
        p
        for p in pods
        if p.metadata.deletion_timestamp is None
        and any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))
    ]


class PhaseRecorder:
    """Every phase the resource reports, from a watch that starts at the current resourceVersion
    (so no event after construction is missed, however late the watch connects)."""

    def __init__(self, custom: client.CustomObjectsApi, ns: str, name: str) -> None:
        self.phases: list[str] = []
        self._watch = watch.Watch()
        self._args = (custom.list_namespaced_custom_object, GROUP, VERSION, ns, PLURAL)
        listed = custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)
        self._since = listed["metadata"]["resourceVersion"]
        self._name = name
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(Exception):  # stop() ends the stream mid-response
            self._record()

    def _record(self) -> None:
        for event in self._watch.stream(*self._args, resource_version=self._since, timeout_seconds=180):
            obj = event["object"]
            phase = (obj.get("status") or {}).get("phase")
            new = phase and (not self.phases or self.phases[-1] != phase)
            if obj["metadata"]["name"] == self._name and new:
                self.phases.append(phase)

    def stop(self) -> list[str]:
        self._watch.stop()
        return self.phases


# -- tests ------------------------------------------------------------------------------------


def test_sample_creates_owned_children_and_becomes_ready(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, core_v1: client.CoreV1Api,
    apps_v1: client.AppsV1Api, api_client: client.ApiClient,
) -> None:  # fmt: skip
    recorder = PhaseRecorder(custom, ns, NAME)
    kubectl("apply", "-n", ns, "-f", str(REPO / "samples" / "qwen3-235b-thinking.yaml"))
    obj = wait_phase(custom, ns, NAME, "Ready")
    kubectl("wait", "--for=condition=Ready", f"qtd/{NAME}", "-n", ns, "--timeout=10s")  # kstatus-style
    wait_for(lambda: "Ready" in recorder.phases, 10, "the watch to see Ready")
    phases = recorder.stop()
    assert "Progressing" in phases and phases[-1] == "Ready", phases
    assert phases.index("Progressing") < phases.index("Ready")
    uid = obj["metadata"]["uid"]

    sts = apps_v1.read_namespaced_stateful_set(NAME, ns)
    services = {s.metadata.name: s for s in core_v1.list_namespaced_service(ns).items}
    pdb = client.PolicyV1Api(api_client).read_namespaced_pod_disruption_budget(NAME, ns)
    assert set(services) == {NAME, f"{NAME}-headless"}
    for child in (sts, pdb, *services.values()):
        assert owned_by(child, uid), child.metadata
    assert sts.metadata.managed_fields and {m.manager for m in sts.metadata.managed_fields} >= {
        "qwen-operator"
    }

    pods = ready_pods(core_v1, ns, NAME)
    assert len(pods) == 1
    node = core_v1.read_node(pods[0].spec.node_name)
    assert node.metadata.labels["nvidia.com/gpu.present"] == "true"
    assert pods[0].spec.containers[0].resources.limits["nvidia.com/gpu"] == "4"

    row = kubectl("get", "qtd", NAME, "-n", ns, "--no-headers").stdout.split()
    assert row[1:5] == ["1", "1", "262144", "Ready"], row
    wide = kubectl("get", "qtd", NAME, "-n", ns, "-o", "wide", "--no-headers").stdout
    assert f"http://{NAME}.{ns}.svc:8000/v1" in wide

    st = obj["status"]
    assert st["observedGeneration"] == obj["metadata"]["generation"]
    # the simulated nodes are H100 80GB (nvidia.com/gpu.memory=81559): the plan says 262144 fits
    assert st["context"] == {"requested": 262144, "effective": 262144, "planned": 262144, **AS_REQUESTED}
    assert st["selector"] == selector_string(NAME)
    ready = condition(obj, "Ready")
    assert ready["status"] == "True" and ready["observedGeneration"] == obj["metadata"]["generation"]
    assert condition(obj, "Stalled")["status"] == "False"
    assert condition(obj, "Reconciling")["status"] == "False"

    # GitOps-clean: no annotation, no finalizer, and nobody's records but the operator's status.
    annotations = set(obj["metadata"].get("annotations") or {})
    assert annotations <= {"kubectl.kubernetes.io/last-applied-configuration"}, annotations  # kubectl's own
    assert not obj["metadata"].get("finalizers")
    writers = {(m["manager"], m.get("subresource", "")) for m in obj["metadata"]["managedFields"]}
    assert {sub for manager, sub in writers if not manager.startswith("kubectl")} == {"status"}, writers
    assert "kopf" not in st, st.get("kopf")
    assert {"Created", "Ready"} <= reasons(ns, NAME)
    # A healthy start says nothing alarming (a claim still binding is no stall).
    assert [e for e in events(ns, NAME, kind="QwenThinkingDeployment") if e["type"] != "Normal"] == []
    assert "Recovered" not in reasons(ns, NAME)


@pytest.mark.parametrize("path", sorted((REPO / "samples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_sample_is_admitted_under_pod_security_restricted(
    operator: Operator, ns: str, apps_v1: client.AppsV1Api, core_v1: client.CoreV1Api, path: Path
) -> None:
    labels = core_v1.read_namespace(ns).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    (doc,) = yaml.safe_load_all(path.read_text())
    name = doc["metadata"]["name"]
    if doc["spec"].get("parallelism", {}).get("pipeline", 1) > 1:
        group_pods_admitted(ns, doc)  # its pods are LeaderWorkerSet's to make (test_multinode.py)
        return
    kubectl("apply", "-n", ns, "-f", str(path))

    def pods() -> list[Any]:
        return list(core_v1.list_namespaced_pod(ns, label_selector=instance(name)).items)

    wait_for(pods, 60, f"pods of {name}")
    refused = [e for e in events(ns, name, kind="StatefulSet") if e["reason"] == "FailedCreate"]
    assert refused == [], refused
    grace = stopping.grace_seconds(api.parse_resource(doc).spec)
    for pod in pods():
        assert pod.spec.security_context.run_as_non_root
        assert pod.spec.containers[0].image == "vllm/vllm-openai:v0.33.0"

    def servers() -> list[Any]:
        """Not the download Job's pod (Shared cache), which comes first."""
        return [pod for pod in pods() if pod.spec.containers[0].name == "server"]

    wait_for(servers, 120, f"server pods of {name}")
    for pod in servers():
        # kept as rendered (an apiserver without the sleep action would drop it silently)
        assert pod.spec.containers[0].lifecycle.pre_stop.sleep.seconds == stopping.PRE_STOP_SECONDS
        assert pod.spec.termination_grace_period_seconds == grace


def group_pods_admitted(ns: str, doc: dict[str, Any]) -> None:
    """A multi-node sample: a pod of each of its LeaderWorkerSet's templates passes admission
    (Pod Security "restricted") in a server-side dry run."""
    doc["metadata"]["namespace"] = ns
    children = render.render(api.parse_resource(doc))
    (lws,) = [m for m in children if m["kind"] == "LeaderWorkerSet"]
    (account,) = [m for m in children if m["kind"] == "ServiceAccount"]  # admission looks it up
    kubectl("create", "-n", ns, "-f", "-", stdin=json.dumps(account))
    spec = api.parse_resource(doc).spec
    worker = stopping.worker_lifecycle(spec, render.CONTAINER_PORT)
    stops = {  # the leader sleeps; a worker waits for its leader's drain (an exec hook)
        "leaderTemplate": (stopping.lifecycle(), stopping.grace_seconds(spec)),
        "workerTemplate": (worker, stopping.worker_grace_seconds(spec)),
    }
    group = lws["spec"]["leaderWorkerTemplate"]
    claims = [  # what the LeaderWorkerSet's claim templates add to each pod, as its controller does
        {"name": t["metadata"]["name"], "persistentVolumeClaim": {"claimName": t["metadata"]["name"]}}
        for t in group.get("volumeClaimTemplates") or []
    ]
    for role, (lifecycle, grace) in stops.items():
        template = group[role]
        meta = {**template["metadata"], "name": f"dry-{role.lower()}"}
        spec = {**template["spec"], "volumes": [*(template["spec"].get("volumes") or []), *claims]}
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
        admitted = json.loads(kubectl("create", "-n", ns, "--dry-run=server", "-o", "json", "-f", "-",
                                      stdin=json.dumps(pod)).stdout)  # fmt: skip
        assert admitted["spec"]["securityContext"]["runAsNonRoot"] is True
        assert admitted["spec"]["containers"][0]["lifecycle"] == lifecycle, role
        assert admitted["spec"]["terminationGracePeriodSeconds"] == grace, role


def test_scale_subresource(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, core_v1: client.CoreV1Api
) -> None:
    apply_ready(custom, ns)
    kubectl("scale", f"qtd/{NAME}", "-n", ns, "--replicas=3")
    obj = wait_phase(custom, ns, NAME, "Ready")
    wait_for(lambda: get_qtd(custom, ns, NAME)["status"]["readyReplicas"] == 3, 60, "3 ready replicas")
    obj = get_qtd(custom, ns, NAME)
    assert (obj["status"]["replicas"], obj["status"]["readyReplicas"]) == (3, 3)
    assert len(ready_pods(core_v1, ns, NAME)) == 3
    scale = json.loads(
        kubectl("get", "--raw", f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}/{NAME}/scale").stdout
    )
    assert scale["spec"]["replicas"] == 3 and scale["status"] == {
        "replicas": 3,
        "selector": selector_string(NAME),
    }
    wait_for(lambda: "Scaled" in reasons(ns, NAME), 30, "event Scaled")  # posted after the status patch

    kubectl("scale", f"qtd/{NAME}", "-n", ns, "--replicas=0")
    wait_for(lambda: get_qtd(custom, ns, NAME)["status"]["replicas"] == 0, 60, "status.replicas 0")
    obj = wait_phase(custom, ns, NAME, "Ready")
    assert condition(obj, "Ready")["reason"] == "ScaledToZero"
    wait_for(lambda: not core_v1.list_namespaced_pod(ns, label_selector=instance(NAME)).items, 60, "no pods")


def test_context_change_reaches_the_statefulset(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, apps_v1: client.AppsV1Api
) -> None:
    first = apply_ready(custom, ns)
    assert sts_context(apps_v1, ns, NAME) == 262144
    patch_spec(ns, {"context": {"maxModelLen": 131072}})
    wait_for(lambda: sts_context(apps_v1, ns, NAME) == 131072, 60, "--max-model-len")
    obj = wait_phase(custom, ns, NAME, "Ready")
    assert obj["metadata"]["generation"] == first["metadata"]["generation"] + 1
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert obj["status"]["context"] == {
        "requested": 131072,
        "effective": 131072,
        "planned": 131072,
        **AS_REQUESTED,
    }
    row = kubectl("get", "qtd", NAME, "-n", ns, "--no-headers").stdout.split()
    assert row[3] == "131072"
    wait_for(lambda: "Updated" in reasons(ns, NAME), 30, "event Updated")  # posted after the status patch


def test_memory_plan_starts_from_a_context_that_fits(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, apps_v1: client.AppsV1Api
) -> None:
    # 80 GiB GPUs at 80 % leave room for fewer than 262144 tokens of bf16 KV cache at TP 4
    spec = {"gpu": {"memoryGiB": 80}, "runtime": {"gpuMemoryUtilization": 0.8}}
    expected = planner.plan_for(api.parse_resource(sample(**spec)).spec, None)
    assert expected is not None and 32768 < expected.planned < 262144
    obj = apply_ready(custom, ns, **spec)
    planned = expected.planned
    assert obj["status"]["context"] == {
        "requested": 262144,
        "effective": planned,
        "planned": planned,
        "gpuMemoryUtilization": {"requested": 0.8, "effective": 0.8},
    }
    assert sts_context(apps_v1, ns, NAME) == planned
    (event,) = [e for e in events(ns, NAME) if e["reason"] == "ContextPlanned"]
    assert str(planned) in event["message"]
    # preflight off: the request as given, the plan still reported
    patch_spec(ns, {"context": {"preflight": False}})
    wait_for(lambda: sts_context(apps_v1, ns, NAME) == 262144, 60, "--max-model-len")
    ctx = wait_phase(custom, ns, NAME, "Ready")["status"]["context"]
    at = {"gpuMemoryUtilization": {"requested": 0.8, "effective": 0.8}}
    assert ctx == {"requested": 262144, "effective": 262144, "planned": planned, **at}


def test_service_monitor_when_the_prometheus_operator_crd_exists(
    operator: Operator, ns: str, custom: client.CustomObjectsApi
) -> None:
    crd = str(REPO / "e2e" / "fixtures" / "servicemonitor-crd.yaml")
    kubectl("apply", "-f", crd)
    try:
        wait_established("crd/servicemonitors.monitoring.coreos.com")
        uid = apply_ready(custom, ns)["metadata"]["uid"]

        def monitor() -> dict[str, Any] | None:
            out = kubectl("get", "servicemonitor", NAME, "-n", ns, "-o", "json", check=False)
            return json.loads(out.stdout) if out.returncode == 0 else None

        sm = wait_for(monitor, 60, f"ServiceMonitor {NAME}")
        assert [r["uid"] for r in sm["metadata"]["ownerReferences"]] == [uid]
        assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
        # The operator started watching ServiceMonitors when their CRD appeared: a hand edit is
        # seen and reverted, without a restart.
        edit = {"spec": {"endpoints": [{"port": "http", "path": "/metrics", "interval": "5m"}]}}
        kubectl("patch", "servicemonitor", NAME, "-n", ns, "--type=merge", "-p", json.dumps(edit))
        wait_for(lambda: (m := monitor()) and m["spec"]["endpoints"][0]["interval"] == "30s", 60, "reverted")
        assert "DriftReverted" in reasons(ns, NAME)
    finally:
        kubectl("delete", "-f", crd, "--wait=true")


def test_manual_edits_of_the_statefulset_are_reverted(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, apps_v1: client.AppsV1Api
) -> None:
    apply_ready(custom, ns)
    image = apps_v1.read_namespaced_stateful_set(NAME, ns).spec.template.spec.containers[0].image
    command = server_command(apps_v1, ns, NAME)

    kubectl("scale", f"statefulset/{NAME}", "-n", ns, "--replicas=4")
    kubectl("set", "image", f"statefulset/{NAME}", "-n", ns, "server=registry.invalid/evil:1")
    edited = [*command[:-1], "--trust-remote-code"]
    patch = json.dumps(
        [{"op": "replace", "path": "/spec/template/spec/containers/0/command", "value": edited}]
    )
    kubectl("patch", f"statefulset/{NAME}", "-n", ns, "--type=json", "-p", patch)

    def reverted() -> bool:
        sts = apps_v1.read_namespaced_stateful_set(NAME, ns)
        container = sts.spec.template.spec.containers[0]
        return bool(sts.spec.replicas == 1 and container.image == image and container.command == command)

    wait_for(reverted, 60, "replicas, image and command reverted")
    wait_for(
        lambda: "DriftReverted" in reasons(ns, NAME), 30, "event DriftReverted"
    )  # posted after the status patch
    wait_phase(custom, ns, NAME, "Ready")


def test_the_launcher_configmap_cannot_be_swapped_and_goes_once_unmounted(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, core_v1: client.CoreV1Api,
    apps_v1: client.AppsV1Api, api_client: client.ApiClient,
) -> None:  # fmt: skip
    """Issue 23: the launcher's ConfigMap is immutable, named by its sources' digest, which the
    pods carry; other data put under its name (deleted and created again, owner reference
    copied; while paused, so the operator cannot race the swap) is replaced; an older launcher's
    ConfigMap stays while a pod mounts it and goes once none does."""
    uid = apply_ready(custom, ns)["metadata"]["uid"]
    name = launcher.configmap_name(NAME)
    # the launcher's ConfigMaps alone: the replicas' settings ConfigMap has the instance label too
    launchers = f"{instance(NAME)},{COMPONENT_LABEL}={Component.LAUNCHER}"
    (cm,) = core_v1.list_namespaced_config_map(ns, label_selector=launchers).items
    assert (cm.metadata.name, cm.immutable, cm.data) == (name, True, launcher.sources())
    assert owned_by(cm, uid)
    template = apps_v1.read_namespaced_stateful_set(NAME, ns).spec.template.spec
    env = {e.name: e.value for c in [*template.init_containers, *template.containers] for e in c.env}
    assert env[integrity.DIGEST_VAR] == launcher.digest()
    assert [v.config_map.name for v in template.volumes if v.name == launcher.VOLUME] == [name]
    with pytest.raises(client.ApiException) as edit:
        core_v1.patch_namespaced_config_map(name, ns, {"data": {"argv.py": "print('not ours')\n"}})
    assert edit.value.status == 422 and "immutable" in str(edit.value.body), edit.value.body

    patch_spec(ns, {"paused": True})
    wait_for(lambda: condition(get_qtd(custom, ns, NAME), "Reconciling").get("reason") == "Paused", 60,
             "the pause seen")  # fmt: skip
    core_v1.delete_namespaced_config_map(name, ns)
    owners = api_client.sanitize_for_serialization(cm.metadata.owner_references)
    meta = {"name": name, "labels": cm.metadata.labels, "ownerReferences": owners}
    swapped = {**cm.data, "argv.py": "print('not ours')\n"}
    core_v1.create_namespaced_config_map(ns, {"metadata": meta, "data": swapped, "immutable": True})
    patch_spec(ns, {"paused": False})

    def restored() -> bool:
        found = core_v1.list_namespaced_config_map(ns, field_selector=f"metadata.name={name}").items
        return bool(found and found[0].data == launcher.sources() and found[0].immutable)

    wait_for(restored, 60, "the swapped launcher ConfigMap replaced by the rendered one")
    wait_for(lambda: "Replacing" in reasons(ns, NAME), 30, "event Replacing")

    old = f"{NAME}-launcher-0123456789"
    user = {"metadata": {"name": "old-launcher-user", "labels": {**selector_labels(NAME), **MANAGED_LABELS}},
            "spec": {"securityContext": security.pod(), "automountServiceAccountToken": False,
                     "containers": [{"name": "server", "image": "registry.invalid/old:1",
                                     "securityContext": security.container(),
                                     "volumeMounts": [{"name": "launcher", "mountPath": launcher.MOUNT}]}],
                     "volumes": [{"name": "launcher", "configMap": {"name": old}}]}}  # fmt: skip
    core_v1.create_namespaced_pod(ns, user)
    older = {"metadata": {**meta, "name": old}, "data": {"__init__.py": "# an older launcher\n"}}
    core_v1.create_namespaced_config_map(ns, {**older, "immutable": True})
    settle(5)  # a pass sees it (its creation is an event), and keeps it: the pod mounts it

    def names() -> set[str]:
        found = core_v1.list_namespaced_config_map(ns, label_selector=launchers).items
        return {c.metadata.name for c in found}

    assert names() == {name, old}
    core_v1.delete_namespaced_pod("old-launcher-user", ns, grace_period_seconds=0)
    wait_for(lambda: names() == {name}, 60, "the older launcher ConfigMap deleted once no pod mounts it")
    wait_phase(custom, ns, NAME, "Ready")


def test_gpu_product_no_node_has_is_unschedulable(
    operator: Operator, ns: str, custom: client.CustomObjectsApi
) -> None:
    apply_yaml(ns, sample(gpu={"product": "NVIDIA-B200"}))

    def reported(reason: str) -> dict[str, Any] | None:
        obj = get_qtd(custom, ns, NAME)
        return obj if condition(obj, "Ready").get("reason") == reason else None

    # First a wait (the scheduler may yet place it), then, past the grace period, a problem.
    waiting = wait_for(lambda: reported("Scheduling"), 30, "Ready=False reason Scheduling")
    assert condition(waiting, "Stalled")["status"] == "False" and waiting["status"]["phase"] == "Progressing"
    assert condition(waiting, "Reconciling")["status"] == "True"
    assert "node affinity/selector" in condition(waiting, "Reconciling")["message"]
    obj = wait_for(
        lambda: reported("Unschedulable"), UNSCHEDULABLE_GRACE + 30, "Stalled=True reason Unschedulable"
    )
    stalled_at = condition(obj, "Stalled")["lastTransitionTime"]
    scheduled_at = condition(waiting, "Reconciling")["lastTransitionTime"]
    assert seconds_between(scheduled_at, stalled_at) >= UNSCHEDULABLE_GRACE - 2  # not before its time
    ready = condition(obj, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Unschedulable")
    assert "nodes are available" in ready["message"] and "node affinity/selector" in ready["message"]
    assert condition(obj, "Stalled")["status"] == "True"
    assert obj["status"]["phase"] == "Pending"
    warnings = [e for e in events(ns, NAME) if e["reason"] == "Unschedulable"]
    assert warnings and warnings[0]["type"] == "Warning"


def test_crash_loop_and_image_pull_failures_are_reported(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, core_v1: client.CoreV1Api,
    api_client: client.ApiClient,
) -> None:  # fmt: skip
    apply_ready(custom, ns, replicas=2)
    oom = "torch.OutOfMemoryError: CUDA out of memory"
    terminate_container(api_client, ns, f"{NAME}-0", "server", reason="Error", exit_code=1, message=oom)

    def stalled(reason: str) -> dict[str, Any] | None:
        obj = get_qtd(custom, ns, NAME)
        return obj if condition(obj, "Stalled").get("reason") == reason else None

    obj = wait_for(lambda: stalled("CrashLoopBackOff"), 60, "Stalled=True reason CrashLoopBackOff")
    assert obj["status"]["phase"] == "Degraded"  # the other replica still serves
    assert oom in condition(obj, "Stalled")["message"]
    assert condition(obj, "Ready")["reason"] == "CrashLoopBackOff"

    pod = core_v1.read_namespaced_pod_status(f"{NAME}-1", ns)
    waiting = {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}
    statuses = [{"name": c.name, "image": c.image, "imageID": "", "ready": False, "restartCount": 0,
                 "state": waiting} for c in pod.status.container_statuses]  # fmt: skip
    core_v1.patch_namespaced_pod_status(f"{NAME}-1", ns, {"status": {"containerStatuses": statuses}})
    obj = wait_for(lambda: stalled("ImagePullBackOff"), 60, "Stalled=True reason ImagePullBackOff")
    assert "Back-off pulling image" in condition(obj, "Stalled")["message"]
    warnings = {e["reason"] for e in events(ns, NAME) if e["type"] == "Warning"}
    assert {"CrashLoopBackOff", "ImagePullBackOff"} <= warnings


def test_spec_the_apiserver_rejects_is_invalid_and_touches_nothing(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, core_v1: client.CoreV1Api
) -> None:
    """A toleration's operator is Kubernetes' to check (the CRD bounds its length only): the
    StatefulSet it would go into is refused."""
    bad = {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Sometimes"}]}
    apply_yaml(ns, sample(scheduling=bad))
    obj = wait_phase(custom, ns, NAME, "Failed")
    stalled = condition(obj, "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "InvalidSpec")
    assert "StatefulSet" in stalled["message"] and "Sometimes" in stalled["message"]
    assert condition(obj, "Ready")["status"] == "False"
    assert not core_v1.list_namespaced_service(ns).items  # all or nothing: no child created
    wait_for(
        lambda: "InvalidSpec" in reasons(ns, NAME), 30, "event InvalidSpec"
    )  # posted after the status patch
    remove = '[{"op":"remove","path":"/spec/scheduling/tolerations"}]'
    kubectl("patch", f"qtd/{NAME}", "-n", ns, "--type=json", "-p", remove)
    wait_phase(custom, ns, NAME, "Ready")


def test_paused_changes_no_child_but_reports(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, apps_v1: client.AppsV1Api
) -> None:
    apply_ready(custom, ns)
    patch_spec(ns, {"paused": True, "replicas": 2})

    def observed() -> dict[str, Any] | None:
        obj = get_qtd(custom, ns, NAME)
        current = obj["status"].get("observedGeneration") == obj["metadata"]["generation"]
        return obj if current and condition(obj, "Reconciling").get("reason") == "Paused" else None

    obj = wait_for(observed, 60, "status of the paused generation")
    assert obj["status"]["replicas"] == 1
    assert apps_v1.read_namespaced_stateful_set(NAME, ns).spec.replicas == 1
    patch_spec(ns, {"paused": False})
    wait_for(
        lambda: get_qtd(custom, ns, NAME)["status"].get("readyReplicas") == 2, 60, "2 ready after unpause"
    )
    assert apps_v1.read_namespaced_stateful_set(NAME, ns).spec.replicas == 2


def test_delete_garbage_collects_every_child(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, core_v1: client.CoreV1Api,
    apps_v1: client.AppsV1Api, api_client: client.ApiClient,
) -> None:  # fmt: skip
    apply_ready(custom, ns)
    kubectl("delete", f"qtd/{NAME}", "-n", ns, "--wait=true")
    policy = client.PolicyV1Api(api_client)

    def gone() -> bool:
        return not (
            apps_v1.list_namespaced_stateful_set(ns).items
            or core_v1.list_namespaced_service(ns).items
            or policy.list_namespaced_pod_disruption_budget(ns).items
            or core_v1.list_namespaced_pod(ns).items
            or core_v1.list_namespaced_persistent_volume_claim(ns).items
        )

    wait_for(gone, 90, "StatefulSet, Services, PDB, pods and claims garbage-collected")


def test_immutable_statefulset_field_replaces_it_keeping_the_pods(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, core_v1: client.CoreV1Api,
    apps_v1: client.AppsV1Api,
) -> None:  # fmt: skip
    apply_ready(custom, ns)
    old_uid = apps_v1.read_namespaced_stateful_set(NAME, ns).metadata.uid
    pod_uid = ready_pods(core_v1, ns, NAME)[0].metadata.uid
    patch_spec(ns, {"model": {"cache": {"size": "700Gi"}}})

    def replaced() -> bool:
        sts = apps_v1.read_namespaced_stateful_set(NAME, ns)
        size = sts.spec.volume_claim_templates[0].spec.resources.requests["storage"]
        return bool(sts.metadata.uid != old_uid and size == "700Gi")

    wait_for(replaced, 60, "StatefulSet replaced with the new volume size")
    wait_phase(custom, ns, NAME, "Ready")
    assert [p.metadata.uid for p in ready_pods(core_v1, ns, NAME)] == [pod_uid]  # kept, adopted
    wait_for(lambda: "Replacing" in reasons(ns, NAME), 30, "event Replacing")  # posted after the status patch


def test_a_compile_cache_claim_comes_to_a_live_statefulset_with_the_next_rollout(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, core_v1: client.CoreV1Api,
    apps_v1: client.AppsV1Api,
) -> None:  # fmt: skip
    """An operator upgrade, as a spec change: a PVC-source resource whose StatefulSet was made
    without a claim template (compileCacheSize 0, as before the compile cache) is asked for one.
    The claim alone would restart the replica for nothing but the cache: the StatefulSet and its
    pod are left as they are (compile_cache.claim_deferred). A change that rolls the pod anyway
    (a variable in spec.runtime.env) brings it: the StatefulSet is made anew keeping its pod,
    which lacks the claim's volume; the StatefulSet controller cannot add it to the running pod
    ("pod updates may not change fields") and goes no further, so the operator's rollout replaces
    that pod (reconcile/rollout.py), and the new one mounts its own claim. Three replicas, in
    order: e2e/test_rollout.py."""
    weights = client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name="weights-rox"),
        spec=client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"],
            resources=client.V1VolumeResourceRequirements(requests={"storage": "1Gi"}),
        ),
    )
    core_v1.create_namespaced_persistent_volume_claim(ns, weights)
    pvc = {"source": {"pvc": {"claimName": "weights-rox"}}}
    apply_ready(custom, ns, model={**pvc, "cache": {"compileCacheSize": "0"}})
    old = apps_v1.read_namespaced_stateful_set(NAME, ns)
    assert not old.spec.volume_claim_templates
    (before,) = ready_pods(core_v1, ns, NAME)
    patch_spec(ns, {"model": {"cache": {"compileCacheSize": "10Gi"}}})
    wait_phase(custom, ns, NAME, "Ready")  # the operator has seen it
    untouched(core_v1, apps_v1, ns, old.metadata.uid, {before.metadata.name: before.metadata.uid})
    assert "Replacing" not in reasons(ns, NAME)
    patch_spec(ns, {"runtime": {"env": [{"name": "EXAMPLE_ROLLOUT", "value": "1"}]}})

    def made_anew() -> client.V1Pod | None:
        sts = apps_v1.read_namespaced_stateful_set(NAME, ns)
        templates = [t.metadata.name for t in sts.spec.volume_claim_templates or []]
        pods = ready_pods(core_v1, ns, NAME)
        if sts.metadata.uid == old.metadata.uid or templates != ["compile-cache"] or len(pods) != 1:
            return None
        return pods[0] if pods[0].metadata.uid != before.metadata.uid else None

    pod = wait_for(
        made_anew, 90, "StatefulSet made anew with the compile-cache claim template, its pod replaced"
    )
    wait_phase(custom, ns, NAME, "Ready")
    assert {m.name: m.mount_path for m in pod.spec.containers[0].volume_mounts}[
        "compile-cache"
    ] == "/compile-cache"
    (claim,) = [v.persistent_volume_claim.claim_name for v in pod.spec.volumes if v.name == "compile-cache"]
    assert claim == f"compile-cache-{NAME}-0"
    claims = sorted(c.metadata.name for c in core_v1.list_namespaced_persistent_volume_claim(ns).items)
    assert claims == [f"compile-cache-{NAME}-0", "weights-rox"]
    assert {"Replacing", "ReplacingPod"} <= reasons(ns, NAME)
    env = {e.name: e.value for e in pod.spec.containers[0].env}
    assert env["EXAMPLE_ROLLOUT"] == "1" and env["VLLM_CACHE_ROOT"] == "/compile-cache/vllm"


def test_recreated_resource_adopts_the_orphaned_children(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, core_v1: client.CoreV1Api,
    apps_v1: client.AppsV1Api,
) -> None:  # fmt: skip
    apply_ready(custom, ns)
    kubectl("delete", f"qtd/{NAME}", "-n", ns, "--wait=true", "--cascade=orphan")
    uid = apply_ready(custom, ns)["metadata"]["uid"]
    wait_for(lambda: owned_by(apps_v1.read_namespaced_stateful_set(NAME, ns), uid), 60, "new owner")
    services = core_v1.list_namespaced_service(ns).items
    assert len(services) == 2 and all(owned_by(svc, uid) for svc in services)


def test_restart_mid_reconcile_converges_without_duplicates(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, core_v1: client.CoreV1Api,
    apps_v1: client.AppsV1Api, api_client: client.ApiClient,
) -> None:  # fmt: skip
    names = [f"r{i}" for i in range(3)]
    apply_yaml(ns, "---\n".join(yaml.safe_dump(sample(n)) for n in names))
    wait_for(lambda: core_v1.list_namespaced_service(ns).items, 30, "the first child", interval=0.02)
    operator.kill(signal.SIGKILL)
    partial = len(apps_v1.list_namespaced_stateful_set(ns).items)
    operator.start()
    for name in names:
        wait_phase(custom, ns, name, "Ready")
    policy = client.PolicyV1Api(api_client)
    for name in names:
        uid = get_qtd(custom, ns, name)["metadata"]["uid"]
        sel = instance(name)
        stss = apps_v1.list_namespaced_stateful_set(ns, label_selector=sel).items
        svcs = core_v1.list_namespaced_service(ns, label_selector=sel).items
        pdbs = policy.list_namespaced_pod_disruption_budget(ns, label_selector=sel).items
        assert (len(stss), len(svcs), len(pdbs)) == (1, 2, 1), (name, partial)
        assert all(owned_by(o, uid) for o in (*stss, *svcs, *pdbs))
        assert len(core_v1.list_namespaced_pod(ns, label_selector=sel).items) == 1
    assert len(core_v1.list_namespaced_service(ns).items) == 2 * len(names)  # no orphan


def test_five_ready_resources_idle_means_zero_writes(
    operator: Operator, cluster: Cluster, ns: str, custom: client.CustomObjectsApi
) -> None:
    names = [f"idle-{i}" for i in range(5)]
    apply_yaml(ns, "---\n".join(yaml.safe_dump(sample(n)) for n in names))
    for name in names:
        wait_phase(custom, ns, name, "Ready")
    settle(5)  # let the last watch events drain
    offset = audit_offset(cluster)
    writes_before = operator.writes()
    events_before = {n: len(events(ns, n)) for n in names}
    reads_before = operator.counter("qwen_operator_api_requests_total")
    renewals_before, others_before = lease_requests(operator)
    settle(IDLE_SECONDS)
    writes = operator.writes() - writes_before
    reads = operator.counter("qwen_operator_api_requests_total") - reads_before
    renewals_after, others_after = lease_requests(operator)
    renewals = renewals_after - renewals_before
    print(f"idle {IDLE_SECONDS}s with 5 Ready resources: {writes:.0f} writes, {reads:.0f} requests "
          f"from the reconciler; {renewals:.0f} Lease renewals")  # fmt: skip
    assert (writes, reads) == (0, 0)
    # The one periodic request allowed: the leader renews its Lease every renew period, and
    # that is all it sends (no read; its own metric and the audit log agree).
    assert renewals <= IDLE_SECONDS / lease.Timings.renew_period + 1
    assert others_after - others_before == 0
    assert_no_audited_requests(cluster, offset)
    assert {n: len(events(ns, n)) for n in names} == events_before  # no event flooding

    # An unrelated label on each resource: each is reconciled from the cache, and nothing is sent.
    offset = audit_offset(cluster)
    requests_before = operator.counter("qwen_operator_api_requests_total")
    passes_before = operator.counter("qwen_operator_reconciliations_total")
    for name in names:
        kubectl("label", f"qtd/{name}", "-n", ns, "team=ml")
    wait_for(
        lambda: operator.counter("qwen_operator_reconciliations_total") >= passes_before + len(names),
        30, "a reconciliation of each relabelled resource",
    )  # fmt: skip
    settle(3)
    passes = operator.counter("qwen_operator_reconciliations_total") - passes_before
    sent = operator.counter("qwen_operator_api_requests_total") - requests_before
    print(f"relabelled 5 Ready resources: {passes:.0f} reconciliations, {sent:.0f} API requests")
    assert sent == 0
    assert_no_audited_requests(cluster, offset)

    # A restart with nothing to do writes nothing either (Kopf keeps no records in the resources).
    offset = audit_offset(cluster)
    operator.kill(signal.SIGTERM)
    operator.start()
    wait_for(
        lambda: operator.counter("qwen_operator_reconciliations_total") >= len(names),
        60, "the restarted operator to reconcile every resource",
    )  # fmt: skip
    settle(5)
    assert operator.writes() == 0
    assert_no_audited_writes(cluster, offset)


ADMISSION_REFUSALS = ("because it is being terminated", "exceeded quota")
"""403s that admission answers after the authorizer allowed the request: a namespace being
deleted, a ResourceQuota (e2e/test_refusals.py)."""


def _rbac_denial(entry: dict[str, Any]) -> bool:
    """The authorizer said no (unlike admission refusing content: see ADMISSION_REFUSALS)."""
    decision = (entry.get("annotations") or {}).get("authorization.k8s.io/decision")
    message = entry.get("responseStatus", {}).get("message", "")
    return decision != "allow" or not any(words in message for words in ADMISSION_REFUSALS)


def test_operator_used_only_its_service_account_within_rbac(operator: Operator, cluster: Cluster) -> None:
    """Last in the module: everything above ran as the ServiceAccount, never refused.

    A 403 from admission (a namespace being deleted, a quota) is no RBAC refusal; anything else is."""
    refused = operator.counter("qwen_operator_api_errors_total", code="403")
    denied = kubectl("auth", "can-i", "get", "secrets", f"--as={OPERATOR_USER}", "-A", check=False)
    assert denied.stdout.strip() == "no"
    role = yaml.safe_load(kubectl("get", "clusterrole", "qwen-operator", "-o", "yaml").stdout)
    cluster_scoped = yaml.safe_load(
        kubectl("get", "clusterrole", "qwen-operator-cluster", "-o", "yaml").stdout
    )
    elect = yaml.safe_load(
        kubectl("get", "role", "qwen-operator-leader-election", "-n", OPERATOR_NAMESPACE, "-o", "yaml").stdout
    )
    rules = [*role["rules"], *cluster_scoped["rules"], *elect["rules"]]
    assert all("*" not in r["verbs"] and "*" not in r["resources"] for r in rules)
    if cluster.audit_log is None:
        assert refused == 0
        return
    # The reviews of the tests' scrapes too: they are the operator's requests, and granted.
    entries = audit_entries(cluster.audit_log, operator.audit_offset, reviews=True)
    assert entries, "no request of the operator's ServiceAccount in the audit log"
    denied_403 = [e for e in entries if e.get("responseStatus", {}).get("code") == 403]
    warming = [e for e in denied_403 if during_restart(cluster, e)]  # its authorizer not ready yet
    admission = [e for e in denied_403 if not _rbac_denial(e)]
    assert [(e["verb"], e["requestURI"]) for e in denied_403 if _rbac_denial(e) and e not in warming] == []
    assert refused <= len(admission) + len(warming)  # the counter restarts with the operator
    used = {_rbac_key(e) for e in entries if e.get("objectRef")}
    granted = {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}  # fmt: skip
    refs = [e["objectRef"] for e in entries if e.get("objectRef")]
    leases = {ref.get("name") for ref in refs if ref.get("resource") == "leases"}
    assert leases <= {LEASE_NAME}, leases  # the Role names the one Lease; nothing else was asked for
    print("operator requests by (group, resource, verb):", sorted(used))
    assert used <= granted, used - granted
    # Exactly what it uses: a server-side apply that creates is audited as a patch but authorized
    # as create, and a StatefulSet (the shared download's Job) is deleted only when an immutable
    # field changes.
    unaudited = {(g, r, "create") for g, r in (("", "services"), ("", "configmaps"), ("", "serviceaccounts"),
                 ("apps", "statefulsets"),
                 ("policy", "poddisruptionbudgets"), ("monitoring.coreos.com", "servicemonitors"),
                 ("", "persistentvolumeclaims"), ("batch", "jobs"),
                 ("networking.k8s.io", "networkpolicies"))} | {
                 ("apps", "statefulsets", "delete"), ("batch", "jobs", "delete"),
                 ("", "configmaps", "delete"),  # an older or swapped launcher's (test above)
                 ("networking.k8s.io", "networkpolicies", "delete"),  # only when spec.network.policy is false
                 ("coordination.k8s.io", "leases", "list")}  # list: if the watch was late  # fmt: skip
    # LeaderWorkerSets: only where their CRD is served and a resource has a pipeline (test_multinode.py)
    unaudited |= {("leaderworkerset.x-k8s.io", "leaderworkersets", v)
                  for v in ("get", "list", "watch", "create", "patch", "delete")}  # fmt: skip
    elsewhere = {(g, r, v) for g, r, v in granted if (g, r) in INTEGRATION_RESOURCES}  # test_integrations.py
    assert granted - used - elsewhere <= unaudited, granted - used - elsewhere - unaudited


def lease_requests(operator: Operator) -> tuple[float, float]:
    """(renewals, every other Lease request but its watch) from one scrape. The watch is
    not counted: the apiserver ends it every 5 minutes, then another (a stream, like Kopf's)."""
    counted = collections.Counter[str]()
    for (name, labels), value in operator.metrics().items():
        if name == "qwen_operator_lease_requests_total":
            counted[dict(labels).get("verb", "")] += value
    return counted["update"], sum(counted.values()) - counted["update"] - counted["watch"]


def renewal(entry: dict[str, Any]) -> bool:
    """An update of the operator's own Lease: the one periodic write it is allowed."""
    ref = entry.get("objectRef") or {}
    lease_ref = (ref.get("resource"), ref.get("namespace"), ref.get("name"))
    return entry.get("verb") == "update" and lease_ref == ("leases", OPERATOR_NAMESPACE, LEASE_NAME)


def assert_no_audited_requests(cluster: Cluster, offset: int) -> None:
    """Not one request of the operator after `offset`, but for Kopf's long-lived watch streams
    (the cache's feed, reopened every few minutes, and the Lease's) and the Lease's renewals."""
    if cluster.audit_log:
        entries = audit_entries(cluster.audit_log, offset)
        audited = [e for e in entries if e.get("verb") != "watch" and not renewal(e)]
        assert audited == [], [(e["verb"], e["requestURI"]) for e in audited]


def assert_no_audited_writes(cluster: Cluster, offset: int) -> None:
    """The apiserver's own record agrees with the operator's metrics (local cluster only): no
    write but the Lease's (a restart releases and takes it back, then renews it)."""
    if cluster.audit_log:
        audited = [e for e in audit_writes(cluster.audit_log, offset) if not renewal(e)]
        assert audited == [], [(e["verb"], e["requestURI"]) for e in audited]


def _rbac_key(entry: dict[str, Any]) -> tuple[str, str, str]:
    ref = entry["objectRef"]
    resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
    return ref.get("apiGroup", ""), resource, entry["verb"]
