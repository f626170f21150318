"""A custom metrics API served for real on the local cluster: prometheus-adapter over Prometheus.

The aggregation layer proxies `custom.metrics.k8s.io` to a Service: kube-apiserver dials the
Service's cluster IP (and checks that its EndpointSlice has a ready address), never a loopback
address. So the adapter and the Prometheus it queries run in a network namespace made for the
purpose (this needs root): a veth pair, the namespace's own address (the EndpointSlice's) and
the Service's cluster IP on its side, a route to both on the host's side. From inside, the
adapter reaches the apiserver (which listens on loopback only) through `Forwarder`, on the
host's end of the pair, and Prometheus scrapes `Exporter` there: a /metrics in the format of
vLLM's, one target per pod, whose value the test sets (the metric's name and type are vLLM's
own, checked against vLLM by tests/tools/contract and tests/tools/realvllm).

Both binaries are built from Go modules by `make tools`. Everything is removed on exit: the
APIService first (an unavailable aggregated API would hold up namespace deletion and
discovery everywhere), then the processes, then the namespace with its links and routes.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import selectors
import shutil
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from e2e.devcluster.cluster import log_tail, stop_child
from e2e.devcluster.kube import kubectl, wait_for
from e2e.devcluster.toolchain import tools
from qwen_operator.api.vocabulary import QUEUE_METRIC

ADAPTER_PORT = 6443
PROMETHEUS_PORT = 9090
GROUP, VERSION = "custom.metrics.k8s.io", "v1beta2"
ADAPTER_VALUES = (
    Path(__file__).resolve().parents[2] / "manifests" / "monitoring" / "prometheus-adapter-values.yaml"
)
"""The chart values users install prometheus-adapter with: the adapter here runs their rules."""


def adapter_rules() -> dict[str, Any]:
    """prometheus-adapter's configuration file, from the chart values' custom rules."""
    return {"rules": yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["custom"]}


class NeedsRoot(RuntimeError):
    """Network namespaces need root (CAP_NET_ADMIN): the test fails, it does not skip."""


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@dataclass
class Netns:
    """A network namespace joined to the host by a veth pair on a /30 of 10.251.0.0/16."""

    name: str
    host_ip: str
    ns_ip: str
    extra: list[str] = field(default_factory=list)

    @classmethod
    def create(cls) -> Netns:
        if os.geteuid() != 0 or shutil.which("ip") is None:
            raise NeedsRoot("the custom metrics API runs in a network namespace: run as root, with iproute2")
        tag = secrets.token_hex(3)
        block = int(tag, 16) % (1 << 14) * 4  # a /30 per run: parallel runs do not collide
        base = f"10.251.{block >> 8}.{block & 0xFF}"
        prefix = base.rsplit(".", 1)[0]
        last = int(base.rsplit(".", 1)[1])
        ns = cls(f"qwen-{tag}", f"{prefix}.{last + 1}", f"{prefix}.{last + 2}")
        _ip("netns", "add", ns.name)
        try:
            _ip("link", "add", ns.host_link, "type", "veth", "peer", "name", ns.ns_link)
            _ip("link", "set", ns.ns_link, "netns", ns.name)
            _ip("addr", "add", f"{ns.host_ip}/30", "dev", ns.host_link)
            _ip("link", "set", ns.host_link, "up")
            _ip("-n", ns.name, "addr", "add", f"{ns.ns_ip}/30", "dev", ns.ns_link)
            _ip("-n", ns.name, "link", "set", ns.ns_link, "up")
            _ip("-n", ns.name, "link", "set", "lo", "up")
        except Exception:
            ns.delete()
            raise
        return ns

    @property
    def host_link(self) -> str:
        return f"{self.name[-6:]}h"

    @property
    def ns_link(self) -> str:
        return f"{self.name[-6:]}n"

    def add(self, address: str) -> None:
        """Another address inside (a Service's cluster IP), routed from the host."""
        _ip("-n", self.name, "addr", "add", f"{address}/32", "dev", self.ns_link)
        _ip("route", "add", f"{address}/32", "dev", self.host_link)
        self.extra.append(address)

    def command(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def delete(self) -> None:
        """The namespace, its end of the pair (which takes the host's end and the routes along)."""
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.host_link], capture_output=True, check=False)


