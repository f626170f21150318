"""Turn the output of a failed vLLM start into a reason the operator can act on.

The texts matched here are vLLM 0.33's own (``vllm/v1/core/kv_cache_planning.py``,
``vllm/v1/worker/utils.py``, ``vllm/v1/worker/gpu_model_runner.py``,
``vllm/v1/engine/core_client.py``) and torch's ``OutOfMemoryError``; the
fixtures in ``tests/unit/runtime/fixtures/`` hold them verbatim. Everything here is
pure: lines in, a ``Record`` out (see ``qwen_runtime.record`` for the schema).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .record import CudaPhase, Reason, Record

# Start-up phases, in the order vLLM goes through them. A log line containing
# the marker means the process has entered that phase; a generic CUDA OOM is
# attributed to the latest phase seen before it.
PHASE_MARKERS: tuple[tuple[bytes, CudaPhase], ...] = (
    (b"Starting to load model", CudaPhase.WEIGHT_LOADING),
    (b"Model loading took", CudaPhase.PROFILING),
    (b"Available KV cache memory", CudaPhase.KV_CACHE_ALLOCATION),
    (b"Capturing CUDA graphs", CudaPhase.CUDA_GRAPH_CAPTURE),
    (b"Graph capturing finished", CudaPhase.WARM_UP),
    (b"Starting vLLM server on", CudaPhase.SERVING),
)

# Substrings of the lines that decide a reason. The output watcher keeps every
# line containing one of them, however long ago it was printed, so a cause
# survives pages of shutdown noise after it. Every marker costs a scan of all
# output, and a longer one scans faster, so there are few and they are long:
# "CUDA out of memory" is in torch's OutOfMemoryError, in vLLM's "Failed to
# load model - not enough GPU memory ... (original error: CUDA out of memory"
# and in its warm-up messages; "GiB) on startup is less than" ends both
# free-memory texts.
KEY_MARKERS: tuple[bytes, ...] = (
    b"KV cache is needed, which is larger than the available KV cache memory",
    b"No available memory for the cache blocks",
    b"GiB) on startup is less than ",
    b"CUDA out of memory",
    b"Timed out waiting for engine core processes to start",
)

_NUM = r"(\d+(?:\.\d+)?)"
_KV_NEEDED = re.compile(
    r"max seq len \((\d+)\), \(" + _NUM + r" GiB KV cache is needed, which is larger than "
    r"the available KV cache memory \(" + _NUM + r" GiB\)"
)
_KV_ESTIMATE = re.compile(r"the estimated maximum model length is (\d+)")
_KV_NONE = "No available memory for the cache blocks"
_FREE_MEMORY = re.compile(
    r"Free memory on device (\S+) \(" + _NUM + "/" + _NUM + r" GiB\) on startup is less than "
    r"(?:desired GPU memory utilization|the engine's budget[^(]*) \(" + _NUM + ", " + _NUM
)
_LOAD_OOM = "Failed to load model - not enough GPU memory"
_WARMUP_OOM = re.compile(r"CUDA out of memory occurred when warming up (sampler|pooler)")
_WARMUP_PHASES = {"sampler": CudaPhase.SAMPLER_WARM_UP, "pooler": CudaPhase.POOLER_WARM_UP}
_GENERIC_OOM = re.compile(r"CUDA out of memory|OutOfMemoryError|torch\.cuda\.OutOfMemoryError")
_TRIED = re.compile(r"Tried to allocate " + _NUM + r" (GiB|MiB|KiB)")
_TIMEOUT = re.compile(r"Timed out waiting for engine core processes to start.*?Waited (\d+)s")
_TIMEOUT_PLAIN = "Timed out waiting for engine core processes to start"
_ARGPARSE = re.compile(r"^(?:\S+ )*\S+: error: (.+)$")
_EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?(?:[A-Z]\w*)?(?:Error|Exception|Exit)(?::\s|$)")
# Wrapper exceptions that only point at the real one printed earlier.
_POINTERS = ("See root cause above", "See stack trace for root cause", "See stack trace (above)")
_ERRORISH = re.compile(r"\b(?:ERROR|CRITICAL|FATAL|Error|Exception|error|failed)\b")
_NOISE = re.compile(r"^(?:Traceback \(most recent call last\):|File \"|\^+$|~+$|-+$)")
_VLLM_PREFIX = re.compile(
    r"^\([\w.-]+ pid=\d+\)\s*"
    r"(?:(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?\s+"
    r"\[[^\]]*\]\s*)?"
)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

MAX_MESSAGE_CHARS = 1024


@dataclass(frozen=True)
class KeyLine:
    """A line that matched a ``KEY_MARKERS`` entry, and the phase it was printed in."""

    text: str
    phase: CudaPhase | None


def clean(line: str) -> str:
    """Strip colour codes and vLLM's ``(EngineCore_DP0 pid=1) ERROR 11-28 ...`` prefix."""
    line = _ANSI.sub("", line).strip()
    return _VLLM_PREFIX.sub("", line).strip()


