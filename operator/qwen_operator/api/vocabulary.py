"""The operator's vocabulary: every name that code, tests and people match on, defined once.

API identity, labels and the pod selector, annotation keys, phases, condition types, condition
and event reasons, the reasons the kubelet and the launcher report, and the context step. The
launcher's record type comes from `qwen_runtime.record` (standard library only, it runs in the
server pods) and is re-exported here, so the operator never copies its reasons.

No reason string is written as a literal outside this module: compare and emit the members.
The documentation's tables of conditions and events are generated from the docstrings here
(`docs.reasons_tables`), so the reference cannot drift from the code.
"""

from __future__ import annotations

from enum import StrEnum

from qwen_runtime.record import Reason as LauncherReason
from qwen_runtime.record import Record as LauncherRecord
from qwen_runtime.record import parse as parse_launcher_record
from qwen_runtime.startup import Report as StartReport
from qwen_runtime.startup import StartPhase

__all__ = ["LauncherReason", "LauncherRecord", "StartPhase", "StartReport", "parse_launcher_record"]

# -- API identity ---------------------------------------------------------------------------

GROUP = "serving.qwen-operator.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "QwenThinkingDeployment"
PLURAL = "qwenthinkingdeployments"
SINGULAR = "qwenthinkingdeployment"
SHORT_NAMES = ("qtd",)
CATEGORIES = ("qwen", "llm")
FIELD_MANAGER = "qwen-operator"
"""The one field manager of every server-side apply and status patch."""
COMPONENT = "qwen-operator"
"""`source.component` and `reportingComponent` of the events the operator posts."""

# -- labels, selector, annotations ----------------------------------------------------------

NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
COMPONENT_LABEL = "app.kubernetes.io/component"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
APP_NAME = "qwen-thinking"
MANAGED_BY = "qwen-operator"
MANAGED_LABELS = {MANAGED_BY_LABEL: MANAGED_BY, NAME_LABEL: APP_NAME}
"""What every child carries: the server-side filter of the operator's watches."""


class Component(StrEnum):
    """`app.kubernetes.io/component` of a child."""

    SERVER = "server"
    API = "api"
    WEIGHTS = "weights"
    COMPILE_CACHE = "compile-cache"
    """Each replica's claim for its compile artifacts where the weights are read-only."""
    DOWNLOAD = "download"
    """The Job that downloads the weights once into the shared claim (model.cache.mode Shared)."""
    LAUNCHER = "launcher"
    REPLICA_SETTINGS = "replica-settings"
    """The ConfigMap of each replica's own settings (children/replicas.py)."""
    AUTOSCALER = "autoscaler"
    INFERENCE_POOL = "inference-pool"
    ALERTS = "alerts"


def selector_labels(name: str) -> dict[str, str]:
    """The labels that select one resource's pods (also the scale subresource's selector)."""
    return {NAME_LABEL: APP_NAME, INSTANCE_LABEL: name}


def leader_labels(name: str, pipeline: int) -> dict[str, str]:
    """The labels of the pods that serve: all of them with one stage, else the group leaders
    (the Services' and the scale subresource's selector)."""
    leaders = {LWS_WORKER_INDEX_LABEL: "0"} if pipeline > 1 else {}
    return {**selector_labels(name), **leaders}


def group_labels(name: str, index: int) -> dict[str, str]:
    """The labels of one pipeline group's pods, its leader and its workers: the resource's
    selector and the group's index, which the LeaderWorkerSet controller puts on each pod."""
    return {**selector_labels(name), LWS_GROUP_INDEX_LABEL: str(index)}


def selector_string(name: str, pipeline: int = 1) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(leader_labels(name, pipeline).items()))


def labels(name: str, component: Component) -> dict[str, str]:
    return {**selector_labels(name), COMPONENT_LABEL: str(component), MANAGED_BY_LABEL: MANAGED_BY}


