"""How a server pod stops without cutting the answers it streams: the preStop delay, vLLM's
drain, and the grace period that covers both.

Why: a thinking answer streams for minutes (32768 tokens by default), and vLLM 0.33 aborts
every unfinished request on SIGTERM unless `--shutdown-timeout` is set (its default is 0).
Every rollout, scale-down, cure and node drain stops servers. The kubelet's stop is: run the
preStop hook, then SIGTERM to PID 1 (the launcher, which forwards it once to vLLM), then
SIGKILL when `terminationGracePeriodSeconds`, counted from the start of the stop (the hook
included), runs out. So the pod gets:

* a preStop `sleep` (no command in the container, allowed under Pod Security "restricted"):
  the pod is already out of its Service's EndpointSlices (not ready once it is terminating), and
  for these seconds vLLM still serves what kube-proxy, the InferencePool's endpoint picker and
  the gateways route to it until they have seen that;
* `--shutdown-timeout` = `disruption.drainSeconds` (server_argv): after SIGTERM vLLM refuses new
  requests, finishes those in flight, and exits when the last one ends, at most that long;
* a grace period of the three together plus a margin for vLLM's teardown, so the kubelet's
  SIGKILL never lands before vLLM's own deadline.

A pipeline group (LeaderWorkerSet, `parallelism.pipeline` > 1) stops all its pods at once: the
leader drains as above, but it drains through its workers (the other pipeline stages), and a
headless vLLM worker exits at its SIGTERM. So a worker's preStop is not the sleep but
`python3 -m qwen_runtime wait-leader` (an `exec` hook, also allowed under "restricted"), which
returns once the leader's API port no longer accepts connections (vLLM closes it after the
engine has stopped), at the latest after the leader's whole grace period; only then does the
worker get its SIGTERM. Its own grace period is that wait plus its own teardown. The leader
keeps the plain sleep: it must not wait for itself.
"""

from __future__ import annotations

from typing import Any

from qwen_operator.api import QwenThinkingDeploymentSpec
from qwen_runtime.leader import SUBCOMMAND as WAIT_LEADER

__all__ = [
    "PRE_STOP_SECONDS",
    "TEARDOWN_SECONDS",
    "grace_seconds",
    "leader_wait_seconds",
    "lifecycle",
    "worker_grace_seconds",
    "worker_lifecycle",
]

PRE_STOP_SECONDS = 15
"""Until the pod's removal has reached every router: the EndpointSlice controller drops a
terminating pod at once, kube-proxy on each node and the endpoint picker (a watch) follow in
about a second, gateways and external load balancers that poll take several; 15 s is the
usual preStop delay for them."""
TEARDOWN_SECONDS = 30
"""After the drain, vLLM's own exit: the engine and worker processes stop and free the memory
(vLLM gives its workers 5 s, then SIGTERM, 4 s, then SIGKILL; its process manager SIGKILLs an
engine still busy when --shutdown-timeout ends), then the API server closes. Measured on the
CPU build (tests/tools/realvllm/test_drain.py): 19-21 s from the last token to the exit on
two busy cores. A drain that used its whole time still ends in vLLM's exit, not the kubelet's
SIGKILL."""


def grace_seconds(spec: QwenThinkingDeploymentSpec) -> int:
    """The pods' terminationGracePeriodSeconds: the preStop delay, the whole drain, the teardown."""
    return PRE_STOP_SECONDS + spec.disruption.drain_seconds + TEARDOWN_SECONDS


def lifecycle() -> dict[str, Any]:
    """The server container's lifecycle: SIGTERM only once the routers have let the pod go."""
    return {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}}


def leader_wait_seconds(spec: QwenThinkingDeploymentSpec) -> int:
    """The longest a pipeline worker's preStop waits for its leader: the leader's grace period
    (its preStop, its drain, its teardown), by whose end the kubelet has killed it anyway.

    The worker's stop may start a little after the leader's (LeaderWorkerSet deletes the leader,
    the garbage collector then the workers) or a little before (a worker deleted first: LWS
    deletes its leader as soon as it sees that); either way the leader's exit, which ends the
    wait, comes within its grace period of its own stop, and the wait is a bound, not a delay."""
    return grace_seconds(spec)


def worker_grace_seconds(spec: QwenThinkingDeploymentSpec) -> int:
    """A pipeline worker's terminationGracePeriodSeconds: the wait for the leader (which the
    kubelet counts in it), then the worker's own teardown after its SIGTERM."""
    return leader_wait_seconds(spec) + TEARDOWN_SECONDS


def worker_lifecycle(spec: QwenThinkingDeploymentSpec, port: int) -> dict[str, Any]:
    """A pipeline worker's lifecycle: SIGTERM only once its leader has drained and exited (the
    leader's API `port` closed), so the leader's drain keeps its pipeline stages. The address
    is the container's LWS_LEADER_ADDRESS, read by the hook: the kubelet expands no `$(VAR)` in
    a hook's command."""
    wait = ["python3", "-m", "qwen_runtime", WAIT_LEADER]
    wait += ["--port", str(port), "--seconds", str(leader_wait_seconds(spec))]
    return {"preStop": {"exec": {"command": wait}}}
