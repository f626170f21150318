"""The shared weights download (model.cache.mode Shared) as a table: the Job's state in, what is
applied and what the status says out. Pure: decide() over plain facts, and render()."""

from __future__ import annotations

from typing import Any

import pytest

from qwen_operator import api
from qwen_operator.api.vocabulary import INSTANCE_LABEL, NAME_LABEL, Reason, WeightsState, selector_labels
from qwen_operator.children import render, security
from qwen_operator.reconcile import snapshot
from qwen_operator.reconcile.decide import Desired, decide
from qwen_operator.reconcile.observe import Observed
from testkit.fake import NOW
from testkit.wrappers import JOB_COMPLETE, JOB_RUNNING, NAME, children, download_job, parsed, resource

SHARED: dict[str, Any] = {"model": {"cache": {"mode": "Shared", "size": "300Gi"}}}
JOB_FAILED = {
    "failed": 1,
    "conditions": [
        {"type": "Failed", "status": "True", "reason": "PodFailurePolicy", "message": "exit code 5"},
    ],
}


def world(spec: dict[str, Any], job: dict[str, Any] | None, drop: tuple[str, ...] = ()) -> Observed:
    """The resource with its children live; the Job with `job` as its status (None: no Job yet);
    the kinds in `drop` absent."""
    res = parsed(spec)
    kids = [c for c in children(res) if c.kind not in drop and c.kind != "Job"]
    if job is not None:
        kids.append(download_job(res, **job))
    return Observed(resource(spec), tuple(kids))


def applied(desired: Desired) -> list[str]:
    return [a.manifest["kind"] for a in desired.applies]


def conditions(desired: Desired) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (desired.status_patch or {}).get("conditions") or []}


def weights(desired: Desired) -> dict[str, Any]:
    return dict((desired.status_patch or {})["weights"])


def test_a_new_resource_creates_the_claim_and_the_job_but_no_statefulset() -> None:
    desired = decide(Observed(resource(SHARED)), NOW)
    assert applied(desired) == ["ServiceAccount", "ConfigMap", "ConfigMap", "PersistentVolumeClaim", "Job",
                                "Service", "Service", "PodDisruptionBudget", "NetworkPolicy"]  # fmt: skip
    assert weights(desired)["state"] == WeightsState.PENDING
    reconciling = conditions(desired)["Reconciling"]
    assert (reconciling["status"], reconciling["reason"]) == ("True", Reason.WEIGHTS_DOWNLOADING)
    assert conditions(desired)["Ready"]["reason"] == Reason.WEIGHTS_DOWNLOADING


def test_while_the_job_runs_the_statefulset_waits_and_nothing_is_polled() -> None:
    desired = decide(world(SHARED, JOB_RUNNING, drop=("StatefulSet",)), NOW)
    assert applied(desired) == []
    state = weights(desired)
    assert state["state"] == WeightsState.DOWNLOADING and "1 pod(s) active" in state["message"]
    assert conditions(desired)["Reconciling"]["reason"] == Reason.WEIGHTS_DOWNLOADING
    assert desired.recheck_after is None  # the Job's next change brings the next pass
    assert desired.phase == "Progressing"


def test_a_retried_download_says_it_resumes() -> None:
    desired = decide(world(SHARED, {"active": 1, "failed": 2}, drop=("StatefulSet",)), NOW)
    assert "2 failed attempt(s) resumed" in weights(desired)["message"]


def test_once_the_job_succeeded_the_statefulset_is_created() -> None:
    desired = decide(world(SHARED, JOB_COMPLETE,
                           drop=("StatefulSet",)), NOW)  # fmt: skip
    assert applied(desired) == ["StatefulSet"]
    assert weights(desired)["state"] == WeightsState.COMPLETE


def test_a_failed_job_stalls_with_its_reason_and_is_not_retried_by_the_operator() -> None:
    desired = decide(world(SHARED, JOB_FAILED, drop=("StatefulSet",)), NOW)
    assert applied(desired) == []  # no new Job, no StatefulSet: bounded
    stalled = conditions(desired)["Stalled"]
    assert (stalled["status"], stalled["reason"]) == ("True", Reason.WEIGHTS_DOWNLOAD_FAILED)
    assert "PodFailurePolicy: exit code 5" in stalled["message"] and "delete the Job" in stalled["message"]
    assert conditions(desired)["Reconciling"]["status"] == "False"
    assert weights(desired)["state"] == WeightsState.FAILED and desired.phase == "Failed"


def test_scaling_one_to_four_applies_only_the_statefulset_no_new_download() -> None:
    settled = world({**SHARED, "replicas": 1}, JOB_COMPLETE)
    scaled = Observed(resource({**SHARED, "replicas": 4}), settled.children)
    desired = decide(scaled, NOW)
    assert applied(desired) == ["StatefulSet"]
    assert desired.applies[0].manifest["spec"]["replicas"] == 4


