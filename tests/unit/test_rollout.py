"""The operator's rollout order (reconcile/rollout.py), as a table, and through decide: failed
replicas first, then one serving replica at a time behind a canary, halted when the canary fails."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from qwen_operator import api
from qwen_operator.api.vocabulary import Reason, RolloutState
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


def sts(replicas: int = 3, revision: str = NEW, observed: bool = True) -> snapshot.Child:
    """The StatefulSet after a template change: the controller's updateRevision is `revision`."""
    child = statefulset(replicas=replicas, ready=replicas, updated=0, observed=observed)
    return snapshot.Child(**{**child.__dict__, "status": {**child.status, "updateRevision": revision}})


def pod(i: int, revision: str = OLD) -> Pod:
    return Pod(f"{NAME}-{i}", uid=f"uid-{i}-{revision}").revision(revision)


def serving(*revisions: str) -> list[snapshot.Pod]:
    return [pod(i, r).facts() for i, r in enumerate(revisions)]


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
