"""The status module's parts: phase, kstatus conditions, merge of conditions, the wire form and
the merge patch. How they come together from the cluster's facts is tests/unit/test_decide.py."""

from __future__ import annotations

from datetime import timedelta

from qwen_operator import api
from qwen_operator.api.vocabulary import ConditionType, Phase, Reason
from qwen_operator.memory import cures
from qwen_operator.reconcile import status
from qwen_operator.reconcile.problems import Problem, Wait
from testkit.fake import NOW
from testkit.wrappers import parsed, resource, statefulset

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def test_rollout_is_settled_only_when_observed_rolled_and_sized() -> None:
    assert status.rollout(statefulset(), 1).settled
    assert not status.rollout(statefulset(observed=False), 1).settled
    assert not status.rollout(statefulset(updated=0), 1).settled
    assert not status.rollout(statefulset(replicas=2), 1).settled
    assert status.rollout(None, 1) == status.Rollout(False, 0, 0, 0, False)


def test_phase() -> None:
    ready, rolling = status.rollout(statefulset(), 1), status.rollout(statefulset(ready=0), 1)
    assert status.phase_of(1, ready, None) == Phase.READY
    assert status.phase_of(1, rolling, None) == Phase.PROGRESSING
    assert status.phase_of(1, rolling, Problem(Reason.UNSCHEDULABLE, "m")) == Phase.PENDING
    assert status.phase_of(1, rolling, Problem(Reason.CRASH_LOOP_BACK_OFF, "m")) == Phase.FAILED
    assert (
        status.phase_of(2, status.rollout(statefulset(replicas=2, ready=1), 2), Problem("X", "m"))
        == Phase.DEGRADED
    )


def test_a_wait_is_reconciling_with_its_message_not_stalled() -> None:
    ro = status.rollout(statefulset(ready=0), 1)
    wait = Wait(Reason.SCHEDULING, "waiting for the scheduler: claim binding", 50)
    ready, reconciling, stalled = status.kstatus(Phase.PROGRESSING, 1, ro, None, wait, False, 2)
    assert (ready.status, ready.reason, ready.message) == ("False", "Scheduling", wait.message)
    assert (reconciling.status, reconciling.reason) == ("True", "Scheduling")
    assert (stalled.status, stalled.reason) == ("False", "Progressing")


def test_merge_keeps_transition_times_unless_status_flips() -> None:
    before = [api.Condition(type="Ready", status="False", reason="Progressing", last_transition_time=T0),
              api.Condition(type="Stalled", status="False", reason="Progressing", last_transition_time=T0),
              api.Condition(type="Elsewhere", status="True", last_transition_time=T0)]  # fmt: skip
    new = [api.Condition(type="Ready", status="True", reason="Ready"),
           api.Condition(type="Stalled", status="False", reason="Ready")]  # fmt: skip
    merged = {c.type: c for c in status.merge_conditions(before, new, NOW + timedelta(minutes=5))}
    assert merged["Ready"].last_transition_time == T1
    assert merged["Stalled"].last_transition_time == T0 and merged["Stalled"].reason == "Ready"
    assert merged["Elsewhere"].status == "True"  # a condition this pass does not make is kept


def test_context_reduced_says_why() -> None:
    res = parsed()
    plan = cures.choose(res, [], lambda _: 210944, [], NOW)
    cond = status.context_reduced(plan, 2)
    assert (cond.type, cond.status, cond.reason, cond.observed_generation) == (
        "ContextReduced",
        "True",
        "MemoryPlan",
        2,
    )
    assert "210944 of the 262144" in cond.message
    assert status.context_reduced(cures.choose(res, [], lambda _: None, [], NOW), 2).reason == "AsRequested"


def test_the_previous_status_is_read_leniently() -> None:
    read = status.previous({"phase": "Ready", "kopf": {"progress": {}}, "conditions": [{"type": "Ready",
                            "status": "True"}]})  # fmt: skip
    assert read.phase == Phase.READY and status.condition(read, ConditionType.READY) is not None
    assert status.previous({"phase": 3, "conditions": "junk"}) == status.Status()


def test_wire_form_is_camel_case_without_empty_optionals() -> None:
    context = api.ContextStatus(requested=1024, effective=1024)
    wire = status.to_wire(status.Status(phase=Phase.READY, ready_replicas=1, context=context))
    assert wire == {"phase": "Ready", "readyReplicas": 1, "context": {"requested": 1024, "effective": 1024},
                    "conditions": []}  # fmt: skip


def test_merge_patch_is_none_when_equal_and_removes_what_went() -> None:
    st = {
        "phase": "Ready",
        "context": {"requested": 1, "effective": 1, "planned": 1},
        "conditions": [{"type": "A"}],
    }
    assert status.merge_patch(st, st) is None
    new = {"phase": "Ready", "context": {"requested": 1, "effective": 1}, "conditions": [{"type": "B"}]}
    assert status.merge_patch({**st, "kopf": {"diffbase": "{}"}}, new) == {
        "kopf": None, "context": {"planned": None}, "conditions": [{"type": "B"}],
    }  # fmt: skip
    assert status.merge_patch({"replicas": 1.0}, {"replicas": 1}) == {"replicas": 1}


def test_invalid_keeps_endpoint_and_context() -> None:
    before = status.Status(
        endpoint="http://q.ns.svc:8000/v1", context=api.ContextStatus(requested=1, effective=1)
    )
    st = status.invalid(resource(generation=5), None, "spec.resources", "bad", before, NOW)
    assert st.phase == Phase.FAILED and st.observed_generation == 5
    assert (st.endpoint, st.context) == (before.endpoint, before.context)
    stalled = status.condition(st, ConditionType.STALLED)
    assert stalled is not None and (stalled.status, stalled.reason) == ("True", "InvalidSpec")
    assert "spec.resources: bad" in stalled.message


def test_with_error_changes_only_reconciling() -> None:
    before = status.Status(phase=Phase.READY, conditions=[api.Condition(type="Ready", status="True")])
    st = status.with_error(before, 3, "503 leader changed", NOW)
    reconciling = status.condition(st, ConditionType.RECONCILING)
    assert reconciling is not None and (reconciling.status, reconciling.reason) == ("True", "ReconcileError")
    assert st.phase == Phase.READY and status.condition(st, ConditionType.READY) == before.conditions[0]


def test_applying_the_merge_patch_gives_the_new_status() -> None:
    old = {
        "phase": "Ready",
        "context": {"requested": 1, "planned": 1},
        "kopf": {"x": 1},
        "conditions": [{"t": 1}],
    }
    new = {"phase": "Failed", "context": {"requested": 2}, "conditions": [{"t": 2}], "endpoint": "e"}
    patch = status.merge_patch(old, new)
    assert patch is not None and status.apply_merge_patch(old, patch) == new
