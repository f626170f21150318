"""The failures the e2e suite and `make demo` inject are the launcher's own records."""

from __future__ import annotations

from e2e.devcluster import simulate
from qwen_runtime import classify
from qwen_runtime.record import Reason


def test_a_simulated_kv_cache_oom_is_what_the_launcher_makes_of_vllms_line() -> None:
    for estimate in (245408, None):
        simulated = simulate.report("oom", 262144, estimate)
        launcher = classify.classify([], [str(simulated["message"])], 1)
        assert {**launcher, "exitCode": 1} == simulated


def test_other_simulated_failures_carry_launcher_reasons() -> None:
    for kind in ("cuda-oom", "bad-args"):
        assert simulate.report(kind, 262144, None)["reason"] in set(Reason)
