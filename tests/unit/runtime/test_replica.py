"""A replica's own settings: the launcher reads its pod's entry and overrides the utilization."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from qwen_runtime import replica
from qwen_runtime.argv import gpu_memory_utilization
from qwen_runtime.startup import StartClock, format_line, latest
from tests.unit.runtime.helpers import run, without_reports

SERVE = ["vllm", "serve", "m", "--max-model-len", "262144", "--gpu-memory-utilization", "0.92", "--port", "1"]


def settings_dir(tmp_path: Path, entries: dict[str, str]) -> Path:
    directory = tmp_path / "replicas"
    directory.mkdir()
    for pod, text in entries.items():
        (directory / pod).write_text(text)
    return directory


def env(directory: Path, pod: str = "q-0") -> dict[str, str]:
    return {replica.SETTINGS_DIR_VAR: str(directory), replica.POD_NAME_VAR: pod}


def test_the_pods_own_entry_overrides_the_utilization(tmp_path: Path) -> None:
    directory = settings_dir(
        tmp_path, {"q-0": '{"gpuMemoryUtilization": 0.89}', "q-1": '{"gpuMemoryUtilization": 0.8}'}
    )
    command, said = replica.apply(SERVE, env(directory))
    assert gpu_memory_utilization(command) == 0.89
    assert command[:5] == SERVE[:5] and len(command) == len(SERVE)  # nothing else moves
    assert "0.89" in said and "pod q-0's own setting" in said


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            ["vllm", "serve", "--gpu-memory-utilization=0.92"],
            ["vllm", "serve", "--gpu-memory-utilization=0.85"],
        ),
        (
            ["vllm", "serve", "--gpu_memory_utilization", "0.9"],
            ["vllm", "serve", "--gpu_memory_utilization", "0.85"],
        ),
        (["vllm", "serve", "--port", "1"], ["vllm", "serve", "--port", "1"]),  # no flag: left alone
    ],
)
def test_every_spelling_of_the_flag_is_overridden(command: list[str], expected: list[str]) -> None:
    assert replica.override(command, replica.Settings("q-0", 0.85)) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "not JSON"),
        ("[0.8]", "not a JSON object"),
        ('{"gpuMemoryUtilization": 1.5}', "not a number in (0, 1]"),
        ('{"gpuMemoryUtilization": 0}', "not a number in (0, 1]"),
        ('{"gpuMemoryUtilization": "0.8"}', "not a number in (0, 1]"),
        ('{"gpuMemoryUtilization": true}', "not a number in (0, 1]"),
        ('{"gpuMemoryUtilization": NaN}', "not a number in (0, 1]"),
    ],
)
def test_an_invalid_entry_is_ignored_and_said(tmp_path: Path, text: str, problem: str) -> None:
    directory = settings_dir(tmp_path, {"q-0": text})
    command, said = replica.apply(SERVE, env(directory))
    assert command == SERVE
    assert problem in said and "ignored" in said and "0.92" in said


def test_no_entry_no_directory_or_no_name_keep_the_template(tmp_path: Path) -> None:
    directory = settings_dir(tmp_path, {"q-1": '{"gpuMemoryUtilization": 0.8}'})
    command, said = replica.apply(SERVE, env(directory))
    assert command == SERVE and "no setting for this replica" in said
    assert replica.apply(SERVE, env(tmp_path / "absent")) == (SERVE, said)  # the optional volume absent
    assert replica.apply(SERVE, {}) == (SERVE, "")  # not a pod the operator rendered: silent
    hostname = {replica.SETTINGS_DIR_VAR: str(directory), "HOSTNAME": "q-1"}
    assert gpu_memory_utilization(replica.apply(SERVE, hostname)[0]) == 0.8  # HOSTNAME when no POD_NAME
    assert replica.read({replica.SETTINGS_DIR_VAR: str(directory), replica.POD_NAME_VAR: "../q-1"}) is None
    assert replica.parse("q-0", "{}") == replica.Settings("q-0")  # an entry without the key


def test_the_launcher_runs_vllm_with_its_replicas_utilization_and_reports_it(tmp_path: Path) -> None:
    """End to end: the child's argv has the replica's value, the launcher says so on stderr, and a
    failure's record carries the utilization the run had (the operator judges the cure by it)."""
    directory = settings_dir(tmp_path, {"q-0": '{"gpuMemoryUtilization": 0.86}'})
    log = tmp_path / "termination-log"
    child = [sys.executable, "-c", "import sys, json; print(json.dumps(sys.argv[1:])); sys.exit(1)"]
    argv = [sys.executable, "-m", "qwen_runtime", "--termination-log", str(log), "--", *child,
            "--gpu-memory-utilization", "0.92"]  # fmt: skip
    done = run(argv, env={**os.environ, **env(directory)})
    assert done.returncode == 1
    seen = json.loads(without_reports(done.stdout).decode().splitlines()[-1])
    assert seen == ["--gpu-memory-utilization", "0.86"]
    assert b"[qwen-runtime] --gpu-memory-utilization 0.86 (pod q-0's own setting)" in done.stderr
    assert json.loads(log.read_text())["gpuMemoryUtilization"] == 0.86


def test_the_start_report_says_the_runs_utilization() -> None:
    """The operator keeps vLLM's figures with the utilization they were measured at (a replica
    with its own runs at another one than the template's)."""
    report = StartClock(0.0, 0.86).report(5.0)
    assert report["gpuMemoryUtilization"] == 0.86
    assert latest(format_line(report).decode()) == report
    assert "gpuMemoryUtilization" not in StartClock(0.0).report(5.0)
    forged = format_line({**report, "gpuMemoryUtilization": 7})  # type: ignore[typeddict-item]
    assert "gpuMemoryUtilization" not in (latest(forged.decode()) or {})