def label_string(labels_: dict[str, str]) -> str:
    """A label selector in the query-string form (`k=v,k2=v2`)."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels_.items()))


HASH_ANNOTATION = f"{GROUP}/applied-hash"
"""On each child: a digest of the rendered manifest the operator applied last."""
RESET_ANNOTATION = f"{GROUP}/context-reset"
"""On the resource, read only: a new value tries the requested context again."""
LAUNCHER_ANNOTATION = f"{GROUP}/launcher-digest"
"""On the pod template: the digest of the launcher's sources (a new launcher rolls the pods)."""
TEMPLATE_ANNOTATION = f"{GROUP}/template-digest"
"""On both pod templates of a LeaderWorkerSet: a digest of its `leaderWorkerTemplate` (without this
annotation), so each pod says which template it was made from. The rollout compares it with the
rendered one (reconcile/rollout.py): LWS's own `template-revision-hash` label is a hash the
operator cannot compute, and the LeaderWorkerSet's status does not name the current one. A live
LeaderWorkerSet from before the digest keeps its templates without it until they really change
(reconcile/rollout.py `as_applied`): the digest alone would roll every group."""
ANNOTATION_PREFIX = f"{GROUP}/"
"""The operator reads only annotations under its own prefix (and keeps no others in memory)."""

GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"
"""Node label from GPU feature discovery: the memory of each GPU, in MiB."""
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"

SERVER_CONTAINER = "server"
"""The container that runs vLLM under the launcher."""
FETCH_CONTAINER = "fetch-weights"
"""The init container that downloads the weights."""
MAX_MODEL_LEN_FLAG = "--max-model-len"

SERVICE_MONITOR_API = "monitoring.coreos.com/v1"
SERVICE_MONITOR_CRD = "servicemonitors.monitoring.coreos.com"
PROMETHEUS_RULE_CRD = "prometheusrules.monitoring.coreos.com"
PROMETHEUS_RULE_KIND = "PrometheusRule"
SCALED_OBJECT_API = "keda.sh/v1alpha1"
SCALED_OBJECT_CRD = "scaledobjects.keda.sh"
SCALED_OBJECT_KIND = "ScaledObject"
INFERENCE_POOL_API = "inference.networking.k8s.io/v1"
INFERENCE_POOL_CRD = "inferencepools.inference.networking.k8s.io"
INFERENCE_POOL_KIND = "InferencePool"
HPA_KIND = "HorizontalPodAutoscaler"
"""The kinds of these children are also the reasons that name them (Autoscaling, InferencePool)."""
LWS_API = "leaderworkerset.x-k8s.io/v1"
LWS_CRD = "leaderworkersets.leaderworkerset.x-k8s.io"
LWS_KIND = "LeaderWorkerSet"
LWS_WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"
"""LWS labels each pod of a group with its index in the group; the leader's is "0"."""
REVISION_LABEL = "controller-revision-hash"
"""The StatefulSet controller's label on each pod: the revision of the template it was made from
(compared with the StatefulSet's `status.updateRevision` by the operator's rollout)."""


def claim_name(template: str, statefulset: str, ordinal: int) -> str:
    """The claim a StatefulSet's volume claim template makes for the pod of this ordinal, as the
    StatefulSet controller names it (`getPersistentVolumeClaimName`): `<template>-<set>-<ordinal>`.
    Its pod mounts it as the volume named after the template."""
    return f"{template}-{statefulset}-{ordinal}"


LWS_GROUP_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/group-index"
"""LWS labels each pod of a group, leader and workers, with the group's index (0 to replicas - 1):
its webhook gives a leader its StatefulSet ordinal, the group's worker StatefulSet copies it."""
LWS_PARTITION_PATH = ("spec", "rolloutStrategy", "rollingUpdateConfiguration", "partition")
"""Where a LeaderWorkerSet says which groups may take its template: those with an index at or above
it (its controller never updates a lower one). The operator's rollout sets it (reconcile/rollout.py)."""
LWS_LEADER_ADDRESS_VAR = "LWS_LEADER_ADDRESS"
"""LWS sets it in every container of a group: the leader pod's DNS name."""
LWS_WORKER_INDEX_VAR = "LWS_WORKER_INDEX"
"""LWS sets it in every container of a group: the pod's index in the group (the leader's 0)."""
QUEUE_METRIC = "vllm:num_requests_waiting"
"""vLLM's gauge of requests waiting for a batch: what the autoscalers scale on."""

# -- phases and conditions ------------------------------------------------------------------


