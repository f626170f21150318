"""The LeaderWorkerSet controller (sigs.k8s.io/lws) beside the local control plane.

Its CRD and webhook configurations come from the LWS Go module (`tools.module_dir("lws")`,
never copied into the repository); its binary is built from the same module by `make tools`.
It runs as a child process on loopback with the admin kubeconfig: the controllers (groups,
pods) and the webhooks that default and validate LeaderWorkerSets and give each pod of a
group its LWS_* environment. The apiserver reaches the webhooks by a url-form clientConfig
(https://127.0.0.1:PORT/...), their certificate signed by the cluster's CA, as the bench's
neighbour webhook does. The pod webhooks apply only in namespaces that carry `NAMESPACE_LABEL`
(a test's own), so no other test's pods depend on this process.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import socket
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from e2e.devcluster import cluster as local_cluster
from e2e.devcluster import pki
from e2e.devcluster.kube import kubectl, wait_established, wait_for
from e2e.devcluster.toolchain import tools

CRD_NAME = "leaderworkersets.leaderworkerset.x-k8s.io"
CRD_FILE = "config/crd/bases/leaderworkerset.x-k8s.io_leaderworkersets.yaml"
WEBHOOK_FILE = "config/webhook/manifests.yaml"
NAMESPACE_LABEL = ("qwen-e2e.io/leaderworkerset", "enabled")
CONFIG_PREFIX = "qwen-e2e-lws"
"""Names of the webhook configurations this module registers (cluster-scoped)."""
SERVER_EXTENSIONS = (
    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
    "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n"
)


def crd_path() -> Path:
    return tools.module_dir("lws") / CRD_FILE


def install_crd() -> None:
    """The real LeaderWorkerSet CRD (server-side apply), Established."""
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd_path()))
    wait_established(f"crd/{CRD_NAME}")


def remove_crd() -> None:
    kubectl("delete", "crd", CRD_NAME, "--ignore-not-found", "--wait=true", "--timeout=120s")


def webhook_configurations(base_url: str, ca: bytes) -> list[dict[str, Any]]:
    """LWS's own webhook configurations, each service reference turned into a url on loopback,
    scoped to the namespaces that carry NAMESPACE_LABEL."""
    docs = [d for d in yaml.safe_load_all((tools.module_dir("lws") / WEBHOOK_FILE).read_text()) if d]
    out = []
    for doc in docs:
        doc = copy.deepcopy(doc)
        doc["metadata"] = {"name": f"{CONFIG_PREFIX}-{doc['kind'].lower()}"}
        for hook in doc["webhooks"]:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": f"{base_url}{path}", "caBundle": base64.b64encode(ca).decode()}
            hook["namespaceSelector"] = {"matchLabels": dict([NAMESPACE_LABEL])}
            hook["timeoutSeconds"] = 10
        out.append(doc)
    return out


@dataclass
class Controller:
    """The running LWS controller: its process and log."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    health_port: int

    def log_tail(self) -> str:
        return local_cluster.log_tail(self.log_path, lines=40)

    def healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the LWS controller exited; log tail:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/readyz", timeout=2) as resp:
                return int(resp.status) == 200
        except OSError:
            return False


def _serving_tls(port: int, ca: Path) -> bool:
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=2) as sock,
            context.wrap_socket(sock, server_hostname="127.0.0.1"),
        ):
            return True
    except OSError:
        return False


def _config(workdir: Path, webhook_port: int, health_port: int) -> Path:
    certs = workdir / "certs"
    config = {
        "apiVersion": "config.lws.x-k8s.io/v1alpha1",
        "kind": "Configuration",
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},  # the cluster's CA signed ours
        "webhook": {"host": "127.0.0.1", "port": webhook_port, "certDir": str(certs)},
        "metrics": {"bindAddress": "0"},
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
    }
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _certificates(kubeconfig: Path, workdir: Path) -> Path:
    """tls.crt/tls.key for 127.0.0.1, signed by the local cluster's CA; returns the CA file."""
    cluster_pki = kubeconfig.parent / "pki"
    if not (cluster_pki / "ca.key").exists():
        raise AssertionError(f"no CA key in {cluster_pki}: the LWS webhooks need the local control plane")
    pki.sign(cluster_pki, "lws-webhook", "/CN=lws-webhook", SERVER_EXTENSIONS)
    certs = workdir / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    (certs / "tls.crt").write_bytes((cluster_pki / "lws-webhook.crt").read_bytes())
    (certs / "tls.key").write_bytes((cluster_pki / "lws-webhook.key").read_bytes())
    (certs / "tls.key").chmod(0o600)
    return cluster_pki / "ca.crt"


@contextlib.contextmanager
def running(kubeconfig: Path, workdir: Path) -> Iterator[Controller]:
    """The controller started, its webhooks registered and answering; all undone afterwards."""
    binary = tools.require("lws")
    ca = _certificates(kubeconfig, workdir)
    webhook_port, health_port = local_cluster.free_port(), local_cluster.free_port()
    config = _config(workdir, webhook_port, health_port)
    log_path = workdir / "lws-controller.log"
    env = {"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin"}
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            [str(binary), "--config", str(config), "--kubeconfig", str(kubeconfig)],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    controller = Controller(proc, log_path, health_port)
    configs = webhook_configurations(f"https://127.0.0.1:{webhook_port}", ca.read_bytes())
    try:
        wait_for(controller.healthy, timeout=60, describe=f"LWS controller ready (log: {log_path})")
        wait_for(lambda: _serving_tls(webhook_port, ca), timeout=60, describe="LWS webhooks serving")
        kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(configs))
        yield controller
    finally:
        for doc in configs:
            kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"], "--ignore-not-found", check=False)
        local_cluster.stop_child(proc)
        print(f"LWS controller log: {log_path}")
