"""The spec of a QwenThinkingDeployment: what the user writes. Defaults are the model card's
deployment, so `spec: {}` serves the model on one replica of 4 GPUs with a 262144-token context."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import Field, JsonValue, StringConstraints

from qwen_operator.api.defaults import (
    COMPILE_CACHE_FLOOR,
    COMPILE_CACHE_SIZE,
    DEFAULT_ANSWER_TOKENS,
    DEFAULT_MODEL,
    DRAIN_SECONDS,
    FALLBACK_STEPS,
    MANAGED_ENV,
    MAX_CONTEXT,
    MAX_DRAIN_SECONDS,
    MAX_ENV_VALUE,
    MAX_PIPELINE,
    MAX_QUALIFIED_NAME,
    MIN_CONTEXT,
    OTHER_CACHE_FLOOR,
    RECOMMENDED_CONTEXT,
    TENSOR_SIZES,
    WEIGHTS_CACHE_FLOOR,
    WEIGHTS_GIB,
)
from qwen_operator.api.passthrough import Affinity, EnvVarSource, LabelSelector, Toleration, keys_within
from qwen_operator.api.patterns import (
    ARGUMENT,
    CREDENTIAL_NAMES,
    CREDENTIAL_SUFFIX,
    ENV_NAME,
    EXPANSION,
    IMAGE,
    K8S_GROUP_PATTERN,
    K8S_KIND_PATTERN,
    LABEL_KEY,
    LABEL_VALUE,
    PRINTABLE,
    RELATIVE_PATH,
    RESOURCE_NAME,
    REVISION,
    SECRET_KEY,
    TOKEN_PATTERN,
    DnsName,
    IntOrPercent,
    IntOrQuantity,
    OptionalDnsName,
    Quantity,
)
from qwen_operator.api.rules import ApiObject, Rule, cel_string_list
from qwen_operator.api.vllm_flags import (
    MANAGED_FLAG_PATTERN,
    MANAGED_FLAGS,
    KvCacheDtype,
    ReasoningParser,
    ToolParser,
    _is_managed,
)
from qwen_operator.reconcile.diff import quantity

__all__ = [
    "CACHE_MODES",
    "AuthSpec",
    "AutoscalingSpec",
    "CacheMode",
    "CacheSpec",
    "ContextSpec",
    "DisruptionSpec",
    "EndpointPickerRef",
    "EnvVar",
    "GpuSpec",
    "HuggingFaceSource",
    "InferencePoolSpec",
    "ModelSource",
    "ModelSpec",
    "MonitoringSpec",
    "NetworkPeer",
    "NetworkSpec",
    "ParallelismSpec",
    "PortNumber",
    "ProbeOverride",
    "ProbesSpec",
    "PvcSource",
    "QwenThinkingDeploymentSpec",
    "ResourcesSpec",
    "RuntimeSpec",
    "SamplingSpec",
    "SchedulingSpec",
    "SecretKeyRef",
    "ServiceSpec",
    "ToolCallingSpec",
]


def _sub(model: type[ApiObject], description: str | None = None) -> Any:
    """A nested object that defaults to its own defaults (also in the CRD, so `{}` fills in)."""
    extra: dict[str, JsonValue] = {"x-qwen-default-object": True}
    return Field(default_factory=model, description=description, json_schema_extra=extra)


class SecretKeyRef(ApiObject):
    """A key of a Secret in the resource's namespace."""

    name: DnsName
    """Name of the Secret."""
    key: Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=SECRET_KEY)] = "token"
    """Key inside the Secret."""


class HuggingFaceSource(ApiObject):
    """Download the weights from the Hugging Face Hub into the per-replica cache volume."""

    token_secret_ref: SecretKeyRef | None = None
    """Secret key holding an HF token; only for gated or private models (this one is public)."""


class PvcSource(ApiObject):
    """Serve weights that already sit on a PersistentVolumeClaim (mounted read-only)."""

    claim_name: DnsName
    """Name of the PersistentVolumeClaim in the resource's namespace."""
    path: Annotated[str, StringConstraints(max_length=253, pattern=RELATIVE_PATH)] = ""
    """Directory inside the claim that holds config.json and the safetensors files."""


