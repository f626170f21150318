"""An optional resource whose CRD goes away does not stop the operator; any other 404 does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import kopf
import pytest
from kopf._cogs.clients import errors, watching

from qwen_operator import handlers, optional_watch


def test_kopfs_watch_is_the_tolerant_one() -> None:
    assert {"servicemonitors", "scaledobjects", "inferencepools"} == handlers.OPTIONAL_PLURALS
    assert watching.infinite_watch is optional_watch.tolerant_watch


def _flaky(failures: int) -> Any:
    calls = {"n": 0}

    async def original(*, resource: Any, **_: Any) -> AsyncIterator[str]:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise errors.APINotFoundError("404 page not found", status=404, headers={})
        yield "event"

    return original, calls


async def _collect(resource: kopf.Resource) -> list[str]:
    return [e async for e in optional_watch.tolerant_watch(resource=resource, settings=None, namespace=None)]


def test_a_404_of_an_optional_resource_waits_and_tries_again(monkeypatch: pytest.MonkeyPatch) -> None:
    original, calls = _flaky(2)
    monkeypatch.setattr(optional_watch, "_ORIGINAL", original)
    monkeypatch.setattr(optional_watch, "RETRY_SECONDS", 0.01)
    monitors = kopf.Resource("monitoring.coreos.com", "v1", "servicemonitors", namespaced=True)
    assert asyncio.run(_collect(monitors)) == ["event"] and calls["n"] == 3


def test_a_404_of_any_other_resource_is_still_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    original, _ = _flaky(1)
    monkeypatch.setattr(optional_watch, "_ORIGINAL", original)
    pods = kopf.Resource("", "v1", "pods", namespaced=True)
    with pytest.raises(errors.APINotFoundError):
        asyncio.run(_collect(pods))
