"""The alerts and the dashboard (manifests/monitoring/), statically: every alert is tested
firing and quiet and says what to do, the dashboard is well formed, and the docs' snippets are
the files users apply. Prometheus' own checks (promtool, its parser) are in
tests/tools/test_monitoring.py.
"""

from __future__ import annotations

import re
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from e2e.devcluster import metricsapi, prometheus
from qwen_operator import api
from qwen_operator.api.vocabulary import QUEUE_METRIC
from qwen_operator.children import render
from testkit.wrappers import parsed

REPO = Path(__file__).resolve().parents[2]

ISSUE_ALERTS = {
    "QwenOperatorDown", "QwenOperatorReconcileErrors", "QwenThinkingDeploymentStalled",
    "QwenThinkingDeploymentFallbackExhausted", "QwenThinkingDeploymentContextReduced",
    "QwenThinkingQueueBacklog", "QwenThinkingKVCacheFull", "QwenThinkingPreemptions",
    "QwenThinkingSlowTimeToFirstToken", "QwenThinkingReplicasNotReady", "QwenThinkingServerCrashLooping",
}  # fmt: skip


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


def test_grafana_variables_become_promql() -> None:
    assert prometheus.as_promql('rate(x{a=~"$namespace"}[$__rate_interval])') == 'rate(x{a=~".*"}[5m])'
    assert prometheus.as_promql('label_values(x{a=~"${ns}"}, name)') == 'x{a=~".*"}'


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
