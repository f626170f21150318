"""The GitHub Actions workflows (.github/workflows/): actionlint finds nothing, and would find
a broken one.

actionlint is built from Go modules by `make tools` (toolchain/tools.py) and run with its
shellcheck and pyflakes integrations off, so the result does not depend on what else is
installed; a missing binary fails these tests, it never skips them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from e2e.devcluster.toolchain import tools

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"


def actionlint(*paths: Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    cmd = [str(tools.require("actionlint")), "-no-color", "-shellcheck=", "-pyflakes=", *map(str, paths)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=120, check=False)


def test_actionlint_finds_nothing() -> None:
    files = sorted(WORKFLOWS.glob("*.y*ml"))
    assert [f.name for f in files] == ["ci.yaml", "release.yaml"]
    done = actionlint(*files)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    """The lint has teeth: a misspelt input of build-push-action and an undefined step output."""
    bad = tmp_path / ".github" / "workflows" / "bad.yaml"
    bad.parent.mkdir(parents=True)
    release = (WORKFLOWS / "release.yaml").read_text()
    assert "provenance: mode=max" in release
    bad.write_text(release.replace("provenance: mode=max", "provenanse: mode=max").replace(
        "steps.meta.outputs.tags", "steps.metadata.outputs.tags"))  # fmt: skip
    done = actionlint(bad, cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert 'input "provenanse" is not defined in action "docker/build-push-action' in done.stdout
    assert 'property "metadata" is not defined' in done.stdout
