"""What the operator keeps of each object it watches: slim, typed and read-only.

The watches (Kopf indices) hold these instead of whole objects: only the fields a decision
reads, so memory stays proportional to what matters (no managedFields, no foreign
annotations, no pod specs beyond the server's context). Building them never raises: an
index handler that raised would drop the object from the cache.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from qwen_operator.api.vocabulary import (
    ANNOTATION_PREFIX,
    INSTANCE_LABEL,
    LWS_GROUP_INDEX_LABEL,
    LWS_WORKER_INDEX_LABEL,
    REVISION_LABEL,
    SERVER_CONTAINER,
    TEMPLATE_ANNOTATION,
    KubeletReason,
    LauncherRecord,
    PodCondition,
    PodPhase,
    StartReport,
    parse_launcher_record,
)
from qwen_operator.children.registry import OPTIONAL_CRDS, STATUS_KINDS
from qwen_operator.process import clock
from qwen_operator.reconcile.diff import DATA_DIGEST, IMMUTABLE, data_digest
from qwen_runtime.argv import gpu_memory_utilization, max_model_len

Raw = Mapping[str, Any]


def _meta(raw: Raw) -> Mapping[str, Any]:
    meta = raw.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _dict(value: Any) -> dict[str, Any]:
    return copy.deepcopy(dict(value)) if isinstance(value, Mapping) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _ours(annotations: Any) -> dict[str, str]:
    """Only the operator's own annotations (a kubectl last-applied copy of the spec is not)."""
    if not isinstance(annotations, Mapping):
        return {}
    return {str(k): str(v) for k, v in annotations.items() if str(k).startswith(ANNOTATION_PREFIX)}


def mounted_config_maps(value: Any) -> frozenset[str]:
    """The ConfigMaps a pod spec, or a workload's pod templates, mount as volumes (`configMap`,
    also inside a projected volume), wherever they lie in it."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            source = item.get("configMap")
            if isinstance(source, Mapping) and source.get("name"):
                found.add(str(source["name"]))
            stack += [v for v in item.values() if isinstance(v, (Mapping, list))]
        elif isinstance(item, list):
            stack += [v for v in item if isinstance(v, (Mapping, list))]
    return frozenset(found)


def resource_version(raw: Raw) -> str:
    return str(_meta(raw).get("resourceVersion") or "")


@dataclass(frozen=True)
class Resource:
    """A QwenThinkingDeployment: identity, the operator's annotations, spec and status."""

    namespace: str
    name: str
    uid: str
    generation: int | None
    resource_version: str
    deleting: bool
    annotations: dict[str, str]
    spec: dict[str, Any]
    status: dict[str, Any]

    def body(self) -> dict[str, Any]:
        """The resource as `api.parse_resource` reads it."""
        meta = {"name": self.name, "namespace": self.namespace, "uid": self.uid,
                "generation": self.generation, "annotations": self.annotations}  # fmt: skip
        return {"metadata": meta, "spec": self.spec}


def resource_from(raw: Raw) -> Resource:
    meta = _meta(raw)
    generation = meta.get("generation")
    return Resource(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        generation=generation if isinstance(generation, int) else None,
        resource_version=resource_version(raw),
        deleting=bool(meta.get("deletionTimestamp")),
        annotations=_ours(meta.get("annotations")),
        spec=_dict(raw.get("spec")),
        status=_dict(raw.get("status")),
    )


@dataclass(frozen=True)
class Owner:
    """A child's controller reference."""

    kind: str
    name: str
    uid: str


@dataclass(frozen=True)
class Child:
    """An object the operator applies (StatefulSet, Service, PodDisruptionBudget, ServiceMonitor,
    HorizontalPodAutoscaler, ScaledObject, InferencePool)."""

    kind: str
    namespace: str
    name: str
    instance: str
    """The owning resource's name (label app.kubernetes.io/instance)."""
    uid: str
    resource_version: str
    generation: int
    deleting: bool
    controller: Owner | None
    managers: frozenset[str]
    """Field managers that wrote it (an orphan the operator applied can be adopted)."""
    manifest: dict[str, Any]
    """metadata (labels, the operator's annotations, ownerReferences), spec, and a ConfigMap's data
    as its digest and its `immutable`: what drift reads."""
    status: dict[str, Any]
    """The status of the kinds whose progress the decision reads (STATUS_KINDS); else empty."""
    mounts: frozenset[str] = frozenset()
    """The ConfigMaps its pod templates mount (a workload's, the download Job's): a launcher
    ConfigMap they name is kept, as the pods they will create need it."""


