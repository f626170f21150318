"""The per-resource PrometheusRule's alerts: the vLLM server alerts of the shipped,
cluster-wide rule (manifests/monitoring/prometheusrule.yaml, packaged as
alerts/prometheusrule.yaml through a link), each expression narrowed to one resource's series.

Read from that one file so the two cannot drift: an alert tuned there is tuned here."""

from __future__ import annotations

import copy
import functools
import re
from importlib import resources
from typing import Any

import yaml

SERVER_GROUP = "qwen-thinking-servers"
"""The shipped rule's group of vLLM server alerts (the other group watches the operator itself)."""
_SERIES = re.compile(r"\b(?P<metric>vllm:[a-z_:]+|qwen_operator_[a-z_]+)(?:\{(?P<matchers>[^}]*)\})?")
"""A metric name in PromQL, with its matchers if any (the rule's expressions use no other form)."""


@functools.cache
def shipped_groups() -> tuple[dict[str, Any], ...]:
    """The rule groups of the shipped PrometheusRule, parsed once."""
    text = resources.files(__package__).joinpath("alerts", "prometheusrule.yaml").read_text()
    return tuple(yaml.safe_load(text)["spec"]["groups"])


def narrowed(expr: str, namespace: str, name: str) -> str:
    """`expr` reading only this resource's series: vLLM's by the `service` its ServiceMonitor
    adds (the client Service has the resource's name), the operator's by `name`."""

    def own(m: re.Match[str]) -> str:
        key = "service" if m["metric"].startswith("vllm:") else "name"
        matchers = [
            f'namespace="{namespace}"',
            f'{key}="{name}"',
            *([m["matchers"]] if m["matchers"] else []),
        ]
        return f"{m['metric']}{{{','.join(matchers)}}}"

    return _SERIES.sub(own, expr)


def server_groups(namespace: str, name: str) -> list[dict[str, Any]]:
    """The shipped server alerts, narrowed to one resource (names and thresholds unchanged)."""
    out = []
    for group in shipped_groups():
        if group["name"] != SERVER_GROUP:
            continue
        group = copy.deepcopy(group)
        for rule in group["rules"]:
            rule["expr"] = narrowed(str(rule["expr"]), namespace, name)
        out.append(group)
    return out
