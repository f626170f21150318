"""The record type the operator imports: parsing a termination message, and ``--max-model-len``."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

import qwen_runtime
from qwen_runtime import record, termination
from qwen_runtime.argv import gpu_memory_utilization, max_model_len
from qwen_runtime.record import CudaPhase, Reason, Record

KV_RECORD: Record = {
    "reason": Reason.KV_CACHE_INSUFFICIENT,
    "exitCode": 1,
    "maxModelLen": 262144,
    "neededGiB": 11.75,
    "availableGiB": 10.38,
    "estimatedMaxModelLen": 231568,
    "message": "ValueError: To serve at least one request ...",
}


def test_the_launchers_line_parses_back_to_the_record() -> None:
    parsed = record.parse(termination.encode(KV_RECORD) + "\n")
    assert parsed == KV_RECORD
    assert parsed is not None and parsed["reason"] == Reason.KV_CACHE_INSUFFICIENT


def test_the_last_json_line_wins() -> None:
    message = "\n".join(
        [
            '{"reason": "CudaOOM", "exitCode": 1}',
            "INFO some log line",
            '{"reason": "Unknown", "exitCode": 3, "message": "boom"}',
            "not json {",
            "{broken json",
            "",
        ]
    )
    assert record.parse(message) == {"reason": "Unknown", "exitCode": 3, "message": "boom"}


@pytest.mark.parametrize(
    "message",
    [
        "",
        "   \n",
        # FallbackToLogsOnError: a crash before the launcher ran leaves the log tail.
        'Traceback (most recent call last):\n  File "x.py", line 1\nImportError: no module named vllm\n',
        '{"exitCode": 1, "message": "no reason"}',
        '{"reason": 42, "exitCode": 1}',
        '{"reason": null}',
        '["reason", "CudaOOM"]',
        '"CudaOOM"',
        "{not json}",
    ],
)
def test_no_record(message: str) -> None:
    assert record.parse(message) is None


def test_a_line_is_stripped_before_parsing() -> None:
    assert record.parse('  {"reason": "CudaOOM", "exitCode": 1}  \n\n') == {
        "reason": "CudaOOM",
        "exitCode": 1,
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [(231568, 231568), (0, 0), (True, None), (False, None), (231568.0, None), ("231568", None), (None, None)],
)
def test_int_accessors_take_only_real_ints(value: object, expected: int | None) -> None:
    fields = {
        "reason": "KVCacheInsufficient",
        "exitCode": 1,
        "maxModelLen": value,
        "estimatedMaxModelLen": value,
    }
    assert record.int_field(fields, "maxModelLen") == expected
    assert record.max_model_len(fields) == expected
    assert record.estimated_max_model_len(fields) == expected


def test_int_accessors_without_a_record_or_key() -> None:
    assert record.max_model_len(None) is None
    assert record.estimated_max_model_len({"reason": "CudaOOM", "exitCode": 1}) is None
    assert record.estimated_max_model_len(KV_RECORD) == 231568
    assert record.max_model_len(KV_RECORD) == 262144


def test_the_enums_are_the_wire_strings() -> None:
    assert [str(r) for r in Reason] == [
        "KVCacheInsufficient",
        "CudaOOM",
        "InsufficientFreeMemory",
        "EngineStartTimeout",
        "InvalidArguments",
        "LauncherMismatch",
        "Unknown",
    ]
    assert [str(p) for p in CudaPhase] == [
        "weightLoading",
        "profiling",
        "kvCacheAllocation",
        "cudaGraphCapture",
        "samplerWarmUp",
        "poolerWarmUp",
        "warmUp",
        "serving",
    ]
    assert json.dumps({"reason": Reason.CUDA_OOM, "phase": CudaPhase.WARM_UP}) == (
        '{"reason": "CudaOOM", "phase": "warmUp"}'
    )


def test_the_schema_documents_every_key_and_value() -> None:
    doc = record.__doc__ or ""
    for key in Record.__annotations__:
        assert f"``{key}``" in doc, key
    for reason in Reason:
        assert f"``{reason}``" in doc, reason


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--max-model-len", "131072"], 131072),
        (["--max-model-len=65536"], 65536),
        (["--max_model_len", "32768"], 32768),
        (["--max_model_len=16384"], 16384),
        (["--max-model-len", "auto"], None),
        (["--max-model-len=auto"], None),
        (["--max-model-len", "-1"], None),
        (["--max-model-len="], None),
        (["--max-model-len"], None),
        (["--max-model-len", "8192", "--max-model-len=4096"], 4096),
        (["--max-model-len", "8192", "--max_model_len", "auto"], None),
        (["--max-model-lens", "8192"], None),
        ([], None),
    ],
)
def test_max_model_len_from_argv(argv: list[str], expected: int | None) -> None:
    assert max_model_len(["vllm", "serve", "m", *argv]) == expected


def test_qwen_runtime_imports_only_the_standard_library() -> None:
    """The image adds no packages, and the operator imports ``record`` and ``argv`` as they are.

    Module-level imports only: ``fetch`` imports the vLLM image's ``huggingface_hub`` when it runs.
    """
    package = Path(qwen_runtime.__file__).parent
    for source in sorted(package.glob("*.py")):
        for node in ast.parse(source.read_text(), str(source)).body:
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top == "__future__", (source.name, name)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--gpu-memory-utilization", "0.89"], 0.89),
        (["--gpu_memory_utilization=0.9"], 0.9),
        (["--gpu-memory-utilization", "0.9", "--gpu-memory-utilization", "0.8"], 0.8),
        (["--gpu-memory-utilization", "1.5"], None),
        (["--gpu-memory-utilization", "lots"], None),
        ([], None),
    ],
)
def test_gpu_memory_utilization_from_argv(argv: list[str], expected: float | None) -> None:
    assert gpu_memory_utilization(["vllm", "serve", "m", *argv]) == expected
