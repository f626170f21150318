"""The QwenThinkingDeployment API: the single source of truth for the CRD and the operator.

Defaults are the model card's deployment, so `spec: {}` serves
Qwen/Qwen3-235B-A22B-Thinking-2507-FP8 on one replica of 4 GPUs with a 262144-token context.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import Field, JsonValue, PlainValidator, StringConstraints, ValidationError, WithJsonSchema

from qwen_operator.api.rules import ApiObject, Rule, RuleError, cel_string_list
from qwen_operator.api.vocabulary import (
    API_VERSION,
    CATEGORIES,
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    Phase,
    Remedy,
    Stage,
    WeightsState,
)
from qwen_operator.reconcile.diff import quantity

__all__ = [
    "API_VERSION",
    "ARGUMENT",
    "BAKED_IMAGE",
    "CACHE_MODES",
    "CAPABILITIES",
    "CATEGORIES",
    "CREDENTIAL_NAMES",
    "CREDENTIAL_SUFFIX",
    "DEFAULT_IMAGE",
    "DEFAULT_MODEL",
    "DNS_SUBDOMAIN",
    "ENV_NAME",
    "FALLBACK_STEPS",
    "GROUP",
    "IMAGE",
    "K8S_GROUP_PATTERN",
    "K8S_KIND_PATTERN",
    "KIND",
    "LABEL_KEY",
    "LABEL_VALUE",
    "MANAGED_ENV",
    "MANAGED_FLAGS",
    "MANAGED_FLAG_PATTERN",
    "MAX_CONTEXT",
    "MAX_INT_OR_STRING",
    "MAX_NAME_LENGTH",
    "MAX_PIPELINE",
    "MIN_CONTEXT",
    "NAME_PATTERN",
    "OTHER_CACHE_FLOOR",
    "PERCENT_PATTERN",
    "PLURAL",
    "PRINTABLE",
    "QUANTITY_PATTERN",
    "REASONING_PARSERS",
    "RECOMMENDED_CONTEXT",
    "RELATIVE_PATH",
    "RESOURCE_NAME",
    "REVISION",
    "SECRET_KEY",
    "SHORT_NAMES",
    "SINGULAR",
    "TENSOR_SIZES",
    "TOKEN_PATTERN",
    "TOOL_PARSERS",
    "VERSION",
    "WEIGHTS_CACHE_FLOOR",
    "WEIGHTS_GIB",
    "AuthSpec",
    "AutoscalingSpec",
    "CacheMode",
    "CacheSpec",
    "Condition",
    "ContextSpec",
    "ContextStatus",
    "ContextStep",
    "DisruptionSpec",
    "DnsName",
    "EndpointPickerRef",
    "EnvVar",
    "GpuSpec",
    "HuggingFaceSource",
    "InferencePoolSpec",
    "IntOrPercent",
    "IntOrQuantity",
    "InvalidResource",
    "KvCacheDtype",
    "ModelSource",
    "ModelSpec",
    "MonitoringSpec",
    "ObjectMeta",
    "OptionalDnsName",
    "ParallelismSpec",
    "Passthrough",
    "PortNumber",
    "ProbeOverride",
    "ProbesSpec",
    "PvcSource",
    "Quantity",
    "QwenThinkingDeployment",
    "QwenThinkingDeploymentSpec",
    "QwenThinkingDeploymentStatus",
    "ReasoningParser",
    "ReplicaStatus",
    "ResourcesSpec",
    "RuntimeSpec",
    "SamplingSpec",
    "SchedulingSpec",
    "SecretKeyRef",
    "ServiceSpec",
    "StatusObject",
    "ToolCallingSpec",
    "ToolParser",
    "UtilizationStatus",
    "WeightsStatus",
    "parse_resource",
    "without_nulls",
]

DEFAULT_MODEL = "Qwen/Qwen3-235B-A22B-Thinking-2507-FP8"
DEFAULT_IMAGE = "vllm/vllm-openai:v0.33.0"
"""The unmodified vLLM image: the launcher reaches the pods in a ConfigMap (render.py)."""
BAKED_IMAGE = "ghcr.io/qwen-operator/qwen-runtime:0.1.0-vllm0.33.0"
"""The optional image with the launcher baked in (runtime/Dockerfile), for air-gapped mirrors."""
WEIGHTS_CACHE_FLOOR = "221Gi"
"""The default model's weights: 236,445,455,360 B is 220.2 GiB (planner.weight_bytes)."""
WEIGHTS_GIB = 220.2
"""The same weights in GiB, rounded down: GPUs with less memory in all cannot hold them."""
OTHER_CACHE_FLOOR = "1Gi"
"""Any other model: no weights cache smaller than this."""
RECOMMENDED_CONTEXT = 131072
"""The model card: a thinking model wants at least this context for its reasoning."""
CREDENTIAL_NAMES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_TOKEN", "VLLM_API_KEY", "OPENAI_API_KEY")
CREDENTIAL_SUFFIX = (
    "(_TOKEN|_API_KEY|_APIKEY|_PASSWORD|_PASSWD|_SECRET|_SECRET_KEY|_ACCESS_KEY|_PRIVATE_KEY|_CREDENTIALS)$"
)
"""Environment variable names that hold credentials: never a literal value in the spec."""
TOKEN_PATTERN = "(hf_[A-Za-z0-9]{30,}|sk-[A-Za-z0-9_-]{20,})"
"""A Hugging Face or OpenAI-style token, wherever it sits in an env value or an argument."""
MANAGED_ENV = ("PYTHONPATH",)
"""Environment the server needs as the operator sets it: the launcher is imported from PYTHONPATH."""
CAPABILITIES = ("IPC_LOCK",)
"""Capabilities a user may add to the server (IPC_LOCK: pinned memory for RDMA/GPUDirect);
any of them takes the pods out of Pod Security "restricted"."""
MAX_CONTEXT = 262144
MIN_CONTEXT = 1024
FALLBACK_STEPS = (262144, 196608, 131072, 98304, 65536, 32768)
"""The ladder of contexts the fallback steps down when vLLM gave no estimate."""
MAX_NAME_LENGTH = 52
"""A StatefulSet's pods carry `controller-revision-hash: <name>-<10 chars>`, a 63-char label."""

