"""Rollouts in the operator's order, on the real control plane (issue 24, item 2).

The StatefulSet's updateStrategy is OnDelete: the operator deletes the server pods itself,
replicas that do not serve first, then one serving replica at a time behind a canary, and the
StatefulSet controller recreates each from the new template. kwok makes a new pod Ready at
once, unless its container carries QWEN_E2E_MANUAL_KUBELET: then it stays Pending and the test
plays its kubelet (here: a server that vLLM refuses to start).

While a rollout runs, a background thread samples how many server pods serve (Ready, not being
deleted) after every change the pods' watch reports and at least every second, and in what
order the pods were replaced.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client, watch

pytest.register_assert_rewrite("e2e.operator_fixtures")

from e2e.devcluster import simulate  # noqa: E402
from e2e.devcluster.kube import kubectl, starting_pod_status, terminate_container, wait_for  # noqa: E402
from e2e.operator_fixtures import (  # noqa: E402
    NAME,
    Operator,
    apply_ready,
    apply_yaml,
    condition,
    events,
    get_qtd,
    instance,
    sample,
    settle,
    untouched,
    wait_phase,
)
from qwen_operator.api.vocabulary import COMPONENT_LABEL, Component, claim_name  # noqa: E402
from qwen_operator.children import compile_cache  # noqa: E402
from qwen_runtime import replica  # noqa: E402
from qwen_runtime.argv import gpu_memory_utilization, max_model_len  # noqa: E402

pytest_plugins = ("e2e.operator_fixtures",)
pytestmark = pytest.mark.e2e

H200 = {"memoryGiB": 141}
REPLICAS = 3
MAX_UNAVAILABLE = 1
MANUAL = {"name": "QWEN_E2E_MANUAL_KUBELET", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
"""kwok leaves a pod whose server carries this Pending: the test reports its start itself."""
REVISION = "controller-revision-hash"


def pod_name(i: int) -> str:
    return f"{NAME}-{i}"


def ready(pod: client.V1Pod) -> bool:
    conditions = pod.status.conditions or [] if pod.status else []
    ok = any(c.type == "Ready" and c.status == "True" for c in conditions)
    return ok and pod.metadata.deletion_timestamp is None


def server_pods(core_v1: client.CoreV1Api, ns: str) -> dict[str, client.V1Pod]:
    return {p.metadata.name: p for p in core_v1.list_namespaced_pod(ns, label_selector=instance(NAME)).items}


def update_revision(apps_v1: client.AppsV1Api, ns: str) -> str:
    return str(apps_v1.read_namespaced_stateful_set(NAME, ns).status.update_revision or "")


@dataclass
class Sampler:
    """The serving pods after every change the pods' watch reports, and at least every second
    (a watch of one second, resumed from where it stopped): no transition falls between two
    samples. And each pod name's first replacement (being deleted, gone, or a new uid), in order."""

    core_v1: client.CoreV1Api
    ns: str
    selector: str = instance(NAME)
    """Which pods: the resource's (a Shared cache's download pod never serves)."""
    serving: list[int] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    not_serving: set[str] = field(default_factory=set)
    """Every pod name seen not serving (not Ready, being deleted, or gone) in some sample."""
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        """The pods before the change, listed before the thread starts (and the change is made)."""
        self._listed = self.core_v1.list_namespaced_pod(self.ns, label_selector=self.selector)

    def run(self) -> None:
        pods: dict[str, client.V1Pod] = {p.metadata.name: p for p in self._listed.items}
        first = {name: p.metadata.uid for name, p in pods.items()}
        version = self._listed.metadata.resource_version
        while not self._stop.is_set():
            try:
                stream = watch.Watch().stream(
                    self.core_v1.list_namespaced_pod, self.ns, label_selector=self.selector,
                    resource_version=version, timeout_seconds=1,
                )  # fmt: skip
                for event in stream:
                    p = event["object"]
                    version = p.metadata.resource_version
                    if event["type"] == "DELETED":
                        pods.pop(p.metadata.name, None)
                    else:
                        pods[p.metadata.name] = p
                    self._sample(pods, first)
            except Exception as exc:  # said at the end: a gap in the samples fails the test
                self.errors.append(repr(exc))
                return
            self._sample(pods, first)

    def _sample(self, pods: dict[str, client.V1Pod], first: dict[str, str]) -> None:
        self.serving.append(sum(1 for p in pods.values() if ready(p)))
        self.not_serving |= {name for name in first if name not in pods or not ready(pods[name])}
        for name, uid in sorted(first.items()):
            p = pods.get(name)
            gone = p is None or p.metadata.deletion_timestamp is not None or p.metadata.uid != uid
            if gone and name not in self.replaced:
                self.replaced.append(name)

    def stop(self) -> None:
        self._stop.set()


