"""What NetworkPolicies admit, as cyclonus's policy engine reads them.

The local control plane stores NetworkPolicies but runs no CNI plugin that enforces them, so a
policy applied there proves only that the apiserver accepts it. What it means (which pod may
open which port of which other pod) comes from `netpol`, cyclonus's evaluator of the
NetworkPolicy API (github.com/mattfenwick/cyclonus/pkg/matcher, built by `make tools`, see
toolchain/netpol/main.go): the engine cyclonus checks CNI plugins' enforcement against.

`admitted` takes the policies and many connections at once (one process) and answers one
boolean per connection.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from e2e.devcluster.toolchain import tools


@dataclass(frozen=True)
class Pod:
    """A pod as a policy sees it: its namespace, its labels and its namespace's labels (the
    evaluator adds kubernetes.io/metadata.name, which the apiserver sets on every namespace)."""

    namespace: str
    labels: Mapping[str, str]
    namespace_labels: Mapping[str, str] = field(default_factory=dict)

    def peer(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "podLabels": dict(self.labels),
            "namespaceLabels": dict(self.namespace_labels),
        }


@dataclass(frozen=True)
class Outside:
    """A client outside the cluster (a node or a load balancer's address): no selector names it."""

    ip: str

    def peer(self) -> dict[str, Any]:
        return {"ip": self.ip}


@dataclass(frozen=True)
class Connection:
    """A TCP (or UDP, SCTP) connection from `source` to `port` of `destination`. `port_name` is
    the container port's name, for a policy that names its port rather than numbering it."""

    source: Pod | Outside
    destination: Pod
    port: int
    port_name: str = ""
    protocol: str = "TCP"

    def case(self) -> dict[str, Any]:
        return {
            "source": self.source.peer(),
            "destination": self.destination.peer(),
            "port": self.port,
            "portName": self.port_name,
            "protocol": self.protocol,
        }


def admitted(policies: Iterable[Mapping[str, Any]], connections: Sequence[Connection]) -> list[bool]:
    """For each connection, whether the policies let it through (ingress at the destination and
    egress at the source), in order. Every policy must name its namespace."""
    stdin = json.dumps({"policies": [dict(p) for p in policies], "cases": [c.case() for c in connections]})
    cmd = [str(tools.require("netpol"))]
    done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60, check=False)
    verdicts = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or len(verdicts) != len(connections):
        raise AssertionError(
            f"netpol exited {done.returncode} on {len(connections)} connection(s) with "
            f"{len(verdicts)} verdict(s): {done.stderr.strip()}"
        )
    return [bool(v["allowed"]) for v in verdicts]