ReasoningParser = Literal["deepseek_r1", "qwen3", "none"]
"""vLLM reasoning parsers that understand Qwen3's implicit `<think>`; `none` = raw output."""
ToolParser = Literal["hermes", "qwen3_xml", "qwen3_coder"]
KvCacheDtype = Literal["auto", "fp8"]
REASONING_PARSERS: tuple[str, ...] = get_args(ReasoningParser)
TOOL_PARSERS: tuple[str, ...] = get_args(ToolParser)
TENSOR_SIZES = (1, 2, 4, 8)
MAX_PIPELINE = 8
"""Pipeline stages (nodes) of one replica: the 94 layers of this model in at most 8 stages."""

MANAGED_FLAGS = (
    "--model",
    "--served-model-name",
    "--tensor-parallel-size",
    "-tp",
    "--max-model-len",
    "--reasoning-parser",
    "--enable-reasoning",
    "--gpu-memory-utilization",
    "--device-memory-utilization",
    "--kv-cache-dtype",
    "--override-generation-config",
    "--enable-auto-tool-choice",
    "--disable-auto-tool-choice",
    "--tool-call-parser",
    "--enable-expert-parallel",
    "--disable-expert-parallel",
    "-ep",
    "--pipeline-parallel-size",
    "-pp",
    "--nnodes",
    "-n",
    "--node-rank",
    "-r",
    "--master-addr",
    "--headless",
    "--api-key",
    "--download-dir",
    "--revision",
    "--host",
    "--port",
    "--hf-token",
)
"""Flags the operator sets itself, with vLLM 0.33's aliases for them (from its own parser), and
`--hf-token`, whose value would be a credential in the pod spec (tokenSecretRef sets it)."""


