"""A replica's server restarted as new pods on the replica's claims, on the CPU vLLM: what its
compile cache saves, read from vLLM's own log and from the files on the claim.

Why: a pod replaced by a cure, a rollout or a node failure keeps nothing of its own (its
emptyDirs go with it); what it keeps is the replica's claims. Each `Replica.start` is such a
pod: a fresh work dir (HOME, /dev/shm's stand-in, the launcher's ConfigMap laid out anew) with
the replica's claims linked in from directories that stay (`server.adapt(claims=...)`), run
until the startup probe passes, then stopped with SIGTERM as the kubelet stops it.

What the CPU build (vLLM 0.32.0+cpu) prints and writes, as read here:

* it compiles the model in AOT mode: one directory per configuration,
  `VLLM_CACHE_ROOT/torch_compile_cache/torch_aot_compile/<hash of the config>/`, with the
  AOT artifact `rank_0_0/model` ("saved AOT compiled function to PATH") and inductor's C++
  kernels beside it in `inductor_cache/` (vLLM points TORCHINDUCTOR_CACHE_DIR there);
* a start that finds the artifact of its configuration loads it ("Directly load AOT
  compilation from path PATH"); the CPU build fails to ("Compiling model again due to a load
  failure from PATH, reason: 'function' object has no attribute 'finalize_loading'"), and
  compiles again, finding every kernel already built in `inductor_cache/` (inductor skips the
  C++ compiler for a source it has built: nothing there is written again). vLLM logs no line
  for a kernel found; the files say it.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e.devcluster.realvllm import kubelet
from e2e.devcluster.realvllm.server import RealServer, adapt

AOT_SAVED = re.compile(r"saved AOT compiled function to (\S+)")
AOT_LOADED = re.compile(r"Directly load AOT compilation from path (\S+)")
AOT_FAILED = re.compile(
    r"Compiling model again due to a load failure from (\S+), reason: (.*)$", re.MULTILINE
)
ENGINE_INIT = re.compile(r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) s")
LAUNCHER_LINE = re.compile(r"^\[qwen-runtime\] compile cache .*$", re.MULTILINE)
CPU_AOT_FAILURE = "'function' object has no attribute 'finalize_loading'"
"""Why the CPU build cannot load its own AOT artifact (issue 25); a GPU build loads it."""
KERNEL_SUFFIXES = (".so", ".cpp", ".py")
"""Inductor's compiled kernels and their sources (the CPU build's; a GPU's are Triton's)."""


@dataclass(frozen=True)
class CompileLog:
    """What vLLM's log says about its compile cache in one start."""

    saved: tuple[str, ...]
    loaded: tuple[str, ...]
    load_failures: tuple[tuple[str, str], ...]
    """(artifact path, vLLM's reason) for each artifact found and not loaded."""
    engine_init_s: float | None
    """vLLM's own "init engine (profile, create kv cache, warmup model)" time: the compile is in it."""
    launcher: str
    """The launcher's line about the cache (where, how large, what it pruned)."""

    @classmethod
    def read(cls, log: str) -> CompileLog:
        init = ENGINE_INIT.search(log)
        launcher = LAUNCHER_LINE.search(log)
        return cls(
            saved=tuple(AOT_SAVED.findall(log)),
            loaded=tuple(AOT_LOADED.findall(log)),
            load_failures=tuple((path, reason.strip()) for path, reason in AOT_FAILED.findall(log)),
            engine_init_s=float(init.group(1)) if init else None,
            launcher=launcher.group(0) if launcher else "",
        )

    @property
    def found(self) -> tuple[str, ...]:
        """The artifacts of an earlier start that this one found, loaded or not."""
        return (*self.loaded, *(path for path, _ in self.load_failures))

    def aot(self) -> str:
        """What became of vLLM's AOT artifact, in words."""
        if self.loaded:
            return "AOT artifact loaded"
        if not self.load_failures:
            return "no AOT artifact found"
        reasons = {reason for _, reason in self.load_failures}
        return "AOT artifact found, not loaded (CPU build)" if reasons == {CPU_AOT_FAILURE} else str(reasons)


