"""A rollout under load on real vLLM processes: requests sent, failed and cut, and its duration.

Why: issue 24 promises changes that lose no request. A rollout stops every server once, and an
answer in flight when its server stops is cut unless the server drains. So this runs the whole
path on the local cluster: the operator rolls a 3-replica resource after a spec change (an env
var, which changes the pod template) while a client streams completions to the replicas, and
the harness (e2e/devcluster/realvllm/harness.py) backs each simulated pod with the launcher and
the CPU vLLM on the tiny checkpoint, started from the pod's own command. The harness stops a
deleted pod as a kubelet does (`graceful_stop`): the preStop sleep while the process still
serves, SIGTERM, SIGKILL when the grace period ends, and the pod held until its process is gone,
so the StatefulSet replaces it only then, as on a real node.

The client routes as a Service does: each request to one of the endpoints its EndpointSlices
list as ready (a terminating pod is not), read every half second, each endpoint mapped to the
harness's process of that pod (its loopback port). It keeps `STREAMS` streaming completions of
`ANSWER_TOKENS` tokens (`ignore_eos`, so each lasts longer than the preStop delay, as a thinking
answer does) in flight, a new one as soon as one ends. Each request is:

* completed: the stream ended with `[DONE]` and `finish_reason` length or stop;
* failed: no answer (connection refused, reset before the response) or an HTTP error;
* cut: the stream started but ended without a finish, or finished with `abort`.

The rollout's time runs from the spec change until all 3 pods run the StatefulSet's new
revision and are Ready. Side by side, in the same run and the same way:

* before: `spec.disruption.drainSeconds: 0`, vLLM without `--shutdown-timeout`, which aborts the
  requests in flight on SIGTERM, as every server did before issue 24. The pods still carry the
  issue's preStop hook (the operator renders it whatever drainSeconds is), and the rollout keeps
  its order: this baseline only lacks the drain, so it understates what the old rendering cut
  (no preStop: also the requests routed in the second before endpoints drop the pod);
* after: `drainSeconds: DRAIN_SECONDS` (the default sizes a 32768-token answer on a GPU; the CPU
  answers these in well under it, and a broken drain shows in minutes).

The servers run with `--enforce-eager` (spec.runtime.extraArgs): torch.compile costs minutes per
start on two shared cores and has nothing to do with how a server stops. And with
`VLLM_CPU_OMP_THREADS_BIND=nobind`: by default every CPU vLLM pins its worker to the same core
(core 0, the other reserved), so a starting replica's worker waits behind the serving ones'
busy decode threads and got 9 s of CPU in 7 minutes.

On its own cluster (own state directory, stopped afterwards), or $KUBECONFIG's.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = yaml.safe_load((ROOT / "samples" / "qwen3-235b-thinking.yaml").read_text())
NAME = SAMPLE["metadata"]["name"]
REPLICAS = int(os.environ.get("QWEN_BENCH_ROLLOUT_REPLICAS", "3"))
"""3, the acceptance's figure; fewer where the CPUs cannot start 3 vLLM processes in reasonable time."""
NODES, GPU, GPUS_PER_NODE = 4, "H100", 8
"""Room for the TP 4 replicas (the harness runs each at TP 1), as the e2e suite's cluster."""
CONTEXT = 4096
"""A small context: the quickest start of the CPU vLLM, and room for an answer."""
KV_BUDGET_GIB = 1
STREAMS = 3
"""Completions kept in flight at once: about one per replica."""
ANSWER_TOKENS = 600
"""Tokens per answer: tens of seconds on two busy cores (longer while a neighbour starts), longer
than the preStop delay, so an answer can be in flight when its server gets SIGTERM."""
DRAIN_SECONDS = 300
WARMUP_SECONDS = 10.0
"""Load before the change: every stream in flight when the first pod is deleted."""
READY_TIMEOUT = 900.0
"""3 vLLM starts at once on 2 busy cores, and margin."""
ROLLOUT_TIMEOUT = 1500.0
READ_TIMEOUT = 180.0
"""A stream silent this long is cut (the server neither answers nor closes)."""
ROUTES_EVERY = 0.5
"""How often the client reads the EndpointSlices (kube-proxy follows them in about a second)."""
REVISION = "controller-revision-hash"
MODEL = NAME
"""The served model name: the resource's name (spec.model.servedName unset)."""


@dataclass
class Outcome:
    """One request as the client saw it."""

    pod: str
    started: float
    ended: float
    kind: str
    """completed, failed or cut."""
    detail: str = ""
    tokens: int = 0


@dataclass
class Figures:
    """One scenario's result."""

    label: str
    outcomes: list[Outcome] = field(default_factory=list)
    rollout_seconds: float | None = None
    fewest_ready: int | None = None
    stops: list[tuple[str, float | None, int | None]] = field(default_factory=list)
    """(pod, seconds from SIGTERM to exit, exit code) of each server the rollout stopped."""
    error: str = ""

    def count(self, kind: str) -> int:
        return sum(1 for o in self.outcomes if o.kind == kind)