def _prefixes(word: str) -> str:
    """A regex for every non-empty prefix of `word`: argparse accepts unique abbreviations."""
    assert re.fullmatch(r"[a-z-]+", word), word  # no regex metacharacters, no CEL escapes
    pattern = ""
    for char in reversed(word[1:]):
        pattern = f"({char}{pattern})?"
    return word[0] + pattern


MANAGED_FLAG_PATTERN = (
    "^("
    + "|".join(
        [f"--{_prefixes(f[2:])}" for f in MANAGED_FLAGS if f.startswith("--")]
        + [f for f in MANAGED_FLAGS if not f.startswith("--")]
    )
    + ")([= ].*)?$"
)
"""Matches an argument (with `_` read as `-`) that sets a managed flag: `--flag`, `--flag=v`,
`--flag v`, or an abbreviation such as `--max-model=1024`, which vLLM's parser accepts."""

QUANTITY_PATTERN = (
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?[0-9]+))?$"
)
"""A non-negative Kubernetes resource quantity as the apiserver parses it. The pattern that
Kubernetes publishes also admits a fractional exponent (`1e.5`), which the parser refuses."""
PERCENT_PATTERN = r"^[0-9]+%$"
Quantity = Annotated[str, StringConstraints(pattern=QUANTITY_PATTERN, max_length=64)]

# Patterns are read by three regex engines (Go's in the apiserver, Rust's in pydantic, Python's):
# ASCII classes spelled out, no \w \d \s (Unicode-aware in two of them, not in Go's).
_DNS_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_SUBDOMAIN = f"^{_DNS_LABEL}(\\.{_DNS_LABEL})*$"
"""Names of Secrets, claims, PriorityClasses and StorageClasses (at most 253 characters)."""
_LABEL_NAME = "[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
LABEL_KEY = f"^({_DNS_LABEL}(\\.{_DNS_LABEL})*/)?{_LABEL_NAME}$"
LABEL_VALUE = "^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"
RESOURCE_NAME = f"^{_DNS_LABEL}(\\.{_DNS_LABEL})*/{_LABEL_NAME}$"
"""An extended resource: a domain, a slash and a name (nvidia.com/gpu)."""
ENV_NAME = "^[-._A-Za-z][-._A-Za-z0-9]*$"
SECRET_KEY = "^[-._A-Za-z0-9]+$"
_SEGMENT = "[A-Za-z0-9_-][A-Za-z0-9._-]*"
REVISION = f"^{_SEGMENT}(/{_SEGMENT})*$"
"""A branch, tag or commit; no segment starts with a dot, so never `..`."""
RELATIVE_PATH = f"^/?({_SEGMENT}(/{_SEGMENT})*)?/?$"
IMAGE = "^[A-Za-z0-9][A-Za-z0-9._/:@-]*$"
PRINTABLE = "^[!-~]*$"
"""Printable ASCII, no space: a name clients send and logs print."""
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"
ARGUMENT = f"^([^\\x00-\\x1f\\x7f{_DASHES}][^\\x00-\\x1f\\x7f]*)?$"
"""No control character, and no dash look-alike first (a pasted `—max-num-seqs` is no flag to
vLLM: it would stop at "unrecognized arguments"). The dashes are the characters themselves."""
DnsName = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
OptionalDnsName = Annotated[str, StringConstraints(max_length=253, pattern=f"^$|{DNS_SUBDOMAIN}")]


MAX_INT_OR_STRING = 64


