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


# GitOps and packaging tools (e2e/devcluster/toolchain/tools.py): each its own Go module and
# its own cache directory, so none of them changes cache_key() above.
HELM = "v3.22.0"
ACTIONLINT = "v1.7.12"
CLI_UTILS = "v0.37.2"  # kstatus: what Flux's health checks and kpt compute
GOPHER_LUA = "v1.1.1"  # the Lua engine Argo CD pins (argo-cd's go.mod, checked by the e2e suite)
GOPHER_JSON = "v0.0.0-20190114024228-97fed8db8427"  # how Argo CD reads the table a health script returns
SIGS_YAML = "v1.4.0"
PROMETHEUS = "v0.316.0"  # Prometheus 3.16 (Go module tags v0.3MM.P): promtool, the server, PromQL's parser
PROMETHEUS_ADAPTER = "v0.12.0"  # serves custom.metrics.k8s.io from Prometheus, for the HPA
CYCLONUS = "v0.5.6"  # its NetworkPolicy engine (pkg/matcher): what a policy admits, with no CNI to enforce it

# Modules whose files the suite applies or checks against (never copied into the repository):
# Argo CD (its Application CRD and its own health-script tests), Flux (Kustomization and
# GitRepository CRDs), the Prometheus Operator (the real ServiceMonitor and PrometheusRule CRDs),
# KEDA (ScaledObject) and the Gateway API Inference Extension (InferencePool).
ARGO_CD = "v3.2.0"
FLUX_KUSTOMIZE_CONTROLLER = "v1.9.6"
FLUX_SOURCE_CONTROLLER = "v1.9.6"
PROMETHEUS_OPERATOR = "v0.85.0"
KEDA = "v2.21.0"  # the ScaledObject CRD
GATEWAY_API_INFERENCE_EXTENSION = "v1.0.0"  # the InferencePool CRD (inference.networking.k8s.io/v1)
LWS = "v0.8.0"  # LeaderWorkerSet: its CRD and its controller (with webhooks), for multi-node replicas