class Routes:
    """The Service's ready endpoints as the client routes to them: (pod, loopback port), read
    from the EndpointSlices every `ROUTES_EVERY` seconds; and the fewest seen since `low_mark`."""

    def __init__(self, api: client.ApiClient, namespace: str, harness: Any) -> None:
        self.discovery = client.DiscoveryV1Api(api)
        self.namespace = namespace
        self.harness = harness
        self.ready: list[tuple[str, int]] = []
        self.fewest: int | None = None
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="routes", daemon=True)

    def __enter__(self) -> Routes:
        self.read()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(ROUTES_EVERY):
            try:
                self.read()
            except Exception as error:  # a missed read only delays the next; said at the end
                self.errors.append(repr(error))

    def read(self) -> None:
        slices = self.discovery.list_namespaced_endpoint_slice(
            self.namespace, label_selector=f"kubernetes.io/service-name={NAME}"
        ).items
        uids = {
            e.target_ref.uid: e.target_ref.name
            for s in slices
            for e in s.endpoints or []
            if e.target_ref is not None and e.conditions is not None and e.conditions.ready
        }
        ports = {
            r.uid: r.server.launch.port for r in list(self.harness.runs) if r.server.returncode() is None
        }
        self.ready = [(pod, ports[uid]) for uid, pod in sorted(uids.items()) if uid in ports]
        self.fewest = len(self.ready) if self.fewest is None else min(self.fewest, len(self.ready))

    def low_mark(self) -> None:
        self.fewest = len(self.ready)


def events(response: http.client.HTTPResponse) -> Iterator[dict[str, Any] | None]:
    """The JSON events of a streamed completion; None for `[DONE]`."""
    for raw in response:
        line = raw.decode(errors="replace").strip()
        if line == "data: [DONE]":
            yield None
            return
        if line.startswith("data: "):
            yield json.loads(line.removeprefix("data: "))


def ask(pod: str, port: int) -> Outcome:
    """One streamed completion to the process behind `pod`, classified."""
    body = {"model": MODEL, "prompt": "Hi", "max_tokens": ANSWER_TOKENS, "ignore_eos": True, "stream": True}
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=READ_TIMEOUT)
    try:
        try:
            conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as error:
            return Outcome(pod, started, time.monotonic(), "failed", repr(error))
        if resp.status != 200:
            detail = f"HTTP {resp.status} {resp.read()[:200]!r}"
            return Outcome(pod, started, time.monotonic(), "failed", detail)
        tokens, finish, done = 0, None, False
        try:
            for event in events(resp):
                if event is None:
                    done = True
                    break
                if "error" in event:
                    finish = f"error {event['error']}"
                for choice in event.get("choices") or []:
                    tokens += 1
                    finish = choice.get("finish_reason") or finish
        except (OSError, http.client.HTTPException, ValueError) as error:
            return Outcome(pod, started, time.monotonic(), "cut", f"{error!r} after {tokens}", tokens)
        ok = done and finish in ("length", "stop")
        detail = f"finish {finish}, [DONE] {'seen' if done else 'missing'}, after {tokens}"
        return Outcome(pod, started, time.monotonic(), "completed" if ok else "cut", detail, tokens)
    finally:
        conn.close()


class Load:
    """`STREAMS` workers, each sending one request after another to a random ready endpoint."""

    def __init__(self, routes: Routes) -> None:
        self.routes = routes
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._work, name=f"load-{i}", daemon=True) for i in range(STREAMS)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def finish(self) -> None:
        """No new requests; wait for those in flight."""
        self._stop.set()
        for thread in self._threads:
            thread.join(READ_TIMEOUT + 30)

    def _work(self) -> None:
        while not self._stop.is_set():
            ready = list(self.routes.ready)
            if not ready:
                time.sleep(0.2)
                continue
            outcome = ask(*random.choice(ready))
            with self._lock:
                self.outcomes.append(outcome)


def kubectl(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True, check=True)
    return done.stdout


def resource(drain_seconds: int, rolled: bool) -> dict[str, Any]:
    """The sample with 3 replicas and a small context, its pods backed by the harness; `rolled`
    adds an env var, which changes the pod template and so rolls every replica."""
    from e2e.devcluster.realvllm.harness import MARKER
    from e2e.devcluster.realvllm.server import KV_SPACE_VAR

    env = [{"name": MARKER, "value": "true"}, {"name": KV_SPACE_VAR, "value": str(KV_BUDGET_GIB)},
           {"name": "VLLM_CPU_OMP_THREADS_BIND", "value": "nobind"}]  # fmt: skip
    if rolled:
        env.append({"name": "BENCH_ROLLOUT", "value": "1"})
    runtime = {"env": env, "extraArgs": ["--enforce-eager"]}  # no torch.compile: minutes off each start
    spec = {**SAMPLE["spec"], "replicas": REPLICAS, "gpu": {"memoryGiB": 141}, "runtime": runtime,
            "context": {"maxModelLen": CONTEXT, "minModelLen": CONTEXT},
            "disruption": {"drainSeconds": drain_seconds}}  # fmt: skip
    return {**SAMPLE, "metadata": {"name": NAME}, "spec": spec}


