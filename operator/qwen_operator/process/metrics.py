"""The operator's Prometheus metrics (endpoints.py serves them).

The operator's own counters and histograms stay low-cardinality (no resource names): one
operator may serve hundreds of resources. The `qwen_operator_resource_*` gauges are the
exception that alerts and dashboards need (which resource is stalled, how far its replicas
have come, what context it runs): a handful of series per resource, as kube-state-metrics
keeps per object, labelled `namespace` and `name`, and removed when the resource goes. Scrape
them with `honorLabels: true`, so that the scrape's own `namespace` (the operator's) does not
rename them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from qwen_operator import api
from qwen_operator.api.vocabulary import ConditionType, Phase, Reason, Stage
from qwen_operator.process.workqueue import Retry

disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: half the output, nothing a dashboard uses
REGISTRY = CollectorRegistry(auto_describe=True)
PHASES = tuple(Phase)
STAGES = tuple(Stage)

RECONCILIATIONS = Counter(
    "qwen_operator_reconciliations_total",
    "Reconciliations by result: changed (children applied), unchanged, paused, invalid, error.",
    ["result"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "qwen_operator_reconcile_duration_seconds",
    "Time one reconciliation took, API calls included.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
STARTUP_SECONDS = Histogram(
    "qwen_operator_startup_seconds",
    "Time of each start-up phase of a server start that reached serving (phase=total: launcher to"
    " ready), as its launcher timed it from vLLM's log; one observation per start.",
    ["phase"],
    buckets=(5, 15, 30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 5400),
    registry=REGISTRY,
)
RESOURCES = Gauge(
    "qwen_operator_resources",
    "QwenThinkingDeployments by phase.",
    ["phase"],
    registry=REGISTRY,
)
CONTEXT_REDUCTIONS = Counter(
    "qwen_operator_context_reductions_total",
    "Context-length reductions after the KV cache could not hold one request, by reason.",
    ["reason"],
    registry=REGISTRY,
)
UTILIZATION_REDUCTIONS = Counter(
    "qwen_operator_utilization_reductions_total",
    "GPU memory utilization reductions after a CUDA out of memory outside the KV cache, or memory another "
    "process holds, by reason.",
    ["reason"],
    registry=REGISTRY,
)
CONTEXT_REDUCED = Gauge(
    "qwen_operator_context_reduced_resources",
    "Resources whose servers run with a shorter context than requested (ContextReduced=True).",
    registry=REGISTRY,
)
API_REQUESTS = Counter(
    "qwen_operator_api_requests_total",
    "Kubernetes API requests the reconciler made, by verb (apply = server-side apply) and resource.",
    ["verb", "resource"],
    registry=REGISTRY,
)
WATCH_REQUESTS = Counter(
    "qwen_operator_watch_requests_total",
    "List and watch requests of the operator's own watches (the optional kinds', while their CRD is "
    "served), by verb and resource; not in api_requests.",
    ["verb", "resource"],
    registry=REGISTRY,
)
API_ERRORS = Counter(
    "qwen_operator_api_errors_total",
    "Kubernetes API requests that failed, by verb, resource and HTTP status (0: no response).",
    ["verb", "resource", "code"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "qwen_operator_retries_total",
    "Reconciliations run again after a back-off (1, 2, 5, 10, 30 s, then every 60 s), by reason: "
    "ReconcileError (an API call failed) or QuotaExceeded (a ResourceQuota refuses a child; no watch "
    "says when that changes).",
    ["reason"],
    registry=REGISTRY,
)
BACKING_OFF = Gauge(
    "qwen_operator_backing_off_resources",
    "Resources waiting for a retry after a back-off.",
    registry=REGISTRY,
)
LEASE_REQUESTS = Counter(
    "qwen_operator_lease_requests_total",
    "Requests for the leader-election Lease, by verb (update = a renewal or takeover); not in api_requests.",
    ["verb"],
    registry=REGISTRY,
)
LEADER = Gauge(
    "qwen_operator_leader",
    "1 while this replica holds the leader-election Lease and reconciles; 0 while it stands by.",
    registry=REGISTRY,
)
LEADERSHIP_CHANGES = Counter(
    "qwen_operator_leadership_changes_total",
    "This replica acquired or lost the Lease.",
    ["change"],
    registry=REGISTRY,
)
ACCESS_REVIEWS = Counter(
    "qwen_operator_access_reviews_total",
    "TokenReviews and SubjectAccessReviews sent to decide who may read /metrics, by resource (the "
    "verdicts are cached: about two a minute per scraper); not in api_requests.",
    ["resource"],
    registry=REGISTRY,
)
METRICS_REFUSED = Counter(
    "qwen_operator_metrics_refused_total",
    "Requests for /metrics refused, by HTTP status: 401 (no token, or one the apiserver does not "
    "accept), 403 (RBAC does not allow get /metrics), 503 (the apiserver could not be asked).",
    ["code"],
    registry=REGISTRY,
)
EVENTS = Counter(
    "qwen_operator_events_total",
    "Events posted on resources, by type and reason.",
    ["type", "reason"],
    registry=REGISTRY,
)


RESOURCE_LABELS = ("namespace", "name")
DESIRED_REPLICAS = Gauge(
    "qwen_operator_resource_desired_replicas",
    "spec.replicas of each QwenThinkingDeployment (what kubectl scale or an autoscaler set).",
    RESOURCE_LABELS,
    registry=REGISTRY,
)
READY_REPLICAS = Gauge(
    "qwen_operator_resource_ready_replicas",
    "Replicas of each QwenThinkingDeployment that pass readiness (status.readyReplicas).",
    RESOURCE_LABELS,
    registry=REGISTRY,
)
STAGE_REPLICAS = Gauge(
    "qwen_operator_resource_replicas",
    "Server pods of each QwenThinkingDeployment by stage (status.replicaStatus): Scheduling, "
    "DownloadingWeights, LoadingModel, Serving, CrashLoop.",
    (*RESOURCE_LABELS, "stage"),
    registry=REGISTRY,
)
REQUESTED_CONTEXT = Gauge(
    "qwen_operator_resource_requested_context_tokens",
    "The context length each QwenThinkingDeployment asks for (spec.context.maxModelLen).",
    RESOURCE_LABELS,
    registry=REGISTRY,
)
EFFECTIVE_CONTEXT = Gauge(
    "qwen_operator_resource_effective_context_tokens",
    "The context length the servers of each QwenThinkingDeployment run with (status.context.effective).",
    RESOURCE_LABELS,
    registry=REGISTRY,
)
STALLED = Gauge(
    "qwen_operator_resource_stalled",
    "1 while a QwenThinkingDeployment is Stalled, labelled with the condition's reason.",
    (*RESOURCE_LABELS, "reason"),
    registry=REGISTRY,
)


class PhaseTracker:
    """Remembers each resource's phase so the phase gauge counts resources, not updates."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._phases: dict[tuple[str, str], str] = {}
        for phase in PHASES:
            RESOURCES.labels(phase=phase).set(0)

    def set(self, key: tuple[str, str], phase: str | None) -> None:
        with self._lock:
            if phase is None:
                self._phases.pop(key, None)
            else:
                self._phases[key] = phase
            counts: dict[str, int] = dict.fromkeys(PHASES, 0)
            for value in self._phases.values():
                counts[value] = counts.get(value, 0) + 1
        for name, count in counts.items():
            RESOURCES.labels(phase=name).set(count)


