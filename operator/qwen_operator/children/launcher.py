"""How the launcher reaches the server pods without an image of its own: a ConfigMap.

The pods run the unmodified `vllm/vllm-openai` image. The launcher (`qwen_runtime`, standard
library only) ships inside the operator's package; each resource owns a ConfigMap with its
sources, mounted read-only at `MOUNT/qwen_runtime`, on `PYTHONPATH`, so `python3 -m qwen_runtime`
finds it in the vLLM image's own Python. The sources' digest is an annotation of the pod
template: an operator upgrade that changes the launcher rolls the servers.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources

PACKAGE = "qwen_runtime"
MOUNT = "/opt/qwen-runtime"
"""On PYTHONPATH; the package is the directory `MOUNT/qwen_runtime` (the baked image's path too)."""
VOLUME = "launcher"


@cache
def sources() -> dict[str, str]:
    """The launcher's modules, by file name, exactly as the operator runs them."""
    root = resources.files(PACKAGE)
    return {
        entry.name: entry.read_text("utf-8")
        for entry in sorted(root.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".py")
    }


@cache
def digest() -> str:
    """A digest of the sources: it changes when, and only when, the launcher does."""
    hashed = hashlib.sha256()
    for name, text in sources().items():
        hashed.update(f"{name}\0{text}\0".encode())
    return hashed.hexdigest()[:16]


def configmap_name(resource_name: str) -> str:
    return f"{resource_name}-launcher"
