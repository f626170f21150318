"""The reconciler against an in-memory API: what it writes, and above all when it writes nothing."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from qwen_operator import api, diff, metrics
from qwen_operator.kube import ApiError
from qwen_operator.reconciler import Reconciler

NS, NAME = "ns", "q"
WRITES = ("apply", "patch", "delete", "create")


class FakeKube:
    """Objects by (kind, name) in one namespace; every call recorded as (verb, kind)."""

    def __init__(self, spec: dict[str, Any] | None = None) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.events: list[tuple[str, str]] = []
        self.reject_dry_run: str | None = None
        self.served: set[str] = set()  # optional APIs, e.g. "monitoring.coreos.com/v1"
        self.pods: list[dict[str, Any]] = []
        meta = {"name": NAME, "namespace": NS, "uid": "uid-1", "generation": 1}
        self.objects[(api.KIND, NAME)] = {"apiVersion": api.API_VERSION, "kind": api.KIND,
                                          "metadata": meta, "spec": spec or {}}  # fmt: skip

    def writes(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[0] in WRITES]

    def serves(self, group_version: str, plural: str) -> bool:
        self.calls.append(("discover", group_version))
        return group_version in self.served

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get", kind))
        obj = self.objects.get((kind, name))
        return copy.deepcopy(obj) if obj else None

    def list(self, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        self.calls.append(("list", kind))
        return copy.deepcopy(self.pods) if kind == "Pod" else []

    def apply(self, manifest: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        kind = manifest["kind"]
        self.calls.append(("apply-dry-run" if dry_run else "apply", kind))
        if dry_run and self.reject_dry_run == kind:
            raise ApiError(422, "Invalid", f"{kind} is invalid: spec.x: Invalid value")
        obj = copy.deepcopy(manifest)
        if kind == "StatefulSet":
            replicas = obj["spec"]["replicas"]
            obj["metadata"]["generation"] = 1
            counts = {"replicas": replicas, "readyReplicas": replicas, "updatedReplicas": replicas}
            obj["status"] = {"observedGeneration": 1, "currentRevision": "a", "updateRevision": "a", **counts}
        if not dry_run:
            self.objects[(kind, manifest["metadata"]["name"])] = obj
        return copy.deepcopy(obj)

    def delete(self, kind: str, namespace: str, name: str, propagation: str = "Background") -> None:
        self.calls.append(("delete", kind))
        self.objects.pop((kind, name), None)

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("patch", "status"))
        obj = self.objects[(api.KIND, name)]
        merged = {**obj.get("status", {}), **patch}
        obj["status"] = {k: v for k, v in merged.items() if v is not None}
        return obj

    def post_event(self, owner: Any, type_: str, reason: str, message: str, now: str) -> None:
        self.calls.append(("create", "Event"))
        self.events.append((type_, reason))


def reconciler(kube: FakeKube) -> Reconciler:
    return Reconciler(kube, clock=lambda: "2026-01-01T00:00:00Z")  # type: ignore[arg-type]


def test_first_pass_creates_every_child_then_idle_means_no_write() -> None:
    kube = FakeKube()
    out = reconciler(kube).reconcile((NS, NAME))
    assert out.result == "changed" and out.status_written
    kinds = [k for v, k in kube.writes() if v == "apply"]
    assert kinds == ["Service", "Service", "StatefulSet", "PodDisruptionBudget"]
    assert kube.objects[(api.KIND, NAME)]["status"]["phase"] == "Ready"
    assert ("Normal", "Created") in kube.events
    kube.calls.clear()
    again = reconciler(kube).reconcile((NS, NAME))
    assert again.result == "unchanged" and not again.status_written
    assert kube.writes() == []


def test_service_monitor_when_the_prometheus_operator_is_there() -> None:
    kube = FakeKube()
    kube.served.add("monitoring.coreos.com/v1")
    reconciler(kube).reconcile((NS, NAME))
    assert [k for v, k in kube.writes() if v == "apply"][-1] == "ServiceMonitor"
    assert kube.objects[("ServiceMonitor", NAME)]["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


def test_hand_edit_is_reverted_with_one_event() -> None:
    kube = FakeKube()
    reconciler(kube).reconcile((NS, NAME))
    kube.objects[("StatefulSet", NAME)]["spec"]["replicas"] = 5
    kube.events.clear()
    out = reconciler(kube).reconcile((NS, NAME))
    assert out.applied == ["StatefulSet q"]
    assert kube.objects[("StatefulSet", NAME)]["spec"]["replicas"] == 1
    assert kube.events == [("Normal", "DriftReverted")]


def test_spec_change_is_applied_and_named() -> None:
    kube = FakeKube()
    reconciler(kube).reconcile((NS, NAME))
    kube.objects[(api.KIND, NAME)]["spec"] = {"replicas": 3}
    kube.objects[(api.KIND, NAME)]["metadata"]["generation"] = 2
    reconciler(kube).reconcile((NS, NAME))
    assert ("Normal", "Scaled") in kube.events
    assert kube.objects[(api.KIND, NAME)]["status"]["observedGeneration"] == 2


def test_context_change_reaches_the_server_command() -> None:
    kube = FakeKube()
    reconciler(kube).reconcile((NS, NAME))
    kube.objects[(api.KIND, NAME)]["spec"] = {"context": {"maxModelLen": 131072}}
    kube.objects[(api.KIND, NAME)]["metadata"]["generation"] = 2
    out = reconciler(kube).reconcile((NS, NAME))
    assert out.applied == ["StatefulSet q"]
    command = kube.objects[("StatefulSet", NAME)]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--max-model-len") + 1] == "131072"
    st = kube.objects[(api.KIND, NAME)]["status"]
    assert (st["observedGeneration"], st["context"]["effective"]) == (2, 131072)
    assert ("Normal", "Updated") in kube.events


@pytest.mark.parametrize("cpu", ["lots", "1e.5"])  # Kubernetes' published pattern admits 1e.5
def test_invalid_quantity_touches_nothing(cpu: str) -> None:
    kube = FakeKube({"resources": {"requests": {"cpu": cpu}}})
    out = reconciler(kube).reconcile((NS, NAME))
    assert out.result == "invalid"
    assert [w for w in kube.writes() if w[0] == "apply"] == []
    st = kube.objects[(api.KIND, NAME)]["status"]
    stalled = next(c for c in st["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "InvalidSpec" and "spec.resources.requests.cpu" in stalled["message"]
    assert ("Warning", "InvalidSpec") in kube.events


def test_a_child_the_apiserver_rejects_means_no_child_changes() -> None:
    kube = FakeKube()
    kube.reject_dry_run = "PodDisruptionBudget"
    out = reconciler(kube).reconcile((NS, NAME))
    assert out.result == "invalid"
    assert [w for w in kube.writes() if w[0] == "apply"] == []
    assert kube.objects[(api.KIND, NAME)]["status"]["phase"] == "Failed"


def test_paused_applies_nothing_but_reports() -> None:
    kube = FakeKube({"paused": True})
    out = reconciler(kube).reconcile((NS, NAME))
    assert out.result == "paused" and out.status_written
    assert [w for w in kube.writes() if w[0] == "apply"] == []
    assert kube.objects[(api.KIND, NAME)]["status"]["phase"] == "Progressing"


def test_a_name_taken_by_someone_else_is_left_alone() -> None:
    kube = FakeKube()
    kube.objects[("Service", NAME)] = {"kind": "Service", "metadata": {"name": NAME, "annotations": {}}}
    out = reconciler(kube).reconcile((NS, NAME))
    assert [w for w in kube.writes() if w[0] == "apply"] == []
    assert out.result == "blocked"
    conditions = kube.objects[(api.KIND, NAME)]["status"]["conditions"]
    assert next(c for c in conditions if c["type"] == "Stalled")["reason"] == "NameConflict"
    assert diff.HASH_ANNOTATION not in kube.objects[("Service", NAME)]["metadata"]["annotations"]


def test_deleted_resource_is_gone() -> None:
    kube = FakeKube()
    del kube.objects[(api.KIND, NAME)]
    assert reconciler(kube).reconcile((NS, NAME)).result == "gone"
    assert kube.writes() == []


def test_an_api_failure_is_reported_once_and_retried() -> None:
    kube = FakeKube()
    reconciler(kube).reconcile((NS, NAME))
    kube.objects[(api.KIND, NAME)]["spec"] = {"replicas": 2}

    def fail(manifest: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        raise ApiError(503, "Service Unavailable", "etcdserver: leader changed")

    kube.apply = fail  # type: ignore[method-assign]
    kube.events.clear()
    for _ in range(2):
        try:
            reconciler(kube).reconcile((NS, NAME))
        except ApiError:
            pass
        else:
            raise AssertionError("the error must reach the work queue, which retries")
    conditions = {c["type"]: c for c in kube.objects[(api.KIND, NAME)]["status"]["conditions"]}
    assert conditions["Reconciling"]["status"] == "True"
    assert conditions["Reconciling"]["reason"] == "ReconcileError"
    assert "leader changed" in conditions["Reconciling"]["message"]
    assert kube.events == [("Warning", "ReconcileError")]  # once, not per retry


def test_children_of_an_earlier_resource_of_the_same_name_are_taken_over() -> None:
    kube = FakeKube()
    reconciler(kube).reconcile((NS, NAME))
    kube.objects[(api.KIND, NAME)]["metadata"]["uid"] = "uid-2"  # deleted and created again
    out = reconciler(kube).reconcile((NS, NAME))
    assert out.result == "changed" and len(out.applied) == 4
    for kind in ("Service", "StatefulSet", "PodDisruptionBudget"):
        refs = kube.objects[(kind, NAME)]["metadata"]["ownerReferences"]
        assert [r["uid"] for r in refs] == ["uid-2"]


def test_a_child_being_deleted_is_left_to_its_deletion() -> None:
    kube = FakeKube()
    reconciler(kube).reconcile((NS, NAME))
    sts = kube.objects[("StatefulSet", NAME)]
    sts["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    sts["spec"]["replicas"] = 7
    kube.calls.clear()
    out = reconciler(kube).reconcile((NS, NAME))
    assert [w for w in kube.writes() if w[0] == "apply"] == []
    assert out.result == "unchanged"


def test_an_immutable_statefulset_field_replaces_it_keeping_pods() -> None:
    kube = FakeKube()
    reconciler(kube).reconcile((NS, NAME))
    plain_apply = kube.apply

    def apply(manifest: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        live = kube.objects.get((manifest["kind"], manifest["metadata"]["name"]))
        templates = (live or {}).get("spec", {}).get("volumeClaimTemplates")
        changed = templates != manifest["spec"].get("volumeClaimTemplates")
        if manifest["kind"] == "StatefulSet" and live and changed:
            raise ApiError(422, "Invalid", "spec: Forbidden: updates to statefulset spec ...")
        return plain_apply(manifest, dry_run)

    kube.apply = apply  # type: ignore[method-assign]
    kube.objects[(api.KIND, NAME)]["spec"] = {"model": {"cache": {"size": "700Gi"}}}
    kube.events.clear()
    reconciler(kube).reconcile((NS, NAME))
    assert ("delete", "StatefulSet") in kube.calls
    assert kube.events[:1] == [("Normal", "Replacing")]
    assert ("StatefulSet", NAME) not in kube.objects
    reconciler(kube).reconcile((NS, NAME))  # what the deletion event triggers
    size = kube.objects[("StatefulSet", NAME)]["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]
    assert size == {"requests": {"storage": "700Gi"}}


def test_orphaned_children_are_adopted_only_when_we_applied_them() -> None:
    kube = FakeKube()
    reconciler(kube).reconcile((NS, NAME))
    for kind in ("Service", "StatefulSet", "PodDisruptionBudget"):
        meta = kube.objects[(kind, NAME)]["metadata"]
        del meta["ownerReferences"]  # kubectl delete --cascade=orphan
        meta["managedFields"] = [{"manager": "qwen-operator", "operation": "Apply"}]
    kube.objects[(api.KIND, NAME)]["metadata"]["uid"] = "uid-3"
    out = reconciler(kube).reconcile((NS, NAME))
    assert out.result == "changed"
    assert kube.objects[("StatefulSet", NAME)]["metadata"]["ownerReferences"][0]["uid"] == "uid-3"
    someone_elses = {"kind": "Service", "metadata": {"name": NAME, "managedFields": [{"manager": "kubectl"}]}}
    kube.objects[("Service", NAME)] = someone_elses
    assert reconciler(kube).reconcile((NS, NAME)).result == "blocked"


def crashed_pod(record: dict[str, Any], context: int) -> dict[str, Any]:
    """Pod 0 after its server container exited with the launcher's report."""
    terminated = {"exitCode": 1, "reason": "Error", "message": json.dumps(record)}
    cs = {"name": "server", "ready": False, "restartCount": 1, "lastState": {"terminated": terminated},
          "state": {"waiting": {"reason": "CrashLoopBackOff"}}}  # fmt: skip
    command = ["vllm", "serve", "m", "--max-model-len", str(context)]
    return {"metadata": {"name": f"{NAME}-0", "uid": "pod-1"},
            "spec": {"containers": [{"name": "server", "command": command}]},
            "status": {"containerStatuses": [cs]}}  # fmt: skip


