"""The alerts and the dashboard (manifests/monitoring/), checked by Prometheus' own code:
`promtool check rules`, `promtool test rules` (alerts_test.yaml: every alert fires on its
failure and stays quiet on a healthy neighbour), and Prometheus' parser (promql) reading every
query of the rules and the dashboard, each metric it reads one the operator serves (its real
/metrics exposition, here) or one vLLM serves: tests/tools/contract/test_vllm_metrics.py reads
what vLLM 0.33 declares, tests/tools/realvllm scrapes a running vLLM. promtool and the parser
come from `make tools`; missing, these tests fail. The checks that need neither are in
tests/unit/test_monitoring.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.devcluster import prometheus
from qwen_operator import api
from qwen_operator.api.vocabulary import PROMETHEUS_RULE_CRD
from qwen_operator.children import render
from qwen_operator.process import metrics
from testkit.metric_names import exposed


def rule_expressions() -> list[str]:
    return [str(r["expr"]) for g in prometheus.rule_groups() for r in g["rules"]]


def test_promtool_checks_the_rules(tmp_path: Path) -> None:
    done = prometheus.promtool(tmp_path, "check", "rules", prometheus.RULE_FILE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rule_expressions())} rules found" in done.stdout


def per_resource_groups(name: str) -> list[dict[str, Any]]:
    """The rule groups spec.monitoring.prometheusRule renders for resource `name` in `llm`."""
    res = {"apiVersion": api.API_VERSION, "kind": api.KIND, "metadata": {"name": name, "namespace": "llm"},
           "spec": {"monitoring": {"prometheusRule": True}}}  # fmt: skip
    rule = render.render(res, served=frozenset({PROMETHEUS_RULE_CRD}))[-1]
    assert rule["kind"] == "PrometheusRule"
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def test_promtool_checks_the_per_resource_rule(tmp_path: Path) -> None:
    """spec.monitoring.prometheusRule's rule, as the operator renders it, is a valid rule file too."""
    done = prometheus.promtool(
        tmp_path, "check", "rules", prometheus.RULE_FILE, groups=per_resource_groups("q")
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 6 rules found" in done.stdout


def cases_for(name: str, alerts: set[str]) -> dict[str, Any]:
    """alerts_test.yaml narrowed to `alerts`, each expecting only the alerts of resource `name`
    (its Service or its metrics' `name`) in namespace llm."""
    shipped = yaml.safe_load(prometheus.RULE_TESTS.read_text())
    tests = []
    for test in shipped["tests"]:
        cases = [
            {**case, "exp_alerts": [
                a for a in case.get("exp_alerts") or []
                if a["exp_labels"].get("namespace") == "llm"
                and name in (a["exp_labels"].get("service"), a["exp_labels"].get("name"))
            ]}
            for case in test["alert_rule_test"] if case["alertname"] in alerts
        ]  # fmt: skip
        if cases:
            tests.append({**test, "alert_rule_test": cases})
    return {**shipped, "tests": tests}


VLLM_ALERTS = {
    "QwenThinkingQueueBacklog", "QwenThinkingKVCacheFull", "QwenThinkingPreemptions",
    "QwenThinkingSlowTimeToFirstToken",
}  # fmt: skip


@pytest.mark.parametrize(
    ("name", "firing"),
    [
        ("busy", VLLM_ALERTS),  # alerts_test.yaml's overloaded vLLM
        ("a", {"QwenThinkingReplicasNotReady", "QwenThinkingServerCrashLooping"}),  # its failing resource
        ("calm", set()),  # the healthy neighbour of "busy": the same series, and nothing fires
    ],
)
def test_the_per_resource_rule_alerts_on_its_own_resource_only(
    tmp_path: Path, name: str, firing: set[str]
) -> None:
    """`promtool test rules` on the rule rendered for one resource, over the shipped cases:
    it fires as the shipped rule does for that resource, and never for a neighbour's series."""
    groups = per_resource_groups(name)
    alerts = {r["alert"] for g in groups for r in g["rules"]}
    tests = cases_for(name, alerts)
    expected = {c["alertname"] for t in tests["tests"] for c in t["alert_rule_test"] if c["exp_alerts"]}
    assert expected == firing
    assert {c["alertname"] for t in tests["tests"] for c in t["alert_rule_test"]} == alerts  # each is run
    (tmp_path / prometheus.RULE_TESTS.name).write_text(yaml.safe_dump(tests, sort_keys=False))
    done = prometheus.promtool(tmp_path, "test", "rules", prometheus.RULE_TESTS.name, groups=groups)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_unit_tests_pass(tmp_path: Path) -> None:
    done = prometheus.promtool(tmp_path, "test", "rules", prometheus.RULE_TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_a_wrong_expectation_fails_the_unit_tests(tmp_path: Path) -> None:
    """The runner reports failures: one expected annotation off, and promtool says so."""
    text = prometheus.RULE_TESTS.read_text()
    assert text.count("59.5s") == 1
    (tmp_path / prometheus.RULE_TESTS.name).write_text(text.replace("59.5s", "50s"))
    done = prometheus.promtool(tmp_path, "test", "rules", prometheus.RULE_TESTS.name)
    assert done.returncode != 0
    assert "QwenThinkingSlowTimeToFirstToken" in done.stdout + done.stderr


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    """Replicas by stage, effective vs requested context, queue, KV usage, TTFT and ITL, tokens/s,
    and where the servers' starts went (issue 25: the start-up phases)."""
    read = {
        n
        for names in prometheus.metric_names(prometheus.dashboard_queries(prometheus.dashboard()))
        for n in names
    }
    assert {
        "qwen_operator_resource_replicas", "qwen_operator_resource_effective_context_tokens",
        "qwen_operator_resource_requested_context_tokens", "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc", "vllm:time_to_first_token_seconds_bucket",
        "vllm:inter_token_latency_seconds_bucket", "vllm:generation_tokens_total",
        "qwen_operator_startup_seconds_sum", "qwen_operator_startup_seconds_count",
    } <= read  # fmt: skip


def test_every_metric_the_rules_and_dashboard_read_is_served() -> None:
    queries = rule_expressions() + prometheus.dashboard_queries(prometheus.dashboard())
    read = {n for names in prometheus.metric_names(queries) for n in names}
    operator = exposed(metrics.exposition().decode())
    ours = {n for n in read if n.startswith("qwen_operator_")}
    assert ours, "the rules and the dashboard read no operator metric"
    assert ours - operator == set(), "not in the operator's /metrics"
    others = read - ours
    assert {n for n in others if not n.startswith("vllm:")} == set(), "neither the operator's nor vLLM's"
    assert others, "the rules and the dashboard read no vLLM metric"


def test_promql_reads_the_metric_names() -> None:
    assert prometheus.metric_names(['sum(rate(a_total[5m])) / b{x="y"}', 'vllm:c{le="1"}']) == [
        ["a_total", "b"],
        ["vllm:c"],
    ]
