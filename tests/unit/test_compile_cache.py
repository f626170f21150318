"""The compile caches outlive the pod: each rendered server finds VLLM_CACHE_ROOT, TRITON_CACHE_DIR and
TORCHINDUCTOR_CACHE_DIR on a claim of its replica (never on an emptyDir), writable, in every mode of
the weights; and the launcher is told where the cache is and its bound.

The real start that reuses it is tests/tools/realvllm/test_compile_cache.py (the CPU vLLM); this is
the proof for the GPU configuration the CPU build cannot load (its AOT artifacts), as rendered."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from qwen_operator import api
from qwen_operator.children import compile_cache, render, security
from qwen_operator.reconcile import snapshot
from qwen_operator.reconcile.decide import decide
from qwen_operator.reconcile.observe import Observed
from qwen_runtime.compile_cache import DIR_VAR, LIMIT_VAR
from testkit.fake import NOW
from testkit.wrappers import live as live_object
from testkit.wrappers import parsed, resource
from tests.tools.realvllm.rendered import sample_docs

CACHE_VARS = tuple(compile_cache.CACHES)
PVC = {"source": {"pvc": {"claimName": "weights-rox"}}}
MODES: dict[str, dict[str, Any]] = {
    "PerReplica": {},
    "Shared": {"cache": {"mode": "Shared"}},
    "pvc": PVC,
}
LWS = frozenset({"leaderworkersets.leaderworkerset.x-k8s.io"})


def _workload(spec: dict[str, Any] | api.QwenThinkingDeployment) -> dict[str, Any]:
    res = spec if isinstance(spec, api.QwenThinkingDeployment) else parsed(spec)
    kind = render.workload_kind(res.spec)
    workload: dict[str, Any] = next(c for c in render.render(res, served=LWS) if c["kind"] == kind)
    return workload


def _pods(workload: dict[str, Any]) -> list[dict[str, Any]]:
    """The workload's pod specs: the StatefulSet's, or a LeaderWorkerSet's leader and worker."""
    spec = workload["spec"]
    if "template" in spec:
        return [spec["template"]["spec"]]
    group = spec["leaderWorkerTemplate"]
    return [group["leaderTemplate"]["spec"], group["workerTemplate"]["spec"]]


