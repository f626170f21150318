"""The two listeners, for real on loopback: /metrics over HTTPS behind the reviews (401, 403,
200, 503), /healthz and /readyz in plain HTTP on their own port; the certificate, self-signed
or mounted and renewed in place."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request
from cryptography import x509

from qwen_operator.process import access, endpoints, health, metrics, tls
from testkit.reviews import USER, Apiserver

T = TypeVar("T")
INSECURE = ssl.create_default_context()
INSECURE.check_hostname = False
INSECURE.verify_mode = ssl.CERT_NONE
"""What a ServiceMonitor's `insecureSkipVerify: true` makes of the self-signed certificate."""


def refused(code: str) -> float:
    return metrics.REGISTRY.get_sample_value("qwen_operator_metrics_refused_total", {"code": code}) or 0.0


def serve(
    scenario: Callable[[endpoints.Servers], Awaitable[T]],
    api: Apiserver,
    verdict: Callable[[], tuple[bool, str]] = lambda: (True, "ok; leading; apiserver answering\n"),
    cert_dir: Path | None = None,
    cert_check_seconds: float = endpoints.CERT_CHECK_SECONDS,
) -> T:
    """Run `scenario` against both listeners on loopback (ports the kernel picks)."""

    async def run() -> T:
        config = endpoints.Config("127.0.0.1", 0, 0, cert_dir)
        servers = await endpoints.start(config, access.Reviewer(api), verdict, verdict, cert_check_seconds)
        try:
            return await scenario(servers)
        finally:
            await servers.stop()

    return asyncio.run(run())


async def get(
    url: str, token: str | None = None, context: ssl.SSLContext | bool = INSECURE
) -> tuple[int, str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers, ssl=context) as resp:
        return resp.status, await resp.text(), resp.headers


def test_metrics_need_a_token_rbac_allows() -> None:
    api = Apiserver({"reader": USER, "nobody": {**USER, "username": "system:serviceaccount:x:nobody"}},
                    {USER["username"]})  # fmt: skip
    before = {code: refused(code) for code in ("401", "403")}

    async def scenario(servers: endpoints.Servers) -> dict[str, tuple[int, str, Any]]:
        url = f"https://127.0.0.1:{servers.port(servers.metrics)}/metrics"
        return {
            "none": await get(url),
            "made-up": await get(url, "made-up"),
            "nobody": await get(url, "nobody"),
            "reader": await get(url, "reader"),
            "basic": await get(url.replace("https://", "https://user:pass@")),
        }

    got = serve(scenario, api)
    assert got["none"][0] == 401 and got["none"][2]["WWW-Authenticate"].startswith("Bearer")
    assert got["made-up"][0] == 401 and got["basic"][0] == 401
    assert got["nobody"][0] == 403 and "get /metrics is not allowed" in got["nobody"][1]
    assert got["reader"][0] == 200 and "qwen_operator_reconciliations_total" in got["reader"][1]
    assert all("qwen_operator_" not in got[k][1] for k in ("none", "made-up", "nobody", "basic"))
    assert refused("401") == before["401"] + 3 and refused("403") == before["403"] + 1


def test_metrics_are_never_served_in_clear_text() -> None:
    async def scenario(servers: endpoints.Servers) -> str:
        try:
            status, _, _ = await get(f"http://127.0.0.1:{servers.port(servers.metrics)}/metrics", "reader")
        except aiohttp.ClientError as exc:
            return type(exc).__name__
        return f"answered {status}"

    assert not serve(scenario, Apiserver({"reader": USER}, {USER["username"]})).startswith("answered")


def test_an_apiserver_that_cannot_review_gives_503_and_no_metrics() -> None:
    api = Apiserver({"reader": USER}, {USER["username"]})
    api.down = True
    before = refused("503")

    async def scenario(servers: endpoints.Servers) -> tuple[int, str, Any]:
        return await get(f"https://127.0.0.1:{servers.port(servers.metrics)}/metrics", "reader")

    status, body, _ = serve(scenario, api)
    assert status == 503 and "qwen_operator_" not in body
    assert refused("503") == before + 1


def test_health_is_plain_http_on_its_own_port_with_no_credentials() -> None:
    parts = {"reconcile threads": True}

    def verdict() -> tuple[bool, str]:
        return health.report(parts, "standing by", health.Contact())

    async def scenario(servers: endpoints.Servers) -> list[tuple[int, str]]:
        base = f"http://127.0.0.1:{servers.port(servers.health)}"
        out = []
        for path in ("/healthz", "/readyz"):
            status, body, _ = await get(base + path, context=False)
            out.append((status, body))
        parts["reconcile threads"] = False
        status, body, _ = await get(base + "/healthz", context=False)
        out.append((status, body))
        status, body, _ = await get(base + "/metrics", context=False)  # not here, token or not
        out.append((status, body))
        assert servers.port(servers.health) != servers.port(servers.metrics)
        return out

    live, ready, dead, no_metrics = serve(scenario, Apiserver({}, set()), verdict)
    assert live == ready == (200, "ok; standing by; apiserver answering\n")
    assert dead == (503, "unhealthy: reconcile threads stopped; standing by; apiserver answering\n")
    assert no_metrics[0] == 404


