"""The termination record: the one JSON line the launcher leaves when vLLM fails.

The launcher writes it (``qwen_runtime.termination``) to the container's
``terminationMessagePath`` (default ``/dev/termination-log``, at most 4096
bytes) only when the child fails (non-zero exit or death by a signal); the
kubelet copies it into
``status.containerStatuses[].lastState.terminated.message``, where the
operator reads it back with ``parse``. This module is the schema both sides
share: standard library only, so the operator imports it as it is.

Schema (keys camelCase, one JSON object, ASCII, at most 4096 bytes):

``reason`` (always)
    A ``Reason``: ``KVCacheInsufficient`` | ``CudaOOM`` |
    ``InsufficientFreeMemory`` | ``EngineStartTimeout`` | ``InvalidArguments``
    | ``LauncherMismatch`` | ``Unknown``.
``exitCode`` (always)
    The launcher's own exit code: the child's, or 128 + signal number.
``message`` (always, may be empty)
    The vLLM line that decided the reason, log prefix removed, at most 1024
    characters; for ``Unknown`` the last meaningful error line, prefixed with
    ``killed by SIGKILL; last error:`` when a signal nobody forwarded killed
    the child (typically the kernel's OOM killer).
``signal`` (when the child died of a signal)
    e.g. ``"SIGKILL"``.
``gpuMemoryUtilization`` (whenever the command line has one)
    The run's own ``--gpu-memory-utilization``: the pod template's, or the replica's own setting
    (``qwen_runtime.replica``); for ``InsufficientFreeMemory``, vLLM's figure.
``receivedSignal`` (when the launcher was asked to stop and forwarded it)
    e.g. ``"SIGTERM"``: the failure followed a stop request (probe, deletion).
``KVCacheInsufficient``
    ``maxModelLen`` (int; from the message, or from ``--max-model-len`` for
    "No available memory for the cache blocks"), ``neededGiB``,
    ``availableGiB`` (floats, 0.0 when vLLM had no memory at all),
    ``estimatedMaxModelLen`` (int, only when vLLM printed an estimate).
``CudaOOM``
    ``phase`` (a ``CudaPhase``) when known; ``triedToAllocateGiB`` when torch
    printed it.
``InsufficientFreeMemory``
    ``device``, ``freeGiB``, ``totalGiB``, ``requestedGiB``.
``EngineStartTimeout``
    ``timeoutSeconds`` (vLLM's ``VLLM_ENGINE_READY_TIMEOUT_S``, see
    ``qwen_runtime.engine``), ``phase`` when known.
``LauncherMismatch``
    ``expectedDigest`` (the pod's ``QWEN_LAUNCHER_DIGEST``), ``actualDigest`` (of the files the
    launcher found, "" when it could not read them); vLLM never started (see
    ``qwen_runtime.integrity``). The message lists each file with the start of its SHA-256.

Example::

    {"reason": "KVCacheInsufficient", "exitCode": 1, "maxModelLen": 262144,
     "neededGiB": 11.75, "availableGiB": 10.38, "estimatedMaxModelLen": 231568,
     "message": "ValueError: To serve at least one request ..."}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Required, TypedDict


class Reason(StrEnum):
    """Why the server failed, as the launcher read it from vLLM's output."""

    KV_CACHE_INSUFFICIENT = "KVCacheInsufficient"
    """The weights fit, but not the KV cache of one request of ``--max-model-len`` tokens."""
    CUDA_OOM = "CudaOOM"
    """torch/vLLM ran out of GPU memory (while loading, profiling, capturing, warming up or serving)."""
    INSUFFICIENT_FREE_MEMORY = "InsufficientFreeMemory"
    """At start the GPU had less free memory than ``--gpu-memory-utilization`` asks for
    (another process holds some)."""
    ENGINE_START_TIMEOUT = "EngineStartTimeout"
    """The engine core did not come up within ``VLLM_ENGINE_READY_TIMEOUT_S``."""
    INVALID_ARGUMENTS = "InvalidArguments"
    """vLLM rejected its command line (an argparse error, or exit code 2)."""
    LAUNCHER_MISMATCH = "LauncherMismatch"
    """The launcher's own sources are not those the pod's digest names: it refused to start
    vLLM (the launcher ConfigMap was replaced by another)."""
    UNKNOWN = "Unknown"
    """None of the above; ``message`` holds the last telling error line."""


class CudaPhase(StrEnum):
    """The start-up phase a failure happened in (``phase``), in the order vLLM goes through them."""

    WEIGHT_LOADING = "weightLoading"
    """Loading the checkpoint onto the GPUs."""
    PROFILING = "profiling"
    """The dummy forward pass that measures activation memory."""
    KV_CACHE_ALLOCATION = "kvCacheAllocation"
    """Sizing and allocating the KV cache."""
    CUDA_GRAPH_CAPTURE = "cudaGraphCapture"
    """Capturing CUDA graphs."""
    SAMPLER_WARM_UP = "samplerWarmUp"
    """Warming up the sampler with dummy requests."""
    POOLER_WARM_UP = "poolerWarmUp"
    """Warming up the pooler (pooling models)."""
    WARM_UP = "warmUp"
    """After graph capture, before the API server is up."""
    SERVING = "serving"
    """The API server is up: a failure while serving requests."""


class Record(TypedDict, total=False):
    """The termination record, keys as on the wire (see the module docstring).

    The launcher writes ``reason`` as a ``Reason`` and ``phase`` as a ``CudaPhase``;
    a parsed record holds plain strings (equal to those members when known).
    """

    reason: Required[str]
    exitCode: Required[int]
    message: str
    signal: str
    receivedSignal: str
    gpuMemoryUtilization: float
    # KVCacheInsufficient
    maxModelLen: int
    neededGiB: float
    availableGiB: float
    estimatedMaxModelLen: int
    # CudaOOM, EngineStartTimeout
    phase: str
    # CudaOOM
    triedToAllocateGiB: float
    # InsufficientFreeMemory
    device: str
    freeGiB: float
    totalGiB: float
    requestedGiB: float
    # EngineStartTimeout
    timeoutSeconds: int
    # LauncherMismatch
    expectedDigest: str
    actualDigest: str


def parse(message: str) -> Record | None:
    """The launcher's record in a container's termination message, or None.

    With ``terminationMessagePolicy: FallbackToLogsOnError`` a crash that never
    reached the launcher leaves the log's tail there instead, so parsing is
    lenient: the last line that is a JSON object with a string ``reason`` wins;
    anything else is no record. Other keys are not checked: read numbers with
    ``int_field``.
    """
    for line in reversed(message.strip().splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            found = json.loads(line)
        except ValueError:
            continue
        if isinstance(found, dict) and isinstance(found.get("reason"), str):
            record: Record = found  # type: ignore[assignment]  # checked: a dict with a string reason
            return record
    return None


def int_field(record: Mapping[str, object] | None, key: str) -> int | None:
    """``record[key]`` when it is an integer (not a bool, float or string), else None."""
    value = (record or {}).get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def max_model_len(record: Mapping[str, object] | None) -> int | None:
    """The context the failed server ran with, as the launcher reported it."""
    return int_field(record, "maxModelLen")


def estimated_max_model_len(record: Mapping[str, object] | None) -> int | None:
    """vLLM's estimate of the largest context that fits, when it printed one."""
    return int_field(record, "estimatedMaxModelLen")
