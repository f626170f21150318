"""Simulated GPU nodes: what GPU feature discovery and the device plugin would advertise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Annotation kwok is told to manage (--manage-nodes-with-annotation-selector).
KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")


@dataclass(frozen=True)
class GpuModel:
    """A GPU as GFD labels it: product name and memory in MiB."""

    product: str
    memory_mib: int


GPU_MODELS = {
    "H100": GpuModel("NVIDIA-H100-80GB-HBM3", 81559),
    "H200": GpuModel("NVIDIA-H200", 143771),
}


def node_manifest(name: str, gpu: GpuModel, gpus: int) -> dict[str, Any]:
    """One Node with `gpus` x `gpu`, labelled like GFD and the NVIDIA device plugin would."""
    resources = {
        "cpu": "192",
        "memory": "2000Gi",
        "ephemeral-storage": "7000Gi",
        "pods": "110",
        "nvidia.com/gpu": str(gpus),
    }
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": gpu.product,
        "nvidia.com/gpu.memory": str(gpu.memory_mib),
        "nvidia.com/gpu.count": str(gpus),
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {KWOK_ANNOTATION[0]: KWOK_ANNOTATION[1]},
        },
        "status": {"capacity": resources, "allocatable": dict(resources)},
    }


def node_list(count: int, model: str, gpus: int, first: int = 0) -> dict[str, Any]:
    """A v1 List of `count` nodes named gpu-node-<first>, gpu-node-<first+1>, ... (a `first`
    past the cluster's own nodes adds more, for tests that need more GPUs)."""
    if model not in GPU_MODELS:
        raise ValueError(f"unknown GPU model {model!r}; known: {', '.join(GPU_MODELS)}")
    items = [node_manifest(f"gpu-node-{i}", GPU_MODELS[model], gpus) for i in range(first, first + count)]
    return {"apiVersion": "v1", "kind": "List", "items": items}


def storage_class() -> dict[str, Any]:
    """The default StorageClass; kwok's pvc-provision stage plays its provisioner."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": "simulated",
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": "qwen-operator.io/simulated",
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
        "allowVolumeExpansion": True,
    }
