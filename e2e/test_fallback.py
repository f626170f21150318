"""The out-of-memory cures end to end, on the real control plane: each cause its cure.

Failures are injected the way a kubelet reports them: the server container's
`lastState.terminated` carries the launcher's JSON line as its message (terminate_container),
made by the launcher's own classifier from vLLM's line (e2e.devcluster.simulate). The
operator then replaces the failed pod (the StatefulSet is OnDelete), and the StatefulSet
controller recreates it for real: with the new argv for a shorter context (the template's), with
the same template for a lower utilization (that replica's own, in the replicas' ConfigMap).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

pytest.register_assert_rewrite("e2e.operator_fixtures")

from e2e.devcluster import simulate  # noqa: E402
from e2e.devcluster.kube import kubectl, terminate_container, wait_for  # noqa: E402
from e2e.operator_fixtures import (  # noqa: E402
    NAME,
    Operator,
    apply_ready,
    apply_yaml,
    condition,
    events,
    get_qtd,
    sample,
    settle,
    sts_context,
    sts_utilization,
    wait_phase,
)
from qwen_runtime import replica  # noqa: E402
from qwen_runtime.argv import gpu_memory_utilization, max_model_len  # noqa: E402

pytest_plugins = ("e2e.operator_fixtures",)
pytestmark = pytest.mark.e2e

H200 = {"memoryGiB": 141}
"""GPUs the memory plan fits 262144 tokens into, so the servers start at the request."""
POD = f"{NAME}-0"


def failure(kind: str, context: int = 262144, estimate: int | None = None, **run: float) -> str:
    """The launcher's line for a failure of `kind` (e2e.devcluster.simulate's kinds)."""
    said = simulate.report(kind, simulate.Run(context, estimate=estimate, **run))
    assert said is not None
    return json.dumps(said)


def kv_report(max_model_len: int, estimate: int) -> str:
    """What the launcher writes when vLLM's KV cache cannot hold one request."""
    return failure("oom", max_model_len, estimate)


KV_NO_FIGURES = failure("kv-no-figures")


def context(custom: client.CustomObjectsApi, ns: str) -> dict[str, Any]:
    return dict((get_qtd(custom, ns, NAME).get("status") or {}).get("context") or {})


def crash(api_client: client.ApiClient, ns: str, message: str, restart_count: int | None = None) -> int:
    """The server container of pod 0 exits 1 with `message`; returns its restart count."""
    status = terminate_container(
        api_client, ns, POD, "server", "Error", 1, message=message, restart_count=restart_count
    )
    return int(next(s for s in status["containerStatuses"] if s["name"] == "server")["restartCount"])


def wait_effective(custom: client.CustomObjectsApi, ns: str, value: int) -> dict[str, Any]:
    return wait_for(
        lambda: (ctx := context(custom, ns)).get("effective") == value and ctx, 60, f"effective {value}"
    )


def wait_sts_context(apps_v1: client.AppsV1Api, ns: str, value: int) -> None:
    """The StatefulSet's --max-model-len becomes `value`: a cure writes the status first (so a
    kill in between loses nothing), then applies the StatefulSet."""
    wait_for(
        lambda: sts_context(apps_v1, ns, NAME) == value, 30, f"the StatefulSet at --max-model-len {value}"
    )


def wait_pod_with(core_v1: client.CoreV1Api, ns: str, value: int) -> client.V1Pod:
    """The StatefulSet controller replaced pod 0 by one running with `value` tokens, and it is ready."""

    def rolled() -> client.V1Pod | None:
        pod = core_v1.read_namespaced_pod(POD, ns)
        command = list(pod.spec.containers[0].command)
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        ok = pod.metadata.deletion_timestamp is None and max_model_len(command) == value
        return pod if ok and ready else None

    return wait_for(rolled, 90, f"pod {POD} rolled to --max-model-len {value}")


def wait_condition(custom: client.CustomObjectsApi, ns: str, type_: str, reason: str) -> dict[str, Any]:
    """The resource once its condition `type_` has `reason`."""

    def check() -> dict[str, Any] | None:
        obj = get_qtd(custom, ns, NAME)
        return obj if condition(obj, type_).get("reason") == reason else None

    return wait_for(check, 60, f"condition {type_} reason {reason}")


def wait_event(ns: str, type_: str, reason: str) -> None:
    """Events are posted after the status patch: wait for them rather than assert at once."""
    wait_for(lambda: any((e["type"], e["reason"]) == (type_, reason) for e in events(ns, NAME)), 30, reason)


HOLD = "e2e.qwen-operator.io/hold"


