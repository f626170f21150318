"""Watching a resource whose CRD may go away (the Prometheus Operator's ServiceMonitor, KEDA's
ScaledObject, the Gateway API Inference Extension's InferencePool).

Kopf watches every resource a handler names once its CRD is served, and stops the watch when
the CRD's deletion reaches it. Between the two, a watch request can meet the 404 of an API
that is no longer served, and Kopf treats any watch error as fatal for the whole operator:
uninstalling the Prometheus Operator while the operator starts would stop it. For the
optional resources only, a 404 means "not served right now": wait, and try again until Kopf
stops the watch or the CRD comes back.

Kopf decides what to watch from API discovery, read once per CRD event. Discovery follows a CRD
asynchronously: the apiserver lists a new CRD's resource only after it is Established, and
drops a deleted one a moment after. A scan that loses that race leaves an installed
ServiceMonitor CRD unwatched (hand edits are never reverted) until the next event of that CRD,
which may never come. So, for the optional CRDs, the scan is repeated after short waits until
discovery agrees with the CRD the event carried.

Kopf holds back the first event of every new object, of every kind, until each watched kind
has been listed once (its index readiness). A watch that Kopf stops before its listing (a CRD
deleted seconds after it was installed) never released its share of that readiness, and from
then on no new ServiceMonitor, PrometheusRule, ... was ever handled. Kopf's watcher and its
per-object worker are wrapped to release their share however they end.

Kopf is pinned to 1.45.x, whose `infinite_watch`, `process_discovered_resource_event`,
`watcher` and `worker` this wraps; tests/unit/test_optional_watch.py checks both that and the
behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from kopf._cogs.clients import errors, watching
from kopf._core.reactor import observation, queueing

from qwen_operator.children import registry
from qwen_operator.reconcile.snapshot import crd_from

log = logging.getLogger("qwen_operator.process.optional_watch")
OPTIONAL_PLURALS = frozenset(c.plural for c in registry.OPTIONAL_KINDS)
"""Resources whose API may come and go while the operator runs."""
RETRY_SECONDS = 5.0
RESCAN_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)
"""Waits before each repeated discovery scan after an optional CRD's event (15.5 s in all)."""
_ORIGINAL = watching.infinite_watch
_ORIGINAL_SCAN = observation.process_discovered_resource_event
_ORIGINAL_WATCHER = queueing.watcher
_ORIGINAL_WORKER = queueing.worker


async def tolerant_watch(*, resource: Any, **kwargs: Any) -> AsyncIterator[Any]:
    """Kopf's infinite watch; for an optional resource, a 404 waits instead of failing.

    A 404 also says the listing is over (there is nothing of a kind that is not served): Kopf
    holds back every object's first event, of every kind, until each watched kind has been
    listed once, so a watch started on a CRD that has just gone would otherwise stall the
    handling of objects that appear later (a new ServiceMonitor's edits were never seen)."""
    while True:
        try:
            async for event in _ORIGINAL(resource=resource, **kwargs):
                yield event
            return
        except errors.APINotFoundError:
            if getattr(resource, "plural", None) not in OPTIONAL_PLURALS:
                raise
            log.info("%s is not served now (its CRD went away); retrying in %.0f s", resource, RETRY_SECONDS)
            yield watching.Bookmark.LISTED
            await asyncio.sleep(RETRY_SECONDS)


def expected(raw_event: Any) -> tuple[str, str, bool] | None:
    """(group, plural, served) that discovery should show after this CRD event: gone once it is
    deleted, served once it is Established. None for any other CRD or state: not optional, not
    Established yet (that event follows), or terminating (served until it is gone)."""
    kind, crd = raw_event.get("type"), raw_event.get("object") or {}
    spec = crd.get("spec") or {}
    plural = str((spec.get("names") or {}).get("plural") or "")
    if kind is None or plural not in OPTIONAL_PLURALS:
        return None
    if kind == "DELETED":
        return str(spec.get("group") or ""), plural, False
    if (crd.get("metadata") or {}).get("deletionTimestamp") or not crd_from(crd).served:
        return None
    return str(spec.get("group") or ""), plural, True


def watched(insights: Any, group: str, plural: str) -> bool:
    """Whether Kopf watches (or is about to watch) that resource now."""
    return any(r.group == group and r.plural == plural for r in insights.watched_resources)


async def settled_scan(*, raw_event: Any, insights: Any, **kwargs: Any) -> None:
    """Kopf's scan of discovery after a CRD event; for an optional CRD, scanned again after
    short waits until what Kopf watches agrees with the CRD."""
    await _ORIGINAL_SCAN(raw_event=raw_event, insights=insights, **kwargs)
    want = expected(raw_event)
    if want is None:
        return
    group, plural, served = want
    for delay in RESCAN_DELAYS:
        if watched(insights, group, plural) == served:
            return
        log.info("discovery does not show %s.%s as %s yet; scanning again in %.1f s",
                 plural, group, "served" if served else "gone", delay)  # fmt: skip
        await asyncio.sleep(delay)
        await _ORIGINAL_SCAN(raw_event=raw_event, insights=insights, **kwargs)
    if watched(insights, group, plural) != served:
        log.warning(
            "discovery still disagrees with the CRD of %s.%s; its next event scans again", plural, group
        )


async def _release(operator_indexed: Any, resource_indexed: Any) -> None:
    """Drop a share of Kopf's index readiness (idempotent), even while being cancelled."""
    if operator_indexed is not None and resource_indexed is not None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(operator_indexed.drop_toggle(resource_indexed))


async def releasing_watcher(
    *, operator_indexed: Any = None, resource_indexed: Any = None, **kwargs: Any
) -> None:
    """Kopf's watcher of one kind; its share of the index readiness is released when it ends."""
    try:
        await _ORIGINAL_WATCHER(
            operator_indexed=operator_indexed, resource_indexed=resource_indexed, **kwargs
        )
    finally:
        await _release(operator_indexed, resource_indexed)


async def releasing_worker(
    *, operator_indexed: Any = None, resource_indexed: Any = None, **kwargs: Any
) -> None:
    """Kopf's worker of one object; its share of the index readiness is released when it ends."""
    try:
        await _ORIGINAL_WORKER(operator_indexed=operator_indexed, resource_indexed=resource_indexed, **kwargs)
    finally:
        await _release(operator_indexed, resource_indexed)


def install() -> None:
    """Route Kopf's watches through `tolerant_watch`, its CRD scans through `settled_scan`, its
    watchers and workers through the releasing ones (idempotent)."""
    watching.infinite_watch = tolerant_watch
    observation.process_discovered_resource_event = settled_scan
    queueing.watcher = releasing_watcher
    queueing.worker = releasing_worker