class ModelSource(ApiObject):
    """Where the weights come from: at most one of huggingFace or pvc (default Hugging Face)."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!(has(self.huggingFace) && has(self.pvc))",
            message="model.source may set at most one of huggingFace, pvc",
            check=lambda s: not (s.hugging_face is not None and s.pvc is not None),
        ),
    )

    hugging_face: HuggingFaceSource | None = None
    """Download from the Hugging Face Hub (the default when no source is set)."""
    pvc: PvcSource | None = None
    """Use weights already on a PersistentVolumeClaim."""


CacheMode = Literal["PerReplica", "Shared"]
CACHE_MODES: tuple[str, ...] = get_args(CacheMode)


def _compile_cache_floor_ok(cache: CacheSpec) -> bool:
    size, least = quantity(cache.compile_cache_size), quantity(COMPILE_CACHE_FLOOR)
    return size is None or least is None or size == 0 or size >= least


class CacheSpec(ApiObject):
    """The volume(s) that hold downloaded weights (Hugging Face source), and each replica's
    compile cache (every source)."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=(
                "!quantity(self.compileCacheSize).isGreaterThan(quantity('0')) || "
                f"!quantity(self.compileCacheSize).isLessThan(quantity('{COMPILE_CACHE_FLOOR}'))"
            ),
            message=(
                f"model.cache.compileCacheSize is 0 (keep none) or at least {COMPILE_CACHE_FLOOR}: a smaller "
                "bound would remove the artifacts of the configuration in use at every start"
            ),
            check=_compile_cache_floor_ok,
            field_path=".compileCacheSize",
        ),
    )

    size: Quantity = "600Gi"
    """Size of the weights volume (each replica's, or the one shared claim); the FP8 checkpoint
    is about 236 GB."""
    storage_class_name: OptionalDnsName = ""
    """StorageClass for the volume; empty uses the cluster default. Shared needs a class that
    provides ReadWriteMany (NFS, CephFS, EFS, Filestore, Azure Files, ...)."""
    mode: CacheMode = "PerReplica"
    """PerReplica (the default): each replica downloads into its own ReadWriteOnce volume, which
    every cluster provides; scaling 1 to 4 downloads 4 copies. Shared: one Job owned by the
    resource downloads once (resumable) into one ReadWriteMany claim, and every replica mounts it
    read-only once the Job has succeeded; scaling downloads nothing. Not the default because it
    needs a ReadWriteMany StorageClass (without one the claim stays Pending), network filesystems
    often load 236 GB slower than a local volume, and a changed default would replace every
    existing StatefulSet (its volumeClaimTemplates) on an operator upgrade."""
    compile_cache_size: Quantity = COMPILE_CACHE_SIZE
    """The most each replica keeps of vLLM's compile artifacts (torch.compile, inductor, Triton),
    which outlive the pod so a restart with an unchanged configuration loads instead of
    compiling. Before each start the launcher removes the entries used longest ago until the cache
    holds three quarters of this (the rest is room for a new configuration's). Where it lives: a
    `.compile-cache` directory on the replica's weights volume (PerReplica), or a claim of this
    size per replica, `compile-cache-<pod>` (Shared, and a PVC source: their weights are mounted
    read-only), in storageClassName. A claim keeps the size it was made with: the bound is the
    smaller of the two. "0" keeps none (the caches die with the pod, and no claim is made)."""


def _credential(name: str) -> bool:
    return name.upper() in CREDENTIAL_NAMES or re.search(CREDENTIAL_SUFFIX, name.upper()) is not None


def _cache_floor_ok(model: ModelSpec) -> bool:
    floor = WEIGHTS_CACHE_FLOOR if model.id == DEFAULT_MODEL else OTHER_CACHE_FLOOR
    size, least = quantity(model.cache.size), quantity(floor)
    return size is None or least is None or size >= least


class ModelSpec(ApiObject):
    """Which model to serve and where its weights come from."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=(
                f"!quantity(self.cache.size).isLessThan(quantity(self.id == '{DEFAULT_MODEL}' ? "
                f"'{WEIGHTS_CACHE_FLOOR}' : '{OTHER_CACHE_FLOOR}'))"
            ),
            message=(
                f"model.cache.size is smaller than the weights it must hold: at least {WEIGHTS_CACHE_FLOOR} "
                f"for {DEFAULT_MODEL} (236.4 GB), {OTHER_CACHE_FLOOR} for any model"
            ),
            check=_cache_floor_ok,
            field_path=".cache.size",
        ),
        Rule(
            cel="self.cache.mode != 'Shared' || !has(self.source) || !has(self.source.pvc)",
            message=(
                "model.cache.mode Shared downloads from Hugging Face into a claim the operator owns; "
                "with model.source.pvc the weights are already on a claim (leave mode PerReplica)"
            ),
            check=lambda m: m.cache.mode != "Shared" or m.source is None or m.source.pvc is None,
            field_path=".cache.mode",
        ),
        Rule(
            cel=f"!has(self.servedName) || !self.servedName.contains('{EXPANSION}')",
            message=(
                f"model.servedName may not contain {EXPANSION!r}: Kubernetes expands $(VAR) in the server's "
                "arguments, so $(VLLM_API_KEY) would put the API key on its command line"
            ),
            check=lambda m: EXPANSION not in m.served_name,
            field_path=".servedName",
        ),
    )

    id: Annotated[
        str,
        StringConstraints(
            min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9_.-]+)?$"
        ),
    ] = DEFAULT_MODEL
    """Hugging Face model id passed to `vllm serve`."""
    revision: Annotated[str, StringConstraints(max_length=100, pattern=f"^$|{REVISION}")] = ""
    """Optional pinned revision (branch, tag or commit) of the model."""
    served_name: Annotated[str, StringConstraints(max_length=200, pattern=PRINTABLE)] = ""
    """Model name clients send in API requests; empty means metadata.name."""
    source: ModelSource | None = None
    """Where the weights come from; default Hugging Face without a token."""
    cache: CacheSpec = _sub(CacheSpec)
    """Weights volume for downloads: one per replica (the default) or one shared claim; and the
    bound on each replica's compile cache."""


