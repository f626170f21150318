"""What the launcher, the operator and the e2e suite read from a ``vllm serve`` command line."""

from __future__ import annotations

from collections.abc import Sequence

MAX_MODEL_LEN = "--max-model-len"
GPU_MEMORY_UTILIZATION = "--gpu-memory-utilization"
SHUTDOWN_TIMEOUT = "--shutdown-timeout"
"""vLLM's drain after SIGTERM, in whole seconds: 0 (its default) aborts the requests in flight."""


def flag_value(command: Sequence[str], flag: str) -> str | None:
    """The value of ``flag`` (``--flag V``, ``--flag=V``, or with ``_`` for ``-``, as vLLM's
    parser takes them); the last occurrence wins, as in argparse."""
    value = None
    for index, arg in enumerate(command):
        name, equals, inline = arg.partition("=")
        if name.replace("_", "-") != flag:
            continue
        if equals:
            value = inline
        elif index + 1 < len(command):
            value = command[index + 1]
    return value


def max_model_len(command: Sequence[str]) -> int | None:
    """The integer ``--max-model-len`` of a ``vllm serve`` command line, if any.

    A value that is not a positive integer gives None: ``auto``, or ``-1``, which vLLM
    also reads as "as long as fits".
    """
    value = flag_value(command, MAX_MODEL_LEN)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    return number if number > 0 else None


def gpu_memory_utilization(command: Sequence[str]) -> float | None:
    """The ``--gpu-memory-utilization`` of a ``vllm serve`` command line: a fraction in (0, 1]."""
    value = flag_value(command, GPU_MEMORY_UTILIZATION)
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and 0 < number <= 1 else None


def shutdown_timeout(command: Sequence[str]) -> int:
    """The ``--shutdown-timeout`` of a ``vllm serve`` command line: how long vLLM drains after
    SIGTERM; 0 (abort at once), vLLM's default, when absent or not a whole number of seconds."""
    value = flag_value(command, SHUTDOWN_TIMEOUT)
    try:
        number = int(value) if value is not None else 0
    except ValueError:
        return 0
    return max(number, 0)
