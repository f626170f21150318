"""decide(observed, now) as a table: facts in, Desired out. No client, no fake: plain data."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import pytest

from qwen_operator.api.crd import NEW_STATUS
from qwen_operator.api.vocabulary import PROMETHEUS_RULE_CRD, SERVICE_MONITOR_CRD, Result
from qwen_operator.children import launcher
from qwen_operator.reconcile import problems, snapshot
from qwen_operator.reconcile.decide import STATUS_INTERVAL, Desired, decide, failed, status_interval
from qwen_operator.reconcile.observe import Observed
from qwen_operator.reconcile.refusal import Kind as RefusalKind
from qwen_operator.reconcile.refusal import Refusal
from testkit.fake import NOW
from testkit.wrappers import (
    GRAPH_OOM_RECORD,
    H100_MIB,
    INVALID_ARGS_RECORD,
    KV_NO_FIGURES_RECORD,
    NAME,
    QUOTA_REFUSAL,
    WEIGHTS_OOM_RECORD,
    Pod,
    children,
    failed_create,
    gpu_node,
    kv_record,
    parsed,
    resource,
    statefulset,
)


def observed(
    spec: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
    kids: tuple[snapshot.Child, ...] | None = None,
    pods: tuple[snapshot.Pod, ...] = (),
    nodes: tuple[snapshot.Node, ...] = (),
    **meta: Any,
) -> Observed:
    """The resource with its children live and rolled out, unless `kids` says otherwise."""
    res = resource(spec, status=status, **meta)
    live = children(parsed(spec, **meta)) if kids is None else kids
    return Observed(res, live, pods, nodes)


def conds(desired: Desired, before: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    patch = desired.status_patch or {}
    return {c["type"]: c for c in patch.get("conditions") or (before or {}).get("conditions") or []}


def settled_status(spec: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    """The status the operator wrote for a Ready resource (what the next pass reads back)."""
    first = decide(observed(spec, **meta), NOW)
    assert first.status_patch is not None
    return first.status_patch


# -- the status, from what the cluster shows ---------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    sts: snapshot.Child | None
    pods: tuple[snapshot.Pod, ...] = ()
    spec: dict[str, Any] = field(default_factory=dict)
    phase: str = "Ready"
    ready: tuple[str, str] = ("True", "Ready")
    reconciling: tuple[str, str] = ("False", "Ready")
    stalled: tuple[str, str] = ("False", "Ready")
    failures: tuple[snapshot.CreateFailure, ...] = ()


WAITING_SINCE = NOW - timedelta(seconds=5)
STUCK_SINCE = NOW - timedelta(seconds=problems.UNSCHEDULABLE_GRACE + 1)
CASES = [
    Case("ready", statefulset()),
    Case(
        "creating",
        None,
        phase="Progressing",
        ready=("False", "Progressing"),
        reconciling=("True", "Progressing"),
        stalled=("False", "Progressing"),
    ),
    Case(
        "rolling out",
        statefulset(ready=0, updated=0),
        phase="Progressing",
        ready=("False", "Progressing"),
        reconciling=("True", "Progressing"),
        stalled=("False", "Progressing"),
    ),
    Case(
        "not yet observed",
        statefulset(observed=False),
        phase="Progressing",
        ready=("False", "Progressing"),
        reconciling=("True", "Progressing"),
        stalled=("False", "Progressing"),
    ),
    Case(
        "scaled to zero",
        statefulset(replicas=0, ready=0),
        spec={"replicas": 0},
        ready=("True", "ScaledToZero"),
    ),
    Case(
        "a claim still binding is no stall",
        statefulset(ready=0),
        (Pod().unschedulable(WAITING_SINCE).facts(),),
        phase="Progressing",
        ready=("False", "Scheduling"),
        reconciling=("True", "Scheduling"),
        stalled=("False", "Progressing"),
    ),
    Case(
        "unschedulable past the grace",
        statefulset(ready=0),
        (Pod().unschedulable(STUCK_SINCE).facts(),),
        phase="Pending",
        ready=("False", "Unschedulable"),
        reconciling=("False", "Pending"),
        stalled=("True", "Unschedulable"),
    ),
    Case(
        "image pull",
        statefulset(ready=0),
        (Pod().waiting("ErrImagePull").facts(),),
        phase="Failed",
        ready=("False", "ImagePullBackOff"),
        reconciling=("False", "Failed"),
        stalled=("True", "ImagePullBackOff"),
    ),
    Case(
        "crash loop without a report",
        statefulset(ready=0),
        (Pod().crashed("Traceback ...").facts(),),
        phase="Failed",
        ready=("False", "CrashLoopBackOff"),
        reconciling=("False", "Failed"),
        stalled=("True", "CrashLoopBackOff"),
    ),
    Case(
        "the launcher's reason",
        statefulset(ready=0),
        (Pod().failed(INVALID_ARGS_RECORD).facts(),),
        phase="Failed",
        ready=("False", "InvalidArguments"),
        reconciling=("False", "Failed"),
        stalled=("True", "InvalidArguments"),
    ),
    Case(
        "degraded",
        statefulset(replicas=2, ready=1),
        (Pod("q-1", "pod-2").unschedulable(STUCK_SINCE).facts(),),
        spec={"replicas": 2},
        phase="Degraded",
        ready=("False", "Unschedulable"),
        reconciling=("False", "Degraded"),
        stalled=("True", "Unschedulable"),
    ),
    Case(
        "paused",
        statefulset(),
        spec={"paused": True, "replicas": 3},
        phase="Progressing",
        ready=("False", "Progressing"),
        reconciling=("False", "Paused"),
        stalled=("False", "Progressing"),
    ),
]


REFUSED = (failed_create(QUOTA_REFUSAL, NOW - timedelta(seconds=2)),)
CREATION_CASES = [
    Case(
        "quota refuses the pod",
        statefulset(ready=0),
        failures=REFUSED,
        phase="Pending",
        ready=("False", "QuotaExceeded"),
        reconciling=("False", "Pending"),
        stalled=("True", "QuotaExceeded"),
    ),
    Case(
        "quota refuses the second pod",
        statefulset(replicas=2, ready=1),
        (Pod().created(NOW - timedelta(minutes=1)).facts(),),
        spec={"replicas": 2},
        failures=REFUSED,
        phase="Degraded",
        ready=("False", "QuotaExceeded"),
        reconciling=("False", "Degraded"),
        stalled=("True", "QuotaExceeded"),
    ),
    Case(
        "a pod created since: the refusal is old",
        statefulset(ready=0),
        (Pod().not_ready().created(NOW - timedelta(seconds=1)).facts(),),
        failures=REFUSED,
        phase="Progressing",
        ready=("False", "Progressing"),
        reconciling=("True", "Progressing"),
        stalled=("False", "Progressing"),
    ),
    Case(
        "a refusal of an earlier StatefulSet",
        statefulset(ready=0),
        failures=(failed_create(QUOTA_REFUSAL, NOW, sts_uid="old"),),
        phase="Progressing",
        ready=("False", "Progressing"),
        reconciling=("True", "Progressing"),
        stalled=("False", "Progressing"),
    ),
    Case(
        "pod security",
        statefulset(ready=0),
        failures=(failed_create('pods "q-0" is forbidden: violates PodSecurity "restricted:latest"', NOW),),
        phase="Failed",
        ready=("False", "PodSecurityViolation"),
        reconciling=("False", "Failed"),
        stalled=("True", "PodSecurityViolation"),
    ),
    Case(
        "a missing secret",
        statefulset(ready=0),
        (Pod().waiting("CreateContainerConfigError", 'secret "hf-token" not found').facts(),),
        phase="Pending",
        ready=("False", "CreateContainerConfigError"),
        reconciling=("False", "Pending"),
        stalled=("True", "CreateContainerConfigError"),
    ),
]


@pytest.mark.parametrize("case", CASES + CREATION_CASES, ids=[c.name for c in CASES + CREATION_CASES])
def test_status_from_the_facts(case: Case) -> None:
    kids = tuple(c for c in children(parsed(case.spec)) if c.kind != "StatefulSet")
    obs = Observed(
        resource(case.spec),
        (*kids, *([case.sts] if case.sts else [])),
        case.pods,
        create_failures=case.failures,
    )
    desired = decide(obs, NOW)
    assert desired.status_patch is not None
    assert desired.status_patch["phase"] == case.phase
    c = conds(desired)
    assert (c["Ready"]["status"], c["Ready"]["reason"]) == case.ready
    assert (c["Reconciling"]["status"], c["Reconciling"]["reason"]) == case.reconciling
    assert (c["Stalled"]["status"], c["Stalled"]["reason"]) == case.stalled


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (QUOTA_REFUSAL, "QuotaExceeded"),
        ('pods "q-0" is forbidden: no PriorityClass with name urgent was found', "PriorityClassNotFound"),
        ('pods "q-0" is forbidden: maximum memory usage per Container is 64Gi, but limit is 256Gi',
         "LimitRangeViolated"),
        ("claim: maximum storage usage per PersistentVolumeClaim is 100Gi", "LimitRangeViolated"),
        ("pod is forbidden: memory max limit to request ratio per Container is 2", "LimitRangeViolated"),
        ('pod is forbidden: violates PodSecurity "baseline:latest": host namespaces', "PodSecurityViolation"),
        ('pods "q-0" is forbidden: error looking up service account ns/x', "FailedCreate"),
    ],
)  # fmt: skip
def test_a_refused_pod_says_which_admission_refused_it(message: str, reason: str) -> None:
    problem = problems.not_created((failed_create(message, NOW),), statefulset(ready=0), ())
    assert problem is not None and (problem.reason, message in problem.message) == (reason, True)
    assert problem.message.startswith("0 of 1 pods exist; ")


def test_ready_status_in_full() -> None:
    st = settled_status(generation=2)
    assert st["observedGeneration"] == 2
    assert (st["replicas"], st["readyReplicas"]) == (1, 1)
    assert st["selector"] == "app.kubernetes.io/instance=q,app.kubernetes.io/name=qwen-thinking"
    assert st["endpoint"] == "http://q.ns.svc:8000/v1"
    assert st["context"] == {"requested": 262144, "effective": 262144,
                             "gpuMemoryUtilization": {"requested": 0.92, "effective": 0.92}}  # fmt: skip
    assert all(c["observedGeneration"] == 2 and c["lastTransitionTime"] == "2026-01-01T00:00:00Z"
               for c in st["conditions"])  # fmt: skip
    assert conds(decide(observed(), NOW))["ContextReduced"]["reason"] == "AsRequested"


def test_a_wait_asks_to_look_again_when_it_would_become_a_problem() -> None:
    kids = children(parsed(), readyReplicas=0)  # applied: a wait is the only reason to look again
    desired = decide(observed(kids=kids, pods=(Pod().unschedulable(WAITING_SINCE).facts(),)), NOW)
    assert desired.applies == () and desired.recheck_after == pytest.approx(problems.UNSCHEDULABLE_GRACE - 5)
    assert "0/4 nodes are available" in conds(desired)["Reconciling"]["message"]
    assert [e.type for e in desired.events] == []  # no Warning for a claim that is still binding


def test_nothing_changed_means_nothing_to_write() -> None:
    st = settled_status()
    desired = decide(observed(status=st), NOW + timedelta(minutes=5))
    assert (desired.applies, desired.status_patch, desired.events) == ((), None, ())
    assert desired.result == Result.UNCHANGED and desired.recheck_after is None


def test_one_more_crash_of_the_same_kind_changes_only_the_replicas_count() -> None:
    crash = (Pod().crashed("CUDA out of memory").facts(),)
    first = decide(observed(kids=(statefulset(ready=0),), pods=crash), NOW)
    assert first.status_patch is not None
    again = (Pod().crashed("CUDA out of memory").crashed("CUDA out of memory").facts(),)
    later = decide(observed(status=first.status_patch, kids=(statefulset(ready=0),), pods=again), NOW)
    assert later.events == () and set(later.status_patch or {}) == {"replicaStatus"}
    assert (later.status_patch or {})["replicaStatus"][0]["restarts"] == 2


def test_last_transition_time_moves_only_on_a_flip() -> None:
    first = decide(observed(kids=(statefulset(ready=0),)), NOW).status_patch
    assert first is not None
    later = NOW + timedelta(minutes=5)
    flipped = decide(observed(status=first, kids=(statefulset(),)), later)
    c = conds(flipped)
    assert c["Ready"]["lastTransitionTime"] == "2026-01-01T00:05:00Z"  # False -> True
    assert c["Stalled"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"  # stayed False


# -- events ---------------------------------------------------------------------------------------


def test_events_only_on_transitions() -> None:
    stuck = (Pod().unschedulable(STUCK_SINCE).facts(),)
    pending = decide(observed(kids=(statefulset(ready=0),), pods=stuck), NOW)
    assert [(e.type, e.reason) for e in pending.events] == [("Warning", "Unschedulable")]
    st = pending.status_patch
    assert decide(observed(status=st, kids=(statefulset(ready=0),), pods=stuck), NOW).events == ()
    ready = decide(observed(status=st), NOW)
    assert [e.reason for e in ready.events] == ["Recovered", "Ready"]


# -- children ---------------------------------------------------------------------------------------


def test_a_new_resource_applies_every_child_in_order() -> None:
    desired = decide(observed(kids=()), NOW)
    assert [a.ident for a in desired.applies] == [
        "ServiceAccount q-server", f"ConfigMap {launcher.configmap_name(NAME)}", "ConfigMap q-replicas",
        "Service q-headless",
        "Service q", "StatefulSet q", "PodDisruptionBudget q", "NetworkPolicy q",
    ]  # fmt: skip
    assert all(e.reason == "Created" for a in desired.applies for e in a.events)
    assert desired.result == Result.CHANGED


def test_the_service_monitor_comes_with_its_crd() -> None:
    obs = observed()
    served = Observed(obs.resource, obs.children, served=frozenset({SERVICE_MONITOR_CRD}))
    assert [a.ident for a in decide(served, NOW).applies] == ["ServiceMonitor q"]


def test_the_prometheus_rule_comes_with_its_crd_when_asked() -> None:
    obs = observed({"monitoring": {"prometheusRule": True}})
    assert decide(obs, NOW).applies == ()  # asked, CRD not served: nothing
    served = Observed(obs.resource, obs.children, served=frozenset({PROMETHEUS_RULE_CRD}))
    assert [a.ident for a in decide(served, NOW).applies] == ["PrometheusRule q"]
    unasked = observed()
    assert decide(Observed(unasked.resource, unasked.children, served=served.served), NOW).applies == ()


def test_a_refused_dry_run_applies_nothing_and_says_why() -> None:
    obs = observed(kids=())
    refused = Observed(
        obs.resource,
        refusal=Refusal(RefusalKind.INVALID, "PodDisruptionBudget q", "spec.maxUnavailable: Invalid"),
    )
    desired = decide(refused, NOW)
    assert desired.applies == () and desired.result == Result.INVALID
    assert conds(desired)["Stalled"]["reason"] == "InvalidSpec"


def test_an_invalid_spec_keeps_what_the_status_knew() -> None:
    st = settled_status()
    bad = Observed(resource({"resources": {"requests": {"cpu": "lots"}}}, status=st), children(parsed()))
    desired = decide(bad, NOW)
    assert desired.applies == () and desired.result == Result.INVALID and desired.status_patch is not None
    assert desired.status_patch["phase"] == "Failed" and "endpoint" not in desired.status_patch  # kept
    assert "spec.resources.requests.cpu" in conds(desired)["Ready"]["message"]


# -- the memory plan and the fallback ---------------------------------------------------------


def test_the_plan_reads_only_the_nodes_the_pods_can_land_on() -> None:
    nodes = (gpu_node("small", 24576, "L4"), gpu_node("big", H100_MIB, "H100"))
    pinned = decide(observed({"gpu": {"product": "H100"}}, nodes=nodes), NOW).status_patch
    assert pinned is not None and pinned["context"]["planned"] == 262144
    anywhere = decide(observed(kids=(), nodes=nodes), NOW)
    assert anywhere.result == Result.BLOCKED and anywhere.applies == ()
    assert conds(anywhere)["Stalled"]["reason"] == "InsufficientGPUMemory"


def test_a_kv_cache_failure_lowers_the_context_in_the_statefulset() -> None:
    pods = (Pod().context(262144).failed(kv_record(262144, 245408)).facts(),)
    desired = decide(observed(pods=pods), NOW)
    (apply,) = desired.applies
    command = apply.manifest["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--max-model-len") + 1] == "244736"
    assert desired.reduction is not None and desired.reduction.to == 244736 and desired.reduced
    assert desired.status_first, "the cure is recorded before the StatefulSet replaces the failed pod"
    assert [e.reason for e in desired.events][:1] == ["ContextReduced"]
    assert conds(desired)["Stalled"]["status"] == "False"  # the fallback is acting on it


def test_at_the_floor_the_fallback_stalls() -> None:
    spec = {"context": {"maxModelLen": 65536, "minModelLen": 65536}}
    pods = (Pod().context(65536).utilization(0.92).failed(KV_NO_FIGURES_RECORD).facts(),)
    desired = decide(observed(spec, pods=pods), NOW)
    assert desired.applies == () and conds(desired)["Stalled"]["reason"] == "ContextFallbackExhausted"


def test_a_kv_report_that_contradicts_itself_is_the_launchers_failure() -> None:
    """vLLM's estimate (245408) is no lower than the context it ran at: no cure, Ready=False with
    the launcher's reason and message, the StatefulSet unchanged."""
    spec = {"context": {"maxModelLen": 131072}}
    pods = (Pod().context(131072).utilization(0.92).failed(kv_record(131072, 245408)).facts(),)
    desired = decide(observed(spec, pods=pods), NOW)
    assert desired.applies == () and desired.reduction is None
    c = conds(desired)
    assert (c["Ready"]["status"], c["Ready"]["reason"]) == ("False", "KVCacheInsufficient")
    assert "To serve at least one request" in c["Ready"]["message"]
    assert "ContextReduced" not in [e.reason for e in desired.events]


