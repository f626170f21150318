"""Scale: 10, 100 and 500 resources created at once, the operator beside a plain client.

On the local control plane, with simulated H200 nodes of 8 GPUs and the sample's tensor
parallel 4 (two replicas a node, as on a real cluster), for each size in turn:

* **the operator**, started fresh as its manifests' ServiceAccount (so the apiserver's audit
  log tells its requests apart): seconds from the apply until every resource is Ready;
  reconcile latency p50 and p99 (its histogram, interpolated as Prometheus'
  `histogram_quantile` does); API requests per resource from the apply to the last Ready,
  reads (get, list, watch) and writes, from the audit log; requests in the 10 s and the 30 s
  after the last Ready (settled means silent); then an unrelated label on every resource
  (one reconciliation each, nothing to do) and the requests that caused; peak RSS and CPU
  seconds of the process;
* **the baseline**, a plain client with no operator: it server-side applies the same
  rendered children and polls the StatefulSets until each is ready. Its seconds, its
  requests per resource, and the operator's time as a ratio of it.

Each run has its own namespace, deleted (pods gone, GPUs free) before the next.
`QWEN_BENCH_SIZES=10,100` picks the sizes.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from bench.operator import RECONCILIATIONS, Sampled, kubectl, sent_here
from bench.quantiles import histogram_quantile

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = yaml.safe_load((ROOT / "samples" / "qwen3-235b-thinking.yaml").read_text())
SIZES = tuple(int(n) for n in os.environ.get("QWEN_BENCH_SIZES", "10,100,500").split(","))
GPUS_PER_NODE, TENSOR = 8, 4
READS = ("get", "list", "watch")
LATENCY = "qwen_operator_reconcile_duration_seconds"


@dataclass
class Run:
    """What one side measured for one size."""

    seconds: float
    reads: float = 0
    writes: float = 0
    after_ready: tuple[int, int] = (0, 0)
    """Requests in the 10 s and in the 30 s after the last Ready."""
    latency: tuple[float, float] = (0.0, 0.0)
    relabel: tuple[float, float] = (0, 0)
    """Reconciliations an unrelated label caused, and the requests they sent."""
    rss_mib: float = 0
    cpu_s: float = 0


def nodes_for(replicas: int) -> int:
    """Simulated nodes for that many single-replica resources, and one to spare."""
    return replicas * TENSOR // GPUS_PER_NODE + 1


# -- the cluster's view ---------------------------------------------------------------------


def resources(prefix: str, count: int) -> list[dict[str, Any]]:
    return [{**SAMPLE, "metadata": {"name": f"{prefix}-{i}"}} for i in range(count)]


def ready_count(custom: client.CustomObjectsApi, namespace: str) -> int:
    items = custom.list_namespaced_custom_object(
        "serving.qwen-operator.io", "v1alpha1", namespace, "qwenthinkingdeployments"
    )["items"]
    return sum((i.get("status") or {}).get("phase") == "Ready" for i in items)


def wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.5)


def delete_namespace(core: client.CoreV1Api, namespace: str) -> None:
    """Delete and wait until it is gone: its pods' GPUs are free for the next run."""
    with contextlib.suppress(client.ApiException):
        core.delete_namespace(namespace)

    def gone() -> bool:
        try:
            core.read_namespace(namespace)
        except client.ApiException as exc:
            return exc.status == 404
        return False

    wait(gone, 900, f"namespace {namespace} deleted")


# -- the audit log --------------------------------------------------------------------------


def received(entry: dict[str, Any]) -> datetime:
    stamp = entry.get("requestReceivedTimestamp") or entry["stageTimestamp"]
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def requests_between(entries: list[dict[str, Any]], start: datetime, end: datetime) -> list[dict[str, Any]]:
    return [e for e in entries if start <= received(e) < end]


def kind_of(entry: dict[str, Any]) -> str:
    """`verb resource[/subresource]`, with `(dry run)` for a server-side dry run."""
    ref = entry.get("objectRef") or {}
    what = ref.get("resource", "?") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
    dry = " (dry run)" if "dryRun=" in entry.get("requestURI", "") else ""
    return f"{entry.get('verb')} {what}{dry}"


