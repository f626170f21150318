"""Helpers against a running cluster, for the tooling (simulate, bench) and the end-to-end
suite: waiting with a useful failure message, kubectl, status conditions, and faking what a
kubelet would report about a crashed container."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import yaml
from kubernetes import client

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The condition did not hold in time; the message says what was awaited and last seen."""


REACH_TIMEOUT = 3.0
"""Seconds an API server has to accept a connection before the cluster counts as gone: a live
one answers in milliseconds, and a dead one must stop a run at once, not after 107 errors."""


def kubeconfig_server(kubeconfig: str) -> tuple[Path, str | None]:
    """The file whose current context names the cluster, and that cluster's server URL (None when
    the files name none). $KUBECONFIG may list several files: the first current-context and the
    first cluster of each name win, as kubectl merges them."""
    paths = [Path(p) for p in kubeconfig.split(os.pathsep) if p]
    docs = [(p, yaml.safe_load(p.read_text()) or {}) for p in paths if p.is_file()]
    current = next((d.get("current-context") for _, d in docs if d.get("current-context")), None)
    contexts = [(p, c) for p, d in docs for c in d.get("contexts") or []]
    ctx = next((c.get("context") or {} for _, c in contexts if c.get("name") == current), {})
    clusters = [(p, c) for p, d in docs for c in d.get("clusters") or []]
    for path, entry in clusters:
        if entry.get("name") == ctx.get("cluster"):
            server = (entry.get("cluster") or {}).get("server")
            return path, str(server) if server else None
    return (paths[0] if paths else Path(kubeconfig)), None


def unreachable(kubeconfig: str, timeout: float = REACH_TIMEOUT) -> str | None:
    """Why the cluster of `kubeconfig` cannot be used, naming the file and the server, or None
    when its API server accepts a connection.

    A kubeconfig left over from `make demo` after `make cluster-down` points at a server that is
    gone: every test would fail on its own "connection refused". Only a TCP connect: no TLS, no
    credentials, so it says nothing about rights, just that someone listens.
    """
    hint = "start that cluster, or unset KUBECONFIG to use a local control plane started for the run"
    try:
        path, server = kubeconfig_server(kubeconfig)
    except (OSError, yaml.YAMLError) as exc:
        return f"KUBECONFIG={kubeconfig} cannot be read ({exc}): {hint}"
    if not any(Path(p).is_file() for p in kubeconfig.split(os.pathsep) if p):
        return f"KUBECONFIG={kubeconfig}: no such file: {hint}"
    if server is None:
        return f"KUBECONFIG={kubeconfig}: {path} names no server for its current context: {hint}"
    url = urlsplit(server)
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((url.hostname or "localhost", port), timeout=timeout):
            return None
    except OSError as exc:
        why = f"no answer within {timeout:g} s" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        return f"the cluster of KUBECONFIG={path} does not answer at {server} ({why}): {hint}"


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 60.0,
    describe: str = "condition",
    interval: float = 0.5,
) -> T:
    """Poll `predicate` until it returns something truthy, and return that.

    Exceptions from the predicate count as "not yet" (an object may not exist yet); on
    timeout the last result and the last exception are part of the failure message.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    error: BaseException | None = None
    while True:
        try:
            last, error = predicate(), None
            if last:
                return last
        except Exception as exc:  # the reason is reported if it persists
            error = exc
        if time.monotonic() >= deadline:
            detail = f"; last error: {error!r}" if error else ""
            raise WaitTimeout(
                f"timed out after {timeout:.0f}s waiting for {describe}; last result: {last!r}{detail}"
            )
        time.sleep(interval)


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run kubectl (the pinned one when the suite put it first on PATH) against $KUBECONFIG."""
    done = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done


def wait_established(*names: str, timeout: float = 60.0) -> None:
    """Wait until each CRD (`crd/<name>` or `customresourcedefinition.../<name>`) is Established.

    Right after a create, `kubectl wait --for=condition=Established` can read the CRD before
    the apiserver gave it any condition, and then exits 1 at once ("`.status.conditions`
    accessor error: <nil>") instead of waiting; so short waits are retried to the deadline.
    """
    args = ("wait", "--for=condition=Established", "--timeout=5s", *names)
    wait_for(lambda: kubectl(*args), timeout, f"{' '.join(names)} Established")


