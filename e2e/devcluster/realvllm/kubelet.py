"""What a kubelet does with a pod's container spec, done for a process on this machine.

Why: the real-process tests run the server container the operator renders, so whatever the
kubelet would do between the spec and the process must be done the same way here: resolve the
environment (literal values and Secret references), expand `$(VAR)` in the command, lay out
the container's volumes (a ConfigMap's keys as the kubelet's links into `..data`, an emptyDir or
a claim as an empty directory), run the probes (HTTP GET or exec), build the termination message
from the termination-log file or, with `FallbackToLogsOnError`, from the log's tail, and keep the
container's log as the container runtime does (CRI format: what the kubelet serves as pods/log).
"""

from __future__ import annotations

import re
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SecretLookup = Callable[[str, str], str]
"""(Secret name, key) -> value; raises KeyError when missing (the kubelet would not start)."""
ConfigMapLookup = Callable[[str], Mapping[str, str]]
"""ConfigMap name -> its data."""
_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
FALLBACK_LINES, FALLBACK_BYTES = 80, 2048
"""The log tail the kubelet uses for `FallbackToLogsOnError` (pkg/kubelet/kuberuntime)."""
MESSAGE_BYTES = 4096
"""The kubelet keeps at most this much of a termination-log file."""
HOST_MOUNTS = ("/dev/",)
"""Mounts that stay the host's own here (/dev/shm: vLLM's shared memory)."""
DEFAULT_GRACE_SECONDS = 30
"""Kubernetes' terminationGracePeriodSeconds when a pod sets none."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: a defined variable is replaced, `$$` is a literal `$`,
    an undefined reference stays as written."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _REFERENCE.sub(one, text)


def container_env(
    container: Mapping[str, Any], secret: SecretLookup, fields: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The container's environment as the kubelet builds it: in order, each value expanded
    against the ones before it; `valueFrom.secretKeyRef` read through `secret`, and
    `valueFrom.fieldRef` (the downward API) from `fields` (fieldPath -> value, e.g.
    `metadata.name`)."""
    env: dict[str, str] = {}
    for var in container.get("env") or []:
        source = var.get("valueFrom") or {}
        if "value" in var:
            env[var["name"]] = expand(str(var["value"]), env)
        elif ref := source.get("secretKeyRef"):
            env[var["name"]] = secret(ref["name"], ref.get("key", ""))
        elif (ref := source.get("fieldRef")) and ref.get("fieldPath") in (fields or {}):
            env[var["name"]] = (fields or {})[ref["fieldPath"]]
        else:
            raise ValueError(f"env {var['name']}: only values, secretKeyRef and known fieldRefs here")
    return env


