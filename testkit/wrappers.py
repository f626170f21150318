"""Builders of the objects the tests read, in one place (LeaderWorkerSet's test/wrappers habit).

Each builder makes the object as the apiserver or the kubelet would show it, and hands it
through the same `facts` functions the operator's watches use, so a test sees exactly what
the operator would. A crashed container is made by the one builder the e2e tooling also
uses to patch live pods (`e2e.devcluster.kube.crashed_container_status`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from e2e.devcluster.kube import StartStage, crashed_container_status, starting_pod_status
from qwen_operator import api
from qwen_operator.api.vocabulary import (
    API_VERSION,
    FIELD_MANAGER,
    GPU_MEMORY_LABEL,
    GPU_PRODUCT_LABEL,
    KIND,
    LWS_GROUP_INDEX_LABEL,
    LWS_KIND,
    LWS_WORKER_INDEX_LABEL,
    MAX_MODEL_LEN_FLAG,
    REVISION_LABEL,
    SERVER_CONTAINER,
    TEMPLATE_ANNOTATION,
    selector_labels,
)
from qwen_operator.children import render
from qwen_operator.process import clock
from qwen_operator.reconcile import diff, snapshot
from qwen_runtime.argv import GPU_MEMORY_UTILIZATION

NS, NAME, UID = "ns", "q", "uid-1"
H100_MIB, H200_MIB = 81559, 143771
"""`nvidia.com/gpu.memory` as GPU feature discovery labels these GPUs."""


def resource_raw(
    spec: Mapping[str, Any] | None = None,
    *,
    name: str = NAME,
    namespace: str = NS,
    uid: str = UID,
    generation: int = 1,
    status: Mapping[str, Any] | None = None,
    annotations: Mapping[str, str] | None = None,
    resource_version: str = "1",
) -> dict[str, Any]:
    """A QwenThinkingDeployment as the apiserver returns it."""
    meta = {"name": name, "namespace": namespace, "uid": uid, "generation": generation,
            "resourceVersion": resource_version, "annotations": dict(annotations or {})}  # fmt: skip
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta, "spec": dict(spec or {}),
            "status": dict(status or {})}  # fmt: skip


def resource(spec: Mapping[str, Any] | None = None, **meta: Any) -> snapshot.Resource:
    return snapshot.resource_from(resource_raw(spec, **meta))


def parsed(spec: Mapping[str, Any] | None = None, **meta: Any) -> api.QwenThinkingDeployment:
    return api.parse_resource(resource(spec, **meta).body())


def live(manifest: Mapping[str, Any], resource_version: str = "1", **status: Any) -> dict[str, Any]:
    """A rendered child as the apiserver holds it after the operator's apply (hash, manager, uid)."""
    obj = copy.deepcopy(dict(diff.with_hash(manifest)))
    meta = obj["metadata"]
    meta |= {"uid": f"uid-{obj['kind']}-{meta['name']}", "resourceVersion": resource_version, "generation": 1,
             "managedFields": [{"manager": FIELD_MANAGER, "operation": "Apply"}]}  # fmt: skip
    if obj["kind"] == "StatefulSet":
        replicas = obj["spec"]["replicas"]
        counts = {"replicas": replicas, "readyReplicas": replicas, "updatedReplicas": replicas}
        obj["status"] = {
            "observedGeneration": 1,
            "currentRevision": "a",
            "updateRevision": "a",
            **counts,
            **status,
        }
    elif obj["kind"] == LWS_KIND:  # groups, as the LeaderWorkerSet controller counts them
        groups = obj["spec"]["replicas"]
        counts = {"replicas": groups, "readyReplicas": groups, "updatedReplicas": groups}
        obj["status"] = {**counts, "conditions": [{"type": "Available", "status": "True"}], **status}
    elif obj["kind"] in LIVE_STATUS:
        obj["status"] = {**LIVE_STATUS[obj["kind"]], **status}
    return obj