def classify(
    key_lines: Sequence[KeyLine],
    tail: Sequence[str],
    exit_code: int,
    phase: CudaPhase | None = None,
    max_model_len: int | None = None,
) -> Record:
    """Return the termination record for a child that exited with ``exit_code``.

    ``key_lines`` are the remembered cause lines, ``tail`` the last lines of
    output, ``phase`` the latest start-up phase seen, ``max_model_len`` the
    ``--max-model-len`` from the command line (used when vLLM prints none).
    """
    keys = list(key_lines) + [KeyLine(clean(t), phase) for t in tail if _has_key(t)]
    for finder in (_kv_cache, _free_memory, _cuda_oom, _engine_timeout):
        found = finder(keys, exit_code, phase, max_model_len)
        if found is not None:
            return found
    lines = [clean(t) for t in tail]
    lines = [t for t in lines if t]
    return _invalid_arguments(lines, exit_code) or _unknown(lines, exit_code)


def _has_key(line: str) -> bool:
    raw = line.encode("utf-8", "replace")
    return any(m in raw for m in KEY_MARKERS)


def _last(keys: Iterable[KeyLine], needle: str | re.Pattern[str]) -> KeyLine | None:
    found = None
    for key in keys:
        hit = needle in key.text if isinstance(needle, str) else needle.search(key.text)
        if hit:
            found = key
    return found


def _last_match(keys: Iterable[KeyLine], pattern: re.Pattern[str]) -> tuple[KeyLine, re.Match[str]] | None:
    """The last key line ``pattern`` matches, with the match (its numbers are the record's)."""
    found = None
    for key in keys:
        match = pattern.search(key.text)
        if match:
            found = key, match
    return found


def _message(text: str) -> str:
    return clean(text)[:MAX_MESSAGE_CHARS]


def _kv_cache(
    keys: Sequence[KeyLine], exit_code: int, phase: CudaPhase | None, max_model_len: int | None
) -> Record | None:
    hit = _last_match(keys, _KV_NEEDED)
    if hit is not None:
        key, needed = hit
        record: Record = {
            "reason": Reason.KV_CACHE_INSUFFICIENT,
            "exitCode": exit_code,
            "maxModelLen": int(needed.group(1)),
            "neededGiB": float(needed.group(2)),
            "availableGiB": float(needed.group(3)),
        }
        estimate = _KV_ESTIMATE.search(key.text)
        if estimate:
            record["estimatedMaxModelLen"] = int(estimate.group(1))
        record["message"] = _message(key.text)
        return record
    no_memory = _last(keys, _KV_NONE)
    if no_memory is None:
        return None
    record = {"reason": Reason.KV_CACHE_INSUFFICIENT, "exitCode": exit_code, "availableGiB": 0.0}
    if max_model_len is not None:
        record["maxModelLen"] = max_model_len
    record["message"] = _message(no_memory.text)
    return record


