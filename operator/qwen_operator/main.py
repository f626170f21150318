"""Run the operator (Kopf). Placeholder until the reconciliation lands."""

from __future__ import annotations


def run(namespaces: list[str], all_namespaces: bool) -> int:
    raise SystemExit("qwen-operator run: not implemented yet")
