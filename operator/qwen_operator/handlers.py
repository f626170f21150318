"""Kopf handlers: thin. Every event only queues "look at this resource again".

Kopf provides the watches (the resource, and the children it owns: StatefulSets, their
pods, Services, PodDisruptionBudgets, filtered on the server by the managed-by label) and
its own bookkeeping, kept in the resource's status (never in annotations: GitOps-clean).
The reconciliation itself runs in the work queue's threads (see reconciler.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import kopf

from . import api, kube, metrics, render
from .reconciler import Key, Reconciler
from .workqueue import WorkQueue

log = logging.getLogger("qwen_operator.handlers")
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
INSTANCE_LABEL = "app.kubernetes.io/instance"
CHILDREN: tuple[tuple[str, str, str], ...] = (
    ("apps", "v1", "statefulsets"),
    ("", "v1", "pods"),
    ("", "v1", "services"),
    ("policy", "v1", "poddisruptionbudgets"),
)
MANAGED = {MANAGED_BY_LABEL: render.MANAGED_BY, "app.kubernetes.io/name": render.APP_NAME}


class Runtime:
    """What the handlers share: the queue (started at operator start-up) and the HTTP server."""

    queue: WorkQueue[Key] | None = None
    server: Any = None


def enqueue(namespace: str | None, name: str | None) -> None:
    if Runtime.queue is not None and namespace and name:
        Runtime.queue.add((namespace, name))


def configure(settings: kopf.OperatorSettings) -> None:
    """Kopf settings: state in status, no peering, no cluster scanning, server-side filters."""
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(field="status.kopf.diffbase")
    settings.peering.standalone = True
    settings.scanning.disabled = True  # no list/watch of CRDs and namespaces needed
    settings.posting.level = logging.WARNING  # our own events say what happened; Kopf only warns
    selector = ",".join(f"{k}={v}" for k, v in sorted(MANAGED.items()))
    for child in CHILDREN:
        settings.watching.label_selectors[child] = selector
    settings.watching.server_timeout = 600
    settings.networking.request_timeout = 60


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    configure(settings)
    reconciler = Reconciler(kube.Kube(kube.load_client()))
    workers = int(os.environ.get("QWEN_OPERATOR_WORKERS", "4"))
    Runtime.queue = WorkQueue(reconciler.reconcile, workers=workers)
    Runtime.queue.start()
    host = os.environ.get("QWEN_OPERATOR_HTTP_HOST", "0.0.0.0")
    port = int(os.environ.get("QWEN_OPERATOR_HTTP_PORT", "8080"))
    Runtime.server = await metrics.start_server(host, port, healthy)
    log.info("metrics on http://%s:%d/metrics, liveness on /healthz", host, port)


def healthy() -> bool:
    return Runtime.queue is not None and Runtime.queue.alive()


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    if Runtime.server is not None:
        await Runtime.server.cleanup()
    if Runtime.queue is not None:
        Runtime.queue.stop()


@kopf.on.create(api.GROUP, api.VERSION, api.PLURAL)
async def created(namespace: str | None, name: str, **_: Any) -> None:
    """Created: Kopf records the handled spec in status.kopf.diffbase; we reconcile."""
    enqueue(namespace, name)


@kopf.on.update(api.GROUP, api.VERSION, api.PLURAL)
async def updated(namespace: str | None, name: str, **_: Any) -> None:
    """Spec (or labels, annotations) changed: reconcile."""
    enqueue(namespace, name)


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL)
async def resource_event(type: str, namespace: str | None, name: str, **_: Any) -> None:
    """Any event (start-up listing included): reconcile; a deleted resource leaves the metrics."""
    if type == "DELETED":
        metrics.PHASE_TRACKER.set((namespace or "", name), None)
        return
    enqueue(namespace, name)


@kopf.on.event("apps", "v1", "statefulsets", labels=MANAGED)
@kopf.on.event("v1", "pods", labels=MANAGED)
@kopf.on.event("v1", "services", labels=MANAGED)
@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=MANAGED)
async def child_event(namespace: str | None, labels: Mapping[str, str], **_: Any) -> None:
    """A child changed (or vanished): its owner is named by the instance label."""
    enqueue(namespace, labels.get(INSTANCE_LABEL))