def _int_or_string(value: Any, pattern: str, example: str) -> int | str:
    """A Kubernetes int-or-string: a non-negative integer, or a string matching `pattern`."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and len(value) <= MAX_INT_OR_STRING and re.fullmatch(pattern, value):
        return value
    raise ValueError(f"{value!r} must be a non-negative integer or a string like {example}")


def _int_or_string_schema(pattern: str) -> WithJsonSchema:
    return WithJsonSchema(
        {"x-kubernetes-int-or-string": True, "pattern": pattern, "minimum": 0, "maxLength": MAX_INT_OR_STRING}
    )


IntOrQuantity = Annotated[
    int | str,
    PlainValidator(lambda v: _int_or_string(v, QUANTITY_PATTERN, "8, 500m or 96Gi")),
    _int_or_string_schema(QUANTITY_PATTERN),
]
IntOrPercent = Annotated[
    int | str,
    PlainValidator(lambda v: _int_or_string(v, PERCENT_PATTERN, "25%")),
    _int_or_string_schema(PERCENT_PATTERN),
]
K8S_GROUP_PATTERN = r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
K8S_KIND_PATTERN = r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"
"""An API group and a kind, as the Gateway API validates them."""
Passthrough = Annotated[
    dict[str, Any], Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
]


def _sub(model: type[ApiObject], description: str | None = None) -> Any:
    """A nested object that defaults to its own defaults (also in the CRD, so `{}` fills in)."""
    extra: dict[str, JsonValue] = {"x-qwen-default-object": True}
    return Field(default_factory=model, description=description, json_schema_extra=extra)


def _is_managed(arg: str) -> bool:
    return re.match(MANAGED_FLAG_PATTERN, arg.replace("_", "-")) is not None


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


class CacheSpec(ApiObject):
    """The volume(s) that hold downloaded weights (Hugging Face source only)."""

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
    """Weights volume for downloads: one per replica (the default) or one shared claim."""


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
    max_tokens: Annotated[int, Field(ge=1, le=MAX_CONTEXT)] | None = 32768
    """Default output length when a request sets none; the model card advises 32768 (81920 for
    competition math and code)."""


class EnvVar(ApiObject):
    """An environment variable of the server container (Kubernetes EnvVar)."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=ENV_NAME)]
    """Variable name."""
    value: Annotated[str, StringConstraints(max_length=32768)] | None = None
    """Literal value."""
    value_from: Passthrough | None = None
    """Kubernetes EnvVarSource (secretKeyRef, configMapKeyRef, fieldRef, ...)."""


class RuntimeSpec(ApiObject):
    """The vLLM server process."""

    rules: ClassVar[tuple[Rule, ...]] = (
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
                f"runtime.env may not set {', '.join(MANAGED_ENV)}: the operator sets it (the launcher is "
                "imported from there)"
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
    )

    requests: Annotated[dict[str, IntOrQuantity], Field(max_length=16)] = Field(default_factory=dict)
    """Requests merged over the defaults (cpu 8, memory 96Gi)."""
    limits: Annotated[dict[str, IntOrQuantity], Field(max_length=16)] = Field(default_factory=dict)
    """Limits merged over the defaults (memory 256Gi)."""


