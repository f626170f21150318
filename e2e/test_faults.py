"""Faults, end to end: the operator SIGKILLed again and again while fifty resources converge,
kube-apiserver and etcd restarted in the middle of a reconcile, and two operator replicas.
Every test is bounded (a fixed number of faults, a deadline on each wait) and stops by itself.

The kill schedule is random, from a seed the test prints; QWEN_E2E_FAULT_SEED=N replays it and
QWEN_E2E_SOAK_KILLS=N kills N times instead of 20 (the longer soak; its result is in docs/operator/runs.md).
These tests restart the local control plane's processes, so they need it (not $KUBECONFIG's).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import random
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, watch

pytest.register_assert_rewrite("e2e.operator_fixtures")

from e2e.conftest import Cluster  # noqa: E402
from e2e.devcluster import cluster as local_cluster  # noqa: E402
from e2e.devcluster import nodes, simulate  # noqa: E402
from e2e.devcluster.kube import kubectl, terminate_container, wait_for  # noqa: E402
from e2e.operator_fixtures import (  # noqa: E402
    LEASE_NAME,
    OPERATOR_NAMESPACE,
    OPERATOR_USER,
    WRITE_VERBS,
    Operator,
    apply_yaml,
    audit_entries,
    audit_offset,
    condition,
    get_qtd,
    sample,
    settle,
    sts_context,
    wait_phase,
)
from qwen_operator.process import lease  # noqa: E402

pytest_plugins = ("e2e.operator_fixtures",)
pytestmark = pytest.mark.e2e

KILLS = int(os.environ.get("QWEN_E2E_SOAK_KILLS", "20"))
RESOURCES = 50
FAILURES = 8
"""Memory failures injected, one per resource, each shortly before a kill."""
EXTRA_NODES, FIRST_EXTRA = 22, 100
"""Simulated GPU nodes added for the fifty (gpu-node-100...): 26 nodes, 208 GPUs for 184."""
CONVERGE_SECONDS = 30.0
H200 = {"memoryGiB": 141}
"""A plan that fits the requested 262144 tokens, so the servers start at the request."""
KV_FAILURE = json.dumps(simulate.report("oom", simulate.Run(262144, estimate=245408)))
CURED = 244736
"""What the operator lowers 262144 to when vLLM estimates 245408 (e2e/test_fallback.py)."""
CHILD_KINDS = "configmaps,statefulsets,services,poddisruptionbudgets"


def require_local(cluster: Cluster) -> None:
    if not cluster.local:
        pytest.fail("these faults restart the local control plane's processes: run without KUBECONFIG")


# -- the fifty -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """What one resource must look like once converged."""

    replicas: int
    stalled: bool = False

    @property
    def children(self) -> dict[str, int]:
        if self.stalled:
            return {}
        # ConfigMaps: the launcher (content-addressed) and the replicas' own settings
        return {"ConfigMap": 2, "StatefulSet": 1, "Service": 2, "PodDisruptionBudget": 1}


def fifty() -> dict[str, tuple[dict[str, Any], Expect]]:
    """Mostly one replica, some with two, some scaled to zero, some whose weights cannot fit
    (Stalled, nothing created): 50 resources, 184 GPUs."""
    out = {}
    for i in range(RESOURCES):
        name, slot = f"f{i:02d}", i % 25
        if slot < 2:
            out[name] = ({"parallelism": {"tensor": 2}}, Expect(1, stalled=True))  # on 2 x 80 GiB H100s
        elif slot < 4:
            out[name] = ({"replicas": 0, "gpu": H200}, Expect(0))
        elif slot < 6:
            out[name] = ({"replicas": 2, "gpu": H200}, Expect(2))
        else:
            out[name] = ({"gpu": H200}, Expect(1))
    return out


def managed(ns: str, kinds: str) -> list[dict[str, Any]]:
    out = kubectl("get", kinds, "-n", ns, "-l", "app.kubernetes.io/managed-by=qwen-operator", "-o", "json")
    return list(json.loads(out.stdout)["items"])


def owner_uid(obj: dict[str, Any]) -> str | None:
    refs = [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")]
    return refs[0]["uid"] if len(refs) == 1 else None


def child_problems(ns: str, resources: dict[str, dict[str, Any]], plan: dict[str, Expect]) -> list[str]:
    """Every resource has exactly its children, owned by it; no child of nobody (orphan)."""
    found: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    problems = []
    for obj in managed(ns, CHILD_KINDS):
        owner = obj["metadata"]["labels"].get("app.kubernetes.io/instance", "")
        res = resources.get(owner)
        if res is None or owner_uid(obj) != res["metadata"]["uid"]:
            problems.append(f"orphan {obj['kind']} {obj['metadata']['name']} (owner {owner})")
        found[owner][obj["kind"]] += 1
    for name, expect in plan.items():
        if dict(found.get(name, {})) != expect.children:
            problems.append(f"{name}: children {dict(found.get(name, {}))}, expected {expect.children}")
    return problems


def status_problems(res: dict[str, Any], expect: Expect, failure: tuple[str, int] | None) -> list[str]:
    """The status says what is true: phase, conditions, replicas, context and its history."""
    name, st = res["metadata"]["name"], res.get("status") or {}
    out = []
    if st.get("observedGeneration") != res["metadata"]["generation"]:
        out.append(f"{name}: observedGeneration {st.get('observedGeneration')}")
    ready, stalled = condition(res, "Ready"), condition(res, "Stalled")
    if expect.stalled:
        if (st.get("phase"), stalled.get("reason")) != ("Failed", "InsufficientGPUMemory"):
            out.append(f"{name}: phase {st.get('phase')}, Stalled {stalled.get('reason')}")
        return out
    want = ("True", "ScaledToZero" if expect.replicas == 0 else "Ready")
    if (st.get("phase"), ready.get("status"), ready.get("reason")) != ("Ready", *want):
        out.append(f"{name}: phase {st.get('phase')}, Ready {ready.get('status')} {ready.get('reason')}")
    if (st.get("replicas"), st.get("readyReplicas", 0)) != (expect.replicas, expect.replicas):
        out.append(f"{name}: replicas {st.get('replicas')}/{st.get('readyReplicas')}")
    ctx = st.get("context") or {}
    history = ctx.get("history") or []
    handled = [(h.get("podUID"), h.get("restartCount")) for h in history]
    if len(set(handled)) != len(handled):
        out.append(f"{name}: duplicated history entries {handled}")
    if failure is None and (history or ctx.get("effective") != 262144):
        out.append(f"{name}: context {ctx.get('effective')}, history {handled}, none expected")
    if failure is not None and (handled != [failure] or ctx.get("effective") != CURED):
        out.append(f"{name}: context {ctx.get('effective')}, history {handled}, expected [{failure}]")
    return out


def pod_problems(ns: str, resources: dict[str, dict[str, Any]], plan: dict[str, Expect]) -> list[str]:
    pods = collections.Counter(
        p["metadata"]["labels"].get("app.kubernetes.io/instance")
        for p in managed(ns, "pods")
        if not p["metadata"].get("deletionTimestamp")
    )
    return [
        f"{name}: {pods.get(name, 0)} pods, expected {0 if e.stalled else e.replicas}"
        for name, e in plan.items()
        if pods.get(name, 0) != (0 if e.stalled else e.replicas)
    ]


def problems(
    ns: str, custom: client.CustomObjectsApi, plan: dict[str, Expect], failures: dict[str, tuple[str, int]]
) -> list[str]:
    listed = custom.list_namespaced_custom_object(
        "serving.qwen-operator.io", "v1alpha1", ns, "qwenthinkingdeployments"
    )
    resources = {r["metadata"]["name"]: r for r in listed["items"]}
    out = [f"{name}: missing" for name in plan if name not in resources]
    for name, res in resources.items():
        out += status_problems(res, plan[name], failures.get(name))
    return out + child_problems(ns, resources, plan) + pod_problems(ns, resources, plan)


@pytest.fixture
def more_gpus(cluster: Cluster) -> Iterator[None]:
    """EXTRA_NODES more simulated GPU nodes for the test, removed afterwards."""
    listing = nodes.node_list(EXTRA_NODES, "H100", 8, first=FIRST_EXTRA)
    names = [n["metadata"]["name"] for n in listing["items"]]
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(listing))
    try:
        kube = local_cluster.kubectl_for("kubectl", cluster.kubeconfig)
        wait_for(lambda: set(names) <= local_cluster.ready_nodes(kube), 60, f"{EXTRA_NODES} nodes Ready")
        yield
    finally:
        kubectl("delete", "node", *names, "--wait=false", check=False)


@dataclass
class Injected:
    """The memory failures injected, and where the operator was with each when it was killed."""

    failures: dict[str, tuple[str, int]] = field(default_factory=dict)
    moments: collections.Counter[str] = field(default_factory=collections.Counter)


def inject(ns: str, api_client: client.ApiClient, core_v1: client.CoreV1Api, plan: dict[str, Expect],
           rng: random.Random, done: Injected) -> str | None:  # fmt: skip
    """A KV-cache failure in the serving pod of a one-replica resource not yet hit; its name."""
    serving = {
        p.metadata.labels.get("app.kubernetes.io/instance"): p
        for p in core_v1.list_namespaced_pod(ns).items
        if p.metadata.deletion_timestamp is None
        and p.metadata.name.endswith("-0")
        and any(s.name == "server" and s.ready for s in p.status.container_statuses or [])
    }
    candidates = sorted(
        name for name, e in plan.items()
        if e.replicas == 1 and not e.stalled and name not in done.failures and name in serving
        and "--max-model-len" in (cmd := serving[name].spec.containers[0].command or [])
        and cmd[cmd.index("--max-model-len") + 1] == "262144"
    )  # fmt: skip
    if not candidates:
        return None
    name = rng.choice(candidates)
    pod = serving[name]
    st = terminate_container(api_client, ns, pod.metadata.name, "server", "Error", 1, message=KV_FAILURE)
    restarts = next(s["restartCount"] for s in st["containerStatuses"] if s["name"] == "server")
    done.failures[name] = (pod.metadata.uid, int(restarts))
    return name


def moment(ns: str, custom: client.CustomObjectsApi, apps_v1: client.AppsV1Api, name: str,
           failure: tuple[str, int]) -> str:  # fmt: skip
    """Where the cure of `failure` stood when the operator died: not begun, half done, done."""
    history = ((get_qtd(custom, ns, name).get("status") or {}).get("context") or {}).get("history") or []
    recorded = [(h.get("podUID"), h.get("restartCount")) for h in history] == [failure]
    applied = sts_context(apps_v1, ns, name) == CURED
    return {(False, False): "not begun", (True, True): "done"}.get((recorded, applied), "half done")


def cured(obj: dict[str, Any], failure: tuple[str, int]) -> bool:
    """The object shows the cure of `failure`: the resource's history entry, or the StatefulSet's
    new --max-model-len."""
    if obj.get("kind") == "StatefulSet":
        command = obj["spec"]["template"]["spec"]["containers"][0].get("command") or []
        return f"{CURED}" in command
    history = ((obj.get("status") or {}).get("context") or {}).get("history") or []
    return [(h.get("podUID"), h.get("restartCount")) for h in history] == [failure]


class FreezeOnCure:
    """SIGSTOPs the operator the moment the first half of a cure shows (the history entry or the
    StatefulSet's change, whichever it writes first): frozen there, the other half is not
    written yet, and the kill that follows lands half-way through handling the failure."""

    def __init__(self, operator: Operator, api_client: client.ApiClient, ns: str, name: str,
                 failure: tuple[str, int]) -> None:  # fmt: skip
        assert operator.proc is not None
        self.frozen = threading.Event()
        self._pid, self._failure, self._watches = operator.proc.pid, failure, [watch.Watch(), watch.Watch()]
        custom, apps = client.CustomObjectsApi(api_client), client.AppsV1Api(api_client)
        lists = [
            (apps.list_namespaced_stateful_set, (ns,)),
            (custom.list_namespaced_custom_object, ("serving.qwen-operator.io", "v1alpha1", ns,
                                                    "qwenthinkingdeployments")),
        ]  # fmt: skip
        for w, (lister, args) in zip(self._watches, lists, strict=True):
            since = api_client.sanitize_for_serialization(
                lister(*args, field_selector=f"metadata.name={name}")
            )
            if any(cured({"kind": "StatefulSet", **o} if lister is apps.list_namespaced_stateful_set else o,
                         failure) for o in since["items"]):  # fmt: skip
                self._freeze()
            rv = since["metadata"]["resourceVersion"]
            threading.Thread(target=self._follow, args=(w, lister, args, name, rv), daemon=True).start()

    def _freeze(self) -> None:
        if not self.frozen.is_set():
            os.kill(self._pid, signal.SIGSTOP)
            self.frozen.set()

    def _follow(self, w: watch.Watch, lister: Any, args: tuple[Any, ...], name: str, since: str) -> None:
        with contextlib.suppress(Exception):  # stop() ends the stream mid-response
            selector = f"metadata.name={name}"
            for event in w.stream(
                lister, *args, field_selector=selector, resource_version=since, timeout_seconds=30
            ):
                obj = event.get("raw_object") or {}
                if obj and cured(obj, self._failure):
                    self._freeze()

    def stop(self) -> None:
        for w in self._watches:
            w.stop()


def test_sigkill_twenty_times_while_fifty_resources_converge(
    operator: Operator, cluster: Cluster, more_gpus: None, ns: str, custom: client.CustomObjectsApi,
    core_v1: client.CoreV1Api, apps_v1: client.AppsV1Api, api_client: client.ApiClient,
) -> None:  # fmt: skip
    """Kills at random moments, and half-way through curing memory failures; afterwards every
    resource has exactly its children, the right status, and each failure once in its history.
    The operator is frozen (SIGSTOP) at the kill's moment, to see where it stood, then killed."""
    seed = int(os.environ.get("QWEN_E2E_FAULT_SEED") or random.SystemRandom().randrange(2**32))
    print(f"fault seed {seed} (QWEN_E2E_FAULT_SEED={seed} replays the schedule), {KILLS} kills")
    rng = random.Random(seed)
    specs = fifty()
    plan = {name: expect for name, (_, expect) in specs.items()}
    apply_yaml(ns, "---\n".join(yaml.safe_dump(sample(n, **spec)) for n, (spec, _) in specs.items()))
    started, starts, injected = time.monotonic(), operator.starts, Injected()
    for round_ in range(KILLS):
        hit = None
        if round_ >= 3 and len(injected.failures) < FAILURES:
            hit = inject(ns, api_client, core_v1, plan, rng, injected)
        if hit and len(injected.failures) % 2:  # killed half-way through the cure
            freezer = FreezeOnCure(operator, api_client, ns, hit, injected.failures[hit])
            freezer.frozen.wait(15)
            freezer.stop()
        else:  # at a random moment (a pod event settles 0.5 s before it is handled)
            time.sleep(rng.uniform(0.3, 1.3) if hit else rng.uniform(0.0, 2.5))
            operator.proc.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
        if hit:
            injected.moments[moment(ns, custom, apps_v1, hit, injected.failures[hit])] += 1
        operator.kill(signal.SIGKILL)
        operator.start()
    killed = time.monotonic() - started
    try:
        wait_for(lambda: not problems(ns, custom, plan, injected.failures), 300, "all fifty converged", 2)
    except AssertionError:
        raise AssertionError("\n".join(problems(ns, custom, plan, injected.failures))) from None
    converged = time.monotonic() - started
    at_kill, count = dict(injected.moments), len(injected.failures)
    print(f"{KILLS} SIGKILLs in {killed:.0f}s, all {RESOURCES} converged {converged - killed:.0f}s after "
          f"the last; {count} memory failures, their cure at the kill: {at_kill}")  # fmt: skip
    assert operator.starts - starts == KILLS
    assert len(injected.failures) >= FAILURES // 2, "too few serving pods to fail: the schedule is off"
    settle(5)  # and it stays so: no second cure, no flapping
    assert problems(ns, custom, plan, injected.failures) == []


# -- apiserver and etcd restarts ---------------------------------------------------------------


def authorized() -> bool:
    """The apiserver's authorizer knows the operator's roles (a new one must read them first)."""
    checks = (("watch", "services", "-A"), ("update", f"leases/{LEASE_NAME}", "-n", OPERATOR_NAMESPACE))
    return all(
        kubectl("auth", "can-i", *check, f"--as={OPERATOR_USER}", check=False).stdout.strip() == "yes"
        for check in checks
    )


RESTART_MARGIN = 5.0
"""Seconds after the apiserver authorizes the operator again that still count as the restart:
Kopf's watches re-open on their own back-off (1, 1, 2, ... s), and one that re-opened a moment
before was refused while the authorizer warmed up (e2e/test_integrations.py saw two)."""


def restart(cluster: Cluster, component: str, down_for: float) -> tuple[float, float]:
    """Restart `component`: the seconds from its start until it served, and when (monotonic) it
    did. The time until the apiserver authorizes the operator again is recorded on `cluster`
    (test_operator.py's RBAC check)."""
    began = time.time()
    try:
        took = local_cluster.restart(component, down_for=down_for)
        served = time.monotonic()
        wait_for(authorized, 30, "the apiserver to authorize the operator again", interval=0.2)
    finally:
        cluster.restarts.append((began, time.time() + RESTART_MARGIN))
    return took, served


class HealthSampler:
    """/healthz every 0.2 s in a thread: (seconds since start, status, body)."""

    def __init__(self, operator: Operator) -> None:
        self.samples: list[tuple[float, int, str]] = []
        self._operator, self._stop = operator, threading.Event()
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            status, body = self._operator.health()
            self.samples.append((time.monotonic() - self.started, status, body.strip()))
            self._stop.wait(0.2)

    def stop(self) -> list[tuple[float, int, str]]:
        self._stop.set()
        self._thread.join(5)
        return self.samples


def all_pods_ready(core_v1: client.CoreV1Api, ns: str, count: int) -> bool:
    """`count` pods in `ns`, each Ready: what the kubelet (kwok) and the StatefulSet controller
    have made of the operator's children, whatever the operator's status says yet."""
    items = core_v1.list_namespaced_pod(ns).items
    ready = [
        p for p in items if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]
    return len(items) == len(ready) == count


def gpus_free(core_v1: client.CoreV1Api, ns: str) -> bool:
    """No pod outside `ns` asks for a GPU: the servers of earlier tests (whose fixture waits up
    to 60 s for them, then goes on) no longer hold what these servers need, so a pod that is
    not Ready after the restart is the controllers' doing, not a queue behind a teardown."""

    def gpus(pod: client.V1Pod) -> bool:
        asks = [(c.resources and c.resources.requests) or {} for c in pod.spec.containers]
        return any("nvidia.com/gpu" in a for a in asks)

    nodes = {n.metadata.name for n in core_v1.list_node().items}  # not those of a deleted node
    others = [p for p in core_v1.list_pod_for_all_namespaces().items if p.metadata.namespace != ns]
    return not [p for p in others if gpus(p) and (p.spec.node_name in nodes or not p.spec.node_name)]


def pods_and_controllers(cluster: Cluster, core_v1: client.CoreV1Api, ns: str) -> str:
    """What a wait for the pods reports when it times out: each pod's phase and conditions, and
    the log tails of the controller manager and kwok (who make pods and make them Ready)."""
    lines = []
    for pod in core_v1.list_namespaced_pod(ns).items:
        conds = {c.type: c.status for c in pod.status.conditions or []}
        lines.append(f"  {pod.metadata.name}: {pod.status.phase} {conds} node={pod.spec.node_name}")
    for name in ("kube-controller-manager", "kwok", "kube-scheduler"):
        tail = local_cluster.log_tail(cluster.kubeconfig.parent / "logs" / f"{name}.log", 15)
        lines.append(f"--- {name} log tail:\n{tail}")
    return "\n".join(lines)


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_a_restart_mid_reconcile_is_waited_out_and_converges_within_30s(
    operator: Operator, cluster: Cluster, ns: str, custom: client.CustomObjectsApi,
    core_v1: client.CoreV1Api, apps_v1: client.AppsV1Api, component: str,
) -> None:  # fmt: skip
    """The operator keeps running (same process), reconnects, converges within 30 s of the
    component serving again, and /healthz says 200 throughout: it can recover by itself.

    Converging is the operator's part, timed apart from the controllers': its children are
    applied within 30 s of the component serving, and each status says Ready within 30 s of
    its pods being Ready (the controller manager and kwok recover at their own pace)."""
    require_local(cluster)
    assert operator.proc is not None
    pid, starts = operator.proc.pid, operator.starts
    names = [f"r{i}" for i in range(5)]
    with contextlib.suppress(AssertionError):  # if not, the wait for the pods below says why
        wait_for(lambda: gpus_free(core_v1, ns), 120, "the GPUs of earlier tests' servers free")
    sampler = HealthSampler(operator)
    apply_yaml(ns, "---\n".join(yaml.safe_dump(sample(n, gpu=H200)) for n in names))
    wait_for(lambda: core_v1.list_namespaced_service(ns).items, 30, "the first child", interval=0.02)
    down_at = time.monotonic() - sampler.started
    took, back = restart(cluster, component, down_for=6)
    wait_for(
        lambda: len(apps_v1.list_namespaced_stateful_set(ns).items) == len(names),
        CONVERGE_SECONDS + 30, "every StatefulSet", interval=0.2,
    )  # fmt: skip
    applied = time.monotonic() - back
    try:
        wait_for(lambda: all_pods_ready(core_v1, ns, len(names)), 120, "every pod Ready", interval=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{pods_and_controllers(cluster, core_v1, ns)}") from None
    pods_ready = time.monotonic()
    for name in names:
        wait_phase(custom, ns, name, "Ready", timeout=CONVERGE_SECONDS + 30)
    converged = time.monotonic() - back
    caught_up = time.monotonic() - pods_ready
    kubectl("scale", f"qtd/{names[0]}", "-n", ns, "--replicas=2")  # the watches are back: a change is seen
    wait_for(
        lambda: get_qtd(custom, ns, names[0])["status"].get("readyReplicas") == 2, CONVERGE_SECONDS, "2 ready"
    )
    samples = sampler.stop()
    during = [body for at, _, body in samples if down_at <= at <= down_at + 6 + took]
    said = collections.Counter(re.sub(r"\d+s\b", "Ns", body.split(" (retrying")[0]) for body in during)
    print(f"{component} down 6 s, serving {took:.1f}s after its start; children applied {applied:.1f}s "
          f"later, pods Ready {pods_ready - back:.1f}s later, every status Ready {caught_up:.1f}s after "
          f"that ({converged:.1f}s in all); /healthz {len(samples)} samples, all 200; during the outage: "
          f"{dict(said)}")  # fmt: skip
    assert applied <= CONVERGE_SECONDS
    assert caught_up <= CONVERGE_SECONDS
    assert operator.proc is not None and operator.proc.poll() is None
    assert (operator.proc.pid, operator.starts) == (pid, starts), "the operator was restarted"
    assert [s for s in samples if s[1] != 200] == []
    assert samples[-1][2].startswith("ok; leading; apiserver answering"), samples[-1]
    if component == "kube-apiserver":  # its requests failed meanwhile, and /healthz said so
        assert any("apiserver not answering" in body for body in during), during
    # ...in words only: the error itself is the log's (the health port asks no credentials).
    assert not any("rror" in body or "refused" in body.lower() for _, _, body in samples), samples


# -- two replicas ------------------------------------------------------------------------------


@pytest.fixture
def second_replica(operator: Operator, tmp_path: Path) -> Iterator[Operator]:
    """Another replica of the operator: the same ServiceAccount, its own pod name."""
    other = Operator(operator.kubeconfig, tmp_path / "replica-b.log")
    try:
        other.start()
        yield other
    finally:
        other.kill(signal.SIGTERM)


def writers(cluster: Cluster, offset: int) -> collections.Counter[str]:
    """Who wrote (the Lease aside) after `offset`, by the pod name in the User-Agent."""
    assert cluster.audit_log is not None
    agents: collections.Counter[str] = collections.Counter()
    for e in audit_entries(cluster.audit_log, offset):
        if e.get("verb") in WRITE_VERBS and (e.get("objectRef") or {}).get("resource") != "leases":
            agent = str(e.get("userAgent", ""))
            agents[agent[agent.find("(") + 1 : agent.find(")")] if "(" in agent else agent] += 1
    return agents


def roles(a: Operator, b: Operator) -> tuple[bool, bool]:
    return a.leading(), b.leading()


def test_two_replicas_one_reconciles_and_a_killed_leader_hands_over_within_30s(
    operator: Operator, second_replica: Operator, cluster: Cluster, ns: str, custom: client.CustomObjectsApi
) -> None:
    require_local(cluster)
    a, b = operator, second_replica
    wait_for(lambda: roles(a, b) == (True, False), 30, "the first replica leading, the second standing by")
    standby = b.health()[1]  # who leads is the log's to say (the health port asks no credentials)
    assert "standing by" in standby and a.pod_name not in standby and b.pod_name not in standby
    offset = audit_offset(cluster)
    names = [f"two-{i}" for i in range(4)]
    apply_yaml(ns, "---\n".join(yaml.safe_dump(sample(n, gpu=H200)) for n in names))
    for name in names:
        wait_phase(custom, ns, name, "Ready")
    # Exactly one reconciles: the standby's counters, and the apiserver's own record.
    assert (b.counter("qwen_operator_reconciliations_total"), b.writes()) == (0, 0)
    assert b.counter("qwen_operator_lease_requests_total", verb="update") == 0
    assert set(writers(cluster, offset)) == {a.pod_name}, writers(cluster, offset)

    offset = audit_offset(cluster)
    a.kill(signal.SIGKILL)
    killed = time.monotonic()
    kubectl("scale", f"qtd/{names[0]}", "-n", ns, "--replicas=2")  # work that only a new leader can do
    wait_for(b.leading, 30, "the second replica to take the Lease", interval=0.2)
    handover = time.monotonic() - killed
    wait_for(lambda: get_qtd(custom, ns, names[0])["status"].get("readyReplicas") == 2, 30, "the change done")
    done = time.monotonic() - killed
    print(f"SIGKILLed leader: the standby led after {handover:.1f}s, the change made meanwhile done "
          f"after {done:.1f}s (lease {lease.Timings.lease_duration:.0f}s)")  # fmt: skip
    assert done <= 30
    assert set(writers(cluster, offset)) == {b.pod_name}

    a.start()  # back, with its pod name: the Lease is the other's now, so it stands by
    settle(lease.Timings.renew_period + 1)
    assert roles(a, b) == (False, True) and a.writes() == 0
    offset = audit_offset(cluster)
    b.kill(signal.SIGTERM)  # a stopped leader hands the Lease over at once
    stopped = time.monotonic()
    wait_for(a.leading, 10, "the first replica to lead again", interval=0.2)
    print(f"SIGTERMed leader: the standby led after {time.monotonic() - stopped:.1f}s")
    assert time.monotonic() - stopped < lease.Timings.lease_duration
    kubectl("scale", f"qtd/{names[1]}", "-n", ns, "--replicas=2")
    wait_for(lambda: get_qtd(custom, ns, names[1])["status"].get("readyReplicas") == 2, 30, "the change done")
    assert set(writers(cluster, offset)) == {a.pod_name}