def test_a_graph_capture_oom_lowers_that_replicas_utilization_alone() -> None:
    """The cure goes into the replicas' ConfigMap, not the StatefulSet (whose change would restart
    every replica); the failed pod is deleted once the live ConfigMap has its entry."""
    failed = Pod().context(262144).utilization(0.92).failed(GRAPH_OOM_RECORD).facts()
    healthy = Pod(f"{NAME}-1", uid="pod-2").context(262144).utilization(0.92).facts()
    desired = decide(observed(spec={"replicas": 2}, pods=(failed, healthy)), NOW)
    (apply,) = desired.applies
    assert apply.ident == f"ConfigMap {NAME}-replicas"
    assert apply.manifest["data"] == {f"{NAME}-0": '{"gpuMemoryUtilization": 0.89}'}
    assert desired.pod_deletes == ()  # not before the ConfigMap has the entry
    assert [e.reason for e in desired.events][:1] == ["UtilizationReduced"]
    assert f"of pod {NAME}-0 alone" in desired.events[0].message
    c = conds(desired)
    assert (c["UtilizationReduced"]["status"], c["ContextReduced"]["status"]) == ("True", "False")
    assert f"replica {NAME}-0 at 0.89; the other replicas at 0.92" in c["UtilizationReduced"]["message"]
    patch = desired.status_patch
    assert patch is not None and desired.status_first
    assert patch["context"]["gpuMemoryUtilization"] == {"requested": 0.92, "effective": 0.92}
    (step,) = patch["context"]["history"]
    assert (step["pod"], step["replica"], step["utilizationTo"]) == (f"{NAME}-0", f"{NAME}-0", 0.89)
    entries = {e["pod"]: e.get("gpuMemoryUtilization") for e in patch["replicaStatus"]}
    assert entries == {f"{NAME}-0": 0.89, f"{NAME}-1": 0.92}

    # the next pass: the ConfigMap is live with the entry, the StatefulSet as it was
    res = parsed({"replicas": 2})
    kids = children(res, replicas={f"{NAME}-0": 0.89})
    status = {**patch, "conditions": patch["conditions"]}
    again = decide(observed(spec={"replicas": 2}, status=status, kids=kids, pods=(failed, healthy)), NOW)
    assert again.applies == ()
    assert [(d.name, d.uid) for d in again.pod_deletes] == [(f"{NAME}-0", "pod-1")]  # pod 0 alone
    (said,) = [e for d in again.pod_deletes for e in d.events]
    assert said.reason == "RestartingReplica" and "its own 0.89" in said.message
    assert again.reduction is None  # the failure is handled once

    # its new run had its own utilization: nothing more (the launcher's record says 0.89)
    rerun = Pod(uid="pod-3").context(262144).utilization(0.92).facts()
    calm = decide(observed(spec={"replicas": 2}, status=status, kids=kids, pods=(rerun, healthy)), NOW)
    assert calm.pod_deletes == () and calm.applies == ()


