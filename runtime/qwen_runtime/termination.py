"""The termination message: one JSON line the operator reads from the pod.

The kubelet copies the file at the container's ``terminationMessagePath``
(default ``/dev/termination-log``, at most 4096 bytes) into
``status.containerStatuses[].lastState.terminated.message``. The launcher
writes it only when the child fails (non-zero exit or death by a signal).

Schema (keys camelCase, one JSON object, ASCII, at most 4096 bytes):

``reason`` (always)
    ``KVCacheInsufficient`` | ``CudaOOM`` | ``InsufficientFreeMemory`` |
    ``EngineStartTimeout`` | ``InvalidArguments`` | ``Unknown``.
``exitCode`` (always)
    The launcher's own exit code: the child's, or 128 + signal number.
``message`` (always, may be empty)
    The vLLM line that decided the reason, log prefix removed, at most 1024
    characters; for ``Unknown`` the last meaningful error line, prefixed with
    ``killed by SIGKILL; last error:`` when a signal nobody forwarded killed
    the child (typically the kernel's OOM killer).
``signal`` (when the child died of a signal)
    e.g. ``"SIGKILL"``.
``receivedSignal`` (when the launcher was asked to stop and forwarded it)
    e.g. ``"SIGTERM"``: the failure followed a stop request (probe, deletion).
``KVCacheInsufficient``
    ``maxModelLen`` (int; from the message, or from ``--max-model-len`` for
    "No available memory for the cache blocks"), ``neededGiB``,
    ``availableGiB`` (floats, 0.0 when vLLM had no memory at all),
    ``estimatedMaxModelLen`` (int, only when vLLM printed an estimate).
``CudaOOM``
    ``phase`` when known: ``weightLoading`` | ``profiling`` |
    ``kvCacheAllocation`` | ``cudaGraphCapture`` | ``samplerWarmUp`` |
    ``poolerWarmUp`` | ``warmUp`` | ``serving``; ``triedToAllocateGiB`` when
    torch printed it.
``InsufficientFreeMemory``
    ``device``, ``freeGiB``, ``totalGiB``, ``gpuMemoryUtilization``, ``requestedGiB``.
``EngineStartTimeout``
    ``timeoutSeconds`` (vLLM's ``VLLM_ENGINE_READY_TIMEOUT_S``), ``phase`` when known.

Example::

    {"reason": "KVCacheInsufficient", "exitCode": 1, "maxModelLen": 262144,
     "neededGiB": 11.75, "availableGiB": 10.38, "estimatedMaxModelLen": 231568,
     "message": "ValueError: To serve at least one request ..."}
"""

from __future__ import annotations

import json
import signal
import sys

MAX_BYTES = 4096


def signal_name(number: int) -> str:
    """``SIGTERM`` for 15; ``SIG42`` for numbers Python has no name for."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


def encode(record: dict[str, object]) -> str:
    """One JSON line of at most ``MAX_BYTES`` bytes, shortening ``message`` if needed."""
    record = dict(record)
    line = json.dumps(record, ensure_ascii=True)
    while len(line) + 1 > MAX_BYTES:
        message = str(record.get("message", ""))
        if not message:
            record = {k: record[k] for k in ("reason", "exitCode") if k in record}
            return json.dumps(record, ensure_ascii=True)
        excess = len(line) + 1 - MAX_BYTES
        record["message"] = message[: max(0, len(message) - excess - 16)] + "..."
        line = json.dumps(record, ensure_ascii=True)
    return line


def write(path: str, record: dict[str, object]) -> str:
    """Write the record to ``path`` and echo it to stderr (for ``kubectl logs --previous``)."""
    line = encode(record)
    sys.stderr.write(f"[qwen-runtime] termination message: {line}\n")
    sys.stderr.flush()
    try:
        with open(path, "w", encoding="ascii") as handle:
            handle.write(line + "\n")
    except OSError as error:
        sys.stderr.write(f"[qwen-runtime] cannot write termination log {path}: {error}\n")
        sys.stderr.flush()
    return line