def breakdown(entries: list[dict[str, Any]], per: int) -> str:
    counts: dict[str, int] = {}
    for entry in entries:
        counts[kind_of(entry)] = counts.get(kind_of(entry), 0) + 1
    return ", ".join(f"{k} {n / per:.2f}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def split(entries: list[dict[str, Any]]) -> tuple[int, int]:
    reads = sum(e.get("verb") in READS for e in entries)
    return reads, len(entries) - reads


# -- the operator -----------------------------------------------------------------------------


def process_costs(pid: int) -> tuple[float, float]:
    """Peak RSS (VmHWM, MiB) and CPU seconds (user + system) of a running process."""
    status = Path(f"/proc/{pid}/status").read_text()
    hwm = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(hwm.split()[1]) / 1024, (int(fields[11]) + int(fields[12])) / ticks


def latency(before: Sampled, after: Sampled) -> tuple[float, float]:
    """p50 and p99 of the reconciliations between two scrapes."""
    buckets: dict[float, float] = {}
    for (name, labels), value in after.items():
        if name == f"{LATENCY}_bucket":
            le = float(dict(labels)["le"])
            buckets[le] = value - before.get((name, labels), 0)
    return histogram_quantile(0.5, buckets), histogram_quantile(0.99, buckets)


@contextlib.contextmanager
def operator_process(env: Environment) -> Iterator[Any]:
    from e2e.operator_fixtures import Operator, sa_kubeconfig

    token = kubectl("create", "token", "qwen-operator", "-n", "qwen-operator-system", "--duration=4h").strip()
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    # One pod name for every size's operator, as a restarted container keeps its pod's: it takes
    # back the Lease its killed predecessor held at once instead of waiting it out (15 s).
    op = Operator(sa_kubeconfig(env.cluster, token, work / "kubeconfig"), work / "operator.log",
                  pod_name="qwen-operator-bench")  # fmt: skip
    offset = env.audit_size()
    op.start()
    started_up(env, offset)
    try:
        yield op
    finally:
        op.kill()


def started_up(env: Environment, offset: int, quiet: float = 2.0) -> None:
    """Wait until the operator's start (discovery, lists, watches) is over: no request of its
    own in the audit log for `quiet` seconds. Timings begin after it, as a running operator's
    would."""
    from e2e.operator_fixtures import OPERATOR_USER, audit_entries

    deadline, seen, since = time.monotonic() + 60, -1, time.monotonic()
    while time.monotonic() < deadline:
        count = len(audit_entries(env.audit_log, offset, OPERATOR_USER))
        if count != seen:
            seen, since = count, time.monotonic()
        elif count > 0 and time.monotonic() - since >= quiet:
            return
        time.sleep(0.25)
    raise RuntimeError("the operator's start did not settle within 60 s")


def run_operator(env: Environment, count: int) -> Run:
    from e2e.operator_fixtures import OPERATOR_USER, audit_entries

    namespace = f"scale-op-{count}"
    env.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    with operator_process(env) as op:
        offset, scraped = env.audit_size(), op.metrics()
        start = datetime.now(UTC)
        started = time.monotonic()
        kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(resources("qtd", count)))
        wait(lambda: ready_count(env.custom, namespace) == count, 1800, f"{count} resources Ready")
        seconds, ready_at = time.monotonic() - started, datetime.now(UTC)
        time.sleep(31)
        entries = [  # the leader's Lease renewals (one per 5 s) are its heartbeat, not work on resources
            e for e in audit_entries(env.audit_log, offset, OPERATOR_USER)
            if (e.get("objectRef") or {}).get("resource") != "leases"
        ]  # fmt: skip
        until_ready = requests_between(entries, start, ready_at)
        reads, writes = split(until_ready)
        print(
            f"  operator, {count} resources, requests per resource until Ready: "
            f"{breakdown(until_ready, count)}"
        )
        if env.audit_size() < offset:
            raise RuntimeError("the audit log rotated during the run; its counts would be wrong")
        ten = len(requests_between(entries, ready_at, ready_at + timedelta(seconds=10)))
        thirty = len(requests_between(entries, ready_at, ready_at + timedelta(seconds=30)))
        lat = latency(scraped, op.metrics())
        relabel = relabel_all(op, namespace, count)
        rss, cpu = process_costs(op.proc.pid)
    return Run(seconds, reads / count, writes / count, (ten, thirty), lat, relabel, rss, cpu)


def relabel_all(op: Any, namespace: str, count: int) -> tuple[float, float]:
    """An unrelated label on every resource: the reconciliations and the requests they sent."""
    before = op.metrics()
    sent = op.counter("qwen_operator_api_requests_total")
    kubectl("label", "qtd", "--all", "-n", namespace, f"bench-run={os.getpid()}", "--overwrite")

    def passes() -> float:
        return op.counter(RECONCILIATIONS) - sum(v for (n, _), v in before.items() if n == RECONCILIATIONS)

    wait(lambda: passes() >= count, 120, f"{count} reconciliations after the label")
    time.sleep(2)
    return passes(), op.counter("qwen_operator_api_requests_total") - sent


# -- the baseline -------------------------------------------------------------------------------


