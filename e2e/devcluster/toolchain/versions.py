"""Pinned versions of the control-plane tools: one place, so the cache key follows them."""

from __future__ import annotations

KUBERNETES = "v1.36.3"
ETCD = "v3.6.16"
KWOK = "v0.8.0"

# Staging modules are published as v0.<minor>.<patch> for Kubernetes v1.<minor>.<patch>.
STAGING = "v0" + KUBERNETES[len("v1") :]

# One Go module per tool (directory under e2e/devcluster/toolchain/) and the main packages it builds.
KUBERNETES_TOOLS = {
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
    "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
    "kubectl": "k8s.io/kubernetes/cmd/kubectl",
}
ETCD_TOOLS = {"etcd": "go.etcd.io/etcd/server/v3"}
KWOK_TOOLS = {"kwok": "sigs.k8s.io/kwok/cmd/kwok"}


def cache_key() -> str:
    """Cache directory name: every pinned version, so a bump never reuses stale binaries."""
    return f"k8s-{KUBERNETES}_etcd-{ETCD}_kwok-{KWOK}"