def peer_certificate(port: int, cafile: Path | None) -> bytes:
    """The certificate the server presents, the handshake verified against `cafile` for the
    name localhost (or not verified at all without one)."""
    context = ssl.create_default_context(cafile=str(cafile)) if cafile else INSECURE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_without_a_mounted_certificate_a_self_signed_one_names_no_pod() -> None:
    async def scenario(servers: endpoints.Servers) -> bytes:
        return await asyncio.to_thread(peer_certificate, servers.port(servers.metrics), None)

    der = serve(scenario, Apiserver({}, set()))
    text = ssl.DER_cert_to_PEM_cert(der)
    cert = x509.load_pem_x509_certificate(text.encode())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(str(n.value) for n in names) == sorted(["localhost", "127.0.0.1", "::1"])
    assert cert.issuer == cert.subject  # self-signed
    assert socket.gethostname() not in repr(cert.subject) + repr(names)


def write_pair(directory: Path) -> Path:
    """A kubernetes.io/tls Secret as mounted: tls.crt and tls.key, links into a `..data`
    directory that a renewal swaps (as the kubelet does); returns the certificate's file."""
    cert, key = tls.self_signed(["localhost"])
    version = directory / f"..{len(list(directory.iterdir()))}"
    version.mkdir()
    (version / tls.CERT_FILE).write_bytes(cert)
    (version / tls.KEY_FILE).write_bytes(key)
    data = directory / "..data"
    tmp = directory / "..data_tmp"
    tmp.symlink_to(version.name)
    tmp.replace(data)
    for name in (tls.CERT_FILE, tls.KEY_FILE):
        if not (directory / name).is_symlink():
            (directory / name).symlink_to(f"..data/{name}")
    return version / tls.CERT_FILE


def test_a_mounted_certificate_is_served_and_a_renewal_is_picked_up(tmp_path: Path) -> None:
    mounted = tmp_path / "metrics-tls"
    mounted.mkdir()
    first = write_pair(mounted)
    cafiles = tmp_path / "ca"
    cafiles.mkdir()
    shutil.copy(first, cafiles / "first.crt")

    async def scenario(servers: endpoints.Servers) -> tuple[bytes, bytes, bytes]:
        port = servers.port(servers.metrics)
        before = await asyncio.to_thread(peer_certificate, port, cafiles / "first.crt")
        second = write_pair(mounted)  # the Secret renewed: its files swapped under the links
        shutil.copy(second, cafiles / "second.crt")
        for _ in range(100):  # the watch looks every 0.05 s here (60 s in the operator)
            await asyncio.sleep(0.05)
            after = await asyncio.to_thread(peer_certificate, port, None)
            if after != before:
                break
        verified = await asyncio.to_thread(peer_certificate, port, cafiles / "second.crt")
        return before, after, verified

    before, after, verified = serve(scenario, Apiserver({}, set()), cert_dir=mounted, cert_check_seconds=0.05)
    assert before != after == verified
    assert ssl.DER_cert_to_PEM_cert(before).strip() == (cafiles / "first.crt").read_text().strip()


def test_a_broken_renewal_keeps_the_certificate_in_use(tmp_path: Path) -> None:
    mounted = tmp_path / "metrics-tls"
    mounted.mkdir()
    write_pair(mounted)
    certificate = tls.ServerCertificate(mounted)
    (mounted / "..data" / tls.KEY_FILE).write_text("not a key")  # caught mid-update
    assert certificate.refresh() is False
    assert certificate.refresh() is False


def test_a_bearer_header_is_read_in_any_case_and_nothing_else_is_a_token() -> None:
    def token(header: str | None) -> str | None:
        headers = {"Authorization": header} if header is not None else {}
        return endpoints.bearer(make_mocked_request("GET", "/metrics", headers=headers))

    assert token("Bearer abc") == token("bearer abc") == "abc"
    assert token(None) is token("Basic dXNlcjpwYXNz") is token("Bearer ") is token("abc") is None


@pytest.mark.parametrize("name", ["QWEN_OPERATOR_METRICS_PORT", "QWEN_OPERATOR_HEALTH_PORT"])
def test_ports_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "9999")
    monkeypatch.setenv("QWEN_OPERATOR_METRICS_CERT_DIR", "/etc/qwen-operator/metrics-tls")
    config = endpoints.Config.from_env()
    ports = {"QWEN_OPERATOR_METRICS_PORT": config.metrics_port}
    ports["QWEN_OPERATOR_HEALTH_PORT"] = config.health_port
    assert ports[name] == 9999
    assert config.cert_dir == Path("/etc/qwen-operator/metrics-tls")