@contextmanager
def sampling(core_v1: client.CoreV1Api, ns: str, selector: str = instance(NAME)) -> Iterator[Sampler]:
    sampler = Sampler(core_v1, ns, selector)
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()
    try:
        yield sampler
    finally:
        sampler.stop()
        thread.join(10)


def three_serving(custom: client.CustomObjectsApi, core_v1: client.CoreV1Api, ns: str) -> dict[str, str]:
    """3 replicas serving; their uids by name."""
    apply_ready(custom, ns, replicas=REPLICAS, gpu=H200)

    def all_serving() -> dict[str, client.V1Pod] | None:
        pods = server_pods(core_v1, ns)
        return pods if sum(ready(x) for x in pods.values()) == REPLICAS else None

    pods = wait_for(all_serving, 120, "3 serving pods")
    return {name: p.metadata.uid for name, p in pods.items()}


def progress_column(ns: str) -> str:
    out = kubectl("get", "qtd", NAME, "-n", ns, "-o", "custom-columns=P:.status.progress", "--no-headers")
    return out.stdout.strip()


def test_a_canary_that_fails_halts_the_rollout_the_others_keep_serving(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, core_v1: client.CoreV1Api,
    apps_v1: client.AppsV1Api, api_client: client.ApiClient,
) -> None:  # fmt: skip
    uids = three_serving(custom, core_v1, ns)
    old = update_revision(apps_v1, ns)
    # the new template's pods are left Pending by kwok: the test plays the canary's kubelet
    apply_yaml(ns, sample(replicas=REPLICAS, gpu=H200, runtime={"env": [MANUAL]}))
    new = wait_for(lambda: (r := update_revision(apps_v1, ns)) != old and r, 30, "a new update revision")
    canary = wait_for(
        lambda: next((p for p in server_pods(core_v1, ns).values() if (p.metadata.labels or {}).get(REVISION)
                      == new and p.status.container_statuses is None and p.metadata.uid not in uids.values()),
                     None),
        60, "the canary recreated from the new template",
    )  # fmt: skip
    name = canary.metadata.name
    assert name == pod_name(REPLICAS - 1)  # the highest ordinal goes first
    status = starting_pod_status("loading", datetime.now(UTC))
    core_v1.patch_namespaced_pod_status(name, ns, {"status": status})
    said = simulate.report("bad-args", simulate.Run(262144))
    assert said is not None
    terminate_container(api_client, ns, name, "server", "Error", 2, message=json.dumps(said))

    def halted() -> dict[str, Any] | None:
        obj = get_qtd(custom, ns, NAME)
        return obj if condition(obj, "Stalled").get("reason") == "RolloutHalted" else None

    obj = wait_for(halted, 60, "Stalled RolloutHalted")
    assert "InvalidArguments" in condition(obj, "Stalled")["message"]
    assert obj["status"]["rollout"]["state"] == "Halted"
    assert obj["status"]["rollout"]["halted"] == [name] and obj["status"]["rollout"]["canary"] == name
    assert progress_column(ns).startswith("halted: canary CrashLoop InvalidArguments")
    settle(5)  # and it stays so: nothing else is replaced
    pods = server_pods(core_v1, ns)
    on_new = [n for n, p in pods.items() if (p.metadata.labels or {}).get(REVISION) == new]
    assert on_new == [name]
    for other in (pod_name(i) for i in range(REPLICAS - 1)):
        assert pods[other].metadata.uid == uids[other] and ready(pods[other])
        assert (pods[other].metadata.labels or {}).get(REVISION) == old
    entries = {e["pod"]: e for e in get_qtd(custom, ns, NAME)["status"]["replicaStatus"]}
    assert entries[name]["revision"] == new and entries[pod_name(0)]["revision"] == old

    # a new spec (here: the old one back) resumes it: the failed canary is replaced first
    apply_yaml(ns, sample(replicas=REPLICAS, gpu=H200))
    wait_phase(custom, ns, NAME, "Ready")
    pods = server_pods(core_v1, ns)
    assert all(ready(p) for p in pods.values()) and len(pods) == REPLICAS
    assert [pods[pod_name(i)].metadata.uid for i in range(2)] == [uids[pod_name(i)] for i in range(2)]
    assert "rollout" not in get_qtd(custom, ns, NAME)["status"]


