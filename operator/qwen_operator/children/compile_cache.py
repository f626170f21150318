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

A claim template is only ever part of a new StatefulSet (`claim_allowed`): added to a live one,
the apiserver refuses the change (volumeClaimTemplates are fixed at creation), and the
replacement keeping the pods (decide.replacing) does not roll them: the StatefulSet controller
tries to add the new claim's volume to each adopted pod in place, the apiserver forbids that,
and the controller retries forever before it gets to the rollout (seen on the local cluster,
e2e/test_operator.py). So a StatefulSet made without the template (Shared or PVC source before
this cache) keeps its compile cache in the pod until the StatefulSet is made anew with its pods.

The launcher (`qwen_runtime.compile_cache`) bounds the directory before each start, oldest
entries first; `spec.model.cache.compileCacheSize` is the bound and, where a claim is made for
it, that claim's size (in the weights' StorageClass, which the user has shown to work here).
`compileCacheSize: "0"` keeps nothing: the caches stay in the pod's HOME emptyDir, as before,
and no claim is made (a cluster that cannot provision one, beside a user's static PV).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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


def location(
    spec: api.QwenThinkingDeploymentSpec, weights_mount: str, claim_allowed: bool = True
) -> Location | None:
    """Where the compile cache goes (see the module's docstring for why); None: nowhere that
    outlives the pod (`compileCacheSize` 0, or a claim it needs that `claim_allowed` refuses)."""
    if limit_bytes(spec) == 0:
        return None
    user_claim = spec.model.source is not None and spec.model.source.pvc is not None
    if user_claim or spec.model.cache.mode == "Shared":  # the weights are mounted read-only
        return Location(MOUNT, claim=True) if claim_allowed else None
    return Location(f"{weights_mount}/{SUBDIRECTORY}", claim=False)


def claim_allowed(live_statefulset: Mapping[str, Any] | None) -> bool:
    """Whether the StatefulSet may carry the compile cache's claim template: when it is created,
    or when the live one has it already; never added to a live one (the module's docstring)."""
    if live_statefulset is None:
        return True
    templates = (live_statefulset.get("spec") or {}).get("volumeClaimTemplates") or []
    return any((t.get("metadata") or {}).get("name") == VOLUME for t in templates)


def limit_bytes(spec: api.QwenThinkingDeploymentSpec) -> int:
    """`compileCacheSize` in bytes (the schema admits only quantities, so it parses)."""
    parsed = quantity(spec.model.cache.compile_cache_size)
    assert parsed is not None, spec.model.cache.compile_cache_size
    return int(parsed)


def env(
    spec: api.QwenThinkingDeploymentSpec, weights_mount: str, claim_allowed: bool = True
) -> list[dict[str, str]]:
    """The server's variables: each cache's directory under the root, and the root and its bound
    for the launcher's pruning (without a lasting location: under HOME, unbounded, as it dies
    with the pod)."""
    where = location(spec, weights_mount, claim_allowed)
    root = f"{security.HOME}/.cache" if where is None else where.root
    out = [{"name": name, "value": f"{root}/{sub}"} for name, sub in CACHES.items()]
    if where is None:
        return out
    return [*out, {"name": DIR_VAR, "value": root}, {"name": LIMIT_VAR, "value": str(limit_bytes(spec))}]
