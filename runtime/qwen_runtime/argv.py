"""What the launcher, the operator and the e2e suite read from a ``vllm serve`` command line."""

from __future__ import annotations

from collections.abc import Sequence

_MAX_MODEL_LEN = "--max-model-len"


def max_model_len(command: Sequence[str]) -> int | None:
    """The integer ``--max-model-len`` of a ``vllm serve`` command line, if any.

    Accepts ``--max-model-len N``, ``--max-model-len=N`` and the ``--max_model_len``
    spellings vLLM's parser also takes; the last occurrence wins, as in argparse.
    A value that is not a positive integer gives None: ``auto``, or ``-1``, which
    vLLM also reads as "as long as fits".
    """
    value = None
    for index, arg in enumerate(command):
        name, equals, inline = arg.partition("=")
        if name.replace("_", "-") != _MAX_MODEL_LEN:
            continue
        if equals:
            value = inline
        elif index + 1 < len(command):
            value = command[index + 1]
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    return number if number > 0 else None
