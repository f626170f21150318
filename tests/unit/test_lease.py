"""Leader election on a Lease, driven step by step on a fake clock against an in-memory Lease
store that keeps resourceVersions the way the apiserver does (a stale update is a 409).

That it holds on a real apiserver, with two operator processes, is e2e/test_faults.py's."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from qwen_operator.process import lease
from qwen_operator.process.kube import ApiError

NS, NAME = "qwen-operator-system", "qwen-operator"
T = lease.Timings()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=self.now)


class Leases:
    """One namespace's Leases as the apiserver keeps them; `down` makes every request fail."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self._rv = itertools.count(1)
        self.down = False

    def _check(self, verb: str, holder: str = "") -> None:
        self.calls.append((verb, holder))
        if self.down:
            raise ApiError(0, "ConnectionRefusedError", "connection refused")

    def _store(self, body: Mapping[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(dict(body))
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        self.objects[obj["metadata"]["name"]] = obj
        return copy.deepcopy(obj)

    def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._check("list")
        found = self.objects.get(name)
        return copy.deepcopy(found) if found else None

    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self._check("create", body["spec"]["holderIdentity"])
        if body["metadata"]["name"] in self.objects:
            raise ApiError(409, "AlreadyExists", "leases already exists")
        return self._store(body)

    def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self._check("update", body["spec"]["holderIdentity"])
        current = self.objects.get(name)
        if current is None:
            raise ApiError(404, "NotFound", "not found")
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", "the object has been modified")
        return self._store(body)

    def watch_lease(
        self, namespace: str, name: str, resource_version: str | None, seconds: int
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        raise AssertionError("the tests deliver watch events with Elector.observe")

    def spec(self) -> dict[str, Any]:
        return dict(self.objects[NAME]["spec"])


def elector(store: Leases, clock: Clock, identity: str, changes: list[bool] | None = None) -> lease.Elector:
    log = changes if changes is not None else []
    return lease.Elector(
        store, lease.Config(NS, NAME, identity), log.append, T, monotonic=clock, wall=clock.wall
    )


def deliver(store: Leases, *electors: lease.Elector) -> None:
    """What the watch of each replica delivers: the Lease as it is now."""
    for e in electors:
        e.observe(copy.deepcopy(store.objects.get(NAME)))


def run_for(seconds: float, clock: Clock, store: Leases, *electors: lease.Elector) -> None:
    """Advance the clock in small ticks; each replica steps when due and sees every change."""
    due = dict.fromkeys(electors, clock.now)
    end = clock.now + seconds
    while clock.now < end:
        for e in electors:
            if clock.now >= due[e]:
                due[e] = clock.now + e.step()
                deliver(store, *electors)
        clock.now = round(clock.now + 0.25, 2)


def test_the_first_replica_creates_the_lease_and_renews_it_the_second_stands_by() -> None:
    store, clock, changes = Leases(), Clock(), []
    a, b = elector(store, clock, "pod-a", changes), elector(store, clock, "pod-b")
    run_for(0.5, clock, store, a)
    run_for(60, clock, store, a, b)
    assert a.leading() and not b.leading()
    assert changes == [True]
    assert store.spec()["holderIdentity"] == "pod-a" and store.spec()["leaseDurationSeconds"] == 15
    assert store.spec()["leaseTransitions"] == 0
    renewals = [c for c in store.calls if c == ("update", "pod-a")]
    assert 11 <= len(renewals) <= 13, len(renewals)  # one every renew period: the only periodic write
    assert not [c for c in store.calls if c[1] == "pod-b"]  # the follower wrote nothing
    assert [c for c in store.calls if c[0] == "list"] == [("list", "")]  # b learnt it from its watch


def test_a_killed_leader_is_fenced_then_replaced_after_the_lease_duration() -> None:
    store, clock = Leases(), Clock()
    a, b = elector(store, clock, "pod-a"), elector(store, clock, "pod-b")
    run_for(10, clock, store, a, b)
    assert a.leading()
    killed_at = clock.now  # a stops stepping: no renewal any more
    fenced_at = taken_at = None
    while taken_at is None:
        run_for(0.25, clock, store, b)
        if fenced_at is None and not a.leading():
            fenced_at = clock.now
        if b.leading():
            taken_at = clock.now
    assert fenced_at is not None and fenced_at <= killed_at + T.renew_deadline
    assert taken_at >= fenced_at + (T.lease_duration - T.renew_deadline) - T.renew_period
    assert taken_at <= killed_at + T.lease_duration + T.retry_period
    assert store.spec()["holderIdentity"] == "pod-b" and store.spec()["leaseTransitions"] == 1


def test_two_candidates_for_an_expired_lease_one_wins() -> None:
    store, clock = Leases(), Clock()
    old = elector(store, clock, "pod-old")
    run_for(1, clock, store, old)
    b, c = elector(store, clock, "pod-b"), elector(store, clock, "pod-c")
    deliver(store, b, c)
    clock.now += T.lease_duration + 1
    assert (b.step(), c.step()) == (T.renew_period, T.retry_period)  # c's update was stale: 409
    assert (b.leading(), c.leading()) == (True, False)
    assert store.spec()["holderIdentity"] == "pod-b"


def test_stopping_releases_the_lease_and_the_next_takes_it_at_once() -> None:
    store, clock = Leases(), Clock()
    a, b = elector(store, clock, "pod-a"), elector(store, clock, "pod-b")
    run_for(6, clock, store, a, b)
    a.stop()
    assert not a.leading() and store.spec()["holderIdentity"] == ""
    deliver(store, b)
    assert b.step() == T.renew_period and b.leading()


def test_a_restarted_container_takes_its_own_lease_back_at_once() -> None:
    store, clock = Leases(), Clock()
    run_for(6, clock, store, elector(store, clock, "pod-a"))
    again = elector(store, clock, "pod-a")  # the same pod name, a new process
    assert again.step() == T.renew_period and again.leading()
    assert store.spec()["leaseTransitions"] == 0


def test_an_apiserver_outage_longer_than_the_deadline_fences_then_resumes() -> None:
    store, clock, changes = Leases(), Clock(), []
    a = elector(store, clock, "pod-a", changes)
    run_for(6, clock, store, a)
    store.down = True
    run_for(T.renew_deadline + 2, clock, store, a)
    assert not a.leading() and changes == [True, False]
    store.down = False
    run_for(T.retry_period + 0.5, clock, store, a)  # the lease still names it: taken back at once
    assert a.leading() and changes == [True, False, True]


def test_a_lease_taken_by_another_stops_the_leader_at_once() -> None:
    store, clock, changes = Leases(), Clock(), []
    a = elector(store, clock, "pod-a", changes)
    run_for(2, clock, store, a)
    stale = copy.deepcopy(store.objects[NAME])
    taken = copy.deepcopy(stale)
    taken["spec"]["holderIdentity"] = "pod-x"
    store.replace_lease(NS, NAME, taken)  # an admin, or a replica with a clock gone wrong
    deliver(store, a)
    assert not a.leading() and changes == [True, False]
    a.observe(stale)  # a late, older event changes nothing
    assert a.holder() == "pod-x"


def test_config_comes_from_the_environment(tmp_path: Path) -> None:
    env = {"QWEN_OPERATOR_LEASE_NAMESPACE": "ops", "POD_NAME": "qwen-operator-7d9-abc"}
    assert lease.config_from_env(env, tmp_path / "none") == lease.Config(
        "ops", "qwen-operator", "qwen-operator-7d9-abc"
    )
    assert lease.config_from_env({}, tmp_path / "none") is None  # out of a cluster: no election
    namespace_file = tmp_path / "namespace"
    namespace_file.write_text("team-ops\n")
    found = lease.config_from_env({"QWEN_OPERATOR_LEASE_NAME": "mine"}, namespace_file)
    assert found is not None and (found.namespace, found.name) == ("team-ops", "mine")
    other = lease.config_from_env({"QWEN_OPERATOR_LEASE_NAME": "mine"}, namespace_file)
    assert other is not None and found.identity != other.identity  # no pod name: unique per process


@pytest.mark.parametrize("moment", [datetime(2026, 5, 1, 12, 0, 0, 5, tzinfo=UTC)])
def test_micro_time_is_what_the_apiserver_expects(moment: datetime) -> None:
    assert lease.micro_time(moment) == "2026-05-01T12:00:00.000005Z"