class ParallelismSpec(ApiObject):
    """How one replica spreads the model over its GPUs."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=f"self.tensor in {list(TENSOR_SIZES)}",
            message="parallelism.tensor must be 1, 2, 4 or 8 (GPUs per pod)",
            check=lambda p: p.tensor in TENSOR_SIZES,
            field_path=".tensor",
        ),
        Rule(
            cel="self.tensor != 8 || (has(self.expert) && self.expert)",
            message=(
                "parallelism.tensor 8 requires parallelism.expert: true, at any pipeline size "
                "(the FP8 expert blocks, 1536/8 = 192 wide, do not split into 128-wide blocks; "
                "pipeline stages split the layers, not the experts)"
            ),
            check=lambda p: p.tensor != 8 or p.expert,
            field_path=".expert",
        ),
    )

    tensor: Annotated[int, Field(ge=1, le=8)] = 4
    """GPUs per pod (vLLM --tensor-parallel-size): 1, 2, 4 or 8."""
    pipeline: Annotated[int, Field(ge=1, le=MAX_PIPELINE)] = 1
    """Pods (nodes) per replica, each a pipeline stage holding a share of the layers (vLLM
    --pipeline-parallel-size, multiprocessing across nodes, no Ray); 1 to 8. Above 1 the replicas
    are a LeaderWorkerSet (sigs.k8s.io/lws must be installed) of tensor x pipeline GPUs each."""
    expert: bool = False
    """Shard the MoE experts across the tensor-parallel GPUs (vLLM --enable-expert-parallel);
    required with tensor 8, whatever the pipeline."""


class ContextSpec(ApiObject):
    """The context length the servers run with, and how far it may fall back after an OOM."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="self.minModelLen <= self.maxModelLen",
            message="context.minModelLen must not exceed context.maxModelLen",
            check=lambda c: c.min_model_len <= c.max_model_len,
            field_path=".minModelLen",
        ),
    )

    max_model_len: Annotated[int, Field(ge=MIN_CONTEXT, le=MAX_CONTEXT)] = MAX_CONTEXT
    """Requested context length in tokens (vLLM --max-model-len), the cap; 1024 to 262144."""
    min_model_len: Annotated[int, Field(ge=MIN_CONTEXT, le=MAX_CONTEXT)] = 32768
    """Floor for the out-of-memory fallback; the model card advises staying above 131072."""
    recommended_model_len: Annotated[int, Field(ge=MIN_CONTEXT, le=MAX_CONTEXT)] = RECOMMENDED_CONTEXT
    """Below this context ContextReduced says so and a Warning is posted once: the model card
    strongly recommends at least 131072 tokens for this thinking model."""
    fallback: bool = True
    """After a GPU out-of-memory at start-up, apply the cure for its cause: a shorter context when
    the KV cache cannot hold one request, a lower GPU memory utilization for a peak outside it."""
    preflight: bool = True
    """Start from the memory plan's largest fitting context instead of a known crash."""
    fallback_steps: Annotated[
        list[Annotated[int, Field(ge=MIN_CONTEXT, le=MAX_CONTEXT)]], Field(min_length=1, max_length=16)
    ] = Field(default=list(FALLBACK_STEPS))  # pydantic copies it per instance
    """Contexts to step down to after an out-of-memory without vLLM's estimate of what fits."""


class ToolCallingSpec(ApiObject):
    """OpenAI-style tool calling parsed by the server."""

    enabled: bool = True
    """Pass --enable-auto-tool-choice; turn off for Qwen-Agent, which parses tool calls itself."""
    parser: ToolParser = "hermes"
    """vLLM tool-call parser (--tool-call-parser); hermes for this model."""


