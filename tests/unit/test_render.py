"""Rendering rules: one resource and an effective context in, child manifests out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from qwen_operator import api
from qwen_operator.api import vocabulary
from qwen_operator.children import alerting, launcher, registry, render

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = yaml.safe_load((ROOT / "samples" / "qwen3-235b-thinking.yaml").read_text())
EVERY_API = frozenset(registry.OPTIONAL_CRDS)
SCALED = {"autoscaling": {"minReplicas": 2, "maxReplicas": 6, "targetWaitingPerReplica": 3}}
KEY = {"auth": {"apiKeySecretRef": {"name": "qwen-api-key", "key": "key"}}}
"""An API key, which a NodePort or LoadBalancer Service and an InferencePool require."""
POOL = {"inferencePool": {"endpointPickerRef": {"name": "epp", "port": {"number": 9002}}}, **KEY}


def _res(
    spec: dict[str, Any] | None = None, name: str = "qwen3-thinking", uid: str | None = "uid-1"
) -> dict[str, Any]:
    meta = {"name": name, "namespace": "llm", **({"uid": uid} if uid else {})}
    return {"apiVersion": api.API_VERSION, "kind": api.KIND, "metadata": meta, "spec": spec or {}}


def _children(spec: dict[str, Any] | None = None, **kw: Any) -> dict[str, dict[str, Any]]:
    return {f"{c['kind']}/{c['metadata']['name']}": c for c in render.render(_res(spec), **kw)}


def _sts(spec: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    return _children(spec, **kw)["StatefulSet/qwen3-thinking"]


def _server(spec: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    container: dict[str, Any] = _sts(spec, **kw)["spec"]["template"]["spec"]["containers"][0]
    return container


def _flags(argv: list[str]) -> dict[str, str | None]:
    """vllm serve flags after the launcher and the model: {flag: value or None}."""
    assert argv[:7] == ["python3", "-m", "qwen_runtime", "--", "vllm", "serve", argv[6]]
    out: dict[str, str | None] = {}
    rest = argv[7:]
    for i, arg in enumerate(rest):
        if arg.startswith("--"):
            nxt = rest[i + 1] if i + 1 < len(rest) else None
            out[arg] = None if nxt is None or nxt.startswith("--") else nxt
    return out


def test_children_in_apply_order_with_names() -> None:
    kinds = [(c["kind"], c["metadata"]["name"]) for c in render.render(_res())]
    assert kinds == [
        ("ServiceAccount", "qwen3-thinking-server"),
        ("ConfigMap", launcher.configmap_name("qwen3-thinking")),
        ("ConfigMap", "qwen3-thinking-replicas"),
        ("Service", "qwen3-thinking-headless"),
        ("Service", "qwen3-thinking"),
        ("StatefulSet", "qwen3-thinking"),
        ("PodDisruptionBudget", "qwen3-thinking"),
        ("NetworkPolicy", "qwen3-thinking"),
    ]


def test_service_monitor_only_when_asked() -> None:
    children = render.render(_res(), served=frozenset({vocabulary.SERVICE_MONITOR_CRD}))
    monitor = children[-1]
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "ServiceMonitor")
    client = next(c for c in children if c["metadata"]["name"] == "qwen3-thinking" and c["kind"] == "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= client["metadata"]["labels"].items()
    assert selector["app.kubernetes.io/component"] == "api"  # the client Service, not the headless one
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    assert "ServiceMonitor" not in [c["kind"] for c in render.render(_res())]


def test_prometheus_rule_only_when_asked_and_served_with_the_shipped_alerts_narrowed() -> None:
    served = frozenset({vocabulary.PROMETHEUS_RULE_CRD})
    asked = _res({"monitoring": {"prometheusRule": True}})
    assert "PrometheusRule" not in [c["kind"] for c in render.render(_res(), served=served)]
    assert "PrometheusRule" not in [c["kind"] for c in render.render(asked)]  # CRD not served
    rule = render.render(asked, served=served)[-1]
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["metadata"]["labels"]["app.kubernetes.io/component"] == "alerts"
    shipped = {r["alert"]: r for g in alerting.shipped_groups() if g["name"] == alerting.SERVER_GROUP
               for r in g["rules"]}  # fmt: skip
    rules = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert rules.keys() == shipped.keys() and "QwenThinkingKVCacheFull" in rules
    for name, mine in rules.items():  # same alert, threshold, for, annotations: only the selector differs
        assert {**mine, "expr": ""} == {**shipped[name], "expr": ""}
        assert mine["expr"] == alerting.narrowed(shipped[name]["expr"], "llm", "qwen3-thinking")
    assert (
        'vllm:kv_cache_usage_perc{namespace="llm",service="qwen3-thinking"}'
        in rules["QwenThinkingKVCacheFull"]["expr"]
    )


def test_narrowing_keeps_a_metrics_own_matchers_and_reads_the_operators_series_by_name() -> None:
    expr = 'max by (name) (qwen_operator_resource_replicas{stage="CrashLoop"}) > 0'
    assert alerting.narrowed(expr, "a", "b") == (
        'max by (name) (qwen_operator_resource_replicas{namespace="a",name="b",stage="CrashLoop"}) > 0'
    )
    assert alerting.narrowed("rate(vllm:num_preemptions_total[5m])", "a", "b") == (
        'rate(vllm:num_preemptions_total{namespace="a",service="b"}[5m])'
    )


def test_horizontal_pod_autoscaler_without_keda_targets_the_scale_subresource() -> None:
    hpa = _children(SCALED)["HorizontalPodAutoscaler/qwen3-thinking"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "serving.qwen-operator.io/v1alpha1", "kind": "QwenThinkingDeployment",
        "name": "qwen3-thinking",
    }  # fmt: skip
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"] == [
        {"type": "Pods", "pods": {"metric": {"name": "vllm:num_requests_waiting"},
                                  "target": {"type": "AverageValue", "averageValue": "3"}}}
    ]  # fmt: skip
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 1800  # the long default
    assert not any(k.startswith("ScaledObject") for k in _children(SCALED))


def test_scaled_object_when_keda_is_served() -> None:
    spec = {"autoscaling": {**SCALED["autoscaling"], "scaleDownStabilizationSeconds": 600}}
    children = _children(spec, served=frozenset({vocabulary.SCALED_OBJECT_CRD}))
    assert not any(k.startswith("HorizontalPodAutoscaler") for k in children)
    so = children["ScaledObject/qwen3-thinking"]
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    assert so["spec"]["scaleTargetRef"]["kind"] == "QwenThinkingDeployment"
    assert (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (2, 6)
    (trigger,) = so["spec"]["triggers"]
    assert (trigger["type"], trigger["metricType"]) == ("prometheus", "AverageValue")
    assert trigger["metadata"] == {
        "serverAddress": "http://prometheus-operated.monitoring.svc:9090",
        "query": 'sum(vllm:num_requests_waiting{namespace="llm",service="qwen3-thinking"})',
        "threshold": "3",
    }
    behavior = so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 600


def test_no_autoscaler_without_spec_autoscaling() -> None:
    kinds = {c["kind"] for c in render.render(_res(), served=EVERY_API)}
    assert not kinds & {"HorizontalPodAutoscaler", "ScaledObject", "InferencePool"}


def test_inference_pool_selects_the_servers_only_when_served() -> None:
    assert "InferencePool/qwen3-thinking" not in _children(POOL)  # the status says why
    children = _children(POOL, served=frozenset({vocabulary.INFERENCE_POOL_CRD}))
    pool = children["InferencePool/qwen3-thinking"]
    assert pool["apiVersion"] == "inference.networking.k8s.io/v1"
    sts = children["StatefulSet/qwen3-thinking"]
    assert pool["spec"]["selector"] == {"matchLabels": sts["spec"]["selector"]["matchLabels"]}
    assert pool["spec"]["targetPorts"] == [{"number": 8000}]
    (port,) = sts["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert port["containerPort"] == 8000
    assert pool["spec"]["endpointPickerRef"] == {
        "group": "", "kind": "Service", "name": "epp", "port": {"number": 9002}, "failureMode": "FailClose"
    }  # fmt: skip


def test_every_child_is_labelled_namespaced_and_owned() -> None:
    for child in render.render(_res({**SCALED, **POOL}), served=EVERY_API):
        meta = child["metadata"]
        assert meta["namespace"] == "llm"
        labels = meta["labels"]
        assert labels["app.kubernetes.io/instance"] == "qwen3-thinking"
        assert labels["app.kubernetes.io/managed-by"] == "qwen-operator"
        assert labels["app.kubernetes.io/name"] == vocabulary.APP_NAME
        assert labels["app.kubernetes.io/component"]
        (owner,) = meta["ownerReferences"]
        assert owner == {
            "apiVersion": "serving.qwen-operator.io/v1alpha1",
            "kind": "QwenThinkingDeployment",
            "name": "qwen3-thinking",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }


def test_no_owner_reference_without_uid() -> None:
    for child in render.render(_res(uid=None)):
        assert "ownerReferences" not in child["metadata"]


def test_sample_server_command_has_exactly_the_model_card_flags() -> None:
    argv = _server(SAMPLE["spec"])["command"]
    assert argv[6] == "Qwen/Qwen3-235B-A22B-Thinking-2507-FP8"
    assert _flags(argv) == {
        "--served-model-name": "qwen3-thinking",
        "--host": "0.0.0.0",
        "--port": "8000",
        "--tensor-parallel-size": "4",
        "--max-model-len": "262144",
        "--gpu-memory-utilization": "0.92",
        "--shutdown-timeout": "1200",
        "--reasoning-parser": "deepseek_r1",
        "--enable-auto-tool-choice": None,
        "--tool-call-parser": "hermes",
        "--override-generation-config": (
            '{"temperature":0.6,"top_p":0.95,"top_k":20,"min_p":0.0,"max_new_tokens":32768}'
        ),
        "--download-dir": "/models/hub",
    }
    assert "--enable-reasoning" not in argv


def test_effective_context_changes_only_max_model_len() -> None:
    full = render.render(_res(SAMPLE["spec"]))
    reduced = render.render(_res(SAMPLE["spec"]), max_model_len=131072)
    dump_full = json.dumps(full).replace('"--max-model-len", "262144"', '"--max-model-len", "131072"')
    assert json.dumps(reduced) == dump_full
    assert dump_full != json.dumps(full)


def test_gpus_requested_and_limited_by_tensor() -> None:
    for tensor, expert in [(1, False), (2, False), (4, False), (8, True)]:
        res = _server({"parallelism": {"tensor": tensor, "expert": expert}})["resources"]
        assert res["requests"]["nvidia.com/gpu"] == tensor
        assert res["limits"]["nvidia.com/gpu"] == tensor
        assert _flags(_server({"parallelism": {"tensor": tensor, "expert": expert}})["command"])[
            "--tensor-parallel-size"
        ] == str(tensor)


def test_gpu_resource_name_is_configurable() -> None:
    res = _server({"gpu": {"resourceName": "amd.com/gpu"}})["resources"]
    assert res["limits"]["amd.com/gpu"] == 4
    assert "nvidia.com/gpu" not in res["limits"]


def test_expert_parallel_flag() -> None:
    assert "--enable-expert-parallel" in _server({"parallelism": {"tensor": 8, "expert": True}})["command"]
    assert "--enable-expert-parallel" not in _server()["command"]


def test_kv_cache_dtype_only_when_not_auto() -> None:
    assert "--kv-cache-dtype" not in _server()["command"]
    assert _flags(_server({"runtime": {"kvCacheDtype": "fp8"}})["command"])["--kv-cache-dtype"] == "fp8"


def test_raw_output_for_qwen_agent() -> None:
    argv = _server({"reasoningParser": "none", "toolCalling": {"enabled": False}})["command"]
    for flag in (
        "--reasoning-parser",
        "--enable-auto-tool-choice",
        "--tool-call-parser",
        "--enable-reasoning",
    ):
        assert flag not in argv


def test_sampling_goes_to_generation_config_with_vllm_keys() -> None:
    spec = {
        "sampling": {
            "temperature": 0.7,
            "topP": 0.8,
            "topK": -1,
            "minP": 0.05,
            "presencePenalty": 1.5,
            "maxTokens": 81920,
        }
    }
    config = json.loads(_flags(_server(spec)["command"])["--override-generation-config"] or "")
    assert config == {
        "temperature": 0.7,
        "top_p": 0.8,
        "top_k": -1,
        "min_p": 0.05,
        "presence_penalty": 1.5,
        "max_new_tokens": 81920,
    }


def test_api_key_comes_from_the_secret_through_env_never_the_argv() -> None:
    server = _server({"auth": {"apiKeySecretRef": {"name": "keys", "key": "api"}}})
    assert not any("api-key" in a or "API_KEY" in a for a in server["command"])  # `ps` on the node shows argv
    (env,) = [e for e in server["env"] if e["name"] == "VLLM_API_KEY"]  # vLLM 0.33 reads envs.VLLM_API_KEY
    assert env == {"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": "keys", "key": "api"}}}
    assert "VLLM_API_KEY" not in {e["name"] for e in _server()["env"]}


def test_extra_args_come_last() -> None:
    argv = _server({"runtime": {"extraArgs": ["--enable-prefix-caching", "--max-num-seqs=64"]}})["command"]
    assert argv[-2:] == ["--enable-prefix-caching", "--max-num-seqs=64"]


def test_served_name_and_revision() -> None:
    argv = _server({"model": {"servedName": "qwen", "revision": "abc123"}})["command"]
    assert _flags(argv)["--served-model-name"] == "qwen"
    assert _flags(argv)["--revision"] == "abc123"


def test_hugging_face_source_downloads_in_an_init_container_to_a_per_replica_volume() -> None:
    sts = _sts({"model": {"cache": {"size": "700Gi", "storageClassName": "fast"}}})
    pod = sts["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["command"] == ["python3", "-m", "qwen_runtime", "fetch"]
    env = {e["name"]: e.get("value") for e in init["env"]}
    assert env["QWEN_MODEL_ID"] == "Qwen/Qwen3-235B-A22B-Thinking-2507-FP8"
    assert env["QWEN_WEIGHTS_DIR"] == env["HF_HUB_CACHE"] == "/models/hub"
    assert "HF_TOKEN" not in env  # the model is public
    (vct,) = sts["spec"]["volumeClaimTemplates"]
    assert vct["metadata"]["name"] == "weights"
    assert vct["spec"]["resources"]["requests"]["storage"] == "700Gi"
    assert vct["spec"]["storageClassName"] == "fast"
    server_env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert server_env["HF_HUB_OFFLINE"] == "1"


def test_hugging_face_token_from_secret() -> None:
    spec = {"model": {"source": {"huggingFace": {"tokenSecretRef": {"name": "hf", "key": "tok"}}}}}
    (init,) = _sts(spec)["spec"]["template"]["spec"]["initContainers"]
    (token,) = [e for e in init["env"] if e["name"] == "HF_TOKEN"]
    assert token["valueFrom"] == {"secretKeyRef": {"name": "hf", "key": "tok"}}


def test_pvc_source_mounts_read_only_without_download() -> None:
    sts = _sts({"model": {"source": {"pvc": {"claimName": "weights-rox", "path": "/qwen/fp8/"}}}})
    pod = sts["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    # the one claim of its own a replica gets is its compile cache's (test_compile_cache.py)
    assert [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]] == ["compile-cache"]
    (weights,) = [v for v in pod["volumes"] if v["name"] == "weights"]
    assert weights["persistentVolumeClaim"] == {"claimName": "weights-rox", "readOnly": True}
    server = pod["containers"][0]
    (mount,) = [m for m in server["volumeMounts"] if m["name"] == "weights"]
    assert mount["readOnly"] is True
    assert server["command"][6] == "/models/qwen/fp8"
    assert "--download-dir" not in server["command"]


def test_shared_memory_is_memory_backed_with_a_limit() -> None:
    pod = _sts()["spec"]["template"]["spec"]
    (dshm,) = [v for v in pod["volumes"] if v["name"] == "dshm"]
    assert dshm["emptyDir"]["medium"] == "Memory"
    assert dshm["emptyDir"]["sizeLimit"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in pod["containers"][0]["volumeMounts"]


def test_probes_default_and_merge_overrides() -> None:
    server = _server()
    startup = server["startupProbe"]
    assert startup["httpGet"] == {"path": "/health", "port": "http"}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30 * 60
    assert server["livenessProbe"]["httpGet"]["path"] == "/health"
    ready = server["readinessProbe"]["exec"]["command"]
    assert ready == ["python3", "-m", "qwen_runtime", "ready", "--port", "8000", "--model", "qwen3-thinking"]
    tuned = _server({"probes": {"startup": {"failureThreshold": 600}, "liveness": {"periodSeconds": 60}}})
    assert tuned["startupProbe"]["failureThreshold"] == 600
    assert tuned["startupProbe"]["periodSeconds"] == startup["periodSeconds"]
    assert tuned["livenessProbe"]["periodSeconds"] == 60


def test_long_engine_timeout_termination_message_and_grace() -> None:
    pod = _sts()["spec"]["template"]["spec"]
    server = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert int(env["VLLM_ENGINE_READY_TIMEOUT_S"]) >= 1800
    startup = server["startupProbe"]
    # vLLM must time out before the kubelet kills the pod, so its failure gets classified
    assert startup["periodSeconds"] * startup["failureThreshold"] > int(env["VLLM_ENGINE_READY_TIMEOUT_S"])
    assert server["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert pod["terminationGracePeriodSeconds"] >= 60


def test_user_env_replaces_operator_env_by_name() -> None:
    spec = {
        "runtime": {
            "env": [{"name": "VLLM_ENGINE_READY_TIMEOUT_S", "value": "7200"}, {"name": "X", "value": "1"}]
        }
    }
    env = _server(spec)["env"]
    names = [e["name"] for e in env]
    assert len(names) == len(set(names))
    assert {"name": "VLLM_ENGINE_READY_TIMEOUT_S", "value": "7200"} in env
    assert {"name": "X", "value": "1"} in env


def test_resources_defaults_and_overrides() -> None:
    default = _server()["resources"]
    assert default["requests"]["cpu"] == "8" and default["requests"]["memory"] == "96Gi"
    assert default["limits"]["memory"] == "256Gi"
    custom = _server({"resources": {"requests": {"memory": "400Gi"}, "limits": {"cpu": 32}}})["resources"]
    assert custom["requests"]["memory"] == "400Gi"
    assert "memory" not in custom["limits"]  # the user's request must not exceed our default limit
    assert custom["limits"]["cpu"] == 32
    assert "cpu" not in custom["requests"]


def test_statefulset_shape_and_scheduling_pass_through() -> None:
    spec = {
        "replicas": 3,
        "gpu": {"product": "NVIDIA-H200"},
        "scheduling": {
            "nodeSelector": {"pool": "gpu"},
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"}
            ],
            "affinity": {"podAntiAffinity": {}},
            "priorityClassName": "inference",
        },
    }
    sts = _sts(spec)
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["spec"]["serviceName"] == "qwen3-thinking-headless"
    assert sts["spec"]["selector"]["matchLabels"] == vocabulary.selector_labels("qwen3-thinking")
    pod = sts["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "gpu", "nvidia.com/gpu.product": "NVIDIA-H200"}
    assert pod["tolerations"][0] == {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    assert pod["tolerations"][1]["key"] == "dedicated"
    assert pod["affinity"] == {"podAntiAffinity": {}}
    assert pod["priorityClassName"] == "inference"
    assert "affinity" not in _sts()["spec"]["template"]["spec"]


def test_services_and_pdb() -> None:
    children = _children(
        {"service": {"type": "LoadBalancer", "port": 443}, "disruption": {"maxUnavailable": "25%"}, **KEY}
    )
    headless = children["Service/qwen3-thinking-headless"]["spec"]
    assert headless["clusterIP"] == "None"
    client = children["Service/qwen3-thinking"]["spec"]
    assert client["type"] == "LoadBalancer"
    assert client["ports"] == [{"name": "http", "port": 443, "targetPort": "http", "protocol": "TCP"}]
    assert client["selector"] == vocabulary.selector_labels("qwen3-thinking")
    pdb = children["PodDisruptionBudget/qwen3-thinking"]["spec"]
    assert pdb["maxUnavailable"] == "25%"


def test_endpoint_and_selector_string() -> None:
    res = api.parse_resource(_res({"service": {"port": 9000}}))
    assert render.endpoint(res) == "http://qwen3-thinking.llm.svc:9000/v1"
    assert (
        vocabulary.selector_string("x") == "app.kubernetes.io/instance=x,app.kubernetes.io/name=qwen-thinking"
    )


def test_values_with_yaml_special_characters_survive() -> None:
    spec = {"runtime": {"extraArgs": ["--chat-template={{ messages }}: '#x' \"y\""]}}
    assert _server(spec)["command"][-1] == "--chat-template={{ messages }}: '#x' \"y\""


def test_templates_are_strict() -> None:
    with pytest.raises(jinja2.UndefinedError):
        render._environment().from_string("{{ nope }}").render()


def test_check_catches_a_broken_child() -> None:
    res = api.parse_resource(_res())
    children = render.render(res)
    children[0]["metadata"]["labels"] = {}
    with pytest.raises(render.RenderError):
        render._check(res, children, render.server_argv(res))


def test_render_rejects_invalid_input() -> None:
    with pytest.raises(api.InvalidResource):
        render.render(_res({"parallelism": {"tensor": 3}}))


@pytest.mark.parametrize("sample", sorted((ROOT / "samples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_sample_renders(sample: Path) -> None:
    (doc,) = yaml.safe_load_all(sample.read_text())
    shared = (
        ["PersistentVolumeClaim", "Job"]
        if "shared-cache" in sample.name or "multinode" in sample.name
        else []
    )
    workload = (
        ["Service", "LeaderWorkerSet"]
        if "multinode" in sample.name
        else ["Service", "Service", "StatefulSet"]
    )
    groups = doc["spec"]["replicas"] if "multinode" in sample.name else 0  # a NetworkPolicy each
    policies = ["NetworkPolicy"] * (1 + groups)
    settings = [] if "multinode" in sample.name else ["ConfigMap"]  # each replica's own (a StatefulSet's)
    kinds = ["ServiceAccount", "ConfigMap", *settings, *shared, *workload, "PodDisruptionBudget", *policies]
    assert [c["kind"] for c in render.render(doc)] == kinds


def test_samples_cover_the_model_card_h100_fp8_kv_and_pvc() -> None:
    def spec(name: str) -> api.QwenThinkingDeploymentSpec:
        return api.parse_resource(yaml.safe_load((ROOT / "samples" / name).read_text())).spec

    assert spec("qwen3-235b-thinking.yaml") == api.QwenThinkingDeploymentSpec()  # the model card
    h100 = spec("qwen3-235b-thinking-h100-fp8kv.yaml")
    assert (h100.gpu.product, h100.runtime.kv_cache_dtype) == ("NVIDIA-H100-80GB-HBM3", "fp8")
    pvc = render.pvc_source(spec("qwen3-235b-thinking-pvc.yaml"))
    assert pvc is not None and pvc.claim_name
    assert render.shared_cache(spec("qwen3-235b-thinking-shared-cache.yaml"))
    multinode = spec("qwen3-235b-thinking-multinode.yaml")
    assert (multinode.parallelism.tensor, multinode.parallelism.pipeline) == (4, 2)


def test_a_render_of_the_same_values_is_reused_yet_each_caller_gets_its_own_copy() -> None:
    res = {**SAMPLE, "metadata": {"name": "memo", "namespace": "ns", "uid": "u-memo"}}
    first = render.render(res)
    kept = len(render._DOCUMENTS._kept)
    first[5]["spec"]["replicas"] = 99  # a caller that edits what it got
    again = render.render(res)
    assert len(render._DOCUMENTS._kept) == kept  # the same values: nothing rendered anew
    assert again[5]["kind"] == "StatefulSet" and again[5]["spec"]["replicas"] == 1
    assert again[5] is not first[5]
    other = render.render(res, max_model_len=131072)  # other values: another document
    assert "131072" in other[5]["spec"]["template"]["spec"]["containers"][0]["command"]
