"""The classifier, fed vLLM 0.33's own messages, returns the right reason and numbers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from qwen_runtime import termination
from qwen_runtime.argv import max_model_len
from qwen_runtime.classify import KEY_MARKERS, PHASE_MARKERS, classify
from qwen_runtime.record import CudaPhase, Reason, Record
from qwen_runtime.watch import OutputWatcher
from tests.unit.runtime.fake_server import fixture_parts
from tests.unit.runtime.helpers import FIXTURES, cases

CASES = cases()


def watch(out: bytes, err: bytes, chunk: int = 1 << 16) -> OutputWatcher:
    """Feed both streams to a watcher in ``chunk``-sized pieces, as the launcher would."""
    watcher = OutputWatcher()
    for stream, data in ((1, out), (2, err)):
        for start in range(0, len(data), chunk):
            watcher.feed(stream, data[start : start + chunk])
    watcher.finish()
    return watcher


def record_for(name: str, chunk: int = 1 << 16, noise: bytes = b"") -> Record:
    case = CASES[name]
    out, err = fixture_parts(FIXTURES / name)
    watcher = watch(out + noise, err, chunk)
    argv = ["vllm", "serve", "m", *case.get("argv", [])]
    return watcher.classify(case["exitCode"], max_model_len(argv))


def check(record: Mapping[str, object], case: dict[str, Any]) -> None:
    for key, value in case["expect"].items():
        assert record.get(key) == value, (key, record)
    assert case.get("messageContains", "") in str(record["message"]), record
    for key in case.get("absent", []):
        assert key not in record, (key, record)


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixture_is_classified(name: str) -> None:
    check(record_for(name), CASES[name])


@pytest.mark.parametrize("name", sorted(CASES))
def test_tiny_chunks_find_lines_across_read_boundaries(name: str) -> None:
    check(record_for(name, chunk=7), CASES[name])


@pytest.mark.parametrize(
    "name", ["kv_cache_insufficient.log", "cuda_oom_weight_loading.log", "engine_start_timeout.log"]
)
def test_cause_survives_megabytes_of_later_output(name: str) -> None:
    noise = b"(APIServer pid=1) INFO 11-28 23:59:59 [launcher.py:1] shutting down\n" * 40_000
    check(record_for(name, noise=noise), CASES[name])


def test_every_reason_has_a_fixture() -> None:
    """Each ``Reason`` member is what the classifier makes of some fixture, and nothing else is;
    but the launcher's own refusal to run, before vLLM (test_integrity.py)."""
    expected = {case["expect"]["reason"] for case in CASES.values()}
    produced = {record_for(name)["reason"] for name in CASES}
    assert expected == produced == set(Reason) - {Reason.LAUNCHER_MISMATCH}


def test_every_fixture_record_is_typed_as_a_record() -> None:
    """Reasons and phases are the enums' members; exitCode is the child's."""
    for name, case in CASES.items():
        record = record_for(name)
        assert isinstance(record["reason"], Reason), record
        assert record["exitCode"] == case["exitCode"]
        assert set(record) <= set(Record.__annotations__), set(record) - set(Record.__annotations__)
        if "phase" in record:
            assert isinstance(record["phase"], CudaPhase), record


def test_fixtures_hold_the_texts_of_vllm_0_33() -> None:
    """Guards against a fixture edited away from the upstream wording it pins."""
    texts = "".join((FIXTURES / name).read_text() for name in CASES)
    for upstream in (
        "GiB KV cache is needed, which is larger than the available KV cache memory",
        "Based on the available memory, the estimated maximum model length is",
        "No available memory for the cache blocks. Try increasing `gpu_memory_utilization`",
        "on startup is less than desired GPU memory utilization",
        "Timed out waiting for engine core processes to start. This is often caused by slow",
        "Failed to load model - not enough GPU memory. Try lowering --gpu-memory-utilization",
        "CUDA out of memory occurred when warming up sampler with",
        "Engine core initialization failed. See root cause above. Failed core proc(s)",
    ):
        assert upstream in texts, upstream


def test_watcher_memory_is_bounded() -> None:
    watcher = OutputWatcher(tail_bytes=4096)
    for _ in range(1000):
        watcher.feed(1, b"x" * 1000 + b"\n")
    assert sum(len(t) for t in watcher._tails.values()) <= 2 * 4096 + 1001
    assert len("".join(watcher.tail_lines())) <= 4096


def test_key_line_without_newline_is_kept_at_exit() -> None:
    watcher = OutputWatcher()
    watcher.feed(2, b"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
    watcher.finish()
    record = watcher.classify(1)
    assert record["reason"] == Reason.CUDA_OOM
    assert record.get("triedToAllocateGiB") == 2.0


def test_unknown_takes_the_last_error_line_when_no_exception() -> None:
    lines = ["starting", "ERROR something broke badly", "bye"]
    assert classify([], lines, 1) == {
        "reason": "Unknown",
        "exitCode": 1,
        "message": "ERROR something broke badly",
    }


def test_exit_code_2_without_argparse_text_is_invalid_arguments() -> None:
    record = classify([], ["ValueError: --tool-call-parser is required"], 2)
    assert record["reason"] == Reason.INVALID_ARGUMENTS
    assert record["exitCode"] == 2


def test_encoded_record_fits_the_kubelet_limit() -> None:
    record: dict[str, object] = {"reason": "Unknown", "exitCode": 1, "message": "\u00e9" * 10_000}
    line = termination.encode(record)
    assert len(line.encode()) + 1 <= termination.MAX_BYTES
    assert json.loads(line)["reason"] == "Unknown"
    assert json.loads(line)["message"].endswith("...")


def test_every_marker_occurs_in_a_fixture() -> None:
    """A marker no fixture contains would be a guess, not vLLM's text."""
    texts = "".join((FIXTURES / name).read_text() for name in CASES).encode()
    for marker in KEY_MARKERS + tuple(m for m, _ in PHASE_MARKERS):
        assert marker in texts, marker


def test_scanning_stops_once_serving_but_the_tail_still_decides() -> None:
    watcher = OutputWatcher()
    watcher.feed(1, b"(APIServer pid=1) INFO [entry.py:139] Starting vLLM server on http://0.0.0.0:8000\n")
    assert watcher.phase == CudaPhase.SERVING
    watcher.feed(1, b"Starting to load model\n")
    assert watcher.phase == CudaPhase.SERVING, "markers after start-up are request noise"
    watcher.feed(2, b"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.00 GiB.\n")
    assert not watcher.key_lines
    record = watcher.classify(1)
    assert record["reason"] == Reason.CUDA_OOM
    assert record.get("phase") == CudaPhase.SERVING