def test_a_new_revision_replaces_the_job_and_holds_the_serving_statefulset() -> None:
    before = world(SHARED, JOB_COMPLETE)
    spec = {"model": {**SHARED["model"], "revision": "abc123"}}
    desired = decide(Observed(resource(spec), before.children), NOW)
    assert "Job" in applied(desired) and "StatefulSet" not in applied(desired)
    assert weights(desired)["state"] == WeightsState.PENDING


def test_a_pending_claim_is_named_in_the_message() -> None:
    res = parsed(SHARED)
    kids = [c for c in children(res) if c.kind not in ("Job", "StatefulSet", "PersistentVolumeClaim")]
    claim = next(m for m in render.render(res) if m["kind"] == "PersistentVolumeClaim")
    pending = snapshot.child_from({**claim, "metadata": {**claim["metadata"], "resourceVersion": "1"},
                                "status": {"phase": "Pending"}})  # fmt: skip
    kids += [download_job(res, **JOB_RUNNING), pending]
    desired = decide(Observed(resource(SHARED), tuple(kids)), NOW)
    assert f"claim {NAME}-weights is Pending" in weights(desired)["message"]


def test_per_replica_has_no_job_no_claim_and_no_weights_status() -> None:
    kinds = [c["kind"] for c in render.render(parsed())]
    assert "Job" not in kinds and "PersistentVolumeClaim" not in kinds
    assert "weights" not in (decide(Observed(resource()), NOW).status_patch or {})


# -- render ------------------------------------------------------------------------------------


def by_kind(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["kind"]: c for c in render.render(parsed(spec))}


def test_render_shared_claim_is_read_write_many_and_owned() -> None:
    spec = {"model": {"cache": {"mode": "Shared", "size": "300Gi", "storageClassName": "nfs"}}}
    claim = by_kind(spec)["PersistentVolumeClaim"]
    assert claim["metadata"]["name"] == f"{NAME}-weights"
    assert claim["spec"] == {"accessModes": ["ReadWriteMany"], "storageClassName": "nfs",
                             "resources": {"requests": {"storage": "300Gi"}}}  # fmt: skip
    assert claim["metadata"]["ownerReferences"][0]["kind"] == api.KIND


def test_render_job_runs_the_init_containers_fetch_under_pod_security_restricted() -> None:
    kinds = by_kind(SHARED)
    job, sts = kinds["Job"], by_kind({})["StatefulSet"]
    pod = job["spec"]["template"]["spec"]
    (fetch,) = pod["containers"]
    (init,) = sts["spec"]["template"]["spec"]["initContainers"]
    for key in ("name", "image", "command", "env", "securityContext", "resources"):
        assert fetch[key] == init[key], key
    assert pod["securityContext"] == security.pod() and pod["restartPolicy"] == "Never"
    assert fetch["securityContext"]["allowPrivilegeEscalation"] is False
    assert fetch["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    claim = next(v for v in pod["volumes"] if v["name"] == "weights")
    assert claim == {"name": "weights", "persistentVolumeClaim": {"claimName": f"{NAME}-weights"}}
    (rule,) = job["spec"]["podFailurePolicy"]["rules"]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["values"] == [2, 3, 4, 5]
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels[INSTANCE_LABEL] == NAME and NAME_LABEL not in labels  # not a server: not selected
    assert not selector_labels(NAME).items() <= labels.items()


def test_render_shared_statefulset_mounts_the_claim_read_only_without_download() -> None:
    sts = by_kind(SHARED)["StatefulSet"]
    pod = sts["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    # no weights claim per replica: its one claim is its compile cache's (test_compile_cache.py)
    assert [c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]] == ["compile-cache"]
    volume = next(v for v in pod["volumes"] if v["name"] == "weights")
    assert volume["persistentVolumeClaim"] == {"claimName": f"{NAME}-weights", "readOnly": True}
    server = pod["containers"][0]
    mount = next(m for m in server["volumeMounts"] if m["name"] == "weights")
    assert mount["readOnly"] is True
    assert "--download-dir" not in server["command"]  # vLLM would take its lock file there
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert env["HF_HUB_CACHE"] == render.HF_CACHE and env["HF_HUB_OFFLINE"] == "1"


def test_job_name_fits_the_job_name_label_for_the_longest_resource_name() -> None:
    longest = "a" * api.MAX_NAME_LENGTH
    assert len(render.download_job_name(longest)) <= 63


@pytest.mark.parametrize("mode", api.CACHE_MODES)
def test_a_pvc_source_takes_no_shared_cache(mode: str) -> None:
    spec = {"model": {"source": {"pvc": {"claimName": "w"}}, "cache": {"mode": mode}}}
    if mode == "Shared":
        with pytest.raises(api.InvalidResource, match=r"model\.cache\.mode"):
            parsed(spec)
    else:
        assert not render.shared_cache(parsed(spec).spec)