class Phase(StrEnum):
    """`status.phase`: one word for `kubectl get`; the conditions say why."""

    PENDING = "Pending"
    PROGRESSING = "Progressing"
    READY = "Ready"
    DEGRADED = "Degraded"
    FAILED = "Failed"


class Stage(StrEnum):
    """What one replica is doing, from what the kubelet reports (`status.replicaStatus[].stage`)."""

    SCHEDULING = "Scheduling"
    """Waiting for a node, a volume, or its containers to be created."""
    DOWNLOADING_WEIGHTS = "DownloadingWeights"
    """The init container downloads the weights."""
    LOADING_MODEL = "LoadingModel"
    """The server runs but is not ready yet: vLLM loads the weights and warms up."""
    SERVING = "Serving"
    """Ready: the served model answers."""
    CRASH_LOOP = "CrashLoop"
    """A container keeps failing; the reason is the launcher's (or the kubelet's)."""


PHASE_WORDS: dict[str, str] = {
    StartPhase.ENGINE_START: "engine",
    StartPhase.WEIGHT_LOADING: "weights",
    StartPhase.PROFILING: "profiling",
    StartPhase.KV_CACHE_ALLOCATION: "KV cache",
    StartPhase.CUDA_GRAPH_CAPTURE: "graphs",
    StartPhase.WARM_UP: "warm-up",
    StartPhase.SERVING: "API server",
}
"""A start-up phase (`qwen_runtime.startup.StartPhase`) as `kubectl describe` and the conditions
say it: "weights 5m12s, profiling 1m40s (compile 1m10s), graphs 48s"."""
STARTUP_TOTAL = "total"
"""The `phase` label of `qwen_operator_startup_seconds` for a whole start (launcher to ready)."""
START_LOG_LOOKBACK_SECONDS = 120
"""A Ready replica's start report is read from its log from this long before the pod turned
Ready (the report is printed when vLLM's API server is up, a probe period or two before)."""
START_LOG_LIMIT_BYTES = 1 << 20
"""The most of a server's log one read of a start report takes (limitBytes)."""
LOADING_READ_SECONDS = 30.0
"""A replica still starting has its log's last minute read this often, for the phase it is in
(the launcher repeats its report every `startup.HEARTBEAT_SECONDS`)."""


class RolloutState(StrEnum):
    """Where a rollout of the server pods' template stands (`status.rollout.state`)."""

    ROLLING = "Rolling"
    """Replicas are being replaced, in the operator's order (a LeaderWorkerSet's groups: by its
    controller, behind the operator's canary)."""
    HALTED = "Halted"
    """A replica on the new template failed: no other is replaced until it serves, or a new
    template comes."""


class WeightsState(StrEnum):
    """`status.weights.state`: the shared download's Job as the Job controller reports it."""

    PENDING = "Pending"
    """The Job is being created (or replaced after the spec changed what it downloads)."""
    DOWNLOADING = "Downloading"
    """The Job runs: its pod downloads (or resumes) into the shared claim."""
    COMPLETE = "Complete"
    """The Job succeeded: every file is on the claim; the servers mount it read-only."""
    FAILED = "Failed"
    """The Job failed and will not retry by itself."""


class JobCondition(StrEnum):
    """The Job conditions the operator reads."""

    COMPLETE = "Complete"
    FAILED = "Failed"


class ConditionType(StrEnum):
    """kstatus conditions (Ready, Reconciling, Stalled) and the operator's own: ContextReduced and
    UtilizationReduced (the out-of-memory cures in force)."""

    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
    CONTEXT_REDUCED = "ContextReduced"
    UTILIZATION_REDUCED = "UtilizationReduced"
    AUTOSCALING = "Autoscaling"
    INFERENCE_POOL = "InferencePool"


