"""The operator's rendering of the samples, as the real-process tests start them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from e2e.devcluster.realvllm import checkpoint
from e2e.devcluster.realvllm.server import server_container
from qwen_operator import api
from qwen_operator.api import QwenThinkingDeployment
from qwen_operator.children import render
from qwen_runtime.argv import max_model_len

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "samples"
TEST_API_KEY = "test-api-key"
"""What every Secret the samples reference holds here (the kubelet would read the Secret)."""


def sample_docs() -> dict[str, dict[str, Any]]:
    """Every QwenThinkingDeployment in samples/*.yaml as written, by file stem (and index)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(SAMPLES.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
        ours = [d for d in docs if d.get("kind") == api.KIND]
        for i, doc in enumerate(ours):
            doc.setdefault("metadata", {}).setdefault("namespace", "default")
            found[path.stem + (f"-{i}" if len(ours) > 1 else "")] = doc
    return found


def samples() -> dict[str, QwenThinkingDeployment]:
    """The samples one server pod runs. Not the multi-node ones (parallelism.pipeline > 1): a
    replica is then vLLM processes on several nodes that LeaderWorkerSet starts together; their
    leader's and workers' argv are proven by vLLM's own parser (tests/tools/contract/test_vllm_cli.py),
    their groups by the real LeaderWorkerSet (e2e/test_multinode.py)."""
    parsed = {name: api.parse_resource(doc) for name, doc in sample_docs().items()}
    return {name: res for name, res in parsed.items() if res.spec.parallelism.pipeline == 1}


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


def secret(name: str, key: str) -> str:
    del name, key
    return TEST_API_KEY
