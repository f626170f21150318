"""Fixtures for the end-to-end suite.

With $KUBECONFIG set the suite runs against that cluster (kind, or any other); otherwise it
starts the local control plane once per run (e2e.devcluster.cluster) and stops it afterwards.
A cluster that cannot start makes the tests error, never skip.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kubernetes import client, config

from e2e.devcluster import cluster as local_cluster
from e2e.devcluster.kube import kubectl, unreachable, wait_established, wait_for
from e2e.devcluster.toolchain import build

E2E_DIR = Path(__file__).resolve().parent
CRDS_DIR = E2E_DIR.parent / "crds"


@dataclass(frozen=True)
class Cluster:
    """The cluster under test. `audit_log` is only known for the local control plane."""

    kubeconfig: Path
    local: bool
    audit_log: Path | None
    restarts: list[tuple[float, float]] = field(default_factory=list)
    """(from, to) in epoch seconds: a component of the control plane was restarted then
    (e2e/test_faults.py). A kube-apiserver just started refuses requests (403, "clusterrole not
    found") until its authorizer has read the RBAC objects: no verdict on the operator's rights."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under e2e/ needs a cluster: mark it, so `-m 'not e2e'` deselects it."""
    for item in items:
        if E2E_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


def pytest_collection_finish(session: pytest.Session) -> None:
    """A $KUBECONFIG whose cluster does not answer ends the run before its first test, with one
    message naming the file and the server, not one "connection refused" per test."""
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig or session.config.option.collectonly:
        return
    if not any(item.get_closest_marker("e2e") for item in session.items):
        return
    why = unreachable(kubeconfig)
    if why is not None:
        pytest.exit(why, returncode=pytest.ExitCode.USAGE_ERROR)


def _pinned_kubectl_first() -> None:
    bin_dir = str(build.bin_dir())
    if (build.bin_dir() / "kubectl").exists() and not os.environ["PATH"].startswith(bin_dir):
        os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


def _cluster_of(kubeconfig: Path) -> Cluster:
    """The cluster a kubeconfig names; one of ours (its state.json beside it, whether this run
    or a person started it) has a known audit log."""
    ours = (kubeconfig.parent / "state.json").exists()
    audit = kubeconfig.parent / "audit.log" if ours else None
    return Cluster(kubeconfig, local=ours, audit_log=audit)


def _run_state_dir() -> Path:
    """QWEN_E2E_STATE_DIR, or a directory of this run's own, so parallel runs never share."""
    given = os.environ.get("QWEN_E2E_STATE_DIR")
    return Path(given) if given else local_cluster.REPO / ".state" / f"pytest-{os.getpid()}"


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """The cluster for this run: $KUBECONFIG's, or a local one started now, stopped after."""
    saved_env = dict(os.environ)
    started = False
    try:
        if os.environ.get("KUBECONFIG"):
            _pinned_kubectl_first()
            yield _cluster_of(Path(os.environ["KUBECONFIG"]))
            return
        os.environ["QWEN_E2E_STATE_DIR"] = str(_run_state_dir())
        was_running = local_cluster.running(local_cluster.state_dir())
        kubeconfig = local_cluster.up(*local_cluster.default_nodes(), 8)  # stops what it started on failure
        started = not was_running
        _pinned_kubectl_first()
        os.environ["KUBECONFIG"] = str(kubeconfig)
        yield _cluster_of(kubeconfig)
    finally:
        if started:  # a cluster that was already running (QWEN_E2E_STATE_DIR) stays up
            local_cluster.down()
        os.environ.clear()
        os.environ.update(saved_env)


@pytest.fixture(scope="session")
def api_client(cluster: Cluster) -> client.ApiClient:
    """A kubernetes-client ApiClient with the kubeconfig's (admin) credentials."""
    api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(cluster.kubeconfig)
    )
    return api


@pytest.fixture(scope="session")
def core_v1(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def apps_v1(api_client: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api_client)


@pytest.fixture
def namespace(request: pytest.FixtureRequest, core_v1: client.CoreV1Api) -> Iterator[str]:
    """A fresh namespace per test (deleted afterwards), with its default ServiceAccount."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"e2e-{slug}-{uuid.uuid4().hex[:5]}"
    core_v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_for(
        lambda: core_v1.read_namespaced_service_account("default", name),
        timeout=60,
        describe=f"ServiceAccount {name}/default (service-account controller)",
    )
    yield name
    core_v1.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="session")
def crd_installed(cluster: Cluster) -> list[str]:
    """Apply crds/*.yaml (server-side) and wait until every CRD is Established."""
    files = sorted(CRDS_DIR.glob("*.yaml"))
    assert files, f"no CRDs in {CRDS_DIR}"
    names: list[str] = []
    for path in files:
        out = kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path), "-o", "name")
        names += [line for line in out.stdout.split() if line]
    wait_established(*names)
    return names
