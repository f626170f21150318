"""Where a server pod keeps its compile artifacts: on a volume that outlives the pod.

Why: vLLM compiles the model at every start (torch.compile through inductor, Triton kernels);
on GPUs that is minutes of every cure, rollout, crash and scale-up. vLLM keys what it writes by
a hash of everything that enters the compile (`vllm/compilation/backends.py`: environment,
config, traced code and compiler; the cache root itself is left out of the hash), so a pod
that finds the directory of an earlier pod with the same configuration loads the artifacts,
and a changed configuration compiles into a directory of its own. On the pod's emptyDir they
died with the pod; here they live on the replica's own claim:

* Hugging Face source, PerReplica (the default): a subdirectory of the replica's weights
  volume, which is the replica's already (a claim from the StatefulSet's
  volumeClaimTemplates, kept across pod replacements and scale-downs). Nothing new to create.
* Shared, or the user's PVC: the weights claim is mounted read-only (it is every replica's, or
  the user's), so each replica gets a small claim of its own from one more volume claim
  template. One claim per replica rather than one directory on a shared claim: it needs no
  ReadWriteMany class (the user's claim may be ReadOnlyMany), two pods never write one
  directory, and the weights stay read-only.

Adding that claim template to a live StatefulSet (one made before this cache, or with
`compileCacheSize: "0"`) is a change the apiserver refuses (volumeClaimTemplates are fixed at
creation): the StatefulSet is made anew keeping its pods (decide.replacing), and the pods, which
lack the new claim, are replaced in the order that keeps the StatefulSet controller going
(reconcile/rollout.py: the lowest ordinal that lacks it first, one serving replica at a time
within `spec.disruption.maxUnavailable`): the controller cannot add a volume to a running pod, and
goes no further than the first pod without it. So an operator upgrade gives such a resource the
cache through one ordered rollout, as any template change would.

The launcher (`qwen_runtime.compile_cache`) bounds the directory before each start, oldest
entries first; `spec.model.cache.compileCacheSize` is the bound and, where a claim is made for
it, that claim's size (in the weights' StorageClass, which the user has shown to work here).
`compileCacheSize: "0"` keeps nothing: the caches stay in the pod's HOME emptyDir, as before,
and no claim is made (a cluster that cannot provision one, beside a user's static PV).
"""

from __future__ import annotations

from dataclasses import dataclass

from qwen_operator import api
from qwen_operator.children import security
from qwen_operator.reconcile.diff import quantity
from qwen_runtime.compile_cache import DIR_VAR, LIMIT_VAR

SUBDIRECTORY = ".compile-cache"
"""On the weights volume (PerReplica): hidden, beside the Hugging Face cache `hub/`."""
VOLUME = "compile-cache"
"""The claim template (Shared mode, PVC source): each replica's claim is `compile-cache-<pod>`."""
MOUNT = "/compile-cache"
CACHES = {
    "VLLM_CACHE_ROOT": "vllm",
    "TRITON_CACHE_DIR": "triton",
    "TORCHINDUCTOR_CACHE_DIR": "inductor",
}
"""Each compile cache's variable and its directory under the root. vLLM puts its inductor
artifacts inside its own keyed directory (it sets TORCHINDUCTOR_CACHE_DIR itself while it
compiles); the variable still catches what torch compiles outside vLLM's backend."""


@dataclass(frozen=True)
class Location:
    """The compile cache of one server pod: the directory, and the claim template it needs."""

    root: str
    claim: bool
    """True: the root is a claim of its own (volume `VOLUME` at `MOUNT`), from a volume claim
    template; False: it is a subdirectory of the weights volume."""


def location(spec: api.QwenThinkingDeploymentSpec, weights_mount: str) -> Location | None:
    """Where the compile cache goes (see the module's docstring for why); None: nowhere that
    outlives the pod (`compileCacheSize` 0)."""
    if limit_bytes(spec) == 0:
        return None
    user_claim = spec.model.source is not None and spec.model.source.pvc is not None
    if user_claim or spec.model.cache.mode == "Shared":  # the weights are mounted read-only
        return Location(MOUNT, claim=True)
    return Location(f"{weights_mount}/{SUBDIRECTORY}", claim=False)


def limit_bytes(spec: api.QwenThinkingDeploymentSpec) -> int:
    """`compileCacheSize` in bytes (the schema admits only quantities, so it parses)."""
    parsed = quantity(spec.model.cache.compile_cache_size)
    assert parsed is not None, spec.model.cache.compile_cache_size
    return int(parsed)


def env(spec: api.QwenThinkingDeploymentSpec, weights_mount: str) -> list[dict[str, str]]:
    """The server's variables: each cache's directory under the root, and the root and its bound
    for the launcher's pruning (without a lasting location: under HOME, unbounded, as it dies
    with the pod)."""
    where = location(spec, weights_mount)
    root = f"{security.HOME}/.cache" if where is None else where.root
    out = [{"name": name, "value": f"{root}/{sub}"} for name, sub in CACHES.items()]
    if where is None:
        return out
    return [*out, {"name": DIR_VAR, "value": root}, {"name": LIMIT_VAR, "value": str(limit_bytes(spec))}]
