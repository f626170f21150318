"""Back simulated pods with real processes: the kubelet's part for the server container.

Why: on the local cluster kwok plays every kubelet and runs nothing, so the fallback has only
ever seen failures written by hand. For a pod whose container carries the environment variable
`QWEN_E2E_REAL_PROCESS` (set through `spec.runtime.env`), kwok only starts the containers,
unready (stage `pod-start-real-process` in toolchain/kwok-stages.yaml), and this harness does
what the kubelet would:

* when the server container is running in the pod's status, it runs the container's own
  command here (the launcher and the CPU vLLM; `server.adapt` lists what it swaps: the model
  becomes the tiny checkpoint, the port a loopback one, ...);
* while the startup probe fails nothing changes; when it passes, the container is started and
  ready and the pod Ready (the readiness probe is the same `/health`);
* when the process exits, the container's `lastState.terminated` gets its exit code and the
  termination message (the launcher's record, or the log's tail with FallbackToLogsOnError),
  through `kube.terminate_container`, and after the kubelet's back-off (10 s, doubling) the
  container runs again unless the pod was replaced;
* a pod being deleted has its process stopped (SIGTERM, then SIGKILL); with `graceful_stop`,
  the kubelet's way: the preStop sleep, SIGTERM, SIGKILL when the grace period ends, the pod
  held (a finalizer) until the process is gone;
* the process's output goes to a log file in the container runtime's format, named in a kwok
  `Logs` object of the pod's name, so kwok serves it as the node's kubelet would: `kubectl logs`
  and the operator's pods/log reads get it through the apiserver (the previous run's file is
  `--previous`).

    python -m e2e.devcluster.realvllm.harness -n NAMESPACE   # until Ctrl-C, on $KUBECONFIG
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config

from e2e.devcluster.kube import terminate_container
from e2e.devcluster.realvllm import checkpoint, env, kubelet
from e2e.devcluster.realvllm.server import RealServer, adapt
from qwen_runtime.argv import max_model_len

MARKER = "QWEN_E2E_REAL_PROCESS"
CONTAINER = "server"
LOGS_GROUP, LOGS_VERSION = "kwok.x-k8s.io", "v1alpha1"
"""kwok's `Logs` kind (from kwok's Go module: e2e/devcluster/toolchain/build.py)."""
BACKOFF_SECONDS, BACKOFF_MAX = 10.0, 300.0
"""The kubelet's crash-loop back-off: 10 s, doubling, at most 5 minutes."""
STOP_GRACE = 10.0
"""The pod is already gone (kwok deletes at once): no one waits for the drain."""
FINALIZER = "e2e.qwen-operator.io/real-process"
"""With `graceful_stop`, holds a deleted pod until its process has stopped, as a kubelet holds a
terminating pod until its containers have exited."""


@dataclass
class Run:
    """One run of a pod's server container as a real process."""

    pod: str
    uid: str
    restart_count: int
    server: RealServer
    context: int | None
    ready_after: float | None = None
    exit_code: int | None = None
    message: str = ""
    log_offset: int = 0
    """How much of the server's output is in `cri_log` already."""
    partial: bytes = b""
    sigterm_at: float | None = None
    """With `graceful_stop`: when the kubelet's SIGTERM came, after the preStop hook (monotonic)."""

    @property
    def cri_log(self) -> Path:
        """The container's log as the container runtime keeps it (what kwok serves)."""
        return self.server.launch.workdir / "container.log"


