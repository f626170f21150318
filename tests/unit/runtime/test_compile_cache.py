"""The launcher keeps the compile cache within its bound before the server starts: whole entries, the
one used longest ago first, and never a failed start because of it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from qwen_runtime.compile_cache import DIR_VAR, KEEP_FRACTION, LIMIT_VAR, bound, entries, prepare, prune
from tests.unit.runtime.helpers import launcher_env

DAY = 86400.0
NOW = 1_800_000_000.0
LAYOUT = {
    # what the CPU vLLM writes (tests/tools/realvllm/test_compile_cache.py), plus what GPUs add
    "vllm/torch_compile_cache/3f2a9c01de/rank_0_0/backbone/vllm_compile_cache.py": 100,
    "vllm/torch_compile_cache/3f2a9c01de/rank_0_0/inductor_cache/fxgraph/ab/abcdef": 400,
    "vllm/torch_compile_cache/torch_aot_compile/9e8d7c6b5a/rank_0_0/model": 300,
    "vllm/modelinfos/Qwen3MoeForCausalLM-1234.json": 10,
    "vllm/deep_gemm/cache.bin": 50,
    "triton/AB12CD/kernel.so": 70,
    "triton/EF34GH/kernel.so": 80,
    "inductor/fxgraph/xy/xyz123": 20,
    "inductor/aotautograd/qq/qq456": 30,
    "stray.txt": 5,
}
ENTRIES = {
    "vllm/torch_compile_cache/3f2a9c01de": 500,
    "vllm/torch_compile_cache/torch_aot_compile/9e8d7c6b5a": 300,
    "vllm/modelinfos": 10,
    "vllm/deep_gemm": 50,
    "triton/AB12CD": 70,
    "triton/EF34GH": 80,
    "inductor/fxgraph/xy": 20,
    "inductor/aotautograd/qq": 30,
    "stray.txt": 5,
}


def lay_out(root: Path, files: Mapping[str, int], age_days: Mapping[str, float] | None = None) -> None:
    """`files` (path: bytes) under `root`, each last read and written `age_days[entry]` days ago."""
    for name, size in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
    for entry, days in (age_days or {}).items():
        stamp = NOW - days * DAY
        for path in [root / entry, *(root / entry).rglob("*")]:
            os.utime(path, (stamp, stamp))


def sizes(root: Path) -> dict[str, int]:
    """Entry (relative path) -> bytes of its files (directories' own sizes left out)."""
    return {e.path.relative_to(root).as_posix(): sum(f.stat().st_size for f in [e.path, *e.path.rglob("*")]
                                                   if f.is_file()) for e in entries(root)}  # fmt: skip


def test_an_entry_is_what_is_written_and_read_as_a_whole(tmp_path: Path) -> None:
    """A compiled configuration (its hash directory, AOT or not), a Triton kernel, an inductor
    artifact, vLLM's other caches by kind, anything else by name."""
    lay_out(tmp_path, LAYOUT)
    assert sizes(tmp_path) == ENTRIES


def test_a_missing_cache_has_no_entries_and_prunes_to_nothing(tmp_path: Path) -> None:
    pruned = prune(tmp_path / "absent", 2**30)
    assert (pruned.entries, pruned.removed, pruned.kept) == (0, 0, 0)


def _limit_for(keep: int) -> int:
    return int(keep / KEEP_FRACTION) + 1


def test_the_entries_used_longest_ago_go_first_until_three_quarters_of_the_bound(tmp_path: Path) -> None:
    ages = {entry: float(i) for i, entry in enumerate(sorted(ENTRIES, key=ENTRIES.__getitem__))}
    lay_out(tmp_path, LAYOUT, ages)
    by_age = sorted(ENTRIES, key=lambda e: -ages[e])  # oldest first
    total = sum(e.size for e in entries(tmp_path))
    # room for all but the two oldest entries' files
    keep = total - sum(
        e.size for e in entries(tmp_path) if e.path.relative_to(tmp_path).as_posix() in by_age[:2]
    )
    pruned = prune(tmp_path, _limit_for(keep))
    assert pruned.removed == 2 and pruned.kept <= pruned.bound
    left = set(sizes(tmp_path))
    assert left == set(by_age[2:])
    assert not (tmp_path / by_age[0]).exists() and not (tmp_path / by_age[1]).exists()


def test_a_cache_within_its_bound_is_left_alone(tmp_path: Path) -> None:
    lay_out(tmp_path, LAYOUT)
    before = sizes(tmp_path)
    pruned = prune(tmp_path, 2**30)
    assert pruned.removed == 0 and sizes(tmp_path) == before


def test_reading_an_entry_keeps_it(tmp_path: Path) -> None:
    """Written long ago, loaded by the last start (its access time moved): it stays, and the one
    written later but never read since goes."""
    files = {"vllm/torch_compile_cache/old/model": 1000, "vllm/torch_compile_cache/new/model": 1000}
    lay_out(tmp_path, files, {"vllm/torch_compile_cache/old": 30, "vllm/torch_compile_cache/new": 10})
    loaded = tmp_path / "vllm/torch_compile_cache/old/model"
    os.utime(loaded, (NOW, NOW - 30 * DAY))  # read now, written 30 days ago
    prune(tmp_path, _limit_for(1500))
    assert set(sizes(tmp_path)) == {"vllm/torch_compile_cache/old"}


def test_the_bound_is_the_volumes_size_when_that_is_smaller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim keeps the size it was made with: a raised compileCacheSize cannot fill it."""
    assert bound(tmp_path, 4096) == bound(tmp_path / "not" / "yet", 4096) == int(4096 * KEEP_FRACTION)
    real = os.statvfs(tmp_path)
    volume = real.f_frsize * 1000
    small = os.statvfs_result((real.f_bsize, real.f_frsize, 1000, *real[3:]))
    monkeypatch.setattr(os, "statvfs", lambda path: small)
    assert bound(tmp_path, 10 * volume) == int(volume * KEEP_FRACTION)
    assert bound(tmp_path, volume // 2) == int(volume // 2 * KEEP_FRACTION)


def test_prepare_reads_the_environment_and_says_what_it_did(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lay_out(tmp_path, LAYOUT, {entry: 1.0 for entry in ENTRIES})
    assert prepare({}) is None and prepare({DIR_VAR: str(tmp_path)}) is None
    pruned = prepare({DIR_VAR: str(tmp_path), LIMIT_VAR: str(2**30)})
    assert pruned is not None and pruned.entries == len(ENTRIES)
    assert f"[qwen-runtime] compile cache {tmp_path}: " in capsys.readouterr().err


def test_a_cache_it_cannot_read_never_stops_the_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert prepare({DIR_VAR: str(tmp_path), LIMIT_VAR: "ten gigabytes"}) is None
    assert "left as it is" in capsys.readouterr().err


def test_the_launcher_prunes_before_the_server_starts(tmp_path: Path) -> None:
    """`python3 -m qwen_runtime -- COMMAND`: the old entry is gone before the command runs (the
    command lists what it finds), and the launcher's line names the cache and the bound."""
    cache = tmp_path / "cache"
    files = {"triton/old/k.so": 1000, "triton/new/k.so": 1000}
    lay_out(cache, files, {"triton/old": 2, "triton/new": 1})
    env = launcher_env() | {DIR_VAR: str(cache), LIMIT_VAR: str(_limit_for(1500))}
    child = "import os, sys; print(sorted(os.listdir(sys.argv[1])))"
    argv = [sys.executable, "-m", "qwen_runtime", "--termination-log", str(tmp_path / "log"), "--",
            sys.executable, "-c", child, str(cache / "triton")]  # fmt: skip
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['new']"
    assert f"compile cache {cache}: 0.00 GiB in 1 entries" in done.stderr and "removed 1" in done.stderr
