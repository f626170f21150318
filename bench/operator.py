"""Operator costs: rendering, one reconciliation in memory, and create-to-Ready on a cluster.

* render: the sample resource into its four children (templates, YAML parse, checks);
* reconcile, in memory (tests/test_reconciler.FakeKube): the first pass (applies all four
  children, writes status) and an idle pass (reads only, no write) - the CPU the operator
  spends per event, without the network;
* on a cluster (the local control plane, started in its own state directory and stopped
  afterwards, or $KUBECONFIG's): the operator as a process, `RESOURCES` resources applied
  at once, seconds from `kubectl apply` until each reports Ready, and the operator's own
  reconcile-duration histogram. Skipped, with a note, when neither is available.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from qwen_operator import render
from qwen_operator.reconciler import Reconciler
from tests.test_reconciler import FakeKube

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = yaml.safe_load((ROOT / "samples" / "qwen3-235b-thinking.yaml").read_text())
ROUNDS = 200
RESOURCES = 10


def per_call_ms(fn: Any, rounds: int = ROUNDS) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        fn()
    return (time.perf_counter() - started) * 1000 / rounds


def bench_memory() -> None:
    resource = {**SAMPLE, "metadata": {"name": "q", "namespace": "ns", "uid": "u"}}
    print(f"render (4 children):          {per_call_ms(lambda: render.render(resource)):7.2f} ms")

    def first() -> None:
        Reconciler(FakeKube(SAMPLE["spec"])).reconcile(("ns", "q"))  # type: ignore[arg-type]

    kube = FakeKube(SAMPLE["spec"])
    reconciler = Reconciler(kube)  # type: ignore[arg-type]
    reconciler.reconcile(("ns", "q"))
    kube.calls.clear()
    idle_ms = per_call_ms(lambda: reconciler.reconcile(("ns", "q")))
    reads = len(kube.calls) / ROUNDS
    print(
        f"reconcile, first pass:        {per_call_ms(first):7.2f} ms (4 applies, 4 dry runs, 1 status patch)"
    )
    print(f"reconcile, nothing to do:     {idle_ms:7.2f} ms ({reads:.0f} reads, {len(kube.writes())} writes)")


def kubectl(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True, check=True)
    return done.stdout


def ready_times(namespace: str, names: list[str], since: float, timeout: float = 300) -> dict[str, float]:
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < len(names) and time.monotonic() < deadline:
        out = kubectl("get", "qtd", "-n", namespace, "-o", "jsonpath={range .items[*]}{.metadata.name} "
                      "{.status.phase}{\"\\n\"}{end}")  # fmt: skip
        for line in out.splitlines():
            name, _, phase = line.partition(" ")
            if phase == "Ready" and name not in seen:
                seen[name] = time.monotonic() - since
        time.sleep(0.1)
    return seen


def healthy(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
        return int(resp.status) == 200


def histogram(port: int) -> tuple[float, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    values = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("qwen_operator_reconcile_duration_seconds_")
    }
    count = values.get("qwen_operator_reconcile_duration_seconds_count", 0.0)
    total = values.get("qwen_operator_reconcile_duration_seconds_sum", 0.0)
    return count, total


def bench_cluster() -> bool:
    from e2e.devcluster import cluster
    from e2e.devcluster.kube import wait_for
    from e2e.devcluster.toolchain import build

    started_here = False
    if not os.environ.get("KUBECONFIG"):
        if build.missing():
            print("cluster: not run (no KUBECONFIG and no control-plane binaries; `make toolchain`)")
            return False
        os.environ["QWEN_E2E_STATE_DIR"] = str(ROOT / ".state" / "bench-cluster")
        os.environ["KUBECONFIG"] = str(cluster.up(4, "H100", 8))
        os.environ["PATH"] = f"{build.bin_dir()}{os.pathsep}{os.environ['PATH']}"
        started_here = True
    port = cluster.free_port()
    env = {**os.environ, "QWEN_OPERATOR_HTTP_PORT": str(port), "QWEN_OPERATOR_HTTP_HOST": "127.0.0.1"}
    log = tempfile.NamedTemporaryFile(prefix="bench-operator-", suffix=".log", delete=False)  # noqa: SIM115
    namespace = f"bench-{os.getpid()}"
    operator = None
    try:
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
        kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/qwenthinkingdeployments.serving.qwen-operator.io",
        )
        kubectl("create", "namespace", namespace)
        operator = subprocess.Popen([sys.executable, "-m", "qwen_operator.cli", "run", "-A"], stdout=log,
                                    stderr=subprocess.STDOUT, env=env)  # fmt: skip
        wait_for(lambda: healthy(port), 60, f"operator /healthz (log: {log.name})")  # not timed
        names = [f"bench-{i}" for i in range(RESOURCES)]
        # TP 1 so that 10 replicas fit the 32 simulated GPUs; the weights would not fit one real
        # GPU, so preflight is off (else the memory plan stalls them, as it should).
        spec = {**SAMPLE["spec"], "parallelism": {"tensor": 1}}
        spec["context"] = {**spec["context"], "preflight": False}
        docs = [{**SAMPLE, "metadata": {"name": n}, "spec": spec} for n in names]
        since = time.monotonic()
        kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(docs))
        times = ready_times(namespace, names, since)
        count, total = histogram(port)
        if len(times) < len(names):
            print(f"cluster: only {len(times)} of {len(names)} Ready (operator log: {log.name})")
            return False
        values = sorted(times.values())
        median, slowest = statistics.median(values), values[-1]
        print(f"cluster: {RESOURCES} resources applied at once, apply -> Ready: median {median:.2f} s, "
              f"max {slowest:.2f} s (kwok pods turn Ready at once: operator + control plane)")  # fmt: skip
        mean_ms = 1000 * total / max(count, 1)
        print(f"cluster: {count:.0f} reconciliations, mean {mean_ms:.1f} ms each (API calls included)")
        return True
    finally:
        if operator is not None:
            cluster.stop_child(operator)
        subprocess.run(
            ["kubectl", "delete", "namespace", namespace, "--wait=false"], capture_output=True, check=False
        )
        if started_here:
            cluster.down()


def main() -> int:
    bench_memory()
    return 0 if bench_cluster() else 1


if __name__ == "__main__":
    sys.exit(main())
