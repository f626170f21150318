"""Each replica's stage from what the kubelet reports, and the summaries people read."""

from __future__ import annotations

from datetime import timedelta

import pytest

from qwen_operator.api.vocabulary import Stage
from qwen_operator.process import clock
from qwen_operator.reconcile import stages
from testkit.fake import NOW
from testkit.wrappers import INVALID_ARGS_RECORD, Pod

T = [NOW + timedelta(minutes=m) for m in range(0, 60, 10)]


def test_the_stages_of_a_start_each_since_the_kubelets_time() -> None:
    cases = [
        (Pod().created(T[0]).unschedulable(T[0]), Stage.SCHEDULING, T[0], "Unschedulable"),
        (Pod().created(T[0]).starting("scheduled", T[0]), Stage.SCHEDULING, T[0], "PodInitializing"),
        (Pod().starting("downloading", T[1]), Stage.DOWNLOADING_WEIGHTS, T[1], ""),
        (Pod().starting("loading", T[3]), Stage.LOADING_MODEL, T[3], ""),
        (Pod().starting("serving", T[4]), Stage.SERVING, T[4], ""),
    ]
    for pod, stage, since, reason in cases:
        entry = stages.stage_of(pod.facts())
        assert (entry.pod, entry.stage, entry.since, entry.reason) == (
            "q-0", stage, since.strftime("%Y-%m-%dT%H:%M:%SZ"), reason,
        ), stage  # fmt: skip


def test_a_crash_loop_says_the_launchers_reason_and_the_restarts() -> None:
    entry = stages.stage_of(Pod().failed(INVALID_ARGS_RECORD).failed(INVALID_ARGS_RECORD).facts())
    assert (entry.stage, entry.reason, entry.restarts) == (Stage.CRASH_LOOP, "InvalidArguments", 2)
    logs = stages.stage_of(Pod().crashed("Traceback ...").facts())
    assert logs.reason == "CrashLoopBackOff"


def test_the_same_stage_later_is_the_same_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry changes with the stage, not with the clock: one status write per stage change.
    (It compared two readings of one pod at one moment, which could not differ.)"""
    first = stages.stages([Pod().starting("downloading", T[1]).facts()])
    later = Pod().starting("downloading", T[1])
    later.raw["metadata"]["resourceVersion"] = "99"  # the pod was written since (probes, the kubelet)
    monkeypatch.setattr(clock, "now", lambda: T[5] + timedelta(hours=1))
    assert stages.stages([later.facts()]) == first
    loading = stages.stages([Pod().starting("loading", T[3]).facts()])
    assert [(e.stage, e.since) for e in loading] != [(e.stage, e.since) for e in first]


def test_progress_and_summary() -> None:
    by_pod = {"q-0": ("serving", T[4]), "q-1": ("downloading", T[1]), "q-2": ("loading", T[2])}
    pods = [Pod(name, f"u-{name}").starting(stage, at).facts() for name, (stage, at) in by_pod.items()]
    entries = stages.stages(pods)
    assert stages.progress(entries, 3) == "1/3 serving, 1 downloading, 1 loading"
    assert stages.summary(entries, 3) == "1/3 serving; q-1 downloading weights since 2026-01-01T00:10:00Z"
    assert stages.summary(entries[:1], 1) == "1/1 serving"
    assert stages.stages([Pod().deleting().facts()]) == []
