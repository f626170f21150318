"""Operator costs, side by side with a baseline in the same run.

In memory (no cluster, no fake):
* render: the sample resource into its four children;
* decide, for a create (no child yet) and for a pass with nothing to do: the time, and the
  requests the pass sends, counted as `act` sends them (applies, a dry run where one is due, the
  status patch, events). Reads are none by
  construction: `observe` reads the watches' cache.

On the local control plane (started in its own state directory and stopped afterwards, or
$KUBECONFIG's), with simulated GPU nodes:
* the operator as a process: 1 resource, then 99 more applied at once; seconds until Ready;
  the API requests it sent per resource, by verb (its own counter); then an unrelated label
  on every resource (one reconciliation each, nothing to do): requests per reconciliation;
  its resident memory (VmRSS, and the peak VmHWM) with 1 and with 100 resources;
* the baseline: a plain client that server-side applies the same rendered children for 100
  resources and polls until every StatefulSet is ready, with no operator: seconds and
  requests per resource.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from qwen_operator import api
from qwen_operator.children import render
from qwen_operator.process import kube, metrics
from qwen_operator.reconcile import decide, diff, snapshot
from qwen_operator.reconcile.act import Actor
from qwen_operator.reconcile.decide import Desired
from qwen_operator.reconcile.observe import Observed
from qwen_operator.reconcile.status import apply_merge_patch

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = yaml.safe_load((ROOT / "samples" / "qwen3-235b-thinking.yaml").read_text())
ROUNDS = 200
MANY = 100
NODES, GPUS_PER_NODE = 26, 8
"""Room for the operator's 100 TP-1 replicas and the baseline's 100."""
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def per_call_ms(fn: Callable[[], object], rounds: int = ROUNDS) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        fn()
    return (time.perf_counter() - started) * 1000 / rounds


class Counted:
    """A `KubeApi` that answers every write as the apiserver would (the object back) and counts
    them by kind: the requests `act` itself sends for a Desired."""

    def __init__(self) -> None:
        self.sent: dict[str, int] = {}

    def _count(self, what: str) -> None:
        self.sent[what] = self.sent.get(what, 0) + 1

    def apply(self, manifest: Mapping[str, Any], dry_run: bool = False) -> dict[str, Any]:
        self._count("dry run" if dry_run else "apply")
        return {**manifest, "metadata": {**manifest["metadata"], "resourceVersion": "1"}}

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self._count("lookup")
        return None

    def delete(self, kind: str, namespace: str, name: str, propagation: str = "Background") -> dict[str, Any]:
        self._count("delete")
        return {}

    def delete_pod(self, namespace: str, name: str, uid: str) -> dict[str, Any]:
        self._count("pod delete")
        return {}

    def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        self._count("status patch")
        return {}

    def post_event(self, owner: snapshot.Resource, type_: str, reason: str, message: str, now: str) -> None:
        self._count("event")


def writes(desired: Desired) -> str:
    """The requests `act` sends for a Desired, in all and by kind."""
    counted = Counted()
    Actor(counted).act(desired)
    parts = ", ".join(f"{n} {what}" for what, n in counted.sent.items())
    return f"{sum(counted.sent.values())} writes: {parts}" if counted.sent else "0 writes"


def bench_memory() -> None:
    raw = {**SAMPLE, "metadata": {**SAMPLE["metadata"], "namespace": "ns", "uid": "u", "generation": 1}}
    res = api.parse_resource(raw)
    print(f"render (4 children):               {per_call_ms(lambda: render.render(res)):7.2f} ms")
    resource = snapshot.resource_from(raw)
    new = Observed(resource)
    first = decide.decide(new, NOW)
    live = [diff.with_hash(m) for m in render.render(res)]
    for child in live:
        child["metadata"] |= {
            "uid": "c",
            "resourceVersion": "1",
            "managedFields": [{"manager": "qwen-operator"}],
        }
        if child["kind"] == "StatefulSet":
            child["status"] = {
                "observedGeneration": 0,
                "replicas": 1,
                "readyReplicas": 1,
                "updatedReplicas": 1,
            }
    children = tuple(snapshot.child_from(c) for c in live)
    status: dict[str, Any] = {}
    for _ in range(3):  # the passes a create takes until nothing is left to do
        desired = decide.decide(Observed(snapshot.resource_from({**raw, "status": status}), children), NOW)
        status = apply_merge_patch(status, desired.status_patch or {})
    idle = Observed(snapshot.resource_from({**raw, "status": status}), children)
    print(f"decide, a create:                  {per_call_ms(lambda: decide.decide(new, NOW)):7.2f} ms "
          f"(0 reads, {writes(first)})")  # fmt: skip
    nothing = decide.decide(idle, NOW)
    print(f"decide, nothing to do:             {per_call_ms(lambda: decide.decide(idle, NOW)):7.2f} ms "
          f"(0 reads, {writes(nothing)})")  # fmt: skip
    print(
        "  baseline, the reconciler before issue 10: 8 live reads per pass with nothing to do "
        "(resource, StatefulSet, 3 children, pods, nodes, API discovery)"
    )


# -- on a cluster -----------------------------------------------------------------------------


def kubectl(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True, check=True)
    return done.stdout


Sampled = dict[tuple[str, tuple[tuple[str, str], ...]], float]
RECONCILIATIONS = "qwen_operator_reconciliations_total"


@dataclass(frozen=True)
class Endpoint:
    """The operator's /metrics (HTTPS) and a token RBAC lets read it (e2e/devcluster/scraper.py)."""

    url: str
    token: str


