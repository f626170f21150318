"""The real figures of a run (time to healthy, contexts, vLLM's numbers), printed at its end:
the docs quote them, and a slower CI shows in them before it times out."""

from __future__ import annotations

from typing import Any


class Figures:
    def __init__(self) -> None:
        self.rows: list[tuple[str, dict[str, Any]]] = []

    def add(self, name: str, **values: Any) -> None:
        self.rows.append((name, values))

    def lines(self) -> list[str]:
        out = []
        for name, values in self.rows:
            swaps = values.get("swaps", [])
            out.append(f"{name}: " + ", ".join(f"{k}={v}" for k, v in values.items() if k != "swaps"))
            out += [f"    swap {swap}" for swap in swaps]
        return out


FIGURES = Figures()
"""One per test process: the tests add to it, tests/tools/realvllm/conftest.py prints it."""