@dataclass
class Harness:
    """Plays the kubelet's part for the marked pods of one namespace, from a thread."""

    api: client.ApiClient
    namespace: str
    python: Path
    checkpoint: Path
    workdir: Path
    poll: float = 0.5
    graceful_stop: bool = False
    """Stop a deleted pod's process as the kubelet does, from a thread of its own: the preStop
    sleep (the process serves on), SIGTERM, SIGKILL once the pod's grace period is over; and hold
    the pod until then. Why: kwok deletes a pod at once, so by default nothing waits for a drain
    (SIGTERM at once, SIGKILL after `STOP_GRACE`) and the StatefulSet's replacement starts while
    the old process still runs; a drain or a rollout's duration is only measured this way."""
    runs: list[Run] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _active: dict[str, Run] = field(default_factory=dict)
    _stopping: dict[str, threading.Thread] = field(default_factory=dict)
    _restart_due: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Harness:
        self._thread = threading.Thread(target=self._loop, name="realvllm-harness", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        for stopping in self._stopping.values():  # told by _stop: they kill what still runs
            stopping.join(timeout=60)
        for run in self._active.values():
            run.server.stop(STOP_GRACE)
            if self.graceful_stop:
                with contextlib.suppress(Exception):  # the cluster may be gone already
                    self._release(run.pod, run.uid)
        self._active.clear()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception as error:  # keep playing the kubelet; the test reads errors
                self.errors.append(repr(error))
            self._stop.wait(self.poll)

    def step(self) -> None:
        """One look at the namespace's pods, and what the kubelet would do about each."""
        core = client.CoreV1Api(self.api)
        items = core.list_namespaced_pod(self.namespace).items
        pods = [self.api.sanitize_for_serialization(p) for p in items]  # type: ignore[no-untyped-call]
        live = {p["metadata"]["uid"]: p for p in pods if not p["metadata"].get("deletionTimestamp")}
        for uid in [uid for uid in self._active if uid not in live]:
            if self.graceful_stop:
                self._stop_gracefully(self._active.pop(uid))
            else:
                self._active.pop(uid).server.stop(STOP_GRACE)
        for pod in pods:  # held, but its process already gone (exited before the delete)
            uid = pod["metadata"]["uid"]
            held = FINALIZER in (pod["metadata"].get("finalizers") or [])
            if held and uid not in live and uid not in self._stopping:
                self._release(pod["metadata"]["name"], uid)
        for uid, pod in live.items():
            spec = _container(pod["spec"].get("containers"))
            status = _container(pod.get("status", {}).get("containerStatuses"))
            if spec is None or status is None or not _marked(spec):
                continue
            run = self._active.get(uid)
            if run is None:
                if "running" in status.get("state", {}) and not self._ran(uid, status.get("restartCount", 0)):
                    self._start(pod, status.get("restartCount", 0))
                elif uid in self._restart_due and time.monotonic() >= self._restart_due[uid]:
                    del self._restart_due[uid]
                    self._patch_container(pod, {"state": {"running": {"startedAt": _now()}}}, ready=False)
            elif run.server.returncode() is not None:
                _sync_log(run)
                self._exited(pod, spec, run)
            elif run.ready_after is None and self._passes(run, spec, "startupProbe", "readinessProbe"):
                run.ready_after = time.monotonic() - run.server.started_at
                _sync_log(run)
                self._patch_container(pod, {"ready": True, "started": True}, ready=True)
        for run in self._active.values():
            _sync_log(run)

    def _stop_gracefully(self, run: Run) -> None:
        """The kubelet's stop of a deleted pod's container, in a thread: the preStop sleep,
        SIGTERM, SIGKILL when the grace period runs out (or the harness ends); then the pod goes."""

        def stop() -> None:
            plan = run.server.launch.stop
            if not self._stop.wait(plan.pre_stop_seconds):
                run.sigterm_at = run.server.terminate() if run.server.returncode() is None else None
                deadline = time.monotonic() + plan.after_sigterm
                while run.server.returncode() is None and time.monotonic() < deadline:
                    if self._stop.wait(0.2):
                        break
            run.server.kill()
            run.exit_code = run.server.wait(0)
            run.server.exited_after = time.monotonic() - run.server.started_at
            _sync_log(run)
            try:
                self._release(run.pod, run.uid)
            except Exception as error:  # the test reads errors
                self.errors.append(repr(error))

        thread = threading.Thread(target=stop, name=f"stop-{run.pod}", daemon=True)
        self._stopping[run.uid] = thread
        thread.start()

    def _hold(self, pod: dict[str, Any]) -> bool:
        """The finalizer that keeps a deleted pod until its process has stopped; False when the
        pod is gone already (nothing to start)."""
        if FINALIZER in (pod["metadata"].get("finalizers") or []):
            return True
        body = {"metadata": {"finalizers": [FINALIZER]}}  # a strategic merge adds to the list
        try:
            client.CoreV1Api(self.api).patch_namespaced_pod(pod["metadata"]["name"], self.namespace, body)
        except client.ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    def _release(self, name: str, uid: str) -> None:
        """The pod, of this uid, without the harness's finalizer: the apiserver removes it."""
        core = client.CoreV1Api(self.api)
        try:
            pod = core.read_namespaced_pod(name, self.namespace)
        except client.ApiException as error:
            if error.status == 404:
                return
            raise
        finalizers = list(pod.metadata.finalizers or [])
        if pod.metadata.uid != uid or FINALIZER not in finalizers:
            return
        rest = [f for f in finalizers if f != FINALIZER]
        patch = [{"op": "test", "path": "/metadata/uid", "value": uid},
                 {"op": "replace", "path": "/metadata/finalizers", "value": rest}]  # fmt: skip
        core.patch_namespaced_pod(name, self.namespace, patch)

    def _passes(self, run: Run, spec: dict[str, Any], *kinds: str) -> bool:
        return all(run.server.probe(kubelet.Probe.of(spec, kind)) for kind in kinds)

    def _ran(self, uid: str, restart_count: int) -> bool:
        return any((r.uid, r.restart_count) == (uid, restart_count) for r in self.runs)

    def _start(self, pod: dict[str, Any], restart_count: int) -> None:
        name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
        if self.graceful_stop and not self._hold(pod):
            return
        workdir = self.workdir / f"{name}-{uid[:8]}-{restart_count}"
        launch = adapt(pod["spec"], venv_bin=self.python.parent, checkpoint=self.checkpoint, workdir=workdir,
                       secret=self._secret, configmap=self._configmap, pod_name=name)  # fmt: skip
        run = Run(name, uid, restart_count, RealServer(launch), max_model_len(launch.argv))
        previous = next((r for r in reversed(self.runs) if r.uid == uid), None)
        self.runs.append(run)
        self._active[uid] = run
        run.cri_log.parent.mkdir(parents=True, exist_ok=True)
        run.cri_log.touch()
        self._name_logs(name, run.cri_log, previous.cri_log if previous else run.cri_log)
        run.server.start()

    def _exited(self, pod: dict[str, Any], spec: dict[str, Any], run: Run) -> None:
        code = run.exit_code = run.server.wait(0)
        run.server.exited_after = time.monotonic() - run.server.started_at
        del self._active[run.uid]
        log = run.server.log().encode()
        run.message = kubelet.termination_message(spec, run.server.termination_log(), log, failed=code != 0)
        terminate_container(self.api, self.namespace, run.pod, CONTAINER, "Error" if code else "Completed",
                            code, message=run.message)  # fmt: skip
        crashes = sum(1 for r in self.runs if r.uid == run.uid and r.exit_code)
        self._restart_due[run.uid] = time.monotonic() + min(BACKOFF_SECONDS * 2 ** (crashes - 1), BACKOFF_MAX)

    def _patch_container(self, pod: dict[str, Any], change: dict[str, Any], ready: bool) -> None:
        """The server container's status with `change`, and the pod's readiness to match."""
        statuses = [
            {**s, **change, **({} if ready else {"ready": False, "started": False})}
            if s["name"] == CONTAINER
            else s
            for s in pod["status"]["containerStatuses"]
        ]
        value = "True" if ready else "False"
        conditions = [
            {**c, "status": value, "lastTransitionTime": _now()}
            if c["type"] in ("Ready", "ContainersReady") and c["status"] != value
            else c
            for c in pod["status"].get("conditions", [])
        ]
        body = {"status": {"containerStatuses": statuses, "conditions": conditions}}
        client.CoreV1Api(self.api).patch_namespaced_pod_status(pod["metadata"]["name"], self.namespace, body)

    def _name_logs(self, pod: str, current: Path, previous: Path) -> None:
        """kwok's `Logs` object for the pod: which files are its server container's log."""
        custom = client.CustomObjectsApi(self.api)
        body = {
            "apiVersion": f"{LOGS_GROUP}/{LOGS_VERSION}",
            "kind": "Logs",
            "metadata": {"name": pod, "namespace": self.namespace},
            "spec": {"logs": [{"containers": [CONTAINER], "logsFile": str(current),
                               "previousLogsFile": str(previous)}]},
        }  # fmt: skip
        with contextlib.suppress(client.ApiException):
            custom.delete_namespaced_custom_object(LOGS_GROUP, LOGS_VERSION, self.namespace, "logs", pod)
        custom.create_namespaced_custom_object(LOGS_GROUP, LOGS_VERSION, self.namespace, "logs", body)

    def _configmap(self, name: str) -> dict[str, str]:
        """A ConfigMap's data; KeyError when there is none (an optional volume is then empty)."""
        try:
            found = client.CoreV1Api(self.api).read_namespaced_config_map(name, self.namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                raise KeyError(name) from exc
            raise
        return dict(found.data or {})

    def _secret(self, name: str, key: str) -> str:
        secret = client.CoreV1Api(self.api).read_namespaced_secret(name, self.namespace)
        return base64.b64decode((secret.data or {})[key]).decode()


def _sync_log(run: Run) -> None:
    """Append the server's new complete output lines to its container log, stamped now (the
    container runtime's part; the harness's poll is the stamp's resolution)."""
    path = run.server.log_path
    if not path.exists():
        return
    with path.open("rb") as source:
        source.seek(run.log_offset)
        data = source.read()
    run.log_offset += len(data)
    lines, run.partial = kubelet.cri_lines(run.partial + data)
    if lines:
        with run.cri_log.open("ab") as target:
            target.write(lines)


def _marked(container: dict[str, Any]) -> bool:
    return any(var.get("name") == MARKER for var in container.get("env") or [])


def _container(items: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    return next((c for c in items or [] if c.get("name") == CONTAINER), None)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.devcluster.realvllm.harness", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("-n", "--namespace", default="default")
    parser.add_argument("--workdir", type=Path, default=Path(".state/realvllm"))
    args = parser.parse_args(argv)
    config.load_kube_config()
    python = env.ensure()
    tiny = checkpoint.ensure(python)
    harness = Harness(client.ApiClient(), args.namespace, python, tiny, args.workdir.resolve())
    print(f"backing pods with {MARKER} in namespace {args.namespace}; logs under {args.workdir}/", flush=True)
    with harness, contextlib.suppress(KeyboardInterrupt):
        seen = 0
        while True:
            time.sleep(1)
            for run in harness.runs[seen:]:
                print(f"{run.pod} restart {run.restart_count}: --max-model-len {run.context}", flush=True)
            seen = len(harness.runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
