"""Hostile input: bad resources that `qwen-operator render` and the apiserver must both refuse.

One corpus, shared by the unit tests (the CLI, in tests/unit/test_cli.py and tests/unit/test_api.py)
and the end-to-end tests (the apiserver, at `kubectl apply` and as raw text, in
e2e/test_crd.py). Each case is a document and the field its refusal must name: the CLI's
message starts with `field`, the apiserver's contains `server` (the same field, unless the
apiserver words it otherwise, e.g. for a YAML error it names the key and line).

Categories (`Case.kind`): types, bounds and enums; cross-field rules; managed flags and their
abbreviations; literal secrets and impossible sizes; names, Unicode and control characters;
huge strings and lists; YAML oddities (written as text, since they are about the text).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml

HEADER = "apiVersion: serving.qwen-operator.io/v1alpha1\nkind: QwenThinkingDeployment\n"
NAME = "qwen3-thinking"
TOKEN = "hf_" + "aBcD1234" * 5
"""Shaped like a Hugging Face token; not one."""


@dataclass(frozen=True)
class Case:
    """One bad resource."""

    id: str
    kind: str
    field: str
    """Where the CLI says the problem is: its message starts with it."""
    patch: dict[str, Any] | None = None
    """Spec and metadata merged into a minimal resource (`resource`)."""
    text: str | None = None
    """Or the whole document, verbatim (YAML oddities)."""
    server: str | None = None
    """What the apiserver's message contains, when not `field` itself."""
    kubectl_reads_it: bool = True
    """False where kubectl's YAML reading changes the document before the apiserver sees it (a
    key given twice: kubectl keeps the last one without a word); the raw text still fails."""

    def document(self) -> str:
        if self.text is not None:
            return self.text
        return yaml.safe_dump(resource(self.patch or {}), allow_unicode=False, width=1 << 30)

    @property
    def expected_server(self) -> str:
        return self.server or self.field


def resource(patch: dict[str, Any], name: str = NAME) -> dict[str, Any]:
    """A resource with the patch's spec and metadata merged in."""
    return {
        "apiVersion": "serving.qwen-operator.io/v1alpha1",
        "kind": "QwenThinkingDeployment",
        "metadata": {"name": name, **patch.get("metadata", {})},
        "spec": patch.get("spec", {}),
    }


def _spec(spec: dict[str, Any]) -> dict[str, Any]:
    return {"spec": spec}


def _runtime(**fields: Any) -> dict[str, Any]:
    return _spec({"runtime": fields})


def _args(*args: str) -> dict[str, Any]:
    return _runtime(extraArgs=list(args))


def _env(*env: dict[str, Any]) -> dict[str, Any]:
    return _runtime(env=list(env))


def _scheduling(**fields: Any) -> dict[str, Any]:
    return _spec({"scheduling": fields})


def _affinity(**fields: Any) -> dict[str, Any]:
    return _scheduling(affinity=fields)


_KEY = {"apiKeySecretRef": {"name": "qwen-api-key", "key": "key"}}
"""An API key, which an exposed API requires."""

