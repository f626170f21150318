"""Command lines, kubeconfigs and the audit policy of the local control plane's components."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import yaml

from e2e.devcluster.nodes import KWOK_ANNOTATION
from e2e.devcluster.toolchain import build
from e2e.devcluster.toolchain.gomod import TOOLCHAIN_DIR

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"  # the `kubernetes` Service: first address of the service range
POD_CIDR = "10.244.0.0/16"
ISSUER = "https://kubernetes.default.svc.cluster.local"
STAGES = TOOLCHAIN_DIR / "kwok-stages.yaml"
LOGS_CRD = build.logs_crd()
"""kwok's `Logs` kind: which file a simulated container's log is (the real-process harness);
from kwok's Go module, by `make toolchain` (toolchain/build.py)."""

# Metadata for every request (who, verb, resource, response code) but no bodies: enough
# for tests to count write requests by user without growing the log by megabytes.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata"}],
}


@dataclass(frozen=True)
class Layout:
    """Where things live for one cluster: state directory, binaries, ports."""

    state: Path
    bin: Path
    ports: dict[str, int]

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.state / "audit.log"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    def log(self, name: str) -> Path:
        return self.state / "logs" / f"{name}.log"

    def component_kubeconfig(self, stem: str) -> Path:
        return self.kubeconfig if stem == "admin" else self.state / f"{stem}.kubeconfig"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def kubeconfig(layout: Layout, stem: str) -> str:
    """A self-contained kubeconfig (certificates embedded) for client `stem`."""
    pki = layout.pki
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "qwen-e2e",
                "cluster": {
                    "server": layout.server,
                    "certificate-authority-data": _b64(pki / "ca.crt"),
                },
            }
        ],
        "users": [
            {
                "name": stem,
                "user": {
                    "client-certificate-data": _b64(pki / f"{stem}.crt"),
                    "client-key-data": _b64(pki / f"{stem}.key"),
                },
            }
        ],
        "contexts": [{"name": "qwen-e2e", "context": {"cluster": "qwen-e2e", "user": stem}}],
        "current-context": "qwen-e2e",
    }
    return yaml.safe_dump(doc, sort_keys=False)


def etcd(layout: Layout) -> list[str]:
    client = f"http://127.0.0.1:{layout.ports['etcd']}"
    peer = f"http://127.0.0.1:{layout.ports['etcd-peer']}"
    return [
        str(layout.bin / "etcd"),
        "--name=e2e",
        f"--data-dir={layout.state / 'etcd'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=e2e={peer}",
        "--unsafe-no-fsync=true",  # a throw-away test cluster: trade durability for speed
        "--log-level=warn",
    ]


def apiserver(layout: Layout) -> list[str]:
    pki = layout.pki
    return [
        str(layout.bin / "kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{layout.ports['etcd']}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={layout.ports['apiserver']}",
        f"--cert-dir={pki}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        "--authorization-mode=RBAC",
        "--anonymous-auth=true",  # /readyz, /livez and /version stay readable, as on kubeadm
        f"--service-account-issuer={ISSUER}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allow-privileged=true",
        # The `kubernetes` Service cannot point at a loopback address, and no pod here
        # could reach it anyway: leave its endpoints alone instead of failing every 10 s.
        "--endpoint-reconciler-type=none",
        # The aggregation layer's front proxy (and what controllers read to trust it).
        f"--requestheader-client-ca-file={pki / 'ca.crt'}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
        f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
        f"--audit-policy-file={layout.state / 'audit-policy.yaml'}",
        f"--audit-log-path={layout.audit_log}",
        "--audit-log-maxsize=200",
        "--audit-log-maxbackup=1",
        # pods/log: the apiserver proxies to the node's kubelet port, kwok's server here, whose
        # certificate our CA signed for 127.0.0.1 (the nodes' InternalIP).
        f"--kubelet-certificate-authority={pki / 'ca.crt'}",
        "--kubelet-preferred-address-types=InternalIP",
        "--v=1",
    ]


def _controller_auth(layout: Layout, stem: str, port: str) -> list[str]:
    config = layout.component_kubeconfig(stem)
    return [
        f"--kubeconfig={config}",
        f"--authentication-kubeconfig={config}",
        f"--authorization-kubeconfig={config}",
        "--bind-address=127.0.0.1",
        f"--secure-port={layout.ports[port]}",
        f"--cert-dir={layout.state / stem}",
        "--leader-elect=false",
        "--v=1",
    ]


def controller_manager(layout: Layout) -> list[str]:
    pki = layout.pki
    return [
        str(layout.bin / "kube-controller-manager"),
        *_controller_auth(layout, "kube-controller-manager", "controller-manager"),
        "--controllers=*",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}",
        f"--cluster-signing-key-file={pki / 'ca.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allocate-node-cidrs=false",
    ]


def scheduler(layout: Layout) -> list[str]:
    return [
        str(layout.bin / "kube-scheduler"),
        *_controller_auth(layout, "kube-scheduler", "scheduler"),
    ]


def kwok(layout: Layout) -> list[str]:
    key, value = KWOK_ANNOTATION
    return [
        str(layout.bin / "kwok"),
        f"--kubeconfig={layout.component_kubeconfig('kwok')}",
        f"--config={STAGES}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={key}={value}",
        f"--cidr={POD_CIDR}",
        # kwok's server plays every node's kubelet API (container logs): the nodes' InternalIP is
        # loopback and their kubelet port kwok's, so `kubectl logs` and the operator's pods/log
        # reads reach it through the apiserver, as on a real cluster.
        "--node-ip=127.0.0.1",
        f"--node-port={layout.ports['kwok']}",
        f"--server-address=127.0.0.1:{layout.ports['kwok']}",
        f"--tls-cert-file={layout.pki / 'kwok-serving.crt'}",
        f"--tls-private-key-file={layout.pki / 'kwok-serving.key'}",
        "--enable-crds=Logs",
        "--node-lease-duration-seconds=40",
    ]


# Start order; `down` stops them in reverse.
COMMANDS = {
    "etcd": etcd,
    "kube-apiserver": apiserver,
    "kube-controller-manager": controller_manager,
    "kube-scheduler": scheduler,
    "kwok": kwok,
}
PORTS = ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler", "kwok")