def kernels(root: Path) -> dict[str, int]:
    """Inductor's kernels under `root` (relative path -> modification time in ns)."""
    return {
        path.relative_to(root).as_posix(): path.stat().st_mtime_ns
        for path in sorted(root.rglob("*"))
        if path.is_file()
        and path.name.endswith(KERNEL_SUFFIXES)
        and "inductor" in path.relative_to(root).as_posix()
    }


@dataclass(frozen=True)
class Start:
    """One pod's start: how long until its startup probe passed, and what it logged and left."""

    pod: int
    healthy_s: float
    log: str
    compile: CompileLog
    exit_code: int
    rootfs: Path
    swaps: tuple[str, ...]
    kernels_before: Mapping[str, int]
    """Inductor's kernels on the claims when the pod started (path: mtime), and when it stopped."""
    kernels_after: Mapping[str, int]

    @property
    def kernels_reused(self) -> int:
        """Kernels an earlier pod built that this one left as they were (found, not rebuilt)."""
        return sum(1 for path, stamp in self.kernels_before.items() if self.kernels_after.get(path) == stamp)

    @property
    def kernels_built(self) -> int:
        """Kernels this pod wrote: new ones, or old ones written again."""
        return sum(1 for path, stamp in self.kernels_after.items() if self.kernels_before.get(path) != stamp)

    def hits(self) -> str:
        """Which caches hit, in words, for the bench's table and the test's figures."""
        return (
            f"{self.compile.aot()}; inductor kernels {self.kernels_reused} reused, {self.kernels_built} built"
        )

    def in_container(self, path: str) -> str:
        """A path this pod's process logged, as the container sees it (its mounts at `/`)."""
        return "/" + Path(path).relative_to(self.rootfs).as_posix()


class Replica:
    """A replica's pods, one after another, on claims that outlive each of them."""

    def __init__(
        self,
        pod_spec: Mapping[str, Any],
        claim_templates: Sequence[str],
        configmap: kubelet.ConfigMapLookup,
        secret: kubelet.SecretLookup,
        base: Path,
        *,
        venv_bin: Path,
        checkpoint: Path,
        kv_cache_gib: int,
    ) -> None:
        self.pod_spec = pod_spec
        self.claims = {name: base / "claims" / name for name in claim_templates}
        self.configmap, self.secret = configmap, secret
        self.base, self.venv_bin, self.checkpoint, self.kv_cache_gib = (
            base,
            venv_bin,
            checkpoint,
            kv_cache_gib,
        )
        self.pods = 0
        self.server: RealServer | None = None

    def claim(self, volume: str) -> Path:
        return self.claims[volume]

    def start(self) -> Start:
        """A new pod: the last one's work dir (its emptyDirs) removed, the claims kept; run until
        healthy (the startup probe), then stopped with SIGTERM."""
        if self.pods:
            shutil.rmtree(self.base / f"pod-{self.pods}")
        self.pods += 1
        workdir = self.base / f"pod-{self.pods}"
        launch = adapt(self.pod_spec, venv_bin=self.venv_bin, checkpoint=self.checkpoint, workdir=workdir,
                       secret=self.secret, configmap=self.configmap, kv_cache_gib=self.kv_cache_gib,
                       claims=self.claims)  # fmt: skip
        before = self.kernels()
        server = self.server = RealServer(launch).start()
        try:
            healthy = server.wait_started(kubelet.Probe.of(launch.container, "startupProbe"))
            code = server.stop()
        finally:
            server.kill()
        log = server.log()
        return Start(self.pods, healthy, log, CompileLog.read(log), code, workdir / "rootfs",
                     tuple(str(s) for s in launch.swaps), before, self.kernels())  # fmt: skip

    def kernels(self) -> dict[str, int]:
        """Inductor's kernels on every claim of the replica (claim/path: mtime)."""
        return {
            f"{name}/{path}": stamp
            for name, root in self.claims.items()
            for path, stamp in kernels(root).items()
        }

    def stop(self) -> None:
        """Leave no process behind (a start that failed half-way)."""
        if self.server is not None:
            self.server.kill()
