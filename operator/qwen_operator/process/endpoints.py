"""The operator's two listeners, as kubebuilder lays them out today:

- **/metrics on `QWEN_OPERATOR_METRICS_PORT` (8443), HTTPS only**, for whoever the cluster's
  RBAC allows `get` on the non-resource URL /metrics (access.py; the certificate: tls.py). It
  names every tenant's resources and namespaces.
- **/healthz and /readyz on `QWEN_OPERATOR_HEALTH_PORT` (8081), plain HTTP**, for the
  kubelet, which probes without credentials. Their body says only what a restart would cure
  and what the replica is doing (health.py), never which pod leads nor what an error said:
  anyone who reaches the pod reads it. The details go to the log.

Both bind `QWEN_OPERATOR_HTTP_HOST` (0.0.0.0). Both run on the operator's event loop, so a
stuck loop fails liveness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from qwen_operator.process import access, metrics, tls

log = logging.getLogger(__name__)

METRICS_PORT = 8443
HEALTH_PORT = 8081
CERT_CHECK_SECONDS = 60.0
"""How often a mounted certificate is looked at for a renewal (cert-manager renews well ahead)."""

Verdict = Callable[[], tuple[bool, str]]
"""(healthy, the body), as health.report gives it."""


@dataclass(frozen=True)
class Config:
    host: str = "0.0.0.0"
    metrics_port: int = METRICS_PORT
    health_port: int = HEALTH_PORT
    cert_dir: Path | None = None

    @classmethod
    def from_env(cls) -> Config:
        return cls(
            host=os.environ.get("QWEN_OPERATOR_HTTP_HOST", "0.0.0.0"),
            metrics_port=int(os.environ.get("QWEN_OPERATOR_METRICS_PORT", str(METRICS_PORT))),
            health_port=int(os.environ.get("QWEN_OPERATOR_HEALTH_PORT", str(HEALTH_PORT))),
            cert_dir=tls.cert_dir_from_env(),
        )


def bearer(request: web.Request) -> str | None:
    """The token of an `Authorization: Bearer ...` header (the scheme in any case), else None."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _refused(status: int, text: str) -> web.Response:
    metrics.METRICS_REFUSED.labels(code=str(status)).inc()
    headers = {"WWW-Authenticate": 'Bearer realm="qwen-operator metrics"'} if status == 401 else None
    return web.Response(status=status, text=text + "\n", headers=headers)


def metrics_app(reviewer: access.Reviewer) -> web.Application:
    """GET /metrics for the allowed (the reviews run in a thread: the client is blocking)."""

    async def metrics_view(request: web.Request) -> web.Response:
        token = bearer(request)
        if token is None:
            return _refused(401, "Unauthorized: a bearer token is required")
        loop = asyncio.get_running_loop()
        try:
            verdict = await loop.run_in_executor(None, reviewer.verdict, token)
        except Exception as exc:  # no answer from the apiserver: nothing to decide on
            log.warning("metrics: could not review a token (503): %s", exc)
            return _refused(503, "Service Unavailable: the token could not be reviewed")
        if verdict.status == 401:
            return _refused(401, "Unauthorized")
        if verdict.status != 200:
            return _refused(verdict.status, f"Forbidden: {access.VERB} {access.PATH} is not allowed")
        body = await loop.run_in_executor(None, metrics.exposition)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get(access.PATH, metrics_view)
    return app


def health_app(healthy: Verdict, ready: Verdict) -> web.Application:
    """GET /healthz (liveness) and /readyz (readiness)."""

    def view(verdict: Verdict) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def answer(_: web.Request) -> web.Response:
            ok, text = verdict()
            return web.Response(text=text, status=200 if ok else 503)

        return answer

    app = web.Application()
    app.router.add_get("/healthz", view(healthy))
    app.router.add_get("/readyz", view(ready))
    return app


async def _site(
    app: web.Application, host: str, port: int, context: ssl.SSLContext | None = None
) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=context).start()
    return runner


@dataclass
class Servers:
    """Both listeners, and the task that watches a mounted certificate."""

    metrics: web.AppRunner
    health: web.AppRunner
    certificate: tls.ServerCertificate
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def port(self, runner: web.AppRunner) -> int:
        """The port a listener got (the one asked for, or the kernel's pick for 0)."""
        return int(runner.addresses[0][1])

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.health.cleanup()
        await self.metrics.cleanup()


async def _watch_certificate(certificate: tls.ServerCertificate, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        certificate.refresh()


async def start(
    config: Config, reviewer: access.Reviewer, healthy: Verdict, ready: Verdict,
    cert_check_seconds: float = CERT_CHECK_SECONDS,
) -> Servers:  # fmt: skip
    """Open both listeners (metrics first: the health port answering means both serve)."""
    certificate = tls.ServerCertificate(config.cert_dir)
    metrics_runner = await _site(metrics_app(reviewer), config.host, config.metrics_port, certificate.context)
    health_runner = await _site(health_app(healthy, ready), config.host, config.health_port)
    servers = Servers(metrics_runner, health_runner, certificate)
    if not certificate.is_self_signed:
        servers.tasks.append(asyncio.create_task(_watch_certificate(certificate, cert_check_seconds)))
    return servers