def test_weights_that_do_not_fit_stall_without_a_rollout() -> None:
    pods = (Pod().context(262144).utilization(0.92).failed(WEIGHTS_OOM_RECORD).facts(),)
    desired = decide(observed(pods=pods), NOW)
    assert desired.applies == () and conds(desired)["Stalled"]["reason"] == "InsufficientGPUMemory"


def test_a_failure_while_reporting_an_error_is_said_once() -> None:
    first = failed(observed(), "503 etcdserver: leader changed", NOW)
    assert [e.reason for e in first.events] == ["ReconcileError"] and first.result == Result.ERROR
    again = failed(observed(status=first.status_patch), "503 again", NOW)
    assert again.events == ()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_never_reconciling_and_stalled_at_once(case: Case) -> None:
    kids = tuple(c for c in children(parsed(case.spec)) if c.kind != "StatefulSet")
    desired = decide(
        Observed(resource(case.spec), (*kids, *([case.sts] if case.sts else [])), case.pods), NOW
    )
    c = conds(desired)
    assert not (c["Reconciling"]["status"] == "True" and c["Stalled"]["status"] == "True")
    erring = failed(observed(status=desired.status_patch), "503 leader changed", NOW)
    e = conds(erring, desired.status_patch)
    assert (e["Reconciling"]["status"], e["Stalled"]["status"]) == ("True", "False")