_NODE_REQUIRED = "spec.scheduling.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
_ANTI_REQUIRED = "spec.scheduling.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution"
_TERM = {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
_POD_TERM = {"labelSelector": {"matchLabels": {"app": "qwen"}}, "topologyKey": "kubernetes.io/hostname"}


def _node_required(terms: list[dict[str, Any]]) -> dict[str, Any]:
    return _affinity(
        nodeAffinity={"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}
    )


def _anti_required(terms: list[dict[str, Any]]) -> dict[str, Any]:
    return _affinity(podAntiAffinity={"requiredDuringSchedulingIgnoredDuringExecution": terms})


def _text(spec_lines: str, metadata: str = f"metadata: {{name: {NAME}}}\n") -> str:
    return HEADER + metadata + spec_lines


def _billion_laughs() -> str:
    lines = ["    affinity:", '      l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"      l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    return _text("spec:\n  scheduling:\n" + "\n".join(lines) + "\n")


TYPES = "types, bounds and enums"
CROSS = "cross-field rules"
FLAGS = "managed flags"
SECRETS = "literal secrets and impossible sizes"
NAMES = "names, Unicode and control characters"
HUGE = "huge strings and lists"
YAML = "YAML oddities"

CASES: list[Case] = [
    # -- types, bounds and enums ------------------------------------------------------------
    Case("unknown-field", TYPES, "spec.bogus", _spec({"bogus": 1})),
    Case("tensor-3", TYPES, "spec.parallelism.tensor", _spec({"parallelism": {"tensor": 3}})),
    Case("pipeline-0", TYPES, "spec.parallelism.pipeline", _spec({"parallelism": {"pipeline": 0}})),
    Case("pipeline-9", TYPES, "spec.parallelism.pipeline", _spec({"parallelism": {"pipeline": 9}})),
    Case(
        "max-model-len-300000", TYPES, "spec.context.maxModelLen", _spec({"context": {"maxModelLen": 300000}})
    ),
    Case("max-model-len-512", TYPES, "spec.context.maxModelLen", _spec({"context": {"maxModelLen": 512}})),
    Case(
        "max-model-len-auto", TYPES, "spec.context.maxModelLen", _spec({"context": {"maxModelLen": "auto"}})
    ),
    Case("negative-replicas", TYPES, "spec.replicas", _spec({"replicas": -1})),
    Case("replicas-1025", TYPES, "spec.replicas", _spec({"replicas": 1025})),
    Case("replicas-fraction", TYPES, "spec.replicas", _spec({"replicas": 1.5})),
    Case("utilization-1.5", TYPES, "spec.runtime.gpuMemoryUtilization", _runtime(gpuMemoryUtilization=1.5)),
    Case("utilization-0", TYPES, "spec.runtime.gpuMemoryUtilization", _runtime(gpuMemoryUtilization=0)),
    Case("unknown-reasoning-parser", TYPES, "spec.reasoningParser", _spec({"reasoningParser": "deepseek"})),
    Case(
        "tool-parser-mistral", TYPES, "spec.toolCalling.parser", _spec({"toolCalling": {"parser": "mistral"}})
    ),
    Case("kv-cache-int4", TYPES, "spec.runtime.kvCacheDtype", _runtime(kvCacheDtype="int4")),
    Case("service-type", TYPES, "spec.service.type", _spec({"service": {"type": "ExternalName"}})),
    Case(
        "autoscaling-stabilization-above-hpa-limit",
        TYPES,
        "spec.autoscaling.scaleDownStabilizationSeconds",
        _spec({"autoscaling": {"scaleDownStabilizationSeconds": 7200}}),
    ),
    Case("service-port-70000", TYPES, "spec.service.port", _spec({"service": {"port": 70000}})),
    Case("temperature-3", TYPES, "spec.sampling.temperature", _spec({"sampling": {"temperature": 3}})),
    Case("top-p-0", TYPES, "spec.sampling.topP", _spec({"sampling": {"topP": 0}})),
    Case("top-k-minus-2", TYPES, "spec.sampling.topK", _spec({"sampling": {"topK": -2}})),
    Case("max-tokens-0", TYPES, "spec.sampling.maxTokens", _spec({"sampling": {"maxTokens": 0}})),
    Case(
        "presence-penalty-negative",
        TYPES,
        "spec.sampling.presencePenalty",
        _spec({"sampling": {"presencePenalty": -0.5}}),
    ),
    Case(
        "probe-period-0",
        TYPES,
        "spec.probes.startup.periodSeconds",
        _spec({"probes": {"startup": {"periodSeconds": 0}}}),
    ),
    Case(
        "fallback-steps-empty", TYPES, "spec.context.fallbackSteps", _spec({"context": {"fallbackSteps": []}})
    ),
    Case(
        "fallback-step-512",
        TYPES,
        "spec.context.fallbackSteps[0]",
        _spec({"context": {"fallbackSteps": [512]}}),
    ),
    Case("gpu-memory-0", TYPES, "spec.gpu.memoryGiB", _spec({"gpu": {"memoryGiB": 0}})),
    Case(
        "max-unavailable-not-percent",
        TYPES,
        "spec.disruption.maxUnavailable",
        _spec({"disruption": {"maxUnavailable": "50"}}),
    ),
    Case(
        "max-unavailable-negative",
        TYPES,
        "spec.disruption.maxUnavailable",
        _spec({"disruption": {"maxUnavailable": -1}}),
    ),
    Case(
        "value-from-unknown-field",
        TYPES,
        "spec.runtime.env[0].valueFrom.secretKeyRef.bogus",
        _env({"name": "V", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "bogus": 1}}}),
    ),
    Case(
        "affinity-unknown-field",
        TYPES,
        "spec.scheduling.affinity.nodeAffinity.bogus",
        _affinity(nodeAffinity={"bogus": {}}),
    ),
    Case(
        "toleration-seconds-string",
        TYPES,
        "spec.scheduling.tolerations[0].tolerationSeconds",
        _scheduling(tolerations=[{"key": "k", "effect": "NoExecute", "tolerationSeconds": "60"}]),
    ),
    Case("spec-is-a-list", TYPES, "spec", {"spec": [1, 2]}, server="spec in body must be of type object"),
    Case("context-is-a-string", TYPES, "spec.context", _spec({"context": "long"})),
    Case(
        "pvc-without-claim",
        TYPES,
        "spec.model.source.pvc.claimName",
        _spec({"model": {"source": {"pvc": {}}}}),
    ),
    Case("cache-size-lots", TYPES, "spec.model.cache.size", _spec({"model": {"cache": {"size": "lots"}}})),
    Case(
        "cache-size-negative", TYPES, "spec.model.cache.size", _spec({"model": {"cache": {"size": "-5Gi"}}})
    ),
    Case(
        "memory-not-a-quantity",
        TYPES,
        "spec.resources.requests.memory",
        _spec({"resources": {"requests": {"memory": "lots"}}}),
    ),
    Case(
        "capability-sys-admin",
        TYPES,
        "spec.runtime.addCapabilities[0]",
        _runtime(addCapabilities=["SYS_ADMIN"]),
    ),
    # -- cross-field rules --------------------------------------------------------------------
    Case("tensor-8-without-expert", CROSS, "spec.parallelism.expert", _spec({"parallelism": {"tensor": 8}})),
    Case(
        "tensor-8-pipeline-2-without-expert",
        CROSS,
        "spec.parallelism.expert",
        _spec({"parallelism": {"tensor": 8, "pipeline": 2}}),
    ),
    Case(
        "autoscaling-min-above-max",
        CROSS,
        "spec.autoscaling.minReplicas",
        _spec({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}),
    ),
    Case(
        "endpoint-picker-service-without-port",
        CROSS,
        "spec.inferencePool.endpointPickerRef.port",
        _spec({"inferencePool": {"endpointPickerRef": {"name": "epp"}}, "auth": _KEY}),
    ),
    Case(
        "load-balancer-without-api-key",
        CROSS,
        "spec.service.type",
        _spec({"service": {"type": "LoadBalancer"}}),
    ),
    Case("node-port-without-api-key", CROSS, "spec.service.type", _spec({"service": {"type": "NodePort"}})),
    Case(
        "load-balancer-with-empty-auth",
        CROSS,
        "spec.service.type",
        _spec({"service": {"type": "LoadBalancer", "port": 443}, "auth": {}}),
    ),
    Case(
        "inference-pool-without-api-key",
        CROSS,
        "spec.inferencePool",
        _spec({"inferencePool": {"endpointPickerRef": {"name": "epp", "port": {"number": 9002}}}}),
    ),
    Case(
        "min-above-max",
        CROSS,
        "spec.context.minModelLen",
        _spec({"context": {"maxModelLen": 65536, "minModelLen": 131072}}),
    ),
    Case(
        "two-sources",
        CROSS,
        "spec.model.source",
        _spec({"model": {"source": {"huggingFace": {}, "pvc": {"claimName": "w"}}}}),
    ),
    Case(
        "utilization-floor-above-utilization",
        CROSS,
        "spec.runtime.minGpuMemoryUtilization",
        _runtime(gpuMemoryUtilization=0.85, minGpuMemoryUtilization=0.9),
    ),
    Case(
        "requests-above-limits",
        CROSS,
        "spec.resources.requests",
        _spec({"resources": {"requests": {"memory": "300Gi"}, "limits": {"memory": "256Gi"}}}),
    ),
    Case(
        "cpu-request-above-limit",
        CROSS,
        "spec.resources.requests",
        _spec({"resources": {"requests": {"cpu": 64}, "limits": {"cpu": "8"}}}),
    ),
    Case(
        "gpu-set-in-resources",
        CROSS,
        "spec.resources",
        _spec({"resources": {"limits": {"nvidia.com/gpu": 2}}}),
    ),
    Case(
        "env-value-and-value-from",
        CROSS,
        "spec.runtime.env[0].valueFrom",
        _env({"name": "V", "value": "x", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}),
    ),
    Case(
        "value-from-two-sources",
        CROSS,
        "spec.runtime.env[0].valueFrom",
        _env(
            {
                "name": "V",
                "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}, "fieldRef": {"fieldPath": "x"}},
            }
        ),
    ),
    Case(
        "value-from-no-source", CROSS, "spec.runtime.env[0].valueFrom", _env({"name": "V", "valueFrom": {}})
    ),
    Case("managed-env-pythonpath", CROSS, "spec.runtime.env", _env({"name": "PYTHONPATH", "value": "/opt"})),
    # -- managed flags and their abbreviations --------------------------------------------------
    Case("flag-max-model-len", FLAGS, "spec.runtime.extraArgs", _args("--max-model-len", "1000")),
    Case("flag-tp-equals", FLAGS, "spec.runtime.extraArgs", _args("--tensor-parallel-size=2")),
    Case("flag-pp", FLAGS, "spec.runtime.extraArgs", _args("-pp", "2")),
    Case("flag-headless", FLAGS, "spec.runtime.extraArgs", _args("--headless")),
    Case("flag-node-rank", FLAGS, "spec.runtime.extraArgs", _args("--node-rank=1")),
    Case(
        "flag-underscores",
        FLAGS,
        "spec.runtime.extraArgs",
        _args("--enable-prefix-caching", "--max_model_len=8192"),
    ),
    Case("flag-enable-reasoning", FLAGS, "spec.runtime.extraArgs", _args("--enable-reasoning")),
    Case("flag-abbreviated", FLAGS, "spec.runtime.extraArgs", _args("--max-model=4096")),
    Case("flag-abbreviated-gpu-memory", FLAGS, "spec.runtime.extraArgs", _args("--gpu-mem", "0.5")),
    Case("flag-short-tp", FLAGS, "spec.runtime.extraArgs", _args("-tp", "8")),
    Case("flag-short-ep", FLAGS, "spec.runtime.extraArgs", _args("-ep")),
    Case("flag-one-argument-with-space", FLAGS, "spec.runtime.extraArgs", _args("--served-model-name qwen")),
    Case("flag-host", FLAGS, "spec.runtime.extraArgs", _args("--host=::")),
    Case("flag-download-dir-abbreviated", FLAGS, "spec.runtime.extraArgs", _args("--download=/tmp")),
    Case("flag-hf-token", FLAGS, "spec.runtime.extraArgs", _args("--hf-token")),
    Case("flag-em-dash", FLAGS, "spec.runtime.extraArgs[0]", _args("\u2014max-num-seqs", "64")),
    Case("flag-fullwidth-dash", FLAGS, "spec.runtime.extraArgs[0]", _args("\uff0d\uff0dmax-num-seqs=64")),
    Case("flag-newline-inside", FLAGS, "spec.runtime.extraArgs[0]", _args("--max-num-seqs\n64")),
    # -- literal secrets and impossible sizes ----------------------------------------------------
    Case("literal-hf-token", SECRETS, "spec.runtime.env", _env({"name": "HF_TOKEN", "value": "hf_abc"})),
    Case("literal-password", SECRETS, "spec.runtime.env", _env({"name": "db_password", "value": "hunter2"})),
    Case(
        "literal-aws-secret",
        SECRETS,
        "spec.runtime.env",
        _env({"name": "AWS_SECRET_ACCESS_KEY", "value": "wJalrXUtnFEMI"}),
    ),
    Case("token-in-any-variable", SECRETS, "spec.runtime.env", _env({"name": "MY_SETTING", "value": TOKEN})),
    Case("token-in-extra-args", SECRETS, "spec.runtime.extraArgs", _args(f"--lora-modules=x={TOKEN}")),
    Case("api-key-flag", SECRETS, "spec.runtime.extraArgs", _args("--api-key=sk-" + "x" * 24)),
    # Kubernetes expands $(VAR) in the server's command, args and env values: a Secret read into
    # the environment would land on the command line (or in another variable)
    Case(
        "served-name-expands-api-key",
        SECRETS,
        "spec.model.servedName",
        _spec({"model": {"servedName": "$(VLLM_API_KEY)"}}),
    ),
    Case(
        "extra-arg-expands-hf-token", SECRETS, "spec.runtime.extraArgs", _args("--lora-modules=x=$(HF_TOKEN)")
    ),
    Case("extra-arg-escaped-expansion", SECRETS, "spec.runtime.extraArgs", _args("--x", "$$(VLLM_API_KEY)")),
    Case(
        "env-value-expands-api-key",
        SECRETS,
        "spec.runtime.env[0].value",
        _env({"name": "KEY_COPY", "value": "Bearer $(VLLM_API_KEY)"}),
    ),
    Case("weights-cache-1Ki", SECRETS, "spec.model.cache.size", _spec({"model": {"cache": {"size": "1Ki"}}})),
    Case(
        "weights-cache-100Gi",
        SECRETS,
        "spec.model.cache.size",
        _spec({"model": {"cache": {"size": "100Gi"}}}),
    ),
    Case("weights-cache-0", SECRETS, "spec.model.cache.size", _spec({"model": {"cache": {"size": "0"}}})),
    Case(
        "weights-on-two-80gib-gpus",
        SECRETS,
        "spec.gpu.memoryGiB",
        _spec({"gpu": {"memoryGiB": 80}, "parallelism": {"tensor": 2}}),
    ),
    Case(
        "weights-on-eight-24gib-gpus",
        SECRETS,
        "spec.gpu.memoryGiB",
        _spec({"gpu": {"memoryGiB": 24}, "parallelism": {"tensor": 8, "expert": True}}),
    ),
    Case("gpu-memory-4097", SECRETS, "spec.gpu.memoryGiB", _spec({"gpu": {"memoryGiB": 4097}})),
    # -- names, Unicode and control characters ---------------------------------------------------
    Case("name-too-long", NAMES, "metadata.name", {"metadata": {"name": "q" * 53}}),
    Case("name-starts-with-digit", NAMES, "metadata.name", {"metadata": {"name": "3qwen"}}),
    Case("name-uppercase", NAMES, "metadata.name", {"metadata": {"name": "Qwen3"}}),
    Case("name-with-dot", NAMES, "metadata.name", {"metadata": {"name": "qwen.3"}}),
    Case("name-unicode", NAMES, "metadata.name", {"metadata": {"name": "qw\u00e9n"}}),
    Case(
        "served-name-newline",
        NAMES,
        "spec.model.servedName",
        _spec({"model": {"servedName": "qwen\nthinking"}}),
    ),
    Case(
        "served-name-bidi-override",
        NAMES,
        "spec.model.servedName",
        _spec({"model": {"servedName": "qwen\u202eevil"}}),
    ),
    Case("served-name-nul", NAMES, "spec.model.servedName", _spec({"model": {"servedName": "qwen\x00"}})),
    Case("model-id-space", NAMES, "spec.model.id", _spec({"model": {"id": "Qwen/Qwen3 235B"}})),
    Case(
        "model-id-zero-width-space", NAMES, "spec.model.id", _spec({"model": {"id": "Qwen/Qwen3-235B\u200b"}})
    ),
    Case("model-id-unicode-letter", NAMES, "spec.model.id", _spec({"model": {"id": "Qwen/Qw\u00e9n3"}})),
    Case("revision-traversal", NAMES, "spec.model.revision", _spec({"model": {"revision": "../../main"}})),
    Case(
        "secret-name-uppercase",
        NAMES,
        "spec.model.source.huggingFace.tokenSecretRef.name",
        _spec({"model": {"source": {"huggingFace": {"tokenSecretRef": {"name": "HF_Token"}}}}}),
    ),
    Case(
        "secret-key-slash",
        NAMES,
        "spec.auth.apiKeySecretRef.key",
        _spec({"auth": {"apiKeySecretRef": {"name": "api", "key": "a/b"}}}),
    ),
    Case(
        "claim-name-invalid",
        NAMES,
        "spec.model.source.pvc.claimName",
        _spec({"model": {"source": {"pvc": {"claimName": "weights!"}}}}),
    ),
    Case(
        "pvc-path-traversal",
        NAMES,
        "spec.model.source.pvc.path",
        _spec({"model": {"source": {"pvc": {"claimName": "w", "path": "../../etc"}}}}),
    ),
    Case("env-name-with-equals", NAMES, "spec.runtime.env[0].name", _env({"name": "A=B", "value": "1"})),
    Case(
        "priority-class-uppercase",
        NAMES,
        "spec.scheduling.priorityClassName",
        _spec({"scheduling": {"priorityClassName": "High"}}),
    ),
    Case(
        "storage-class-space",
        NAMES,
        "spec.model.cache.storageClassName",
        _spec({"model": {"cache": {"storageClassName": "fast ssd"}}}),
    ),
    Case(
        "node-selector-value-space",
        NAMES,
        "spec.scheduling.nodeSelector.zone",
        _spec({"scheduling": {"nodeSelector": {"zone": "us east"}}}),
    ),
    Case(
        "node-selector-key-invalid",
        NAMES,
        "spec.scheduling.nodeSelector",
        _spec({"scheduling": {"nodeSelector": {"-bad/key": "x"}}}),
    ),
    Case("gpu-product-space", NAMES, "spec.gpu.product", _spec({"gpu": {"product": "NVIDIA H100"}})),
    Case("gpu-resource-unqualified", NAMES, "spec.gpu.resourceName", _spec({"gpu": {"resourceName": "gpu"}})),
    Case("image-with-space", NAMES, "spec.runtime.image", _runtime(image="vllm/vllm-openai :v0.33.0")),
    # -- huge strings and lists -------------------------------------------------------------------
    Case("served-name-1mb", HUGE, "spec.model.servedName", _spec({"model": {"servedName": "a" * 1_000_000}})),
    Case("extra-args-65", HUGE, "spec.runtime.extraArgs", _args(*[f"--x{i}" for i in range(65)])),
    Case("extra-arg-10k", HUGE, "spec.runtime.extraArgs[0]", _args("--x=" + "a" * 10_000)),
    Case("env-65", HUGE, "spec.runtime.env", _env(*[{"name": f"V{i}", "value": "1"} for i in range(65)])),
    Case("env-value-40k", HUGE, "spec.runtime.env[0].value", _env({"name": "V", "value": "a" * 40_000})),
    Case(
        "tolerations-33",
        HUGE,
        "spec.scheduling.tolerations",
        _spec({"scheduling": {"tolerations": [{"key": f"k{i}", "operator": "Exists"} for i in range(33)]}}),
    ),
    Case(
        "node-selector-65",
        HUGE,
        "spec.scheduling.nodeSelector",
        _spec({"scheduling": {"nodeSelector": {f"k{i}": "v" for i in range(65)}}}),
    ),
    Case(
        "fallback-steps-17",
        HUGE,
        "spec.context.fallbackSteps",
        _spec({"context": {"fallbackSteps": [32768] * 17}}),
    ),
    Case(
        "resources-17",
        HUGE,
        "spec.resources.requests",
        _spec({"resources": {"requests": {f"example.com/r{i}": 1 for i in range(17)}}}),
    ),
    # every bound of what passes through to the pod template (testkit/maximal.py sits at them)
    Case("env-value-4097", HUGE, "spec.runtime.env[0].value", _env({"name": "V", "value": "a" * 4097})),
    Case(
        "value-from-secret-name-254",
        HUGE,
        "spec.runtime.env[0].valueFrom.secretKeyRef.name",
        _env({"name": "V", "valueFrom": {"secretKeyRef": {"name": "s" * 254, "key": "k"}}}),
    ),
    Case(
        "value-from-file-path-1025",
        HUGE,
        "spec.runtime.env[0].valueFrom.fileKeyRef.path",
        _env({"name": "V", "valueFrom": {"fileKeyRef": {"volumeName": "v", "path": "p" * 1025, "key": "k"}}}),
    ),
    Case(
        "toleration-key-318",
        HUGE,
        "spec.scheduling.tolerations[0].key",
        _scheduling(tolerations=[{"key": "k" * 318, "operator": "Exists"}]),
    ),
    Case(
        "toleration-value-64",
        HUGE,
        "spec.scheduling.tolerations[0].value",
        _scheduling(tolerations=[{"key": "k", "value": "v" * 64}]),
    ),
    Case(
        "node-selector-key-318",
        HUGE,
        "spec.scheduling.nodeSelector",
        _scheduling(nodeSelector={"a" * 254 + "/" + "b" * 63: "v"}),
    ),
    Case(
        "resource-name-318",
        HUGE,
        "spec.resources",
        _spec({"resources": {"limits": {"example.com/" + "r" * 306: 1}}}),
    ),
    Case(
        "node-selector-terms-5",
        HUGE,
        f"{_NODE_REQUIRED}.nodeSelectorTerms",
        _node_required([_TERM] * 5),
    ),
    Case(
        "node-selector-values-9",
        HUGE,
        f"{_NODE_REQUIRED}.nodeSelectorTerms[0].matchExpressions[0].values",
        _node_required([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z"] * 9}]}]),
    ),
    Case(
        "node-selector-expressions-5",
        HUGE,
        f"{_NODE_REQUIRED}.nodeSelectorTerms[0].matchExpressions",
        _node_required([{"matchExpressions": _TERM["matchExpressions"] * 5}]),
    ),
    Case(
        "node-match-fields-2",
        HUGE,
        f"{_NODE_REQUIRED}.nodeSelectorTerms[0].matchFields",
        _node_required([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n"]}] * 2}]),
    ),
    Case(
        "node-preferred-terms-5",
        HUGE,
        "spec.scheduling.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution",
        _affinity(
            nodeAffinity={
                "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": _TERM}] * 5
            }
        ),
    ),
    Case(
        "pod-anti-affinity-terms-3",
        HUGE,
        _ANTI_REQUIRED,
        _anti_required([_POD_TERM] * 3),
    ),
    Case(
        "pod-affinity-preferred-terms-3",
        HUGE,
        "spec.scheduling.affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution",
        _affinity(
            podAffinity={
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 1, "podAffinityTerm": _POD_TERM}
                ]
                * 3
            }
        ),
    ),
    Case(
        "label-selector-labels-5",
        HUGE,
        f"{_ANTI_REQUIRED}[0].labelSelector.matchLabels",
        _anti_required([{**_POD_TERM, "labelSelector": {"matchLabels": {f"l{i}": "v" for i in range(5)}}}]),
    ),
    Case(
        "label-selector-key-318",
        HUGE,
        f"{_ANTI_REQUIRED}[0].labelSelector.matchLabels",
        _anti_required([{**_POD_TERM, "labelSelector": {"matchLabels": {"l" * 318: "v"}}}]),
    ),
    Case(
        "pod-affinity-namespaces-5",
        HUGE,
        f"{_ANTI_REQUIRED}[0].namespaces",
        _anti_required([{**_POD_TERM, "namespaces": [f"ns{i}" for i in range(5)]}]),
    ),
    Case(
        "topology-key-318",
        HUGE,
        f"{_ANTI_REQUIRED}[0].topologyKey",
        _anti_required([{**_POD_TERM, "topologyKey": "t" * 318}]),
    ),
    # -- YAML oddities ----------------------------------------------------------------------------
    Case(
        "yaml-duplicate-key",
        YAML,
        "spec.replicas",
        text=_text("spec:\n  replicas: 1\n  replicas: 2\n"),
        server='key "replicas" already set',
        kubectl_reads_it=False,
    ),
    Case(
        "yaml-duplicate-by-boolean",
        YAML,
        "spec.scheduling.nodeSelector.true",
        text=_text("spec:\n  scheduling:\n    nodeSelector: {on: a, yes: b}\n"),
        server="key true already set",
        kubectl_reads_it=False,
    ),
    Case("yaml-tab-indent", YAML, "line 5", text=_text("spec:\n\treplicas: 1\n")),
    Case(
        "yaml-yes-as-name", YAML, "spec.model.servedName", text=_text("spec:\n  model: {servedName: yes}\n")
    ),
    Case("yaml-y-as-revision", YAML, "spec.model.revision", text=_text("spec:\n  model: {revision: y}\n")),
    Case("yaml-off-as-parser", YAML, "spec.reasoningParser", text=_text("spec:\n  reasoningParser: off\n")),
    Case(
        "yaml-on-as-key",
        YAML,
        "spec.true",
        text=_text("spec:\n  on: 1\n"),
        server='unknown field "spec.true"',
    ),
    Case("yaml-number-key", YAML, "spec.1", text=_text("spec:\n  1: x\n"), server='unknown field "spec.1"'),
    Case("yaml-number-as-string", YAML, "spec.replicas", text=_text('spec:\n  replicas: "2"\n')),
    Case("yaml-boolean-as-string", YAML, "spec.paused", text=_text('spec:\n  paused: "true"\n')),
    Case(
        "yaml-octal-name", YAML, "spec.model.servedName", text=_text("spec:\n  model: {servedName: 0o17}\n")
    ),
    Case(
        "yaml-exponent-name", YAML, "spec.model.servedName", text=_text("spec:\n  model: {servedName: 1e3}\n")
    ),
    Case("yaml-str-tag", YAML, "spec.replicas", text=_text("spec:\n  replicas: !!str 2\n")),
    Case(
        "yaml-python-tag", YAML, "spec.replicas", text=_text("spec:\n  replicas: !!python/name:os.system\n")
    ),
    Case("yaml-infinity", YAML, "spec.replicas", text=_text("spec:\n  replicas: .inf\n"), server="+Inf"),
    Case(
        "yaml-nan",
        YAML,
        "spec.sampling.temperature",
        text=_text("spec:\n  sampling: {temperature: .nan}\n"),
        server="NaN",
    ),
    Case(
        "yaml-alias-of-a-mapping",
        YAML,
        "spec.model.servedName",
        text=_text("spec:\n  context: &c {maxModelLen: 8192}\n  model: {servedName: *c}\n"),
    ),
    Case(
        "yaml-merge-key",
        YAML,
        "spec.parallelism.expert",
        text=_text("spec:\n  parallelism: {<<: &p {tensor: 8}}\n"),
    ),
    Case(
        "yaml-unknown-top-level-field",
        YAML,
        "extra",
        text=_text("spec: {}\nextra: 1\n"),
        server='unknown field "extra"',
    ),
    Case("yaml-billion-laughs", YAML, "line 7", text=_billion_laughs(), server="excessive aliasing"),
    Case(
        "yaml-deep-nesting",
        YAML,
        "line 6",
        text=_text("spec:\n  scheduling:\n    affinity: {a: " + "[" * 20_000 + "]" * 20_000 + "}\n"),
        server="exceeded max depth",
    ),
]

INVALID = CASES
"""The corpus (the name the tests import)."""


def by_id() -> dict[str, Case]:
    return {c.id: c for c in CASES}


def summary() -> dict[str, int]:
    """Cases per category (printed by the tests, and at least five each)."""
    out: dict[str, int] = {}
    for case in CASES:
        out[case.kind] = out.get(case.kind, 0) + 1
    return out


if __name__ == "__main__":
    print(json.dumps(summary(), indent=1), len(CASES))
