"""The alerts and the dashboard (manifests/monitoring/), checked by Prometheus' own code.

`promtool check rules` and `promtool test rules` (alerts_test.yaml: every alert fires on its
failure and stays quiet on a healthy neighbour); every query of the rules and the dashboard is
parsed by Prometheus' parser, and each metric it reads is one the operator serves (its real
/metrics exposition, here) or one vLLM serves: tests/tools/contract/test_vllm_metrics.py reads what
vLLM 0.33 declares, tests/tools/realvllm scrapes a running vLLM. promtool and the parser come from
`make tools`; missing, these tests fail.
"""

from __future__ import annotations

import re
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.devcluster import metricsapi, prometheus
from qwen_operator import api
from qwen_operator.api.vocabulary import PROMETHEUS_RULE_CRD, QUEUE_METRIC
from qwen_operator.children import render
from qwen_operator.process import metrics
from testkit.metric_names import exposed
from testkit.wrappers import parsed

REPO = Path(__file__).resolve().parents[2]

ISSUE_ALERTS = {
    "QwenOperatorDown", "QwenOperatorReconcileErrors", "QwenThinkingDeploymentStalled",
    "QwenThinkingDeploymentFallbackExhausted", "QwenThinkingDeploymentContextReduced",
    "QwenThinkingQueueBacklog", "QwenThinkingKVCacheFull", "QwenThinkingPreemptions",
    "QwenThinkingSlowTimeToFirstToken", "QwenThinkingReplicasNotReady", "QwenThinkingServerCrashLooping",
}  # fmt: skip


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


def test_every_alert_is_tested_firing_and_quiet() -> None:
    assert set(prometheus.alerts()) == ISSUE_ALERTS
    cases = [
        c for t in yaml.safe_load(prometheus.RULE_TESTS.read_text())["tests"] for c in t["alert_rule_test"]
    ]
    fired = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert fired == ISSUE_ALERTS, ISSUE_ALERTS - fired
    assert quiet == ISSUE_ALERTS, ISSUE_ALERTS - quiet


def test_every_alert_says_what_to_do() -> None:
    for name, rule in prometheus.alerts().items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        assert rule.get("for"), f"{name} fires on one evaluation"


def test_dashboard_is_well_formed() -> None:
    board = prometheus.dashboard()
    panels = prometheus.panels(board)
    ids = Counter(p["id"] for p in panels)
    assert [i for i, n in ids.items() if n > 1] == []
    assert board["uid"] and board["title"]
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and panel.get("description"), panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
    variables = {v["name"] for v in board["templating"]["list"]}
    assert variables == {"datasource", "namespace", "name"}


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    """Replicas by stage, effective vs requested context, queue, KV usage, TTFT and ITL, tokens/s."""
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


def test_grafana_variables_become_promql() -> None:
    assert prometheus.as_promql('rate(x{a=~"$namespace"}[$__rate_interval])') == 'rate(x{a=~".*"}[5m])'
    assert prometheus.as_promql('label_values(x{a=~"${ns}"}, name)') == 'x{a=~".*"}'
    assert prometheus.metric_names(['sum(rate(a_total[5m])) / b{x="y"}', 'vllm:c{le="1"}']) == [
        ["a_total", "b"],
        ["vllm:c"],
    ]


MONITORING_PAGE = REPO / "docs" / "monitoring.md"


def docs_section(title: str) -> str:
    """The section of the monitoring page under `## title`, up to the next one."""
    text = MONITORING_PAGE.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def yaml_blocks(text: str) -> list[Any]:
    return [yaml.safe_load(textwrap.dedent(b.split("```", 1)[0])) for b in re.split(r"```yaml\n", text)[1:]]


def test_prometheus_adapter_serves_the_metric_the_hpa_asks_for() -> None:
    """The rule users install prometheus-adapter with (and e2e/test_autoscaling.py runs) keeps
    vLLM's name, the one the rendered HPA asks for, per pod and namespace."""
    (rule,) = metricsapi.adapter_rules()["rules"]
    hpa = next(
        c for c in render.render(parsed({"autoscaling": {}})) if c["kind"] == "HorizontalPodAutoscaler"
    )
    (metric,) = hpa["spec"]["metrics"]
    assert metric["pods"]["metric"]["name"] == QUEUE_METRIC
    assert rule["seriesQuery"].startswith(QUEUE_METRIC + "{")
    assert (rule["name"]["matches"], rule["name"]["as"]) == ("^(.*)$", "${1}")
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}


def test_docs_snippets_are_the_files_users_apply() -> None:
    section = docs_section("Autoscaling on the queue")
    assert "-f manifests/monitoring/prometheus-adapter-values.yaml" in section
    values = yaml.safe_load(metricsapi.ADAPTER_VALUES.read_text())
    (snippet,) = [b for b in yaml_blocks(section) if "rules" in b]
    assert snippet["rules"] == values["rules"]
    (spec,) = [b["spec"]["autoscaling"] for b in yaml_blocks(section) if "spec" in b]
    assert set(spec) == set(api.AutoscalingSpec.model_json_schema(by_alias=True)["properties"])
    monitoring = docs_section("Prometheus alerts and the Grafana dashboard")
    assert "kubectl apply -k manifests/monitoring/" in monitoring
    assert all(f"`{name}`" in monitoring for name in ISSUE_ALERTS)
