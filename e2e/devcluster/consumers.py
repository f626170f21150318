"""What the GitOps consumers make of an object, computed by their own code (built from Go
modules by `make tools`, see toolchain/tools.py):

- `kstatus`: sigs.k8s.io/cli-utils' status.Compute, what Flux's health checks (and kpt) read:
  InProgress, Current, Failed, Terminating, ...;
- `argocd_health`: an Argo CD health script run in gopher-lua the way Argo CD runs it:
  Healthy, Progressing, Degraded, Suspended, ... with a message.

Both take many objects at once (one process each) and return one result per object. `helm`
runs the cached helm with its own empty cache, config and data directories.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e.devcluster.toolchain import tools

REPO = Path(__file__).resolve().parents[2]
ARGOCD_DIR = REPO / "manifests" / "argocd"
HEALTH_LUA = ARGOCD_DIR / "health.lua"
ARGOCD_CM = ARGOCD_DIR / "argocd-cm.yaml"
CHART = REPO / "manifests" / "helm" / "qwen-operator"


@dataclass(frozen=True)
class Health:
    status: str
    message: str


def _run(cmd: list[str], objects: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    docs = [dict(o) for o in objects]
    stdin = "".join(json.dumps(o) + "\n" for o in docs)
    done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60, check=False)
    results = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    errors = [r["error"] for r in results if r.get("error")]
    if done.returncode != 0 or errors or len(results) != len(docs):
        raise AssertionError(
            f"{' '.join(cmd)} exited {done.returncode} on {len(docs)} object(s), "
            f"{len(results)} result(s); errors: {errors}; stderr: {done.stderr.strip()}"
        )
    return results


def kstatus(objects: Iterable[Mapping[str, Any]]) -> list[Health]:
    """status.Compute of each object (cli-utils): its status and message."""
    results = _run([str(tools.require("kstatus"))], objects)
    return [Health(r.get("status", ""), r.get("message", "")) for r in results]


def argocd_health(
    objects: Iterable[Mapping[str, Any]],
    script: Path | None = None,
    argocd_cm: Path | None = None,
    open_libs: bool = False,
) -> list[Health]:
    """Argo CD's health of each object: from `script` (default manifests/argocd/health.lua), or
    from the health script an argocd-cm ConfigMap holds for the object's group and kind."""
    cmd = [str(tools.require("luahealth"))]
    if argocd_cm is not None:
        cmd += ["-argocd-cm", str(argocd_cm)]
    else:
        cmd += ["-script", str(script or HEALTH_LUA)] + (["-open-libs"] if open_libs else [])
    return [Health(r.get("status", ""), r.get("message", "")) for r in _run(cmd, objects)]


def argocd_tests(directory: Path) -> tuple[list[dict[str, Any]], str]:
    """Every health.lua below `directory` against its health_test.yaml, as Argo CD's own test
    does: one record per test case ({dir, inputPath, expected, got|error, ok}), and the summary."""
    done = subprocess.run(
        [str(tools.require("luahealth")), "-test", str(directory)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    records = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    if done.returncode not in (0, 1):
        raise AssertionError(f"luahealth -test {directory} exited {done.returncode}: {done.stderr}")
    return records, done.stderr.strip()


@functools.cache
def _helm_home() -> Path:
    return Path(tempfile.mkdtemp(prefix="qwen-helm-"))


def helm(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The cached helm (against $KUBECONFIG where it talks to a cluster), nothing read from or
    written to the user's helm directories."""
    home = _helm_home()
    env = {**os.environ, "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
           "HELM_DATA_HOME": str(home / "data")}  # fmt: skip
    done = subprocess.run(
        [str(tools.require("helm")), *args], input=stdin, capture_output=True, text=True, env=env,
        timeout=300, check=False,
    )  # fmt: skip
    if check and done.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done
