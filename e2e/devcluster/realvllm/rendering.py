"""The operator's rendering of a resource, as the real-process tests and benchmarks start it: the
server pod as its StatefulSet carries it, with what its volumes name."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from e2e.devcluster.realvllm import checkpoint
from e2e.devcluster.realvllm.server import server_container
from qwen_operator.api import QwenThinkingDeployment
from qwen_operator.children import render
from qwen_runtime.argv import max_model_len


@dataclass(frozen=True)
class Rendered:
    """What the operator renders for a resource that a server pod needs: the pod template's
    spec, and the ConfigMaps its volumes may name."""

    pod_spec: dict[str, Any]
    configmaps: dict[str, dict[str, str]]
    claim_templates: tuple[str, ...] = ()
    """The StatefulSet's volume claim templates: each pod's claims of its own."""

    @property
    def container(self) -> dict[str, Any]:
        return server_container(self.pod_spec)

    def configmap(self, name: str) -> dict[str, str]:
        return self.configmaps[name]


def rendering(resource: QwenThinkingDeployment) -> Rendered:
    children = render.render(resource)
    sts = next(c for c in children if c["kind"] == "StatefulSet")
    maps = {c["metadata"]["name"]: c.get("data") or {} for c in children if c["kind"] == "ConfigMap"}
    claims = tuple(t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates") or [])
    return Rendered(sts["spec"]["template"]["spec"], maps, claims)


def context_of(container: dict[str, Any]) -> int:
    context = max_model_len(list(container["command"]))
    assert context is not None, "no --max-model-len in the rendered command"
    return context


def kv_budget_gib(container: dict[str, Any]) -> int:
    """A CPU KV cache budget that holds one request of the rendered context, plus 1 GiB."""
    per_token = checkpoint.KV_BYTES_PER_TOKEN // (2 if "fp8" in container["command"] else 1)
    return math.ceil(context_of(container) * per_token / 2**30) + 1
