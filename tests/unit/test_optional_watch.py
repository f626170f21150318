"""An optional resource whose CRD goes away does not stop the operator; any other 404 does."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import kopf
import pytest
from kopf._cogs.aiokits import aiotoggles
from kopf._cogs.clients import errors, scanning, watching
from kopf._cogs.structs import references
from kopf._core.reactor import observation, queueing

from qwen_operator.process import handlers, optional_watch


def test_kopfs_watch_is_the_tolerant_one() -> None:
    assert {
        "servicemonitors",
        "prometheusrules",
        "scaledobjects",
        "inferencepools",
        "leaderworkersets",
    } == handlers.OPTIONAL_PLURALS
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
    listed = watching.Bookmark.LISTED  # each 404: nothing to list (Kopf's index readiness goes on)
    assert asyncio.run(_collect(monitors)) == [listed, listed, "event"] and calls["n"] == 3


def test_a_404_of_any_other_resource_is_still_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    original, _ = _flaky(1)
    monkeypatch.setattr(optional_watch, "_ORIGINAL", original)
    pods = kopf.Resource("", "v1", "pods", namespaced=True)
    with pytest.raises(errors.APINotFoundError):
        asyncio.run(_collect(pods))


# -- discovery lagging behind a CRD event ------------------------------------------------------

MONITORS = kopf.Resource(
    "monitoring.coreos.com", "v1", "servicemonitors", kind="ServiceMonitor", namespaced=True,
    verbs=["list", "watch", "get", "patch", "create"],
)  # fmt: skip


def _crd_event(kind: str, established: bool = True, plural: str = "servicemonitors") -> dict[str, Any]:
    condition = {"type": "Established", "status": "True" if established else "False"}
    return {
        "type": kind,
        "object": {
            "metadata": {"name": f"{plural}.monitoring.coreos.com"},
            "spec": {"group": "monitoring.coreos.com", "names": {"plural": plural},
                     "versions": [{"name": "v1", "served": True}]},
            "status": {"conditions": [condition]},
        },
    }  # fmt: skip


Answers = list[list[kopf.Resource]]


def _scan(event: dict[str, Any], discovery: Answers, insights: Any) -> Answers:
    """Run the wrapped scan over Kopf's own registry and insights, with discovery answering
    `discovery` in turn (the last answer repeats); returns the answers it took."""
    answers: Answers = []

    async def scan_resources(**_: Any) -> list[kopf.Resource]:
        answers.append(discovery[min(len(answers), len(discovery) - 1)])
        return answers[-1]

    async def run() -> None:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(scanning, "scan_resources", scan_resources)
            patch.setattr(optional_watch, "RESCAN_DELAYS", (0.0, 0.0, 0.0))
            await optional_watch.settled_scan(
                raw_event=event, insights=insights, registry=kopf.get_default_registry(),
                settings=kopf.OperatorSettings(),
            )  # fmt: skip

    asyncio.run(run())
    return answers


def test_kopfs_crd_scan_is_the_settled_one() -> None:
    assert observation.process_discovered_resource_event is optional_watch.settled_scan


def test_an_established_crd_is_watched_even_when_discovery_lists_it_late() -> None:
    insights = references.Insights()
    answers = _scan(_crd_event("MODIFIED"), [[], [], [MONITORS]], insights)
    assert len(answers) == 3 and MONITORS in insights.watched_resources


def test_a_deleted_crd_stops_its_watch_even_when_discovery_drops_it_late() -> None:
    insights = references.Insights(watched_resources={MONITORS})
    answers = _scan(_crd_event("DELETED"), [[MONITORS], []], insights)
    assert len(answers) == 2 and MONITORS not in insights.watched_resources


def test_discovery_is_asked_once_when_it_agrees_or_the_crd_is_not_served_or_not_optional() -> None:
    for event, discovery, watched in [
        (_crd_event("ADDED"), [MONITORS], True),
        (_crd_event("ADDED", established=False), [MONITORS], True),  # its Established event follows
        (_crd_event("ADDED", plural="alertmanagers"), [], False),
    ]:
        insights = references.Insights()
        assert len(_scan(event, [discovery], insights)) == 1
        assert (MONITORS in insights.watched_resources) == watched


def test_discovery_that_never_agrees_is_given_up_after_the_last_wait() -> None:
    answers = _scan(_crd_event("MODIFIED"), [[]], references.Insights())
    assert len(answers) == 1 + 3


# -- Kopf's index readiness, released by a watcher stopped before its listing ------------------


def test_kopfs_watchers_and_workers_are_the_releasing_ones() -> None:
    assert (queueing.watcher, queueing.worker) == (
        optional_watch.releasing_watcher,
        optional_watch.releasing_worker,
    )


@pytest.mark.parametrize("wrapper", ["releasing_watcher", "releasing_worker"])
def test_a_watcher_or_worker_stopped_before_its_listing_releases_the_readiness(
    monkeypatch: pytest.MonkeyPatch, wrapper: str
) -> None:
    """Kopf stops the watch of a CRD deleted before its first listing: the operator's index
    readiness (on when every share is dropped) must not stay off for ever."""

    async def never_lists(**_: Any) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(optional_watch, "_ORIGINAL_WATCHER", never_lists)
    monkeypatch.setattr(optional_watch, "_ORIGINAL_WORKER", never_lists)

    async def run() -> tuple[bool, bool]:
        readiness = aiotoggles.ToggleSet(all)
        share = await readiness.make_toggle(name="servicemonitors.v1.monitoring.coreos.com@None")
        task = asyncio.create_task(
            getattr(optional_watch, wrapper)(operator_indexed=readiness, resource_indexed=share)
        )
        await asyncio.sleep(0.01)
        before = readiness.is_on()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return before, readiness.is_on()

    assert asyncio.run(run()) == (False, True)
