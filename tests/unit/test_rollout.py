"""The operator's rollout order (reconcile/rollout.py), as a table, and through decide: failed
replicas first, then one serving replica at a time behind a canary, halted when the canary fails."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from qwen_operator import api
from qwen_operator.api.vocabulary import Reason, RolloutState
from qwen_operator.children import compile_cache
from qwen_operator.reconcile import rollout, snapshot
from qwen_operator.reconcile.decide import decide
from qwen_operator.reconcile.observe import Observed
from qwen_operator.reconcile.plan import DeletePod, PatchStatus, Post
from testkit.fake import NOW, FakeCluster, reconciler
from testkit.wrappers import (
    INVALID_ARGS_RECORD,
    NAME,
    NS,
    Pod,
    children,
    kv_record,
    parsed,
    resource,
    statefulset,
)

NEW, OLD = "b", "a"
SHARED = {"model": {"cache": {"mode": "Shared"}}}


def sts(replicas: int = 3, revision: str = NEW, observed: bool = True) -> snapshot.Child:
    """The StatefulSet after a template change: the controller's updateRevision is `revision`."""
    child = statefulset(replicas=replicas, ready=replicas, updated=0, observed=observed)
    return snapshot.Child(**{**child.__dict__, "status": {**child.status, "updateRevision": revision}})


def pod(i: int, revision: str = OLD) -> Pod:
    """Pod i of the StatefulSet (PerReplica: its claim template `weights`), with its claim."""
    return (
        Pod(f"{NAME}-{i}", uid=f"uid-{i}-{revision}")
        .revision(revision)
        .claim("weights", f"weights-{NAME}-{i}")
    )


def serving(*revisions: str) -> list[snapshot.Pod]:
    return [pod(i, r).facts() for i, r in enumerate(revisions)]


def shared_sts(replicas: int = 3, revision: str = NEW) -> snapshot.Child:
    """A Shared-mode StatefulSet made anew with the compile cache's claim template."""
    child = statefulset(replicas=replicas, ready=replicas, updated=0, spec=SHARED)
    assert rollout.claim_templates(child) == (compile_cache.VOLUME,)
    return snapshot.Child(**{**child.__dict__, "status": {**child.status, "updateRevision": revision}})


def shared_pod(i: int, revision: str = OLD, cache_claim: bool = False) -> Pod:
    """Pod i of a Shared-mode resource: every replica mounts the shared weights claim; with
    `cache_claim`, its compile cache's claim too (made by the new StatefulSet)."""
    out = Pod(f"{NAME}-{i}", uid=f"uid-{i}-{revision}").revision(revision).claim("weights", f"{NAME}-weights")
    return out.claim(compile_cache.VOLUME, f"{compile_cache.VOLUME}-{NAME}-{i}") if cache_claim else out


def plan(
    pods: list[snapshot.Pod], want: int = 3, max_unavailable: int | str = 1, canary: str = "",
    hold: bool = False, explained: frozenset[str] = frozenset(), workload: snapshot.Child | None = None,
) -> rollout.Rollout | None:  # fmt: skip
    before = None
    if canary:
        before = api.RolloutStatus(state=RolloutState.ROLLING, revision=NEW, canary=canary)
    inputs = rollout.Inputs(
        workload or sts(want), pods, want, max_unavailable, 2700.0, before, explained, hold=hold
    )
    return rollout.plan(inputs, NOW)


def replaced(r: rollout.Rollout | None) -> list[str]:
    assert r is not None
    return [x.pod.name for x in r.replace]


def test_no_rollout_once_every_replica_runs_the_update_revision() -> None:
    assert plan(serving(NEW, NEW, NEW)) is None
    assert plan(serving(OLD, OLD, OLD), workload=sts(revision="")) is None  # revisions unknown


def test_replicas_that_do_not_serve_go_first_and_all_at_once() -> None:
    pods = [pod(0).failed(INVALID_ARGS_RECORD).facts(), pod(1).facts(), pod(2).not_ready().facts()]
    r = plan(pods)
    assert replaced(r) == [f"{NAME}-0", f"{NAME}-2"]
    assert r is not None and r.canary == "" and r.state == RolloutState.ROLLING


