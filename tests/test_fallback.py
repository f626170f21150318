"""The out-of-memory fallback: detection from pod statuses and the decision, table-tested."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Literal

import pytest

from qwen_operator import api, events, facts, fallback, status
from qwen_operator.vocabulary import RESET_ANNOTATION
from testkit.fake import NOW
from testkit.wrappers import CUDA_OOM_RECORD, Pod, kv_record, parsed

T0, T1 = NOW, NOW + timedelta(minutes=5)
LADDER = list(api.FALLBACK_STEPS)


def resource(**context: Any) -> api.QwenThinkingDeployment:
    return parsed({"context": context}, generation=2)


def pod(
    record: dict[str, Any] | None = None,
    *,
    name: str = "q-0",
    uid: str = "p0",
    restarts: int = 1,
    context: int = 262144,
    reason: str = "Error",
    exit_code: int = 1,
    ready: bool = False,
    where: str = "lastState",
) -> facts.Pod:
    """A pod as the kubelet reports it after the server container ended."""
    built = Pod(name, uid).context(context)
    if where == "lastState":
        message = json.dumps(record) if record else ""
        then: Literal["waiting", "running"] = "running" if ready else "waiting"
        built.crashed(message, reason, exit_code, restart_count=restarts, then=then)
    else:
        built.terminated_now(record or {}, restart_count=restarts)
    return built.facts()


def kv(max_len: int = 262144, estimate: int | None = 245408) -> dict[str, Any]:
    return kv_record(max_len, estimate)


CUDA_OOM = CUDA_OOM_RECORD


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
    assert fallback.next_context(current, estimate, LADDER, floor) == expected


def test_a_custom_ladder_is_used() -> None:
    assert fallback.next_context(262144, None, [200000, 100000], 32768) == 200000
    assert fallback.next_context(100000, None, [200000, 100000], 32768) == 32768


def test_detect_reads_the_launchers_report_and_the_pods_context() -> None:
    (failure,) = fallback.detect([pod(kv())])
    assert (failure.pod, failure.uid, failure.restart_count) == ("q-0", "p0", 1)
    assert (failure.reason, failure.context, failure.estimate, failure.memory) == (
        "KVCacheInsufficient", 262144, 245408, True,
    )  # fmt: skip
    assert "neededGiB=11.75" in failure.detail
    (oom,) = fallback.detect([pod(CUDA_OOM, context=196608)])
    assert (oom.reason, oom.context, oom.estimate) == ("CudaOOM", 196608, None)


def test_detect_kubelet_oom_killed_and_non_memory_failures() -> None:
    (killed,) = fallback.detect([pod(reason="OOMKilled", exit_code=137)])
    assert killed.reason == "OOMKilled" and killed.memory and "memory limit" in killed.detail
    (bad,) = fallback.detect([pod({"reason": "InvalidArguments", "exitCode": 2})])
    assert bad.reason == "InvalidArguments" and not bad.memory
    (logs,) = fallback.detect([pod(None)])
    assert logs.reason == "Error" and not logs.memory


def test_a_terminated_run_and_its_later_last_state_are_the_same_run() -> None:
    now = fallback.detect([pod(kv(), restarts=0, where="state")])
    later = fallback.detect([pod(kv(), restarts=1)])
    assert [f.key for f in now] == [f.key for f in later] == [("p0", 1)]


def test_detect_ignores_ready_deleted_and_clean_exits() -> None:
    assert fallback.detect([pod(kv(), ready=True)]) == []
    deleting = Pod().context(262144).failed(kv()).deleting().facts()
    assert fallback.detect([deleting]) == []
    assert fallback.detect([pod(None, exit_code=0, reason="Completed")]) == []
    assert fallback.detect([facts.pod_from({"metadata": {"name": "q-0"}, "status": {}})]) == []


def decide(
    res: api.QwenThinkingDeployment, history: Sequence[api.ContextStep] | None, *pods: facts.Pod,
    planned: int | None = None, now: Any = T0,
) -> fallback.Decision:  # fmt: skip
    return fallback.decide(res, history or [], planned, fallback.detect(pods), now)


def test_kv_cache_insufficient_with_an_estimate_reduces_once() -> None:
    res = resource()
    first = decide(res, None, pod(kv()))
    assert first.effective == 244736 and first.reduced is not None
    (step,) = first.history
    wire = step.model_dump(by_alias=True)
    assert {k: wire[k] for k in ("from", "to", "reason", "pod", "podUID", "restartCount", "time")} == {
        "from": 262144, "to": 244736, "reason": "KVCacheInsufficient", "pod": "q-0", "podUID": "p0",
        "restartCount": 1, "time": "2026-01-01T00:00:00Z",
    }  # fmt: skip
    # the same report again, or after an operator restart (only the status survives): no change
    again = decide(res, first.history, pod(kv()), now=T1)
    assert (again.effective, again.history, again.reduced) == (244736, first.history, None)
    assert again.problem is None and again.explained == {"q-0"}


def test_cuda_oom_without_estimate_takes_the_next_step() -> None:
    res = resource()
    first = decide(res, None, pod(kv()))
    second = decide(res, first.history, pod(CUDA_OOM, context=244736, uid="p1", restarts=1))
    assert second.effective == 196608
    assert [(h.from_, h.to) for h in second.history] == [(262144, 244736), (244736, 196608)]


def test_a_report_about_another_context_is_stale() -> None:
    res = resource()
    stale = decide(res, None, pod(CUDA_OOM, context=131072))
    assert (stale.effective, stale.history, stale.reduced) == (262144, (), None)
    assert stale.explained == {"q-0"}


def test_at_the_floor_it_stalls_and_changes_nothing() -> None:
    res = resource(maxModelLen=65536, minModelLen=65536)
    stuck = decide(res, None, pod(CUDA_OOM, context=65536))
    assert (stuck.effective, stuck.history, stuck.reduced) == (65536, (), None)
    assert stuck.problem is not None and stuck.problem.reason == "ContextFallbackExhausted"
    assert "65536" in stuck.problem.message


def test_lowering_the_floor_lets_it_go_on() -> None:
    res = resource(maxModelLen=65536, minModelLen=32768)
    assert decide(res, None, pod(CUDA_OOM, context=65536)).effective == 32768


def test_fallback_off_reports_and_keeps_the_context() -> None:
    off = decide(resource(fallback=False), None, pod(kv()))
    assert (off.effective, off.reduced) == (262144, None)
    assert off.problem is not None and off.problem.reason == "KVCacheInsufficient"
    assert "fallback is off" in off.problem.message


def test_a_failure_that_is_not_about_memory_never_changes_the_context() -> None:
    bad = decide(resource(), None, pod({"reason": "InvalidArguments", "exitCode": 2}))
    assert (bad.effective, bad.history, bad.problem, bad.explained) == (262144, (), None, frozenset())


def test_a_change_to_what_decides_the_fit_starts_again_from_the_request() -> None:
    first = decide(resource(), None, pod(kv()))
    previous = first.history
    changed = decide(resource(), previous, planned=None)
    assert changed.effective == 244736  # same spec: the reduction is in force
    fp8 = parsed({"runtime": {"kvCacheDtype": "fp8"}})
    restart = decide(fp8, previous, pod(kv()))  # the old pod's report was handled: not again
    assert (restart.effective, restart.reduced) == (262144, None)
    assert restart.history == first.history  # kept for the record, no longer in force
    assert status.context_reduced(restart, 3).status == "False"


def test_scaling_or_the_fallbacks_own_settings_keep_what_was_learnt() -> None:
    first = decide(resource(), None, pod(kv()))
    for spec in ({"replicas": 3}, {"context": {"minModelLen": 65536}}, {"sampling": {"temperature": 0.7}}):
        res = parsed(spec)
        assert decide(res, first.history).effective == 244736, spec


def test_the_plan_is_the_start_and_caps_the_history() -> None:
    assert decide(resource(), None, planned=210944).effective == 210944
    assert decide(resource(preflight=False), None, planned=210944).effective == 262144
    assert decide(resource(minModelLen=65536), None, planned=4096).effective == 65536
    first = decide(resource(), None, pod(kv()))
    assert decide(resource(), first.history, planned=131072).effective == 131072


def test_of_two_failing_replicas_the_smaller_cut_wins_once() -> None:
    pods = [pod(CUDA_OOM, name="q-1", uid="p1"), pod(kv())]
    both = decide(resource(), None, *pods)
    assert both.effective == 244736 and len(both.history) == 1 and both.history[0].pod == "q-0"
    assert both.explained == {"q-0", "q-1"}


def test_history_is_bounded() -> None:
    previous: tuple[api.ContextStep, ...] = ()
    current = 262144
    for i in range(fallback.HISTORY_LIMIT + 5):
        res = resource(minModelLen=1024, fallbackSteps=[max(1024, 262144 - 1024 * (i + 1))])
        step = decide(res, previous, pod(CUDA_OOM, uid=f"p{i}", context=current))
        if step.reduced is None:
            break
        current, previous = step.effective, step.history
    assert len(previous) == fallback.HISTORY_LIMIT


def test_condition_and_event_say_the_numbers() -> None:
    first = decide(resource(), None, pod(kv()))
    cond = status.context_reduced(first, 2)
    assert (cond.status, cond.reason, cond.observed_generation) == ("True", "OutOfMemory", 2)
    assert "244736 of the 262144" in cond.message and "KVCacheInsufficient" in cond.message
    assert first.reduced is not None
    event = events.context_reduced(first.reduced)
    assert (event.type, event.reason) == ("Warning", "ContextReduced")
    assert "from 262144 to 244736" in event.message
    planned = decide(resource(), None, planned=210944)
    assert status.context_reduced(planned, 2).reason == "MemoryPlan" and planned.reduced is None
    assert status.context_reduced(decide(resource(), None), 2).reason == "AsRequested"


def test_the_reset_annotation_starts_again_from_the_request() -> None:
    first = decide(resource(), None, pod(kv()))
    reset = parsed(annotations={RESET_ANNOTATION: "1"})
    again = decide(reset, first.history, pod(kv()))
    assert (again.effective, again.reduced) == (262144, None)  # the old report stays handled
    other = parsed(annotations={"serving.qwen-operator.io/other": "y"})
    assert decide(other, first.history).effective == 244736  # other annotations: no effect
