"""How the launcher reaches the server pods without an image of its own: a ConfigMap.

The pods run the unmodified `vllm/vllm-openai` image. The launcher (`qwen_runtime`, standard
library only) ships inside the operator's package; each resource owns a ConfigMap with its
sources, mounted read-only at `MOUNT/qwen_runtime`, on `PYTHONPATH`, so `python3 -m qwen_runtime`
finds it in the vLLM image's own Python.

The launcher is PID 1 of every server, its readiness probe and the init container that holds
`HF_TOKEN`, so it cannot be swapped:
- the ConfigMap is immutable and content-addressed: its name ends with the start of the
  sources' digest (`configmap_name`), so new sources are a new ConfigMap, never an edit, and
  the old one is deleted once no pod mounts it (reconcile/decide.py);
- the pod spec carries the whole digest (`DIGEST_VAR`, and the pod template's annotation, so an
  operator upgrade that changes the launcher rolls the servers), and the launcher refuses to run
  when the files it was imported from have another (`qwen_runtime.integrity`).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from qwen_runtime import integrity

PACKAGE = "qwen_runtime"
MOUNT = "/opt/qwen-runtime"
"""On PYTHONPATH; the package is the directory `MOUNT/qwen_runtime` (the baked image's path too)."""
VOLUME = "launcher"
DIGEST_VAR = integrity.DIGEST_VAR
NAME_DIGEST_CHARS = 10
"""Hex digits of the digest in the ConfigMap's name: 40 bits, so two launchers an operator ever
ships do not share a name; the name stays short (a resource name is at most 52 characters, the
ConfigMap's at most 72, far below a ConfigMap's 253). The pod checks the whole digest."""


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
    """The digest of the sources as the pod checks it (`qwen_runtime.integrity.digest` of the
    ConfigMap's files): it changes when, and only when, the launcher does."""
    return integrity.digest({name: text.encode() for name, text in sources().items()})


def configmap_name(resource_name: str) -> str:
    """`<resource>-launcher-<digest>`: the name changes with the sources (content-addressed)."""
    return f"{resource_name}-launcher-{digest()[:NAME_DIGEST_CHARS]}"
