"""Status computation: phases, kstatus conditions, reasons, transition times, events."""

from __future__ import annotations

from typing import Any

from qwen_operator import api, status

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def resource(**spec: Any) -> api.QwenThinkingDeployment:
    return api.parse_resource(
        {"metadata": {"name": "q", "namespace": "ns", "uid": "u1", "generation": 2}, "spec": spec}
    )


def sts(
    replicas: int = 1, ready: int = 1, updated: int | None = None, observed: bool = True
) -> dict[str, Any]:
    return {
        "metadata": {"name": "q", "generation": 3},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": 3 if observed else 2,
            "replicas": replicas,
            "readyReplicas": ready,
            "updatedReplicas": replicas if updated is None else updated,
            "currentRevision": "a",
            "updateRevision": "a" if updated is None else "b",
        },
    }


def pod(name: str = "q-0", **status_: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": status_}


def unschedulable_pod() -> dict[str, Any]:
    cond = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/4 nodes are available: 4 node(s) didn't match Pod's node affinity/selector.",
    }
    return pod(phase="Pending", conditions=[cond])


def waiting_pod(reason: str, **extra: Any) -> dict[str, Any]:
    cs = {"name": "server", "image": "img", "state": {"waiting": {"reason": reason, "message": "m"}}, **extra}
    return pod(phase="Running", containerStatuses=[cs])


def conds(st: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in st["conditions"]}


def test_ready_when_every_replica_is_ready_and_rolled_out() -> None:
    st = status.compute(resource(), 2, sts(), [pod()], {}, T0)
    assert st["phase"] == "Ready"
    assert st["observedGeneration"] == 2
    assert (st["replicas"], st["readyReplicas"]) == (1, 1)
    assert st["selector"] == "app.kubernetes.io/instance=q,app.kubernetes.io/name=qwen-thinking"
    assert st["endpoint"] == "http://q.ns.svc:8000/v1"
    assert st["context"] == {"requested": 262144, "effective": 262144}
    c = conds(st)
    assert (c["Ready"]["status"], c["Reconciling"]["status"], c["Stalled"]["status"]) == (
        "True",
        "False",
        "False",
    )
    assert all(x["observedGeneration"] == 2 and x["lastTransitionTime"] == T0 for x in c.values())


def test_progressing_while_the_statefulset_rolls_out() -> None:
    for observed in (sts(ready=0), sts(updated=0), sts(observed=False), None):
        st = status.compute(resource(), 2, observed, [], {}, T0)
        assert st["phase"] == "Progressing", observed
        c = conds(st)
        assert c["Ready"]["status"] == "False" and c["Ready"]["reason"] == "Progressing"
        assert c["Reconciling"]["status"] == "True"
        assert c["Stalled"]["status"] == "False"


def test_scale_to_zero_is_ready() -> None:
    st = status.compute(resource(replicas=0), 2, sts(replicas=0, ready=0), [], {}, T0)
    assert st["phase"] == "Ready"
    assert conds(st)["Ready"]["reason"] == "ScaledToZero"


def test_unschedulable_carries_the_scheduler_message() -> None:
    st = status.compute(resource(), 2, sts(ready=0), [unschedulable_pod()], {}, T0)
    assert st["phase"] == "Pending"
    c = conds(st)
    assert c["Ready"]["status"] == "False" and c["Ready"]["reason"] == "Unschedulable"
    assert "didn't match Pod's node affinity/selector" in c["Ready"]["message"]
    assert c["Stalled"]["status"] == "True" and c["Stalled"]["reason"] == "Unschedulable"


def test_image_pull_and_crash_loop_reasons() -> None:
    st = status.compute(resource(), 2, sts(ready=0), [waiting_pod("ErrImagePull")], {}, T0)
    assert (st["phase"], conds(st)["Stalled"]["reason"]) == ("Failed", "ImagePullBackOff")
    crash = waiting_pod(
        "CrashLoopBackOff",
        restartCount=4,
        lastState={"terminated": {"exitCode": 1, "reason": "Error", "message": "CUDA out of memory"}},
    )
    st = status.compute(resource(), 2, sts(ready=0), [crash], {}, T0)
    stalled = conds(st)["Stalled"]
    assert (st["phase"], stalled["reason"]) == ("Failed", "CrashLoopBackOff")
    assert "exit code 1 (Error)" in stalled["message"] and "CUDA out of memory" in stalled["message"]
    again = {**crash["status"]["containerStatuses"][0], "restartCount": 5}
    pods = [pod(phase="Running", containerStatuses=[again])]
    later = status.compute(resource(), 2, sts(ready=0), pods, st, T1)
    assert later == st  # one more crash of the same kind: no new status, no new event


def test_degraded_when_some_replicas_serve() -> None:
    st = status.compute(
        resource(replicas=2), 2, sts(replicas=2, ready=1), [pod(), unschedulable_pod()], {}, T0
    )
    assert st["phase"] == "Degraded"