PHASE_TRACKER = PhaseTracker()


class ReducedTracker:
    """Remembers which resources run below their requested context, for the gauge."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reduced: set[tuple[str, str]] = set()
        CONTEXT_REDUCED.set(0)

    def set(self, key: tuple[str, str], reduced: bool) -> None:
        with self._lock:
            if reduced:
                self._reduced.add(key)
            else:
                self._reduced.discard(key)
            CONTEXT_REDUCED.set(len(self._reduced))


REDUCED_TRACKER = ReducedTracker()


def retried(exc: Exception, delay: float) -> None:
    """The work queue backs off a resource (the queue's on_retry)."""
    RETRIES.labels(reason=exc.reason if isinstance(exc, Retry) else Reason.RECONCILE_ERROR).inc()


@dataclass(frozen=True)
class Figures:
    """What the per-resource gauges say about one resource, read from the status just built."""

    desired: int
    ready: int
    stages: tuple[tuple[str, int], ...]
    """Every stage with its count of pods (zeros included: a stacked panel needs them)."""
    requested: int | None
    effective: int | None
    stalled: str | None
    """The Stalled condition's reason while it is True."""

    @classmethod
    def of(cls, desired: int, status: api.QwenThinkingDeploymentStatus) -> Figures:
        counts = dict.fromkeys(STAGES, 0)
        for entry in status.replica_status or ():
            counts[entry.stage] += 1
        stalled = next(
            (c.reason for c in status.conditions if c.type == ConditionType.STALLED and c.status == "True"),
            None,
        )
        context = status.context
        return cls(
            desired=desired,
            ready=status.ready_replicas or 0,
            stages=tuple(counts.items()),
            requested=context.requested if context else None,
            effective=context.effective if context else None,
            stalled=stalled,
        )


Series = dict[tuple[Gauge, tuple[str, ...]], float]


def _series(key: tuple[str, str], figures: Figures) -> Series:
    """Each gauge's label values and value for one resource."""
    out: Series = {(DESIRED_REPLICAS, key): figures.desired, (READY_REPLICAS, key): figures.ready}
    out |= {(STAGE_REPLICAS, (*key, stage)): count for stage, count in figures.stages}
    if figures.requested is not None:
        out[(REQUESTED_CONTEXT, key)] = figures.requested
    if figures.effective is not None:
        out[(EFFECTIVE_CONTEXT, key)] = figures.effective
    if figures.stalled is not None:
        out[(STALLED, (*key, figures.stalled))] = 1
    return out


class ResourceTracker:
    """Keeps the per-resource gauges: set from each reconciliation's figures; a series that no
    longer applies (another stall reason, a deleted resource) is removed, never left stale."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._figures: dict[tuple[str, str], Figures] = {}

    def set(self, key: tuple[str, str], figures: Figures | None) -> None:
        with self._lock:
            before = self._figures.pop(key, None)
            if figures is not None:
                self._figures[key] = figures
            if before == figures:
                return
            old = _series(key, before) if before is not None else {}
            new = _series(key, figures) if figures is not None else {}
            for (gauge, labels), value in new.items():
                gauge.labels(*labels).set(value)
            for gauge, labels in old.keys() - new.keys():
                gauge.remove(*labels)


RESOURCE_TRACKER = ResourceTracker()


def exposition() -> bytes:
    return bytes(generate_latest(REGISTRY))
