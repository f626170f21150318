"""Build the control-plane binaries into a cache outside the checkout, or reuse them.

The cache directory is keyed by every pinned version (see versions.cache_key), so CI on the
same machine builds once. Binaries are built into a temporary directory and moved into place
one by one, so an interrupted build never leaves a half-written binary behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from e2e.devcluster.toolchain import gomod, versions
from e2e.devcluster.toolchain.gomod import TOOLCHAIN_DIR, go_env

ALL_TOOLS = {
    **{name: ("etcd", pkg) for name, pkg in versions.ETCD_TOOLS.items()},
    **{name: ("kubernetes", pkg) for name, pkg in versions.KUBERNETES_TOOLS.items()},
    **{name: ("kwok", pkg) for name, pkg in versions.KWOK_TOOLS.items()},
}


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "qwen-operator"


def bin_dir() -> Path:
    """Where the binaries of the pinned versions live (also what goes first on PATH)."""
    return cache_root() / versions.cache_key() / "bin"


def binary(name: str) -> Path:
    return bin_dir() / name


LOGS_CRD_IN_MODULE = "kustomize/crd/bases/kwok.x-k8s.io_logs.yaml"


def logs_crd() -> Path:
    """kwok's `Logs` CRD, taken from its Go module by `build` and kept beside the binaries (a
    third party's CRD is never copied into the repository)."""
    return bin_dir().parent / "kwok.x-k8s.io_logs.yaml"


def missing() -> list[str]:
    names = [n for n in ALL_TOOLS if not os.access(binary(n), os.X_OK)]
    return names if logs_crd().exists() else [*names, logs_crd().name]


def fetch_logs_crd() -> None:
    source = Path(gomod.download("sigs.k8s.io/kwok", versions.KWOK)["Dir"]) / LOGS_CRD_IN_MODULE
    tmp = logs_crd().with_name(f".{logs_crd().name}.tmp")
    tmp.write_bytes(source.read_bytes())
    tmp.replace(logs_crd())
    log(f"kwok's Logs CRD from its module: {logs_crd()}")


def _release_date() -> str:
    """The Kubernetes tag's publication time, so builds are reproducible (no wall clock)."""
    downloaded = gomod.download("k8s.io/kubernetes", versions.KUBERNETES)
    info = json.loads(Path(downloaded["Info"]).read_text())
    return str(info.get("Time", "1970-01-01T00:00:00Z"))


def ldflags(module_dir: str) -> str:
    """-s -w to keep binaries small, plus the version variables `/version` reports."""
    flags = ["-s", "-w"]
    if module_dir == "kubernetes":
        major, minor = versions.KUBERNETES.lstrip("v").split(".")[:2]
        values = {
            "gitVersion": versions.KUBERNETES,
            "gitMajor": major,
            "gitMinor": minor,
            "gitTreeState": "clean",
            "buildDate": _release_date(),
        }
        for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
            flags += [f"-X {pkg}.{key}={value}" for key, value in values.items()]
    elif module_dir == "kwok":
        flags.append(f"-X sigs.k8s.io/kwok/pkg/consts.Version={versions.KWOK.lstrip('v')}")
    return " ".join(flags)


def log(message: str) -> None:
    print(f"[toolchain] {message}", file=sys.stderr, flush=True)


def build_one(name: str, started: float) -> None:
    module_dir, package = ALL_TOOLS[name]
    target = binary(name)
    tmp = target.with_name(f".{name}.tmp")
    log(f"building {name} ({package}) ...")
    t0 = time.monotonic()
    cmd = ["go", "build", "-trimpath", f"-ldflags={ldflags(module_dir)}", "-o", str(tmp), package]
    subprocess.run(cmd, check=True, cwd=TOOLCHAIN_DIR / module_dir, env=go_env())
    tmp.replace(target)
    now = time.monotonic()
    log(f"built {name} in {now - t0:.0f}s (elapsed {now - started:.0f}s)")


def build(force: bool = False) -> Path:
    """Ensure every binary exists in the cache; returns the bin directory."""
    bin_dir().mkdir(parents=True, exist_ok=True)
    todo = list(ALL_TOOLS) if force else [n for n in missing() if n in ALL_TOOLS]
    if not logs_crd().exists() or force:
        fetch_logs_crd()
    if not todo:
        log(f"cached: {bin_dir()} ({', '.join(ALL_TOOLS)})")
        return bin_dir()
    started = time.monotonic()
    log(f"cold build of {', '.join(todo)} into {bin_dir()} (many minutes on 2 cores)")
    for name in todo:
        build_one(name, started)
    log(f"toolchain ready in {time.monotonic() - started:.0f}s: {bin_dir()}")
    return bin_dir()