def test_a_good_change_rolls_failed_replicas_first_then_one_at_a_time(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, core_v1: client.CoreV1Api,
    apps_v1: client.AppsV1Api, api_client: client.ApiClient,
) -> None:  # fmt: skip
    uids = three_serving(custom, core_v1, ns)
    failed = pod_name(1)
    said = simulate.report("bad-args", simulate.Run(262144))
    assert said is not None
    terminate_container(api_client, ns, failed, "server", "Error", 2, message=json.dumps(said))
    wait_for(lambda: not ready(server_pods(core_v1, ns)[failed]), 30, f"{failed} not serving")
    started = time.monotonic()
    with sampling(core_v1, ns) as sampler:
        apply_yaml(ns, sample(replicas=REPLICAS, gpu=H200, context={"maxModelLen": 131072}))

        def rolled() -> bool:
            pods = server_pods(core_v1, ns)
            contexts = {max_model_len(list(p.spec.containers[0].command)) for p in pods.values()}
            return len(pods) == REPLICAS and contexts == {131072} and all(ready(p) for p in pods.values())

        wait_for(rolled, 180, "all 3 replicas rolled to --max-model-len 131072 and serving")
        wait_phase(custom, ns, NAME, "Ready")
    took = time.monotonic() - started
    print(f"rollout of {REPLICAS} took {took:.1f}s; serving per second: {sampler.serving}; "
          f"replaced in order: {sampler.replaced}")  # fmt: skip
    assert not sampler.errors, sampler.errors
    assert min(sampler.serving) >= REPLICAS - MAX_UNAVAILABLE, sampler.serving
    assert sampler.replaced[:1] == [failed], sampler.replaced  # the failed replica first
    assert sorted(set(sampler.replaced)) == sorted(uids), sampler.replaced
    assert sampler.replaced == [failed, pod_name(2), pod_name(0)], sampler.replaced
    pods = server_pods(core_v1, ns)
    assert all(pods[n].metadata.uid != uids[n] for n in uids)  # every one replaced, once
    assert len({(p.metadata.labels or {}).get(REVISION) for p in pods.values()}) == 1
    said_events = kubectl(
        "get", "events", "-n", ns, "--field-selector", "reason=ReplacingPod", "-o",
        "custom-columns=M:.message", "--no-headers",
    ).stdout  # fmt: skip
    assert said_events.count("Replacing pod") == REPLICAS, said_events
    assert "canary" in said_events and "not serving" in said_events


def test_a_cure_of_one_replica_restarts_that_replica_alone(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, core_v1: client.CoreV1Api,
    apps_v1: client.AppsV1Api, api_client: client.ApiClient,
) -> None:  # fmt: skip
    """Issue 24, item 3: a CUDA out of memory outside the KV cache on pod 0 lowers pod 0's own
    utilization (the replicas' ConfigMap), not the template: only pod 0 restarts, pods 1 and 2 keep
    their uid and serve throughout, and pod 0's new start runs with the lowered utilization."""
    uids = three_serving(custom, core_v1, ns)
    sts = apps_v1.read_namespaced_stateful_set(NAME, ns)
    generation, revision = sts.metadata.generation, sts.status.update_revision
    failed = pod_name(0)
    with sampling(core_v1, ns) as sampler:
        said = simulate.report("cuda-oom", simulate.Run(262144))
        assert said is not None
        terminate_container(api_client, ns, failed, "server", "Error", 1, message=json.dumps(said))

        def restarted() -> client.V1Pod | None:
            pod = server_pods(core_v1, ns).get(failed)
            return pod if pod is not None and pod.metadata.uid != uids[failed] and ready(pod) else None

        new = wait_for(restarted, 90, f"{failed} recreated and serving")
        wait_phase(custom, ns, NAME, "Ready")
        settle(3)  # and nothing else moves
    assert not sampler.errors, sampler.errors
    assert sampler.replaced == [failed], sampler.replaced
    assert sampler.not_serving == {failed}, sampler.not_serving  # pods 1 and 2 never stopped serving
    assert min(sampler.serving) == REPLICAS - 1, sampler.serving
    pods = server_pods(core_v1, ns)
    for other in (pod_name(1), pod_name(2)):
        assert pods[other].metadata.uid == uids[other] and ready(pods[other])
    # the template did not change: no rollout
    sts = apps_v1.read_namespaced_stateful_set(NAME, ns)
    assert (sts.metadata.generation, sts.status.update_revision) == (generation, revision)
    template = list(sts.spec.template.spec.containers[0].command)
    assert gpu_memory_utilization(template) == 0.92
    # pod 0's entry, and what its launcher runs with it
    data = core_v1.read_namespaced_config_map(f"{NAME}-replicas", ns).data or {}
    assert list(data) == [failed]
    command = list(new.spec.containers[0].command)
    runs = replica.override(command, replica.parse(failed, data[failed]))
    assert (gpu_memory_utilization(command), gpu_memory_utilization(runs)) == (0.92, 0.89)
    env = {e.name: e for e in new.spec.containers[0].env}
    assert env[replica.POD_NAME_VAR].value_from.field_ref.field_path == "metadata.name"
    # the status and the events say which replica runs what
    obj = get_qtd(custom, ns, NAME)
    ctx = obj["status"]["context"]
    assert ctx["gpuMemoryUtilization"] == {"requested": 0.92, "effective": 0.92}
    (step,) = ctx["history"]
    assert (step["replica"], step["utilizationFrom"], step["utilizationTo"]) == (failed, 0.92, 0.89)
    entries = {e["pod"]: e["gpuMemoryUtilization"] for e in obj["status"]["replicaStatus"]}
    assert entries == {failed: 0.89, pod_name(1): 0.92, pod_name(2): 0.92}
    cond = condition(obj, "UtilizationReduced")
    assert cond["status"] == "True" and f"replica {failed} at 0.89" in cond["message"]
    said = {(e["reason"], e["message"].split(":")[0]) for e in events(ns, NAME)}
    assert ("RestartingReplica", f"Restarting pod {failed} with its own settings") in said, said
    assert "ReplacingPod" not in {reason for reason, _ in said}, said