def hold_rollouts(ns: str, hold: bool) -> None:
    """A finalizer keeps pod 0 from going when the operator's rollout deletes it (the StatefulSet
    is OnDelete: the operator replaces the pods itself, a failed one first), so the kubelet's
    report can be delivered again to the very pod; without it the pod goes and is recreated."""
    patch = {"metadata": {"finalizers": [HOLD] if hold else None}}
    kubectl("patch", f"pod/{POD}", "-n", ns, "--type=merge", "-p", json.dumps(patch))


def reductions(operator: Operator, reason: str) -> float:
    return operator.counter("qwen_operator_context_reductions_total", reason=reason)


def wait_reductions(operator: Operator, reason: str, count: float) -> None:
    """The counter moves once the whole pass is done (status, then events): wait for it."""
    wait_for(lambda: reductions(operator, reason) == count, 30, f"{reason} reductions = {count}")


def test_vllms_estimate_then_the_ladder(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, apps_v1: client.AppsV1Api,
    core_v1: client.CoreV1Api, api_client: client.ApiClient,
) -> None:  # fmt: skip
    apply_ready(custom, ns, gpu=H200)
    assert sts_context(apps_v1, ns, NAME) == 262144
    before = reductions(operator, "KVCacheInsufficient")
    hold_rollouts(ns, True)  # keep the crashed pod, so its report can be delivered again
    first_uid = core_v1.read_namespaced_pod(POD, ns).metadata.uid

    restarts = crash(api_client, ns, kv_report(262144, 245408))
    ctx = wait_effective(custom, ns, 244736)
    (step,) = ctx["history"]
    assert (step["from"], step["to"], step["pod"]) == (262144, 244736, POD)
    assert step["reason"] == "KVCacheInsufficient"
    assert (step["podUID"], step["restartCount"]) == (first_uid, restarts)
    assert "245408" in step["detail"]
    wait_sts_context(apps_v1, ns, 244736)  # the status first, then the StatefulSet
    obj = get_qtd(custom, ns, NAME)
    reduced = condition(obj, "ContextReduced")
    assert (reduced["status"], reduced["reason"]) == ("True", "OutOfMemory")
    assert "244736 of the 262144" in reduced["message"]
    wait_reductions(operator, "KVCacheInsufficient", before + 1)
    wait_event(ns, "Warning", "ContextReduced")

    # the rollout replaces the failed pod first: the operator deletes it (held by the finalizer)
    wait_for(
        lambda: core_v1.read_namespaced_pod(POD, ns).metadata.deletion_timestamp is not None, 30,
        f"the operator deleting {POD}",
    )  # fmt: skip
    # the kubelet reports the same crash again (a status update, same restart): still one reduction
    crash(api_client, ns, kv_report(262144, 245408), restart_count=restarts)
    settle(3)
    assert core_v1.read_namespaced_pod(POD, ns).metadata.uid == first_uid
    assert len(context(custom, ns)["history"]) == 1 and sts_context(apps_v1, ns, NAME) == 244736
    assert reductions(operator, "KVCacheInsufficient") == before + 1

    # pod 0 goes, the StatefulSet recreates it; the new pod's KV cache fails with no figures: the ladder
    hold_rollouts(ns, False)
    pod = wait_pod_with(core_v1, ns, 244736)
    assert pod.metadata.uid != first_uid
    crash(api_client, ns, KV_NO_FIGURES)
    ctx = wait_effective(custom, ns, 196608)
    assert [(h["from"], h["to"], h["remedy"]) for h in ctx["history"]] == [
        (262144, 244736, "ShorterContext"), (244736, 196608, "ShorterContext"),
    ]  # fmt: skip
    wait_sts_context(apps_v1, ns, 196608)  # the status first, then the StatefulSet
    wait_pod_with(core_v1, ns, 196608)
    obj = wait_phase(custom, ns, NAME, "Ready")
    assert condition(obj, "ContextReduced")["status"] == "True"
    assert len(obj["status"]["context"]["history"]) == 2


def test_a_report_handled_across_operator_restarts_counts_once(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, apps_v1: client.AppsV1Api,
    api_client: client.ApiClient,
) -> None:  # fmt: skip
    apply_ready(custom, ns, gpu=H200)
    operator.kill()
    try:
        crash(api_client, ns, kv_report(262144, 245408))  # reported while no operator runs
    finally:
        operator.start()
    ctx = wait_effective(custom, ns, 244736)
    assert len(ctx["history"]) == 1
    operator.kill()
    operator.start()
    wait_for(lambda: operator.counter("qwen_operator_reconciliations_total") > 0, 60, "a reconcile")
    settle(3)
    ctx = context(custom, ns)
    assert (ctx["effective"], len(ctx["history"])) == (244736, 1)
    assert sts_context(apps_v1, ns, NAME) == 244736