def test_serving_replicas_one_at_a_time_highest_first_the_first_is_the_canary() -> None:
    r = plan(serving(OLD, OLD, OLD))
    assert replaced(r) == [f"{NAME}-2"]
    assert r is not None and r.canary == f"{NAME}-2"
    assert r.status().canary == f"{NAME}-2"


def test_the_next_waits_until_the_previous_serves_again() -> None:
    pods = [pod(0).facts(), pod(1).facts(), pod(2, NEW).not_ready().facts()]
    r = plan(pods, canary=f"{NAME}-2")
    assert replaced(r) == []
    assert r is not None and "waiting for q-2 to serve" in r.message
    assert r.words == "rolling 1/3, canary loading"
    r = plan(serving(OLD, OLD, NEW), canary=f"{NAME}-2")
    assert replaced(r) == [f"{NAME}-1"]
    assert r is not None and r.canary == f"{NAME}-2" and r.words == "rolling 1/3, canary serving"


def test_a_missing_replica_counts_as_unavailable() -> None:
    r = plan(serving(OLD, NEW), canary=f"{NAME}-1")  # pod 2 is being recreated
    assert replaced(r) == []


@pytest.mark.parametrize(
    ("max_unavailable", "want", "allowed"), [(1, 3, 1), (2, 3, 2), ("50%", 4, 2), ("10%", 3, 1), (0, 3, 1)]
)
def test_max_unavailable_int_or_percent_at_least_one(
    max_unavailable: int | str, want: int, allowed: int
) -> None:
    assert rollout.allowed_unavailable(max_unavailable, want) == allowed


def test_never_fewer_serving_than_replicas_minus_max_unavailable() -> None:
    """A replica that fails on the old template already takes the one allowed: no serving replica
    goes before the failed one is replaced and serves again."""
    pods = [pod(0).facts(), pod(1).facts(), pod(2, NEW).facts(), pod(3).waiting("CrashLoopBackOff").facts()]
    assert replaced(plan(pods, want=4, canary=f"{NAME}-2")) == [f"{NAME}-3"]  # not serving: first
    pods[3] = pod(3, NEW).not_ready().facts()
    assert replaced(plan(pods, want=4, canary=f"{NAME}-2")) == []  # pod 3 starts: wait
    pods[3] = pod(3, NEW).facts()
    assert replaced(plan(pods, want=4, canary=f"{NAME}-2")) == [f"{NAME}-1"]
    unready = [pod(0).facts(), pod(1).facts(), pod(2, NEW).facts(), pod(3, NEW).facts()]
    assert replaced(plan(unready, want=4, max_unavailable=2, canary=f"{NAME}-2")) == [f"{NAME}-1"]


def test_a_failed_canary_halts_the_rollout_with_its_reason() -> None:
    pods = [pod(0).facts(), pod(1).facts(), pod(2, NEW).failed(INVALID_ARGS_RECORD).facts()]
    r = plan(pods, canary=f"{NAME}-2")
    assert r is not None and replaced(r) == [] and r.state == RolloutState.HALTED
    assert r.words == "halted: canary CrashLoop InvalidArguments"
    problem = r.problem()
    assert problem is not None and problem.reason == Reason.ROLLOUT_HALTED
    assert "halted: the canary q-2 failed" in problem.message and "InvalidArguments" in problem.message
    assert r.status().halted == [f"{NAME}-2"]


def test_a_start_up_failure_before_the_back_off_halts_too() -> None:
    failing = pod(2, NEW).crashed("boom", then="running").not_ready().facts()
    r = plan([pod(0).facts(), pod(1).facts(), failing], canary=f"{NAME}-2")
    assert r is not None and r.halted and r.halted[0].reason == "Error"


def test_not_serving_within_the_startup_budget_halts() -> None:
    slow = pod(2, NEW).starting("loading", NOW - timedelta(seconds=2701)).facts()
    r = plan([pod(0).facts(), pod(1).facts(), slow], canary=f"{NAME}-2")
    assert r is not None and r.halted and "2700 s" in r.halted[0].message
    fresh = pod(2, NEW).starting("loading", NOW - timedelta(seconds=60)).facts()
    r = plan([pod(0).facts(), pod(1).facts(), fresh], canary=f"{NAME}-2")
    assert r is not None and not r.halted


