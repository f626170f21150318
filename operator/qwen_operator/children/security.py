"""What lets the server pods pass Pod Security "restricted", and still run vLLM.

A fixed non-root user and group, fsGroup for the weights volume, no privilege escalation, every
capability dropped, the runtime's default seccomp profile. vLLM, torch, Triton and Hugging Face
write caches under HOME, which the vLLM image leaves to root: a writable emptyDir is HOME, with
each cache pointed into it, but for the compile caches, which outlive the pod on the replica's
volume (`compile_cache.py`). /dev/shm is a memory-backed emptyDir (render.py). A capability a
vLLM feature needs (IPC_LOCK for RDMA) is opt-in (`spec.runtime.addCapabilities`), and takes
the pods out of "restricted".
"""

from __future__ import annotations

from typing import Any

from qwen_operator import api

USER = GROUP = 1000
"""A fixed UID and GID: "restricted" requires runAsNonRoot, and fsGroup needs a group."""
HOME = "/home/vllm"
HOME_VOLUME = "home"
CACHES = {
    "HOME": HOME,
    "XDG_CACHE_HOME": f"{HOME}/.cache",
    "HF_HOME": f"{HOME}/.cache/huggingface",
}
"""Writable places for everything the server and the weights download write besides the weights
and the compile artifacts."""


POD_SPEC: dict[str, Any] = {"automountServiceAccountToken": False, "enableServiceLinks": False}
"""Fields of the server and download pods' spec: nothing in them talks to the apiserver, so no
ServiceAccount token is mounted (a compromised server, or a model repository's code run with
--trust-remote-code, gets no credential of the namespace); and no environment variable per
Service in the namespace, which would tell the server about every Service there and, for a
Service named `vllm`, set VLLM_PORT to `tcp://...`, which vLLM reads as its own setting."""


def pod() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": USER,
        "runAsGroup": GROUP,
        "fsGroup": GROUP,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container(spec: api.QwenThinkingDeploymentSpec | None = None) -> dict[str, Any]:
    """The server's, with the capabilities the user opted into; the init container's without."""
    added = list(spec.runtime.add_capabilities) if spec is not None else []
    capabilities: dict[str, Any] = {"drop": ["ALL"], **({"add": added} if added else {})}
    return {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "capabilities": capabilities}


def cache_env() -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in CACHES.items()]
