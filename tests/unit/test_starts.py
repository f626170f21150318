"""Where a start's time went: the log reads the operator makes, the status and condition it writes,
and the histogram, from the launcher's start reports (qwen_runtime.startup)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta

from qwen_operator.api.vocabulary import Stage
from qwen_operator.process import clock, metrics
from qwen_operator.process.startlog import StartLog
from qwen_operator.reconcile import snapshot, stages, starts
from qwen_operator.reconcile.observe import Observed
from qwen_runtime import startup
from testkit.fake import NOW
from testkit.wrappers import Pod, resource

T = [NOW + timedelta(minutes=m) for m in range(0, 60, 10)]
FINAL: startup.Report = {
    "ready": True, "phase": "serving", "elapsedSeconds": 412.0, "compileSeconds": 70.0,
    "phases": {"engineStart": 20.0, "weightLoading": 312.0, "profiling": 100.0, "kvCacheAllocation": 0.4,
               "cudaGraphCapture": 48.0, "serving": 5.0},
}  # fmt: skip
LOADING: startup.Report = {"ready": False, "phase": "weightLoading", "phases": {"weightLoading": 60.0}}


def line(report: startup.Report) -> str:
    return startup.PREFIX + json.dumps(report)


def test_durations_and_words_as_describe_shows_them() -> None:
    assert [starts.duration(s) for s in (0.4, 48, 60, 100, 312, 3600, 3720)] == [
        "0s", "48s", "1m", "1m40s", "5m12s", "1h", "1h2m",
    ]  # fmt: skip
    assert starts.words(FINAL) == (
        "engine 20s, weights 5m12s, profiling 1m40s (compile 1m10s), graphs 48s, API server 5s"
    )


def test_a_ready_server_is_read_once_from_before_ready_a_starting_one_for_its_last_minute() -> None:
    serving = Pod("q-0", "u-0").starting("serving", T[1]).facts()
    loading = Pod("q-1", "u-1").starting("loading", T[2]).facts()
    waiting = Pod("q-2", "u-2").starting("downloading", T[2]).facts()
    read_serving, read_loading = starts.reads([serving, loading, waiting], {})
    assert (read_serving.pod, read_serving.final, read_serving.since_seconds) == ("q-0", True, None)
    assert read_serving.since_time is not None and read_serving.since_time >= T[1]
    assert (read_loading.pod, read_loading.final, read_loading.since_time) == ("q-1", False, None)
    assert read_loading.since_seconds == 2 * startup.HEARTBEAT_SECONDS
    # the status holds this start's account already (a restarted operator): no read
    assert starts.reads([serving], {"q-0": clock.rfc3339(T[1])}) == []
    assert starts.recorded(
        {"replicaStatus": [{"pod": "q-0", "lastStart": {"startedAt": "x"}}, {"pod": "q-1"}]}
    ) == {"q-0": "x"}


class FakeLog:
    def __init__(self, text: str) -> None:
        self.text = text
        self.queries: list[tuple[str, Sequence[tuple[str, str]]]] = []

    def __call__(self, namespace: str, pod: str, container: str, query: Sequence[tuple[str, str]]) -> str:
        assert container == "server"
        self.queries.append((pod, list(query)))
        return self.text


def sample_count(phase: str) -> float:
    value = metrics.REGISTRY.get_sample_value("qwen_operator_startup_seconds_count", {"phase": phase})
    return value or 0.0


def test_the_final_report_is_read_once_per_start_and_counted_once() -> None:
    pod = Pod("q-0", "u-0").starting("serving", T[1]).facts()
    observed = Observed(resource=resource(), pods=(pod,))
    fake = FakeLog("\n".join(["vllm says hi", line({**LOADING}), line(FINAL), "GET /health 200"]))
    log = StartLog(fake)
    before = sample_count("weightLoading"), sample_count("total")
    (seen,) = log.collect(observed)
    assert (seen.pod, seen.uid, seen.started_at, seen.report["ready"]) == ("q-0", "u-0", T[1], True)
    assert log.collect(observed) == (seen,), "remembered, not read again"
    assert len(fake.queries) == 1
    query = dict(fake.queries[0][1])
    assert query["limitBytes"] == str(1 << 20) and "sinceTime" in query
    assert (sample_count("weightLoading"), sample_count("total")) == (before[0] + 1, before[1] + 1)


def test_a_starting_server_is_read_at_most_every_30_seconds() -> None:
    now = [0.0]
    pod = Pod("q-0", "u-0").starting("loading", T[1]).facts()
    observed = Observed(resource=resource(), pods=(pod,))
    fake = FakeLog(line(LOADING))
    log = StartLog(fake, monotonic=lambda: now[0])
    (seen,) = log.collect(observed)
    assert seen.report["phase"] == "weightLoading"
    now[0] = 29.0
    log.collect(observed)
    assert len(fake.queries) == 1
    now[0] = 31.0
    log.collect(observed)
    assert len(fake.queries) == 2 and dict(fake.queries[1][1])["sinceSeconds"] == "60"


def test_a_failed_read_is_no_failed_pass_and_is_tried_again() -> None:
    pod = Pod("q-0", "u-0").starting("serving", T[1]).facts()
    observed = Observed(resource=resource(), pods=(pod,))
    calls = []

    def broken(*args: object) -> str:
        calls.append(args)
        raise RuntimeError("kubelet unreachable")

    log = StartLog(broken)
    assert log.collect(observed) == ()
    assert log.collect(observed) == ()
    assert len(calls) == 2


def test_the_status_names_the_phase_while_loading_and_keeps_the_last_start() -> None:
    loading_pod = Pod("q-0", "u-0").starting("loading", T[1]).facts()
    heartbeat = snapshot.StartSeen("q-0", "u-0", T[1], LOADING)
    (entry,) = stages.stages([loading_pod], [heartbeat])
    assert (entry.stage, entry.phase, entry.last_start) == (Stage.LOADING_MODEL, "weightLoading", None)
    assert (
        stages.summary([entry], 1)
        == f"0/1 serving; q-0 loading the model: weights since {clock.rfc3339(T[1])}"
    )
    # a report of another run of the container says nothing about this one
    other = snapshot.StartSeen("q-0", "u-0", T[0], LOADING)
    assert stages.stages([loading_pod], [other])[0].phase == ""

    serving_pod = Pod("q-0", "u-0").starting("serving", T[1]).facts()
    (served,) = stages.stages([serving_pod], [snapshot.StartSeen("q-0", "u-0", T[1], FINAL)])
    assert served.phase == "" and served.last_start is not None
    assert served.last_start.started_at == clock.rfc3339(T[1])
    assert served.last_start.summary.startswith("engine 20s, weights 5m12s")
    assert [p.phase for p in served.last_start.phases or []][:2] == ["engineStart", "weightLoading"]
    assert (served.last_start.seconds, served.last_start.compile_seconds) == (412.0, 70.0)

    # restarted: loading again, the previous start's account stays until the new one serves
    again = Pod("q-0", "u-0").starting("loading", T[3]).facts()
    (kept,) = stages.stages([again], [], [served])
    assert kept.stage == Stage.LOADING_MODEL and kept.last_start == served.last_start


def test_vllms_kv_cache_figures_are_kept_while_what_decides_the_fit_holds() -> None:
    report: startup.Report = {**FINAL, "vllmVersion": "0.33.0",
                              "kvCache": {"memoryGiB": 10.38, "tokens": 268176, "maxConcurrency": 1.02,
                                          "maxModelLen": 262144}}  # fmt: skip
    pod = Pod("q-0", "u-0").context(262144).utilization(0.92).starting("serving", T[1]).facts()
    seen = snapshot.StartSeen("q-0", "u-0", T[1], report)
    observed = starts.observed_memory([seen], [pod], "b1", None)
    assert observed is not None
    assert (observed.kv_cache_tokens, observed.kv_cache_gib, observed.max_concurrency) == (
        268176,
        10.38,
        1.02,
    )
    assert (observed.vllm_version, observed.max_model_len, observed.basis) == ("0.33.0", 262144, "b1")
    assert observed.started_at == clock.rfc3339(T[1])
    wire = observed.model_dump(by_alias=True, exclude_none=True)
    assert wire["kvCacheGiB"] == 10.38 and wire["kvCacheTokens"] == 268176
    # no new start: kept while the basis holds, set aside when it changes
    assert starts.observed_memory([], [pod], "b1", observed) == observed
    assert starts.observed_memory([], [pod], "b2", observed) is None
    # a heartbeat (not ready) or a report without figures says nothing
    assert (
        starts.observed_memory([snapshot.StartSeen("q-0", "u-0", T[1], LOADING)], [pod], "b1", None) is None
    )


def test_the_fit_basis_follows_the_image_gpu_parallelism_and_kv_dtype_not_the_context() -> None:
    from qwen_operator.memory import cures
    from testkit.wrappers import parsed

    base = cures.fit_basis(parsed({}))
    assert cures.fit_basis(parsed({"context": {"maxModelLen": 131072}})) == base
    assert cures.fit_basis(parsed({"runtime": {"gpuMemoryUtilization": 0.85}})) == base
    for changed in ({"runtime": {"image": "vllm/vllm-openai:v0.34.0"}}, {"runtime": {"kvCacheDtype": "fp8"}},
                    {"parallelism": {"tensor": 8, "expert": True}}, {"gpu": {"memoryGiB": 141}}):  # fmt: skip
        assert cures.fit_basis(parsed(changed)) != base, changed
