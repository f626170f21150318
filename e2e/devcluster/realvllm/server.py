"""Run a rendered server container as a real process: the launcher and the CPU vLLM.

Why: the operator's argv, environment, volumes and probes are only proven when a real vLLM
starts from them. `adapt` takes the pod spec exactly as the operator renders it (or as a pod
carries it) and changes only what cannot be the same on this machine; every change is a
`Swap`, with its reason, so a test can list them and a reader can judge what was not proven:

* the model (a Hugging Face id or a directory on a volume) becomes the tiny checkpoint;
* `--host 0.0.0.0` becomes 127.0.0.1 and the container port a free loopback port (the probes,
  HTTP or exec `--port`, follow it);
* `--tensor-parallel-size N` becomes 1 (two cores: N CPU workers would only compete);
* the container's volumes are directories under the work dir (a ConfigMap's keys as files; a
  claim the caller keeps, a link to its directory, which outlives the work dir as the claim
  outlives the pod), and every path in the argv or the environment that leads into one follows
  them;
* the launcher writes its record to a file in the work dir, not /dev/termination-log;
* the environment gains what the image and the node would give: the venv first on PATH (the
  image's `python3` and `vllm`), the checkout's launcher when no volume brings one, and the
  CPU backend's KV cache budget (`VLLM_CPU_KVCACHE_SPACE`, the CPU's counterpart of
  `--gpu-memory-utilization`) unless the pod sets it.

`$(VAR)` references and Secret values are resolved the kubelet's way (`kubelet.py`), not swapped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e.devcluster.realvllm import kubelet

REPO = Path(__file__).resolve().parents[3]
RUNTIME = REPO / "runtime"
LOOPBACK = "127.0.0.1"
KV_SPACE_VAR = "VLLM_CPU_KVCACHE_SPACE"
CONTAINER = "server"


@dataclass(frozen=True)
class Swap:
    """One difference between the rendered container and the process run here."""

    what: str
    rendered: str
    used: str
    why: str

    def __str__(self) -> str:
        return f"{self.what}: {self.rendered or '(unset)'} -> {self.used} ({self.why})"


@dataclass
class Launch:
    """The process to run for a container: argv, environment, and where it listens."""

    container: dict[str, Any]
    argv: list[str]
    env: dict[str, str]
    port: int
    """The loopback port the server listens on (the container's port maps to it)."""
    container_port: int
    workdir: Path
    mounts: dict[str, Path]
    stop: kubelet.Stop
    """The pod's preStop hook and grace period, as rendered."""
    swaps: list[Swap] = field(default_factory=list)

    @property
    def termination_log(self) -> Path:
        return self.workdir / "termination-log"

    def local(self, argv: list[str]) -> list[str]:
        """A command run in the container (an exec probe) as run here: paths and port moved."""
        out = [kubelet.under(a, self.mounts, self.workdir / "rootfs") for a in argv]
        for i, arg in enumerate(out[:-1]):
            if arg == "--port" and out[i + 1] == str(self.container_port):
                out[i + 1] = str(self.port)
        return out

    def probe(self, probe: kubelet.Probe) -> bool:
        """Run one probe against the process, as the kubelet would against the container."""
        if probe.exec_command is not None:
            return kubelet.exec_ok(self.local(probe.exec_command), self.env, self.workdir, probe.timeout)
        assert probe.path is not None and probe.port is not None
        port = kubelet.container_port(self.container, probe.port)
        return kubelet.http_ok(LOOPBACK, self.port if port == self.container_port else port, probe.path,
                               probe.timeout)  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def server_container(pod_spec: Mapping[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in pod_spec["containers"] if c["name"] == CONTAINER)
    return found


def _flag(argv: list[str], flag: str) -> int | None:
    """Index of the value of `flag` (`--flag value`), or None."""
    return argv.index(flag) + 1 if flag in argv[:-1] else None


def _volume_kind(pod_spec: Mapping[str, Any], name: str) -> str:
    volume = next((v for v in pod_spec.get("volumes") or [] if v["name"] == name), None)
    if volume is None:
        return f"claim template {name}"
    kind = next(k for k in volume if k != "name")
    return f"{kind} {(volume[kind] or {}).get('name') or (volume[kind] or {}).get('claimName') or name}"


def adapt(
    pod_spec: Mapping[str, Any],
    *,
    venv_bin: Path,
    checkpoint: Path,
    workdir: Path,
    secret: kubelet.SecretLookup,
    configmap: kubelet.ConfigMapLookup,
    kv_cache_gib: int | None = None,
    claims: Mapping[str, Path] | None = None,
    pod_name: str = "server-0",
) -> Launch:
    """The launch of the pod's server container here, every difference recorded as a Swap.

    `claims`: volume name -> the directory that is that claim (a volume claim template's, or a
    persistentVolumeClaim's), kept by the caller across pods; other claims start empty.
    `pod_name`: the pod's (the downward API's metadata.name)."""
    container = server_container(pod_spec)
    pod_env = kubelet.container_env(container, secret, {"metadata.name": pod_name})
    argv = kubelet.command(container, pod_env)
    rootfs = workdir / "rootfs"
    mounts = kubelet.lay_out_volumes(pod_spec, container, rootfs, configmap, claims)
    swaps: list[Swap] = []

    def swap(index: int, what: str, used: str, why: str) -> None:
        swaps.append(Swap(what, argv[index], used, why))
        argv[index] = used

    if argv[:3] != ["python3", "-m", "qwen_runtime"] or "--" not in argv:
        raise ValueError(f"not the launcher's command line: {argv[:4]}")
    serve = argv.index("serve", argv.index("--"))
    swap(serve + 1, "model", str(checkpoint), "no 236 GB weights here: a tiny Qwen3-MoE, same architecture")
    if (i := _flag(argv, "--host")) is not None:
        swap(i, "--host", LOOPBACK, "listen on loopback only")
    port, container_port = free_port(), 8000  # vLLM's default port
    if (i := _flag(argv, "--port")) is not None:
        container_port = int(argv[i])
        swap(i, "--port", str(port), "the container port on a free loopback port; the probes follow it")
    if (i := _flag(argv, "--tensor-parallel-size")) is not None and argv[i] != "1":
        swap(i, "--tensor-parallel-size", "1", "2 CPU cores; tensor parallelism (NCCL) is GPU-only here")
    argv = [kubelet.under(a, mounts, rootfs) for a in argv]
    for mount in container.get("volumeMounts") or []:
        if mount["mountPath"] in mounts:
            kind = _volume_kind(pod_spec, mount["name"])
            laid = mounts[mount["mountPath"]]
            where = f"{laid} -> {laid.readlink()}" if laid.is_symlink() else str(laid)
            swaps.append(Swap(f"volume {mount['mountPath']}", kind, where,
                              "laid out under the work dir; the paths in argv and env follow"))  # fmt: skip
    argv[3:3] = ["--termination-log", str(workdir / "termination-log")]
    swaps.append(Swap("--termination-log", "/dev/termination-log", argv[4], "the kubelet's file, here"))

    env = {"PATH": f"{venv_bin}{os.pathsep}/usr/local/bin{os.pathsep}/usr/bin{os.pathsep}/bin",
           "HOME": str(workdir / "home"), "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}  # fmt: skip
    env |= {name: kubelet.under(value, mounts, rootfs) for name, value in pod_env.items()}
    swaps.append(Swap("PATH", "", f"{venv_bin}:...", "the image's python3 and vllm: the CPU vLLM venv"))
    if "PYTHONPATH" not in pod_env:
        env["PYTHONPATH"] = str(RUNTIME)
        swaps.append(
            Swap("PYTHONPATH", "", str(RUNTIME), "the image's qwen_runtime: the checkout's launcher")
        )
    if KV_SPACE_VAR not in env and kv_cache_gib is not None:
        env[KV_SPACE_VAR] = str(kv_cache_gib)
        swaps.append(Swap(KV_SPACE_VAR, "", str(kv_cache_gib), "the CPU backend's KV cache budget in GiB"))
    (workdir / "home").mkdir(parents=True, exist_ok=True)
    stop = kubelet.Stop.of(pod_spec, container)
    return Launch(container, argv, env, port, container_port, workdir, mounts, stop, swaps)


class ServerExited(AssertionError):
    """The server process ended while it was expected to come up."""


class RealServer:
    """The launcher and vLLM as a child process group, its output in `log_path`."""

    def __init__(self, launch: Launch) -> None:
        self.launch = launch
        self.log_path = launch.workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.healthy_after: float | None = None
        self.exited_after: float | None = None

    def start(self) -> RealServer:
        self.launch.termination_log.unlink(missing_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.launch.argv, env=self.launch.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=self.launch.workdir, start_new_session=True,
            )  # fmt: skip
        self.started_at = time.monotonic()
        return self

    def url(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.launch.port}{path}"

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def probe(self, probe: kubelet.Probe) -> bool:
        return self.launch.probe(probe)

    def wait_started(self, probe: kubelet.Probe, poll: float = 0.5) -> float:
        """Seconds until `probe` (the startup probe) passes; fails when the process exits or the
        probe's window (initial delay + period x failure threshold) runs out. It polls every
        `poll` seconds instead of the probe's period, to measure the time to healthy."""
        deadline = self.started_at + probe.window
        while True:
            if self.probe(probe):
                self.healthy_after = time.monotonic() - self.started_at
                return self.healthy_after
            code = self.returncode()
            if code is not None:
                raise ServerExited(f"server exited {code} before {probe} passed:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{probe} failed for {probe.window:.0f}s:\n{self.log_tail()}")
            time.sleep(poll)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self, grace: float | None = None) -> int:
        """SIGTERM to the launcher (PID 1 of the container), SIGKILL to the group after `grace`:
        by default what the rendered grace period leaves after the preStop hook (which delays
        the SIGTERM; it is not waited here, and the server keeps serving meanwhile)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout=self.launch.stop.after_sigterm if grace is None else grace)
            except subprocess.TimeoutExpired:
                self._kill_groups()
        return self.proc.returncode

    def terminate(self) -> float:
        """The kubelet's SIGTERM to the launcher, at once; returns when it was sent (monotonic)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return time.monotonic()

    def kill(self) -> None:
        """Leave nothing behind (a test that failed half-way)."""
        if self.proc is not None and self.proc.poll() is None:
            self._kill_groups()

    def _kill_groups(self) -> None:
        """SIGKILL to the launcher's process group and to vLLM's: the launcher starts vLLM in a
        group of its own, and vLLM's engine processes outlive it (no pid namespace here takes
        them along, as a container's would): ~7 GiB each left on a shared machine."""
        assert self.proc is not None
        groups = {self.proc.pid}
        for children in Path(f"/proc/{self.proc.pid}/task").glob("*/children"):
            with contextlib.suppress(OSError):  # a task, or a child, gone meanwhile
                groups |= {os.getpgid(int(pid)) for pid in children.read_text().split()}
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        self.proc.wait()

    def termination_log(self) -> bytes:
        path = self.launch.termination_log
        return path.read_bytes() if path.exists() else b""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])
