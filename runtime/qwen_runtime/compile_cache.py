"""Bound the compile cache before vLLM starts: the entries used longest ago go first.

Why: the operator puts vLLM's, Triton's and inductor's caches on a volume that outlives the pod
(``qwen_operator.children.compile_cache``), so a restart with an unchanged configuration loads
what the last start compiled. Every configuration compiles into a directory of its own (vLLM
keys it by a hash of what enters the compile), and nothing in vLLM ever removes one: without a
bound the volume fills, one changed flag at a time, until a start fails writing to it.

Before the server starts (nothing reads the cache yet), the launcher measures the cache
directory, ``QWEN_COMPILE_CACHE_DIR``, in entries (one compiled configuration, one Triton kernel,
one inductor artifact: what is written and read as a whole) and removes whole entries, the one
used longest ago first, until the cache holds at most ``KEEP_FRACTION`` of its bound: the rest
is room for what this start compiles. The bound is ``QWEN_COMPILE_CACHE_BYTES``, or the
volume's size where that is smaller (a claim made before the bound was raised).

"Used" is the newest access or modification time of anything in the entry: a start that loads
an entry reads it, which moves its access time where the volume records access times (Linux's
default ``relatime`` does, at most once a day); where it does not, an entry ages from when it
was written. A failure here never stops the server: the cache is an optimisation.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

DIR_VAR = "QWEN_COMPILE_CACHE_DIR"
LIMIT_VAR = "QWEN_COMPILE_CACHE_BYTES"
KEEP_FRACTION = 0.75
"""What the cache may hold before a start, of its bound: a quarter stays free for what the
start compiles (a configuration not seen before writes its graphs and kernels)."""
CONTAINERS = frozenset(
    {
        "",
        "vllm",
        "vllm/torch_compile_cache",
        "vllm/torch_compile_cache/torch_aot_compile",
        "triton",
        "inductor",
    }
)
"""Directories (relative to the cache dir) that hold entries rather than being one: vLLM's root,
its keyed compile directories (``torch_compile_cache/<hash>``, the AOT artifacts under
``torch_aot_compile/<hash>``), Triton's kernels (``<hash>``), inductor's kinds of artifact."""
NESTED = frozenset({"inductor"})
"""Containers whose subdirectories are containers too: ``inductor/fxgraph/<key>``, ..."""
GIB = 1024**3


@dataclass(frozen=True)
class Entry:
    """A part of the cache that is removed as a whole."""

    path: Path
    size: int
    used: float
    """The newest access or modification time in it (seconds since the epoch)."""


@dataclass(frozen=True)
class Pruned:
    """What one pruning did."""

    root: Path
    bound: int
    kept: int
    entries: int
    removed: int
    freed: int

    def line(self) -> str:
        """The launcher's log line: where the cache is, and what pruning left of it."""
        return (
            f"[qwen-runtime] compile cache {self.root}: {self.kept / GIB:.2f} GiB in {self.entries} entries "
            f"(kept to {self.bound / GIB:.2f} GiB); removed {self.removed} ({self.freed / GIB:.2f} GiB)"
        )


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path != root else ""


def _container(path: Path, root: Path) -> bool:
    relative = _relative(path, root)
    parent = relative.rpartition("/")[0]
    return path.is_dir() and not path.is_symlink() and (relative in CONTAINERS or parent in NESTED)


def _measure(path: Path) -> tuple[int, float]:
    """Bytes of the files in `path` (directories' own sizes vary by filesystem and are left out)
    and the newest time anything in it was read or written; no symlink is followed."""
    info = path.lstat()
    directory = stat.S_ISDIR(info.st_mode)
    size, used = 0 if directory else info.st_size, max(info.st_atime, info.st_mtime)
    if directory:
        for parent, dirs, files in os.walk(path):
            for name in [*dirs, *files]:
                try:
                    info = os.lstat(os.path.join(parent, name))
                except OSError:  # gone meanwhile
                    continue
                size += 0 if stat.S_ISDIR(info.st_mode) else info.st_size
                used = max(used, info.st_atime, info.st_mtime)
    return size, used


def entries(root: Path) -> Iterator[Entry]:
    """Every entry under `root` (see CONTAINERS); none when `root` does not exist."""
    pending = [root] if root.is_dir() else []
    while pending:
        directory = pending.pop()
        for child in sorted(directory.iterdir()):
            if _container(child, root):
                pending.append(child)
                continue
            try:
                size, used = _measure(child)
            except OSError:
                continue
            yield Entry(child, size, used)


def bound(root: Path, limit: int) -> int:
    """What the cache may hold before a start: `KEEP_FRACTION` of the limit, or of the volume
    when that is smaller."""
    existing = next((p for p in (root, *root.parents) if p.exists()), root)
    stats = os.statvfs(existing)
    return int(min(limit, stats.f_blocks * stats.f_frsize) * KEEP_FRACTION)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def prune(root: Path, limit: int) -> Pruned:
    """Remove the entries used longest ago until the cache holds at most `bound(root, limit)`."""
    found = sorted(entries(root), key=lambda e: e.used)
    keep = bound(root, limit)
    total = sum(e.size for e in found)
    removed = freed = 0
    for entry in found:
        if total - freed <= keep:
            break
        _remove(entry.path)
        removed, freed = removed + 1, freed + entry.size
    return Pruned(root, keep, total - freed, len(found) - removed, removed, freed)


def prepare(environ: Mapping[str, str]) -> Pruned | None:
    """Prune the cache the environment names (None when it names none), and say so on stderr."""
    root, limit = environ.get(DIR_VAR), environ.get(LIMIT_VAR)
    if not root or not limit:
        return None
    try:
        pruned = prune(Path(root), int(limit))
    except (OSError, ValueError) as error:
        sys.stderr.write(f"[qwen-runtime] compile cache {root} left as it is: {error}\n")
        return None
    sys.stderr.write(pruned.line() + "\n")
    sys.stderr.flush()
    return pruned