def condition(obj: Any, type_: str) -> Any | None:
    """The status condition of `type_` on a kubernetes-client object, or None."""
    for cond in (obj.status.conditions or []) if obj.status else []:
        if cond.type == type_:
            return cond
    return None


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def crashed_container_status(
    current: dict[str, Any],
    reason: str,
    exit_code: int,
    message: str,
    restart_count: int | None = None,
    then: Literal["waiting", "running"] = "waiting",
) -> dict[str, Any]:
    """A container status as the kubelet reports it after the container ended: the run in
    `lastState.terminated` (reason, exit code, termination message), one restart more unless
    `restart_count` says, and `then` CrashLoopBackOff or running again. The one builder of a
    crashed container: `terminate_container` patches it into a live pod, the unit tests'
    pods (testkit.wrappers) are made with it."""
    now = datetime.now(UTC)
    terminated = {
        "reason": reason,
        "exitCode": exit_code,
        "message": message,
        "startedAt": _rfc3339(now - timedelta(seconds=30)),
        "finishedAt": _rfc3339(now),
        "containerID": current.get("containerID") or f"kwok://{current['name']}",
    }
    if then == "waiting":
        state = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting"}}
    else:
        state = {"running": {"startedAt": _rfc3339(now)}}
    restarts = restart_count if restart_count is not None else current.get("restartCount", 0) + 1
    ready = then == "running"
    return {**current, "state": state, "lastState": {"terminated": terminated},
            "restartCount": restarts, "ready": ready, "started": ready}  # fmt: skip


StartStage = Literal["scheduled", "downloading", "loading", "serving"]


def starting_pod_status(stage: StartStage, since: datetime, image: str = "img") -> dict[str, Any]:
    """The status a kubelet reports for a server pod at one point of its start: `scheduled`
    (containers being created), `downloading` (the fetch-weights init container runs), `loading`
    (the server runs, its startup probe has not passed), `serving` (ready). `since` is when that
    point began, as the kubelet stamps it."""
    at = _rfc3339(since)

    def container(
        name: str, state: dict[str, Any], ready: bool = False, started: bool = False
    ) -> dict[str, Any]:
        return {"name": name, "image": image, "imageID": "", "ready": ready, "started": started,
                "restartCount": 0, "state": state}  # fmt: skip

    def condition(type_: str, ok: bool) -> dict[str, Any]:
        return {"type": type_, "status": "True" if ok else "False", "lastTransitionTime": at}

    creating = {"waiting": {"reason": "PodInitializing"}}
    done = {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": at, "finishedAt": at}}
    init = {"scheduled": creating, "downloading": {"running": {"startedAt": at}}}.get(stage, done)
    server = {
        "loading": container("server", {"running": {"startedAt": at}}),
        "serving": container("server", {"running": {"startedAt": at}}, ready=True, started=True),
    }.get(stage, container("server", creating))
    ready = stage == "serving"
    return {
        "phase": "Running" if stage in ("loading", "serving") else "Pending",
        "conditions": [
            condition("PodScheduled", True),
            condition("Initialized", stage in ("loading", "serving")),
            condition("ContainersReady", ready),
            condition("Ready", ready),
        ],
        "initContainerStatuses": [container("fetch-weights", init)],
        "containerStatuses": [server],
    }


def terminate_container(
    api: client.ApiClient,
    namespace: str,
    pod: str,
    container: str,
    reason: str = "OOMKilled",
    exit_code: int = 137,
    message: str = "",
    restart_count: int | None = None,
    then: Literal["waiting", "running"] = "waiting",
) -> dict[str, Any]:
    """Patch the pod's status subresource the way a kubelet reports a crashed container.

    `lastState.terminated` carries reason, exit code and termination message;
    `restartCount` defaults to one more than now; `then` is the container's state
    afterwards (CrashLoopBackOff, or running again). kwok's stages only act on Pending or
    deleted pods, so the patched status stays as written. Returns the patched status.
    """
    core = client.CoreV1Api(api)
    current = api.sanitize_for_serialization(  # type: ignore[no-untyped-call]
        core.read_namespaced_pod_status(pod, namespace)
    )
    statuses = current.get("status", {}).get("containerStatuses") or []
    if not any(s["name"] == container for s in statuses):
        raise ValueError(f"pod {namespace}/{pod} has no status for container {container!r} yet")
    new = [
        crashed_container_status(s, reason, exit_code, message, restart_count, then)
        if s["name"] == container
        else s
        for s in statuses
    ]
    ready = "True" if then == "running" else "False"
    moved = {"status": ready, "lastTransitionTime": _rfc3339(datetime.now(UTC))}
    conditions = [
        {**c, **moved} if c["type"] in ("Ready", "ContainersReady") and c["status"] != ready else c
        for c in current["status"].get("conditions", [])
    ]
    body = {"status": {"containerStatuses": new, "conditions": conditions}}
    patched = core.patch_namespaced_pod_status(pod, namespace, body)
    return dict(
        api.sanitize_for_serialization(  # type: ignore[no-untyped-call]
            patched
        )["status"]
    )
