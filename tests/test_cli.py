"""The qwen-operator command as users run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from qwen_operator import __version__, cli, crd

from .invalid_cases import INVALID, resource

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "qwen_operator.cli", *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60, check=False)


def test_crd_prints_the_generated_crd() -> None:
    out = _cli("crd")
    assert out.returncode == 0, out.stderr
    assert out.stdout == crd.crd_yaml()


def test_version() -> None:
    out = _cli("version")
    assert out.returncode == 0
    assert __version__ in out.stdout


def test_render_sample_and_effective_context() -> None:
    sample = str(ROOT / "samples" / "qwen3-235b-thinking.yaml")
    full = _cli("render", "-f", sample)
    assert full.returncode == 0, full.stderr
    docs = list(yaml.safe_load_all(full.stdout))
    assert [d["kind"] for d in docs] == ["Service", "Service", "StatefulSet", "PodDisruptionBudget"]
    reduced = _cli("render", "-f", sample, "--max-model-len", "131072")
    assert reduced.returncode == 0, reduced.stderr
    diff = [
        (a, b) for a, b in zip(full.stdout.splitlines(), reduced.stdout.splitlines(), strict=True) if a != b
    ]
    assert diff == [("        - '262144'", "        - '131072'")]


def test_render_rejects_a_context_above_the_request() -> None:
    out = _cli(
        "render", "-f", str(ROOT / "samples" / "qwen3-235b-thinking.yaml"), "--max-model-len", "300000"
    )
    assert out.returncode == 2
    assert "--max-model-len" in out.stderr


@pytest.mark.parametrize(("case", "patch", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_render_invalid_exits_2_naming_the_field(case: str, patch: dict[str, Any], field: str) -> None:
    out = _cli("render", "-f", "-", stdin=yaml.safe_dump(resource(patch)))
    assert out.returncode == 2, out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"error: {field}: "), lines[0]
    assert out.stdout == ""


def test_render_missing_file() -> None:
    out = _cli("render", "-f", "/nonexistent.yaml")
    assert out.returncode == 2
    assert "/nonexistent.yaml" in out.stderr


def test_render_not_a_mapping() -> None:
    out = _cli("render", "-f", "-", stdin="- just\n- a list\n")
    assert out.returncode == 2
    assert "QwenThinkingDeployment" in out.stderr


def test_run_watches_the_named_namespaces_or_all(monkeypatch: pytest.MonkeyPatch) -> None:
    import kopf

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(kopf, "run", lambda **kw: calls.append(kw))
    for argv in (["run", "-n", "a", "--namespace", "b"], ["run"], ["run", "--all-namespaces"]):
        assert cli.main(argv) == 0
    assert [(c["clusterwide"], c["namespaces"]) for c in calls] == [
        (False, ["a", "b"]),
        (True, []),
        (True, []),
    ]
    assert all(c["standalone"] for c in calls)  # no peering objects to create or RBAC for them