def test_the_canary_serving_again_resumes_it() -> None:
    r = plan(serving(OLD, OLD, NEW), canary=f"{NAME}-2")
    assert r is not None and not r.halted and replaced(r) == [f"{NAME}-1"]


def test_a_new_revision_resumes_it_replacing_the_failed_canary_first() -> None:
    pods = [pod(0).facts(), pod(1).facts(), pod(2, NEW).failed(INVALID_ARGS_RECORD).facts()]
    r = plan(pods, canary=f"{NAME}-2", workload=sts(revision="c"))
    assert r is not None and not r.halted and replaced(r) == [f"{NAME}-2"]
    assert r.canary == ""  # the canary of another revision


def test_a_failure_the_cures_explain_does_not_halt() -> None:
    pods = [pod(0).facts(), pod(1).facts(), pod(2, NEW).failed(kv_record()).facts()]
    r = plan(pods, canary=f"{NAME}-2", explained=frozenset({f"{NAME}-2"}))
    assert r is not None and not r.halted


def test_nothing_is_replaced_while_held_or_before_the_controller_saw_the_template() -> None:
    assert replaced(plan(serving(OLD, OLD, OLD), hold=True)) == []
    assert replaced(plan(serving(OLD, OLD, OLD), workload=sts(observed=False))) == []


def test_pods_beyond_the_replicas_and_pods_going_are_left_to_the_controller() -> None:
    pods = [*serving(NEW, NEW), pod(2).deleting().facts(), pod(3).facts()]
    assert plan(pods, want=2) is None


# -- pods that lack a claim of their StatefulSet: the lowest ordinal first -----------------------


def test_a_pod_lacks_a_claim_whose_volume_is_absent_or_mounts_another_claim() -> None:
    sts_ = shared_sts()
    assert rollout.missing_claims(sts_, shared_pod(1).facts()) == (f"{compile_cache.VOLUME}-{NAME}-1",)
    assert rollout.missing_claims(sts_, shared_pod(1, cache_claim=True).facts()) == ()
    # Shared -> PerReplica: the weights volume is there, but mounts the shared claim
    assert rollout.missing_claims(sts(), shared_pod(1).facts()) == (f"weights-{NAME}-1",)
    assert rollout.missing_claims(sts(), pod(1).facts()) == ()
    raw = Pod(f"{NAME}-1").mounting("launcher").claim("weights", "w").obj()
    assert snapshot.pod_from(raw).claims == frozenset({("weights", "w")})  # configMaps are no claims


def test_serving_pods_that_lack_a_claim_go_lowest_ordinal_first_the_first_is_the_canary() -> None:
    pods = [shared_pod(i).facts() for i in range(3)]
    r = plan(pods, workload=shared_sts())
    assert replaced(r) == [f"{NAME}-0"]
    assert r is not None and r.canary == f"{NAME}-0"
    assert f"lack the claim {compile_cache.VOLUME}-{NAME}-0" in r.replace[0].why
    assert "recreates no pod beyond it" in r.replace[0].why


def test_the_next_one_lacking_a_claim_waits_for_the_previous_then_goes_up_the_ordinals() -> None:
    starting = shared_pod(0, NEW, cache_claim=True).not_ready().facts()
    r = plan(
        [starting, shared_pod(1).facts(), shared_pod(2).facts()], workload=shared_sts(), canary=f"{NAME}-0"
    )
    assert replaced(r) == [] and r is not None and f"waiting for {NAME}-0 to serve" in r.message
    done = shared_pod(0, NEW, cache_claim=True).facts()
    r = plan([done, shared_pod(1).facts(), shared_pod(2).facts()], workload=shared_sts(), canary=f"{NAME}-0")
    assert replaced(r) == [f"{NAME}-1"]  # not the highest: the controller stops at pod 1
    assert r is not None and r.canary == f"{NAME}-0" and r.words == "rolling 1/3, canary serving"
    r = plan([done, shared_pod(2).facts()], workload=shared_sts(), canary=f"{NAME}-0")  # pod 1 recreated
    assert replaced(r) == [] and r is not None and "1 missing replica" in r.message