SERVERS = f"{instance(NAME)},{COMPONENT_LABEL}={Component.SERVER}"
"""The server pods alone (a Shared cache's download pod has the resource's label too)."""
SHARED = {"id": "Qwen/Qwen3-235B-A22B-Thinking-2507-FP8", "cache": {"mode": "Shared", "size": "300Gi"}}


def claim_of(pod: client.V1Pod, volume: str) -> str:
    """The claim the pod mounts as `volume` ("" when that volume is no claim, or absent)."""
    found = next((v for v in pod.spec.volumes or [] if v.name == volume), None)
    return (
        ""
        if found is None or found.persistent_volume_claim is None
        else found.persistent_volume_claim.claim_name
    )


def rolled_with_claim(
    core_v1: client.CoreV1Api, apps_v1: client.AppsV1Api, ns: str, old_uid: str, template: str
) -> bool:
    """The StatefulSet made anew with only the claim template `template`, and every replica recreated
    from it: serving, on its update revision, mounting its own claim."""
    sts = apps_v1.read_namespaced_stateful_set(NAME, ns)
    templates = [t.metadata.name for t in sts.spec.volume_claim_templates or []]
    if sts.metadata.uid == old_uid or templates != [template]:
        return False
    pods = core_v1.list_namespaced_pod(ns, label_selector=SERVERS).items
    return len(pods) == REPLICAS and all(
        ready(p)
        and (p.metadata.labels or {}).get(REVISION) == sts.status.update_revision
        and claim_of(p, template) == claim_name(template, NAME, int(p.metadata.name.rsplit("-", 1)[1]))
        for p in pods
    )


