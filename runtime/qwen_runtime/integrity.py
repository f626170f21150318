"""The launcher checks that it is the code the operator rendered, before it runs anything.

Why: the launcher reaches the pods in a ConfigMap, and it is PID 1 of every server, the
readiness probe, and the init container that holds ``HF_TOKEN``. The operator creates that
ConfigMap immutable and names it by the digest of its sources, so it cannot be edited; but
whoever may delete and create ConfigMaps in the namespace could put other code under the same
name. The pod spec carries the digest (``QWEN_LAUNCHER_DIGEST``, set by the operator in the
workload, which such a person cannot edit); the launcher hashes the files it was imported from
and refuses to run when they differ, with a termination message that says which files it found
and both digests.

The digest (``digest``) is the operator's too (``qwen_operator.children.launcher``): SHA-256 over
every file, in name order, as ``name NUL content NUL``. Every regular file of the mounted
directory counts, not only ``*.py``: an extra key (a ``.so`` that Python would import before
the ``.py`` of the same name) is a mismatch. Directories are skipped: the kubelet's own
(``..data``, ``..<timestamp>``) and ``__pycache__``.

Without ``QWEN_LAUNCHER_DIGEST`` (the baked image run by hand, ``docker run IMAGE -- ...``)
nothing is checked.

Limit: the check runs in the code it checks. A replacement that also drops the check is not
caught by it; what stops that is that the ConfigMap is immutable and that the operator replaces
an object of that name whose data differ from what it renders (it cannot update it).
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .record import Reason, Record

DIGEST_VAR = "QWEN_LAUNCHER_DIGEST"
"""The environment variable the pod spec sets to the digest of the launcher's sources."""
EXIT_MISMATCH = 125
"""The launcher's exit code when it refuses to run: outside vLLM's codes, the shell's 126/127
and ``fetch``'s 1-6 (none of which the download Job takes for permanent)."""
PACKAGE_DIR = Path(__file__).parent
"""Where the launcher was imported from: the mount itself (not resolved: in a ConfigMap volume
each key is a link into the kubelet's ``..data`` directory)."""
FILE_DIGEST_CHARS = 12
"""How much of each file's own SHA-256 the message shows: enough to tell which file differs from
the ConfigMap's (``sha256sum``), short enough for 4096 bytes."""


def digest(files: Mapping[str, bytes]) -> str:
    """The SHA-256 (hex) of the files: name and content of each, in name order."""
    hashed = hashlib.sha256()
    for name in sorted(files):
        hashed.update(name.encode() + b"\0" + files[name] + b"\0")
    return hashed.hexdigest()


def files_in(directory: Path) -> dict[str, bytes]:
    """Every regular file of `directory` (links followed), by name; directories skipped."""
    return {entry.name: entry.read_bytes() for entry in sorted(directory.iterdir()) if entry.is_file()}


@dataclass(frozen=True)
class Mismatch:
    """The mounted sources are not the ones the pod names."""

    directory: str
    expected: str
    actual: str
    """"" when the directory could not be read (`error` says why)."""
    files: tuple[str, ...]
    """Each file as ``name=<start of its own SHA-256>``, to compare with the ConfigMap's."""
    error: str = ""

    def message(self) -> str:
        """One sentence for the termination message and the log."""
        error = f" ({self.error})" if self.error else ""
        return (
            f"refusing to run: the launcher's sources in {self.directory}{error} have digest "
            f"{self.actual or 'none'}, the pod's {DIGEST_VAR} is {self.expected}: the launcher "
            f"ConfigMap is not the one the operator rendered; files: {', '.join(self.files) or 'none'}"
        )

    def record(self) -> Record:
        """The termination record (schema: ``qwen_runtime.record``)."""
        return {
            "reason": Reason.LAUNCHER_MISMATCH,
            "exitCode": EXIT_MISMATCH,
            "message": self.message(),
            "expectedDigest": self.expected,
            "actualDigest": self.actual,
        }


def mismatch(directory: Path, expected: str) -> Mismatch | None:
    """None when the files of `directory` have the digest `expected`, else what differs."""
    try:
        files = files_in(directory)
    except OSError as error:
        return Mismatch(str(directory), expected, "", (), str(error))
    actual = digest(files)
    if actual == expected.strip().lower():
        return None
    listed = tuple(f"{name}={_short(data)}" for name, data in files.items())
    return Mismatch(str(directory), expected, actual, listed)


def _short(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:FILE_DIGEST_CHARS]


def verify(termination_log: str | None, environ: Mapping[str, str] = os.environ) -> int | None:
    """None when the launcher may run (its sources match, or the pod names no digest); else
    `EXIT_MISMATCH`, after writing the message to stderr and the termination record to
    `termination_log` (None: a probe, whose output the kubelet reports instead; its container's
    termination message is the server's)."""
    expected = environ.get(DIGEST_VAR, "")
    if not expected:
        return None
    found = mismatch(PACKAGE_DIR, expected)
    if found is None:
        return None
    if termination_log is None:
        sys.stderr.write(f"[qwen-runtime] {found.message()}\n")
    else:
        from . import termination

        termination.write(termination_log, found.record())
    return EXIT_MISMATCH
