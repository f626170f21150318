"""Watching a resource whose CRD may go away (the Prometheus Operator's ServiceMonitor, KEDA's
ScaledObject, the Gateway API Inference Extension's InferencePool).

Kopf watches every resource a handler names once its CRD is served, and stops the watch when
the CRD's deletion reaches it. Between the two, a watch request can meet the 404 of an API
that is no longer served, and Kopf treats any watch error as fatal for the whole operator:
uninstalling the Prometheus Operator while the operator starts would stop it. For the
optional resources only, a 404 means "not served right now": wait, and try again until Kopf
stops the watch or the CRD comes back. Kopf is pinned to 1.45.x, whose `infinite_watch` this
wraps; tests/test_optional_watch.py checks both that and the behaviour.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from kopf._cogs.clients import errors, watching

log = logging.getLogger("qwen_operator.optional_watch")
OPTIONAL_PLURALS = frozenset({"servicemonitors", "scaledobjects", "inferencepools"})
"""Resources whose API may come and go while the operator runs."""
RETRY_SECONDS = 5.0
_ORIGINAL = watching.infinite_watch


async def tolerant_watch(*, resource: Any, **kwargs: Any) -> AsyncIterator[Any]:
    """Kopf's infinite watch; for an optional resource, a 404 waits instead of failing."""
    while True:
        try:
            async for event in _ORIGINAL(resource=resource, **kwargs):
                yield event
            return
        except errors.APINotFoundError:
            if getattr(resource, "plural", None) not in OPTIONAL_PLURALS:
                raise
            log.info("%s is not served now (its CRD went away); retrying in %.0f s", resource, RETRY_SECONDS)
            await asyncio.sleep(RETRY_SECONDS)


def install() -> None:
    """Route Kopf's watches through `tolerant_watch` (idempotent)."""
    watching.infinite_watch = tolerant_watch
