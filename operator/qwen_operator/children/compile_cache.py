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

The claim only comes with a rollout (`claim_deferred`, applied by decide.rendered): adding a
claim template to a live StatefulSet (one made before this cache, or with `compileCacheSize: "0"`)
is a change the apiserver refuses (volumeClaimTemplates are fixed at creation), so the StatefulSet
is made anew keeping its pods (decide.replacing), and the pods, which lack the new claim, must be
replaced (reconcile/rollout.py: the lowest ordinal that lacks it first, one serving replica at a
time within `spec.disruption.maxUnavailable`; the controller cannot add a volume to a running pod,
and goes no further than the first pod without it). Every replica restarts: for this model, tens of
minutes each. No change of ours stops a serving replica that did not need to stop, so a live
StatefulSet without the claim template is rendered without the cache's claim, mount and variables
(its compile cache stays in the pod's HOME emptyDir, as before) as long as that rendering's pod
template is held by the live one: an operator upgrade alone changes nothing there. Once a change
rolls the pods anyway (an image, arguments, context, environment, weights switched from Shared to
PerReplica, ...), the StatefulSet is rendered with the claim, and that same rollout brings it. A
new StatefulSet always has it. A `compileCacheSize` raised from "0" on such a StatefulSet is
therefore also deferred to the next rollout (the rendering without the claim is the same).

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
from qwen_operator.reconcile.diff import contains, quantity
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


def location(spec: api.QwenThinkingDeploymentSpec, weights_mount: str, claim: bool = True) -> Location | None:
    """Where the compile cache goes (see the module's docstring for why); None: nowhere that
    outlives the pod (`compileCacheSize` 0, or a claim of its own it needs that `claim` False
    defers: `claim_deferred`)."""
    if limit_bytes(spec) == 0:
        return None
    user_claim = spec.model.source is not None and spec.model.source.pvc is not None
    if user_claim or spec.model.cache.mode == "Shared":  # the weights are mounted read-only
        return Location(MOUNT, claim=True) if claim else None
    return Location(f"{weights_mount}/{SUBDIRECTORY}", claim=False)


def claimed(statefulset: Mapping[str, Any]) -> bool:
    """Whether the StatefulSet manifest has the compile cache's claim template."""
    templates = (statefulset.get("spec") or {}).get("volumeClaimTemplates") or []
    return any(isinstance(t, Mapping) and (t.get("metadata") or {}).get("name") == VOLUME for t in templates)


def claim_deferred(
    live: Mapping[str, Any] | None, with_claim: Mapping[str, Any], without: Mapping[str, Any]
) -> bool:
    """The policy of the module's docstring: whether the StatefulSet is rendered without the
    compile cache's claim (`without`, from render(compile_claim=False)) rather than with it
    (`with_claim`). Only for a live StatefulSet that lacks the claim template, the rendering asks
    for it, and the live pod template holds the one rendered without it: then the claim would be
    the only reason its pods roll. A new StatefulSet (`live` None) gets it."""
    if live is None or claimed(live) or not claimed(with_claim):
        return False
    return contains(_template(without), _template(live))


def _template(statefulset: Mapping[str, Any]) -> Any:
    return (statefulset.get("spec") or {}).get("template")


def limit_bytes(spec: api.QwenThinkingDeploymentSpec) -> int:
    """`compileCacheSize` in bytes (the schema admits only quantities, so it parses)."""
    parsed = quantity(spec.model.cache.compile_cache_size)
    assert parsed is not None, spec.model.cache.compile_cache_size
    return int(parsed)


def env(spec: api.QwenThinkingDeploymentSpec, weights_mount: str, claim: bool = True) -> list[dict[str, str]]:
    """The server's variables: each cache's directory under the root, and the root and its bound
    for the launcher's pruning (without a lasting location: under HOME, unbounded, as it dies
    with the pod)."""
    where = location(spec, weights_mount, claim)
    root = f"{security.HOME}/.cache" if where is None else where.root
    out = [{"name": name, "value": f"{root}/{sub}"} for name, sub in CACHES.items()]
    if where is None:
        return out
    return [*out, {"name": DIR_VAR, "value": root}, {"name": LIMIT_VAR, "value": str(limit_bytes(spec))}]