JOB_COMPLETE = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
JOB_RUNNING = {"active": 1}
LIVE_STATUS: dict[str, dict[str, Any]] = {"Job": JOB_COMPLETE, "PersistentVolumeClaim": {"phase": "Bound"}}
"""The settled status of the shared download's children: the Job succeeded, the claim bound."""


def download_job(res: api.QwenThinkingDeployment, **status: Any) -> snapshot.Child:
    """The download Job of `res` (model.cache.mode Shared) as the Job controller reports it."""
    raw = live(next(m for m in render.render(res) if m["kind"] == "Job"))
    raw["status"] = dict(status)
    return snapshot.child_from(raw)


def children(
    res: api.QwenThinkingDeployment, max_model_len: int | None = None,
    replicas: Mapping[str, float] | None = None, **sts_status: Any,
) -> tuple[snapshot.Child, ...]:  # fmt: skip
    """Every child of `res` as live objects: applied, rolled out and ready unless `sts_status` says;
    `replicas`: the replicas' own utilizations their ConfigMap holds."""
    rendered = render.render(res, max_model_len, replica_utilizations=replicas)
    return tuple(snapshot.child_from(live(m, **sts_status)) for m in rendered)


def statefulset(
    replicas: int = 1, ready: int = 1, updated: int | None = None, observed: bool = True,
    spec: Mapping[str, Any] | None = None,
) -> snapshot.Child:  # fmt: skip
    """The StatefulSet of `parsed(spec)` as the operator applied it, scaled to `replicas`, its
    rollout as the controller reports it."""
    res = parsed({**(spec or {}), "replicas": replicas})
    raw = live(next(m for m in render.render(res) if m["kind"] == "StatefulSet"))
    raw["metadata"]["generation"] = 3
    raw["status"] = {"observedGeneration": 3 if observed else 2, "replicas": replicas, "readyReplicas": ready,
                     "updatedReplicas": replicas if updated is None else updated, "currentRevision": "a",
                     "updateRevision": "a" if updated is None else "b"}  # fmt: skip
    return snapshot.child_from(raw)


def failed_create(
    message: str, at: datetime, name: str = NAME, sts_uid: str = f"uid-StatefulSet-{NAME}"
) -> snapshot.CreateFailure:
    """The StatefulSet controller's FailedCreate event, last seen `at`."""
    involved = {"kind": "StatefulSet", "name": name, "namespace": NS, "uid": sts_uid}
    return snapshot.create_failure_from(
        {"metadata": {"name": f"{name}.1", "namespace": NS}, "involvedObject": involved,
         "reason": "FailedCreate", "message": message, "lastTimestamp": clock.rfc3339(at)}
    )  # fmt: skip


QUOTA_REFUSAL = (
    'create Pod q-0 in StatefulSet q failed error: pods "q-0" is forbidden: exceeded quota: gpus, '
    "requested: requests.nvidia.com/gpu=4, used: requests.nvidia.com/gpu=0, "
    "limited: requests.nvidia.com/gpu=2"
)


def gpu_node(
    name: str = "gpu-node-0", memory_mib: int = H100_MIB, product: str = "", **labels: str
) -> snapshot.Node:
    extra = {GPU_PRODUCT_LABEL: product} if product else {}
    return snapshot.node_from(
        {"metadata": {"name": name, "labels": {GPU_MEMORY_LABEL: str(memory_mib), **extra, **labels}}}
    )


