"""Metric names: those an exposition serves, and the `vllm:` ones the repository names.

Shared by the unit tests (the operator's /metrics), the contract tests (what vLLM 0.33 declares)
and the real-vLLM tests (what a running vLLM serves).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
VLLM_METRIC = re.compile(r"(?<![\w-])vllm:[A-Za-z_][A-Za-z0-9_:]*[A-Za-z0-9_]")
TEST_CODE = ("tests/", "e2e/", "testkit/")
"""Not references: the tests name metrics to check them."""
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}
"""The series a query may read besides a family's name, by the family's type."""


def exposed(text: str) -> set[str]:
    """Series names a query can use: families, samples, and the suffixes of each type."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name, *(family.name + s for s in SUFFIXES.get(family.type, ()))}
        names |= {sample.name for sample in family.samples}
    return names


def referenced_vllm_metrics(root: Path = ROOT) -> dict[str, list[str]]:
    """Every `vllm:` metric named in the repository's files (manifests, alerts, dashboards,
    autoscaling, docs), test code aside: the files git knows, committed or not."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=root, capture_output=True, check=True).stdout  # fmt: skip
    found: dict[str, list[str]] = {}
    for rel in sorted(set(listed.decode().split("\0")) - {""}):
        path = root / rel
        if rel.startswith(TEST_CODE) or not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for name in set(VLLM_METRIC.findall(text)):
            found.setdefault(name, []).append(rel)
    return found
