"""The launcher refuses to run sources other than those the pod's digest names (qwen_runtime.integrity).

The sources are laid out as the kubelet lays out a ConfigMap volume (links through `..data`),
and the launcher runs from there with an interpreter outside this project's virtualenv.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.devcluster.realvllm.kubelet import write_atomically
from qwen_operator.children import launcher
from qwen_runtime import __main__ as entry
from qwen_runtime import integrity
from qwen_runtime.record import Reason, parse

BASE_PYTHON = Path(sys.base_prefix) / "bin" / "python3"
"""Like the vLLM image's python: it knows no qwen_runtime but the mounted one."""


def mounted(root: Path, sources: dict[str, str] | None = None) -> Path:
    """The launcher's ConfigMap as the pod sees it: PYTHONPATH `root`, package `root/qwen_runtime`."""
    package = root / "qwen_runtime"
    package.mkdir(parents=True)
    write_atomically(package, launcher.sources() if sources is None else sources, 0o444)
    return package


def tampered(edit: str = "argv.py") -> dict[str, str]:
    sources = dict(launcher.sources())
    sources[edit] += "\nimport os  # someone else's code\n"
    return sources


def launch(root: Path, *args: str, digest: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}
    if digest is not None:
        env[integrity.DIGEST_VAR] = digest
    return subprocess.run(
        [str(BASE_PYTHON), "-m", "qwen_runtime", *args], env=env, cwd=root, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip


# -- the digest ------------------------------------------------------------------------------------


def test_the_digest_covers_names_and_contents_not_order() -> None:
    files = {"a.py": b"x", "b.py": b"y"}
    assert integrity.digest(files) == integrity.digest(dict(reversed(files.items())))
    assert integrity.digest(files) != integrity.digest({"a.py": b"x", "c.py": b"y"})
    assert integrity.digest(files) != integrity.digest({"a.py": b"x", "b.py": b"y "})
    assert integrity.digest(files) != integrity.digest({"a.py": b"xb.py\0y"})  # the separators count


def test_the_mounted_files_are_read_through_the_kubelets_links(tmp_path: Path) -> None:
    package = mounted(tmp_path)
    assert (package / "..data").is_symlink() and (package / "argv.py").is_symlink()
    (package / "__pycache__").mkdir(mode=0o755)  # a directory never counts
    files = integrity.files_in(package)
    assert set(files) == set(launcher.sources())
    assert integrity.digest(files) == launcher.digest()
    assert integrity.mismatch(package, launcher.digest()) is None
    assert integrity.mismatch(package, launcher.digest().upper()) is None


@pytest.mark.parametrize(
    ("sources", "what"),
    [
        (tampered(), "an edited module"),
        ({**launcher.sources(), "watch.cpython-312-x86_64-linux-gnu.so": "ELF"}, "an added file"),
        ({k: v for k, v in launcher.sources().items() if k != "ready.py"}, "a removed module"),
    ],
    ids=["edited", "added", "removed"],
)
def test_any_change_is_a_mismatch_that_names_the_files(
    tmp_path: Path, sources: dict[str, str], what: str
) -> None:
    package = mounted(tmp_path, sources)
    found = integrity.mismatch(package, launcher.digest())
    assert found is not None, what
    assert (found.expected, found.actual) == (
        launcher.digest(),
        integrity.digest(integrity.files_in(package)),
    )
    assert [f.split("=")[0] for f in found.files] == sorted(sources)
    text = found.message()
    assert launcher.digest() in text and found.actual in text and str(package) in text
    assert all(f in text for f in found.files)


def test_an_unreadable_directory_is_a_mismatch(tmp_path: Path) -> None:
    found = integrity.mismatch(tmp_path / "missing", launcher.digest())
    assert found is not None and found.actual == "" and found.error


# -- the launcher refuses ----------------------------------------------------------------------------


def test_untampered_sources_run_the_command(tmp_path: Path) -> None:
    mounted(tmp_path)
    marker = tmp_path / "started"
    log = tmp_path / "termination-log"
    argv = ["--termination-log", str(log), "--", str(BASE_PYTHON), "-c", f"open({str(marker)!r}, 'w')"]
    done = launch(tmp_path, *argv, digest=launcher.digest())
    assert done.returncode == 0, done.stderr
    assert marker.exists() and not log.exists()


def test_tampered_sources_exit_non_zero_before_the_command_with_the_mismatch(tmp_path: Path) -> None:
    mounted(tmp_path, tampered())
    marker = tmp_path / "started"
    log = tmp_path / "termination-log"
    argv = ["--termination-log", str(log), "--", str(BASE_PYTHON), "-c", f"open({str(marker)!r}, 'w')"]
    done = launch(tmp_path, *argv, digest=launcher.digest())
    assert done.returncode == integrity.EXIT_MISMATCH, done.stderr
    assert not marker.exists()  # never started
    record = parse(log.read_text())
    assert record is not None and record["reason"] == Reason.LAUNCHER_MISMATCH
    assert record["exitCode"] == integrity.EXIT_MISMATCH
    assert record["expectedDigest"] == launcher.digest() and record["actualDigest"] != launcher.digest()
    assert "argv.py=" in record["message"] and record["actualDigest"] in record["message"]
    assert len(log.read_bytes()) <= 4096
    assert "termination message" in done.stderr  # also in `kubectl logs --previous`


def test_without_a_digest_nothing_is_checked(tmp_path: Path) -> None:
    """The baked image run by hand (`docker run IMAGE -- ...`): the pod spec is what names one."""
    mounted(tmp_path, tampered())
    assert launch(tmp_path, "--", str(BASE_PYTHON), "-c", "pass").returncode == 0


def test_the_readiness_probe_refuses_too_and_only_says_why(tmp_path: Path) -> None:
    mounted(tmp_path, tampered())
    done = launch(tmp_path, "ready", "--model", "m", "--port", "9", digest=launcher.digest())
    assert done.returncode == integrity.EXIT_MISMATCH
    assert "refusing to run" in done.stderr and launcher.digest() in done.stderr
    assert not (tmp_path / "termination-log").exists()


def test_a_workers_prestop_hook_refuses_too_and_only_says_why(tmp_path: Path) -> None:
    """`wait-leader` runs in the worker's container as the kubelet's exec hook: it checks the
    sources first; the kubelet's FailedPreStopHook event shows the refusal, and the worker stops."""
    mounted(tmp_path, tampered("leader.py"))
    done = launch(tmp_path, "wait-leader", "--seconds", "30", digest=launcher.digest())
    assert done.returncode == integrity.EXIT_MISMATCH
    assert "refusing to run" in done.stderr and "leader.py=" in done.stderr
    assert not (tmp_path / "termination-log").exists()


def test_the_download_refuses_with_its_termination_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`fetch` (the init container and the download Job, both holding HF_TOKEN) checks before it
    reads a variable; in-process, with the termination log moved under tmp_path."""
    package = mounted(tmp_path, tampered("fetch.py"))
    log = tmp_path / "termination-log"
    monkeypatch.setattr(integrity, "PACKAGE_DIR", package)
    monkeypatch.setattr(entry, "DEFAULT_TERMINATION_LOG", str(log))
    monkeypatch.setenv(integrity.DIGEST_VAR, launcher.digest())
    assert entry.main(["fetch"]) == integrity.EXIT_MISMATCH
    record = json.loads(log.read_text())
    assert record["reason"] == "LauncherMismatch" and "fetch.py=" in record["message"]
