"""Fixtures that run the operator against the cluster under test, as its ServiceAccount.

`kubectl apply -k manifests/` installs the CRD, namespace, ServiceAccount, ClusterRole and
the rest; the in-cluster Deployment is scaled to 0 (simulated nodes run no containers) and
the same code runs here as a process whose kubeconfig holds a token of that ServiceAccount,
so every request the operator makes is authorized by the manifests' RBAC, never as admin.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from e2e.conftest import Cluster
from e2e.devcluster import cluster as local_cluster
from e2e.devcluster import scraper
from e2e.devcluster.kube import kubectl, wait_established, wait_for
from qwen_operator.api.vocabulary import INSTANCE_LABEL
from qwen_runtime.argv import gpu_memory_utilization, max_model_len

REPO = Path(__file__).resolve().parent.parent
OPERATOR_NAMESPACE = "qwen-operator-system"
SERVICE_ACCOUNT = "qwen-operator"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{SERVICE_ACCOUNT}"
LEASE_NAME = "qwen-operator"
"""The Lease the manifests' Deployment elects on (QWEN_OPERATOR_LEASE_NAME)."""
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
RESTRICTED = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")}
GROUP, VERSION, PLURAL = "serving.qwen-operator.io", "v1alpha1", "qwenthinkingdeployments"
INTEGRATION_RESOURCES = {
    ("autoscaling", "horizontalpodautoscalers"),
    ("keda.sh", "scaledobjects"),
    ("inference.networking.k8s.io", "inferencepools"),
    ("monitoring.coreos.com", "prometheusrules"),
}
"""(group, resource) of the children only e2e/test_integrations.py asks for: it checks their
grants, each used; e2e/test_operator.py checks the others."""
SAMPLE = yaml.safe_load((REPO / "samples" / "qwen3-235b-thinking.yaml").read_text())
NAME = SAMPLE["metadata"]["name"]
API_KEY = {"apiKeySecretRef": {"name": "qwen-api-key", "key": "key"}}
"""spec.auth with an API key, which a NodePort or LoadBalancer Service and an InferencePool require
(the Secret need not exist for the resource to be admitted; only a kubelet would read it)."""


