"""Writing the termination message: one JSON line the operator reads from the pod.

The kubelet copies the file at the container's ``terminationMessagePath``
(default ``/dev/termination-log``, at most 4096 bytes) into
``status.containerStatuses[].lastState.terminated.message``. The launcher
writes it only when the child fails (non-zero exit or death by a signal).
The record's type, its schema and the parser the operator uses are in
``qwen_runtime.record``.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Mapping

from .record import Record

MAX_BYTES = 4096


def signal_name(number: int) -> str:
    """``SIGTERM`` for 15; ``SIG42`` for numbers Python has no name for."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


def encode(record: Mapping[str, object]) -> str:
    """One JSON line of at most ``MAX_BYTES`` bytes, shortening ``message`` if needed."""
    fields = dict(record)
    line = json.dumps(fields, ensure_ascii=True)
    while len(line) + 1 > MAX_BYTES:
        message = str(fields.get("message", ""))
        if not message:
            fields = {k: fields[k] for k in ("reason", "exitCode") if k in fields}
            return json.dumps(fields, ensure_ascii=True)
        excess = len(line) + 1 - MAX_BYTES
        fields["message"] = message[: max(0, len(message) - excess - 16)] + "..."
        line = json.dumps(fields, ensure_ascii=True)
    return line


def write(path: str, record: Record) -> str:
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