class Reason(StrEnum):
    """Reasons of the operator's conditions. Docstrings: `condition | meaning` (docs table)."""

    READY = "Ready"
    """Ready=True | every replica ready and rolled out"""
    SCALED_TO_ZERO = "ScaledToZero"
    """Ready=True | `spec.replicas` is 0"""
    PROGRESSING = "Progressing"
    """Ready=False, Reconciling=True | creating, scaling or rolling out"""
    SCHEDULING = "Scheduling"
    """Ready=False, Reconciling=True | a pod waits for the scheduler (a claim still binding, a
    retry due); it becomes `Unschedulable` if it lasts"""
    UNSCHEDULABLE = "Unschedulable"
    """Ready=False, Stalled=True | a GPU pod stayed unschedulable past the grace period; the
    message is the scheduler's"""
    IMAGE_PULL_BACK_OFF = "ImagePullBackOff"
    """Ready=False, Stalled=True | the kubelet cannot pull the image"""
    CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"
    """Ready=False, Stalled=True | a container keeps crashing and the launcher said nothing
    precise; the message has its last exit"""
    CONTEXT_FALLBACK_EXHAUSTED = "ContextFallbackExhausted"
    """Ready=False, Stalled=True | out of memory at `minModelLen`: nothing more to try"""
    INSUFFICIENT_GPU_MEMORY = "InsufficientGPUMemory"
    """Ready=False, Stalled=True | with preflight, the weights do not fit the GPUs: nothing
    created or changed"""
    INVALID_SPEC = "InvalidSpec"
    """Ready=False, Stalled=True | a rule the CRD cannot check (a toleration the StatefulSet
    refuses, ...): nothing touched"""
    HEADROOM_EXHAUSTED = "HeadroomExhausted"
    """Ready=False, Stalled=True | CUDA out of memory outside the KV cache at
    `runtime.minGpuMemoryUtilization`: no more headroom to give"""
    GPU_MEMORY_IN_USE = "GPUMemoryInUse"
    """Ready=False, Stalled=True | another process holds so much GPU memory that what is free is
    below `runtime.minGpuMemoryUtilization`; also UtilizationReduced=True when the utilization was
    lowered to what is free"""
    HOST_OUT_OF_MEMORY = "HostOutOfMemory"
    """Ready=False, Stalled=True | the kernel killed the server for its container memory limit
    (host memory, not GPU memory): raise `resources.limits.memory`"""
    WEIGHTS_DOWNLOADING = "WeightsDownloading"
    """Ready=False, Reconciling=True | `model.cache.mode: Shared`: the download Job runs; the
    servers start (or roll) once it has succeeded"""
    WEIGHTS_DOWNLOAD_FAILED = "WeightsDownloadFailed"
    """Ready=False, Stalled=True | the download Job failed (a refused token, an unknown revision, a
    full claim, or its retries spent); delete the Job to try again"""
    LEADER_WORKER_SET_MISSING = "LeaderWorkerSetMissing"
    """Ready=False, Stalled=True | `parallelism.pipeline` > 1 needs the LeaderWorkerSet API
    (sigs.k8s.io/lws), which the cluster does not serve: nothing created or changed"""
    NAME_CONFLICT = "NameConflict"
    """Ready=False, Stalled=True | a child's name is taken by an object the operator does not own:
    nothing is written (to it or to any other child); looked up again every 5 minutes"""
    CHILD_TOO_LARGE = "ChildTooLarge"
    """Ready=False, Stalled=True | a rendered child would exceed the share of etcd's request limit
    a child may take (the message gives its size): nothing is written. The CRD's bounds keep every
    resource below it; this guards against a CRD older than the operator"""
    QUOTA_EXCEEDED = "QuotaExceeded"
    """Ready=False, Stalled=True | a ResourceQuota of the namespace refuses the pods or their
    claims (the StatefulSet controller's FailedCreate)"""
    WRITE_FORBIDDEN = "WriteForbidden"
    """Ready=False, Stalled=True | the apiserver forbids a child the operator applies (403: a
    ResourceQuota, an admission policy or RBAC, which its Status does not tell apart): nothing
    more applied, retried with back-off; the message is the apiserver's"""
    LIMIT_RANGE_VIOLATED = "LimitRangeViolated"
    """Ready=False, Stalled=True | a LimitRange of the namespace refuses the pods or their claims"""
    POD_SECURITY_VIOLATION = "PodSecurityViolation"
    """Ready=False, Stalled=True | the namespace's Pod Security level refuses the pods (e.g.
    `runtime.addCapabilities` under "restricted")"""
    PRIORITY_CLASS_NOT_FOUND = "PriorityClassNotFound"
    """Ready=False, Stalled=True | `scheduling.priorityClassName` names no PriorityClass"""
    FAILED_CREATE = "FailedCreate"
    """Ready=False, Stalled=True | the StatefulSet controller cannot create a pod or claim for
    another reason; the message is its event's"""
    ROLLOUT_HALTED = "RolloutHalted"
    """Ready=False, Stalled=True | the canary (the first replica, or LeaderWorkerSet group, on a new
    template) failed: the others keep the old template and serve; a new spec, or the canary
    serving, resumes it"""
    CREATE_CONTAINER_CONFIG_ERROR = "CreateContainerConfigError"
    """Ready=False, Stalled=True | the kubelet cannot start a container: a Secret or key it reads
    (`tokenSecretRef`, `apiKeySecretRef`, `valueFrom`) is missing"""
    RECONCILE_ERROR = "ReconcileError"
    """Reconciling=True | an API call failed; retried with back-off"""
    NAMESPACE_TERMINATING = "NamespaceTerminating"
    """Reconciling=True | the namespace is being deleted: nothing is created, nothing retried"""
    PAUSED = "Paused"
    """Reconciling=False | `spec.paused`"""
    PENDING = "Pending"
    """Reconciling=False, Stalled=False | echoes the phase when nothing is in progress"""
    DEGRADED = "Degraded"
    """Reconciling=False, Stalled=False | echoes the phase: some replicas serve, one has a problem"""
    FAILED = "Failed"
    """Reconciling=False, Stalled=False | echoes the phase"""
    OUT_OF_MEMORY = "OutOfMemory"
    """ContextReduced=True, UtilizationReduced=True | the servers run below the requested context
    after a KV-cache failure, or below the requested GPU memory utilization after a CUDA out of
    memory outside the KV cache"""
    MEMORY_PLAN = "MemoryPlan"
    """ContextReduced=True | the servers run below the request because the memory plan says so"""
    AS_REQUESTED = "AsRequested"
    """ContextReduced=False, UtilizationReduced=False | the servers run as requested"""
    SCALED_OBJECT = "ScaledObject"
    """Autoscaling=True | KEDA's ScaledObject CRD is served: a ScaledObject scales the replicas on
    `vllm:num_requests_waiting` (a Prometheus query)"""
    HORIZONTAL_POD_AUTOSCALER = "HorizontalPodAutoscaler"
    """Autoscaling=True | KEDA is not installed: a HorizontalPodAutoscaler scales the replicas on the
    Pods metric `vllm:num_requests_waiting`, which prometheus-adapter must serve"""
    INFERENCE_POOL_APPLIED = "InferencePoolApplied"
    """InferencePool=True | an InferencePool selects the servers for the endpoint picker named in
    `spec.inferencePool`"""
    INFERENCE_POOL_NOT_SERVED = "InferencePoolNotServed"
    """InferencePool=False | `spec.inferencePool` is set, but the apiserver does not serve
    `inference.networking.k8s.io/v1` InferencePool: install the Gateway API Inference Extension's
    CRDs (nothing else changes; the pool is created once they are served)"""