def _free_memory(
    keys: Sequence[KeyLine], exit_code: int, phase: CudaPhase | None, max_model_len: int | None
) -> Record | None:
    hit = _last_match(keys, _FREE_MEMORY)
    if hit is None:
        return None
    key, match = hit
    return {
        "reason": Reason.INSUFFICIENT_FREE_MEMORY,
        "exitCode": exit_code,
        "device": match.group(1),
        "freeGiB": float(match.group(2)),
        "totalGiB": float(match.group(3)),
        "gpuMemoryUtilization": float(match.group(4)),
        "requestedGiB": float(match.group(5)),
        "message": _message(key.text),
    }


def _cuda_oom(
    keys: Sequence[KeyLine], exit_code: int, phase: CudaPhase | None, max_model_len: int | None
) -> Record | None:
    record: Record = {"reason": Reason.CUDA_OOM, "exitCode": exit_code}
    load = _last(keys, _LOAD_OOM)
    warm = _last_match(keys, _WARMUP_OOM)
    generic = _last(keys, _GENERIC_OOM)
    if load is not None:
        record["phase"] = CudaPhase.WEIGHT_LOADING
        decided = load
    elif warm is not None:
        decided, match = warm
        record["phase"] = _WARMUP_PHASES[match.group(1)]
    elif generic is not None:
        known = generic.phase or phase
        if known:
            record["phase"] = known
        decided = generic
    else:
        return None
    tried = _tried_to_allocate(keys)
    if tried is not None:
        record["triedToAllocateGiB"] = tried
    record["message"] = _message(decided.text)
    return record


def _tried_to_allocate(keys: Sequence[KeyLine]) -> float | None:
    hit = _last_match(keys, _TRIED)
    if hit is None:
        return None
    match = hit[1]
    scale = {"GiB": 1.0, "MiB": 1 / 1024, "KiB": 1 / 1024**2}[match.group(2)]
    return round(float(match.group(1)) * scale, 3)


def _engine_timeout(
    keys: Sequence[KeyLine], exit_code: int, phase: CudaPhase | None, max_model_len: int | None
) -> Record | None:
    key = _last(keys, _TIMEOUT_PLAIN)
    if key is None:
        return None
    record: Record = {"reason": Reason.ENGINE_START_TIMEOUT, "exitCode": exit_code}
    match = _TIMEOUT.search(key.text)
    if match:
        record["timeoutSeconds"] = int(match.group(1))
    if phase:
        record["phase"] = phase
    record["message"] = _message(key.text)
    return record


def _invalid_arguments(lines: Sequence[str], exit_code: int) -> Record | None:
    errors = [m.group(0) for m in map(_ARGPARSE.match, lines) if m]
    if exit_code != 2 and not errors:
        return None
    message = errors[-1] if errors else _last_error_line(lines)
    return {
        "reason": Reason.INVALID_ARGUMENTS,
        "exitCode": exit_code,
        "message": message[:MAX_MESSAGE_CHARS],
    }


def _unknown(lines: Sequence[str], exit_code: int) -> Record:
    return {
        "reason": Reason.UNKNOWN,
        "exitCode": exit_code,
        "message": _last_error_line(lines)[:MAX_MESSAGE_CHARS],
    }


def _last_error_line(lines: Sequence[str]) -> str:
    """The most telling line: the last exception that is not a pointer to another one."""
    exceptions = [t for t in lines if _EXCEPTION.match(t)]
    for text in reversed(exceptions):
        if not any(pointer in text for pointer in _POINTERS):
            return text
    if exceptions:
        return exceptions[-1]
    for text in reversed(lines):
        if _ERRORISH.search(text) and not _NOISE.match(text):
            return text
    return lines[-1] if lines else ""
