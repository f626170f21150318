"""List the Prometheus metrics vLLM declares, from its installed source (run by the vLLM venv's python).

This file is executed by the cached vLLM virtualenv (see vllm_env.py), never imported by the
project's tests. It imports nothing of vLLM: it finds the installed package and reads every
metric constructor call in it with `ast`, `Gauge(name="vllm:...")`, `self._counter_cls(name=...)`
and the like (vllm/v1/metrics/loggers.py and the connectors' own). The names a query can read
follow from the type: a counter adds `_total`, a histogram `_bucket`, `_sum` and `_count`.

stdin:  {} (nothing is asked)
stdout: {"vllmVersion": ..., "package": path, "declared": {name: type}, "series": [names a query can read]}
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import json
import sys
from pathlib import Path

TYPES = {"gauge": "gauge", "counter": "counter", "histogram": "histogram", "summary": "summary"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


def kind_of(func: ast.expr) -> str | None:
    """The metric type a constructor call builds: Gauge(...), prometheus_client.Counter(...),
    self._histogram_cls(...)."""
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    lowered = name.lower()
    return next((t for key, t in TYPES.items() if key in lowered), None)


def declared_in(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.Call):
            continue
        kind = kind_of(node.func)
        for kw in node.keywords:
            value = kw.value.value if isinstance(kw.value, ast.Constant) else None
            if kind and kw.arg == "name" and isinstance(value, str) and value.startswith("vllm:"):
                out[value] = kind
    return out


def main() -> int:
    json.load(sys.stdin)
    spec = importlib.util.find_spec("vllm")  # locates the package without importing it
    assert spec is not None and spec.submodule_search_locations, "vllm is not installed"
    package = Path(next(iter(spec.submodule_search_locations)))
    declared: dict[str, str] = {}
    for path in sorted(package.rglob("*.py")):
        if "vllm:" in path.read_text(errors="replace"):
            declared |= declared_in(path)
    series = sorted({n + s for n, t in declared.items() for s in ("", *SUFFIXES.get(t, ()))})
    version = importlib.metadata.version("vllm")
    answer = {"vllmVersion": version, "package": str(package), "declared": declared, "series": series}
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
