"""Install (once per machine) the pinned vLLM into a virtualenv outside the checkout.

vLLM pulls torch and the CUDA wheels (about 9 GB), far too big for the project's
own .venv or for a reinstall on every `make test`. The install lives under the
user cache and is marked complete by a stamp file written only after an import
check, so an interrupted install is finished (or redone) on the next run.

    python -m tests.tools.contract.vllm_env ensure   # install or reuse, print the python
    python -m tests.tools.contract.vllm_env path     # print the venv's python
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

VLLM_VERSION = "0.33.0"
VENV_ENV = "QWEN_OPERATOR_VLLM_VENV"
STAMP_NAME = ".qwen-operator-ok"

# What the check imports: the modules vllm_check.py needs, on a machine without a GPU.
_IMPORT_CHECK = (
    "import json, vllm, vllm.entrypoints.cli.serve, vllm.reasoning, vllm.tool_parsers;"
    "print(json.dumps({'version': vllm.__version__}))"
)


def venv_dir() -> Path:
    """The cached venv: $QWEN_OPERATOR_VLLM_VENV, else the XDG cache dir."""
    override = os.environ.get(VENV_ENV)
    if override:
        return Path(override)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "qwen-operator" / f"vllm-{VLLM_VERSION}"


def venv_python(venv: Path | None = None) -> Path:
    return (venv or venv_dir()) / "bin" / "python"


def stamp_path(venv: Path | None = None) -> Path:
    return (venv or venv_dir()) / STAMP_NAME


def is_ready(venv: Path | None = None) -> bool:
    """True when a previous install finished and passed the import check."""
    venv = venv or venv_dir()
    return venv_python(venv).exists() and stamp_path(venv).is_file()


def check_env() -> dict[str, str]:
    """Environment for running vLLM on a machine without a GPU or network."""
    env = dict(os.environ)
    env.update(
        VLLM_TARGET_DEVICE="cpu",
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
    )
    # Offline mode would make EngineArgs look the model up in the local HF cache.
    for name in ("PYTHONPATH", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env.pop(name, None)
    return env


def run_in_venv(script: Path, payload: dict[str, Any]) -> dict[str, Any]:
    """Run a checker script with vLLM's Python, `payload` as JSON on stdin; its JSON answer.

    For the contract tests: fails (never skips) when the venv is missing.
    """
    import pytest  # only the tests call this; the module is also `make vllm-env`'s script

    if not is_ready():
        pytest.fail(
            f"vLLM {VLLM_VERSION} virtualenv missing or incomplete at "
            f"{venv_dir()}: run `make vllm-env` (installs it once per machine)",
            pytrace=False,
        )
    proc = subprocess.run(
        [str(venv_python()), str(script)], input=json.dumps(payload), env=check_env(),
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"{script.name} exit {proc.returncode}:\n{proc.stderr[-5000:]}"
    answer: dict[str, Any] = json.loads(proc.stdout)
    return answer


def _log(msg: str) -> None:
    print(f"[vllm-env] {msg}", flush=True)


@contextmanager
def _lock(venv: Path) -> Iterator[None]:
    """Serialise concurrent `ensure` runs (two `make test` at once share the cache)."""
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(cmd: list[str]) -> None:
    _log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True)


def _base_python() -> str:
    """A real interpreter to build the venv from (not the project venv's shim)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def _install(venv: Path) -> None:
    if not venv_python(venv).exists():
        _log(f"creating virtualenv {venv}")
        _run([_base_python(), "-m", "venv", str(venv)])
        _run([str(venv_python(venv)), "-m", "pip", "install", "-q", "--upgrade", "pip"])
    _log(f"installing vllm=={VLLM_VERSION} (with torch, about 9 GB; once per machine)")
    _run(
        [
            str(venv_python(venv)),
            "-m",
            "pip",
            "install",
            "--progress-bar",
            "off",
            "--disable-pip-version-check",
            f"vllm=={VLLM_VERSION}",
        ]
    )


def _import_check(venv: Path) -> dict[str, str] | None:
    """Import what the checker needs; None (and the reason printed) when it fails."""
    proc = subprocess.run(
        [str(venv_python(venv)), "-c", _IMPORT_CHECK],
        env=check_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        _log("import check failed:\n" + proc.stderr[-3000:])
        return None
    info: dict[str, str] = json.loads(proc.stdout.strip().splitlines()[-1])
    if info.get("version") != VLLM_VERSION:
        _log(f"import check: vllm {info.get('version')} != {VLLM_VERSION}")
        return None
    return info


def _du(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            p = Path(root) / name
            if not p.is_symlink():
                total += p.stat().st_size
    return total


def ensure() -> Path:
    """Install vLLM unless a stamped install exists; return the venv's python."""
    venv = venv_dir()
    with _lock(venv):
        if is_ready(venv):
            _log(f"reusing {venv} (vllm {VLLM_VERSION})")
            return venv_python(venv)
        start = time.monotonic()
        stamp_path(venv).unlink(missing_ok=True)
        _install(venv)
        info = _import_check(venv)
        if info is None:
            _log("the install looks broken; removing it and installing from scratch")
            shutil.rmtree(venv)
            _install(venv)
            info = _import_check(venv)
            if info is None:
                raise SystemExit(f"[vllm-env] vllm {VLLM_VERSION} does not import in {venv}")
        elapsed = time.monotonic() - start
        size_gib = _du(venv) / 2**30
        info.update(installSeconds=f"{elapsed:.0f}", sizeGiB=f"{size_gib:.1f}")
        stamp_path(venv).write_text(json.dumps(info) + "\n")
        _log(f"ready: {venv} in {elapsed:.0f} s, {size_gib:.1f} GiB")
        return venv_python(venv)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.tools.contract.vllm_env")
    parser.add_argument("command", choices=["ensure", "path"])
    args = parser.parse_args(argv)
    if args.command == "ensure":
        print(ensure())
    else:
        print(venv_python())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