def test_below_the_model_cards_recommended_context_is_said_and_warned_once() -> None:
    spec = {"context": {"maxModelLen": 65536}}
    first = decide(observed(spec), NOW)
    cond = conds(first)["ContextReduced"]
    assert cond["status"] == "False"
    assert "below the 131072 tokens the model card recommends" in cond["message"]
    assert [e.reason for e in first.events].count("ContextBelowRecommended") == 1
    again = decide(observed(spec, status=first.status_patch), NOW)
    assert "ContextBelowRecommended" not in [e.reason for e in again.events]
    fine = decide(observed({"context": {"maxModelLen": 65536, "recommendedModelLen": 32768}}), NOW)
    assert "ContextBelowRecommended" not in [e.reason for e in fine.events]
    assert "recommends" not in conds(fine)["ContextReduced"]["message"]


def test_a_fallback_below_the_recommendation_warns() -> None:
    st = settled_status()
    pods = (Pod().context(262144).utilization(0.92).failed(kv_record(262144, 100000)).facts(),)
    desired = decide(observed(status=st, pods=pods), NOW)
    assert "ContextBelowRecommended" in [e.reason for e in desired.events]
    assert "below the 131072 tokens" in conds(desired)["ContextReduced"]["message"]


def test_a_template_change_reads_in_progress_until_the_statefulset_rolled() -> None:
    """The StatefulSet observed is the old one, rolled and ready: the status must not say Ready."""
    settled = settled_status()
    warmer = observed({"sampling": {"temperature": 0.7}}, status=settled, kids=children(parsed()))
    changed = decide(warmer, NOW)
    assert [a.ident for a in changed.applies] == ["StatefulSet q"]
    c = conds(changed, settled)
    assert (c["Ready"]["status"], c["Reconciling"]["status"]) == ("False", "True")