class SamplingSpec(ApiObject):
    """Server-side default sampling (vLLM --override-generation-config); requests may override."""

    temperature: Annotated[float, Field(ge=0, le=2)] = 0.6
    """Sampling temperature; the model card recommends 0.6."""
    top_p: Annotated[float, Field(gt=0, le=1)] = 0.95
    """Nucleus sampling; the model card recommends 0.95."""
    top_k: Annotated[int, Field(ge=-1, le=1000)] = 20
    """Top-k sampling (-1 disables); the model card recommends 20."""
    min_p: Annotated[float, Field(ge=0, le=1)] = 0.0
    """Min-p sampling; the model card recommends 0."""
    presence_penalty: Annotated[float, Field(ge=0, le=2)] | None = None
    """0 to 2 reduces endless repetitions (model card); unset leaves vLLM's default."""
    max_tokens: Annotated[int, Field(ge=1, le=MAX_CONTEXT)] | None = DEFAULT_ANSWER_TOKENS
    """Default output length when a request sets none; the model card advises 32768 (81920 for
    competition math and code)."""


class EnvVar(ApiObject):
    """An environment variable of the server container (Kubernetes EnvVar)."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=f"!has(self.value) || !self.value.contains('{EXPANSION}')",
            message=(
                f"runtime.env values may not contain {EXPANSION!r}: Kubernetes expands $(VAR) in env values, "
                "so $(VLLM_API_KEY) would copy a Secret's value into a variable that is not one"
            ),
            check=lambda e: e.value is None or EXPANSION not in e.value,
            field_path=".value",
        ),
        Rule(
            cel="!has(self.valueFrom) || !has(self.value) || self.value == ''",
            message="runtime.env[] sets a value or a valueFrom, not both",
            check=lambda e: e.value_from is None or not e.value,
            field_path=".valueFrom",
        ),
    )

    name: Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=ENV_NAME)]
    """Variable name."""
    value: Annotated[str, StringConstraints(max_length=MAX_ENV_VALUE)] | None = None
    """Literal value, at most 4 KiB (a larger one belongs in a ConfigMap, mounted or by valueFrom)."""
    value_from: EnvVarSource | None = None
    """Kubernetes EnvVarSource (secretKeyRef, configMapKeyRef, fieldRef, ...): one source."""


class RuntimeSpec(ApiObject):
    """The vLLM server process."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=f"!has(self.extraArgs) || self.extraArgs.all(a, !a.contains('{EXPANSION}'))",
            message=(
                f"runtime.extraArgs may not contain {EXPANSION!r}: Kubernetes expands $(VAR) in the server's "
                "arguments, so $(VLLM_API_KEY) or $(HF_TOKEN) would put a Secret on its command line"
            ),
            check=lambda r: not any(EXPANSION in a for a in r.extra_args),
            field_path=".extraArgs",
        ),
        Rule(
            cel=(
                "!has(self.extraArgs) || "
                f"self.extraArgs.all(a, !a.replace('_', '-').matches('{MANAGED_FLAG_PATTERN}'))"
            ),
            message=(
                "runtime.extraArgs may not set a flag the operator manages, nor abbreviate one "
                f"({', '.join(MANAGED_FLAGS)}); use the matching spec field"
            ),
            check=lambda r: not any(_is_managed(a) for a in r.extra_args),
            field_path=".extraArgs",
        ),
        Rule(
            cel=(
                "!has(self.env) || self.env.all(e, !has(e.value) || !(e.name.upperAscii() in "
                f"{cel_string_list(CREDENTIAL_NAMES)} || e.name.upperAscii().matches('{CREDENTIAL_SUFFIX}')))"
            ),
            message=(
                "runtime.env may not hold a credential as a literal value (HF_TOKEN, *_TOKEN, *_API_KEY, "
                "*_PASSWORD, *_SECRET): use model.source.huggingFace.tokenSecretRef, auth.apiKeySecretRef, "
                "or valueFrom.secretKeyRef"
            ),
            check=lambda r: not any(e.value is not None and _credential(e.name) for e in r.env),
            field_path=".env",
        ),
        Rule(
            cel="self.minGpuMemoryUtilization <= self.gpuMemoryUtilization",
            message="runtime.minGpuMemoryUtilization must not exceed runtime.gpuMemoryUtilization",
            check=lambda r: r.min_gpu_memory_utilization <= r.gpu_memory_utilization,
            field_path=".minGpuMemoryUtilization",
        ),
        Rule(
            cel=f"!has(self.env) || self.env.all(e, !(e.name in {cel_string_list(MANAGED_ENV)}))",
            message=(
                f"runtime.env may not set {', '.join(MANAGED_ENV)}: the operator sets them (where the "
                "launcher is imported from, and the digest it checks its sources against)"
            ),
            check=lambda r: not any(e.name in MANAGED_ENV for e in r.env),
            field_path=".env",
        ),
        Rule(
            cel=f"!has(self.env) || self.env.all(e, !has(e.value) || !e.value.matches(r'{TOKEN_PATTERN}'))",
            message=(
                "runtime.env may not hold a literal token (hf_..., sk-...) in any variable: put it in a "
                "Secret "
                "and use model.source.huggingFace.tokenSecretRef, auth.apiKeySecretRef or valueFrom"
            ),
            check=lambda r: not any(e.value is not None and re.search(TOKEN_PATTERN, e.value) for e in r.env),
            field_path=".env",
        ),
        Rule(
            cel=f"!has(self.extraArgs) || self.extraArgs.all(a, !a.matches(r'{TOKEN_PATTERN}'))",
            message=(
                "runtime.extraArgs may not hold a literal token (hf_..., sk-...): the pod spec is readable "
                "by "
                "anyone who can list pods; put it in a Secret"
            ),
            check=lambda r: not any(re.search(TOKEN_PATTERN, a) for a in r.extra_args),
            field_path=".extraArgs",
        ),
    )

    image: Annotated[str, StringConstraints(max_length=512, pattern=f"^$|{IMAGE}")] = ""
    """Server image; empty means the unmodified vllm/vllm-openai:v0.33.0 (pin it by digest:
    vllm/vllm-openai@sha256:...). The launcher comes in a ConfigMap, so any vLLM 0.33 image works."""
    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] = 0.92
    """Fraction of each GPU's memory vLLM may use (--gpu-memory-utilization)."""
    min_gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] = 0.8
    """Floor for the out-of-memory cure that lowers the utilization (a CUDA out of memory outside
    the KV cache, or memory another process holds)."""
    kv_cache_dtype: KvCacheDtype = "auto"
    """KV cache precision (--kv-cache-dtype); fp8 halves the cache and doubles the context."""
    extra_args: Annotated[
        list[Annotated[str, StringConstraints(max_length=256, pattern=ARGUMENT)]], Field(max_length=64)
    ] = Field(default_factory=list)
    """Arguments appended to `vllm serve`; may not repeat a flag the operator manages."""
    env: Annotated[list[EnvVar], Field(max_length=64)] = Field(default_factory=list)
    """Extra environment variables of the server container; credentials only from Secrets (valueFrom)."""
    add_capabilities: Annotated[list[Literal["IPC_LOCK"]], Field(max_length=4)] = Field(default_factory=list)
    """Linux capabilities added to the server (IPC_LOCK for RDMA/GPUDirect); the pods then no longer
    pass Pod Security "restricted"."""


