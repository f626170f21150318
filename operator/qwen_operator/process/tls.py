"""The certificate /metrics is served with: a mounted one, or a self-signed one made at start.

The metrics endpoint takes a bearer token (access.py), which must not cross the network in
clear text, so it is HTTPS only. Two ways, as controller-runtime's metrics server offers:

- `QWEN_OPERATOR_METRICS_CERT_DIR` names a directory holding `tls.crt` and `tls.key`: a
  mounted Secret of type kubernetes.io/tls (cert-manager's, say). It is read again when either
  file changes (a renewal swaps a mounted Secret's files in place), so no restart is needed;
  Prometheus can then check it against your CA.
- Unset: a self-signed certificate, made in memory at each start (its key never leaves the
  process but for a moment in a private temporary directory, since Python's ssl module loads
  keys from files only). Prometheus scrapes it with `insecureSkipVerify`: the token and the
  metrics are still encrypted, but the scraper does not know whom it talks to, so mount a
  certificate where the network between them is not trusted.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import ssl
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

log = logging.getLogger(__name__)

CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
"""The names a kubernetes.io/tls Secret gives its files when mounted."""
SELF_SIGNED_NAMES = ("localhost", "127.0.0.1", "::1")
"""What the self-signed certificate names: no pod, no Service (it proves nothing either way,
and a certificate is shown to anyone who connects, before any token is asked for)."""
SELF_SIGNED_DAYS = 365
"""Longer than any pod lives between restarts; a new one is made at each start."""


def self_signed(
    names: Sequence[str] = SELF_SIGNED_NAMES, days: int = SELF_SIGNED_DAYS
) -> tuple[bytes, bytes]:
    """(certificate, private key), both PEM: an ECDSA P-256 key, the names as subject
    alternative names (IP addresses as such)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qwen-operator metrics")])
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # a client's clock a little behind
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _load_pem(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """Load a PEM pair that exists only in memory: through a directory only this user can read,
    removed at once."""
    with tempfile.TemporaryDirectory(prefix="qwen-operator-tls-") as tmp:
        cert_path, key_path = Path(tmp, CERT_FILE), Path(tmp, KEY_FILE)
        cert_path.write_bytes(cert)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        context.load_cert_chain(cert_path, key_path)


class ServerCertificate:
    """The server's SSLContext, and the mounted files it was loaded from (if any)."""

    def __init__(self, cert_dir: Path | None) -> None:
        self.cert_dir = cert_dir
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._seen: tuple[tuple[int, int], ...] | None = None
        if cert_dir is None:
            _load_pem(self.context, *self_signed())
            log.info("metrics: a self-signed certificate (no QWEN_OPERATOR_METRICS_CERT_DIR)")
        else:
            self._load()
            log.info("metrics: the certificate of %s", cert_dir)

    @property
    def is_self_signed(self) -> bool:
        return self.cert_dir is None

    def _stamp(self) -> tuple[tuple[int, int], ...]:
        """Identity and age of both files (a Secret's files are links; stat follows them)."""
        assert self.cert_dir is not None
        stats = (os.stat(self.cert_dir / name) for name in (CERT_FILE, KEY_FILE))
        return tuple((s.st_ino, s.st_mtime_ns) for s in stats)

    def _load(self) -> None:
        assert self.cert_dir is not None
        stamp = self._stamp()
        self.context.load_cert_chain(self.cert_dir / CERT_FILE, self.cert_dir / KEY_FILE)
        self._seen = stamp

    def refresh(self) -> bool:
        """Load the mounted pair again if it changed; True if it did. Connections made after
        this use it. A pair that cannot be read or does not match (caught mid-update) keeps
        the one in use, and is tried again next time."""
        if self.cert_dir is None:
            return False
        try:
            if self._stamp() == self._seen:
                return False
            self._load()
        except (OSError, ssl.SSLError) as exc:
            log.warning("metrics: kept the last certificate, %s did not load: %s", self.cert_dir, exc)
            return False
        log.info("metrics: loaded the renewed certificate of %s", self.cert_dir)
        return True


def cert_dir_from_env() -> Path | None:
    value = os.environ.get("QWEN_OPERATOR_METRICS_CERT_DIR", "")
    return Path(value) if value else None