def rollout_state(api: client.ApiClient, namespace: str, old_revision: str) -> bool:
    """All replicas on the StatefulSet's new revision, Ready, none being deleted."""
    sts = client.AppsV1Api(api).read_namespaced_stateful_set(NAME, namespace)
    revision = sts.status.update_revision or ""
    if not revision or revision == old_revision:
        return False
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace).items
    mine = {f"{NAME}-{i}" for i in range(REPLICAS)}
    done = [
        p
        for p in pods
        if p.metadata.name in mine
        and p.metadata.deletion_timestamp is None
        and (p.metadata.labels or {}).get(REVISION) == revision
        and any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))
    ]
    return len(done) == REPLICAS


def scenario(label: str, drain_seconds: int, api: client.ApiClient, workdir: Path) -> Figures:
    """One rollout under load in a namespace of its own."""
    from e2e.devcluster.kube import wait_for
    from e2e.devcluster.realvllm import checkpoint, env
    from e2e.devcluster.realvllm.harness import Harness

    python = env.require()
    tiny = checkpoint.ensure(python)
    namespace = f"rollout-{label}-{os.getpid()}"
    figures = Figures(label)
    kubectl("create", "namespace", namespace)
    harness = Harness(api, namespace, python, tiny, workdir / label, graceful_stop=True)
    try:
        with harness:
            kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(resource(drain_seconds, False)))
            started = time.monotonic()
            with Routes(api, namespace, harness) as routes:
                wait_for(lambda: len(routes.ready) == REPLICAS, READY_TIMEOUT, f"{REPLICAS} ready endpoints")
                print(
                    f"  {label}: {REPLICAS} replicas serving after {time.monotonic() - started:.0f} s",
                    flush=True,
                )
                old = (
                    client.AppsV1Api(api).read_namespaced_stateful_set(NAME, namespace).status.update_revision
                )
                load = Load(routes)
                load.start()
                time.sleep(WARMUP_SECONDS)
                first_stopped = len(harness.runs)
                routes.low_mark()
                changed = time.monotonic()
                kubectl(
                    "apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(resource(drain_seconds, True))
                )
                try:
                    wait_for(
                        lambda: rollout_state(api, namespace, old or ""), ROLLOUT_TIMEOUT, "the rollout", 1.0
                    )
                    figures.rollout_seconds = time.monotonic() - changed
                finally:
                    figures.fewest_ready = routes.fewest
                    load.finish()
                    figures.outcomes = load.outcomes
                figures.stops = [
                    (r.pod, None if r.sigterm_at is None or r.server.exited_after is None
                     else r.server.started_at + r.server.exited_after - r.sigterm_at, r.exit_code)
                    for r in harness.runs[:first_stopped] if r.exit_code is not None
                ]  # fmt: skip
            if routes.errors or harness.errors:
                print(f"  {label}: routes errors {routes.errors[:3]}, harness errors {harness.errors[:3]}")
    except Exception as error:  # reported with the figures; the other scenario still runs
        figures.error = f"{type(error).__name__}: {error}"
    finally:
        subprocess.run(
            ["kubectl", "delete", "namespace", namespace, "--wait=false"], capture_output=True, check=False
        )
    return figures


def quantile(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]
        if len(values) > 1
        else values[0]
    )


def summary(f: Figures) -> str:
    """One scenario's figures on one line, printed as soon as it ends: a run stopped half-way
    keeps them."""
    rollout = "-" if f.rollout_seconds is None else f"{f.rollout_seconds:.0f}"
    return (f"  {f.label}: sent {len(f.outcomes)}, completed {f.count('completed')}, failed "
            f"{f.count('failed')}, cut {f.count('cut')}; rollout {rollout} s; fewest ready {f.fewest_ready}"
            + (f"; error: {f.error}" if f.error else ""))  # fmt: skip


def stopped(signum: int, frame: object) -> None:
    """SIGTERM as Ctrl-C: the `finally` blocks stop the servers, the operator and the cluster."""
    raise KeyboardInterrupt(f"signal {signum}")


