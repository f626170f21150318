"""Shared helpers for the launcher tests: fixtures on disk and how to run the launcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qwen_runtime import startup

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
FAKE_SERVER = HERE / "fake_server.py"
RUNTIME_ROOT = HERE.parents[1] / "runtime"


def cases() -> dict[str, dict[str, Any]]:
    """Fixture file name -> expectation, from fixtures/cases.json."""
    data = json.loads((FIXTURES / "cases.json").read_text())
    return {name: case for name, case in data.items() if not name.startswith("_")}


def launcher_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: ours) with ``python -m qwen_runtime`` importing the checkout's package."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(RUNTIME_ROOT), env.get("PYTHONPATH")]))
    return env


def launcher_argv(termination_log: Path, *child: str, options: tuple[str, ...] = ()) -> list[str]:
    """Command line that runs the fake server under the launcher."""
    return [
        sys.executable,
        "-m",
        "qwen_runtime",
        "--termination-log",
        str(termination_log),
        *options,
        "--",
        sys.executable,
        str(FAKE_SERVER),
        *child,
    ]


def run(argv: list[str], env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run the launcher to completion (in ``env``, default ours), output captured."""
    return subprocess.run(argv, capture_output=True, env=launcher_env(env), timeout=60)


def popen(argv: list[str]) -> subprocess.Popen[bytes]:
    """Start the launcher with piped output."""
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=launcher_env())


def without_reports(output: bytes) -> bytes:
    """The launcher's output less its start reports (qwen_runtime.startup): whole lines of its own,
    which must leave every line of the child's as it was."""
    prefix = startup.PREFIX.encode()
    lines = output.splitlines(keepends=True)
    assert all(line.startswith(prefix) for line in lines if prefix in line), "a report split a line"
    return b"".join(line for line in lines if not line.startswith(prefix))
