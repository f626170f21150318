"""Who may reach the servers (spec.network): the NetworkPolicies' names and the pods each guards.

One policy named after the resource selects every server pod and opens the API port to the
namespace and to the peers of spec.network.allowFrom, nothing else. With parallelism.pipeline
above 1 a replica is a LeaderWorkerSet group whose pods talk on ports they pick at start
(torch.distributed's rendezvous, ZMQ, NCCL): no rule can list them, so every port is open, but
only within the group. A NetworkPolicy cannot relate a source's label value (its group index) to
the destination's, so the groups are spelled out: one policy per group index, whose pods reach
each other on every port and whom no one else reaches on those ports (not another group of the
same resource).

The set follows spec.replicas, which the scale subresource (kubectl scale, an autoscaler)
changes: the next reconciliation renders the new set in the same pass as the LeaderWorkerSet,
and the policies of groups no longer rendered are pruned (NetworkPolicy is a pruned kind).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qwen_operator.api.vocabulary import group_labels

if TYPE_CHECKING:
    from qwen_operator.api.resource import QwenThinkingDeployment

GROUP_INFIX = "-group-"


def group_policy_name(name: str, index: int) -> str:
    """`<name>-group-<index>`: at most 63 characters (a name has at most 52, spec.replicas is at
    most 1024, so an index has at most 4 digits), a DNS label like the resource's own name."""
    return f"{name}{GROUP_INFIX}{index}"


def groups(res: QwenThinkingDeployment) -> tuple[dict[str, Any], ...]:
    """Each group's policy: its name and the labels of its pods, for the group indices 0 to
    spec.replicas - 1. Those are all the indices the LeaderWorkerSet creates: it rolls out with
    maxSurge 0 (children/templates/leaderworkerset.yaml.j2), so no surge group runs beyond them."""
    name = res.metadata.name
    indices = range(res.spec.replicas)
    return tuple({"name": group_policy_name(name, i), "selector": group_labels(name, i)} for i in indices)
