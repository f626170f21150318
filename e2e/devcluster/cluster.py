"""The local control plane: `python -m e2e.devcluster.cluster up|down|status|env`.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok run as plain
processes on loopback, started from the cached binaries (see e2e.devcluster.toolchain).
Everything the cluster owns - certificates, kubeconfigs, etcd data, logs, the audit log,
pids - lives in one state directory (`<repo>/.state/cluster` unless QWEN_E2E_STATE_DIR
says otherwise), so `down` can stop exactly what `up` started and remove it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from e2e.devcluster import components, nodes, pki
from e2e.devcluster.components import Layout
from e2e.devcluster.toolchain import build

REPO = Path(__file__).resolve().parents[2]
DEFAULT_STATE = REPO / ".state" / "cluster"
STARTUP_TIMEOUT = 120.0


def state_dir() -> Path:
    return Path(os.environ.get("QWEN_E2E_STATE_DIR") or DEFAULT_STATE).resolve()


def log(message: str) -> None:
    print(f"[cluster] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_state(state: Path) -> dict[str, Any] | None:
    path = state / "state.json"
    return json.loads(path.read_text()) if path.exists() else None


def layout_of(state: Path, saved: dict[str, Any]) -> Layout:
    return Layout(state=state, bin=Path(saved["bin"]), ports=saved["ports"])


# -- processes ---------------------------------------------------------------------------


def pid_alive(pid: int, binary: str) -> bool:
    """True when `pid` runs `binary` (a recycled pid belongs to someone else)."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return argv0 == binary and stat.rsplit(")", 1)[1].split()[0] != "Z"


# Children started by this Python process: until exec() completes, /proc/<pid>/cmdline
# still shows Python, so liveness of our own children is asked of Popen instead.
_children: dict[int, subprocess.Popen[bytes]] = {}


def exited(proc: dict[str, Any]) -> bool:
    child = _children.get(int(proc["pid"]))
    if child is not None:
        return child.poll() is not None
    return not pid_alive(int(proc["pid"]), str(proc["binary"]))


def spawn(layout: Layout, name: str, argv: list[str]) -> dict[str, Any]:
    logfile = layout.log(name)
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with logfile.open("ab") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=layout.state,
        )  # fmt: skip
    _children[proc.pid] = proc
    return {"pid": proc.pid, "binary": argv[0], "log": str(logfile)}


def stop(name: str, proc: dict[str, Any], grace: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """Stop a recorded process: through its Popen when it is our child (its pid cannot be
    reused before we reap it), else by pid, only while the pid still runs its binary."""
    pid, binary = int(proc["pid"]), str(proc["binary"])
    child = _children.pop(pid, None)
    if child is not None:
        stop_child(child, sig, grace=grace)
    elif pid_alive(pid, binary):
        os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while pid_alive(pid, binary) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid, binary):
            log(f"{name} (pid {pid}) ignored SIGTERM; killing")
            os.kill(pid, signal.SIGKILL)


def stop_child(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace: float = 30.0) -> None:
    """Send `sig` to a child of ours; SIGKILL it if it still runs after `grace` seconds, so
    nothing is left behind (the operator under test, the demo's, the benchmark's)."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def log_tail(path: str | Path, lines: int = 25) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- readiness ---------------------------------------------------------------------------


def http_ok(url: str, layout: Layout, client_cert: bool) -> bool:
    """GET `url`; True on 200. TLS verified against our CA only for the apiserver."""
    ctx: ssl.SSLContext | None = None
    if url.startswith("https"):
        if client_cert:
            ctx = ssl.create_default_context(cafile=str(layout.pki / "ca.crt"))
            ctx.load_cert_chain(str(layout.pki / "admin.crt"), str(layout.pki / "admin.key"))
        else:  # controller-manager and scheduler serve a self-signed certificate
            ctx = ssl._create_unverified_context()
    try:
        with urllib.request.urlopen(url, timeout=3, context=ctx) as resp:
            return int(resp.status) == 200
    except (OSError, ValueError):
        return False


def wait_until(check: Callable[[], bool], what: str, proc: dict[str, Any] | None) -> None:
    """Poll `check`; fail fast with the log tail when the process behind it died."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not check():
        if proc and exited(proc):
            raise RuntimeError(f"{what}: process exited\n{log_tail(proc['log'])}")
        if time.monotonic() > deadline:
            tail = log_tail(proc["log"]) if proc else ""
            raise TimeoutError(f"{what}: not ready after {STARTUP_TIMEOUT:.0f}s\n{tail}")
        time.sleep(0.25)