class KubeletReason(StrEnum):
    """What the kubelet and the scheduler write into a pod's status, as the operator reads it."""

    OOM_KILLED = "OOMKilled"
    CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"
    IMAGE_PULL_BACK_OFF = "ImagePullBackOff"
    ERR_IMAGE_PULL = "ErrImagePull"
    INVALID_IMAGE_NAME = "InvalidImageName"
    ERR_IMAGE_NEVER_PULL = "ErrImageNeverPull"
    UNSCHEDULABLE = "Unschedulable"
    ERROR = "Error"
    CREATE_CONTAINER_CONFIG_ERROR = "CreateContainerConfigError"


class ControllerEvent(StrEnum):
    """The StatefulSet controller's events the operator watches (filtered on the server)."""

    FAILED_CREATE = "FailedCreate"
    """It could not create a pod or a claim: admission refused it (quota, LimitRange, Pod
    Security, PriorityClass). It sets no condition; this event is all it says."""


FAILED_CREATE_SELECTOR = f"involvedObject.kind=StatefulSet,reason={ControllerEvent.FAILED_CREATE}"
"""The field selector of the operator's watch of Events: only these, cluster-wide."""


class PodPhase(StrEnum):
    """The pod phases the operator reads."""

    PENDING = "Pending"


class PodCondition(StrEnum):
    """The pod conditions the operator reads."""

    SCHEDULED = "PodScheduled"
    READY = "Ready"


