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
from qwen_operator.api.vocabulary import HASH_ANNOTATION
from qwen_operator.children import compile_cache, render, security
from qwen_operator.reconcile import diff, snapshot
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


SHARED: dict[str, Any] = {"model": {"cache": {"mode": "Shared"}}}


def _made(spec: dict[str, Any], claim: bool = True, **label: str) -> tuple[snapshot.Child, ...]:
    """The children of `spec` as an operator applied them, the StatefulSet with or without the
    compile cache's claim (`claim` False: an operator from before the cache), its metadata with
    `label` (an older operator's labels: another hash, the same pod template); the download done."""
    kids = []
    for m in render.render(parsed(spec), compile_claim=claim):
        if m["kind"] == "StatefulSet" and label:
            m["metadata"]["labels"] = {**m["metadata"]["labels"], **label}
        obj = live_object(m)
        if m["kind"] == "StatefulSet" and label:  # the hash of the older operator's rendering
            obj["metadata"]["annotations"][HASH_ANNOTATION] = "older"
        kids.append(snapshot.child_from(obj))
    return tuple(
        replace(c, status={"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1})
        if c.kind == "Job" else c for c in kids
    )  # fmt: skip


def _statefulset_applies(spec: dict[str, Any], kids: tuple[snapshot.Child, ...]) -> list[Any]:
    return [a for a in decide(Observed(resource(spec), kids, (), ()), NOW).applies if a.kind == "StatefulSet"]


@pytest.mark.parametrize("mode", ["Shared", "pvc"])
def test_an_operator_upgrade_alone_does_not_add_the_claim_to_a_live_statefulset(mode: str) -> None:
    """A StatefulSet made before the compile cache (Shared weights, or the user's PVC) keeps its
    pods: adding the claim template would make it anew and restart every replica (tens of minutes
    each), for nothing but the cache. So while the pod template rendered without the cache is the
    live one, that is what is rendered (compile_cache.claim_deferred): the cache stays in HOME."""
    spec = {"model": MODES[mode]}
    desired = _statefulset_applies(spec, _made(spec, claim=False))
    assert desired == []
    # an older operator's other labels: applied (the hash differs), the live spec left as it is
    (apply,) = _statefulset_applies(spec, _made(spec, claim=False, **{"example.com/older": "yes"}))
    assert "example.com/older" not in apply.manifest["metadata"]["labels"]  # ours, not the older one's
    assert compile_cache.VOLUME not in _claim_templates(apply.manifest)
    assert apply.live is not None and diff.contains(apply.manifest["spec"], apply.live.manifest["spec"])
    assert apply.may_not_roll and "metadata" in apply.events[0].message  # no new generation, no pod rolled
    env = _env(apply.manifest["spec"]["template"]["spec"]["containers"][0])
    assert env["VLLM_CACHE_ROOT"].startswith(security.HOME) and DIR_VAR not in env
    # made with compileCacheSize "0", the default asked since: the same, deferred to a rollout
    cache = {**MODES[mode].get("cache", {}), "compileCacheSize": "0"}
    assert _statefulset_applies(spec, _made({"model": {**MODES[mode], "cache": cache}})) == []


CHANGES: dict[str, dict[str, Any]] = {
    "image": {"runtime": {"image": "example.com/vllm:next"}},
    "env": {"runtime": {"env": [{"name": "EXAMPLE", "value": "1"}]}},
    "args": {"runtime": {"extraArgs": ["--enable-prefix-caching"]}},
}


@pytest.mark.parametrize(
    ("mode", "change"),
    # Shared and another image: the download Job is made again first, the StatefulSet waits for it
    [(m, c) for m in ("Shared", "pvc") for c in sorted(CHANGES) if (m, c) != ("Shared", "image")],
)
def test_a_change_that_rolls_the_pods_brings_the_claim(mode: str, change: str) -> None:
    """The user's change rolls the pods anyway: the StatefulSet is rendered with the claim, and that
    one rollout brings it (the apiserver refuses the apply, decide.replacing makes the StatefulSet
    anew keeping the pods, the rollout replaces them lowest ordinal first: test_rollout.py)."""
    kids = _made({"model": MODES[mode]}, claim=False)
    spec = {"model": MODES[mode], **CHANGES[change]}
    (apply,) = _statefulset_applies(spec, kids)
    assert list(_claim_templates(apply.manifest)) == [compile_cache.VOLUME]
    env = _env(apply.manifest["spec"]["template"]["spec"]["containers"][0])
    assert env[DIR_VAR] == compile_cache.MOUNT
    mounts = {m["name"]: m["mountPath"] for m in apply.manifest["spec"]["template"]["spec"]["containers"][0][
        "volumeMounts"]}  # fmt: skip
    assert mounts[compile_cache.VOLUME] == compile_cache.MOUNT


def test_a_statefulset_with_the_claim_keeps_it_and_a_new_one_gets_it() -> None:
    """Made with the claim: nothing to apply, and a change keeps it; made anew (no live
    StatefulSet, as after the replacement's deletion): with the claim."""
    assert _statefulset_applies(SHARED, _made(SHARED)) == []
    (apply,) = _statefulset_applies({**SHARED, **CHANGES["env"]}, _made(SHARED))
    assert list(_claim_templates(apply.manifest)) == [compile_cache.VOLUME]
    job = tuple(c for c in _made(SHARED, claim=False) if c.kind == "Job")
    (apply,) = _statefulset_applies(SHARED, job)  # the download done, no StatefulSet yet
    assert list(_claim_templates(apply.manifest)) == [compile_cache.VOLUME]


def test_the_policy_needs_the_claim_asked_and_missing() -> None:
    """claim_deferred: only a live StatefulSet without the claim template, for a rendering that has
    it; PerReplica needs no claim of its own, so rendering without one changes nothing."""
    res = parsed(SHARED)
    with_claim, without = (
        next(c for c in render.render(res, compile_claim=claim) if c["kind"] == "StatefulSet")
        for claim in (True, False)
    )
    assert compile_cache.claimed(with_claim) and not compile_cache.claimed(without)
    assert not compile_cache.claim_deferred(None, with_claim, without)
    assert not compile_cache.claim_deferred(with_claim, with_claim, without)
    assert compile_cache.claim_deferred(without, with_claim, without)
    assert not compile_cache.claim_deferred(without, without, without)
    per_replica = parsed({})
    assert render.render(per_replica, compile_claim=False) == render.render(per_replica)