def scrape(endpoint: Endpoint) -> Sampled:
    from e2e.devcluster import scraper

    return scraper.scrape(endpoint.url, endpoint.token)


def by_verb(sampled: Sampled) -> dict[str, float]:
    out: dict[str, float] = {}
    for (name, labels), value in sampled.items():
        if name == "qwen_operator_api_requests_total":
            verb = dict(labels)["verb"]
            out[verb] = out.get(verb, 0) + value
    return out


def total(sampled: Sampled, name: str) -> float:
    return sum(v for (n, _), v in sampled.items() if n == name)


def memory_mib(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM (the peak) of a process, in MiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def spec() -> dict[str, Any]:
    """TP 1, so that 200 replicas fit the simulated GPUs; the weights would not fit one real GPU,
    so preflight is off (else the memory plan rightly stalls them)."""
    out = {**SAMPLE["spec"], "parallelism": {"tensor": 1}}
    out["context"] = {**out["context"], "preflight": False}
    return out


def docs(names: list[str]) -> list[dict[str, Any]]:
    return [{**SAMPLE, "metadata": {"name": n}, "spec": spec()} for n in names]


def wait_ready(namespace: str, names: list[str], since: float, timeout: float = 600) -> float:
    """Seconds from `since` until every named resource reports Ready."""
    pending = set(names)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        out = kubectl("get", "qtd", "-n", namespace, "-o", "jsonpath={range .items[*]}{.metadata.name} "
                      "{.status.phase}{\"\\n\"}{end}")  # fmt: skip
        pending -= {line.split()[0] for line in out.splitlines() if line.endswith(" Ready")}
        time.sleep(0.2)
    if pending:
        raise RuntimeError(f"{len(pending)} of {len(names)} resources not Ready in {timeout:.0f} s")
    return time.monotonic() - since


def label_all(namespace: str, endpoint: Endpoint, count: int) -> tuple[float, dict[str, float]]:
    """An unrelated label on every resource: reconciliations made and requests sent."""
    before = scrape(endpoint)
    kubectl("label", "qtd", "--all", "-n", namespace, f"bench-run={os.getpid()}", "--overwrite")
    deadline = time.monotonic() + 60
    passes = 0.0
    while time.monotonic() < deadline and passes < count:
        time.sleep(0.2)
        passes = total(scrape(endpoint), RECONCILIATIONS) - total(before, RECONCILIATIONS)
    time.sleep(2)
    return passes, since(endpoint, before)


def fmt(requests: dict[str, float], per: int) -> str:
    if not requests:
        return "0"
    return (
        f"{sum(requests.values()) / per:.1f} ("
        + ", ".join(f"{verb} {n / per:.1f}" for verb, n in sorted(requests.items()))
        + ")"
    )


def since(endpoint: Endpoint, before: Sampled) -> dict[str, float]:
    """Requests by verb the operator sent since `before` was scraped (verbs with none left out)."""
    old = by_verb(before)
    return {v: n - old.get(v, 0) for v, n in by_verb(scrape(endpoint)).items() if n - old.get(v, 0)}


def create(namespace: str, endpoint: Endpoint, names: list[str]) -> tuple[float, dict[str, float]]:
    """Apply the resources at once: seconds until all are Ready, requests the operator sent."""
    before = scrape(endpoint)
    started = time.monotonic()
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(docs(names)))
    seconds = wait_ready(namespace, names, started)
    time.sleep(3)  # the last status writes after Ready
    return seconds, since(endpoint, before)


def run_operator(namespace: str, endpoint: Endpoint, pid: int) -> None:
    seconds, sent = create(namespace, endpoint, ["bench-0"])
    rss, _ = memory_mib(pid)
    print(f"operator, 1 resource: Ready in {seconds:.1f} s; requests per create {fmt(sent, 1)}; "
          f"RSS {rss:.0f} MiB")  # fmt: skip
    passes, sent = label_all(namespace, endpoint, 1)
    print(f"operator, 1 resource relabelled: {passes:.0f} reconciliation(s), requests {fmt(sent, 1)}")
    many = [f"bench-{i}" for i in range(1, MANY)]
    seconds, sent = create(namespace, endpoint, many)
    rss, peak = memory_mib(pid)
    print(f"operator, {MANY} resources: {len(many)} applied at once, all Ready in {seconds:.1f} s; "
          f"requests per create {fmt(sent, len(many))}; RSS {rss:.0f} MiB (peak {peak:.0f} MiB)")  # fmt: skip
    passes, sent = label_all(namespace, endpoint, MANY)
    print(f"operator, {MANY} resources relabelled: {passes:.0f} reconciliations, requests {fmt(sent, MANY)} "
          "per reconciliation")  # fmt: skip
    before = scrape(endpoint)
    time.sleep(10)
    print(f"operator, {MANY} Ready resources left alone 10 s: requests {fmt(since(endpoint, before), 1)}")


