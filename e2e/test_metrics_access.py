"""The operator's endpoints on the local control plane (issue 23): /metrics is HTTPS, and the
apiserver decides who reads it (TokenReview, then SubjectAccessReview of get /metrics): no
token gives 401, a ServiceAccount the role is not bound to 403, the same token once
qwen-operator-metrics-reader is bound 200. The Prometheus the tests build scrapes it with the
shipped ServiceMonitor's endpoint. Health is plain HTTP on a port of its own, and names no pod.

The operator runs as its ServiceAccount (operator_fixtures), so its reviews also prove the
ClusterRole's grants for them (e2e/test_operator.py checks every grant was used).
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.register_assert_rewrite("e2e.operator_fixtures")

from e2e.conftest import Cluster  # noqa: E402
from e2e.devcluster import scraper  # noqa: E402
from e2e.devcluster.kube import kubectl, wait_for  # noqa: E402
from e2e.operator_fixtures import (  # noqa: E402
    OPERATOR_USER,
    Operator,
    audit_entries,
    audit_offset,
    scrape_review,
)
from qwen_operator.process import access  # noqa: E402

pytest_plugins = ("e2e.operator_fixtures",)
pytestmark = pytest.mark.e2e


@pytest.fixture
def scraper_namespace() -> Iterator[str]:
    """The namespace of a ServiceAccount that stands for a scraper, and its binding, removed after."""
    name = f"qwen-scrape-{uuid.uuid4().hex[:5]}"
    try:
        yield name
    finally:
        kubectl("delete", "clusterrolebinding", f"{name}-prometheus-{scraper.READER_ROLE}",
                "--ignore-not-found", check=False)  # fmt: skip
        kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=false", check=False)


def test_metrics_answer_401_then_403_then_200_once_the_reader_role_is_bound(
    operator: Operator, cluster: Cluster, scraper_namespace: str
) -> None:
    url = operator.metrics_url
    offset = audit_offset(cluster)
    assert scraper.get(url)[0] == 401  # no token
    assert scraper.get(url, "not-a-token")[0] == 401  # a token the apiserver does not accept
    token = scraper.service_account_token(scraper_namespace, "prometheus")
    status, body = scraper.get(url, token)
    assert status == 403 and "qwen_operator_" not in body, (status, body)
    # RBAC's verdict: `kubectl auth can-i` for the same user says no as well.
    can = kubectl("auth", "can-i", "get", "/metrics",
                  f"--as=system:serviceaccount:{scraper_namespace}:prometheus", check=False)  # fmt: skip
    assert can.stdout.strip() == "no"
    scraper.bind(scraper_namespace, "prometheus")
    bound = time.monotonic()
    # The refusal is believed for REFUSED_SECONDS (access.py), then asked again.
    wait_for(lambda: scraper.get(url, token)[0] == 200, access.REFUSED_SECONDS + 15, "200 once bound")
    waited = time.monotonic() - bound
    status, body = scraper.get(url, token)
    assert status == 200 and "qwen_operator_leader" in body
    print(f"/metrics: 401 without a token, 403 unbound, 200 {waited:.1f}s after the binding")
    assert waited <= access.REFUSED_SECONDS + 5
    # Never in clear text on that port.
    with pytest.raises(OSError):  # urllib's URLError, or the connection dropped
        urllib.request.urlopen(url.replace("https://", "http://"), timeout=5).read()
    # The reviews were the operator's, as its ServiceAccount, and RBAC allowed each.
    if cluster.audit_log is not None:
        entries = audit_entries(cluster.audit_log, offset, OPERATOR_USER, reviews=True)
        reviews = [e for e in entries if scrape_review(e)]
        asked = {(e["objectRef"]["resource"], e["verb"], e["responseStatus"]["code"]) for e in reviews}
        assert asked == {("tokenreviews", "create", 201), ("subjectaccessreviews", "create", 201)}, asked


def test_the_tests_prometheus_scrapes_it_with_the_shipped_service_monitor(
    operator: Operator, tmp_path: Path
) -> None:
    """The endpoint of manifests/monitoring/servicemonitor.yaml, made into the scrape
    configuration the Prometheus Operator makes of it: HTTPS, the pod's token (here a file
    holding a metrics reader's token), the certificate not verified. Beside it, the same
    endpoint without a token, and one in plain HTTP: both down."""
    ep = scraper.endpoint()
    assert (ep["scheme"], ep["bearerTokenFile"], ep["tlsConfig"]) == (
        "https", scraper.POD_TOKEN_FILE, {"insecureSkipVerify": True},
    )  # fmt: skip
    token_file = tmp_path / "token"
    token_file.write_text(scraper.reader_token())
    token_file.chmod(0o600)
    target = f"127.0.0.1:{operator.metrics_port}"
    configs = [
        scraper.scrape_config(ep, "qwen-operator", target, token_file),
        scraper.scrape_config(ep, "no-token", target, None),
        scraper.scrape_config({**ep, "scheme": "http"}, "clear-text", target, token_file),
    ]
    with scraper.prometheus(tmp_path / "prometheus", configs) as url:

        def scraped() -> bool:
            health = {job: t["health"] for job, t in scraper.targets(url).items()}
            return health == {"qwen-operator": "up", "no-token": "down", "clear-text": "down"}

        try:
            wait_for(scraped, 60, "Prometheus scraping the operator (and not the other two)")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{scraper.targets(url)}") from None
        errors = {job: t["lastError"] for job, t in scraper.targets(url).items()}
        assert "401" in errors["no-token"], errors
        assert errors["qwen-operator"] == "", errors
        wait_for(lambda: scraper.query(url, 'qwen_operator_leader{job="qwen-operator"}'), 30, "a series")
        (leader,) = scraper.query(url, 'qwen_operator_leader{job="qwen-operator"}')
        assert leader["value"][1] == "1"
        (up,) = scraper.query(url, 'up{job="qwen-operator"}')
        assert up["value"][1] == "1"


def test_health_is_plain_http_on_its_own_port_and_names_no_pod(operator: Operator) -> None:
    for path in ("/healthz", "/readyz"):
        status, body = scraper.get(operator.url(path))
        assert status == 200 and body.startswith("ok; leading; apiserver answering"), (path, body)
        assert operator.pod_name not in body
    assert operator.health_port != operator.metrics_port
    assert scraper.get(f"http://127.0.0.1:{operator.health_port}/metrics")[0] == 404  # not on this port