def test_a_new_resource_reads_in_progress_from_its_defaulted_status() -> None:
    desired = decide(observed(status=NEW_STATUS, kids=()), NOW)
    assert desired.status_first and desired.status_patch is not None
    later = decide(observed(status=settled_status(), kids=()), NOW)
    assert not later.status_first


# -- how often the status is written -------------------------------------------------------------


def _starting(stage: Any, written_ago: float | None, ready: int = 0, starting: int = 1) -> Desired:
    """A resource whose pod moved on to `stage` (and `ready` replicas); its status was written
    `written_ago` s before, while `starting` resources were Progressing."""
    spec: dict[str, Any] = {}
    before = decide(observed(spec, kids=(statefulset(ready=0),),
                             pods=(Pod().starting("scheduled", NOW).facts(),)), NOW)  # fmt: skip
    assert before.status_patch is not None
    at = None if written_ago is None else NOW - timedelta(seconds=written_ago)
    world = observed(spec, status=before.status_patch, kids=(statefulset(ready=ready),),
                     pods=(Pod().starting(stage, NOW).facts(),))  # fmt: skip
    return decide(replace(world, status_written_at=at, starting=starting), NOW)


def test_progress_alone_waits_for_the_interval_then_is_written() -> None:
    held = _starting("downloading", written_ago=0.5)
    assert held.status_patch is None
    assert held.recheck_after == pytest.approx(STATUS_INTERVAL - 0.5)
    later = _starting("downloading", written_ago=STATUS_INTERVAL)
    assert (
        later.status_patch is not None
        and later.status_patch["replicaStatus"][0]["stage"] == "DownloadingWeights"
    )
    after_restart = _starting("downloading", written_ago=None)  # the last write is not known
    assert after_restart.status_patch is not None


def test_with_hundreds_starting_progress_is_spaced_to_two_writes_a_second_in_all() -> None:
    assert [status_interval(n) for n in (0, 1, 10, 100, 500)] == [STATUS_INTERVAL] * 3 + [50.0, 250.0]
    held = _starting("downloading", written_ago=STATUS_INTERVAL, starting=100)
    assert held.status_patch is None and held.recheck_after == pytest.approx(50.0 - STATUS_INTERVAL)
    assert _starting("downloading", written_ago=50.0, starting=100).status_patch is not None
    ready = _starting("serving", written_ago=0.1, ready=1, starting=500)  # never held
    assert ready.status_patch is not None and ready.status_patch["phase"] == "Ready"


def test_a_change_a_reader_acts_on_is_written_at_once() -> None:
    ready = _starting("serving", written_ago=0.1, ready=1)
    patch = ready.status_patch
    assert patch is not None and patch["phase"] == "Ready"
    assert ("Normal", "Ready") in [(e.type, e.reason) for e in ready.events]