def claim_rollout(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, core_v1: client.CoreV1Api,
    apps_v1: client.AppsV1Api, before: dict[str, Any], after: dict[str, Any], template: str,
    upgrade: dict[str, Any] | None = None,
) -> None:  # fmt: skip
    """3 replicas serving with the spec fields `before`, then `after`, whose StatefulSet has another
    claim template: the StatefulSet is made anew keeping the pods (they lack the claim), and they
    are replaced lowest ordinal first, one at a time, serving never below replicas -
    maxUnavailable (the StatefulSet controller recreates no pod beyond the first that lacks it).
    `upgrade`: spec fields applied in between, that ask for the claim and change nothing else of
    the pods: the StatefulSet and its pods are left as they are (compile_cache.claim_deferred)."""
    del operator
    apply_ready(custom, ns, replicas=REPLICAS, gpu=H200, **before)
    pods = wait_for(
        lambda: (found := core_v1.list_namespaced_pod(ns, label_selector=SERVERS).items)
        and sum(ready(p) for p in found) == REPLICAS and found,
        120, "3 serving pods",
    )  # fmt: skip
    uids = {p.metadata.name: p.metadata.uid for p in pods}
    old = apps_v1.read_namespaced_stateful_set(NAME, ns)
    assert template not in [t.metadata.name for t in old.spec.volume_claim_templates or []]
    assert all(claim_of(p, template) != claim_name(template, NAME, i) for i, p in enumerate(
        sorted(pods, key=lambda p: p.metadata.name)))  # fmt: skip
    if upgrade is not None:
        apply_yaml(ns, sample(replicas=REPLICAS, gpu=H200, **upgrade))
        wait_phase(custom, ns, NAME, "Ready")  # the operator has seen it
        untouched(core_v1, apps_v1, ns, old.metadata.uid, uids, selector=SERVERS)
        kept = apps_v1.read_namespaced_stateful_set(NAME, ns)
        assert kept.spec.template == old.spec.template and kept.metadata.generation == old.metadata.generation
        assert "Replacing" not in {e["reason"] for e in events(ns, NAME)}
    started = time.monotonic()
    with sampling(core_v1, ns, SERVERS) as sampler:
        apply_yaml(ns, sample(replicas=REPLICAS, gpu=H200, **after))
        said = f"the StatefulSet made anew with claim template {template}, every replica recreated with it"
        wait_for(lambda: rolled_with_claim(core_v1, apps_v1, ns, old.metadata.uid, template), 240, said)
        obj = wait_phase(custom, ns, NAME, "Ready")
    print(f"claim rollout of {REPLICAS} took {time.monotonic() - started:.1f}s; serving per sample: "
          f"{sampler.serving}; replaced in order: {sampler.replaced}")  # fmt: skip
    assert not sampler.errors, sampler.errors
    assert min(sampler.serving) >= REPLICAS - MAX_UNAVAILABLE, sampler.serving
    assert sampler.replaced == [pod_name(i) for i in range(REPLICAS)], sampler.replaced
    pods = core_v1.list_namespaced_pod(ns, label_selector=SERVERS).items
    assert all(p.metadata.uid != uids[p.metadata.name] for p in pods)  # each replaced, once
    assert "rollout" not in obj["status"]
    said = kubectl(
        "get", "events", "-n", ns, "--field-selector", "reason=ReplacingPod", "-o",
        "custom-columns=M:.message", "--no-headers",
    ).stdout  # fmt: skip
    assert said.count("Replacing pod") == REPLICAS and "the lowest ordinal whose volumes lack" in said, said
    assert "Replacing" in {e["reason"] for e in events(ns, NAME)}  # the StatefulSet, made anew


def test_a_compile_cache_claim_comes_with_the_next_rollout_lowest_ordinal_first(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, core_v1: client.CoreV1Api,
    apps_v1: client.AppsV1Api,
) -> None:  # fmt: skip
    """An operator upgrade, as a spec change: a Shared-mode StatefulSet made without the compile
    cache's claim template (compileCacheSize 0, as before the cache) is asked for it. Alone, it
    restarts no replica: the StatefulSet and its pods stay as they are. The next change that rolls
    the pods anyway (a variable in spec.runtime.env) brings it, in the controller's order."""
    without = {**SHARED, "cache": {**SHARED["cache"], "compileCacheSize": "0"}}
    env = {"env": [{"name": "EXAMPLE_ROLLOUT", "value": "1"}]}
    claim_rollout(
        operator, ns, custom, core_v1, apps_v1, {"model": without}, {"model": SHARED, "runtime": env},
        compile_cache.VOLUME, upgrade={"model": SHARED},
    )  # fmt: skip
    pod = core_v1.read_namespaced_pod(pod_name(0), ns)
    mounts = {m.name: m.mount_path for m in pod.spec.containers[0].volume_mounts}
    assert mounts[compile_cache.VOLUME] == compile_cache.MOUNT
    assert {e.name: e.value for e in pod.spec.containers[0].env}["EXAMPLE_ROLLOUT"] == "1"


def test_shared_weights_switched_to_per_replica_roll_lowest_ordinal_first(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, core_v1: client.CoreV1Api,
    apps_v1: client.AppsV1Api,
) -> None:  # fmt: skip
    """Shared to PerReplica: each pod's `weights` volume mounts the shared claim, and the new
    StatefulSet's template `weights` wants the replica's own."""
    per_replica = {"id": SHARED["id"]}
    before, after = {"model": SHARED}, {"model": per_replica}
    claim_rollout(operator, ns, custom, core_v1, apps_v1, before, after, "weights")
