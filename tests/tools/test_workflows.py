"""The GitHub Actions workflows (.github/workflows/): actionlint finds nothing, and would find
a broken one.

actionlint is built from Go modules by `make tools` (toolchain/tools.py) and run with its
shellcheck and pyflakes integrations off, so the result does not depend on what else is
installed; a missing binary fails these tests, it never skips them.

Every action is pinned to a commit (tests/unit/test_workflows.py), and actionlint checks the
inputs only of an action it knows by tag (`docker/build-push-action@v6`), never of a commit. So
the workflows are linted twice: as they are, and with each `@<sha> # vX.Y.Z` read as `@vX`, the
major tag that actionlint's metadata of the action describes.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from e2e.devcluster.toolchain import tools

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"


def actionlint(*paths: Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    cmd = [str(tools.require("actionlint")), "-no-color", "-shellcheck=", "-pyflakes=", *map(str, paths)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=120, check=False)


PIN = re.compile(r"@[0-9a-f]{40} # (v\d+)(?:\.\d+)*$", re.MULTILINE)


def by_major_tag(text: str) -> str:
    """`uses: owner/repo@<sha> # v4.4.0` read as `uses: owner/repo@v4`."""
    return PIN.sub(r"@\1", text)


def as_tags(tmp_path: Path, replace: dict[str, str] | None = None) -> list[Path]:
    """The workflows, their pins read as major tags, under tmp_path/.github/workflows."""
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    out = []
    for path in sorted(WORKFLOWS.glob("*.y*ml")):
        text = by_major_tag(path.read_text())
        for old, new in (replace or {}).items():
            text = text.replace(old, new)
        (folder / path.name).write_text(text)
        out.append(folder / path.name)
    return out


def test_actionlint_finds_nothing(tmp_path: Path) -> None:
    files = sorted(WORKFLOWS.glob("*.y*ml"))
    assert [f.name for f in files] == ["ci.yaml", "release.yaml"]
    done = actionlint(*files)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""
    # Again with the inputs checked against each action's metadata.
    tagged = as_tags(tmp_path)
    assert "docker/build-push-action@v6\n" in tagged[1].read_text()
    done = actionlint(*tagged, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    """The lint has teeth: a misspelt input of build-push-action and an undefined step output."""
    release = (WORKFLOWS / "release.yaml").read_text()
    assert "provenance: mode=max" in release
    _, bad = as_tags(tmp_path, {"provenance: mode=max": "provenanse: mode=max",
                                "steps.meta.outputs.tags": "steps.metadata.outputs.tags"})  # fmt: skip
    assert bad.name == "release.yaml"
    done = actionlint(bad, cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert 'input "provenanse" is not defined in action "docker/build-push-action' in done.stdout
    assert 'property "metadata" is not defined' in done.stdout