class Operator:
    """The operator as a child process, configured as the Deployment configures its pods; health
    over its plain HTTP port, metrics over HTTPS as Prometheus reads them (e2e/devcluster/
    scraper.py: the token of a ServiceAccount bound to qwen-operator-metrics-reader).

    Each instance plays one pod: its POD_NAME (its identity in the Lease) stays the same across
    restarts, as a pod's name does across restarts of its container."""

    def __init__(
        self, kubeconfig: Path, log_path: Path, args: Sequence[str] = ("run", "--all-namespaces"),
        lease: tuple[str, str] = (OPERATOR_NAMESPACE, LEASE_NAME), pod_name: str | None = None,
    ) -> None:  # fmt: skip
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.args = list(args)
        """`qwen-operator` arguments (e2e/test_helm.py runs those of the chart's Deployment)."""
        self.lease = lease
        """(namespace, name) of the leader-election Lease, as the Deployment's env names it."""
        self.pod_name = pod_name or f"qwen-operator-{uuid.uuid4().hex[:5]}"
        self.metrics_port = local_cluster.free_port()
        self.health_port = local_cluster.free_port()
        self.metrics_token: str | None = None
        """The scraper's token (scraper.reader_token), made at the first scrape."""
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.audit_offset = 0
        """Where the audit log stood when this operator first started (its requests come after)."""

    def start(self) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "QWEN_OPERATOR_HTTP_HOST": "127.0.0.1",
               "QWEN_OPERATOR_METRICS_PORT": str(self.metrics_port),
               "QWEN_OPERATOR_HEALTH_PORT": str(self.health_port), "PYTHONUNBUFFERED": "1",
               "POD_NAME": self.pod_name,
               "QWEN_OPERATOR_LEASE_NAMESPACE": self.lease[0],
               "QWEN_OPERATOR_LEASE_NAME": self.lease[1]}  # fmt: skip
        with self.log_path.open("ab") as out:
            out.write(f"\n===== start {self.starts} =====\n".encode())
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "qwen_operator.cli", *self.args],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True,
            )  # fmt: skip
        self.starts += 1
        wait_for(self.healthy, timeout=60, describe=f"operator /healthz (log: {self.log_path})")

    def url(self, path: str) -> str:
        """A health path's URL (/healthz, /readyz); `metrics_url` is the other listener's."""
        return f"http://127.0.0.1:{self.health_port}{path}"

    @property
    def metrics_url(self) -> str:
        return f"https://127.0.0.1:{self.metrics_port}/metrics"

    def healthy(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"operator exited; log tail:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(self.url("/healthz"), timeout=2) as resp:
                return int(resp.status) == 200
        except OSError:
            return False

    def health(self) -> tuple[int, str]:
        """/healthz's status and body; (0, why) when nothing answered."""
        try:
            with urllib.request.urlopen(self.url("/healthz"), timeout=2) as resp:
                return int(resp.status), resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError as exc:
            return 0, repr(exc)

    def leading(self) -> bool:
        """This replica holds the Lease (its own metric says so)."""
        return self.counter("qwen_operator_leader") == 1

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Stop the process (SIGKILL by default: no chance to finish anything)."""
        if self.proc is not None:
            local_cluster.stop_child(self.proc, sig)
        self.proc = None

    def metrics(self) -> scraper.Samples:
        """One scrape of /metrics, as Prometheus makes it (HTTPS, a metrics reader's token)."""
        if self.metrics_token is None:
            self.metrics_token = scraper.reader_token()
        return scraper.scrape(self.metrics_url, self.metrics_token)

    def counter(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples whose labels include `labels`."""
        return sum(
            value
            for (metric, lbls), value in self.metrics().items()
            if metric == name and set(labels.items()) <= set(lbls)
        )

    def writes(self) -> float:
        return sum(
            self.counter("qwen_operator_api_requests_total", verb=verb)
            for verb in ("apply", "apply-dry-run", "patch", "create", "delete")
        )

    def log_tail(self) -> str:
        return local_cluster.log_tail(self.log_path, lines=60)


def sa_kubeconfig(cluster: Cluster, token: str, path: Path) -> Path:
    """A kubeconfig for the operator's ServiceAccount: the cluster's server and CA, the token."""
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    entry = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": entry["cluster"]}],
        "users": [{"name": SERVICE_ACCOUNT, "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "cluster", "user": SERVICE_ACCOUNT}}],
        "current-context": "operator",
    }
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def operator_installed(cluster: Cluster) -> None:
    """`kubectl apply -k manifests/` (CRD included); the in-cluster Deployment scaled to 0."""
    kubectl("apply", "-k", str(REPO / "manifests"))
    wait_established(f"crd/{PLURAL}.{GROUP}")
    kubectl("scale", "deployment/qwen-operator", "-n", OPERATOR_NAMESPACE, "--replicas=0")


@pytest.fixture(scope="session")
def operator(
    cluster: Cluster, operator_installed: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    """The operator, running as the manifests' ServiceAccount, for the whole session."""
    del operator_installed
    token = kubectl(
        "create", "token", SERVICE_ACCOUNT, "-n", OPERATOR_NAMESPACE, "--duration=4h"
    ).stdout.strip()
    workdir = tmp_path_factory.mktemp("operator")
    op = Operator(sa_kubeconfig(cluster, token, workdir / "kubeconfig"), workdir / "operator.log")
    op.audit_offset = audit_offset(cluster)
    try:  # a start that times out still leaves a process to stop
        op.start()
        yield op
    finally:
        op.kill(signal.SIGTERM)
        print(f"operator log: {op.log_path}")


@pytest.fixture
def ns(namespace: str, custom: client.CustomObjectsApi, core_v1: client.CoreV1Api) -> Iterator[str]:
    """A test namespace that enforces Pod Security "restricted" (the apiserver's admission refuses
    any pod that breaks it), whose resources and pods are gone (GPUs free again) when the test ends."""
    core_v1.patch_namespace(namespace, {"metadata": {"labels": RESTRICTED}})
    yield namespace
    with contextlib.suppress(Exception):
        custom.delete_collection_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    with contextlib.suppress(AssertionError):
        wait_for(
            lambda: not core_v1.list_namespaced_pod(namespace).items,
            timeout=60, describe=f"pods of {namespace} gone",
        )  # fmt: skip


@pytest.fixture(scope="session")
def custom(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


# -- helpers ------------------------------------------------------------------------------


def get_qtd(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    return dict(custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return {}


def wait_phase(
    custom: client.CustomObjectsApi, namespace: str, name: str, phase: str, timeout: float = 120
) -> dict[str, Any]:
    """Wait until the resource reports `phase` for its current generation; returns it."""

    def check() -> dict[str, Any] | None:
        obj = get_qtd(custom, namespace, name)
        st = obj.get("status") or {}
        current = st.get("observedGeneration") == obj["metadata"]["generation"]
        return obj if current and st.get("phase") == phase else None

    def last() -> str:
        with contextlib.suppress(Exception):
            return json.dumps(get_qtd(custom, namespace, name).get("status"), indent=1)[:3000]
        return "?"

    try:
        return wait_for(check, timeout=timeout, describe=f"{namespace}/{name} phase {phase}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nlast status: {last()}") from None


def apply_yaml(namespace: str, manifest: dict[str, Any] | str) -> None:
    text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
    kubectl("apply", "-n", namespace, "-f", "-", stdin=text)


def audit_offset(cluster: Cluster) -> int:
    """Where the audit log ends now: requests made from here on come after this byte."""
    return cluster.audit_log.stat().st_size if cluster.audit_log else 0


def during_restart(cluster: Cluster, entry: dict[str, Any]) -> bool:
    """The request reached the apiserver while a component of the control plane restarted."""
    stamp = entry.get("requestReceivedTimestamp")
    if not stamp:
        return False
    at = datetime.fromisoformat(str(stamp)).timestamp()
    return any(start <= at <= end for start, end in cluster.restarts)


def audit_writes(audit_log: Path, since_offset: int, user: str = OPERATOR_USER) -> list[dict[str, Any]]:
    """Write requests by `user` in the audit log after byte offset `since_offset`."""
    return [e for e in audit_entries(audit_log, since_offset, user) if e.get("verb") in WRITE_VERBS]


REVIEWS = {("authentication.k8s.io", "tokenreviews"), ("authorization.k8s.io", "subjectaccessreviews")}
"""(group, resource) of the reviews the operator asks when /metrics is scraped (access.py)."""


def scrape_review(entry: dict[str, Any]) -> bool:
    """A TokenReview or SubjectAccessReview: the operator asks them when a test scrapes its
    /metrics (about two a minute per token), not for any work on resources."""
    ref = entry.get("objectRef") or {}
    return (ref.get("apiGroup", ""), ref.get("resource")) in REVIEWS


def audit_entries(
    audit_log: Path, since_offset: int, user: str = OPERATOR_USER, reviews: bool = False
) -> list[dict[str, Any]]:
    """Every request by `user` in the audit log after byte offset `since_offset`; the reviews of
    the tests' own scrapes only with `reviews` (scrape_review)."""
    out = []
    with audit_log.open("rb") as fh:
        fh.seek(since_offset)
        for line in fh:
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("user", {}).get("username") == user and (reviews or not scrape_review(entry)):
                    out.append(entry)
    return out


def settle(seconds: float) -> None:
    """Let the cluster be (a pause is the point of an idleness test, never an assertion)."""
    time.sleep(seconds)


def untouched(
    core_v1: client.CoreV1Api, apps_v1: client.AppsV1Api, ns: str, sts_uid: str, pods: dict[str, str],
    seconds: float = 8.0, selector: str | None = None, name: str = NAME,
) -> None:  # fmt: skip
    """For `seconds`, sampled every half second: the StatefulSet `name` is the one of `sts_uid`, and
    its pods (`selector`, else the resource's) are exactly `pods` (name: uid), none deleting."""
    selector = selector or instance(name)
    deadline = time.monotonic() + seconds
    while True:
        sts = apps_v1.read_namespaced_stateful_set(name, ns)
        made_anew = sts.metadata.uid != sts_uid or sts.metadata.deletion_timestamp is not None
        assert not made_anew, "the StatefulSet deleted or made anew"
        found = core_v1.list_namespaced_pod(ns, label_selector=selector).items
        now = {p.metadata.name: p.metadata.uid for p in found}
        assert now == pods, f"pods changed: {now} (were {pods})"
        assert not any(p.metadata.deletion_timestamp for p in found), "a pod is deleting"
        if time.monotonic() >= deadline:
            return
        time.sleep(0.5)


def sample(name: str = NAME, **spec: Any) -> dict[str, Any]:
    """The sample resource, renamed and with top-level spec fields replaced."""
    doc = copy.deepcopy(SAMPLE)
    doc["metadata"]["name"] = name
    doc["spec"].update(spec)
    return doc


def instance(name: str) -> str:
    """The label selector of one resource's children and pods."""
    return f"{INSTANCE_LABEL}={name}"


def apply_ready(custom: client.CustomObjectsApi, ns: str, **spec: Any) -> dict[str, Any]:
    """Apply `sample(**spec)` and wait until it is Ready; returns the resource."""
    apply_yaml(ns, sample(**spec))
    return wait_phase(custom, ns, NAME, "Ready")


def patch_spec(ns: str, spec: dict[str, Any]) -> None:
    """Merge-patch the sample resource's spec, as a user would with kubectl."""
    kubectl("patch", f"qtd/{NAME}", "-n", ns, "--type=merge", "-p", json.dumps({"spec": spec}))


def events(ns: str, name: str, kind: str | None = None) -> list[dict[str, Any]]:
    """Events about objects named `name` (the resource and its children share the name), or
    only about those of `kind`."""
    selector = f"involvedObject.name={name}" + (f",involvedObject.kind={kind}" if kind else "")
    out = kubectl("get", "events", "-n", ns, "--field-selector", selector, "-o", "json")
    items = json.loads(out.stdout)["items"]
    return [{"type": e["type"], "reason": e["reason"], "message": e.get("message", "")} for e in items]


def reasons(ns: str, name: str) -> set[str]:
    return {e["reason"] for e in events(ns, name)}


def server_command(apps_v1: client.AppsV1Api, ns: str, name: str) -> list[str]:
    sts = apps_v1.read_namespaced_stateful_set(name, ns)
    return list(sts.spec.template.spec.containers[0].command)


def sts_context(apps_v1: client.AppsV1Api, ns: str, name: str) -> int | None:
    """The --max-model-len of the StatefulSet's server command (read as the launcher reads it)."""
    return max_model_len(server_command(apps_v1, ns, name))


def sts_utilization(apps_v1: client.AppsV1Api, ns: str, name: str) -> float | None:
    """The --gpu-memory-utilization of the StatefulSet's server command."""
    return gpu_memory_utilization(server_command(apps_v1, ns, name))
