"""Invalid resources shared by the unit tests (CLI) and the e2e tests (apiserver).

Each case: an id, a spec patch (or a whole-resource patch) and the field the error must name.
"""

from __future__ import annotations

from typing import Any

INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("unknown-field", {"spec": {"bogus": 1}}, "spec.bogus"),
    ("tensor-3", {"spec": {"parallelism": {"tensor": 3}}}, "spec.parallelism.tensor"),
    ("tensor-8-without-expert", {"spec": {"parallelism": {"tensor": 8}}}, "spec.parallelism.expert"),
    (
        "min-above-max",
        {"spec": {"context": {"maxModelLen": 65536, "minModelLen": 131072}}},
        "spec.context.minModelLen",
    ),
    ("max-model-len-300000", {"spec": {"context": {"maxModelLen": 300000}}}, "spec.context.maxModelLen"),
    ("max-model-len-512", {"spec": {"context": {"maxModelLen": 512}}}, "spec.context.maxModelLen"),
    (
        "two-sources",
        {"spec": {"model": {"source": {"huggingFace": {}, "pvc": {"claimName": "w"}}}}},
        "spec.model.source",
    ),
    (
        "extra-args-max-model-len",
        {"spec": {"runtime": {"extraArgs": ["--max-model-len", "1000"]}}},
        "spec.runtime.extraArgs",
    ),
    (
        "extra-args-tp-equals",
        {"spec": {"runtime": {"extraArgs": ["--tensor-parallel-size=2"]}}},
        "spec.runtime.extraArgs",
    ),
    (
        "extra-args-underscore",
        {"spec": {"runtime": {"extraArgs": ["--enable-prefix-caching", "--max_model_len=8192"]}}},
        "spec.runtime.extraArgs",
    ),
    (
        "extra-args-enable-reasoning",
        {"spec": {"runtime": {"extraArgs": ["--enable-reasoning"]}}},
        "spec.runtime.extraArgs",
    ),
    ("negative-replicas", {"spec": {"replicas": -1}}, "spec.replicas"),
    (
        "gpu-memory-utilization-1.5",
        {"spec": {"runtime": {"gpuMemoryUtilization": 1.5}}},
        "spec.runtime.gpuMemoryUtilization",
    ),
    (
        "gpu-memory-utilization-0",
        {"spec": {"runtime": {"gpuMemoryUtilization": 0}}},
        "spec.runtime.gpuMemoryUtilization",
    ),
    (
        "utilization-floor-above-utilization",
        {"spec": {"runtime": {"gpuMemoryUtilization": 0.85, "minGpuMemoryUtilization": 0.9}}},
        "spec.runtime.minGpuMemoryUtilization",
    ),
    (
        "literal-hf-token",
        {"spec": {"runtime": {"env": [{"name": "HF_TOKEN", "value": "hf_abc"}]}}},
        "spec.runtime.env",
    ),
    (
        "literal-database-password",
        {"spec": {"runtime": {"env": [{"name": "db_password", "value": "hunter2"}]}}},
        "spec.runtime.env",
    ),
    ("weights-cache-1Ki", {"spec": {"model": {"cache": {"size": "1Ki"}}}}, "spec.model.cache.size"),
    ("weights-cache-100Gi", {"spec": {"model": {"cache": {"size": "100Gi"}}}}, "spec.model.cache.size"),
    (
        "capability-sys-admin",
        {"spec": {"runtime": {"addCapabilities": ["SYS_ADMIN"]}}},
        "spec.runtime.addCapabilities[0]",
    ),
    ("unknown-reasoning-parser", {"spec": {"reasoningParser": "deepseek"}}, "spec.reasoningParser"),
    ("kv-cache-int4", {"spec": {"runtime": {"kvCacheDtype": "int4"}}}, "spec.runtime.kvCacheDtype"),
    ("pvc-without-claim", {"spec": {"model": {"source": {"pvc": {}}}}}, "spec.model.source.pvc.claimName"),
    ("bad-cache-size", {"spec": {"model": {"cache": {"size": "lots"}}}}, "spec.model.cache.size"),
    (
        "resources-not-a-quantity",
        {"spec": {"resources": {"requests": {"memory": "lots"}}}},
        "spec.resources.requests.memory",
    ),
    ("negative-cache-size", {"spec": {"model": {"cache": {"size": "-5Gi"}}}}, "spec.model.cache.size"),
    (
        "max-unavailable-not-percent",
        {"spec": {"disruption": {"maxUnavailable": "50"}}},
        "spec.disruption.maxUnavailable",
    ),
    ("service-type", {"spec": {"service": {"type": "ExternalName"}}}, "spec.service.type"),
    (
        "autoscaling-min-above-max",
        {"spec": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}},
        "spec.autoscaling.minReplicas",
    ),
    (
        "autoscaling-stabilization-above-hpa-limit",
        {"spec": {"autoscaling": {"scaleDownStabilizationSeconds": 7200}}},
        "spec.autoscaling.scaleDownStabilizationSeconds",
    ),
    (
        "endpoint-picker-service-without-port",
        {"spec": {"inferencePool": {"endpointPickerRef": {"name": "epp"}}}},
        "spec.inferencePool.endpointPickerRef.port",
    ),
    ("name-too-long", {"metadata": {"name": "q" * 53}}, "metadata.name"),
    ("name-starts-with-digit", {"metadata": {"name": "3qwen"}}, "metadata.name"),
]


def resource(patch: dict[str, Any], name: str = "qwen3-thinking") -> dict[str, Any]:
    """A resource with the patch's spec and metadata merged in."""
    return {
        "apiVersion": "serving.qwen-operator.io/v1alpha1",
        "kind": "QwenThinkingDeployment",
        "metadata": {"name": name, **patch.get("metadata", {})},
        "spec": patch.get("spec", {}),
    }
