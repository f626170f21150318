"""An optional CRD that comes and goes while the operator runs (issue 21): the Prometheus
Operator's real ServiceMonitor CRD, from its Go module, installed after the operator started,
deleted, flapped (installed and deleted at once), installed again.

The operator watches the optional kinds itself (operator/qwen_operator/process/optional_kinds.py),
never through Kopf: Kopf stopped the whole operator on a 404 from such a watch, followed API
discovery (which lags the CRD) to decide what to watch, and, after a watch stopped before its
first listing, held back every new object of every kind. Each of those would fail a step here:
no ServiceMonitor (or no revert of an edit) after an install, a dead operator after a deletion,
or a new resource never Ready after the flap.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

pytest.register_assert_rewrite("e2e.operator_fixtures")

from e2e.conftest import Cluster  # noqa: E402
from e2e.devcluster.kube import kubectl, wait_established, wait_for  # noqa: E402
from e2e.devcluster.toolchain import tools  # noqa: E402
from e2e.operator_fixtures import (  # noqa: E402
    NAME,
    Operator,
    apply_ready,
    apply_yaml,
    reasons,
    sample,
    wait_phase,
)
from qwen_operator.api.vocabulary import SERVICE_MONITOR_CRD  # noqa: E402

pytest_plugins = ("e2e.operator_fixtures",)
pytestmark = pytest.mark.e2e

SERVICE_MONITOR_FILE = ("prometheus-operator", Path("example", "prometheus-operator-crd",
                        "monitoring.coreos.com_servicemonitors.yaml"))  # fmt: skip
FOLLOW_SECONDS = 20
"""From the CRD Established to the ServiceMonitor created, and from a hand edit to its revert.
The operator takes about a second: Kopf's event of the CRD, the kind listed then watched (a
404 while the apiserver does not serve it yet is retried within 1 s), one reconciliation.
The rest is margin for a loaded 2-core machine; Kopf's discovery could miss it for good."""
EDIT = {"spec": {"endpoints": [{"port": "http", "path": "/metrics", "interval": "5m"}]}}


def crd_path() -> Path:
    module, rel = SERVICE_MONITOR_FILE
    return tools.module_dir(module) / rel


def install() -> None:
    kubectl("apply", "--server-side", "-f", str(crd_path()))
    wait_established(f"crd/{SERVICE_MONITOR_CRD}")


def uninstall() -> None:
    kubectl("delete", "crd", SERVICE_MONITOR_CRD, "--ignore-not-found", "--wait=true")


@pytest.fixture
def no_service_monitor_crd(cluster: Cluster) -> Iterator[None]:
    """The test starts without the CRD and leaves none behind."""
    del cluster
    uninstall()
    yield
    uninstall()


def monitor(ns: str, name: str = NAME) -> dict[str, Any] | None:
    out = kubectl("get", "servicemonitors.monitoring.coreos.com", name, "-n", ns, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def interval(ns: str) -> str | None:
    found = monitor(ns)
    return found["spec"]["endpoints"][0].get("interval") if found else None


def created_within(ns: str, uid: str, what: str) -> float:
    """Seconds from now until the resource's ServiceMonitor exists (at most FOLLOW_SECONDS)."""
    started = time.monotonic()
    sm = wait_for(lambda: monitor(ns), FOLLOW_SECONDS, f"ServiceMonitor {NAME} {what}", interval=0.2)
    took = time.monotonic() - started
    assert [r["uid"] for r in sm["metadata"]["ownerReferences"]] == [uid]
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    return took


def reverted_within(ns: str, what: str) -> float:
    """Edit the ServiceMonitor by hand; seconds until the operator put it back."""
    kubectl("patch", "servicemonitor", NAME, "-n", ns, "--type=merge", "-p", json.dumps(EDIT))
    started = time.monotonic()
    wait_for(lambda: interval(ns) == "30s", FOLLOW_SECONDS, f"the hand edit reverted {what}", interval=0.2)
    return time.monotonic() - started


def watch_requests(operator: Operator) -> float:
    return operator.counter("qwen_operator_watch_requests_total", resource="servicemonitors")


def test_a_service_monitor_crd_installed_deleted_and_installed_again_while_the_operator_runs(
    operator: Operator, ns: str, custom: client.CustomObjectsApi, no_service_monitor_crd: None
) -> None:
    del no_service_monitor_crd
    crd_path()  # the module is in the cache (`make tools`), before anything starts
    operator.kill(signal.SIGTERM)  # started again without the CRD, whatever ran before
    operator.start()
    uid = apply_ready(custom, ns)["metadata"]["uid"]
    assert monitor(ns) is None

    # Installed after the operator started: watched from then on, without a restart.
    install()
    first = created_within(ns, uid, "after the CRD was installed")
    first_revert = reverted_within(ns, "after the CRD was installed")
    wait_for(lambda: "DriftReverted" in reasons(ns, NAME), 30, "event DriftReverted")  # after the status
    assert watch_requests(operator) >= 2  # the operator's own list and watch, not Kopf's

    # Deleted (its ServiceMonitors go with it), then installed and deleted at once: the operator
    # lives on, and a new resource of its own is reconciled to Ready.
    uninstall()
    install()
    uninstall()
    assert operator.healthy(), operator.log_tail()
    time.sleep(3)  # the watch stopped when the CRD went (Kopf's event of its deletion)
    requests = watch_requests(operator)
    apply_yaml(ns, sample("after-crd"))
    wait_phase(custom, ns, "after-crd", "Ready")
    assert operator.healthy(), operator.log_tail()
    assert watch_requests(operator) == requests  # no request for a kind that is not served

    # Installed again: the ServiceMonitor comes back, and edits are seen and reverted again.
    install()
    again = created_within(ns, uid, "after the CRD was installed again")
    again_revert = reverted_within(ns, "after the CRD was installed again")
    print(
        f"ServiceMonitor created {first:.1f} s after the install, its edit reverted in "
        f"{first_revert:.1f} s; after the reinstall {again:.1f} s and {again_revert:.1f} s"
    )
