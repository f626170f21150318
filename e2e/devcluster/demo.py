"""`make run` and `make demo`: the operator in the foreground, on $KUBECONFIG or a local cluster.

    python -m e2e.devcluster.demo run    # install the CRD, run the operator until Ctrl-C
    python -m e2e.devcluster.demo demo   # the same, plus the sample resource, its progress, what to try

Without $KUBECONFIG the local control plane (e2e.devcluster.cluster: simulated GPU nodes) is
started, or reused when it already runs; it stays up afterwards (`make cluster-down` stops it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from e2e.devcluster import cluster
from e2e.devcluster.kube import unreachable, wait_established
from e2e.devcluster.toolchain import build

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "qwenthinkingdeployments.serving.qwen-operator.io.yaml"
SAMPLE = REPO / "samples" / "qwen3-235b-thinking.yaml"
NAME = "qwen3-thinking"
READY_TIMEOUT = 300.0


def say(message: str) -> None:
    print(f"\033[1m==> {message}\033[0m" if sys.stdout.isatty() else f"==> {message}", flush=True)


def kubectl(*args: str, capture: bool = False) -> str:
    done = subprocess.run(["kubectl", *args], capture_output=capture, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed{': ' + done.stderr if capture else ''}")
    return done.stdout or ""


def connect() -> None:
    """Point KUBECONFIG (and PATH, for the pinned kubectl) at the cluster to use."""
    if os.environ.get("KUBECONFIG"):
        why = unreachable(os.environ["KUBECONFIG"])
        if why is not None:
            raise SystemExit(why)
        say(f"using the cluster of KUBECONFIG={os.environ['KUBECONFIG']}")
    else:
        say("no KUBECONFIG: starting (or reusing) the local control plane with simulated GPU nodes")
        kubeconfig = cluster.up(*cluster.default_nodes(), 8)
        os.environ["KUBECONFIG"] = str(kubeconfig)
    if (build.bin_dir() / "kubectl").exists():
        os.environ["PATH"] = f"{build.bin_dir()}{os.pathsep}{os.environ['PATH']}"
    if shutil.which("kubectl") is None:
        raise SystemExit("kubectl not found on PATH (run `make toolchain` for the pinned one)")


def install_crd() -> None:
    say(f"installing the CRD ({CRD.relative_to(REPO)})")
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    crd_name = yaml.safe_load(CRD.read_text())["metadata"]["name"]
    try:
        wait_established(f"crd/{crd_name}")
    except AssertionError as exc:
        raise SystemExit(str(exc)) from None
    for _ in range(60):  # Established comes a moment before the API serves the new kind
        if subprocess.run(["kubectl", "get", "qtd", "-A"], capture_output=True, check=False).returncode == 0:
            return
        time.sleep(0.5)
    raise SystemExit("the CRD is Established but the API has not served qtd for 30 s")


def operator_argv() -> list[str]:
    return [sys.executable, "-m", "qwen_operator.cli", "run", "--all-namespaces"]


def status_line(obj: dict[str, Any]) -> str:
    st = obj.get("status") or {}
    ready = next((c for c in st.get("conditions") or [] if c["type"] == "Ready"), {})
    detail = f"{ready.get('reason', '')}: {ready.get('message', '')}".strip(": ")
    return (
        f"phase={st.get('phase', '-')} replicas={st.get('readyReplicas', 0)}/{st.get('replicas', 0)} {detail}"
    )


def wait_ready(operator: subprocess.Popen[bytes]) -> bool:
    deadline, last = time.monotonic() + READY_TIMEOUT, ""
    while time.monotonic() < deadline and operator.poll() is None:
        obj = json.loads(kubectl("get", "qtd", NAME, "-o", "json", capture=True))
        line = status_line(obj)
        if line != last:
            print(f"    {line}", flush=True)
            last = line
        st = obj.get("status") or {}
        if st.get("phase") == "Ready" and st.get("observedGeneration") == obj["metadata"]["generation"]:
            return True
        time.sleep(1)
    return False


NEXT_STEPS = """\
Try next (in another terminal):
  export KUBECONFIG={kubeconfig}{path}
  kubectl scale qtd/{name} --replicas=3          # three replicas of 4 GPUs each
  kubectl patch qtd/{name} --type=merge -p '{{"spec":{{"context":{{"maxModelLen":131072}}}}}}'
  kubectl get qtd -o wide -w                     # watch it roll out
  kubectl scale statefulset/{name} --replicas=5  # a manual change: the operator reverts it
  # out-of-memory, each cause its cure (watch CONTEXT, and the UtilizationReduced condition):
  python -m e2e.devcluster.simulate oom {name}-0 --estimate 245408  # the KV cache: context 244736
  python -m e2e.devcluster.simulate cuda-oom {name}-0               # CUDA graphs: utilization 0.92 -> 0.89
  python -m e2e.devcluster.simulate free-memory {name}-0 --free 70 --total 79.6  # another process: 0.86
  python -m e2e.devcluster.simulate weights-oom {name}-0            # no cure: Stalled, InsufficientGPUMemory
  python -m e2e.devcluster.simulate oom-killed {name}-0             # host memory: Stalled, HostOutOfMemory
  kubectl describe qtd/{name}                    # status, conditions and events
  kubectl delete qtd/{name}                      # every child goes with it
The operator keeps running here (log: {log}); Ctrl-C stops it.
`make cluster-down` stops the local cluster."""


def demo() -> int:
    log_path = REPO / ".state" / "demo-operator.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    say(f"starting the operator (log: {log_path.relative_to(REPO)})")
    with log_path.open("ab") as log:
        operator = subprocess.Popen(operator_argv(), stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        say(f"applying {SAMPLE.relative_to(REPO)}")
        kubectl("apply", "-f", str(SAMPLE))
        say("waiting for Ready")
        if not wait_ready(operator):
            say(f"not Ready in time; operator log tail:\n{cluster.log_tail(log_path)}")
            return 1
        say("kubectl get qtd -o wide")
        kubectl("get", "qtd", "-o", "wide")
        say(f"kubectl describe qtd {NAME}")
        kubectl("describe", "qtd", NAME)
        path = f"\n  export PATH={build.bin_dir()}:$PATH" if (build.bin_dir() / "kubectl").exists() else ""
        print(NEXT_STEPS.format(kubeconfig=os.environ["KUBECONFIG"], path=path, name=NAME, log=log_path))
        return operator.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        cluster.stop_child(operator)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.devcluster.demo", description=__doc__)
    parser.add_argument("mode", choices=("run", "demo"))
    args = parser.parse_args(argv)
    connect()
    install_crd()
    if args.mode == "demo":
        return demo()
    say("running the operator in the foreground (Ctrl-C stops it)")
    os.execv(sys.executable, operator_argv())


if __name__ == "__main__":
    raise SystemExit(main())