def test_a_memory_failure_lowers_the_context_once() -> None:
    kube = FakeKube()
    reconciler(kube).reconcile((NS, NAME))
    record = {
        "reason": "KVCacheInsufficient",
        "exitCode": 1,
        "maxModelLen": 262144,
        "estimatedMaxModelLen": 245408,
    }
    kube.pods = [crashed_pod(record, 262144)]
    counter = metrics.CONTEXT_REDUCTIONS.labels(reason="KVCacheInsufficient")
    before = counter._value.get()
    out = reconciler(kube).reconcile((NS, NAME))
    assert out.applied == ["StatefulSet q"] and out.status_written
    command = kube.objects[("StatefulSet", NAME)]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--max-model-len") + 1] == "244736"
    st = kube.objects[(api.KIND, NAME)]["status"]
    assert st["context"]["effective"] == 244736 and len(st["context"]["history"]) == 1
    assert ("Warning", "ContextReduced") in kube.events and counter._value.get() == before + 1
    kube.calls.clear()
    again = reconciler(kube).reconcile((NS, NAME))  # the same pod status again: nothing to do
    assert kube.writes() == [] and again.result == "unchanged"


def test_weights_that_cannot_fit_apply_nothing() -> None:
    kube = FakeKube({"parallelism": {"tensor": 2}, "gpu": {"memoryGiB": 80}})
    out = reconciler(kube).reconcile((NS, NAME))
    assert out.result == "blocked" and [v for v, _ in kube.writes() if v == "apply"] == []
    st = kube.objects[(api.KIND, NAME)]["status"]
    stalled = {c["type"]: c for c in st["conditions"]}["Stalled"]
    assert (stalled["status"], stalled["reason"]) == ("True", "InsufficientGPUMemory")
    assert st["phase"] == "Failed" and st["context"]["planned"] == 0
    assert kube.events == [("Warning", "InsufficientGPUMemory")]


def test_a_namespace_being_deleted_is_not_retried() -> None:
    kube = FakeKube()
    message = "unable to create new content in namespace ns because it is being terminated"

    def refuse(manifest: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        raise ApiError(403, "Forbidden", f'{manifest["kind"]} "q" is forbidden: {message}')

    kube.apply = refuse  # type: ignore[method-assign]
    out = reconciler(kube).reconcile((NS, NAME))  # no exception: nothing to retry
    assert out.result == "terminating" and kube.writes() == []
    message = "User cannot patch resource services"  # an RBAC denial is an error
    with pytest.raises(ApiError):
        reconciler(kube).reconcile((NS, NAME))