def sent_here() -> float:
    """Requests this process sent through `kube.Kube` (the operator's own counter, in-process)."""
    return sum(
        s.value for f in metrics.API_REQUESTS.collect() for s in f.samples if s.name.endswith("_total")
    )


def run_baseline(namespace: str) -> None:
    """A plain client: server-side apply of the same children, then poll the StatefulSets."""
    api_client = config.new_client_from_config(config_file=os.environ["KUBECONFIG"])  # type: ignore[no-untyped-call]
    plain = kube.Kube(api_client)
    apps = client.AppsV1Api(api_client)
    before = sent_here()
    names = [f"plain-{i}" for i in range(MANY)]
    since = time.monotonic()
    for name in names:
        res = api.parse_resource(
            {**SAMPLE, "metadata": {"name": name, "namespace": namespace}, "spec": spec()}
        )
        for child in render.render(res):
            plain.apply(child)
    reads = 0
    while True:
        reads += 1
        items = apps.list_namespaced_stateful_set(namespace).items
        if len(items) == MANY and all((s.status.ready_replicas or 0) >= 1 for s in items):
            break
        if time.monotonic() - since > 600:
            raise RuntimeError("baseline: not every StatefulSet ready in 600 s")
        time.sleep(0.2)
    seconds = time.monotonic() - since
    applies = sent_here() - before
    print(f"baseline, plain client, {MANY} resources: all ready in {seconds:.1f} s; "
          f"requests per resource {(applies + reads) / MANY:.1f} "
          f"(apply {applies / MANY:.1f}, list {reads / MANY:.2f})")  # fmt: skip


def bench_cluster() -> bool:
    from e2e.devcluster import cluster, scraper
    from e2e.devcluster.kube import unreachable, wait_established, wait_for
    from e2e.devcluster.toolchain import build

    started_here = False
    gone = unreachable(os.environ["KUBECONFIG"]) if os.environ.get("KUBECONFIG") else None
    if gone is not None:
        print(f"cluster: not run ({gone})")
        return False
    if not os.environ.get("KUBECONFIG"):
        if build.missing():
            print("cluster: not run (no KUBECONFIG and no control-plane binaries; `make toolchain`)")
            return False
        os.environ["QWEN_E2E_STATE_DIR"] = str(ROOT / ".state" / "bench-cluster")
        os.environ["KUBECONFIG"] = str(cluster.up(NODES, "H100", GPUS_PER_NODE))
        os.environ["PATH"] = f"{build.bin_dir()}{os.pathsep}{os.environ['PATH']}"
        started_here = True
    metrics_port, health_port = cluster.free_port(), cluster.free_port()
    env = {**os.environ, "QWEN_OPERATOR_METRICS_PORT": str(metrics_port),
           "QWEN_OPERATOR_HEALTH_PORT": str(health_port), "QWEN_OPERATOR_HTTP_HOST": "127.0.0.1"}  # fmt: skip
    log = tempfile.NamedTemporaryFile(prefix="bench-operator-", suffix=".log", delete=False)  # noqa: SIM115
    namespace, plain = f"bench-{os.getpid()}", f"bench-plain-{os.getpid()}"
    operator = None
    try:
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
        wait_established("crd/qwenthinkingdeployments.serving.qwen-operator.io")
        kubectl("create", "namespace", namespace)
        kubectl("create", "namespace", plain)
        kubectl("apply", "-f", str(ROOT / "manifests" / "clusterrole-metrics-reader.yaml"))
        endpoint = Endpoint(f"https://127.0.0.1:{metrics_port}/metrics", scraper.reader_token())
        operator = subprocess.Popen([sys.executable, "-m", "qwen_operator.cli", "run", "-A"], stdout=log,
                                    stderr=subprocess.STDOUT, env=env)  # fmt: skip
        healthz = f"http://127.0.0.1:{health_port}/healthz"
        wait_for(lambda: urllib.request.urlopen(healthz, timeout=2).status == 200,
                 60, f"operator /healthz (log: {log.name})")  # fmt: skip
        print(f"cluster: {NODES} simulated nodes x {GPUS_PER_NODE} GPUs, TP 1 replicas")
        run_operator(namespace, endpoint, operator.pid)
        run_baseline(plain)
        return True
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"cluster: failed: {exc} (operator log: {log.name})")
        return False
    finally:
        if operator is not None:
            cluster.stop_child(operator)
        for ns in (namespace, plain):
            subprocess.run(
                ["kubectl", "delete", "namespace", ns, "--wait=false"], capture_output=True, check=False
            )
        if started_here:
            cluster.down()


def main() -> int:
    bench_memory()
    return 0 if bench_cluster() else 1


if __name__ == "__main__":
    sys.exit(main())