class Forwarder:
    """TCP from (host, port) to a loopback port: the apiserver, for clients in the namespace."""

    def __init__(self, host: str, target_port: int) -> None:
        self.server = socket.create_server((host, 0))
        self.port = int(self.server.getsockname()[1])
        self.target = ("127.0.0.1", target_port)
        self.stopping = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.server.settimeout(0.5)
        while not self.stopping.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(conn,), daemon=True).start()

    def _pipe(self, conn: socket.socket) -> None:
        with conn, socket.create_connection(self.target) as upstream:
            sel = selectors.DefaultSelector()
            sel.register(conn, selectors.EVENT_READ, upstream)
            sel.register(upstream, selectors.EVENT_READ, conn)
            while not self.stopping.is_set():
                for key, _ in sel.select(timeout=0.5):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)

    def stop(self) -> None:
        self.stopping.set()
        self.server.close()


class Exporter:
    """/metrics for each pod, as vLLM exposes its queue: `vllm:num_requests_waiting` (a gauge
    with vLLM's labels), at the value the test sets."""

    def __init__(self, host: str, model: str) -> None:
        self.registry = CollectorRegistry()
        self.gauge = Gauge(QUEUE_METRIC, "Number of requests waiting to be processed.",
                           ["model_name", "engine"], registry=self.registry)  # fmt: skip
        self.model = model
        self.set(0)
        registry = self.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = generate_latest(registry)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.address = f"{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def set(self, waiting: float) -> None:
        self.gauge.labels(model_name=self.model, engine="0").set(waiting)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class MetricsApi:
    """What `serve` started, for the test to drive and read."""

    exporter: Exporter
    prometheus_url: str
    workdir: Path
    namespace: str
    """Where the adapter's Service lives."""

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{log_tail(self.workdir / f'{n}.log')}" for n in ("prometheus", "adapter"))


def _kubeconfig_through(admin: Path, forwarder: Forwarder, host: str, out: Path) -> Path:
    """The admin kubeconfig, pointed at the forwarder (the server certificate names `localhost`)."""
    doc = yaml.safe_load(admin.read_text())
    for entry in doc["clusters"]:
        entry["cluster"]["server"] = f"https://{host}:{forwarder.port}"
        entry["cluster"]["tls-server-name"] = "localhost"
    out.write_text(yaml.safe_dump(doc))
    out.chmod(0o600)
    return out


def _spawn(ns: Netns, argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as out:
        return subprocess.Popen(
            ns.command(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )


def _prometheus(
    ns: Netns, workdir: Path, exporter: Exporter, pods: list[str], service: str, namespace: str
) -> subprocess.Popen[bytes]:
    """Prometheus, scraping the exporter once per pod with the labels the Prometheus Operator
    gives a vLLM server's series (namespace, pod, service)."""
    groups = []
    for pod in pods:
        labels = {"namespace": namespace, "pod": pod, "service": service}
        groups.append({"targets": [exporter.address], "labels": labels})
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "vllm", "static_configs": groups}],
    }
    (workdir / "prometheus.yaml").write_text(yaml.safe_dump(config))
    argv = [
        str(tools.require("prometheus")),
        f"--config.file={workdir / 'prometheus.yaml'}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address={ns.ns_ip}:{PROMETHEUS_PORT}",
        "--log.level=warn",
    ]
    return _spawn(ns, argv, workdir / "prometheus.log")


def _adapter(ns: Netns, workdir: Path, kubeconfig: Path, prometheus_url: str) -> subprocess.Popen[bytes]:
    (workdir / "adapter.yaml").write_text(yaml.safe_dump(adapter_rules()))
    argv = [
        str(tools.require("prometheus-adapter")),
        f"--secure-port={ADAPTER_PORT}",
        f"--cert-dir={workdir / 'adapter-certs'}",
        f"--prometheus-url={prometheus_url}",
        "--metrics-relist-interval=2s",
        f"--config={workdir / 'adapter.yaml'}",
        *(f"--{k}-kubeconfig={kubeconfig}" for k in ("lister", "authentication", "authorization")),
        "--v=1",
    ]
    return _spawn(ns, argv, workdir / "adapter.log")


