"""Every `vllm:` metric the repository names (alerts, dashboard, autoscaling, docs) is one vLLM
0.33 declares, read from its installed source by vllm_metrics_check.py in the cached vLLM
virtualenv (a missing virtualenv fails: `make vllm-env`). tests/tools/realvllm checks the same names
against a running vLLM's /metrics (the CPU build, 0.32)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from testkit.metric_names import referenced_vllm_metrics
from tests.tools.contract import vllm_env

pytestmark = pytest.mark.contract

CHECKER = Path(__file__).with_name("vllm_metrics_check.py")


@pytest.fixture(scope="module")
def declared() -> dict[str, Any]:
    return vllm_env.run_in_venv(CHECKER, {})


def test_the_source_read_is_vllm_0_33_and_finds_its_scheduler_metrics(declared: dict[str, Any]) -> None:
    assert declared["vllmVersion"].split("+")[0] == vllm_env.VLLM_VERSION
    kinds = declared["declared"]
    assert kinds["vllm:num_requests_waiting"] == "gauge"
    assert kinds["vllm:num_preemptions"] == "counter"
    assert kinds["vllm:time_to_first_token_seconds"] == "histogram"
    assert "vllm:num_preemptions_total" in declared["series"]


def test_every_vllm_metric_the_repository_names_is_declared(declared: dict[str, Any]) -> None:
    referenced = referenced_vllm_metrics()
    assert "vllm:num_requests_waiting" in referenced, "the autoscaler's metric is named somewhere"
    missing = {name: files for name, files in referenced.items() if name not in set(declared["series"])}
    assert missing == {}, f"not declared by vLLM {declared['vllmVersion']}"
