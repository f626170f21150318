"""The whole pass (observe -> decide -> act) against an in-memory cluster: what it writes, and
above all when it writes nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from qwen_operator.api.vocabulary import (
    HASH_ANNOTATION,
    INFERENCE_POOL_CRD,
    PROMETHEUS_RULE_CRD,
    SCALED_OBJECT_CRD,
    SERVICE_MONITOR_CRD,
    Result,
)
from qwen_operator.children import launcher
from qwen_operator.process import metrics
from qwen_operator.process.kube import ApiError
from qwen_operator.process.workqueue import Retry
from qwen_operator.reconcile.decide import ROLLOUT_RECHECK_SECONDS
from testkit.fake import KEY, FakeCluster, reconciler, refused
from testkit.wrappers import JOB_COMPLETE, NAME, Pod, gpu_node, kv_record

TOLERATION = "spec.template.spec.tolerations[0].operator: Unsupported value"
TOLERATION_CAUSE = ("FieldValueNotSupported", "spec.template.spec.tolerations[0].operator")
STS_FORBIDDEN = "spec: Forbidden: updates to statefulset spec ..."
JOB_IMMUTABLE = "spec.template: Invalid value: field is immutable"


def settled(cluster: FakeCluster) -> FakeCluster:
    """Reconcile until a pass writes nothing (each write's watch event brings another pass)."""
    for _ in range(5):
        cluster.calls.clear()
        reconciler(cluster).reconcile(KEY)
        if not cluster.writes():
            return cluster
    raise AssertionError(f"still writing after 5 passes: {cluster.calls}")


def command(cluster: FakeCluster) -> list[str]:
    return list(
        cluster.objects[("StatefulSet", NAME)]["spec"]["template"]["spec"]["containers"][0]["command"]
    )


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_first_pass_creates_every_child_then_idle_means_no_write() -> None:
    cluster = FakeCluster()
    out = reconciler(cluster).reconcile(KEY)
    assert out.result == Result.CHANGED and out.status_written
    # the pods' ServiceAccount, tested StatefulSet first (a dry run), then the rest
    assert cluster.applied() == [
        "ServiceAccount",
        "StatefulSet",
        "ConfigMap",
        "ConfigMap",
        "Service",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ]
    assert [c for c in cluster.calls if c[0] == "apply-dry-run"] == [("apply-dry-run", "StatefulSet")]
    assert cluster.status["phase"] == "Progressing"  # the status is of what was observed
    assert ("Normal", "Created") in cluster.events
    ready = reconciler(cluster).reconcile(KEY)  # the StatefulSet's event: it rolled out
    assert ready.status_written and not ready.applied and cluster.status["phase"] == "Ready"
    assert ("Normal", "Ready") in cluster.events
    cluster.calls.clear()
    again = reconciler(cluster).reconcile(KEY)
    assert again.result == Result.UNCHANGED and not again.status_written
    assert cluster.calls == []  # not a write, not a read: the pass had nothing to do


def test_an_unrelated_label_or_annotation_changes_nothing() -> None:
    cluster = settled(FakeCluster())
    cluster.resource["metadata"]["labels"] = {"team": "ml"}
    cluster.edit(**{"example.com/owner": "ml"})
    cluster.calls.clear()
    assert reconciler(cluster).reconcile(KEY).result == Result.UNCHANGED
    assert cluster.calls == []


def test_service_monitor_when_the_prometheus_operator_is_there() -> None:
    cluster = FakeCluster()
    cluster.crds.add(SERVICE_MONITOR_CRD)
    reconciler(cluster).reconcile(KEY)
    assert cluster.applied()[-1] == "ServiceMonitor"
    assert cluster.objects[("ServiceMonitor", NAME)]["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


def test_hand_edit_is_reverted_with_one_event() -> None:
    cluster = FakeCluster()
    reconciler(cluster).reconcile(KEY)
    cluster.objects[("StatefulSet", NAME)]["spec"]["replicas"] = 5
    cluster.events.clear()
    out = reconciler(cluster).reconcile(KEY)
    assert out.applied == ["StatefulSet q"]
    assert cluster.objects[("StatefulSet", NAME)]["spec"]["replicas"] == 1
    assert cluster.events == [("Normal", "DriftReverted")]


def test_a_hand_edit_of_the_workloads_labels_is_reverted_and_the_resource_stays_ready() -> None:
    """Metadata alone changes no generation and no rollout: Ready throughout, no second look."""
    cluster = settled(FakeCluster())
    cluster.objects[("StatefulSet", NAME)]["metadata"]["labels"]["app.kubernetes.io/component"] = "edited"
    cluster.calls.clear()
    out = reconciler(cluster).reconcile(KEY)
    assert out.applied == ["StatefulSet q"] and not out.status_written and out.recheck_after is None
    assert cluster.status["phase"] == "Ready"


def test_a_hand_edit_of_the_workloads_spec_is_a_rollout_to_wait_for() -> None:
    """A spec edit is a new generation: the controller's next status brings the next pass."""
    cluster = settled(FakeCluster())
    cluster.objects[("StatefulSet", NAME)]["spec"]["replicas"] = 5
    out = reconciler(cluster).reconcile(KEY)
    assert out.applied == ["StatefulSet q"] and out.recheck_after is None
    assert cluster.status["phase"] == "Progressing"


def test_spec_change_is_applied_and_named() -> None:
    cluster = FakeCluster()
    reconciler(cluster).reconcile(KEY)
    cluster.edit({"replicas": 3})
    reconciler(cluster).reconcile(KEY)
    assert ("Normal", "Scaled") in cluster.events
    assert cluster.status["observedGeneration"] == 2


def test_context_change_reaches_the_server_command() -> None:
    cluster = FakeCluster()
    reconciler(cluster).reconcile(KEY)
    cluster.edit({"context": {"maxModelLen": 131072}})
    out = reconciler(cluster).reconcile(KEY)
    assert out.applied == ["StatefulSet q"]
    assert flag(command(cluster), "--max-model-len") == "131072"
    assert (cluster.status["observedGeneration"], cluster.status["context"]["effective"]) == (2, 131072)
    assert ("Normal", "Updated") in cluster.events


@pytest.mark.parametrize("cpu", ["lots", "1e.5"])  # Kubernetes' published pattern admits 1e.5
def test_invalid_quantity_touches_nothing(cpu: str) -> None:
    cluster = FakeCluster({"resources": {"requests": {"cpu": cpu}}})
    out = reconciler(cluster).reconcile(KEY)
    assert out.result == Result.INVALID
    assert cluster.applied() == []
    stalled = cluster.condition("Stalled")
    assert stalled["reason"] == "InvalidSpec" and "spec.resources.requests.cpu" in stalled["message"]
    assert ("Warning", "InvalidSpec") in cluster.events


def test_a_new_statefulset_the_apiserver_rejects_means_no_child_is_created() -> None:
    cluster = FakeCluster()

    def refuse(manifest: Mapping[str, Any], dry_run: bool) -> None:
        if manifest["kind"] == "StatefulSet":
            raise refused(
                422, TOLERATION, ("FieldValueNotSupported", "spec.template.spec.tolerations[0].operator")
            )

    cluster.on_apply = refuse
    out = reconciler(cluster).reconcile(KEY)
    assert out.result == Result.INVALID and cluster.applied() == []  # tested first (a dry run), refused
    assert ("apply-dry-run", "StatefulSet") in cluster.calls
    assert [kind for kind, _ in cluster.objects if kind != "QwenThinkingDeployment"] == []
    assert cluster.status["phase"] == "Failed"
    assert "tolerations[0].operator" in cluster.condition("Stalled")["message"]


def test_a_change_the_apiserver_rejects_means_no_child_changes() -> None:
    cluster = FakeCluster()
    reconciler(cluster).reconcile(KEY)
    cluster.refuse_dry_run = "StatefulSet"
    cluster.edit({"service": {"port": 8001}, "replicas": 2})  # a Service and the StatefulSet
    cluster.calls.clear()
    out = reconciler(cluster).reconcile(KEY)
    assert out.result == Result.INVALID
    assert cluster.applied() == []
    assert cluster.status["phase"] == "Degraded"  # the children of the last good spec still serve
    assert "the apiserver rejects StatefulSet q" in cluster.condition("Stalled")["message"]
    dry_runs = [c for c in cluster.calls if c[0] == "apply-dry-run"]
    assert dry_runs == [("apply-dry-run", "StatefulSet")]  # the one child with free-form values


def test_a_lone_statefulset_change_the_apiserver_rejects_is_its_own_dry_run() -> None:
    cluster = FakeCluster()
    reconciler(cluster).reconcile(KEY)

    def refuse(manifest: Mapping[str, Any], dry_run: bool) -> None:
        if manifest["kind"] == "StatefulSet":
            raise refused(
                422, TOLERATION, ("FieldValueNotSupported", "spec.template.spec.tolerations[0].operator")
            )

    cluster.on_apply = refuse
    cluster.edit({"replicas": 2})
    cluster.calls.clear()
    out = reconciler(cluster).reconcile(KEY)
    assert out.result == Result.INVALID and cluster.applied() == ["StatefulSet"]  # tried, refused
    assert cluster.objects[("StatefulSet", NAME)]["spec"]["replicas"] == 1
    assert [c for c in cluster.calls if c[0] == "apply-dry-run"] == []
    assert "tolerations[0].operator" in cluster.condition("Stalled")["message"]


def test_children_created_together_make_one_event() -> None:
    cluster = FakeCluster()
    reconciler(cluster).reconcile(KEY)
    assert [e for e in cluster.events if e[1] == "Created"] == [("Normal", "Created")]


def test_paused_applies_nothing_but_reports() -> None:
    cluster = FakeCluster({"paused": True})
    out = reconciler(cluster).reconcile(KEY)
    assert out.result == Result.PAUSED and out.status_written
    assert cluster.applied() == []
    assert cluster.status["phase"] == "Progressing"


def test_a_name_taken_by_someone_else_is_left_alone() -> None:
    cluster = FakeCluster()
    taken = {"kind": "Service", "metadata": {"name": NAME, "labels": {"app.kubernetes.io/instance": NAME}}}
    cluster.objects[("Service", NAME)] = taken
    out = reconciler(cluster).reconcile(KEY)
    assert cluster.applied() == [] and out.result == Result.BLOCKED
    assert cluster.condition("Stalled")["reason"] == "NameConflict"
    assert HASH_ANNOTATION not in (cluster.objects[("Service", NAME)]["metadata"].get("annotations") or {})


def test_the_resources_starting_are_counted_for_the_pace_of_progress_writes() -> None:
    cluster = FakeCluster()
    rec = reconciler(cluster)
    rec.reconcile(KEY)
    assert rec.starting == {KEY} and cluster.status["phase"] == "Progressing"
    rec.reconcile(KEY)  # Ready
    assert rec.starting == set()
    rec.reconcile(KEY)
    del cluster.objects[("QwenThinkingDeployment", NAME)]
    rec.starting.add(KEY)
    assert rec.reconcile(KEY).result == Result.GONE and rec.starting == set()


def test_deleted_resource_is_gone() -> None:
    cluster = FakeCluster()
    del cluster.objects[("QwenThinkingDeployment", NAME)]
    assert reconciler(cluster).reconcile(KEY).result == Result.GONE
    assert cluster.calls == []


def _unavailable(manifest: Mapping[str, Any], dry_run: bool) -> None:
    raise ApiError(503, "Service Unavailable", "etcdserver: leader changed")


def test_an_api_failure_is_reported_once_and_retried() -> None:
    cluster = FakeCluster()
    reconciler(cluster).reconcile(KEY)
    cluster.edit({"replicas": 2})
    cluster.on_apply = _unavailable
    cluster.events.clear()
    for _ in range(2):
        with pytest.raises(ApiError):  # the error reaches the work queue, which retries
            reconciler(cluster).reconcile(KEY)
    reconciling = cluster.condition("Reconciling")
    assert (reconciling["status"], reconciling["reason"]) == ("True", "ReconcileError")
    assert "leader changed" in reconciling["message"]
    assert cluster.events == [("Warning", "ReconcileError")]  # once, not per retry


def test_children_of_an_earlier_resource_of_the_same_name_are_taken_over() -> None:
    cluster = FakeCluster()
    reconciler(cluster).reconcile(KEY)
    cluster.resource["metadata"]["uid"] = "uid-2"  # deleted and created again
    out = reconciler(cluster).reconcile(KEY)
    assert out.result == Result.CHANGED and len(out.applied) == 8
    for kind, name in (("ServiceAccount", f"{NAME}-server"), ("ConfigMap", launcher.configmap_name(NAME)),
                       ("Service", NAME), ("StatefulSet", NAME), ("PodDisruptionBudget", NAME)):  # fmt: skip
        refs = cluster.objects[(kind, name)]["metadata"]["ownerReferences"]
        assert [r["uid"] for r in refs] == ["uid-2"]


def test_a_child_being_deleted_is_left_to_its_deletion() -> None:
    cluster = FakeCluster()
    reconciler(cluster).reconcile(KEY)
    sts = cluster.objects[("StatefulSet", NAME)]
    sts["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    sts["spec"]["replicas"] = 7
    cluster.calls.clear()
    out = reconciler(cluster).reconcile(KEY)
    assert cluster.applied() == [] and out.result == Result.UNCHANGED


def test_an_immutable_statefulset_field_replaces_it_keeping_pods() -> None:
    cluster = FakeCluster()
    reconciler(cluster).reconcile(KEY)

    def immutable(manifest: Mapping[str, Any], dry_run: bool) -> None:
        live = cluster.objects.get((manifest["kind"], manifest["metadata"]["name"]))
        templates = (live or {}).get("spec", {}).get("volumeClaimTemplates")
        if (
            manifest["kind"] == "StatefulSet"
            and live
            and templates != manifest["spec"].get("volumeClaimTemplates")
        ):
            raise refused(
                422, "spec: Forbidden: updates to statefulset spec ...", ("FieldValueForbidden", "spec")
            )

    cluster.on_apply = immutable
    cluster.edit({"model": {"cache": {"size": "700Gi"}}})
    cluster.events.clear()
    reconciler(cluster).reconcile(KEY)
    assert ("delete", "StatefulSet") in cluster.calls
    assert cluster.events[:1] == [("Normal", "Replacing")]
    assert ("StatefulSet", NAME) not in cluster.objects
    reconciler(cluster).reconcile(KEY)  # what the deletion event triggers
    size = cluster.objects[("StatefulSet", NAME)]["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]
    assert size == {"requests": {"storage": "700Gi"}}


def test_shared_cache_waits_for_its_job_and_a_new_revision_replaces_the_job() -> None:
    shared = {"model": {"cache": {"mode": "Shared", "size": "300Gi"}}}
    cluster = FakeCluster(shared)
    reconciler(cluster).reconcile(KEY)
    assert "Job" in cluster.applied() and "StatefulSet" not in cluster.applied()
    job = cluster.objects[("Job", f"{NAME}-weights")]
    job["status"] = dict(JOB_COMPLETE)  # what the Job controller reports
    cluster.calls.clear()
    reconciler(cluster).reconcile(KEY)
    assert cluster.applied() == ["StatefulSet"]
    settled(cluster)

    def immutable(manifest: Mapping[str, Any], dry_run: bool) -> None:
        live = cluster.objects.get((manifest["kind"], manifest["metadata"]["name"]))
        if manifest["kind"] == "Job" and live and live["spec"]["template"] != manifest["spec"]["template"]:
            raise refused(
                422,
                "spec.template: Invalid value: field is immutable",
                ("FieldValueInvalid", "spec.template"),
            )

    cluster.on_apply = immutable
    cluster.edit({"model": {**shared["model"], "revision": "abc123"}})
    cluster.events.clear()
    cluster.calls.clear()
    reconciler(cluster).reconcile(KEY)
    assert ("delete", "Job") in cluster.calls and cluster.propagations == ["Background"]
    assert ("Normal", "Replacing") in cluster.events and "StatefulSet" not in cluster.applied()
    reconciler(cluster).reconcile(KEY)  # what the deletion event triggers: the new Job, no StatefulSet yet
    env = cluster.objects[("Job", f"{NAME}-weights")]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "QWEN_MODEL_REVISION", "value": "abc123"} in env
    assert "abc123" not in str(cluster.objects[("StatefulSet", NAME)]["spec"])


def test_orphaned_children_are_adopted_only_when_we_applied_them() -> None:
    cluster = FakeCluster()
    reconciler(cluster).reconcile(KEY)
    for kind in ("Service", "StatefulSet", "PodDisruptionBudget"):
        del cluster.objects[(kind, NAME)]["metadata"]["ownerReferences"]  # kubectl delete --cascade=orphan
    cluster.resource["metadata"]["uid"] = "uid-3"
    assert reconciler(cluster).reconcile(KEY).result == Result.CHANGED
    assert cluster.objects[("StatefulSet", NAME)]["metadata"]["ownerReferences"][0]["uid"] == "uid-3"
    labels = {"app.kubernetes.io/instance": NAME}
    someone_elses = {"kind": "Service", "metadata": {"name": NAME, "labels": labels,
                     "managedFields": [{"manager": "kubectl"}]}}  # fmt: skip
    cluster.objects[("Service", NAME)] = someone_elses
    assert reconciler(cluster).reconcile(KEY).result == Result.BLOCKED


def test_adopting_a_rolled_out_statefulset_looks_again_and_is_ready() -> None:
    """Adoption changes only the StatefulSet's metadata: no new generation, so neither its
    controller nor the watch (our own write's echo) brings another pass. Without the recheck
    the resource stayed Progressing ("1/1 serving") until something else happened."""
    cluster = settled(FakeCluster())
    assert cluster.status["phase"] == "Ready"
    for kind in ("Service", "StatefulSet", "PodDisruptionBudget"):
        del cluster.objects[(kind, NAME)]["metadata"]["ownerReferences"]  # kubectl delete --cascade=orphan
    cluster.resource["metadata"]["uid"] = "uid-3"
    cluster.resource.pop("status", None)  # the recreated resource has no status yet
    adopting = reconciler(cluster)
    out = adopting.reconcile(KEY)
    assert "StatefulSet q" in out.applied and cluster.status["phase"] == "Progressing"
    assert out.recheck_after == ROLLOUT_RECHECK_SECONDS  # no event would bring the next pass
    cluster.calls.clear()
    again = adopting.reconcile(KEY)  # what the recheck brings
    assert not again.applied and cluster.status["phase"] == "Ready", cluster.status
    assert again.recheck_after is None and cluster.calls == [("patch", "status"), ("create", "Event")]


def test_a_memory_failure_lowers_the_context_once() -> None:
    cluster = FakeCluster()
    reconciler(cluster).reconcile(KEY)
    cluster.pods = [Pod().context(262144).failed(kv_record(262144, 245408)).obj()]
    counter = metrics.CONTEXT_REDUCTIONS.labels(reason="KVCacheInsufficient")
    before = counter._value.get()
    out = reconciler(cluster).reconcile(KEY)
    assert out.applied == ["StatefulSet q"] and out.status_written
    assert flag(command(cluster), "--max-model-len") == "244736"
    assert cluster.status["context"]["effective"] == 244736 and len(cluster.status["context"]["history"]) == 1
    assert ("Warning", "ContextReduced") in cluster.events and counter._value.get() == before + 1
    assert cluster.status["phase"] == "Progressing"  # the new StatefulSet is not rolled out yet
    settled(cluster)  # the same pod status again, and the rollout: no second reduction
    assert cluster.status["context"]["effective"] == 244736 and len(cluster.status["context"]["history"]) == 1
    assert cluster.applied() == [] and counter._value.get() == before + 1


def test_weights_that_cannot_fit_apply_nothing() -> None:
    """GPUs that the nodes report too small (a spec that says so is refused at apply)."""
    cluster = FakeCluster({"parallelism": {"tensor": 2}})
    cluster.nodes.append(gpu_node())
    out = reconciler(cluster).reconcile(KEY)
    assert out.result == Result.BLOCKED and cluster.applied() == []
    stalled = cluster.condition("Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "InsufficientGPUMemory")
    assert cluster.status["phase"] == "Failed" and cluster.status["context"]["planned"] == 0
    assert cluster.events == [("Warning", "InsufficientGPUMemory")]


def test_a_quota_that_refuses_a_child_applies_nothing_says_so_and_backs_off() -> None:
    """A ResourceQuota (no LoadBalancer Services here) refuses the Service's dry run: no child is
    applied, Stalled says QuotaExceeded, and the queue retries with back-off (no watch tells when
    the quota changes); the retries write nothing new."""
    key = {"apiKeySecretRef": {"name": "qwen-api-key", "key": "key"}}
    cluster = FakeCluster({"service": {"type": "LoadBalancer"}, "auth": key})
    quota = 'services "q" is forbidden: exceeded quota: no-lb, requested: services.loadbalancers=1'

    def refuse(manifest: Mapping[str, Any], dry_run: bool) -> None:
        if manifest["kind"] == "Service" and manifest["spec"].get("type") == "LoadBalancer":
            raise refused(403, quota)

    cluster.on_apply = refuse
    retries = metrics.RETRIES.labels(reason="WriteForbidden")
    for _ in range(2):
        with pytest.raises(Retry) as info:
            reconciler(cluster).reconcile(KEY)
        assert info.value.reason == "WriteForbidden"
        metrics.retried(info.value, 1.0)
        assert cluster.applied() == []  # all or nothing: the dry run refused, nothing applied
        stalled = cluster.condition("Stalled")
        assert (stalled["status"], stalled["reason"]) == ("True", "WriteForbidden") and quota in stalled[
            "message"
        ]
        assert cluster.status["phase"] == "Pending"
        assert cluster.writes() == [("patch", "status"), ("create", "Event")]  # once, not per retry
    assert retries._value.get() >= 2


def test_a_quota_counting_objects_refuses_a_real_apply_says_so_and_backs_off() -> None:
    """A quota on the count of PodDisruptionBudgets: no dry run foresees it, the real apply is
    refused; not a ReconcileError but Stalled/QuotaExceeded, retried with back-off, and the retry
    applies only what is still missing."""
    cluster = FakeCluster()
    quota = 'poddisruptionbudgets.policy "q" is forbidden: exceeded quota: pdbs, requested: count/...=1'

    def refuse(manifest: Mapping[str, Any], dry_run: bool) -> None:
        if manifest["kind"] == "PodDisruptionBudget":
            raise refused(403, quota)

    cluster.on_apply = refuse
    with pytest.raises(Retry) as info:
        reconciler(cluster).reconcile(KEY)
    assert info.value.reason == "WriteForbidden"
    stalled = cluster.condition("Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "WriteForbidden") and quota in stalled[
        "message"
    ]
    assert cluster.applied()[-1] == "PodDisruptionBudget"  # the refused one; the others exist
    assert ("Normal", "Created") in cluster.events  # what was created is said
    cluster.calls.clear()
    cluster.on_apply = None  # the quota is raised
    reconciler(cluster).reconcile(KEY)
    assert cluster.applied() == ["PodDisruptionBudget", "NetworkPolicy"]  # what is still missing


def test_a_namespace_being_deleted_is_not_retried() -> None:
    cluster = FakeCluster()
    message = ["unable to create new content in namespace ns because it is being terminated"]

    def refuse(manifest: Mapping[str, Any], dry_run: bool) -> None:
        terminating = [("NamespaceTerminating", "metadata.namespace")] if "terminated" in message[0] else []
        raise refused(403, f'{manifest["kind"]} "q" is forbidden: {message[0]}', *terminating)

    cluster.on_apply = refuse
    out = reconciler(cluster).reconcile(KEY)  # no exception: nothing to retry
    assert out.result == Result.TERMINATING
    assert cluster.writes() == [("patch", "status")]  # the StatefulSet's dry run refused, then said
    assert ("apply-dry-run", "StatefulSet") in cluster.calls
    assert [kind for kind, _ in cluster.objects if kind != "QwenThinkingDeployment"] == []
    reconciling = cluster.condition("Reconciling")
    assert (reconciling["status"], reconciling["reason"]) == ("True", "NamespaceTerminating")
    cluster.calls.clear()
    assert reconciler(cluster).reconcile(KEY).result == Result.TERMINATING
    assert cluster.writes() == [] and ("apply-dry-run", "StatefulSet") in cluster.calls  # said once
    message[0] = "User cannot patch resource services"  # an RBAC denial: forbidden, retried
    with pytest.raises(Retry) as info:
        reconciler(cluster).reconcile(KEY)
    assert info.value.reason == "WriteForbidden"


def test_old_kopf_records_are_removed_from_the_status() -> None:
    cluster = FakeCluster(status={"kopf": {"progress": {}, "diffbase": "{}"}})
    reconciler(cluster).reconcile(KEY)
    assert "kopf" not in cluster.status


def test_an_api_not_served_yet_is_retried_without_alarm() -> None:
    cluster = FakeCluster()
    cluster.crds.add(SERVICE_MONITOR_CRD)  # Established a moment before the apiserver serves it

    def not_yet(manifest: Mapping[str, Any], dry_run: bool) -> None:
        if manifest["kind"] == "ServiceMonitor":
            raise refused(404, "404 page not found")

    cluster.on_apply = not_yet
    with pytest.raises(ApiError):
        reconciler(cluster).reconcile(KEY)
    assert cluster.events == [] and "ReconcileError" not in str(cluster.status)


def test_a_new_resource_says_reconciling_before_its_children_are_applied() -> None:
    cluster = FakeCluster()
    reconciler(cluster).reconcile(KEY)
    writes = [c for c in cluster.writes() if c[0] != "create"]
    # the pods' ServiceAccount, the new StatefulSet (tested by a dry run); the status before the rest
    assert writes[:4] == [("apply", "ServiceAccount"), ("apply", "StatefulSet"), ("patch", "status"),
                          ("apply", "ConfigMap")]  # fmt: skip
    cluster.calls.clear()
    cluster.edit({"replicas": 2})
    reconciler(cluster).reconcile(KEY)  # an existing status: the children first, then the status
    assert [c for c in cluster.writes() if c[0] != "create"][-1] == ("patch", "status")


SCALED = {"autoscaling": {"maxReplicas": 3}}
POOL = {
    "inferencePool": {"endpointPickerRef": {"name": "epp", "port": {"number": 9002}}},
    "auth": {"apiKeySecretRef": {"name": "qwen-api-key", "key": "key"}},  # an exposed API needs a key
}


def test_autoscaler_follows_keda_and_the_spec_and_goes_when_dropped() -> None:
    """An HPA without KEDA; once KEDA's CRD is served the HPA is deleted first, then the
    ScaledObject applied; without spec.autoscaling it goes too. Each settles to no write."""
    cluster = settled(FakeCluster(spec=SCALED))
    assert ("HorizontalPodAutoscaler", NAME) in cluster.objects
    autoscaling = cluster.condition("Autoscaling")
    assert (autoscaling["status"], autoscaling["reason"]) == ("True", "HorizontalPodAutoscaler")

    cluster.crds.add(SCALED_OBJECT_CRD)
    cluster.calls.clear()
    reconciler(cluster).reconcile(KEY)
    writes = cluster.writes()
    assert writes.index(("delete", "HorizontalPodAutoscaler")) < writes.index(("apply", "ScaledObject"))
    assert ("HorizontalPodAutoscaler", NAME) not in cluster.objects
    assert cluster.condition("Autoscaling")["reason"] == "ScaledObject"
    assert ("Normal", "Deleted") in cluster.events
    settled(cluster)

    cluster.edit(spec={})
    cluster.calls.clear()
    reconciler(cluster).reconcile(KEY)
    assert ("delete", "ScaledObject") in cluster.writes()
    assert ("ScaledObject", NAME) not in cluster.objects
    assert cluster.condition("Autoscaling") == {}  # no autoscaler, no condition
    settled(cluster)


def test_a_deletion_is_told_even_when_the_lone_apply_after_it_is_refused() -> None:
    cluster = settled(FakeCluster(spec=SCALED))

    def refuse(manifest: Mapping[str, Any], dry_run: bool) -> None:
        if manifest["kind"] == "StatefulSet":
            raise refused(
                422, TOLERATION, ("FieldValueNotSupported", "spec.template.spec.tolerations[0].operator")
            )

    cluster.on_apply = refuse
    cluster.edit(spec={"replicas": 2})  # drops spec.autoscaling: the HPA goes, then the refused apply
    cluster.events.clear()
    out = reconciler(cluster).reconcile(KEY)
    assert out.result == Result.INVALID
    assert ("HorizontalPodAutoscaler", NAME) not in cluster.objects
    assert ("Normal", "Deleted") in cluster.events


def test_inference_pool_waits_for_its_crd_with_a_reason() -> None:
    cluster = settled(FakeCluster(spec=POOL))
    assert ("InferencePool", NAME) not in cluster.objects
    pool = cluster.condition("InferencePool")
    assert (pool["status"], pool["reason"]) == ("False", "InferencePoolNotServed")
    assert "inference.networking.k8s.io/v1" in pool["message"]
    assert cluster.status["phase"] == "Ready"  # the servers serve regardless

    cluster.crds.add(INFERENCE_POOL_CRD)
    cluster.calls.clear()
    reconciler(cluster).reconcile(KEY)
    assert ("apply", "InferencePool") in cluster.writes()
    pool = cluster.condition("InferencePool")
    assert (pool["status"], pool["reason"]) == ("True", "InferencePoolApplied")
    settled(cluster)
    cluster.calls.clear()
    assert reconciler(cluster).reconcile(KEY).result == Result.UNCHANGED
    assert cluster.calls == []


def test_prometheus_rule_waits_for_its_crd_and_goes_when_the_spec_drops_it() -> None:
    """Like the ServiceMonitor: nothing while the Prometheus Operator's CRD is not served; then
    the rule, owned by the resource; without spec.monitoring.prometheusRule it is deleted."""
    cluster = settled(FakeCluster(spec={"monitoring": {"prometheusRule": True}}))
    assert ("PrometheusRule", NAME) not in cluster.objects
    assert cluster.status["phase"] == "Ready"

    cluster.crds.add(PROMETHEUS_RULE_CRD)
    cluster.calls.clear()
    reconciler(cluster).reconcile(KEY)
    assert ("apply", "PrometheusRule") in cluster.writes()
    rule = cluster.objects[("PrometheusRule", NAME)]
    assert rule["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    settled(cluster)
    cluster.calls.clear()
    assert reconciler(cluster).reconcile(KEY).result == Result.UNCHANGED
    assert cluster.calls == []

    cluster.edit(spec={})
    cluster.calls.clear()
    reconciler(cluster).reconcile(KEY)
    assert ("delete", "PrometheusRule") in cluster.writes()
    assert ("PrometheusRule", NAME) not in cluster.objects
    assert ("Normal", "Deleted") in cluster.events
    settled(cluster)


def test_a_child_of_someone_else_is_never_deleted() -> None:
    """KEDA's own HPA (owned by the ScaledObject) carries our labels, which KEDA copies: not ours."""
    cluster = settled(FakeCluster())
    owner = {"kind": "ScaledObject", "name": NAME, "uid": "so", "controller": True}
    keda_hpa = {"kind": "HorizontalPodAutoscaler", "metadata": {
        "name": f"keda-hpa-{NAME}", "namespace": "ns", "labels": {"app.kubernetes.io/instance": NAME},
        "ownerReferences": [owner]}}  # fmt: skip
    cluster.objects[("HorizontalPodAutoscaler", f"keda-hpa-{NAME}")] = keda_hpa
    cluster.calls.clear()
    reconciler(cluster).reconcile(KEY)
    assert cluster.writes() == []