def test_last_transition_time_moves_only_on_a_flip() -> None:
    first = status.compute(resource(), 2, sts(ready=0), [], {}, T0)
    same = status.compute(resource(), 2, sts(ready=0), [], first, T1)
    assert same == first  # nothing changed: identical status, so no write
    flipped = status.compute(resource(), 2, sts(), [], first, T1)
    c = conds(flipped)
    assert c["Ready"]["lastTransitionTime"] == T1  # False -> True
    assert c["Stalled"]["lastTransitionTime"] == T0  # stayed False
    assert c["Reconciling"]["lastTransitionTime"] == T1  # True -> False


def test_conditions_owned_by_others_are_kept() -> None:
    previous = {"conditions": [{"type": "ContextReduced", "status": "True", "lastTransitionTime": T0}]}
    st = status.compute(resource(), 2, sts(), [], previous, T1)
    assert conds(st)["ContextReduced"]["status"] == "True"


def test_paused_still_reports_reality() -> None:
    st = status.compute(resource(paused=True, replicas=3), 2, sts(replicas=1), [], {}, T0)
    assert st["phase"] == "Progressing"
    assert conds(st)["Reconciling"] == {**conds(st)["Reconciling"], "status": "False", "reason": "Paused"}


def test_invalid_spec_is_failed_and_stalled() -> None:
    st = status.invalid("q", 5, None, "spec.resources", "bad", {}, T0)
    assert st["phase"] == "Failed"
    c = conds(st)
    assert c["Stalled"]["status"] == "True" and c["Stalled"]["reason"] == "InvalidSpec"
    assert c["Ready"]["status"] == "False" and "spec.resources: bad" in c["Ready"]["message"]


def test_context_report_becomes_status_context_and_condition() -> None:
    report = status.ContextReport(
        {"requested": 262144, "effective": 210944, "planned": 210944},
        {"type": "ContextReduced", "status": "True", "reason": "MemoryPlan", "message": "m"},
    )
    st = status.compute(resource(), 1, sts(), [], {}, T0, context=report)
    assert st["context"] == {"requested": 262144, "effective": 210944, "planned": 210944}
    assert conds(st)["ContextReduced"]["reason"] == "MemoryPlan"
    assert status.compute(resource(), 1, sts(), [], {}, T0)["context"]["effective"] == 262144


def test_status_patch_only_when_different() -> None:
    st = status.compute(resource(), 2, sts(), [], {}, T0)
    live = {**st, "kopf": {"diffbase": "{}"}}
    assert status.status_patch(live, st) is None
    patch = status.status_patch({**live, "endpoint": "old"}, st)
    assert patch is not None and patch["endpoint"] == st["endpoint"]
    invalid = status.invalid("q", 2, None, "f", "m", {}, T0)
    removal = status.status_patch({**st, "context": {"requested": 1}}, invalid)
    assert removal is not None and removal["endpoint"] is None


def test_events_only_on_transitions() -> None:
    pending = status.compute(resource(), 2, sts(ready=0), [unschedulable_pod()], {}, T0)
    events = status.transition_events({}, pending)
    assert [(e.type, e.reason) for e in events] == [("Warning", "Unschedulable")]
    assert status.transition_events(pending, pending) == []
    ready = status.compute(resource(), 2, sts(), [pod()], pending, T1)
    assert [e.reason for e in status.transition_events(pending, ready)] == ["Recovered", "Ready"]
    assert status.transition_events(ready, ready) == []


def crashed_pod(message: str, name: str = "q-0") -> dict[str, Any]:
    last = {"terminated": {"exitCode": 1, "reason": "Error", "message": message}}
    return {**waiting_pod("CrashLoopBackOff", lastState=last), "metadata": {"name": name}}


def test_a_crash_loop_carries_the_launchers_reason() -> None:
    line = '{"reason": "InvalidArguments", "exitCode": 2, "message": "vllm serve: error: bad flag"}'
    st = status.compute(resource(), 2, sts(ready=0), [crashed_pod(line)], {}, T0)
    assert (conds(st)["Ready"]["status"], conds(st)["Ready"]["reason"]) == ("False", "InvalidArguments")
    assert "bad flag" in conds(st)["Ready"]["message"]
    unknown = status.compute(resource(), 2, sts(ready=0), [crashed_pod('{"reason": "Unknown"}')], {}, T0)
    assert conds(unknown)["Ready"]["reason"] == "CrashLoopBackOff"
    logs = status.compute(resource(), 2, sts(ready=0), [crashed_pod("Traceback ...")], {}, T0)
    assert conds(logs)["Ready"]["reason"] == "CrashLoopBackOff"


def test_crashes_the_fallback_explains_are_no_problem() -> None:
    line = '{"reason": "CudaOOM", "exitCode": 1}'
    report = status.ContextReport({"requested": 262144}, explained=frozenset({"q-0"}))
    st = status.compute(resource(), 2, sts(ready=0, updated=0), [crashed_pod(line)], {}, T0, context=report)
    assert st["phase"] == "Progressing" and conds(st)["Stalled"]["status"] == "False"
    st = status.compute(resource(), 2, sts(ready=0), [crashed_pod(line, "q-1")], {}, T0, context=report)
    assert conds(st)["Ready"]["reason"] == "CudaOOM"