IMAGE_PULL_FAILURES = frozenset(
    {
        KubeletReason.IMAGE_PULL_BACK_OFF,
        KubeletReason.ERR_IMAGE_PULL,
        KubeletReason.INVALID_IMAGE_NAME,
        KubeletReason.ERR_IMAGE_NEVER_PULL,
    }
)
CRASH_REASONS: frozenset[str] = frozenset(
    {*(r for r in LauncherReason if r != LauncherReason.UNKNOWN), KubeletReason.OOM_KILLED}
)
"""Crash reasons precise enough to be a condition's reason (else CrashLoopBackOff)."""


class EventReason(StrEnum):
    """Reasons of the events the operator posts (besides the condition reasons it announces:
    a Warning with the `Stalled` reason when it becomes stalled, a Normal with the `Ready` one
    when it becomes ready). Docstrings: `type | when` (docs table)."""

    CREATED = "Created"
    """Normal | children were created: one event per pass, naming them"""
    UPDATED = "Updated"
    """Normal | a child changed with the spec; the message names the fields"""
    SCALED = "Scaled"
    """Normal | the StatefulSet's replicas changed"""
    DRIFT_REVERTED = "DriftReverted"
    """Normal | a hand edit of a field the operator owns was reverted"""
    REPLACING = "Replacing"
    """Normal | a StatefulSet field fixed at creation changed: replaced, pods kept; or
    `parallelism.pipeline` crossed 1: the StatefulSet gives way to a LeaderWorkerSet (or back)"""
    CONTEXT_PLANNED = "ContextPlanned"
    """Normal | the memory plan fits less than requested; the servers start from the plan"""
    INSUFFICIENT_GPU_MEMORY = "InsufficientGPUMemory"
    """Warning | the memory plan fits less than `minModelLen`"""
    CONTEXT_REDUCED = "ContextReduced"
    """Warning | the context was lowered after a KV-cache failure, with vLLM's figures"""
    UTILIZATION_REDUCED = "UtilizationReduced"
    """Warning | the GPU memory utilization was lowered after a CUDA out of memory outside the KV
    cache, or to what another process leaves free"""
    CONTEXT_BELOW_RECOMMENDED = "ContextBelowRecommended"
    """Warning | the servers run below `context.recommendedModelLen` (the model card's 131072 for
    a thinking model), once when that begins"""
    REPLACING_POD = "ReplacingPod"
    """Normal | the rollout deleted a server pod so that the StatefulSet recreates it from the new
    template; the message says why it was next"""
    RESTARTING_REPLICA = "RestartingReplica"
    """Normal | a server pod that does not serve was deleted so that it starts again with its own
    settings (a lower GPU memory utilization for that replica alone); the others are not touched"""
    DELETED = "Deleted"
    """Normal | a child no longer wanted was deleted: the autoscaler or the InferencePool of a spec
    that dropped them, the HorizontalPodAutoscaler once KEDA is installed, an older launcher's
    ConfigMap once no pod mounts it"""
    RECOVERED = "Recovered"
    """Normal | no longer stalled"""
    RECONCILE_ERROR = "ReconcileError"
    """Warning | an API call failed; retried with back-off (once per error streak)"""


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


class Remedy(StrEnum):
    """The cure an out-of-memory got (`status.context.history[].remedy`)."""

    SHORTER_CONTEXT = "ShorterContext"
    """The KV cache could not hold one full-length request: a lower --max-model-len."""
    LOWER_UTILIZATION = "LowerUtilization"
    """A peak outside the KV cache, or another process's memory: a lower
    --gpu-memory-utilization, so more of the GPU stays outside vLLM's budget."""


class Result(StrEnum):
    """What one reconciliation did: the `result` label of qwen_operator_reconciliations_total."""

    CHANGED = "changed"
    UNCHANGED = "unchanged"
    PAUSED = "paused"
    INVALID = "invalid"
    BLOCKED = "blocked"
    GONE = "gone"
    TERMINATING = "terminating"
    ERROR = "error"
