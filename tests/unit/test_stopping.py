"""A server's stop: vLLM drains for disruption.drainSeconds, a preStop delay comes first, and
the grace period covers both, in the StatefulSet and in both LeaderWorkerSet templates; a
pipeline worker's preStop holds it until its leader has drained."""

from __future__ import annotations

from typing import Any

import pytest

from qwen_operator import api
from qwen_operator.api import defaults
from qwen_operator.api.vocabulary import LWS_KIND
from qwen_operator.children import render, stopping
from qwen_runtime import __main__ as entry
from qwen_runtime import leader as wait_leader
from qwen_runtime.argv import SHUTDOWN_TIMEOUT, shutdown_timeout
from qwen_runtime.integrity import DIGEST_VAR
from qwen_runtime.leader import SUBCOMMAND as WAIT_LEADER
from testkit.wrappers import parsed, resource_raw

PP2 = {"parallelism": {"tensor": 4, "pipeline": 2}}


def pod_specs(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every server pod template the resource renders, by where it sits."""
    children = {c["kind"]: c for c in render.render(parsed(spec))}
    if LWS_KIND in children:
        group = children[LWS_KIND]["spec"]["leaderWorkerTemplate"]
        return {role: group[f"{role}Template"]["spec"] for role in ("leader", "worker")}
    return {"statefulset": children["StatefulSet"]["spec"]["template"]["spec"]}


def server(pod: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in pod["containers"] if c["name"] == "server")
    return found


@pytest.mark.parametrize("shape", [{}, PP2], ids=["statefulset", "leaderworkerset"])
@pytest.mark.parametrize("drain", [None, 0, 120, defaults.MAX_DRAIN_SECONDS])
def test_every_server_drains_and_its_grace_period_covers_the_hook_and_the_drain(
    shape: dict[str, Any], drain: int | None
) -> None:
    spec = {**shape, **({} if drain is None else {"disruption": {"drainSeconds": drain}})}
    seconds = defaults.DRAIN_SECONDS if drain is None else drain
    for where, pod in pod_specs(spec).items():
        container = server(pod)
        argv = container["command"]
        assert argv.count(SHUTDOWN_TIMEOUT) == 1, where
        assert shutdown_timeout(argv) == seconds, where
        if where == "worker":
            continue  # it waits for its leader: below
        # the leader sleeps as a single-node server does: it must not wait for itself
        assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": stopping.PRE_STOP_SECONDS}}}
        grace = pod["terminationGracePeriodSeconds"]
        assert grace == stopping.PRE_STOP_SECONDS + seconds + stopping.TEARDOWN_SECONDS, where


def _after(argv: list[str], flag: str) -> str:
    assert argv.count(flag) == 1, argv
    return argv[argv.index(flag) + 1]


@pytest.mark.parametrize("drain", [None, 0, 120, defaults.MAX_DRAIN_SECONDS])
def test_a_pipeline_worker_stops_only_once_its_leader_has_drained(drain: int | None) -> None:
    """The group stops all at once, the leader drains through its workers' stages, and a
    headless vLLM worker exits at its SIGTERM: so the worker's preStop waits (an exec hook) for
    the leader's API port to close, at most the leader's whole grace period, and its own grace
    period covers that wait and its own teardown."""
    spec = {**PP2, **({} if drain is None else {"disruption": {"drainSeconds": drain}})}
    pods = pod_specs(spec)
    leader, worker = pods["leader"], pods["worker"]
    hook = server(worker)["lifecycle"]["preStop"]
    assert set(hook) == {"exec"}
    command = hook["exec"]["command"]
    assert command[:4] == ["python3", "-m", "qwen_runtime", WAIT_LEADER]
    (http,) = [p for p in server(leader)["ports"] if p["name"] == "http"]
    assert int(_after(command, "--port")) == http["containerPort"]  # the port vLLM closes last
    leader_grace = leader["terminationGracePeriodSeconds"]
    assert int(_after(command, "--seconds")) == leader_grace
    assert leader_grace == stopping.grace_seconds(parsed(spec).spec)
    assert worker["terminationGracePeriodSeconds"] == leader_grace + stopping.TEARDOWN_SECONDS
    assert "--address" not in command  # the hook reads LWS_LEADER_ADDRESS: no $(VAR) in a hook
    assert "$(" not in " ".join(command)


def test_the_workers_hook_is_the_launchers_own_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rendered argv parses with the hook's own parser (a flag the runtime lost would fail)."""
    pods = pod_specs(PP2)
    command = server(pods["worker"])["lifecycle"]["preStop"]["exec"]["command"]
    parsed_args: dict[str, Any] = {}

    def capture(host: str, port: int, seconds: float) -> bool:
        parsed_args.update(host=host, port=port, seconds=seconds)
        return True

    monkeypatch.delenv(DIGEST_VAR, raising=False)  # the sources are checked in test_integrity
    monkeypatch.setenv(wait_leader.ADDRESS_VAR, "q-0.q-0.ns")
    monkeypatch.setattr(wait_leader, "wait", capture)
    assert entry.main(command[3:]) == 0
    assert parsed_args == {"host": "q-0.q-0.ns", "port": 8000, "seconds": 1245.0}


def test_the_delay_and_the_margin_are_what_the_docs_say() -> None:
    """10 to 15 s for the routers, 30 s for vLLM's teardown: the default grace is 1245 s, a
    pipeline worker's 1275 s (its leader's, then its own teardown)."""
    assert stopping.PRE_STOP_SECONDS == 15
    assert stopping.TEARDOWN_SECONDS == 30
    assert stopping.grace_seconds(parsed({}).spec) == 1245
    assert stopping.leader_wait_seconds(parsed(PP2).spec) == 1245
    assert stopping.worker_grace_seconds(parsed(PP2).spec) == 1275


def test_the_default_drain_lets_the_default_answer_finish_at_an_ordinary_speed() -> None:
    """32768 tokens at 30 tokens/s: 1092 s; the default is that, rounded up to 20 minutes."""
    answer = api.QwenThinkingDeploymentSpec().sampling.max_tokens
    assert answer == defaults.DEFAULT_ANSWER_TOKENS == 32768
    needed = answer / defaults.DECODE_TOKENS_PER_SECOND
    assert needed == pytest.approx(1092.3, abs=0.1)
    assert needed <= defaults.DRAIN_SECONDS == 1200 < needed + 120
    assert parsed({}).spec.disruption.drain_seconds == defaults.DRAIN_SECONDS


def test_the_bound_holds_the_longest_answer_the_api_allows() -> None:
    longest = defaults.MAX_CONTEXT / defaults.DECODE_TOKENS_PER_SECOND
    assert longest <= defaults.MAX_DRAIN_SECONDS


@pytest.mark.parametrize("drain", [-1, defaults.MAX_DRAIN_SECONDS + 1, "20m"])
def test_a_drain_out_of_bounds_is_refused(drain: object) -> None:
    with pytest.raises(api.InvalidResource):
        api.parse_resource(resource_raw({"disruption": {"drainSeconds": drain}}))


SPELLINGS = [
    ["--shutdown-timeout", "60"],
    ["--shutdown-timeout=60"],
    ["--shutdown_timeout=60"],
    ["--shutdown-time=60"],
]
"""vLLM's parser takes each (`_` for `-`, a unique abbreviation)."""


@pytest.mark.parametrize("args", SPELLINGS)
def test_extra_args_cannot_set_the_drain(args: list[str]) -> None:
    """The grace period is sized on drainSeconds: a longer drain in extraArgs would be cut by
    the kubelet's SIGKILL, a shorter one would make the field lie."""
    with pytest.raises(api.InvalidResource):
        api.parse_resource(resource_raw({"runtime": {"extraArgs": args}}))
