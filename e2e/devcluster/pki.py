"""Certificates for the local control plane, made with the `openssl` command line tool.

One CA signs the apiserver's serving certificate and a client certificate per component;
RBAC sees each component under its well-known user name (system:kube-scheduler, ...).
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Client:
    """A client identity: file stem, user name (CN) and groups (O)."""

    stem: str
    user: str
    groups: tuple[str, ...] = ()


CLIENTS = (
    Client("admin", "kubernetes-admin", ("system:masters",)),
    Client("kube-controller-manager", "system:kube-controller-manager"),
    Client("kube-scheduler", "system:kube-scheduler"),
    # kwok plays every kubelet: it writes node, lease and pod status cluster-wide.
    Client("kwok", "system:kwok", ("system:masters",)),
)

# The aggregation layer's identity towards extension apiservers (no RBAC rights of its own).
FRONT_PROXY = Client("front-proxy-client", "front-proxy-client")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _subject(user: str, groups: tuple[str, ...]) -> str:
    return "".join(f"/O={g}" for g in groups) + f"/CN={user}"


def make_ca(pki: Path) -> None:
    _openssl(
        "req", "-x509", *_EC, "-days", "3650",
        "-keyout", str(pki / "ca.key"), "-out", str(pki / "ca.crt"),
        "-subj", "/CN=qwen-operator-e2e-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    )  # fmt: skip


def sign(pki: Path, stem: str, subject: str, extensions: str) -> None:
    """Key + certificate `<stem>.key`/`<stem>.crt` signed by the CA."""
    key, crt = pki / f"{stem}.key", pki / f"{stem}.crt"
    with tempfile.TemporaryDirectory() as tmp:
        csr, ext = Path(tmp) / "req.csr", Path(tmp) / "ext.cnf"
        ext.write_text(extensions)
        _openssl("req", *_EC, "-keyout", str(key), "-out", str(csr), "-subj", subject)
        _openssl(
            "x509", "-req", "-in", str(csr), "-days", "365",
            "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"), "-CAcreateserial",
            "-out", str(crt), "-extfile", str(ext),
        )  # fmt: skip


def make_server(pki: Path, ips: list[str], names: list[str]) -> None:
    san = ",".join([f"IP:{ip}" for ip in ips] + [f"DNS:{n}" for n in names])
    sign(
        pki,
        "apiserver",
        "/CN=kube-apiserver",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage=serverAuth\nsubjectAltName={san}\n",
    )


def make_kubelet_server(pki: Path) -> None:
    """kwok's server (every simulated node's kubelet API): the apiserver verifies it against the
    CA (--kubelet-certificate-authority) at the nodes' InternalIP, 127.0.0.1."""
    sign(
        pki,
        "kwok-serving",
        "/CN=kwok-kubelet",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )


def make_client(pki: Path, client: Client) -> None:
    sign(
        pki,
        client.stem,
        _subject(client.user, client.groups),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\n",
    )


def make_service_account_keys(pki: Path) -> None:
    """The key pair the apiserver signs (and verifies) service-account tokens with."""
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
             "-out", str(pki / "sa.key"))  # fmt: skip
    _openssl("pkey", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))


def generate(pki: Path, service_ip: str) -> None:
    """Everything the control plane needs, written under `pki`."""
    pki.mkdir(parents=True, exist_ok=True)
    make_ca(pki)
    names = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"]
    names.append("kubernetes.default.svc.cluster.local")
    make_server(pki, ["127.0.0.1", service_ip], names)
    make_kubelet_server(pki)
    for client in (*CLIENTS, FRONT_PROXY):
        make_client(pki, client)
    make_service_account_keys(pki)