def test_a_replica_beyond_the_blocker_that_does_not_serve_is_left_and_capacity_still_holds() -> None:
    """Pod 2 does not serve: deleted, it would stay missing while pod 0 lacks its claim (the
    controller recreates nothing beyond it), so it is left; pod 0 goes only within maxUnavailable."""
    pods = [shared_pod(0).facts(), shared_pod(1).facts(), shared_pod(2).not_ready().facts()]
    r = plan(pods, workload=shared_sts())
    assert replaced(r) == [] and r is not None and "maxUnavailable keeps 2 serving" in r.message
    assert replaced(plan(pods, max_unavailable=2, workload=shared_sts())) == [f"{NAME}-0"]
    gone = [shared_pod(0).facts(), shared_pod(1).facts()]  # pod 2 already deleted
    r = plan(gone, workload=shared_sts())
    assert r is not None and "recreates 2 only once q-0 is replaced" in r.message


def test_replicas_that_do_not_serve_up_to_the_blocker_go_at_once() -> None:
    pods = [
        shared_pod(0, cache_claim=True).not_ready().facts(),  # an old template, with its claim
        shared_pod(1).not_ready().facts(),  # the blocker
        shared_pod(2).not_ready().facts(),
    ]
    r = plan(pods, workload=shared_sts())
    assert replaced(r) == [f"{NAME}-0", f"{NAME}-1"]  # pod 2, beyond the blocker, waits
    assert r is not None and r.canary == ""  # none served: no canary
    assert r.replace[0].why == "not serving: replaced first"
    assert r.replace[1].why.startswith("not serving, the lowest ordinal")


def test_a_pod_on_the_update_revision_that_lacks_a_claim_is_replaced_too() -> None:
    """The StatefulSet's template may be the pods' (their revision reused): the claim alone
    makes the pod outdated."""
    pods = [shared_pod(0, NEW, cache_claim=True).facts(), shared_pod(1, NEW).facts(),
            shared_pod(2, NEW, cache_claim=True).facts()]  # fmt: skip
    r = plan(pods, workload=shared_sts())
    assert replaced(r) == [f"{NAME}-1"] and r is not None and r.updated == 2
    done = [*pods[:1], shared_pod(1, NEW, cache_claim=True).facts(), *pods[2:]]
    assert plan(done, workload=shared_sts()) is None
    unlabelled = Pod(f"{NAME}-1", uid="u").facts()  # not judged before the controller labels it
    assert plan([pods[0], unlabelled, pods[2]], workload=shared_sts()) is None


def test_a_failed_canary_halts_the_rollout_of_the_claims_too() -> None:
    failed = shared_pod(0, NEW, cache_claim=True).failed(INVALID_ARGS_RECORD).facts()
    r = plan(
        [failed, shared_pod(1).facts(), shared_pod(2).facts()], workload=shared_sts(), canary=f"{NAME}-0"
    )
    assert r is not None and r.state == RolloutState.HALTED and replaced(r) == []
    assert r.words == "halted: canary CrashLoop InvalidArguments"


def test_shared_to_per_replica_rolls_lowest_first() -> None:
    """The weights switched to PerReplica: each pod's `weights` volume mounts the shared claim,
    not its own `weights-<pod>`."""
    r = plan([shared_pod(i).facts() for i in range(3)])
    assert replaced(r) == [f"{NAME}-0"] and r is not None and f"weights-{NAME}-0" in r.replace[0].why


