"""What Prometheus' own code makes of the alerting rules and the dashboard's queries.

- `promtool`: `promtool check rules` and `promtool test rules`, on the rule groups of the
  shipped PrometheusRule (manifests/monitoring/prometheusrule.yaml) written as a rule file;
- `metric_names`: the metric names each PromQL expression reads, from Prometheus' parser (the
  `promql` tool, toolchain/promql/main.go);
- `dashboard_queries`: the PromQL of every panel and template variable of the Grafana
  dashboard, with Grafana's variables put in as a query would see them.

Both tools are built from Go modules by `make tools` (toolchain/tools.py).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from e2e.devcluster.toolchain import tools

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "manifests" / "monitoring"
RULES = MONITORING / "prometheusrule.yaml"
RULE_TESTS = MONITORING / "alerts_test.yaml"
DASHBOARD = MONITORING / "qwen-operator-dashboard.json"
RULE_FILE = "rules.yaml"
"""The name alerts_test.yaml's `rule_files` gives the rules."""
GRAFANA_VARIABLES = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
"""Grafana's built-in variables, as a query of a 6-hour dashboard sees them; any other
variable is a label value (`=~"$namespace"`) and reads as `.*`."""
LABEL_VALUES = re.compile(r"^\s*label_values\((?P<selector>.*),\s*\w+\s*\)\s*$", re.DOTALL)


def rule_groups(path: Path = RULES) -> list[dict[str, Any]]:
    """The rule groups of a PrometheusRule: what a Prometheus rule file holds."""
    groups: list[dict[str, Any]] = yaml.safe_load(path.read_text())["spec"]["groups"]
    return groups


def alerts(path: Path = RULES) -> dict[str, dict[str, Any]]:
    """Every alerting rule by its name."""
    return {r["alert"]: r for g in rule_groups(path) for r in g["rules"] if "alert" in r}


def promtool(
    workdir: Path, *args: str, groups: list[dict[str, Any]] | None = None
) -> subprocess.CompletedProcess[str]:
    """`promtool ARGS` in `workdir`, after writing the rules there (`groups`, or the shipped
    rule's) as rules.yaml beside alerts_test.yaml, copied unless the workdir has its own (so
    `promtool test rules alerts_test.yaml` finds them)."""
    rules = rule_groups() if groups is None else groups
    (workdir / RULE_FILE).write_text(yaml.safe_dump({"groups": rules}, sort_keys=False))
    if not (workdir / RULE_TESTS.name).exists():
        shutil.copyfile(RULE_TESTS, workdir / RULE_TESTS.name)
    return subprocess.run(
        [str(tools.require("promtool")), *args], cwd=workdir, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip


def metric_names(expressions: list[str]) -> list[list[str]]:
    """The metric names each expression reads, by Prometheus' parser; a parse error fails."""
    stdin = "".join(json.dumps(e) + "\n" for e in expressions)
    done = subprocess.run(
        [str(tools.require("promql"))], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )
    results = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    errors = [(e, r["error"]) for e, r in zip(expressions, results, strict=False) if r.get("error")]
    if done.returncode != 0 or errors or len(results) != len(expressions):
        raise AssertionError(f"promql exited {done.returncode}: {errors or done.stderr.strip()}")
    return [list(r["metrics"]) for r in results]


def as_promql(query: str) -> str:
    """A Grafana query as Prometheus receives it: variables put in, label_values() unwrapped."""
    found = LABEL_VALUES.match(query)
    if found:
        query = found.group("selector")

    def value(match: re.Match[str]) -> str:
        return GRAFANA_VARIABLES.get(match.group(1) or match.group(2), ".*")

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, query)


def dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    out = []
    for panel in board.get("panels", []):
        out.append(panel)
        out += panel.get("panels", [])
    return out


def dashboard_queries(board: dict[str, Any]) -> list[str]:
    """The PromQL of every panel target and query variable, as Prometheus receives it."""
    queries = [t["expr"] for p in panels(board) for t in p.get("targets", [])]
    for var in board.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var["query"]
            queries.append(query["query"] if isinstance(query, dict) else query)
    return [as_promql(q) for q in queries]