def run_baseline(env: Environment, count: int) -> Run:
    """A plain client: server-side apply of the same children, then poll the StatefulSets."""
    from qwen_operator import api
    from qwen_operator.children import render
    from qwen_operator.process import kube

    namespace = f"scale-plain-{count}"
    env.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    plain = kube.Kube(env.api_client)

    before, polls = sent_here(), 0
    started = time.monotonic()
    for doc in resources("plain", count):
        res = api.parse_resource({**doc, "metadata": {**doc["metadata"], "namespace": namespace}})
        for child in render.render(res):
            plain.apply(child)
    while True:
        polls += 1
        items = env.apps.list_namespaced_stateful_set(namespace).items
        if len(items) == count and all((s.status.ready_replicas or 0) >= 1 for s in items):
            break
        if time.monotonic() - started > 1800:
            raise RuntimeError(f"baseline: not every StatefulSet ready in 1800 s ({count})")
        time.sleep(0.5)
    return Run(time.monotonic() - started, reads=polls / count, writes=(sent_here() - before) / count)


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Environment:
    """The cluster and the clients the bench reads it with (as admin)."""

    cluster: Any
    api_client: client.ApiClient

    @property
    def audit_log(self) -> Path:
        return Path(self.cluster.audit_log)

    def audit_size(self) -> int:
        return self.audit_log.stat().st_size

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api_client)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api_client)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api_client)


def table(results: dict[int, tuple[Run, Run]]) -> str:
    head = (
        "| resources | operator s | plain s | ratio | reads/res | writes/res | plain req/res | "
        "req 10 s after Ready | req 30 s after | p50 ms | p99 ms | relabel req | RSS MiB | CPU s |"
    )
    rows = [head, "|" + " --- |" * 14]
    for count, (op, plain) in sorted(results.items()):
        rows.append(
            f"| {count} | {op.seconds:.1f} | {plain.seconds:.1f} | {op.seconds / plain.seconds:.2f} | "
            f"{op.reads:.2f} | {op.writes:.2f} | {plain.reads + plain.writes:.1f} | {op.after_ready[0]} | "
            f"{op.after_ready[1]} | {op.latency[0] * 1000:.0f} | {op.latency[1] * 1000:.0f} | "
            f"{op.relabel[1]:.0f} in {op.relabel[0]:.0f} passes | {op.rss_mib:.0f} | {op.cpu_s:.1f} |"
        )
    return "\n".join(rows)


@contextlib.contextmanager
def environment(nodes: int, state: str = "bench-scale") -> Iterator[Environment]:
    """The local control plane with `nodes` simulated H200 nodes (its own state directory),
    the operator's manifests installed and the in-cluster Deployment scaled to 0."""
    from e2e.conftest import Cluster
    from e2e.devcluster import cluster
    from e2e.devcluster.kube import wait_established
    from e2e.devcluster.toolchain import build

    os.environ["QWEN_E2E_STATE_DIR"] = str(ROOT / ".state" / state)
    kubeconfig = cluster.up(nodes, "H200", GPUS_PER_NODE)
    os.environ["KUBECONFIG"] = str(kubeconfig)
    os.environ["PATH"] = f"{build.bin_dir()}{os.pathsep}{os.environ['PATH']}"
    try:
        kubectl("apply", "-k", str(ROOT / "manifests"))
        wait_established("crd/qwenthinkingdeployments.serving.qwen-operator.io")
        kubectl("scale", "deployment/qwen-operator", "-n", "qwen-operator-system", "--replicas=0")
        api_client = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        print(f"cluster: {nodes} simulated H200 nodes x {GPUS_PER_NODE} GPUs, TP {TENSOR} replicas")
        yield Environment(
            Cluster(kubeconfig, local=True, audit_log=kubeconfig.parent / "audit.log"), api_client
        )
    finally:
        cluster.down()


def main() -> int:
    results: dict[int, tuple[Run, Run]] = {}
    try:
        with environment(nodes_for(max(SIZES))) as env:
            for count in SIZES:
                op = run_operator(env, count)
                delete_namespace(env.core, f"scale-op-{count}")
                plain = run_baseline(env, count)
                delete_namespace(env.core, f"scale-plain-{count}")
                results[count] = (op, plain)
                load = "/".join(f"{v:.1f}" for v in os.getloadavg())
                print(f"{count} resources: operator {op.seconds:.1f} s, plain client {plain.seconds:.1f} s "
                      f"(load average {load}: the cluster, the operator and the client share "
                      f"{os.cpu_count()} CPUs)", flush=True)  # fmt: skip
    except RuntimeError as exc:
        print(f"scale: failed: {exc}")
        return 1
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