def health_url(layout: Layout, name: str) -> tuple[str, bool] | None:
    """The endpoint that says `name` is serving, and whether it needs our client cert."""
    local = "https://127.0.0.1"
    ports = layout.ports
    urls = {
        "etcd": (f"http://127.0.0.1:{ports['etcd']}/health", False),
        "kube-apiserver": (f"{layout.server}/readyz", True),
        "kube-controller-manager": (f"{local}:{ports['controller-manager']}/healthz", False),
        "kube-scheduler": (f"{local}:{ports['scheduler']}/healthz", False),
    }
    return urls.get(name)


# -- kubectl -----------------------------------------------------------------------------


Kubectl = Callable[..., str]


def kubectl_for(binary: Path | str, kubeconfig: Path | str | None) -> Kubectl:
    """A kubectl runner: returns stdout, raises with stderr on failure."""

    def run(*args: str, stdin: str | None = None) -> str:
        config = [f"--kubeconfig={kubeconfig}"] if kubeconfig else []
        argv = [str(binary), *config, *args]
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    return run


def kubectl(layout: Layout, *args: str, stdin: str | None = None) -> str:
    return kubectl_for(layout.bin / "kubectl", layout.kubeconfig)(*args, stdin=stdin)


def ready_nodes(kube: Kubectl) -> set[str]:
    items = json.loads(kube("get", "nodes", "-o", "json"))["items"]
    return {
        n["metadata"]["name"]
        for n in items
        for c in n.get("status", {}).get("conditions", [])
        if c["type"] == "Ready" and c["status"] == "True"
    }


def default_service_account(layout: Layout) -> bool:
    try:
        kubectl(layout, "get", "serviceaccount", "default", "-n", "default")
    except RuntimeError:
        return False
    return True


def add_nodes(kube: Kubectl, count: int, model: str, gpus: int) -> None:
    """Create (or update) the simulated GPU nodes and the default StorageClass; wait until
    kwok has made the nodes Ready."""
    listing = nodes.node_list(count, model, gpus)
    listing["items"].append(nodes.storage_class())
    kube("apply", "-f", "-", stdin=yaml.safe_dump(listing))
    names = {f"gpu-node-{i}" for i in range(count)}
    wait_until(lambda: names <= ready_nodes(kube), f"{count} nodes Ready", None)


# -- up / down ---------------------------------------------------------------------------


def prepare(layout: Layout) -> None:
    """Certificates, kubeconfigs and the audit policy."""
    (layout.state / "logs").mkdir(parents=True, exist_ok=True)
    pki.generate(layout.pki, components.SERVICE_IP)
    for client in pki.CLIENTS:
        path = layout.component_kubeconfig(client.stem)
        path.write_text(components.kubeconfig(layout, client.stem))
        path.chmod(0o600)
    policy = yaml.safe_dump(components.AUDIT_POLICY)
    (layout.state / "audit-policy.yaml").write_text(policy)


def save(layout: Layout, procs: dict[str, Any], extra: dict[str, Any]) -> None:
    doc = {"bin": str(layout.bin), "ports": layout.ports, "processes": procs, **extra}
    (layout.state / "state.json").write_text(json.dumps(doc, indent=2))


