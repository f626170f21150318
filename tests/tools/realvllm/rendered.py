"""The operator's rendering of the samples, as the real-process tests start them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from e2e.devcluster.realvllm.rendering import Rendered, context_of, kv_budget_gib, rendering
from qwen_operator import api
from qwen_operator.api import QwenThinkingDeployment

__all__ = ["Rendered", "context_of", "kv_budget_gib", "rendering", "sample_docs", "samples", "secret"]

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


def secret(name: str, key: str) -> str:
    del name, key
    return TEST_API_KEY
