"""The out-of-memory fallback closed on a real vLLM (issue 12), on the local cluster.

e2e/test_fallback.py injects the launcher's record by hand; here nothing is written by hand.
The harness (e2e/devcluster/realvllm/harness.py) plays the kubelet of the simulated pod: it
runs the pod's own command (the launcher and the CPU build of vLLM, on the tiny checkpoint)
and reports what happens into the pod's status. The resource asks for 262144 tokens with a
KV cache budget of 1 GiB (`VLLM_CPU_KVCACHE_SPACE`, through `spec.runtime.env`), where about
65k fit: vLLM refuses to start and says what fits, the launcher writes it down, the operator
lowers the context to vLLM's estimate rounded down to 1024, the StatefulSet replaces the pod,
and the second vLLM serves.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

pytest.register_assert_rewrite("e2e.operator_fixtures")

from e2e.devcluster.kube import wait_for  # noqa: E402
from e2e.devcluster.realvllm import checkpoint, env  # noqa: E402
from e2e.devcluster.realvllm.figures import FIGURES  # noqa: E402
from e2e.devcluster.realvllm.harness import MARKER, Harness  # noqa: E402
from e2e.devcluster.realvllm.server import KV_SPACE_VAR  # noqa: E402
from e2e.operator_fixtures import NAME, Operator, apply_yaml, condition, get_qtd, sample, sts_context  # noqa: E402
from qwen_runtime.record import Reason, parse  # noqa: E402

pytest_plugins = ("e2e.operator_fixtures",)
pytestmark = [pytest.mark.e2e, pytest.mark.realvllm]

REQUEST = 262144
KV_BUDGET_GIB = 1
READY_TIMEOUT = 900.0
"""Two vLLM starts (one refused, one serving) of about a minute each on 2 busy cores, and margin."""


def ready_at_a_lower_context(custom: client.CustomObjectsApi, ns: str) -> dict[str, Any] | None:
    obj = get_qtd(custom, ns, NAME)
    status = obj.get("status") or {}
    lowered = (status.get("context") or {}).get("effective", REQUEST) < REQUEST
    current = status.get("observedGeneration") == obj["metadata"]["generation"]
    return obj if lowered and current and status.get("phase") == "Ready" else None


def test_a_request_that_does_not_fit_runs_at_vllms_own_estimate(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, apps_v1: client.AppsV1Api,
    core_v1: client.CoreV1Api,
    api_client: client.ApiClient, tmp_path: Path,
) -> None:  # fmt: skip
    del operator  # running: it is what reacts
    python = env.require()
    tiny = checkpoint.ensure(python)
    runtime_env = [{"name": MARKER, "value": "true"}, {"name": KV_SPACE_VAR, "value": str(KV_BUDGET_GIB)}]
    with Harness(api_client, ns, python, tiny, tmp_path) as harness:
        # GPUs the memory plan fits the request into: the servers start at 262144, as on real H200s
        apply_yaml(ns, sample(gpu={"memoryGiB": 141}, runtime={"env": runtime_env}))
        try:
            obj = wait_for(lambda: ready_at_a_lower_context(custom, ns), READY_TIMEOUT, "Ready below 262144")
        finally:
            runs = [(r.pod, r.restart_count, r.context, r.exit_code, r.ready_after) for r in harness.runs]
            print(f"harness runs: {runs}; errors: {harness.errors}")
        assert not harness.errors
        assert len(harness.runs) == 2, f"one refused start and one that serves, not {runs}"
        refused, serving = harness.runs
        served = json.loads(urllib.request.urlopen(serving.server.url("/v1/models"), timeout=30).read())

    # the first vLLM refused 262144 and said what fits; the launcher's record reached the pod
    record = parse(refused.message)
    assert (refused.context, refused.exit_code, refused.restart_count) == (REQUEST, 1, 0)
    assert record is not None and record["reason"] == Reason.KV_CACHE_INSUFFICIENT, refused.message
    estimate = record["estimatedMaxModelLen"]
    assert record["maxModelLen"] == REQUEST and 0 < estimate < REQUEST
    assert f"the estimated maximum model length is {estimate}" in refused.server.log()

    # one fallback: vLLM's own number rounded down to 1024, recorded with vLLM's figures
    chosen = estimate // 1024 * 1024
    context = obj["status"]["context"]
    assert (context["requested"], context["effective"]) == (REQUEST, chosen)
    (step,) = context["history"]
    assert (step["from"], step["to"], step["reason"]) == (REQUEST, chosen, Reason.KV_CACHE_INSUFFICIENT)
    assert (step["pod"], step["podUID"], step["restartCount"]) == (refused.pod, refused.uid, 1)
    assert str(estimate) in step["detail"], step
    reduced = condition(obj, "ContextReduced")
    assert (reduced["status"], reduced["reason"]) == ("True", "OutOfMemory")
    assert sts_context(apps_v1, ns, NAME) == chosen

    # one restart: the StatefulSet replaced the pod, whose vLLM serves the chosen context
    assert (serving.pod, serving.context, serving.exit_code) == (refused.pod, chosen, None)
    assert served["data"][0]["max_model_len"] == chosen
    assert serving.uid != refused.uid and serving.ready_after is not None
    assert obj["status"]["readyReplicas"] == 1
    pod = core_v1.read_namespaced_pod(serving.pod, ns)
    assert pod.metadata.uid == serving.uid
    assert any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)
    FIGURES.add("closed loop (fallback on the cluster)", request=REQUEST, kv_gib=KV_BUDGET_GIB,
                estimate=estimate, chosen=chosen, refused_after_s=round(refused.server.exited_after or 0, 1),
                healthy_s=round(serving.ready_after, 1))  # fmt: skip
