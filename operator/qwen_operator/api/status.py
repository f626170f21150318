"""The status of a QwenThinkingDeployment: what the operator writes, and all it writes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from qwen_operator.api.rules import ApiObject
from qwen_operator.api.vocabulary import (
    Phase,
    Remedy,
    RolloutState,
    Stage,
    WeightsState,
)

__all__ = [
    "Condition",
    "ContextStatus",
    "ContextStep",
    "MemoryStatus",
    "ObservedMemory",
    "PhaseTime",
    "QwenThinkingDeploymentStatus",
    "ReplicaStatus",
    "RolloutStatus",
    "StartStatus",
    "StatusObject",
    "UtilizationStatus",
    "WeightsStatus",
]


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
    replica: str = ""
    """The pod that runs with it alone (a LowerUtilization of that replica's own, in the replicas'
    ConfigMap, taken at its next start); empty when it is the pod template's, every replica's."""
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


class PhaseTime(StatusObject):
    """How long one start-up phase took."""

    phase: str
    """engineStart, weightLoading, profiling, kvCacheAllocation, cudaGraphCapture, warmUp or serving."""
    seconds: float
    """From the phase's first line in vLLM's log to the next phase's."""


class StartStatus(StatusObject):
    """Where the time of a replica's last start went, as its launcher timed it."""

    started_at: str
    """The server container's startedAt (RFC 3339): the start this describes."""
    seconds: float | None = None
    """From the launcher's start until vLLM's API server was up."""
    summary: str = ""
    """In words, e.g. "weights 5m12s, profiling 1m40s (compile 1m10s), graphs 48s"."""
    phases: list[PhaseTime] | None = None
    """Each phase, in order (a phase vLLM skipped is absent: no CUDA graphs with --enforce-eager)."""
    compile_seconds: float | None = None
    """vLLM's own torch.compile total, part of profiling, when it printed one."""


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
    phase: str = ""
    """While LoadingModel: the start-up phase vLLM is in, from the launcher's report (weightLoading,
    profiling, kvCacheAllocation, cudaGraphCapture, warmUp, serving)."""
    last_start: StartStatus | None = None
    """The last start that reached serving: its phases, timed."""
    revision: str = ""
    """The revision of the pod template it runs (its controller-revision-hash; in a LeaderWorkerSet
    group, the operator's digest of the group template, none for a pod made before the operator
    put one there); during a rollout, `status.rollout.revision` is the new one."""
    gpu_memory_utilization: float | None = None
    """The --gpu-memory-utilization it starts with: its own, where a cure lowered it for this
    replica alone (`status.context.history[].replica`), else the pod template's."""


class ObservedMemory(StatusObject):
    """vLLM's own KV-cache figures from the last start that reached serving (its launcher's report)."""

    pod: str
    """The replica that reported them."""
    started_at: str
    """The server container's startedAt: the start they come from."""
    vllm_version: str = ""
    """The vLLM that printed them."""
    image: str = ""
    """The server image."""
    gpu_memory_utilization: float | None = None
    """--gpu-memory-utilization of that start."""
    max_model_len: int | None = None
    """--max-model-len of that start (the context in force)."""
    kv_cache_gib: float | None = Field(default=None, alias="kvCacheGiB")
    """The memory vLLM gave the KV cache (GiB, per GPU)."""
    kv_cache_tokens: int | None = None
    """The KV cache's size in tokens (per replica)."""
    max_concurrency: float | None = None
    """How many requests of maxModelLen tokens the KV cache holds at once."""
    basis: str = ""
    """Digest of what decides the fit (model, image, GPU, parallelism, KV dtype, extra args): a
    change sets the figures aside until the next start measures them."""


class MemoryStatus(StatusObject):
    """What the GPU memory holds, as vLLM measured it."""

    observed: ObservedMemory | None = None
    """vLLM's own KV-cache figures from the last good start, while their basis holds."""


class RolloutStatus(StatusObject):
    """A rollout of the server pods' template, in the operator's order: replicas that do not serve
    first, then one serving replica at a time, the first of them the canary (LeaderWorkerSet
    groups: the highest group first, the canary, then the others as its controller replaces
    them). Absent once every replica runs the current template."""

    state: RolloutState
    """Rolling, or Halted (a replica on the new template failed: the others keep the old one)."""
    revision: str
    """The template the replicas roll to (the StatefulSet's updateRevision; for LeaderWorkerSet
    groups, the operator's digest of the group template)."""
    updated: int = 0
    """Replicas on that revision."""
    serving: int = 0
    """Replicas that serve now, on either revision."""
    halted: list[str] | None = None
    """Replicas on the new revision that failed: the rollout waits until they serve."""
    canary: str = ""
    """The first serving replica that took the new revision."""
    message: str = ""
    """The rollout in words (also Reconciling's message and the Progress column)."""


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
    """One entry per server pod: its stage, since when, restarts, last reason and revision."""
    rollout: RolloutStatus | None = None
    """The rollout of a new pod template under way, if one is."""
    weights: WeightsStatus | None = None
    """The shared download, with model.cache.mode Shared."""
    memory: MemoryStatus | None = None
    """vLLM's own KV-cache figures from the last good start (status.memory.observed)."""
    conditions: list[Condition] = Field(default_factory=list)
    """kstatus conditions."""
