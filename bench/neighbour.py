"""A slow neighbour: one resource whose API writes are slow must not hold up the others.

On the local control plane, the operator (started fresh as its ServiceAccount each time)
brings `OTHERS` resources to Ready twice:

* **alone**: nothing else in the namespace;
* **beside a slow one**: a resource `slow-0` is applied first, and every write to its
  children (ConfigMap, Services, PodDisruptionBudget, StatefulSet, dry runs included) waits
  `DELAY` seconds in a validating admission webhook, as when the apiserver or an admission
  chain is slow for one object. The webhook is a real one: the apiserver calls it over
  HTTPS on loopback (a url clientConfig, its certificate signed by the cluster's CA), and
  its objectSelector picks `slow-0`'s children by the instance label.

It prints the seconds until the others are all Ready in each case (alone both before and
after, as the first run also warms the apiserver up), the ratio to the mean of the two, when
the slow one became Ready, and how many writes the webhook held. Reconciles are worked by a
few threads, one key at a time: a slow key holds one thread, never the queue.
"""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from bench.scale import (
    Environment,
    delete_namespace,
    environment,
    kubectl,
    nodes_for,
    operator_process,
    resources,
)
from qwen_operator.api.vocabulary import INSTANCE_LABEL

OTHERS = 12
DELAY = 10.0
"""Seconds each write to the slow resource's children waits (the webhook's limit is 30)."""
SLOW = "slow-0"
WEBHOOK = "bench-slow-neighbour"


class SlowWebhook(ThreadingHTTPServer):
    """An admission webhook that allows everything, `DELAY` seconds late, and counts calls."""

    daemon_threads = True

    def __init__(self, pki: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Review)
        self.calls: list[str] = []
        self.lock = threading.Lock()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(pki / "bench-webhook.crt"), str(pki / "bench-webhook.key"))
        self.socket = context.wrap_socket(self.socket, server_side=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}/validate"


class _Review(BaseHTTPRequestHandler):
    server: SlowWebhook

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        request = review["request"]
        with self.server.lock:
            self.server.calls.append(f"{request['operation']} {request['kind']['kind']}")
        time.sleep(DELAY)
        body = json.dumps({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": request["uid"], "allowed": True},
        }).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the bench prints its own lines."""


@contextlib.contextmanager
def slow_webhook(env: Environment, namespace: str) -> Iterator[SlowWebhook]:
    """The webhook served on loopback and registered for `SLOW`'s children in `namespace`."""
    from e2e.devcluster import pki

    folder = env.cluster.kubeconfig.parent / "pki"
    pki.sign(folder, "bench-webhook", "/CN=bench-webhook",
             "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
             "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n")  # fmt: skip
    server = SlowWebhook(folder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ca = base64.b64encode((folder / "ca.crt").read_bytes()).decode()
    rules = [
        {"apiGroups": [group], "apiVersions": ["v1"], "resources": kinds, "operations": ["CREATE", "UPDATE"]}
        for group, kinds in (("", ["configmaps", "services"]), ("apps", ["statefulsets"]),
                             ("policy", ["poddisruptionbudgets"]))
    ]  # fmt: skip
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": WEBHOOK},
        "webhooks": [{
            "name": "slow.bench.qwen-operator.io",
            "clientConfig": {"url": server.url, "caBundle": ca},
            "rules": rules,
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "objectSelector": {"matchLabels": {INSTANCE_LABEL: SLOW}},
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 30,
            "failurePolicy": "Fail",
        }],
    }  # fmt: skip
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(config))
    try:
        yield server
    finally:
        kubectl("delete", "validatingwebhookconfiguration", WEBHOOK, "--ignore-not-found")
        server.shutdown()


@dataclass
class Run:
    others: float
    """Seconds until every other resource was Ready."""
    slow: float | None = None
    held: int = 0


def phases(custom: client.CustomObjectsApi, namespace: str) -> dict[str, str]:
    items = custom.list_namespaced_custom_object(
        "serving.qwen-operator.io", "v1alpha1", namespace, "qwenthinkingdeployments"
    )["items"]
    return {i["metadata"]["name"]: (i.get("status") or {}).get("phase", "") for i in items}


def converge(env: Environment, namespace: str, slow: bool) -> Run:
    """Apply (the slow one first), then watch the phases until all are Ready."""
    docs = resources("other", OTHERS)
    if slow:
        kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(resources("slow", 1)))
    started = time.monotonic()
    kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(docs))
    others: float | None = None
    while True:
        now = phases(env.custom, namespace)
        if others is None and sum(p == "Ready" for n, p in now.items() if n != SLOW) == OTHERS:
            others = time.monotonic() - started
        if others is not None and (not slow or now.get(SLOW) == "Ready"):
            return Run(others, time.monotonic() - started if slow else None)
        if time.monotonic() - started > 600:
            raise RuntimeError(f"not all Ready in 600 s: {now}")
        time.sleep(0.25)


def run(env: Environment, slow: bool) -> Run:
    namespace = "neighbour-slow" if slow else "neighbour-alone"
    env.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    try:
        with operator_process(env):
            if not slow:
                return converge(env, namespace, slow=False)
            with slow_webhook(env, namespace) as hook:
                result = converge(env, namespace, slow=True)
                result.held = len(hook.calls)
                print(f"  the webhook held: {', '.join(sorted(set(hook.calls)))}")
                return result
    finally:
        delete_namespace(env.core, namespace)


def main() -> int:
    try:
        with environment(nodes_for(OTHERS + 1), state="bench-neighbour") as env:
            first, beside, last = run(env, slow=False), run(env, slow=True), run(env, slow=False)
    except (RuntimeError, client.ApiException) as exc:
        print(f"neighbour: failed: {exc}")
        return 1
    alone = (first.others + last.others) / 2
    print(f"| {OTHERS} resources until all Ready | alone s (before, after) | beside a slow one s | ratio | "
          f"the slow one Ready s | its writes held {DELAY:.0f} s each |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| {OTHERS} | {first.others:.1f}, {last.others:.1f} | {beside.others:.1f} | "
          f"{beside.others / alone:.2f} | {beside.slow:.1f} | {beside.held} |")  # fmt: skip
    if beside.held == 0:
        print("neighbour: failed: the webhook held no write; the slow resource was not slow")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
