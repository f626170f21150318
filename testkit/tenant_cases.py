"""Hostile input under the tenant policy: resources the CRD admits but a platform admin's policy
refuses, with the parameters that refuse them.

One corpus, shared by the unit tests (`qwen-operator render --policy`, tests/unit/test_admission.py)
and the end-to-end tests (the apiserver with the ValidatingAdmissionPolicy installed,
e2e/test_admission.py). Each case names the parameter whose rule refuses it and the field the
message starts with; both sides must refuse it with the same message. `ADMITTED` (and the
samples) pass under the same parameters, so a rule that refuses too much fails too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from testkit.invalid_cases import resource

NAME = "qwen-operator-tenant-policy"
NAMESPACE = "qwen-operator-system"
DIGEST = "sha256:" + "0123456789abcdef" * 4

PARAMS: dict[str, str] = {
    "allowedRegistries": "docker.io/vllm/vllm-openai, registry.example.com/mirror/, localhost:5000",
    "allowedDigests": DIGEST,
    "allowTrustRemoteCode": "false",
    "allowedServiceTypes": "ClusterIP,LoadBalancer",
    "allowedPriorityClasses": "llm-batch, llm-online",
    "allowedTolerations": "dedicated, example.com/spot",
    "allowedModels": "Qwen/*, org/exact-model",
}
"""The parameters the cases are refused under (every rule enforced)."""


def configmap(
    params: dict[str, str] | None = None, name: str = NAME, namespace: str = NAMESPACE
) -> dict[str, Any]:
    """The tenant policy's ConfigMap with these parameters (default: PARAMS)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": dict(PARAMS if params is None else params),
    }


_KEY = {"apiKeySecretRef": {"name": "qwen-api-key", "key": "key"}}
"""An API key, which the CRD requires of an exposed Service."""


@dataclass(frozen=True)
class Case:
    """One resource the tenant policy refuses."""

    id: str
    param: str
    """The parameter whose rule refuses it (the message names it)."""
    field: str
    """Where the message says the problem is: it starts with it."""
    spec: dict[str, Any]

    def document(self) -> dict[str, Any]:
        return resource({"spec": self.spec}, name=f"tenant-{self.id}")


def _image(image: str) -> dict[str, Any]:
    return {"runtime": {"image": image}}


def _args(*args: str) -> dict[str, Any]:
    return {"runtime": {"extraArgs": list(args)}}


def _tolerations(*tolerations: dict[str, Any]) -> dict[str, Any]:
    return {"scheduling": {"tolerations": list(tolerations)}}


_IMAGE, _TRUST, _SERVICE = "spec.runtime.image", "spec.runtime.extraArgs", "spec.service.type"
_PRIORITY, _TOLERATIONS, _MODEL = (
    "spec.scheduling.priorityClassName",
    "spec.scheduling.tolerations",
    "spec.model.id",
)

CASES: list[Case] = [
    Case(
        "image-other-registry",
        "allowedRegistries",
        _IMAGE,
        _image("evil.example.com/vllm/vllm-openai:v0.33.0"),
    ),
    Case("image-docker-hub-other-repo", "allowedRegistries", _IMAGE, _image("vllm/vllm-openai-evil:v0.33.0")),
    Case("image-implicit-library", "allowedRegistries", _IMAGE, _image("ubuntu:24.04")),
    Case(
        "image-prefix-not-a-path",
        "allowedRegistries",
        _IMAGE,
        _image("registry.example.com/mirror-evil/vllm:1"),
    ),
    Case("image-registry-as-path", "allowedRegistries", _IMAGE, _image("localhost:5000.evil.com/vllm:1")),
    Case(
        "image-other-digest", "allowedRegistries", _IMAGE, _image("evil.example.com/vllm@sha256:" + "f" * 64)
    ),
    Case("trust-remote-code", "allowTrustRemoteCode", _TRUST, _args("--trust-remote-code")),
    Case(
        "trust-remote-code-value",
        "allowTrustRemoteCode",
        _TRUST,
        _args("--max-num-seqs=8", "--trust-remote-code=true"),
    ),
    Case("trust-remote-code-underscore", "allowTrustRemoteCode", _TRUST, _args("--trust_remote_code")),
    Case("trust-remote-code-abbreviated", "allowTrustRemoteCode", _TRUST, _args("--trust-remote")),
    Case(
        "service-nodeport", "allowedServiceTypes", _SERVICE, {"service": {"type": "NodePort"}, "auth": _KEY}
    ),
    Case(
        "priority-system-node-critical",
        "allowedPriorityClasses",
        _PRIORITY,
        {"scheduling": {"priorityClassName": "system-node-critical"}},
    ),
    Case("toleration-every-taint", "allowedTolerations", _TOLERATIONS, _tolerations({"operator": "Exists"})),
    Case(
        "toleration-control-plane",
        "allowedTolerations",
        _TOLERATIONS,
        _tolerations(
            {"key": "dedicated", "operator": "Exists"},
            {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"},
        ),
    ),
    Case(
        "toleration-empty-key",
        "allowedTolerations",
        _TOLERATIONS,
        _tolerations({"key": "", "operator": "Exists"}),
    ),
    Case(
        "model-other-org",
        "allowedModels",
        _MODEL,
        {"model": {"id": "evil/Qwen3-235B", "cache": {"size": "1Gi"}}},
    ),
    Case(
        "model-prefix-is-no-wildcard",
        "allowedModels",
        _MODEL,
        {"model": {"id": "org/exact-model-2", "cache": {"size": "1Gi"}}},
    ),
]

ADMITTED: list[tuple[str, dict[str, Any]]] = [
    ("defaults", {}),
    ("image-allowed-repository", _image("docker.io/vllm/vllm-openai:v0.33.0")),
    ("image-docker-hub-short-name", _image("vllm/vllm-openai@sha256:" + "a" * 64)),
    ("image-under-a-path", _image("registry.example.com/mirror/vllm/vllm-openai:v0.33.0")),
    ("image-registry-with-port", _image("localhost:5000/vllm:dev")),
    ("image-pinned-digest", _image(f"quay.io/anyone/vllm@{DIGEST}")),
    ("other-args", _args("--max-num-seqs=8", "--trust-request-chat-template", "--no-trust-remote-code")),
    ("service-load-balancer", {"service": {"type": "LoadBalancer"}, "auth": _KEY}),
    ("priority-allowed", {"scheduling": {"priorityClassName": "llm-online"}}),
    (
        "tolerations-allowed",
        _tolerations(
            {"key": "dedicated", "operator": "Equal", "value": "llm"},
            {"key": "example.com/spot", "operator": "Exists"},
        ),
    ),
    ("model-by-prefix", {"model": {"id": "Qwen/Qwen3-30B-A3B", "cache": {"size": "1Gi"}}}),
    ("model-exact", {"model": {"id": "org/exact-model", "cache": {"size": "1Gi"}}}),
]
"""Resources the same parameters admit, each at the edge of a rule."""


def admitted(case_id: str, spec: dict[str, Any]) -> dict[str, Any]:
    return resource({"spec": spec}, name=f"tenant-ok-{case_id}")


def by_param() -> dict[str, int]:
    """Cases per parameter (every rule has at least one)."""
    out: dict[str, int] = {}
    for case in CASES:
        out[case.param] = out.get(case.param, 0) + 1
    return out
