"""A server's stop: vLLM drains for disruption.drainSeconds, a preStop delay comes first, and
the grace period covers both, in the StatefulSet and in both LeaderWorkerSet templates."""

from __future__ import annotations

from typing import Any

import pytest

from qwen_operator import api
from qwen_operator.api import defaults
from qwen_operator.api.vocabulary import LWS_KIND
from qwen_operator.children import render, stopping
from qwen_runtime.argv import SHUTDOWN_TIMEOUT, shutdown_timeout
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
        assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": stopping.PRE_STOP_SECONDS}}}
        grace = pod["terminationGracePeriodSeconds"]
        assert grace == stopping.PRE_STOP_SECONDS + seconds + stopping.TEARDOWN_SECONDS, where


def test_the_delay_and_the_margin_are_what_the_docs_say() -> None:
    """10 to 15 s for the routers, 30 s for vLLM's teardown: the default grace is 1245 s."""
    assert stopping.PRE_STOP_SECONDS == 15
    assert stopping.TEARDOWN_SECONDS == 30
    assert stopping.grace_seconds(parsed({}).spec) == 1245


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
