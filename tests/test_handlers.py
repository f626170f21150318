"""Kopf wiring: GitOps-clean bookkeeping, server-side filters, and every event queues its owner."""

from __future__ import annotations

import asyncio

import kopf

from qwen_operator import handlers, metrics


def test_kopf_keeps_its_records_in_status_and_watches_only_our_children() -> None:
    settings = kopf.OperatorSettings()
    handlers.configure(settings)
    assert isinstance(settings.persistence.progress_storage, kopf.StatusProgressStorage)
    assert isinstance(settings.persistence.diffbase_storage, kopf.StatusDiffBaseStorage)
    assert settings.peering.standalone and settings.scanning.disabled
    for group, version, plural in handlers.CHILDREN:
        (selector,) = settings.watching.label_selectors.collect(
            kopf.Resource(group, version, plural, namespaced=True)
        )
        assert selector == "app.kubernetes.io/managed-by=qwen-operator,app.kubernetes.io/name=qwen-thinking"


def test_events_queue_the_owning_resource() -> None:
    queued: list[tuple[str, str]] = []

    class Queue:
        def add(self, key: tuple[str, str]) -> None:
            queued.append(key)

    handlers.Runtime.queue = Queue()  # type: ignore[assignment]
    try:
        labels = {"app.kubernetes.io/instance": "q", **handlers.MANAGED}
        asyncio.run(handlers.child_event(namespace="ns", labels=labels))
        asyncio.run(handlers.child_event(namespace="ns", labels={}))  # no owner: nothing to do
        asyncio.run(handlers.resource_event(type="MODIFIED", namespace="ns", name="r"))
    finally:
        handlers.Runtime.queue = None
    assert queued == [("ns", "q"), ("ns", "r")]


def test_a_deleted_resource_leaves_the_phase_gauge() -> None:
    metrics.PHASE_TRACKER.set(("ns", "gone"), "Ready")
    before = metrics.REGISTRY.get_sample_value("qwen_operator_resources", {"phase": "Ready"})
    asyncio.run(handlers.resource_event(type="DELETED", namespace="ns", name="gone"))
    after = metrics.REGISTRY.get_sample_value("qwen_operator_resources", {"phase": "Ready"})
    assert before is not None and after == before - 1
