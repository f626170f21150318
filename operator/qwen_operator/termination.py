"""What a crashed server container reported: the launcher's JSON line, as the kubelet keeps it.

The runtime's launcher writes one JSON object to the termination log when vLLM fails
(schema in `qwen_runtime.termination`); the kubelet copies it into
`containerStatuses[].lastState.terminated.message`. With `FallbackToLogsOnError` a crash
that never reached the launcher leaves the log's tail there instead, so parsing is lenient:
the last line that is a JSON object with a string `reason` wins, anything else is no report.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

SERVER = "server"
"""The container that runs vLLM under the launcher (see templates/statefulset.yaml.j2)."""
LAUNCHER_REASONS = (
    "KVCacheInsufficient", "CudaOOM", "InsufficientFreeMemory", "EngineStartTimeout", "InvalidArguments",
    "Unknown",
)  # fmt: skip
"""What the launcher may report (qwen_runtime.classify.REASONS)."""
MEMORY_REASONS = ("KVCacheInsufficient", "CudaOOM", "InsufficientFreeMemory", "OOMKilled")
"""Failures a shorter context can cure: the launcher's three, and the kubelet's OOMKilled."""


def report(terminated: Mapping[str, Any]) -> dict[str, Any] | None:
    """The launcher's record in a `terminated` container state, or None."""
    message = str(terminated.get("message") or "")
    for line in reversed(message.strip().splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("reason"), str):
            return record
    return None


def reason(terminated: Mapping[str, Any]) -> str:
    """Why the container ended: the kubelet's OOMKilled first, else the launcher's reason."""
    if terminated.get("reason") == "OOMKilled":
        return "OOMKilled"
    record = report(terminated)
    return str(record["reason"]) if record else str(terminated.get("reason") or "Error")


def server_status(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The server container's status in a pod, once the kubelet reported one."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == SERVER:
            return dict(cs)
    return None


def _as_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def context_of(pod: Mapping[str, Any]) -> int | None:
    """The `--max-model-len` the pod's server runs with (from its spec, which is fixed per pod)."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") != SERVER:
            continue
        argv = [str(a) for a in [*(container.get("command") or []), *(container.get("args") or [])]]
        for i, arg in enumerate(argv):
            if arg.startswith("--max-model-len="):
                value = arg.split("=", 1)[1]
            elif arg == "--max-model-len" and i + 1 < len(argv):
                value = argv[i + 1]
            else:
                continue
            return int(value) if value.isdigit() else None
    return None


def estimate(record: Mapping[str, Any] | None) -> int | None:
    """vLLM's estimate of the largest context that fits, when it printed one."""
    return _as_int((record or {}).get("estimatedMaxModelLen"))


def reported_context(record: Mapping[str, Any] | None) -> int | None:
    return _as_int((record or {}).get("maxModelLen"))