class GpuSpec(ApiObject):
    """The GPUs each replica runs on."""

    resource_name: Annotated[str, StringConstraints(max_length=253, pattern=RESOURCE_NAME)] = "nvidia.com/gpu"
    """Extended resource requested per GPU."""
    product: Annotated[str, StringConstraints(max_length=63, pattern=LABEL_VALUE)] = ""
    """Pin to a GPU product (node label nvidia.com/gpu.product), e.g. NVIDIA-H100-80GB-HBM3."""
    memory_gi_b: Annotated[int, Field(ge=1, le=4096)] | None = Field(None, alias="memoryGiB")
    """GPU memory in GiB for the memory plan; default read from the node label nvidia.com/gpu.memory."""


def _requests_within_limits(r: ResourcesSpec) -> bool:
    for name, request in r.requests.items():
        want, cap = quantity(request), quantity(r.limits.get(name))
        if want is not None and cap is not None and want > cap:
            return False
    return True


class ResourcesSpec(ApiObject):
    """CPU and memory of the server container (GPUs come from parallelism.tensor)."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=(
                "!has(self.requests) || !has(self.limits) || self.requests.all(k, !(k in self.limits) || "
                "quantity(string(self.requests[k])).compareTo(quantity(string(self.limits[k]))) <= 0)"
            ),
            message="resources.requests may not exceed resources.limits (the pods would be refused)",
            check=_requests_within_limits,
            field_path=".requests",
        ),
        Rule(
            cel=(
                f"(!has(self.requests) || self.requests.all(k, k.size() <= {MAX_QUALIFIED_NAME})) && "
                f"(!has(self.limits) || self.limits.all(k, k.size() <= {MAX_QUALIFIED_NAME}))"
            ),
            message=f"resources names are at most {MAX_QUALIFIED_NAME} characters ([domain/]name)",
            check=lambda r: keys_within(r.requests) and keys_within(r.limits),
        ),
    )

    requests: Annotated[dict[str, IntOrQuantity], Field(max_length=16)] = Field(default_factory=dict)
    """Requests merged over the defaults (cpu 8, memory 96Gi)."""
    limits: Annotated[dict[str, IntOrQuantity], Field(max_length=16)] = Field(default_factory=dict)
    """Limits merged over the defaults (memory 256Gi)."""


class SchedulingSpec(ApiObject):
    """Where the pods may run."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=(
                "!has(self.nodeSelector) || self.nodeSelector.all(k, "
                f"k.size() <= {MAX_QUALIFIED_NAME} && k.matches(r'{LABEL_KEY}'))"
            ),
            message=(
                "scheduling.nodeSelector keys must be label keys ([prefix/]name, name at most 63 characters, "
                f"at most {MAX_QUALIFIED_NAME} in all)"
            ),
            check=lambda s: all(
                len(k) <= MAX_QUALIFIED_NAME and re.match(LABEL_KEY, k) for k in s.node_selector
            ),
            field_path=".nodeSelector",
        ),
    )

    node_selector: Annotated[
        dict[str, Annotated[str, StringConstraints(max_length=63, pattern=LABEL_VALUE)]], Field(max_length=64)
    ] = Field(default_factory=dict)
    """Extra node selector labels."""
    tolerations: Annotated[list[Toleration], Field(max_length=32)] = Field(default_factory=list)
    """Tolerations (Kubernetes Toleration), at most 32; a toleration for the GPU taint is always added."""
    affinity: Affinity | None = None
    """Kubernetes Affinity of the pods (at most 4 terms of each kind, 4 requirements a term, 8 values
    a requirement)."""
    priority_class_name: OptionalDnsName = ""
    """PriorityClass of the pods."""