@pytest.mark.parametrize("max_unavailable", [1, 2])
def test_a_simulated_controller_rolls_every_pod_lowest_first_within_max_unavailable(
    max_unavailable: int,
) -> None:
    """The plan run pass after pass against a controller that recreates a deleted pod only if no
    pod below it lacks a claim (as the real one, batches aside), and a kubelet that makes a new pod
    serve on the next pass: every pod is replaced, in ordinal order, one at a time, and serving never
    drops below replicas - maxUnavailable."""
    want = 4
    pods = {i: shared_pod(i).facts() for i in range(want)}
    workload, canary, order, serving = shared_sts(want), "", [], []
    for _ in range(30):
        for i, p in list(pods.items()):  # the kubelet: a new pod serves one pass after it was made
            if p.revision == NEW and not p.containers[0].ready:
                pods[i] = shared_pod(i, NEW, cache_claim=True).facts()
        for i in range(want):  # the controller: no pod beyond one that lacks a claim
            if i in pods:
                if rollout.missing_claims(workload, pods[i]):
                    break
                continue
            pods[i] = shared_pod(i, NEW, cache_claim=True).not_ready().facts()
        serving.append(sum(1 for p in pods.values() if p.containers[0].ready))
        r = plan(list(pods.values()), want=want, max_unavailable=max_unavailable, canary=canary,
                 workload=workload)  # fmt: skip
        if r is None:
            break
        canary = r.canary
        for x in r.replace:
            order.append(x.pod.name)
            del pods[rollout.ordinal(x.pod.name)]
    assert order == [f"{NAME}-{i}" for i in range(want)]
    assert min(serving) >= want - max_unavailable, serving
    assert all(p.revision == NEW and not rollout.missing_claims(workload, p) for p in pods.values())


# -- through decide: the plan's op, its event, the status ---------------------------------------


def observed(pods: list[snapshot.Pod], status: dict[str, Any] | None = None) -> Observed:
    spec = {"replicas": 3}
    kids = tuple(c for c in children(parsed(spec)) if c.kind != "StatefulSet")
    return Observed(resource(spec, status=status), (*kids, sts(3)), tuple(pods))


def test_decide_deletes_the_pod_after_the_status_with_an_event() -> None:
    desired = decide(observed(serving(OLD, OLD, OLD)), NOW)
    (op,) = desired.pod_deletes
    assert (op.name, op.uid) == (f"{NAME}-2", f"uid-2-{OLD}")
    kinds = [type(o) for o in desired.ops]
    assert kinds.index(PatchStatus) < kinds.index(DeletePod) < kinds.index(Post)
    assert any(e.reason == "ReplacingPod" and "canary" in e.message for e in desired.events + op.events)
    patch = desired.status_patch
    assert patch is not None
    assert patch["rollout"]["canary"] == f"{NAME}-2" and patch["rollout"]["state"] == "Rolling"
    assert patch["progress"].startswith("rolling 0/3")
    assert [e["revision"] for e in patch["replicaStatus"]] == [OLD, OLD, OLD]
    reconciling = next(c for c in patch["conditions"] if c["type"] == "Reconciling")
    assert reconciling["status"] == "True" and "rolling 0/3" in reconciling["message"]


def test_decide_says_rollout_halted_and_replaces_nothing() -> None:
    canary = {"rollout": {"state": "Rolling", "revision": NEW, "canary": f"{NAME}-2"}}
    pods = [pod(0).facts(), pod(1).facts(), pod(2, NEW).failed(INVALID_ARGS_RECORD).facts()]
    desired = decide(observed(pods, status=canary), NOW)
    assert desired.pod_deletes == ()
    patch = desired.status_patch
    assert patch is not None
    stalled = next(c for c in patch["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "RolloutHalted")
    assert patch["rollout"]["halted"] == [f"{NAME}-2"] and patch["rollout"]["state"] == "Halted"
    assert patch["progress"].startswith("halted: canary CrashLoop InvalidArguments")
    assert patch["phase"] == "Degraded"


def test_the_reconciler_deletes_the_pod_through_the_api_after_the_status() -> None:
    """act carries out the DeletePod op (with the pod's uid as the precondition): once."""
    cluster = FakeCluster({"replicas": 2})
    reconciler(cluster).reconcile((NS, NAME))  # creates the children; the StatefulSet at revision "a"
    cluster.pods = [pod(0, "old").obj(), pod(1, "old").obj()]
    cluster.calls.clear()
    reconciler(cluster).reconcile((NS, NAME))
    assert [c for c in cluster.writes() if c != ("create", "Event")] == [
        ("patch", "status"),
        ("delete", "Pod"),
    ]
    assert [p["metadata"]["name"] for p in cluster.pods] == [f"{NAME}-0"]  # the highest ordinal went
    assert ("Normal", "ReplacingPod") in cluster.events