def test_at_the_floor_it_stalls_and_a_spec_change_starts_again(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, apps_v1: client.AppsV1Api,
    core_v1: client.CoreV1Api, api_client: client.ApiClient,
) -> None:  # fmt: skip
    spec = {"context": {"maxModelLen": 262144, "minModelLen": 196608}, "gpu": H200}
    apply_ready(custom, ns, **spec)
    crash(api_client, ns, KV_NO_FIGURES)
    wait_effective(custom, ns, 196608)  # the next step is the floor
    wait_pod_with(core_v1, ns, 196608)

    crash(api_client, ns, KV_NO_FIGURES)
    obj = wait_condition(custom, ns, "Stalled", "ContextFallbackExhausted")
    assert condition(obj, "Stalled")["status"] == "True"
    assert "196608" in condition(obj, "Stalled")["message"]
    assert obj["status"]["phase"] == "Failed"
    settle(3)
    assert (context(custom, ns)["effective"], len(context(custom, ns)["history"])) == (196608, 1)
    assert sts_context(apps_v1, ns, NAME) == 196608
    wait_event(ns, "Warning", "ContextFallbackExhausted")

    # fp8 KV cache halves the cache: a change to what decides the fit starts from the request
    apply_yaml(ns, sample(**spec, runtime={"kvCacheDtype": "fp8"}))
    wait_effective(custom, ns, 262144)
    wait_sts_context(apps_v1, ns, 262144)  # the status first, then the StatefulSet
    wait_pod_with(core_v1, ns, 262144)
    obj = wait_phase(custom, ns, NAME, "Ready")
    assert condition(obj, "ContextReduced")["status"] == "False"
    assert condition(obj, "Stalled")["status"] == "False"
    assert len(obj["status"]["context"]["history"]) == 1  # kept for the record


def test_a_failure_that_is_not_about_memory_changes_nothing(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, apps_v1: client.AppsV1Api,
    api_client: client.ApiClient,
) -> None:  # fmt: skip
    apply_ready(custom, ns, gpu=H200)
    crash(api_client, ns, failure("bad-args"))
    obj = wait_condition(custom, ns, "Ready", "InvalidArguments")
    assert condition(obj, "Ready")["status"] == "False"
    assert "unrecognized arguments" in condition(obj, "Ready")["message"]
    settle(3)
    ctx = context(custom, ns)
    assert (ctx["effective"], ctx["planned"], ctx["gpuMemoryUtilization"]["effective"]) == (
        262144,
        262144,
        0.92,
    )
    assert "history" not in ctx and sts_context(apps_v1, ns, NAME) == 262144


def test_weights_that_cannot_fit_start_no_crash_loop(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, apps_v1: client.AppsV1Api
) -> None:
    apply_yaml(
        ns, sample(parallelism={"tensor": 2})
    )  # the nodes' H100s: 2 x 80 GiB (a spec saying so is refused)
    obj = wait_condition(custom, ns, "Stalled", "InsufficientGPUMemory")
    assert condition(obj, "Stalled")["status"] == "True"
    assert obj["status"]["phase"] == "Failed"
    assert obj["status"]["context"]["planned"] == 0
    message = condition(obj, "Stalled")["message"]
    assert "GiB" in message and "2" in message
    with pytest.raises(client.ApiException) as missing:
        apps_v1.read_namespaced_stateful_set(NAME, ns)
    assert missing.value.status == 404


def replica_setting(core_v1: client.CoreV1Api, ns: str) -> float | None:
    """Pod 0's own --gpu-memory-utilization in the replicas' ConfigMap, as its launcher reads it."""
    try:
        data = core_v1.read_namespaced_config_map(f"{NAME}-replicas", ns).data or {}
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return replica.parse(POD, data[POD]).utilization if POD in data else None


def wait_restarted(core_v1: client.CoreV1Api, ns: str, uid: str) -> client.V1Pod:
    """Pod 0 deleted by the operator and recreated by the StatefulSet controller, and ready."""

    def again() -> client.V1Pod | None:
        pod = core_v1.read_namespaced_pod(POD, ns)
        ok = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        return pod if pod.metadata.uid != uid and pod.metadata.deletion_timestamp is None and ok else None

    return wait_for(again, 90, f"pod {POD} restarted and ready")