def start_all(layout: Layout, options: dict[str, Any]) -> None:
    procs: dict[str, Any] = {}
    for name, command in components.COMMANDS.items():
        if name == "kwok":  # it watches its Logs kind from the start
            kubectl(layout, "apply", "-f", str(components.LOGS_CRD))
            wait_until(lambda: _established(layout, "logs.kwok.x-k8s.io"), "kwok's Logs CRD", None)
        procs[name] = spawn(layout, name, command(layout))
        save(layout, procs, options)  # after every start, so `down` can stop a partial `up`
        log(f"started {name} (pid {procs[name]['pid']})")
        endpoint = health_url(layout, name)
        if endpoint:
            url, cert = endpoint
            wait_until(functools.partial(http_ok, url, layout, cert), name, procs[name])
    wait_until(lambda: default_service_account(layout), "service-account controller", None)
    kube = kubectl_for(layout.bin / "kubectl", layout.kubeconfig)
    add_nodes(kube, options["nodes"], options["gpu"], options["gpus_per_node"])


def _established(layout: Layout, crd: str) -> bool:
    try:
        path = "jsonpath={.status.conditions[?(@.type=='Established')].status}"
        found = kubectl(layout, "get", "crd", crd, "-o", path)
    except RuntimeError:
        return False
    return found.strip() == "True"


def running(state: Path) -> bool:
    """Every recorded process alive and the apiserver ready."""
    saved = read_state(state)
    if not saved or not (state / "kubeconfig").exists():
        return False
    layout = layout_of(state, saved)
    procs = saved["processes"]
    if set(procs) != set(components.COMMANDS):
        return False
    alive = all(pid_alive(int(p["pid"]), str(p["binary"])) for p in procs.values())
    return alive and http_ok(f"{layout.server}/readyz", layout, True)


