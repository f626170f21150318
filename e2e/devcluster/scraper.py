"""Reading the operator's /metrics as a Prometheus does, and a Prometheus that does.

/metrics is HTTPS and asks for a bearer token whose user RBAC allows `get /metrics`
(operator/qwen_operator/process/access.py). Tests, benchmarks and the demo read it the way the
shipped ServiceMonitor (manifests/monitoring/servicemonitor.yaml) has Prometheus read it: with
the token of a ServiceAccount bound to the ClusterRole `qwen-operator-metrics-reader`, the
certificate not verified (`insecureSkipVerify`: the operator's is self-signed).

`scrape_config` turns that ServiceMonitor's endpoint into the scrape configuration the
Prometheus Operator generates from it, and `prometheus` runs Prometheus (built by `make
tools`) on loopback with it, so the shipped endpoint is what proves it scrapes.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from e2e.devcluster.cluster import free_port, log_tail, stop_child
from e2e.devcluster.kube import kubectl, wait_for
from e2e.devcluster.toolchain import tools

REPO = Path(__file__).resolve().parents[2]
SERVICE_MONITOR = REPO / "manifests" / "monitoring" / "servicemonitor.yaml"
READER_ROLE = "qwen-operator-metrics-reader"
"""The ClusterRole of manifests/clusterrole-metrics-reader.yaml (`kubectl apply -k manifests/`)."""
READER_NAMESPACE = "qwen-metrics-scraper"
READER = "prometheus"
"""The ServiceAccount that stands for a Prometheus' (in its own namespace, as monitoring's is)."""
POD_TOKEN_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token"
"""Where a pod reads its ServiceAccount's token: the ServiceMonitor's `bearerTokenFile`."""
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def insecure() -> ssl.SSLContext:
    """TLS without checking the certificate: `insecureSkipVerify: true`."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def service_account_token(namespace: str, name: str, duration: str = "4h") -> str:
    """A token of the ServiceAccount `namespace/name`, made (with its namespace) if missing."""
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}},
    ]
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
    return kubectl("create", "token", name, "-n", namespace, f"--duration={duration}").stdout.strip()


def bind(namespace: str, name: str, role: str = READER_ROLE) -> str:
    """Bind the ClusterRole `role` to the ServiceAccount `namespace/name`; returns the binding's name."""
    binding = f"{namespace}-{name}-{role}"
    doc = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": binding},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(doc))
    return binding


def reader_token(namespace: str = READER_NAMESPACE, name: str = READER) -> str:
    """A token of a ServiceAccount bound to qwen-operator-metrics-reader (the role must be
    installed: `kubectl apply -k manifests/`)."""
    token = service_account_token(namespace, name)
    bind(namespace, name)
    return token


def get(url: str, token: str | None = None, timeout: float = 5) -> tuple[int, str]:
    """(status, body) of a GET, the token as a bearer token; certificate not verified."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    context = insecure() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str) -> Samples:
    """Every sample of an exposition: (name, sorted labels) -> value."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return out


def scrape(url: str, token: str) -> Samples:
    """/metrics as Prometheus reads it; fails unless it answered 200."""
    status, body = get(url, token)
    if status != 200:
        raise AssertionError(f"GET {url}: {status} {body.strip()}")
    return samples(body)


# -- Prometheus ------------------------------------------------------------------------------

ENDPOINT_FIELDS = {"port", "path", "scheme", "bearerTokenFile", "tlsConfig", "interval", "scrapeTimeout",
                   "honorLabels"}  # fmt: skip
"""The ServiceMonitor endpoint fields `scrape_config` translates; any other one fails it, so the
shipped endpoint cannot grow a setting this proof ignores."""


def endpoint(path: Path = SERVICE_MONITOR) -> dict[str, Any]:
    (found,) = yaml.safe_load(path.read_text())["spec"]["endpoints"]
    return dict(found)


def scrape_config(ep: dict[str, Any], job: str, target: str, token_file: Path | None) -> dict[str, Any]:
    """The scrape configuration the Prometheus Operator generates for a ServiceMonitor endpoint
    (the fields the shipped one uses), aimed at `target` (what the Service's endpoints would be)
    and reading the token from `token_file` (what the pod's own ServiceAccount token file
    would hold); the interval is a second, so a test does not wait for 30 s ones."""
    unknown = set(ep) - ENDPOINT_FIELDS
    assert not unknown, f"scrape_config does not translate {sorted(unknown)}"
    config: dict[str, Any] = {
        "job_name": job,
        "scheme": ep.get("scheme", "http"),
        "metrics_path": ep.get("path", "/metrics"),
        "honor_labels": bool(ep.get("honorLabels", False)),
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "static_configs": [{"targets": [target]}],
    }
    tls = dict(ep.get("tlsConfig") or {})
    unknown = set(tls) - {"insecureSkipVerify"}
    assert not unknown, f"scrape_config does not translate tlsConfig {sorted(unknown)}"
    if tls:
        config["tls_config"] = {"insecure_skip_verify": bool(tls.get("insecureSkipVerify", False))}
    if ep.get("bearerTokenFile"):
        assert ep["bearerTokenFile"] == POD_TOKEN_FILE, ep["bearerTokenFile"]
        if token_file is not None:
            config["authorization"] = {"type": "Bearer", "credentials_file": str(token_file)}
    return config


@contextlib.contextmanager
def prometheus(workdir: Path, scrape_configs: list[dict[str, Any]]) -> Iterator[str]:
    """Prometheus on a loopback port with these scrape configurations, until the block ends;
    yields its base URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = {"global": {"scrape_interval": "1s"}, "scrape_configs": scrape_configs}
    (workdir / "prometheus.yaml").write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log_path = workdir / "prometheus.log"
    argv = [
        str(tools.require("prometheus")),
        f"--config.file={workdir / 'prometheus.yaml'}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with log_path.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"prometheus exited {proc.returncode}:\n{log_tail(log_path)}")
            try:
                return get(url + "-/ready", timeout=2)[0] == 200
            except OSError:
                return False

        wait_for(ready, 60, f"Prometheus ready (log: {log_path})")
        yield url
    finally:
        stop_child(proc, grace=10)


def targets(url: str) -> dict[str, dict[str, Any]]:
    """Prometheus' active targets by job: health ("up", "down", "unknown") and last error."""
    status, body = get(url + "api/v1/targets?state=active")
    assert status == 200, body
    return {t["labels"]["job"]: t for t in json.loads(body)["data"]["activeTargets"]}


def query(url: str, promql: str) -> list[dict[str, Any]]:
    """The result vector of an instant query."""
    status, body = get(url + "api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    assert status == 200, body
    result: list[dict[str, Any]] = json.loads(body)["data"]["result"]
    return result