def command(container: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """command + args with `$(VAR)` expanded, as the kubelet hands them to the runtime."""
    return [expand(str(a), env) for a in [*(container.get("command") or []), *(container.get("args") or [])]]


ATOMIC_DIR = "..2026_01_01_00_00_00.000000000"
"""The kubelet's timestamped directory of a ConfigMap volume (pkg/volume/util AtomicWriter)."""
DATA_LINK = "..data"


def lay_out_volumes(
    pod_spec: Mapping[str, Any],
    container: Mapping[str, Any],
    rootfs: Path,
    configmap: ConfigMapLookup,
    claims: Mapping[str, Path] | None = None,
) -> dict[str, Path]:
    """Each of the container's volume mounts as a directory under `rootfs` (mountPath -> dir):
    a ConfigMap's keys (or its `items`) as files, a volume named in `claims` (a claim, or a volume
    claim template) as a link to that directory, which outlives the pod as the claim does (the
    kubelet mounts the same volume into the next pod), anything else (emptyDir, a claim not
    named) empty. Mounts under /dev stay the host's."""
    volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
    laid: dict[str, Path] = {}
    for mount in container.get("volumeMounts") or []:
        path = str(mount["mountPath"])
        if path.startswith(HOST_MOUNTS):
            continue
        target = rootfs / path.lstrip("/")
        kept = (claims or {}).get(mount["name"])
        if kept is not None:
            kept.mkdir(parents=True, exist_ok=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(kept, target_is_directory=True)
            laid[path] = target
            continue
        target.mkdir(parents=True, exist_ok=True)
        source = (volumes.get(mount["name"]) or {}).get("configMap")
        if source is not None:
            try:
                data = configmap(source["name"])
            except KeyError:
                if not source.get("optional"):
                    raise
                data = {}  # an optional ConfigMap that does not exist: an empty volume
            items = source.get("items") or [{"key": key, "path": key} for key in data]
            write_atomically(
                target, {item["path"]: data[item["key"]] for item in items}, source.get("defaultMode")
            )
        laid[path] = target
    return laid


def write_atomically(target: Path, files: Mapping[str, str], mode: int | None = None) -> None:
    """A ConfigMap volume as the kubelet's atomic writer leaves it: the files in a timestamped
    directory, `..data` linked to it, and each key a link through `..data` (what the launcher,
    reading its own sources, finds in a pod), with the volume's `defaultMode`."""
    atomic = target / ATOMIC_DIR
    for name, text in files.items():
        (atomic / name).parent.mkdir(parents=True, exist_ok=True)
        (atomic / name).write_text(text)
        if mode is not None:
            (atomic / name).chmod(mode)
    (target / DATA_LINK).symlink_to(ATOMIC_DIR)
    for top in sorted({Path(name).parts[0] for name in files}):
        (target / top).symlink_to(Path(DATA_LINK) / top)


def under(value: str, mounts: Mapping[str, Path], rootfs: Path) -> str:
    """An absolute path that is, lies in or leads to a mount, moved under `rootfs` (a list of
    paths like PYTHONPATH too); anything else unchanged."""
    parts = value.split(":")
    if len(parts) > 1 and all(part.startswith("/") for part in parts):
        return ":".join(under(part, mounts, rootfs) for part in parts)
    if not value.startswith("/"):
        return value
    related = any(
        value == m or value.startswith(m + "/") or m.startswith(value.rstrip("/") + "/") for m in mounts
    )
    return str(rootfs / value.lstrip("/")) if related else value


@dataclass(frozen=True)
class Probe:
    """One of the container's probes (HTTP GET or exec), with the kubelet's defaults."""

    kind: str
    path: str | None
    port: int | str | None
    exec_command: list[str] | None
    initial_delay: float
    period: float
    timeout: float
    failure_threshold: int
    success_threshold: int

    @classmethod
    def of(cls, container: Mapping[str, Any], kind: str) -> Probe:
        """`kind`: startupProbe, readinessProbe or livenessProbe."""
        spec = container[kind]
        get, run = spec.get("httpGet"), spec.get("exec")
        if get is not None and (get.get("scheme", "HTTP") != "HTTP" or get.get("httpHeaders")):
            raise ValueError(f"{kind}: only plain HTTP GET probes are supported here")
        if get is None and run is None:
            raise ValueError(f"{kind}: only httpGet and exec probes are supported here")
        return cls(
            kind=kind,
            path=get.get("path", "/") if get else None,
            port=get["port"] if get else None,
            exec_command=list(run["command"]) if run else None,
            initial_delay=float(spec.get("initialDelaySeconds", 0)),
            period=float(spec.get("periodSeconds", 10)),
            timeout=float(spec.get("timeoutSeconds", 1)),
            failure_threshold=int(spec.get("failureThreshold", 3)),
            success_threshold=int(spec.get("successThreshold", 1)),
        )

    @property
    def window(self) -> float:
        """How long a startup probe lets the container start before the kubelet kills it."""
        return self.initial_delay + self.period * self.failure_threshold

    def __str__(self) -> str:
        action = (
            f"GET {self.path} on port {self.port}"
            if self.path
            else f"exec {' '.join(self.exec_command or [])}"
        )
        return f"{self.kind}: {action}, every {self.period:g}s, timeout {self.timeout:g}s"


@dataclass(frozen=True)
class Stop:
    """How the kubelet stops the container: the preStop hook, then SIGTERM to PID 1, then
    SIGKILL when the pod's grace period, counted from the start of the stop, runs out."""

    pre_stop_seconds: float
    """The preStop `sleep` (the only hook supported here); 0 without one."""
    grace_seconds: float

    @classmethod
    def of(cls, pod_spec: Mapping[str, Any], container: Mapping[str, Any]) -> Stop:
        hook = (container.get("lifecycle") or {}).get("preStop")
        if hook is not None and set(hook) != {"sleep"}:
            raise ValueError(f"preStop {sorted(hook)}: only the sleep action is supported here")
        pre_stop = float(hook["sleep"]["seconds"]) if hook else 0.0
        return cls(pre_stop, float(pod_spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)))

    @property
    def after_sigterm(self) -> float:
        """What is left of the grace period once the hook is done: the process's time to exit."""
        return max(self.grace_seconds - self.pre_stop_seconds, 0.0)


def http_ok(host: str, port: int, path: str, timeout: float) -> bool:
    """An HTTP probe: success is a status from 200 to 399 within the timeout."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=timeout) as resp:
            return 200 <= int(resp.status) < 400
    except urllib.error.HTTPError as error:
        return 200 <= error.code < 400
    except OSError:
        return False


def exec_ok(argv: list[str], env: Mapping[str, str], cwd: Path, timeout: float) -> bool:
    """An exec probe: success is exit code 0 within the timeout."""
    try:
        done = subprocess.run(argv, env=dict(env), cwd=cwd, capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def container_port(container: Mapping[str, Any], port: int | str) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for entry in container.get("ports") or []:
        if entry.get("name") == port:
            return int(entry["containerPort"])
    raise ValueError(f"the container has no port named {port!r}")


def termination_message(container: Mapping[str, Any], written: bytes, log: bytes, failed: bool) -> str:
    """The message the kubelet puts in `lastState.terminated`: the termination-log file, or,
    with `FallbackToLogsOnError` when that file is empty and the container failed, the log's
    last 80 lines (at most 2 KiB)."""
    if written.strip():
        return written[:MESSAGE_BYTES].decode(errors="replace")
    if failed and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
        tail = b"\n".join(log.rstrip(b"\n").split(b"\n")[-FALLBACK_LINES:])
        return tail[-FALLBACK_BYTES:].decode(errors="replace")
    return ""


def cri_lines(data: bytes, stream: str = "stdout", now: datetime | None = None) -> tuple[bytes, bytes]:
    """The complete lines of `data` as a container runtime writes them to the container's log
    file (`<RFC 3339 nano> <stream> F <line>`), and the incomplete rest, which waits for more.
    The kubelet serves that file for pods/log (`tailLines`, `sinceTime`, `limitBytes`)."""
    head, newline, rest = data.rpartition(b"\n")
    if not newline:
        return b"", data
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}000Z"
    prefix = f"{stamp} {stream} F ".encode()
    lines = head.split(b"\n")
    return b"".join(prefix + line.rstrip(b"\r") + b"\n" for line in lines), rest