SERVICE = "prometheus-adapter"


def _objects(namespace: str, endpoint: str) -> str:
    """The Service (a cluster IP, no selector) and its EndpointSlice: the namespace's address."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": namespace},
        "spec": {"ports": [{"name": "https", "port": ADAPTER_PORT, "targetPort": ADAPTER_PORT}]},
    }
    labels = {"kubernetes.io/service-name": SERVICE, "endpointslice.kubernetes.io/managed-by": "qwen-e2e"}
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "addressType": "IPv4",
        "metadata": {"name": SERVICE, "namespace": namespace, "labels": labels},
        "ports": [{"name": "https", "port": ADAPTER_PORT, "protocol": "TCP"}],
        "endpoints": [{"addresses": [endpoint], "conditions": {"ready": True}}],
    }
    return yaml.safe_dump_all([service, slice_])


def _api_service(namespace: str) -> str:
    spec = {
        "group": GROUP,
        "version": VERSION,
        "groupPriorityMinimum": 100,
        "versionPriority": 200,
        "insecureSkipTLSVerify": True,  # as prometheus-adapter's own manifests: a self-signed certificate
        "service": {"name": SERVICE, "namespace": namespace, "port": ADAPTER_PORT},
    }
    meta = {"name": f"{VERSION}.{GROUP}"}
    return yaml.safe_dump(
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": meta, "spec": spec}
    )


def _available() -> bool:
    condition = "jsonpath={.status.conditions[?(@.type=='Available')].status}"
    return kubectl("get", "apiservice", f"{VERSION}.{GROUP}", "-o", condition).stdout == "True"


def _has_series(url: str) -> bool:
    with urllib.request.urlopen(f"{url}api/v1/series?match[]={QUEUE_METRIC}", timeout=2) as resp:
        return bool(json.loads(resp.read())["data"])


@contextlib.contextmanager
def serve(
    admin_kubeconfig: Path, apiserver_port: int, workdir: Path, namespace: str, service: str, pods: list[str]
) -> Iterator[MetricsApi]:
    """custom.metrics.k8s.io from prometheus-adapter, over a Prometheus that scrapes one target
    per pod of `pods` (in `namespace`, behind `service`), until the block ends."""
    workdir.mkdir(parents=True, exist_ok=True)
    adapter_ns = f"qwen-metrics-{secrets.token_hex(3)}"
    net = Netns.create()
    forwarder = Forwarder(net.host_ip, apiserver_port)
    exporter = Exporter(net.host_ip, service)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        prometheus_url = f"http://{net.ns_ip}:{PROMETHEUS_PORT}/"
        procs.append(_prometheus(net, workdir, exporter, pods, service, namespace))
        wait_for(lambda: _has_series(prometheus_url), 60, f"Prometheus scraping {QUEUE_METRIC}")
        kubeconfig = _kubeconfig_through(admin_kubeconfig, forwarder, net.host_ip, workdir / "kubeconfig")
        procs.append(_adapter(net, workdir, kubeconfig, prometheus_url))
        kubectl("create", "namespace", adapter_ns)
        kubectl("apply", "-f", "-", stdin=_objects(adapter_ns, net.ns_ip))
        ip = kubectl("get", "service", SERVICE, "-n", adapter_ns, "-o", "jsonpath={.spec.clusterIP}")
        cluster_ip = ip.stdout.strip()
        net.add(cluster_ip)
        kubectl("apply", "-f", "-", stdin=_api_service(adapter_ns))
        api = MetricsApi(exporter, prometheus_url, workdir, adapter_ns)
        try:
            wait_for(_available, 90, f"APIService {VERSION}.{GROUP} Available")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{api.logs()}") from None
        yield api
    finally:
        kubectl(
            "delete", "apiservice", f"{VERSION}.{GROUP}", "--ignore-not-found", "--wait=true", check=False
        )
        for proc in reversed(procs):
            stop_child(proc, grace=10)
        exporter.stop()
        forwarder.stop()
        net.delete()
        kubectl("delete", "namespace", adapter_ns, "--ignore-not-found", "--wait=false", check=False)