class Pod:
    """A server pod, built up step by step: `Pod().context(262144).crashed(record).facts()`."""

    def __init__(self, name: str = f"{NAME}-0", uid: str = "pod-1", instance: str = NAME) -> None:
        labels = {**selector_labels(instance)}
        self.raw: dict[str, Any] = {
            "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "uid": uid, "labels": labels},
            "spec": {"containers": [{"name": SERVER_CONTAINER, "command": ["vllm", "serve", "m"]}]},
            "status": {"phase": "Running", "containerStatuses": [self._fresh(SERVER_CONTAINER)]},
        }

    @staticmethod
    def _fresh(name: str) -> dict[str, Any]:
        return {"name": name, "image": "img", "ready": True, "started": True, "restartCount": 0,
                "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}  # fmt: skip

    def _server(self) -> dict[str, Any]:
        statuses: list[dict[str, Any]] = self.raw["status"]["containerStatuses"]
        return next(s for s in statuses if s["name"] == SERVER_CONTAINER)

    def context(self, max_model_len: int) -> Pod:
        """The pod's server runs with this --max-model-len (as the StatefulSet rendered it)."""
        self.raw["spec"]["containers"][0]["command"] += [MAX_MODEL_LEN_FLAG, str(max_model_len)]
        return self

    def utilization(self, gpu_memory_utilization: float) -> Pod:
        """The pod's server runs with this --gpu-memory-utilization."""
        self.raw["spec"]["containers"][0]["command"] += [
            GPU_MEMORY_UTILIZATION,
            f"{gpu_memory_utilization:g}",
        ]
        return self

    def memory_limit(self, limit: str) -> Pod:
        self.raw["spec"]["containers"][0]["resources"] = {"limits": {"memory": limit}}
        return self

    def crashed(
        self, message: str = "", reason: str = "Error", exit_code: int = 1, restart_count: int | None = None,
        then: Literal["waiting", "running"] = "waiting",
    ) -> Pod:  # fmt: skip
        """The server container ended (lastState) and the kubelet backs off (or runs it again)."""
        server = self._server()
        server.update(crashed_container_status(server, reason, exit_code, message, restart_count, then))
        return self

    def failed(self, record: Mapping[str, Any], restart_count: int | None = None) -> Pod:
        """The server container ended with the launcher's record as its termination message."""
        return self.crashed(json.dumps(dict(record)), restart_count=restart_count)

    def terminated_now(self, record: Mapping[str, Any], restart_count: int = 0) -> Pod:
        """The run just ended: `state.terminated`, before the kubelet restarts it."""
        terminated = {"exitCode": 1, "reason": "Error", "message": json.dumps(dict(record))}
        self._server().update(state={"terminated": terminated}, ready=False, restartCount=restart_count)
        return self

    def oom_killed(self) -> Pod:
        return self.crashed("", reason="OOMKilled", exit_code=137)

    def waiting(self, reason: str, message: str = "m") -> Pod:
        self._server().update(state={"waiting": {"reason": reason, "message": message}}, ready=False)
        return self

    def not_ready(self) -> Pod:
        self._server()["ready"] = False
        return self

    def unschedulable(
        self, since: datetime, message: str = "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."
    ) -> Pod:
        cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                "lastTransitionTime": clock.rfc3339(since)}  # fmt: skip
        self.raw["status"] = {"phase": "Pending", "conditions": [cond]}
        return self

    def starting(self, stage: StartStage, since: datetime) -> Pod:
        """The pod at one point of its start, as the kubelet reports it."""
        self.raw["status"] = starting_pod_status(stage, since)
        return self

    def created(self, at: datetime) -> Pod:
        self.raw["metadata"]["creationTimestamp"] = clock.rfc3339(at)
        return self

    def in_group(self, worker_index: int) -> Pod:
        """A pod of a LeaderWorkerSet group (parallelism.pipeline > 1): 0 is the leader."""
        self.raw["metadata"]["labels"][LWS_WORKER_INDEX_LABEL] = str(worker_index)
        return self

    def group(self, index: int, worker_index: int = 0) -> Pod:
        """A pod of LeaderWorkerSet group `index`, as its controller and webhook label it: the
        group's index and its own in the group (0: the leader)."""
        self.raw["metadata"]["labels"][LWS_GROUP_INDEX_LABEL] = str(index)
        return self.in_group(worker_index)

    def template(self, digest: str) -> Pod:
        """Made from the LeaderWorkerSet group template of this digest (render.with_template_digest)."""
        self.raw["metadata"].setdefault("annotations", {})[TEMPLATE_ANNOTATION] = digest
        return self

    def revision(self, revision: str) -> Pod:
        """The template revision the StatefulSet controller made it from (controller-revision-hash)."""
        self.raw["metadata"]["labels"][REVISION_LABEL] = revision
        return self

    def deleting(self) -> Pod:
        self.raw["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        return self

    def mounting(self, configmap: str) -> Pod:
        """The pod mounts this ConfigMap (the launcher's, of the launcher it was created with)."""
        volumes = self.raw["spec"].setdefault("volumes", [])
        volumes.append({"name": f"v{len(volumes)}", "configMap": {"name": configmap, "defaultMode": 292}})
        return self

    def claim(self, volume: str, claim: str) -> Pod:
        """The pod mounts this claim as the volume of that name (a StatefulSet's claim template's)."""
        volumes = self.raw["spec"].setdefault("volumes", [])
        volumes.append({"name": volume, "persistentVolumeClaim": {"claimName": claim}})
        return self

    def obj(self) -> dict[str, Any]:
        return copy.deepcopy(self.raw)

    def facts(self) -> snapshot.Pod:
        return snapshot.pod_from(self.raw)


def kv_record(max_model_len: int = 262144, estimate: int | None = 245408) -> dict[str, Any]:
    """The launcher's record of vLLM's KV-cache check failing at `max_model_len`."""
    record: dict[str, Any] = {"reason": "KVCacheInsufficient", "exitCode": 1, "maxModelLen": max_model_len,
                              "neededGiB": 11.75, "availableGiB": 11.0,
                              "message": "ValueError: To serve at least one request ..."}  # fmt: skip
    if estimate is not None:
        record["estimatedMaxModelLen"] = estimate
    return record


CUDA_OOM_RECORD = {
    "reason": "CudaOOM",
    "exitCode": 1,
    "phase": "profiling",
    "message": "torch.OutOfMemoryError",
}
INVALID_ARGS_RECORD = {"reason": "InvalidArguments", "exitCode": 2, "message": "vllm serve: error: bad flag"}
GRAPH_OOM_RECORD = {"reason": "CudaOOM", "exitCode": 1, "phase": "cudaGraphCapture",
                    "message": "torch.OutOfMemoryError: CUDA out of memory."}  # fmt: skip
WEIGHTS_OOM_RECORD = {"reason": "CudaOOM", "exitCode": 1, "phase": "weightLoading",
                      "message": "Failed to load model - not enough GPU memory."}  # fmt: skip
KV_NO_FIGURES_RECORD = {"reason": "KVCacheInsufficient", "exitCode": 1, "message": "ValueError: KV cache"}
KV_NO_MEMORY_RECORD = {"reason": "KVCacheInsufficient", "exitCode": 1, "maxModelLen": 262144,
                       "availableGiB": 0.0,
                       "message": "ValueError: No available memory for the cache blocks."}  # fmt: skip


def free_memory_record(free_gib: float, total_gib: float, utilization: float = 0.92) -> dict[str, Any]:
    """The launcher's record of vLLM finding less free GPU memory than its budget."""
    message = (
        f"ValueError: Free memory on device cuda:0 ({free_gib}/{total_gib} GiB) on startup is less than "
        f"desired GPU memory utilization ({utilization}, {round(total_gib * utilization, 2)} GiB)."
    )
    return {"reason": "InsufficientFreeMemory", "exitCode": 1, "device": "cuda:0", "freeGiB": free_gib,
            "totalGiB": total_gib, "gpuMemoryUtilization": utilization,
            "requestedGiB": round(total_gib * utilization, 2), "message": message}  # fmt: skip