def _controller(meta: Mapping[str, Any]) -> Owner | None:
    for ref in meta.get("ownerReferences") or []:
        if isinstance(ref, Mapping) and ref.get("controller"):
            return Owner(str(ref.get("kind", "")), str(ref.get("name", "")), str(ref.get("uid", "")))
    return None


def child_from(raw: Raw, kind: str | None = None) -> Child:
    """`kind` when the object does not say (Kopf sets it on listed items; a raw list does not)."""
    meta = _meta(raw)
    labels = meta.get("labels") if isinstance(meta.get("labels"), Mapping) else {}
    kept_meta = {"name": meta.get("name"), "namespace": meta.get("namespace"), "labels": dict(labels or {}),
                 "annotations": _ours(meta.get("annotations")),
                 "ownerReferences": copy.deepcopy(list(meta.get("ownerReferences") or []))}  # fmt: skip
    managers = frozenset(
        str(m.get("manager", "")) for m in meta.get("managedFields") or [] if isinstance(m, Mapping)
    )
    kind = kind or str(raw.get("kind") or "")
    return Child(
        kind=kind,
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        instance=str((labels or {}).get(INSTANCE_LABEL, "")),
        uid=str(meta.get("uid") or ""),
        resource_version=resource_version(raw),
        generation=_int(meta.get("generation")),
        deleting=bool(meta.get("deletionTimestamp")),
        controller=_controller(meta),
        managers=managers,
        manifest={
            "metadata": kept_meta,
            "spec": _dict(raw.get("spec")),
            **({DATA_DIGEST: data_digest(raw)} if "data" in raw else {}),
            **({IMMUTABLE: raw[IMMUTABLE]} if IMMUTABLE in raw else {}),
        },
        status=_dict(raw.get("status")) if kind in STATUS_KINDS else {},
        mounts=mounted_config_maps(raw.get("spec")),
    )


@dataclass(frozen=True)
class Terminated:
    """One ended run of a container, as the kubelet keeps it."""

    reason: str
    """The kubelet's reason: OOMKilled, Error, Completed, ..."""
    exit_code: int | None
    message: str
    record: LauncherRecord | None
    """The launcher's JSON line, when the message holds one."""

    @property
    def cause(self) -> str:
        """Why it ended: the kubelet's OOMKilled first, else the launcher's reason, else the kubelet's."""
        if self.reason == KubeletReason.OOM_KILLED:
            return KubeletReason.OOM_KILLED
        if self.record is not None:
            return str(self.record["reason"])
        return self.reason or KubeletReason.ERROR

    @property
    def failed(self) -> bool:
        return self.exit_code != 0 or self.reason == KubeletReason.OOM_KILLED


def _terminated(value: Any) -> Terminated | None:
    if not isinstance(value, Mapping):
        return None
    code = value.get("exitCode")
    message = str(value.get("message") or "")
    return Terminated(
        reason=str(value.get("reason") or ""),
        exit_code=code if isinstance(code, int) and not isinstance(code, bool) else None,
        message=message,
        record=parse_launcher_record(message),
    )


@dataclass(frozen=True)
class Container:
    """A container's status: readiness, restarts, why it waits, how its runs ended."""

    name: str
    image: str
    ready: bool
    restart_count: int
    waiting_reason: str
    waiting_message: str
    terminated: Terminated | None
    """`state.terminated`: the run that just ended (before the kubelet restarts it)."""
    last_terminated: Terminated | None
    """`lastState.terminated`: the previous run."""
    running_since: datetime | None = None
    """`state.running.startedAt`: when this run started."""
    last_finished: datetime | None = None
    """`lastState.terminated.finishedAt`: when the previous run ended."""


def _container(raw: Mapping[str, Any]) -> Container:
    state = raw.get("state") if isinstance(raw.get("state"), Mapping) else {}
    last = raw.get("lastState") if isinstance(raw.get("lastState"), Mapping) else {}
    waiting = (state or {}).get("waiting") if isinstance((state or {}).get("waiting"), Mapping) else {}
    return Container(
        name=str(raw.get("name") or ""),
        image=str(raw.get("image") or ""),
        ready=bool(raw.get("ready")),
        restart_count=_int(raw.get("restartCount")),
        waiting_reason=str((waiting or {}).get("reason") or ""),
        waiting_message=str((waiting or {}).get("message") or ""),
        terminated=_terminated((state or {}).get("terminated")),
        last_terminated=_terminated((last or {}).get("terminated")),
        running_since=clock.parse(_field((state or {}).get("running"), "startedAt")),
        last_finished=clock.parse(_field((last or {}).get("terminated"), "finishedAt")),
    )


def _field(value: Any, key: str) -> str | None:
    return str(value.get(key)) if isinstance(value, Mapping) and value.get(key) else None


