"""vLLM 0.33's flags the operator manages (a spec may not repeat them, under any of the
spellings vLLM's parser accepts), and the parsers it registers."""

from __future__ import annotations

import re
from typing import Literal, get_args

__all__ = [
    "MANAGED_FLAGS",
    "MANAGED_FLAG_PATTERN",
    "REASONING_PARSERS",
    "TOOL_PARSERS",
    "KvCacheDtype",
    "ReasoningParser",
    "ToolParser",
]

ReasoningParser = Literal["deepseek_r1", "qwen3", "none"]
"""vLLM reasoning parsers that understand Qwen3's implicit `<think>`; `none` = raw output."""
ToolParser = Literal["hermes", "qwen3_xml", "qwen3_coder"]
KvCacheDtype = Literal["auto", "fp8"]
REASONING_PARSERS: tuple[str, ...] = get_args(ReasoningParser)
TOOL_PARSERS: tuple[str, ...] = get_args(ToolParser)

"""Pipeline stages (nodes) of one replica: the 94 layers of this model in at most 8 stages."""

MANAGED_FLAGS = (
    "--model",
    "--served-model-name",
    "--tensor-parallel-size",
    "-tp",
    "--max-model-len",
    "--reasoning-parser",
    "--enable-reasoning",
    "--gpu-memory-utilization",
    "--device-memory-utilization",
    "--kv-cache-dtype",
    "--override-generation-config",
    "--enable-auto-tool-choice",
    "--disable-auto-tool-choice",
    "--tool-call-parser",
    "--enable-expert-parallel",
    "--disable-expert-parallel",
    "-ep",
    "--pipeline-parallel-size",
    "-pp",
    "--nnodes",
    "-n",
    "--node-rank",
    "-r",
    "--master-addr",
    "--headless",
    "--api-key",
    "--download-dir",
    "--revision",
    "--host",
    "--port",
    "--shutdown-timeout",
    "--hf-token",
)
"""Flags the operator sets itself, with vLLM 0.33's aliases for them (from its own parser), and
`--hf-token`, whose value would be a credential in the pod spec (tokenSecretRef sets it).
`--shutdown-timeout` is disruption.drainSeconds: the pods' grace period is sized on it, so a
longer one in extraArgs would be cut by the kubelet's SIGKILL."""


def _prefixes(word: str) -> str:
    """A regex for every non-empty prefix of `word`: argparse accepts unique abbreviations."""
    assert re.fullmatch(r"[a-z-]+", word), word  # no regex metacharacters, no CEL escapes
    pattern = ""
    for char in reversed(word[1:]):
        pattern = f"({char}{pattern})?"
    return word[0] + pattern


MANAGED_FLAG_PATTERN = (
    "^("
    + "|".join(
        [f"--{_prefixes(f[2:])}" for f in MANAGED_FLAGS if f.startswith("--")]
        + [f for f in MANAGED_FLAGS if not f.startswith("--")]
    )
    + ")([= ].*)?$"
)
"""Matches an argument (with `_` read as `-`) that sets a managed flag: `--flag`, `--flag=v`,
`--flag v`, or an abbreviation such as `--max-model=1024`, which vLLM's parser accepts."""


def _is_managed(arg: str) -> bool:
    return re.match(MANAGED_FLAG_PATTERN, arg.replace("_", "-")) is not None