class SchedulingSpec(ApiObject):
    """Where the pods may run."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=f"!has(self.nodeSelector) || self.nodeSelector.all(k, k.matches(r'{LABEL_KEY}'))",
            message=(
                "scheduling.nodeSelector keys must be label keys ([prefix/]name, name at most 63 characters)"
            ),
            check=lambda s: all(re.match(LABEL_KEY, k) for k in s.node_selector),
            field_path=".nodeSelector",
        ),
    )

    node_selector: Annotated[
        dict[str, Annotated[str, StringConstraints(max_length=63, pattern=LABEL_VALUE)]], Field(max_length=64)
    ] = Field(default_factory=dict)
    """Extra node selector labels."""
    tolerations: Annotated[list[Passthrough], Field(max_length=64)] = Field(default_factory=list)
    """Tolerations (Kubernetes Toleration); a toleration for the GPU taint is always added."""
    affinity: Passthrough | None = None
    """Kubernetes Affinity of the pods."""
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
    """Kubernetes Service type."""
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    """Port of the OpenAI-compatible API on the Service."""


class AuthSpec(ApiObject):
    """Client authentication."""

    api_key_secret_ref: SecretKeyRef | None = None
    """Secret key holding the API key clients must send (vLLM reads it from VLLM_API_KEY, never argv)."""


class DisruptionSpec(ApiObject):
    """The PodDisruptionBudget."""

    max_unavailable: IntOrPercent = 1
    """Replicas that voluntary disruptions (drains) may take down at once."""


def _weights_fit(s: QwenThinkingDeploymentSpec) -> bool:
    memory = s.gpu.memory_gi_b
    if s.model.id != DEFAULT_MODEL or memory is None:
        return True
    return memory * s.parallelism.tensor * s.runtime.gpu_memory_utilization >= WEIGHTS_GIB


def _gpu_resource_free(s: QwenThinkingDeploymentSpec) -> bool:
    return s.gpu.resource_name not in s.resources.requests | s.resources.limits


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
    """PodDisruptionBudget."""
    autoscaling: AutoscalingSpec | None = None
    """Scale the replicas on vLLM's waiting queue (a KEDA ScaledObject, else a
    HorizontalPodAutoscaler); the autoscaler then owns spec.replicas."""
    inference_pool: InferencePoolSpec | None = None
    """An InferencePool over the servers, created while its CRD is served."""
    monitoring: MonitoringSpec = _sub(MonitoringSpec)
    """Per-resource alerts."""
    paused: bool = False
    """Stop changing the children; status still follows reality."""


class StatusObject(ApiObject):
    """Part of the status: written by the operator, read back from the apiserver (enums from text)."""

    model_config = ApiObject.model_config | {"strict": False}


class ContextStep(StatusObject):
    """One out-of-memory cure: a shorter context, or a lower GPU memory utilization."""

    time: str
    """When the cure was decided (RFC 3339)."""
    remedy: Remedy = Remedy.SHORTER_CONTEXT
    """ShorterContext (the KV cache could not hold one request) or LowerUtilization (a peak outside
    the KV cache, or memory held by another process)."""
    from_: int = Field(alias="from")
    """Context length before."""
    to: int
    """Context length after (the same as before for LowerUtilization)."""
    utilization_from: float | None = None
    """GPU memory utilization before (LowerUtilization)."""
    utilization_to: float | None = None
    """GPU memory utilization after (LowerUtilization)."""
    reason: str
    """The failure: KVCacheInsufficient, CudaOOM, InsufficientFreeMemory."""
    cause: str = ""
    """The failure in words, e.g. CUDA out of memory while capturing CUDA graphs."""
    pod: str = ""
    """The pod whose failure caused it."""
    detail: str = ""
    """What the server reported."""
    pod_uid: str = Field(default="", alias="podUID")
    """The failed pod's uid: with restartCount, the failure handled (each is counted once)."""
    restart_count: int = 0
    """The pod's restart count once the failed run was its last state."""
    basis: str = ""
    """Digest of the spec fields that decide the fit; a change to them starts again from the request."""


class UtilizationStatus(StatusObject):
    """The GPU memory utilization in force."""

    requested: float | None = None
    """spec.runtime.gpuMemoryUtilization."""
    effective: float | None = None
    """What the servers run with now (--gpu-memory-utilization)."""


class ContextStatus(StatusObject):
    """The context length and GPU memory utilization in force, and the cures that set them."""

    requested: int | None = None
    """spec.context.maxModelLen."""
    effective: int | None = None
    """What the servers run with now."""
    planned: int | None = None
    """What the memory plan says fits, when known."""
    gpu_memory_utilization: UtilizationStatus | None = None
    """GPU memory utilization requested and in force."""
    history: list[ContextStep] | None = None
    """One entry per out-of-memory cure (the last 20); those with the current basis are in force."""


class Condition(StatusObject):
    """A kstatus condition (Ready, Reconciling, Stalled, ContextReduced)."""

    type: str
    """Condition type."""
    status: Literal["True", "False", "Unknown"]
    """True, False or Unknown."""
    reason: str = ""
    """CamelCase reason."""
    message: str = ""
    """What a person should know."""
    observed_generation: int | None = None
    """The generation this condition describes."""
    last_transition_time: str | None = None
    """When the status last changed."""


class ReplicaStatus(StatusObject):
    """One server pod's progress, as the kubelet reports it."""

    pod: str
    """The pod."""
    stage: Stage
    """Scheduling, DownloadingWeights, LoadingModel, Serving or CrashLoop."""
    since: str | None = None
    """When the pod entered the stage (RFC 3339, the kubelet's time): its age is the stage's."""
    restarts: int = 0
    """Restarts of the server container."""
    reason: str = ""
    """Why it waits or fails: the scheduler's, the kubelet's or the launcher's reason."""