def test_a_graph_capture_oom_lowers_that_replicas_utilization_and_keeps_the_context(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, apps_v1: client.AppsV1Api,
    core_v1: client.CoreV1Api, api_client: client.ApiClient,
) -> None:  # fmt: skip
    """A per-GPU matter: pod 0's own utilization (the replicas' ConfigMap), not the template's."""
    apply_ready(custom, ns, gpu=H200)
    generation = apps_v1.read_namespaced_stateful_set(NAME, ns).metadata.generation
    uid = core_v1.read_namespaced_pod(POD, ns).metadata.uid
    before = operator.counter("qwen_operator_utilization_reductions_total", reason="CudaOOM")
    crash(api_client, ns, failure("cuda-oom"))
    wait_for(lambda: replica_setting(core_v1, ns) == 0.89, 60, f"{POD}'s own --gpu-memory-utilization 0.89")
    new = wait_restarted(core_v1, ns, uid)
    command = list(new.spec.containers[0].command)
    assert gpu_memory_utilization(command) == 0.92  # the template's; its launcher runs it with 0.89
    assert gpu_memory_utilization(replica.override(command, replica.Settings(POD, 0.89))) == 0.89
    assert sts_context(apps_v1, ns, NAME) == 262144 and sts_utilization(apps_v1, ns, NAME) == 0.92
    assert apps_v1.read_namespaced_stateful_set(NAME, ns).metadata.generation == generation  # no rollout
    ctx = context(custom, ns)
    assert ctx["effective"] == 262144 and ctx["gpuMemoryUtilization"] == {
        "requested": 0.92,
        "effective": 0.92,
    }
    (step,) = ctx["history"]
    assert (step["remedy"], step["utilizationFrom"], step["utilizationTo"], step["replica"]) == (
        "LowerUtilization",
        0.92,
        0.89,
        POD,
    )
    cond = condition(get_qtd(custom, ns, NAME), "UtilizationReduced")
    assert (cond["status"], cond["reason"]) == ("True", "OutOfMemory")
    assert "CUDA out of memory while capturing CUDA graphs at utilization 0.92" in cond["message"]
    assert f"replica {POD} at 0.89" in cond["message"]
    assert condition(get_qtd(custom, ns, NAME), "ContextReduced")["status"] == "False"
    wait_event(ns, "Warning", "UtilizationReduced")
    wait_event(ns, "Normal", "RestartingReplica")
    assert operator.counter("qwen_operator_utilization_reductions_total", reason="CudaOOM") == before + 1
    obj = wait_phase(custom, ns, NAME, "Ready")
    assert {e["pod"]: e["gpuMemoryUtilization"] for e in obj["status"]["replicaStatus"]} == {POD: 0.89}

    # its next run (at its own 0.89, the launcher says) fails the same way: 0.86, for it alone
    crash(api_client, ns, failure("cuda-oom", utilization=0.89))
    wait_for(lambda: replica_setting(core_v1, ns) == 0.86, 60, f"{POD}'s own --gpu-memory-utilization 0.86")
    wait_restarted(core_v1, ns, new.metadata.uid)
    assert sts_utilization(apps_v1, ns, NAME) == 0.92 and len(context(custom, ns)["history"]) == 2


def test_memory_held_by_another_process_sets_the_utilization_to_what_is_free(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, apps_v1: client.AppsV1Api,
    core_v1: client.CoreV1Api, api_client: client.ApiClient,
) -> None:  # fmt: skip
    apply_ready(custom, ns, gpu=H200)
    uid = core_v1.read_namespaced_pod(POD, ns).metadata.uid
    crash(api_client, ns, failure("free-memory", free_gib=70.0, total_gib=79.6))
    utilization = wait_for(lambda: replica_setting(core_v1, ns), 60, f"{POD}'s own utilization")
    assert utilization <= 0.87 and sts_context(apps_v1, ns, NAME) == 262144
    assert sts_utilization(apps_v1, ns, NAME) == 0.92  # the template keeps the request
    wait_restarted(core_v1, ns, uid)
    assert condition(get_qtd(custom, ns, NAME), "UtilizationReduced")["reason"] == "GPUMemoryInUse"


@pytest.mark.parametrize(
    ("kind", "reason", "words"),
    [
        ("weights-oom", "InsufficientGPUMemory", "loading the weights"),
        ("oom-killed", "HostOutOfMemory", "limits.memory"),
    ],
)
def test_a_failure_with_no_cure_stalls_without_a_rollout(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, apps_v1: client.AppsV1Api,
    api_client: client.ApiClient, kind: str, reason: str, words: str,
) -> None:  # fmt: skip
    apply_ready(custom, ns, gpu=H200)
    generation = apps_v1.read_namespaced_stateful_set(NAME, ns).metadata.generation
    if kind == "oom-killed":
        terminate_container(api_client, ns, POD, "server")  # the kubelet: OOMKilled, exit 137, no message
    else:
        crash(api_client, ns, failure(kind))
    obj = wait_condition(custom, ns, "Stalled", reason)
    assert condition(obj, "Stalled")["status"] == "True" and words in condition(obj, "Stalled")["message"]
    wait_event(ns, "Warning", reason)
    settle(3)
    assert apps_v1.read_namespaced_stateful_set(NAME, ns).metadata.generation == generation  # no rollout
    ctx = context(custom, ns)
    assert (ctx["effective"], ctx["gpuMemoryUtilization"]["effective"], ctx.get("history")) == (
        262144,
        0.92,
        None,
    )