@dataclass(frozen=True)
class Unschedulable:
    """The scheduler could not place the pod (PodScheduled=False, Unschedulable)."""

    message: str
    since: datetime | None
    """The condition's lastTransitionTime: how long it has lasted."""


@dataclass(frozen=True)
class Pod:
    """A server pod: identity, scheduling, the server's context and its containers' states."""

    name: str
    uid: str
    instance: str
    deleting: bool
    phase: str
    unschedulable: Unschedulable | None
    server_context: int | None
    """The --max-model-len in the pod's server command (fixed for the pod's life)."""
    server_utilization: float | None
    """The --gpu-memory-utilization in the pod's server command."""
    server_memory_limit: str
    """The server container's memory limit (host memory), "" when none."""
    init_containers: tuple[Container, ...]
    containers: tuple[Container, ...]
    created: datetime | None = None
    ready_since: datetime | None = None
    """The Ready condition's lastTransitionTime, while it is True."""
    mounts: frozenset[str] = frozenset()
    """The ConfigMaps its volumes name (the launcher's, of the launcher it runs)."""
    gone: bool = False
    """The watch reported it deleted: kept a while only for its failed run (cache.FAILED_POD_SECONDS),
    it mounts nothing any more."""
    revision: str = ""
    """The template revision it was made from: a LeaderWorkerSet's pods, the operator's digest of
    the group template (annotation TEMPLATE_ANNOTATION), compared with the rendered one ("" for
    a pod made before the digest: on the old template, once a rollout brings it); a
    StatefulSet's, its controller's label controller-revision-hash, compared with its
    updateRevision (reconcile/rollout.py)."""
    group: int = -1
    """The index of its LeaderWorkerSet group (label LWS_GROUP_INDEX_LABEL); -1 for a StatefulSet's."""
    leader: bool = False
    """The leader of its group (worker index 0): the pod that serves the group's API."""
    claims: frozenset[tuple[str, str]] = frozenset()
    """Its persistentVolumeClaim volumes, (volume name, claim name): the rollout compares them with
    the StatefulSet's volume claim templates (an adopted pod may lack one)."""

    @property
    def server(self) -> Container | None:
        return next((c for c in self.containers if c.name == SERVER_CONTAINER), None)


def _unschedulable(status: Mapping[str, Any]) -> Unschedulable | None:
    if status.get("phase", PodPhase.PENDING) != PodPhase.PENDING:
        return None
    for cond in status.get("conditions") or []:
        if not isinstance(cond, Mapping) or cond.get("type") != PodCondition.SCHEDULED:
            continue
        if cond.get("status") == "False" and cond.get("reason") == KubeletReason.UNSCHEDULABLE:
            return Unschedulable(str(cond.get("message") or ""), clock.parse(cond.get("lastTransitionTime")))
    return None