@contextlib.contextmanager
def locked(state: Path) -> Iterator[None]:
    """One `up` or `down` at a time per state directory."""
    state.parent.mkdir(parents=True, exist_ok=True)
    with open(state.parent / f".{state.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def up(nodes_count: int, gpu: str, gpus_per_node: int) -> Path:
    """Start the cluster unless it already runs; returns the admin kubeconfig path."""
    with locked(state_dir()):
        return _up(state_dir(), nodes_count, gpu, gpus_per_node)


def _up(state: Path, nodes_count: int, gpu: str, gpus_per_node: int) -> Path:
    if running(state):
        log(f"already up: {state / 'kubeconfig'}")
        return state / "kubeconfig"
    if state.exists():
        log(f"stale state in {state}; cleaning up first")
        _down(state)
    bin_dir = build.build()
    started = time.monotonic()
    ports = {name: free_port() for name in components.PORTS}
    layout = Layout(state=state, bin=bin_dir, ports=ports)
    options = {"nodes": nodes_count, "gpu": gpu, "gpus_per_node": gpus_per_node}
    prepare(layout)
    try:
        start_all(layout, options)
    except BaseException:
        log(f"start failed; logs in {state / 'logs'}")
        _down(state, keep_logs=True)
        raise
    log(f"up in {time.monotonic() - started:.1f}s: {nodes_count} x {gpus_per_node} {gpu}")
    log(f"apiserver {layout.server}, kubeconfig {layout.kubeconfig}")
    return layout.kubeconfig


def restart(name: str, down_for: float = 0.0, sig: int = signal.SIGKILL) -> float:
    """Stop one component (SIGKILL by default: a crash, not a shutdown), leave it down for
    `down_for` seconds, and start it again with the same command line: same ports, same data
    directory, same certificates. Returns the seconds from the new start until it serves."""
    state = state_dir()
    with locked(state):
        saved = read_state(state)
        if not saved or name not in saved["processes"]:
            raise RuntimeError(f"no {name} recorded in {state}: is the local cluster up?")
        layout = layout_of(state, saved)
        old = saved["processes"][name]
        stop(name, old, sig=sig)
        log(f"stopped {name} (pid {old['pid']}, signal {signal.Signals(sig).name})")
        time.sleep(down_for)
        saved["processes"][name] = spawn(layout, name, components.COMMANDS[name](layout))
        (state / "state.json").write_text(json.dumps(saved, indent=2))
        started = time.monotonic()
        endpoint = health_url(layout, name)
        if endpoint:
            url, cert = endpoint
            wait_until(functools.partial(http_ok, url, layout, cert), name, saved["processes"][name])
        took = time.monotonic() - started
        log(f"restarted {name} (pid {saved['processes'][name]['pid']}), serving after {took:.1f}s")
        return took


def down(keep_logs: bool = False) -> None:
    """Stop every process `up` recorded (by pid, newest first) and remove the state."""
    state = state_dir()
    with locked(state):
        _down(state, keep_logs)
        if not keep_logs:
            (state.parent / f".{state.name}.lock").unlink(missing_ok=True)


def _down(state: Path, keep_logs: bool = False) -> None:
    saved = read_state(state)
    if saved:
        for name, proc in reversed(list(saved["processes"].items())):
            stop(name, proc)
            log(f"stopped {name}")
    if not keep_logs:
        shutil.rmtree(state, ignore_errors=True)
        log(f"removed {state}")
    elif saved:
        (state / "state.json").unlink()


# -- status / env / CLI ------------------------------------------------------------------


def status() -> int:
    """Print what runs; exit status 0 only when the whole cluster is up."""
    state = state_dir()
    saved = read_state(state)
    if not saved:
        print(f"down (no state in {state})")
        return 1
    for name, proc in saved["processes"].items():
        alive = pid_alive(int(proc["pid"]), str(proc["binary"]))
        print(f"{name:24} pid {proc['pid']:>7}  {'running' if alive else 'NOT RUNNING'}")
    layout = layout_of(state, saved)
    ready = http_ok(f"{layout.server}/readyz", layout, True)
    print(f"{'apiserver':24} {layout.server}  {'ready' if ready else 'NOT READY'}")
    print(f"{'kubeconfig':24} {layout.kubeconfig}")
    print(f"{'audit log':24} {layout.audit_log}")
    print(f"{'logs':24} {state / 'logs'}")
    return 0 if running(state) else 1


def env_lines() -> list[str]:
    """Shell lines that point kubectl (the pinned one, first on PATH) at the cluster."""
    state = state_dir()
    return [
        f"export KUBECONFIG={state / 'kubeconfig'}",
        f"export PATH={build.bin_dir()}:$PATH",
        f"export QWEN_E2E_AUDIT_LOG={state / 'audit.log'}",
    ]


def default_nodes() -> tuple[int, str]:
    """Node count and GPU model when none is given: QWEN_E2E_NODES / QWEN_E2E_GPU, else 4 x H100
    (the same for `up`, the test suite and `make run`)."""
    return int(os.environ.get("QWEN_E2E_NODES", "4")), os.environ.get("QWEN_E2E_GPU", "H100")


def node_options(parser: argparse.ArgumentParser) -> None:
    count, gpu = default_nodes()
    parser.add_argument("--nodes", type=int, default=count)
    parser.add_argument("--gpu", choices=sorted(nodes.GPU_MODELS), default=gpu)
    parser.add_argument("--gpus-per-node", type=int, default=8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.devcluster.cluster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start the cluster (no-op when it already runs)")
    node_options(p_up)
    p_add = sub.add_parser("add-nodes", help="create simulated GPU nodes in $KUBECONFIG's cluster")
    node_options(p_add)
    p_restart = sub.add_parser("restart", help="kill one component and start it again (same ports and data)")
    p_restart.add_argument("component", choices=sorted(components.COMMANDS))
    p_restart.add_argument("--down-for", type=float, default=0.0, help="seconds to leave it down")
    sub.add_parser("down", help="stop every process and remove the state")
    sub.add_parser("status", help="say what runs")
    sub.add_parser("env", help='print exports; use as eval "$(python -m e2e.devcluster.cluster env)"')
    args = parser.parse_args(argv)
    if args.command == "up":
        up(args.nodes, args.gpu, args.gpus_per_node)
        print("\n".join(env_lines()))
        return 0
    if args.command == "add-nodes":
        binary = build.binary("kubectl")
        add_nodes(kubectl_for(binary if binary.exists() else "kubectl", None),
                  args.nodes, args.gpu, args.gpus_per_node)  # fmt: skip
        return 0
    if args.command == "restart":
        restart(args.component, args.down_for)
        return 0
    if args.command == "down":
        down()
        return 0
    if args.command == "status":
        return status()
    print("\n".join(env_lines()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