class WeightsStatus(StatusObject):
    """The shared download (model.cache.mode Shared): its claim, its Job and the Job's state."""

    claim: str
    """The ReadWriteMany PersistentVolumeClaim the servers mount read-only."""
    job: str
    """The Job that downloads into it, once."""
    state: WeightsState
    """Pending, Downloading, Complete or Failed (the Job's)."""
    message: str = ""
    """What the Job reports (pods active and failed, or why it failed)."""


class QwenThinkingDeploymentStatus(StatusObject):
    """Observed state, written only by the operator."""

    observed_generation: int | None = None
    """The spec generation the status describes."""
    phase: Phase | None = None
    """Pending, Progressing, Ready, Degraded or Failed."""
    replicas: int | None = None
    """Replicas that exist (scale subresource)."""
    ready_replicas: int | None = None
    """Replicas that pass readiness."""
    selector: str | None = None
    """Label selector of the pods (scale subresource, for HPA)."""
    endpoint: str | None = None
    """OpenAI-compatible base URL inside the cluster."""
    context: ContextStatus | None = None
    """Context length requested, in force and planned."""
    progress: str | None = None
    """The replicas' stages in short, e.g. "1/2 serving, 1 downloading" (printer column Progress)."""
    replica_status: list[ReplicaStatus] | None = None
    """One entry per server pod: its stage, since when, restarts and last reason."""
    weights: WeightsStatus | None = None
    """The shared download, with model.cache.mode Shared."""
    conditions: list[Condition] = Field(default_factory=list)
    """kstatus conditions."""


class ObjectMeta(ApiObject):
    """The part of metadata the operator reads."""

    model_config = ApiObject.model_config | {"extra": "ignore"}

    name: str
    namespace: str = "default"
    uid: str | None = None
    generation: int | None = None
    annotations: dict[str, str] = Field(default_factory=dict)


NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"


class QwenThinkingDeployment(ApiObject):
    """A Qwen3 thinking model served by vLLM."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=(
                f"self.metadata.name.size() <= {MAX_NAME_LENGTH} && "
                f"self.metadata.name.matches('{NAME_PATTERN}')"
            ),
            message=(
                f"metadata.name must be at most {MAX_NAME_LENGTH} characters, start with a letter and "
                "contain only lowercase letters, digits and '-' (it names the StatefulSet and Services)"
            ),
            check=lambda r: (
                len(r.metadata.name) <= MAX_NAME_LENGTH
                and re.match(NAME_PATTERN, r.metadata.name) is not None
            ),
            field_path=".metadata.name",
        ),
    )

    api_version: Literal["serving.qwen-operator.io/v1alpha1"] = "serving.qwen-operator.io/v1alpha1"
    kind: Literal["QwenThinkingDeployment"] = "QwenThinkingDeployment"
    metadata: ObjectMeta
    spec: QwenThinkingDeploymentSpec = _sub(QwenThinkingDeploymentSpec)
    status: Any = Field(default=None, exclude=True)
    """Ignored, as the apiserver ignores it outside the status subresource (`kubectl get -o yaml`)."""


class InvalidResource(ValueError):
    """The resource breaks a schema or CEL rule; `field` names where."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def without_nulls(value: Any) -> Any:
    """The apiserver drops a field whose value is null (none of ours is nullable), then defaults it."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def parse_resource(obj: dict[str, Any]) -> QwenThinkingDeployment:
    """Validate a whole resource the way the apiserver would, with one clear error."""
    try:
        return QwenThinkingDeployment.model_validate(without_nulls(obj))
    except ValidationError as exc:
        err = exc.errors()[0]
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, RuleError):
            path = cause.rule.field_path or ""
            field = (field + path) if field else path.lstrip(".")
            raise InvalidResource(field, cause.rule.message) from None
        raise InvalidResource(field or "resource", err["msg"].removeprefix("Value error, ")) from None