def report(before: Figures, after: Figures) -> None:
    def row(what: str, a: object, b: object) -> None:
        print(f"{what:<42} {a!s:>24} {b!s:>24}")

    print(f"rollout of {REPLICAS} replicas (an env var changed) under {STREAMS} concurrent streams of "
          f"{ANSWER_TOKENS} tokens, real CPU vLLM behind the Service's endpoints")  # fmt: skip
    row("", "before (drainSeconds 0)", f"after (drainSeconds {DRAIN_SECONDS})")
    for kind in ("sent", "completed", "failed", "cut"):
        row(
            f"requests {kind}",
            *(len(f.outcomes) if kind == "sent" else f.count(kind) for f in (before, after)),
        )

    def seconds(f: Figures) -> str:
        return "-" if f.rollout_seconds is None else f"{f.rollout_seconds:.0f}"

    row("rollout seconds (change to all new, Ready)", seconds(before), seconds(after))
    row("fewest ready endpoints during the rollout", before.fewest_ready, after.fewest_ready)

    def durations(f: Figures) -> str:
        done = [o.ended - o.started for o in f.outcomes if o.kind == "completed"]
        return f"{quantile(done, 0.5):.0f} / {max(done):.0f}" if done else "-"

    row("completed request seconds, median / max", durations(before), durations(after))

    def stops(f: Figures) -> str:
        exits = [s for _, s, _ in f.stops if s is not None]
        return f"{len(f.stops)}, {max(exits):.0f}" if exits else f"{len(f.stops)}, -"

    row("servers stopped, most s SIGTERM to exit", stops(before), stops(after))
    for f in (before, after):
        if f.error:
            print(f"{f.label}: did not complete: {f.error}")
        for o in f.outcomes:
            if o.kind != "completed":
                print(f"  {f.label}: {o.kind} on {o.pod} after {o.ended - o.started:.1f} s: {o.detail}")
    met = not after.error and after.count("failed") == 0 and after.count("cut") == 0
    print(f"target (after: 0 failed, 0 cut): {'met' if met else 'missed'}")


def main() -> int:
    from e2e.devcluster import cluster
    from e2e.devcluster.kube import unreachable, wait_established, wait_for
    from e2e.devcluster.realvllm import env
    from e2e.devcluster.toolchain import build

    if not env.is_ready():
        print(f"rollout: not run ({env.missing_message()})")
        return 1
    signal.signal(signal.SIGTERM, stopped)
    started_here = False
    gone = unreachable(os.environ["KUBECONFIG"]) if os.environ.get("KUBECONFIG") else None
    if gone is not None:
        print(f"rollout: not run ({gone})")
        return 1
    if not os.environ.get("KUBECONFIG"):
        if build.missing():
            print("rollout: not run (no KUBECONFIG and no control-plane binaries; `make toolchain`)")
            return 1
        os.environ["QWEN_E2E_STATE_DIR"] = str(ROOT / ".state" / "bench-rollout")
        os.environ["KUBECONFIG"] = str(cluster.up(NODES, GPU, GPUS_PER_NODE))
        os.environ["PATH"] = f"{build.bin_dir()}{os.pathsep}{os.environ['PATH']}"
        started_here = True
    metrics_port, health_port = cluster.free_port(), cluster.free_port()
    operator_env = {**os.environ, "QWEN_OPERATOR_METRICS_PORT": str(metrics_port),
                    "QWEN_OPERATOR_HEALTH_PORT": str(health_port),
                    "QWEN_OPERATOR_HTTP_HOST": "127.0.0.1"}  # fmt: skip
    log = tempfile.NamedTemporaryFile(prefix="bench-rollout-operator-", suffix=".log", delete=False)  # noqa: SIM115
    workdir = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    operator = None
    try:
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
        wait_established("crd/qwenthinkingdeployments.serving.qwen-operator.io")
        operator = subprocess.Popen([sys.executable, "-m", "qwen_operator.cli", "run", "-A"], stdout=log,
                                    stderr=subprocess.STDOUT, env=operator_env)  # fmt: skip
        healthz = f"http://127.0.0.1:{health_port}/healthz"
        wait_for(lambda: urllib.request.urlopen(healthz, timeout=2).status == 200,
                 60, f"operator /healthz (log: {log.name})")  # fmt: skip
        api = config.new_client_from_config(config_file=os.environ["KUBECONFIG"])  # type: ignore[no-untyped-call]
        print(f"operator log: {log.name}; servers' logs under {workdir}", flush=True)
        before = scenario("before", 0, api, workdir)
        print(summary(before), flush=True)
        after = scenario("after", DRAIN_SECONDS, api, workdir)
        print(summary(after), flush=True)
        report(before, after)
        return 0 if not before.error and not after.error else 1
    except (RuntimeError, AssertionError, subprocess.CalledProcessError) as exc:
        print(f"rollout: failed: {exc} (operator log: {log.name})")
        return 1
    finally:
        if operator is not None:
            cluster.stop_child(operator)
        if started_here:
            cluster.down()


if __name__ == "__main__":
    sys.exit(main())
