"""The out-of-memory cures: detection from pod statuses, a rule for every cause, the decision;
table-tested."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, Literal

import pytest

from qwen_operator import api
from qwen_operator.api.vocabulary import (
    RESET_ANNOTATION,
    KubeletReason,
    LauncherReason,
    Remedy,
)
from qwen_operator.memory import cures
from qwen_operator.memory.cures import MEMORY_FAILURES, RULES, Cure
from qwen_operator.reconcile import events, snapshot, status
from qwen_runtime.record import CudaPhase
from testkit.fake import NOW
from testkit.wrappers import (
    CUDA_OOM_RECORD,
    GRAPH_OOM_RECORD,
    KV_NO_FIGURES_RECORD,
    KV_NO_MEMORY_RECORD,
    WEIGHTS_OOM_RECORD,
    Pod,
    free_memory_record,
    kv_record,
    parsed,
)

T0, T1 = NOW, NOW + timedelta(minutes=5)
LADDER = list(api.FALLBACK_STEPS)


def resource(runtime: dict[str, Any] | None = None, **context: Any) -> api.QwenThinkingDeployment:
    return parsed({"context": context, "runtime": runtime or {}}, generation=2)


def pod(
    record: dict[str, Any] | None = None,
    *,
    name: str = "q-0",
    uid: str = "p0",
    restarts: int = 1,
    context: int = 262144,
    utilization: float = 0.92,
    reason: str = "Error",
    exit_code: int = 1,
    ready: bool = False,
    where: str = "lastState",
) -> snapshot.Pod:
    """A pod as the kubelet reports it after the server container ended."""
    built = Pod(name, uid).context(context).utilization(utilization).memory_limit("256Gi")
    if where == "lastState":
        message = json.dumps(record) if record else ""
        then: Literal["waiting", "running"] = "running" if ready else "waiting"
        built.crashed(message, reason, exit_code, restart_count=restarts, then=then)
    else:
        built.terminated_now(record or {}, restart_count=restarts)
    return built.facts()


def kv(max_len: int = 262144, estimate: int | None = 245408) -> dict[str, Any]:
    return kv_record(max_len, estimate)


def decide(
    res: api.QwenThinkingDeployment, history: Sequence[api.ContextStep] | None, *pods: snapshot.Pod,
    planned: int | Callable[[float], int | None] | None = None, now: Any = T0, groups: bool = False,
) -> cures.Decision:  # fmt: skip
    planned_at = planned if callable(planned) else (lambda _: planned)
    return cures.choose(res, history or [], planned_at, cures.detect(pods, groups), now, groups)


# -- rules ----------------------------------------------------------------------------------


def test_every_cause_the_launcher_and_the_kubelet_report_has_a_rule() -> None:
    causes = [(LauncherReason.CUDA_OOM, phase) for phase in [*CudaPhase, None]]
    causes += [(r, None) for r in LauncherReason if r != LauncherReason.CUDA_OOM]
    causes.append((KubeletReason.OOM_KILLED, None))
    missing = [c for c in causes if c not in RULES]
    assert missing == [], f"no rule for {missing}"
    assert set(RULES) == set(causes), "a rule for a cause nobody reports"


def test_the_memory_failures_are_exactly_those_with_a_memory_cure() -> None:
    memory = {reason for (reason, _), rule in RULES.items() if rule.cure != Cure.NOT_MEMORY}
    assert memory == MEMORY_FAILURES


@pytest.mark.parametrize(
    ("record", "cure"),
    [
        (kv(), Cure.SHORTER_CONTEXT),
        (WEIGHTS_OOM_RECORD, Cure.NONE),
        (GRAPH_OOM_RECORD, Cure.MORE_HEADROOM),
        (CUDA_OOM_RECORD, Cure.MORE_HEADROOM),  # profiling
        ({"reason": "CudaOOM", "exitCode": 1}, Cure.MORE_HEADROOM),  # no phase: the peak outside the pool
        (free_memory_record(70, 79.6), Cure.FIT_FREE_MEMORY),
    ],
)
def test_the_cure_follows_the_cause(record: dict[str, Any], cure: Cure) -> None:
    (failure,) = cures.detect([pod(record)])
    assert failure.rule is not None and failure.rule.cure == cure


@pytest.mark.parametrize(
    ("current", "estimate", "floor", "expected"),
    [
        (262144, 245408, 32768, 244736),  # vLLM's estimate, rounded down to 1024
        (262144, 245760, 32768, 245760),  # already a multiple
        (262144, None, 32768, 196608),  # the next lower step
        (244736, None, 32768, 196608),  # between steps: the next one below
        (196608, None, 32768, 131072),
        (65536, None, 32768, 32768),
        (262144, 20000, 32768, 32768),  # the estimate is below the floor: try at the floor
        (262144, None, 200000, 200000),  # the step is below the floor: the floor
        (32768, None, 32768, None),  # at the floor: nothing left
        (32768, 16384, 32768, None),
        (262144, 262144, 32768, 196608),  # an estimate that is no lower is no estimate
        (32768, None, 1024, 1024),  # below the ladder: the floor
    ],
)
def test_next_context(current: int, estimate: int | None, floor: int, expected: int | None) -> None:
    assert cures.next_context(current, estimate, LADDER, floor) == expected


def test_a_custom_ladder_is_used() -> None:
    assert cures.next_context(262144, None, [200000, 100000], 32768) == 200000
    assert cures.next_context(100000, None, [200000, 100000], 32768) == 32768


# -- detection ---------------------------------------------------------------------------------


def test_detect_reads_the_launchers_report_and_the_pods_command() -> None:
    (failure,) = cures.detect([pod(kv())])
    assert (failure.pod, failure.uid, failure.restart_count) == ("q-0", "p0", 1)
    assert (failure.reason, failure.context, failure.estimate, failure.memory) == (
        "KVCacheInsufficient", 262144, 245408, True,
    )  # fmt: skip
    assert failure.utilization == 0.92 and "neededGiB=11.75" in failure.detail
    (oom,) = cures.detect([pod(CUDA_OOM_RECORD, context=196608, utilization=0.89)])
    assert (oom.reason, oom.context, oom.utilization, oom.estimate) == ("CudaOOM", 196608, 0.89, None)


def test_detect_kubelet_oom_killed_and_non_memory_failures() -> None:
    (killed,) = cures.detect([pod(reason="OOMKilled", exit_code=137)])
    assert killed.reason == "OOMKilled" and killed.memory and "memory limit" in killed.detail
    assert killed.memory_limit == "256Gi"
    (bad,) = cures.detect([pod({"reason": "InvalidArguments", "exitCode": 2})])
    assert bad.reason == "InvalidArguments" and not bad.memory
    (logs,) = cures.detect([pod(None)])
    assert logs.reason == "Error" and not logs.memory


def test_a_terminated_run_and_its_later_last_state_are_the_same_run() -> None:
    now = cures.detect([pod(kv(), restarts=0, where="state")])
    later = cures.detect([pod(kv(), restarts=1)])
    assert [f.key for f in now] == [f.key for f in later] == [("p0", 1)]


def test_detect_ignores_ready_deleted_and_clean_exits() -> None:
    assert cures.detect([pod(kv(), ready=True)]) == []
    deleting = Pod().context(262144).failed(kv()).deleting().facts()
    assert cures.detect([deleting]) == []
    assert cures.detect([pod(None, exit_code=0, reason="Completed")]) == []
    assert cures.detect([snapshot.pod_from({"metadata": {"name": "q-0"}, "status": {}})]) == []


# -- the KV cache: a shorter context -------------------------------------------------------------


def test_kv_cache_insufficient_with_an_estimate_reduces_once() -> None:
    res = resource()
    first = decide(res, None, pod(kv()))
    assert first.effective == 244736 and first.reduced is not None and first.utilization == 0.92
    (step,) = first.history
    wire = step.model_dump(by_alias=True)
    keys = ("from", "to", "remedy", "reason", "pod", "podUID", "restartCount", "time")
    assert {k: wire[k] for k in keys} == {
        "from": 262144, "to": 244736, "remedy": "ShorterContext", "reason": "KVCacheInsufficient",
        "pod": "q-0", "podUID": "p0", "restartCount": 1, "time": "2026-01-01T00:00:00Z",
    }  # fmt: skip
    # the same report again, or after an operator restart (only the status survives): no change
    again = decide(res, first.history, pod(kv()), now=T1)
    assert (again.effective, again.history, again.reduced) == (244736, first.history, None)
    assert again.problem is None and again.explained == {"q-0"}


def test_without_an_estimate_vllms_figures_give_one() -> None:
    record = {**kv(estimate=None), "neededGiB": 16.0, "availableGiB": 10.0}
    derived = decide(resource(), None, pod(record))
    assert derived.effective == 163840  # 262144 x 10 / 16, a multiple of 1024


def test_without_any_figure_the_ladder_is_the_last_resort() -> None:
    res = resource()
    first = decide(res, None, pod(kv()))
    second = decide(res, first.history, pod(KV_NO_FIGURES_RECORD, context=244736, uid="p1", restarts=1))
    assert second.effective == 196608
    assert [(h.from_, h.to) for h in second.history] == [(262144, 244736), (244736, 196608)]


def test_no_memory_at_all_for_the_kv_cache_is_no_context_question() -> None:
    stuck = decide(resource(), None, pod(KV_NO_MEMORY_RECORD))
    assert (stuck.effective, stuck.history) == (262144, ())
    assert stuck.problem is not None and stuck.problem.reason == "InsufficientGPUMemory"
    assert "no memory at all for the KV cache" in stuck.problem.message


def test_a_report_about_another_context_is_stale() -> None:
    stale = decide(resource(), None, pod(KV_NO_FIGURES_RECORD, context=131072))
    assert (stale.effective, stale.history, stale.reduced) == (262144, (), None)
    assert stale.explained == {"q-0"}


def test_a_report_that_contradicts_itself_changes_nothing() -> None:
    """KVCacheInsufficient at 131072 tokens with vLLM's estimate of 245408 that fit: the report
    is no evidence that a shorter context cures anything (it once cut the context to 98304)."""
    res = resource(maxModelLen=131072)
    odd = decide(res, None, pod(kv(131072, 245408), context=131072))
    assert (odd.effective, odd.history, odd.reduced) == (131072, (), None)
    assert odd.problem is not None and odd.problem.reason == "KVCacheInsufficient"
    assert "245408" in odd.problem.message and "131072" in odd.problem.message
    assert "To serve at least one request" in odd.problem.message  # the launcher's own message
    equal = decide(res, None, pod(kv(131072, 131072), context=131072))
    assert (equal.effective, equal.history) == (131072, ())
    assert equal.problem is not None and equal.problem.reason == "KVCacheInsufficient"


def test_at_the_floor_it_stalls_and_changes_nothing() -> None:
    res = resource(maxModelLen=65536, minModelLen=65536)
    stuck = decide(res, None, pod(KV_NO_FIGURES_RECORD, context=65536))
    assert (stuck.effective, stuck.history, stuck.reduced) == (65536, (), None)
    assert stuck.problem is not None and stuck.problem.reason == "ContextFallbackExhausted"
    assert "65536" in stuck.problem.message


def test_lowering_the_floor_lets_it_go_on() -> None:
    res = resource(maxModelLen=65536, minModelLen=32768)
    assert decide(res, None, pod(KV_NO_FIGURES_RECORD, context=65536)).effective == 32768


def test_of_two_failing_replicas_the_smaller_cut_wins_once() -> None:
    pods = [pod(KV_NO_FIGURES_RECORD, name="q-1", uid="p1"), pod(kv())]
    both = decide(resource(), None, *pods)
    assert both.effective == 244736 and len(both.history) == 1 and both.history[0].pod == "q-0"
    assert both.explained == {"q-0", "q-1"}


# -- a peak outside the KV cache: more headroom --------------------------------------------------


def test_a_graph_capture_oom_lowers_that_replicas_utilization_and_keeps_the_context() -> None:
    """A per-GPU matter: the failed replica gets its own utilization, the template keeps the
    request (so no healthy replica restarts for it), and the context stays."""
    first = decide(resource(), None, pod(GRAPH_OOM_RECORD))
    assert (first.effective, first.utilization, first.requested_utilization) == (262144, 0.92, 0.92)
    assert first.replicas == {"q-0": 0.89} and first.utilization_of("q-0") == 0.89
    assert first.utilization_of("q-1") == 0.92
    step = first.reduced
    assert step is not None and step.remedy == Remedy.LOWER_UTILIZATION and step.replica == "q-0"
    assert (step.utilization_from, step.utilization_to, step.from_, step.to) == (0.92, 0.89, 262144, 262144)
    assert step.cause == "CUDA out of memory while capturing CUDA graphs"
    # a report of the old run is handled; its next run (the launcher says 0.89) fails the same way: 0.86
    assert decide(resource(), first.history, pod(GRAPH_OOM_RECORD)).reduced is None
    at_own = {**GRAPH_OOM_RECORD, "gpuMemoryUtilization": 0.89}
    second = decide(resource(), first.history, pod(at_own, uid="p1"))  # its pod spec still says 0.92
    assert second.utilization_of("q-0") == 0.86 and second.utilization == 0.92
    assert len(second.steps(Remedy.LOWER_UTILIZATION)) == 2
    # a run of the template's utilization on that replica (before its restart) is stale
    stale = {**GRAPH_OOM_RECORD, "gpuMemoryUtilization": 0.92}
    assert decide(resource(), first.history, pod(stale, uid="p2")).reduced is None
    # another replica's failure is judged against its own (the template's), and stays its own
    other = decide(resource(), second.history, pod(stale, name="q-1", uid="p3"))
    assert other.replicas == {"q-0": 0.86, "q-1": 0.89} and other.utilization == 0.92


def test_without_a_record_the_replicas_own_utilization_is_assumed() -> None:
    """The kubelet's OOMKilled leaves no record: the run is taken to have had its replica's own
    utilization (its launcher read it), so the failure is judged, not set aside as stale."""
    first = decide(resource(), None, pod(GRAPH_OOM_RECORD))
    killed = decide(resource(), first.history, pod(reason="OOMKilled", exit_code=137, uid="p1"))
    assert killed.problem is not None and killed.problem.reason == "HostOutOfMemory"


def test_in_pipeline_groups_the_template_takes_the_lower_utilization() -> None:
    """A LeaderWorkerSet group is one argv for all its pods, rolled by its own controller."""
    first = decide(resource(), None, pod(GRAPH_OOM_RECORD), groups=True)
    assert (first.utilization, first.replicas) == (0.89, {})
    assert first.reduced is not None and first.reduced.replica == ""
    second = decide(resource(), first.history, pod(GRAPH_OOM_RECORD, uid="p1", utilization=0.89), groups=True)
    assert second.utilization == 0.86


def test_the_utilization_stops_at_its_floor_then_stalls() -> None:
    res = resource({"gpuMemoryUtilization": 0.84, "minGpuMemoryUtilization": 0.82})
    first = decide(res, None, pod(GRAPH_OOM_RECORD, utilization=0.84))
    assert first.utilization_of("q-0") == 0.82  # 0.84 - 0.03, no lower than the floor
    stuck = decide(res, first.history, pod(GRAPH_OOM_RECORD, uid="p1", utilization=0.84))
    assert stuck.problem is not None and stuck.problem.reason == "HeadroomExhausted" and stuck.reduced is None
    assert "q-0" in stuck.problem.message
    lower = resource({"gpuMemoryUtilization": 0.84, "minGpuMemoryUtilization": 0.7})  # the floor is no basis
    on = decide(lower, first.history, pod(GRAPH_OOM_RECORD, uid="p1", utilization=0.84))
    assert on.utilization_of("q-0") == 0.79


def test_less_utilization_fits_less_context_in_the_same_step() -> None:
    def plan(utilization: float) -> int:
        return 262144 if utilization > 0.9 else 131072

    lowered = decide(resource(), None, pod(GRAPH_OOM_RECORD), planned=plan, groups=True)
    assert (lowered.utilization, lowered.effective, lowered.planned) == (0.89, 131072, 131072)
    assert lowered.reduced is not None and (lowered.reduced.from_, lowered.reduced.to) == (262144, 131072)
    steady = decide(resource(), lowered.history, planned=plan, groups=True)
    assert (steady.utilization, steady.effective, steady.reduced) == (0.89, 131072, None)
    # one replica's own utilization leaves the context (the template's) as it is: a replica
    # that cannot hold it then fails on the KV cache, and the shorter context goes to all
    alone = decide(resource(), None, pod(GRAPH_OOM_RECORD), planned=plan)
    assert (alone.utilization, alone.effective, alone.planned, alone.replicas) == (
        0.92,
        262144,
        262144,
        {"q-0": 0.89},
    )


def test_the_two_cures_compose_and_are_each_recorded() -> None:
    first = decide(resource(), None, pod(GRAPH_OOM_RECORD))
    record = {**kv(estimate=200000), "gpuMemoryUtilization": 0.89}
    second = decide(resource(), first.history, pod(record, uid="p1"))
    assert (second.utilization_of("q-0"), second.utilization, second.effective) == (0.89, 0.92, 199680)
    assert [h.remedy for h in second.history] == [Remedy.LOWER_UTILIZATION, Remedy.SHORTER_CONTEXT]


def test_another_process_on_the_gpu_sets_the_utilization_to_what_is_free() -> None:
    fits = decide(resource(), None, pod(free_memory_record(70, 79.6)))
    assert fits.utilization_of("q-0") == 0.86 and fits.effective == 262144  # 70 / 79.6 = 0.879, less 0.01
    assert fits.utilization == 0.92  # the template's
    held = decide(resource(), None, pod(free_memory_record(50, 79.6)))
    assert held.problem is not None and held.problem.reason == "GPUMemoryInUse" and held.reduced is None
    assert "another process holds 29.6 of the 79.6 GiB" in held.problem.message


# -- no cure: a person must act ---------------------------------------------------------------


def test_weights_that_do_not_fit_stall_without_a_change() -> None:
    stuck = decide(resource(), None, pod(WEIGHTS_OOM_RECORD))
    assert (stuck.effective, stuck.utilization, stuck.history) == (262144, 0.92, ())
    assert stuck.problem is not None and stuck.problem.reason == "InsufficientGPUMemory"
    assert "loading the weights" in stuck.problem.message and "parallelism.tensor" in stuck.problem.message


def test_the_kubelets_oom_kill_is_host_memory() -> None:
    killed = decide(resource(), None, pod(reason="OOMKilled", exit_code=137))
    assert (killed.effective, killed.utilization, killed.history) == (262144, 0.92, ())
    assert killed.problem is not None and killed.problem.reason == "HostOutOfMemory"
    assert "256Gi" in killed.problem.message and "resources.limits.memory" in killed.problem.message


def test_fallback_off_reports_and_keeps_everything() -> None:
    off = decide(resource(fallback=False), None, pod(kv()))
    assert (off.effective, off.reduced) == (262144, None)
    assert off.problem is not None and off.problem.reason == "KVCacheInsufficient"
    assert "cures are off" in off.problem.message


def test_a_failure_that_is_not_about_memory_never_changes_anything() -> None:
    bad = decide(resource(), None, pod({"reason": "InvalidArguments", "exitCode": 2}))
    assert (bad.effective, bad.history, bad.problem, bad.explained) == (262144, (), None, frozenset())


# -- what is learnt, and when it is forgotten ---------------------------------------------------


def test_a_change_to_what_decides_the_fit_starts_again_from_the_request() -> None:
    first = decide(resource(), None, pod(kv()))
    assert decide(resource(), first.history).effective == 244736  # same spec: the reduction is in force
    fp8 = parsed({"runtime": {"kvCacheDtype": "fp8"}})
    restart = decide(fp8, first.history, pod(kv()))  # the old pod's report was handled: not again
    assert (restart.effective, restart.reduced) == (262144, None)
    assert restart.history == first.history  # kept for the record, no longer in force
    assert status.context_reduced(restart, 3).status == "False"


def test_scaling_or_the_cures_own_settings_keep_what_was_learnt() -> None:
    first = decide(resource(), None, pod(kv()))
    headroom = decide(resource(), None, pod(GRAPH_OOM_RECORD))
    for spec in ({"replicas": 3}, {"context": {"minModelLen": 65536}}, {"sampling": {"temperature": 0.7}},
                 {"runtime": {"minGpuMemoryUtilization": 0.7}}):  # fmt: skip
        assert decide(parsed(spec), first.history).effective == 244736, spec
        assert decide(parsed(spec), headroom.history).utilization_of("q-0") == 0.89, spec


def test_the_plan_is_the_start_and_caps_the_history() -> None:
    assert decide(resource(), None, planned=210944).effective == 210944
    assert decide(resource(preflight=False), None, planned=210944).effective == 262144
    assert decide(resource(minModelLen=65536), None, planned=4096).effective == 65536
    first = decide(resource(), None, pod(kv()))
    assert decide(resource(), first.history, planned=131072).effective == 131072


def test_history_is_bounded() -> None:
    previous: tuple[api.ContextStep, ...] = ()
    current = 262144
    for i in range(cures.HISTORY_LIMIT + 5):
        res = resource(minModelLen=1024, fallbackSteps=[max(1024, 262144 - 1024 * (i + 1))])
        step = decide(res, previous, pod(KV_NO_FIGURES_RECORD, uid=f"p{i}", context=current))
        if step.reduced is None:
            break
        current, previous = step.effective, step.history
    assert len(previous) == cures.HISTORY_LIMIT


def test_conditions_and_events_say_the_numbers() -> None:
    first = decide(resource(), None, pod(kv()))
    cond = status.context_reduced(first, 2)
    assert (cond.status, cond.reason, cond.observed_generation) == ("True", "OutOfMemory", 2)
    assert "244736 of the 262144" in cond.message and "KVCacheInsufficient" in cond.message
    assert first.reduced is not None
    event = events.cured(first.reduced)
    assert (event.type, event.reason) == (
        "Warning",
        "ContextReduced",
    ) and "from 262144 to 244736" in event.message
    planned = decide(resource(), None, planned=210944)
    assert status.context_reduced(planned, 2).reason == "MemoryPlan" and planned.reduced is None
    assert status.context_reduced(decide(resource(), None), 2).reason == "AsRequested"
    headroom = decide(resource(), None, pod(GRAPH_OOM_RECORD))
    cond = status.utilization_reduced(headroom, 2)
    assert (cond.status, cond.reason) == ("True", "OutOfMemory")
    assert cond.message == (
        "CUDA out of memory while capturing CUDA graphs at utilization 0.92 on pod q-0; its own utilization "
        "for replica q-0 at 0.89; the other replicas at 0.92 of the 0.92 requested"
    )
    grouped = status.utilization_reduced(decide(resource(), None, pod(GRAPH_OOM_RECORD), groups=True), 2)
    assert grouped.message.endswith("on pod q-0; running at 0.89 of the 0.92 requested")
    assert headroom.reduced is not None
    event = events.cured(headroom.reduced)
    assert (event.type, event.reason) == ("Warning", "UtilizationReduced") and "0.92 to 0.89" in event.message
    freed = decide(resource(), None, pod(free_memory_record(70, 79.6)))
    assert status.utilization_reduced(freed, 2).reason == "GPUMemoryInUse"
    assert status.utilization_reduced(first, 2).status == "False"


def test_the_reset_annotation_starts_again_from_the_request() -> None:
    first = decide(resource(), None, pod(kv()))
    reset = parsed(annotations={RESET_ANNOTATION: "1"})
    again = decide(reset, first.history, pod(kv()))
    assert (again.effective, again.reduced) == (262144, None)  # the old report stays handled
    other = parsed(annotations={"serving.qwen-operator.io/other": "y"})
    assert decide(other, first.history).effective == 244736  # other annotations: no effect