def _claim_templates(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = workload["spec"]
    templates = spec.get("volumeClaimTemplates") or spec.get("leaderWorkerTemplate", {}).get(
        "volumeClaimTemplates"
    )
    return {t["metadata"]["name"]: t for t in templates or []}


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def _volume_of(
    pod: dict[str, Any], container: dict[str, Any], path: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The container's mount that holds `path` (the longest mount path it lies under), and what
    backs it: a volume of the pod, or a claim template (as `{"claimTemplate": name}`)."""
    mounts = [
        m
        for m in container["volumeMounts"]
        if path == m["mountPath"] or path.startswith(m["mountPath"] + "/")
    ]
    mount: dict[str, Any] = max(mounts, key=lambda m: len(m["mountPath"]))
    volume: dict[str, Any] = next(
        (v for v in pod["volumes"] if v["name"] == mount["name"]), {"claimTemplate": mount["name"]}
    )
    return mount, volume


def where_the_caches_are(workload: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(variable, path, mount, volume) of each compile cache of each server container."""
    found = []
    for pod in _pods(workload):
        server = pod["containers"][0]
        for name in CACHE_VARS:
            path = _env(server)[name]
            mount, volume = _volume_of(pod, server, path)
            found.append((name, path, mount, volume))
    return found


@pytest.mark.parametrize("sample", sorted(sample_docs()))
def test_every_sample_keeps_its_compile_caches_on_a_claim_of_the_replica(sample: str) -> None:
    """The GPU configurations as the samples render them (TP 4 and 8, FP8 KV, pipeline groups):
    every cache on a writable mount of a volume claim template, none on an emptyDir."""
    res = api.parse_resource(sample_docs()[sample])
    workload = _workload(res)
    templates = _claim_templates(workload)
    for name, path, mount, volume in where_the_caches_are(workload):
        assert "claimTemplate" in volume and volume["claimTemplate"] in templates, (name, path, volume)
        assert not mount.get("readOnly"), (name, mount)
        assert not path.startswith(security.HOME), (name, path)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_where_each_mode_puts_the_cache(mode: str) -> None:
    """PerReplica: a subdirectory of the replica's own weights volume; Shared and a user's PVC
    (weights mounted read-only): a claim template of its own, compileCacheSize large."""
    workload = _workload({"model": MODES[mode]})
    templates = _claim_templates(workload)
    (pod,) = _pods(workload)
    env = _env(pod["containers"][0])
    root = "/models/.compile-cache" if mode == "PerReplica" else compile_cache.MOUNT
    assert {name: env[name] for name in CACHE_VARS} == {
        "VLLM_CACHE_ROOT": f"{root}/vllm",
        "TRITON_CACHE_DIR": f"{root}/triton",
        "TORCHINDUCTOR_CACHE_DIR": f"{root}/inductor",
    }
    assert (env[DIR_VAR], env[LIMIT_VAR]) == (root, str(10 * 2**30))
    if mode == "PerReplica":
        assert sorted(templates) == ["weights"]
        return
    assert sorted(templates) == [compile_cache.VOLUME]
    claim = templates[compile_cache.VOLUME]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == api.defaults.COMPILE_CACHE_SIZE
    assert claim["metadata"]["labels"]["app.kubernetes.io/component"] == "compile-cache"
    weights = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "weights")
    assert weights["readOnly"] is True


def test_the_claim_follows_the_bound_and_the_weights_storage_class() -> None:
    spec = {"model": {**PVC, "cache": {"compileCacheSize": "32Gi", "storageClassName": "fast"}}}
    workload = _workload(spec)
    claim = _claim_templates(workload)[compile_cache.VOLUME]["spec"]
    assert (claim["resources"]["requests"]["storage"], claim["storageClassName"]) == ("32Gi", "fast")
    (pod,) = _pods(workload)
    assert _env(pod["containers"][0])[LIMIT_VAR] == str(32 * 2**30)


def test_a_pipeline_group_gives_every_pod_its_own_claim() -> None:
    spec = {
        "parallelism": {"pipeline": 2, "tensor": 8, "expert": True},
        "model": {"cache": {"mode": "Shared"}},
    }
    workload = _workload(spec)
    assert workload["kind"] == "LeaderWorkerSet"
    assert sorted(_claim_templates(workload)) == [compile_cache.VOLUME]
    assert (
        workload["spec"]["leaderWorkerTemplate"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"]
        == "Retain"
    )
    assert {path for _, path, _, _ in where_the_caches_are(workload)} == {
        f"{compile_cache.MOUNT}/{sub}" for sub in compile_cache.CACHES.values()
    }


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_zero_bound_keeps_the_caches_in_the_pod_and_makes_no_claim(mode: str) -> None:
    model = {**MODES[mode], "cache": {**MODES[mode].get("cache", {}), "compileCacheSize": "0"}}
    workload = _workload({"model": model})
    (pod,) = _pods(workload)
    env = _env(pod["containers"][0])
    assert DIR_VAR not in env and LIMIT_VAR not in env
    for name, path, _, volume in where_the_caches_are(workload):
        assert path.startswith(f"{security.HOME}/.cache/") and volume.get("emptyDir") == {}, (name, volume)
    assert compile_cache.VOLUME not in _claim_templates(workload)
    if mode != "PerReplica":
        assert "volumeClaimTemplates" not in workload["spec"]


@pytest.mark.parametrize(
    ("size", "valid"), [("0", True), ("1Gi", True), ("10G", True), ("1023Mi", False), ("1", False)]
)
def test_the_bound_is_zero_or_at_least_the_floor(size: str, valid: bool) -> None:
    spec = {"model": {"cache": {"compileCacheSize": size}}}
    if valid:
        parsed(spec)
        return
    with pytest.raises(api.InvalidResource, match="compileCacheSize"):
        parsed(spec)


def test_the_users_env_still_wins() -> None:
    """runtime.env replaces a variable the operator sets (render.server_env): a user may point
    VLLM_CACHE_ROOT elsewhere (then the launcher's bound covers only the operator's directory)."""
    workload = _workload({"runtime": {"env": [{"name": "VLLM_CACHE_ROOT", "value": "/scratch/vllm"}]}})
    (pod,) = _pods(workload)
    env = _env(pod["containers"][0])
    assert env["VLLM_CACHE_ROOT"] == "/scratch/vllm" and env[DIR_VAR] == "/models/.compile-cache"


def test_the_weights_download_is_not_told_about_the_compile_cache() -> None:
    (pod,) = _pods(_workload({}))
    (fetch,) = pod["initContainers"]
    assert not set(_env(fetch)) & {*CACHE_VARS, DIR_VAR, LIMIT_VAR}


@pytest.mark.parametrize("made_with_claim", [True, False])
def test_the_claim_is_added_to_a_live_statefulset_made_without_it(made_with_claim: bool) -> None:
    """A Shared-mode StatefulSet made without the compile cache's claim template (before the
    cache, or with compileCacheSize "0") is given it: the apply the apiserver refuses replaces it
    keeping its pods, and the rollout replaces them in the controller's order (test_rollout.py).
    One made with it has nothing to apply; a new resource gets it from the start."""
    spec = {"model": {"cache": {"mode": "Shared"}}}
    made = {"model": {"cache": {"mode": "Shared", "compileCacheSize": "10Gi" if made_with_claim else "0"}}}
    live = tuple(snapshot.child_from(live_object(m)) for m in render.render(parsed(made)))
    job = next(c for c in live if c.kind == "Job")
    job = replace(job, status={"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1})
    kids = tuple(job if c.kind == "Job" else c for c in live)
    desired = decide(Observed(resource(spec), kids, (), ()), NOW)
    applied = [a.manifest for a in desired.applies if a.manifest["kind"] == "StatefulSet"]
    if made_with_claim:
        assert applied == [], desired.applies
    else:
        (sts,) = applied
        assert list(_claim_templates(sts)) == [compile_cache.VOLUME]
        env = _env(sts["spec"]["template"]["spec"]["containers"][0])
        assert env[DIR_VAR] == compile_cache.MOUNT
    fresh = decide(Observed(resource(spec), (job,), (), ()), NOW)  # the download done, no StatefulSet yet
    (sts,) = [a.manifest for a in fresh.applies if a.manifest["kind"] == "StatefulSet"]
    assert list(_claim_templates(sts)) == [compile_cache.VOLUME]