class ProbeOverride(ApiObject):
    """Fields merged over one default probe."""

    initial_delay_seconds: Annotated[int, Field(ge=0)] | None = None
    """Seconds before the first probe."""
    period_seconds: Annotated[int, Field(ge=1)] | None = None
    """Seconds between probes."""
    timeout_seconds: Annotated[int, Field(ge=1)] | None = None
    """Seconds before one probe times out."""
    failure_threshold: Annotated[int, Field(ge=1)] | None = None
    """Failures in a row that count as failed."""
    success_threshold: Annotated[int, Field(ge=1)] | None = None
    """Successes in a row that count as passed (1 for startup and liveness)."""


class ProbesSpec(ApiObject):
    """Overrides of the default /health probes."""

    startup: ProbeOverride = _sub(ProbeOverride)
    """Startup probe; the default allows 45 minutes for loading 236 GB."""
    readiness: ProbeOverride = _sub(ProbeOverride)
    """Readiness probe."""
    liveness: ProbeOverride = _sub(ProbeOverride)
    """Liveness probe."""


class ServiceSpec(ApiObject):
    """The client Service in front of the replicas."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    """Kubernetes Service type. NodePort and LoadBalancer require auth.apiKeySecretRef."""
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    """Port of the OpenAI-compatible API on the Service."""


class AuthSpec(ApiObject):
    """Client authentication."""

    api_key_secret_ref: SecretKeyRef | None = None
    """Secret key holding the API key clients must send (vLLM reads it from VLLM_API_KEY, never argv).
    Required with a NodePort or LoadBalancer Service and with inferencePool. vLLM checks it on the
    /v1 routes only: /invocations, /pooling, /score, /rerank, /tokenize, /pause, /metrics and
    /health stay open with a key: the NetworkPolicy (network) is what limits who reaches them."""


class DisruptionSpec(ApiObject):
    """How servers stop: the PodDisruptionBudget, and the drain of their requests."""

    max_unavailable: IntOrPercent = 1
    """Replicas that voluntary disruptions (drains) may take down at once."""
    drain_seconds: Annotated[int, Field(ge=0, le=MAX_DRAIN_SECONDS)] = DRAIN_SECONDS
    """Seconds a stopping server finishes its in-flight requests (vLLM's --shutdown-timeout);
    it takes no new ones and exits when the last ends. The default lets the default
    32768-token answer finish at 30 tokens/s (1092 s). The pods' terminationGracePeriodSeconds
    covers it; 0 aborts the requests at once."""


def _weights_fit(s: QwenThinkingDeploymentSpec) -> bool:
    memory = s.gpu.memory_gi_b
    if s.model.id != DEFAULT_MODEL or memory is None:
        return True
    return memory * s.parallelism.tensor * s.runtime.gpu_memory_utilization >= WEIGHTS_GIB


def _gpu_resource_free(s: QwenThinkingDeploymentSpec) -> bool:
    return s.gpu.resource_name not in s.resources.requests | s.resources.limits


_HAS_API_KEY = "(has(self.auth) && has(self.auth.apiKeySecretRef))"
"""CEL: the resource names an API key."""


def _has(path: str, default: str) -> str:
    """CEL: `self.<path>`, or its default when absent (the spec's own default `{}` is checked too)."""
    parts = path.split(".")
    guard = " && ".join(f"has(self.{'.'.join(parts[: i + 1])})" for i in range(len(parts)))
    return f"({guard} ? self.{path} : {default})"


class AutoscalingSpec(ApiObject):
    """Replicas that follow vLLM's queue of waiting requests (not GPU utilization, which says
    nothing about an LLM server's load): a KEDA ScaledObject when KEDA's CRD is served, else a
    HorizontalPodAutoscaler; either targets this resource's scale subresource."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="self.minReplicas <= self.maxReplicas",
            message="autoscaling.minReplicas must not exceed autoscaling.maxReplicas",
            check=lambda a: a.min_replicas <= a.max_replicas,
            field_path=".minReplicas",
        ),
    )

    min_replicas: Annotated[int, Field(ge=1, le=1024)] = 1
    """Fewest replicas."""
    max_replicas: Annotated[int, Field(ge=1, le=1024)] = 4
    """Most replicas."""
    target_waiting_per_replica: Annotated[int, Field(ge=1, le=100000)] = 4
    """Requests waiting per replica (vllm:num_requests_waiting) the autoscaler aims at: above it,
    it adds replicas."""
    scale_down_stabilization_seconds: Annotated[int, Field(ge=0, le=3600)] = 1800
    """How long the load must stay low before a replica is removed; long, because a replica takes
    tens of minutes to download and load 236 GB again. At most 3600 (the HPA's limit)."""
    prometheus_address: Annotated[str, StringConstraints(pattern=r"^https?://\S+$", max_length=1024)] = (
        "http://prometheus-operated.monitoring.svc:9090"
    )
    """With KEDA: the Prometheus that scrapes the servers (the default is what the Prometheus
    Operator creates for a Prometheus in the namespace monitoring)."""


class PortNumber(ApiObject):
    """A port, as the InferencePool spells one."""

    number: Annotated[int, Field(ge=1, le=65535)]
    """Port number."""


class EndpointPickerRef(ApiObject):
    """The endpoint picker (EPP) that chooses a server for each request: the InferencePool's own
    endpointPickerRef, passed through."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="self.kind != 'Service' || has(self.port)",
            message="inferencePool.endpointPickerRef.port is required when kind is Service (the default)",
            check=lambda r: r.kind != "Service" or r.port is not None,
            field_path=".port",
        ),
    )

    group: Annotated[str, StringConstraints(pattern=K8S_GROUP_PATTERN, max_length=253)] = ""
    """API group of the endpoint picker's object; empty for the core group (a Service)."""
    kind: Annotated[str, StringConstraints(pattern=K8S_KIND_PATTERN, min_length=1, max_length=63)] = "Service"
    """Kind of the endpoint picker's object."""
    name: DnsName
    """Name of the endpoint picker's object (its Service), in the resource's namespace."""
    port: PortNumber | None = None
    """Port of the endpoint picker's Service (the Service port); required for a Service."""
    failure_mode: Literal["FailOpen", "FailClose"] = "FailClose"
    """What the gateway does when the endpoint picker does not answer: refuse (FailClose) or route
    anyway (FailOpen)."""


class InferencePoolSpec(ApiObject):
    """An InferencePool (Gateway API Inference Extension, inference.networking.k8s.io/v1) that
    selects the servers on port 8000, for an Inference Gateway to route to through an endpoint
    picker."""

    endpoint_picker_ref: EndpointPickerRef
    """The endpoint picker the pool names (deployed by you, e.g. from the extension's chart)."""


class MonitoringSpec(ApiObject):
    """Prometheus Operator objects for this resource alone."""

    prometheus_rule: bool = False
    """A PrometheusRule with the vLLM server alerts of manifests/monitoring/prometheusrule.yaml,
    narrowed to this resource's servers; created while the Prometheus Operator's CRD is served."""


class NetworkPeer(ApiObject):
    """Pods allowed to reach the API port: those a pod selector picks in the namespaces a
    namespace selector picks (Kubernetes NetworkPolicyPeer; at least one of the two)."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="has(self.namespaceSelector) || has(self.podSelector)",
            message="network.allowFrom entries need a namespaceSelector, a podSelector or both",
            check=lambda s: s.namespace_selector is not None or s.pod_selector is not None,
        ),
    )

    namespace_selector: LabelSelector | None = None
    """Namespaces whose pods may connect; without it, this resource's namespace."""
    pod_selector: LabelSelector | None = None
    """Pods that may connect; without it, every pod of the selected namespaces."""


class NetworkSpec(ApiObject):
    """Who may reach the servers: NetworkPolicies owned by the resource."""

    policy: bool = True
    """A NetworkPolicy that admits, on the API port, only pods of this namespace and those of
    `allowFrom`; with pipeline above 1, one more per replica (`<name>-group-<i>`) that opens
    every port between the pods of that group and no other. Egress stays open (the weights
    download from the Hugging Face hub). Turn it off only where another policy (a namespace
    default, a service mesh) already guards the servers: without any, every pod of the cluster
    can use the model's API, and vLLM's API key guards only /v1."""
    allow_from: Annotated[list[NetworkPeer], Field(max_length=32)] = Field(default_factory=list)
    """More peers allowed on the API port: e.g. the gateway's namespace, or the monitoring
    namespace whose Prometheus scrapes the servers' /metrics."""


class QwenThinkingDeploymentSpec(ApiObject):
    """Desired state: the model card's deployment unless a field says otherwise."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=(
                f"!has(self.gpu) || !has(self.gpu.memoryGiB) || {_has('model.id', repr(DEFAULT_MODEL))} != "
                f"'{DEFAULT_MODEL}' || double(self.gpu.memoryGiB * {_has('parallelism.tensor', '4')}) * "
                f"{_has('runtime.gpuMemoryUtilization', '0.92')} >= {WEIGHTS_GIB}"
            ),
            message=(
                f"gpu.memoryGiB x parallelism.tensor x runtime.gpuMemoryUtilization is less than the "
                f"{WEIGHTS_GIB} GiB of weights of {DEFAULT_MODEL}: they cannot fit"
            ),
            check=_weights_fit,
            field_path=".gpu.memoryGiB",
        ),
        Rule(
            cel=(
                "!has(self.resources) || "
                f"!({_has('gpu.resourceName', repr('nvidia.com/gpu'))} in "
                "(has(self.resources.requests) ? self.resources.requests : {}) || "
                f"{_has('gpu.resourceName', repr('nvidia.com/gpu'))} in "
                "(has(self.resources.limits) ? self.resources.limits : {}))"
            ),
            message="resources may not set the GPU resource (gpu.resourceName): parallelism.tensor sets it",
            check=_gpu_resource_free,
            field_path=".resources",
        ),
        Rule(
            cel=(
                "!has(self.service) || !has(self.service.type) || self.service.type == 'ClusterIP' || "
                f"{_HAS_API_KEY}"
            ),
            message=(
                "service.type NodePort or LoadBalancer exposes the model's API beyond the cluster: it "
                "requires auth.apiKeySecretRef (a Secret key holding the API key clients must send)"
            ),
            check=lambda s: s.service.type == "ClusterIP" or s.auth.api_key_secret_ref is not None,
            field_path=".service.type",
        ),
        Rule(
            cel=f"!has(self.inferencePool) || {_HAS_API_KEY}",
            message=(
                "inferencePool exposes the model's API through a gateway: it requires auth.apiKeySecretRef "
                "(a Secret key holding the API key clients must send)"
            ),
            check=lambda s: s.inference_pool is None or s.auth.api_key_secret_ref is not None,
            field_path=".inferencePool",
        ),
    )

    replicas: Annotated[int, Field(ge=0, le=1024)] = 1
    """Number of server replicas (scale subresource)."""
    model: ModelSpec = _sub(ModelSpec)
    """Model and weights."""
    parallelism: ParallelismSpec = _sub(ParallelismSpec)
    """GPUs per replica: `tensor` GPUs in each of `pipeline` pods."""
    context: ContextSpec = _sub(ContextSpec)
    """Context length and out-of-memory fallback."""
    reasoning_parser: ReasoningParser = "deepseek_r1"
    """vLLM reasoning parser, or none for raw output (Qwen-Agent). Never --enable-reasoning."""
    tool_calling: ToolCallingSpec = _sub(ToolCallingSpec)
    """Server-side tool-call parsing."""
    sampling: SamplingSpec = _sub(SamplingSpec)
    """Default sampling parameters."""
    runtime: RuntimeSpec = _sub(RuntimeSpec)
    """The vLLM server process."""
    gpu: GpuSpec = _sub(GpuSpec)
    """GPU resource and product."""
    resources: ResourcesSpec = _sub(ResourcesSpec)
    """CPU and memory of the server container."""
    scheduling: SchedulingSpec = _sub(SchedulingSpec)
    """Node selection."""
    probes: ProbesSpec = _sub(ProbesSpec)
    """Probe overrides."""
    service: ServiceSpec = _sub(ServiceSpec)
    """Client Service."""
    auth: AuthSpec = _sub(AuthSpec)
    """API key."""
    disruption: DisruptionSpec = _sub(DisruptionSpec)
    """PodDisruptionBudget and drain."""
    autoscaling: AutoscalingSpec | None = None
    """Scale the replicas on vLLM's waiting queue (a KEDA ScaledObject, else a
    HorizontalPodAutoscaler); the autoscaler then owns spec.replicas."""
    inference_pool: InferencePoolSpec | None = None
    """An InferencePool over the servers, created while its CRD is served."""
    monitoring: MonitoringSpec = _sub(MonitoringSpec)
    """Per-resource alerts."""
    network: NetworkSpec = _sub(NetworkSpec)
    """Who may reach the servers (a NetworkPolicy)."""
    paused: bool = False
    """Stop changing the children; status still follows reality."""
