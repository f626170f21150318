"""Where the server pods can run: their node selector, and the GPUs of the nodes it admits.

One definition serves the StatefulSet (render.py) and the memory plan (which must fit the
smallest GPU among the nodes the pods can be scheduled on).
"""

from __future__ import annotations

from collections.abc import Iterable

from qwen_operator import api
from qwen_operator.api.vocabulary import GPU_MEMORY_LABEL, GPU_PRODUCT_LABEL
from qwen_operator.memory import planner
from qwen_operator.reconcile import snapshot


def node_selector(spec: api.QwenThinkingDeploymentSpec) -> dict[str, str]:
    """The pods' nodeSelector: the user's, plus the GPU product when one is pinned."""
    selector = dict(spec.scheduling.node_selector)
    if spec.gpu.product:
        selector[GPU_PRODUCT_LABEL] = spec.gpu.product
    return selector


def admits(node: snapshot.Node, selector: dict[str, str]) -> bool:
    return all(node.labels.get(k) == v for k, v in selector.items())


def smallest_gpu_memory_gib(
    nodes: Iterable[snapshot.Node], spec: api.QwenThinkingDeploymentSpec
) -> float | None:
    """The plan must fit wherever a pod lands, so the smallest GPU among the admitted nodes counts."""
    selector = node_selector(spec)
    sizes = [
        planner.gpu_memory_gib_from_label(n.labels.get(GPU_MEMORY_LABEL))
        for n in nodes
        if admits(n, selector)
    ]
    return min((m for m in sizes if m is not None), default=None)