def _server_spec(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    for container in spec.get("containers") or []:
        if isinstance(container, Mapping) and container.get("name") == SERVER_CONTAINER:
            return container
    return {}


def _argv(container: Mapping[str, Any]) -> list[str]:
    return [str(a) for a in [*(container.get("command") or []), *(container.get("args") or [])]]


def _memory_limit(container: Mapping[str, Any]) -> str:
    resources = container.get("resources") if isinstance(container.get("resources"), Mapping) else {}
    limits = (resources or {}).get("limits") if isinstance((resources or {}).get("limits"), Mapping) else {}
    return str((limits or {}).get("memory") or "")


def _containers(value: Any) -> tuple[Container, ...]:
    return tuple(_container(c) for c in value or [] if isinstance(c, Mapping))


def pod_from(raw: Raw) -> Pod:
    meta = _meta(raw)
    status = raw.get("status") if isinstance(raw.get("status"), Mapping) else {}
    spec = raw.get("spec") if isinstance(raw.get("spec"), Mapping) else {}
    labels = meta.get("labels") if isinstance(meta.get("labels"), Mapping) else {}
    server = _server_spec(spec or {})
    return Pod(
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        instance=str((labels or {}).get(INSTANCE_LABEL, "")),
        deleting=bool(meta.get("deletionTimestamp")),
        phase=str((status or {}).get("phase") or PodPhase.PENDING),
        unschedulable=_unschedulable(status or {}),
        server_context=max_model_len(_argv(server)),
        server_utilization=gpu_memory_utilization(_argv(server)),
        server_memory_limit=_memory_limit(server),
        init_containers=_containers((status or {}).get("initContainerStatuses")),
        containers=_containers((status or {}).get("containerStatuses")),
        created=clock.parse(meta.get("creationTimestamp")),
        ready_since=_ready_since(status or {}),
        mounts=mounted_config_maps((spec or {}).get("volumes")),
        revision=_revision(meta, labels or {}),
        group=_index((labels or {}).get(LWS_GROUP_INDEX_LABEL)),
        leader=str((labels or {}).get(LWS_WORKER_INDEX_LABEL, "")) == "0",
        claims=claim_volumes((spec or {}).get("volumes")),
    )


def _revision(meta: Mapping[str, Any], labels: Mapping[str, Any]) -> str:
    """A LeaderWorkerSet group's pod: its template digest alone, "" when it has none (made from a
    template an operator from before the digest applied: the old template during a rollout,
    never an unknown one); a StatefulSet's: its controller's revision label."""
    if LWS_GROUP_INDEX_LABEL in labels:
        return str(_ours(meta.get("annotations")).get(TEMPLATE_ANNOTATION) or "")
    return str(labels.get(REVISION_LABEL, ""))


def _index(value: Any) -> int:
    text = str(value or "")
    return int(text) if text.isdigit() else -1


def claim_volumes(value: Any) -> frozenset[tuple[str, str]]:
    """(volume name, claim name) of each persistentVolumeClaim volume of a pod spec's `volumes`."""
    found = set()
    for volume in value if isinstance(value, list) else []:
        source = volume.get("persistentVolumeClaim") if isinstance(volume, Mapping) else None
        if isinstance(source, Mapping) and source.get("claimName"):
            found.add((str(volume.get("name") or ""), str(source["claimName"])))
    return frozenset(found)


def _ready_since(status: Mapping[str, Any]) -> datetime | None:
    for cond in status.get("conditions") or []:
        if (
            isinstance(cond, Mapping)
            and cond.get("type") == PodCondition.READY
            and cond.get("status") == "True"
        ):
            return clock.parse(cond.get("lastTransitionTime"))
    return None


@dataclass(frozen=True)
class CreateFailure:
    """The StatefulSet controller's FailedCreate event: a pod or claim admission refused."""

    namespace: str
    owner: str
    """The StatefulSet's name (the resource's)."""
    owner_uid: str
    """The StatefulSet's uid: an event about an earlier StatefulSet of that name does not count."""
    message: str
    last_seen: datetime | None
    """When it last happened (the event's lastTimestamp, or its series' or eventTime)."""


def create_failure_from(raw: Raw) -> CreateFailure:
    meta = _meta(raw)
    involved = raw.get("involvedObject") if isinstance(raw.get("involvedObject"), Mapping) else {}
    series = raw.get("series") if isinstance(raw.get("series"), Mapping) else {}
    seen = (
        (series or {}).get("lastObservedTime")
        or raw.get("lastTimestamp")
        or raw.get("eventTime")
        or meta.get("creationTimestamp")
    )
    return CreateFailure(
        namespace=str(meta.get("namespace") or (involved or {}).get("namespace") or ""),
        owner=str((involved or {}).get("name") or ""),
        owner_uid=str((involved or {}).get("uid") or ""),
        message=str(raw.get("message") or ""),
        last_seen=clock.parse(str(seen) if seen else None),
    )


@dataclass(frozen=True)
class Node:
    """A node that reports GPU memory: its name and labels (for the pods' node selector)."""

    name: str
    labels: dict[str, str]


def node_from(raw: Raw) -> Node:
    meta = _meta(raw)
    labels = meta.get("labels") if isinstance(meta.get("labels"), Mapping) else {}
    return Node(str(meta.get("name") or ""), {str(k): str(v) for k, v in (labels or {}).items()})


@dataclass(frozen=True)
class Crd:
    """A CustomResourceDefinition whose presence matters: is its API served?"""

    name: str
    served: bool


def crd_from(raw: Raw) -> Crd:
    """Served: Established, and serving the version the operator writes (OPTIONAL_CRDS), or any
    version for a CRD the operator does not write."""
    spec = raw.get("spec") if isinstance(raw.get("spec"), Mapping) else {}
    status = raw.get("status") if isinstance(raw.get("status"), Mapping) else {}
    versions = [v for v in (spec or {}).get("versions") or [] if isinstance(v, Mapping)]
    established = any(
        isinstance(c, Mapping) and c.get("type") == "Established" and c.get("status") == "True"
        for c in (status or {}).get("conditions") or []
    )
    name = str(_meta(raw).get("name") or "")
    wanted = OPTIONAL_CRDS.get(name)
    served = any(v.get("served") and (wanted is None or v.get("name") == wanted) for v in versions)
    return Crd(name, established and served)


@dataclass(frozen=True)
class StartSeen:
    """What a server's launcher reported of one start (its log's start report, qwen_runtime.startup)."""

    pod: str
    uid: str
    started_at: datetime
    """The server container's state.running.startedAt: which run of the container it describes."""
    report: StartReport
