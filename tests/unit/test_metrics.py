"""The operator's own metrics: what issue 4 promises on /metrics (served by endpoints.py:
tests/unit/test_endpoints.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from qwen_operator.process import kube, metrics
from qwen_operator.process.workqueue import Retry
from testkit.fake import KEY, FakeCluster, reconciler
from testkit.wrappers import NAME, NS


def sample(metric: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(metric, labels) or 0.0


def series(metric: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(metric, labels)


def test_every_promised_metric_is_exposed() -> None:
    text = metrics.exposition().decode()
    for family in (
        "qwen_operator_reconciliations_total",
        "qwen_operator_reconcile_duration_seconds",
        "qwen_operator_resources",
        "qwen_operator_context_reductions_total",
        "qwen_operator_api_requests_total",
        "qwen_operator_api_errors_total",
        "qwen_operator_watch_requests_total",
        "qwen_operator_events_total",
        "qwen_operator_context_reduced_resources",
        "qwen_operator_retries_total",
        "qwen_operator_backing_off_resources",
        "qwen_operator_resource_desired_replicas",
        "qwen_operator_resource_ready_replicas",
        "qwen_operator_resource_replicas",
        "qwen_operator_resource_requested_context_tokens",
        "qwen_operator_resource_effective_context_tokens",
        "qwen_operator_resource_stalled",
        "qwen_operator_access_reviews_total",
        "qwen_operator_metrics_refused_total",
    ):
        assert f"# TYPE {family} " in text, family


def test_retries_are_counted_by_reason() -> None:
    before = sample("qwen_operator_retries_total", reason="ReconcileError")
    metrics.retried(RuntimeError("connection refused"), 1.0)
    metrics.retried(Retry("QuotaExceeded", "exceeded quota"), 2.0)
    assert sample("qwen_operator_retries_total", reason="ReconcileError") == before + 1
    assert sample("qwen_operator_retries_total", reason="QuotaExceeded") >= 1


def test_phase_gauge_counts_resources_not_updates() -> None:
    def count(phase: str) -> float:
        return sample("qwen_operator_resources", phase=phase)

    tracker = metrics.PhaseTracker()
    for _ in range(3):
        tracker.set(("a", "x"), "Ready")
    tracker.set(("a", "y"), "Pending")
    assert (count("Ready"), count("Pending")) == (1, 1)
    tracker.set(("a", "y"), "Ready")
    assert (count("Ready"), count("Pending")) == (2, 0)
    tracker.set(("a", "x"), None)  # deleted
    assert count("Ready") == 1


def test_reduced_gauge_counts_resources_below_their_request() -> None:
    tracker = metrics.ReducedTracker()
    for _ in range(2):
        tracker.set(("a", "x"), True)
    tracker.set(("a", "y"), True)
    assert sample("qwen_operator_context_reduced_resources") == 2
    tracker.set(("a", "x"), False)
    assert sample("qwen_operator_context_reduced_resources") == 1


def test_resource_gauges_follow_the_status_and_leave_nothing_stale() -> None:
    cluster = FakeCluster(spec={"replicas": 2, "context": {"maxModelLen": 131072}})
    for _ in range(2):  # create, then the status follows
        reconciler(cluster).reconcile(KEY)
    key = {"namespace": NS, "name": NAME}
    assert sample("qwen_operator_resource_desired_replicas", **key) == 2
    assert sample("qwen_operator_resource_requested_context_tokens", **key) == 131072
    assert sample("qwen_operator_resource_effective_context_tokens", **key) == 131072
    assert {
        s: sample("qwen_operator_resource_replicas", **key, stage=s) for s in metrics.STAGES
    } == dict.fromkeys(metrics.STAGES, 0)
    assert (
        metrics.REGISTRY.get_sample_value("qwen_operator_resource_replicas", {**key, "stage": "Serving"}) == 0
    )

    tracker = metrics.ResourceTracker()
    stalled = metrics.Figures(2, 1, (("Serving", 1), ("CrashLoop", 1)), 262144, 131072, "CrashLoopBackOff")
    tracker.set(("ns", "x"), stalled)
    x = {"namespace": "ns", "name": "x"}
    assert sample("qwen_operator_resource_stalled", **x, reason="CrashLoopBackOff") == 1
    assert sample("qwen_operator_resource_replicas", **x, stage="CrashLoop") == 1
    tracker.set(("ns", "x"), metrics.Figures(2, 2, (("Serving", 2),), 262144, 131072, None))
    assert (
        metrics.REGISTRY.get_sample_value(
            "qwen_operator_resource_stalled", {**x, "reason": "CrashLoopBackOff"}
        )
        is None
    )
    assert (
        metrics.REGISTRY.get_sample_value("qwen_operator_resource_replicas", {**x, "stage": "CrashLoop"})
        is None
    )
    tracker.set(("ns", "x"), None)  # deleted: every series of it goes
    assert metrics.REGISTRY.get_sample_value("qwen_operator_resource_desired_replicas", x) is None
    assert (
        metrics.REGISTRY.get_sample_value("qwen_operator_resource_replicas", {**x, "stage": "Serving"})
        is None
    )


def test_reconciliations_are_counted_by_result_and_timed() -> None:
    cluster = FakeCluster()
    before = (
        sample("qwen_operator_reconciliations_total", result="changed"),
        sample("qwen_operator_reconciliations_total", result="unchanged"),
        sample("qwen_operator_reconcile_duration_seconds_count"),
    )
    reconciler(cluster).reconcile(KEY)  # creates the children
    reconciler(cluster).reconcile(KEY)  # the status follows them
    reconciler(cluster).reconcile(KEY)  # nothing to do
    after = (
        sample("qwen_operator_reconciliations_total", result="changed"),
        sample("qwen_operator_reconciliations_total", result="unchanged"),
        sample("qwen_operator_reconcile_duration_seconds_count"),
    )
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 2, 3]


class _Response:
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status, self.reason, self.data = status, "", json.dumps(body).encode()

    def read(self) -> None:
        pass


class _Client:
    """Stands in for kubernetes.client.ApiClient: records requests, answers with `status`."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.sent: list[dict[str, Any]] = []

    def param_serialize(self, **kw: Any) -> tuple[str, str, dict[str, str], Any, None]:
        self.sent.append(kw)
        return kw["method"], kw["resource_path"], kw["header_params"], kw["body"], None

    def call_api(self, *args: Any, **kw: Any) -> _Response:
        if self.status >= 400:
            return _Response(self.status, {"message": "not found"})
        return _Response(self.status, {"kind": "StatefulSet"})


def test_requests_are_counted_by_verb_and_errors_by_code() -> None:
    requests = ("qwen_operator_api_requests_total", {"verb": "delete", "resource": "statefulsets"})
    errors = ("qwen_operator_api_errors_total", {"verb": "delete", "resource": "statefulsets", "code": "404"})
    before = sample(requests[0], **requests[1]), sample(errors[0], **errors[1])
    assert kube.Kube(_Client(404)).delete("StatefulSet", NS, NAME) == {}  # type: ignore[arg-type]
    assert (sample(requests[0], **requests[1]), sample(errors[0], **errors[1])) == (
        before[0] + 1,
        before[1] + 1,
    )


def test_apply_is_server_side_under_one_field_manager_with_force() -> None:
    client = _Client(200)
    dry = sample("qwen_operator_api_requests_total", verb="apply-dry-run", resource="statefulsets")
    manifest = {"kind": "StatefulSet", "metadata": {"name": NAME, "namespace": NS}}
    kube.Kube(client).apply(manifest, dry_run=True)  # type: ignore[arg-type]
    (sent,) = client.sent
    assert sent["method"] == "PATCH"
    assert sent["header_params"]["Content-Type"] == "application/apply-patch+yaml"
    assert sent["query_params"] == [("fieldManager", "qwen-operator"), ("force", "true"), ("dryRun", "All")]
    assert sent["resource_path"] == f"/apis/apps/v1/namespaces/{NS}/statefulsets/{NAME}"
    assert (
        sample("qwen_operator_api_requests_total", verb="apply-dry-run", resource="statefulsets") == dry + 1
    )


def test_a_replica_without_the_lease_sends_nothing_and_lease_requests_are_counted_apart() -> None:
    client = _Client(200)
    leading = {"now": False}
    api = kube.Kube(client, may_write=lambda: leading["now"])  # type: ignore[arg-type]
    manifest = {"kind": "Service", "metadata": {"name": NAME, "namespace": NS}}
    applies = sample("qwen_operator_api_requests_total", verb="apply", resource="services")
    with pytest.raises(kube.NotLeading):
        api.apply(manifest)
    assert (
        client.sent == []
        and sample("qwen_operator_api_requests_total", verb="apply", resource="services") == applies
    )
    renewals = sample("qwen_operator_lease_requests_total", verb="update")
    body = {"metadata": {"name": "qwen-operator", "namespace": "ops", "resourceVersion": "7"}, "spec": {}}
    api.replace_lease("ops", "qwen-operator", body)  # the Lease's own requests are never fenced
    (sent,) = client.sent
    assert (sent["method"], sent["resource_path"]) == (
        "PUT",
        "/apis/coordination.k8s.io/v1/namespaces/ops/leases/qwen-operator",
    )
    assert sample("qwen_operator_lease_requests_total", verb="update") == renewals + 1
    leading["now"] = True
    api.apply(manifest)
    assert sample("qwen_operator_api_requests_total", verb="apply", resource="services") == applies + 1


def test_reviews_for_metrics_are_never_fenced_and_counted_apart() -> None:
    """A standby replica serves /metrics too, so it must ask its reviews; they are not the
    reconciler's requests (an idle operator sends none of those, scraped or not)."""
    client = _Client(200)
    api = kube.Kube(client, may_write=lambda: False)  # type: ignore[arg-type]
    sent_before = sample("qwen_operator_api_requests_total", verb="create", resource="tokenreviews")
    reviews = sample("qwen_operator_access_reviews_total", resource="tokenreviews")
    api.review("tokenreviews", {"kind": "TokenReview", "spec": {"token": "t"}})
    api.review("subjectaccessreviews", {"kind": "SubjectAccessReview", "spec": {}})
    assert [(s["method"], s["resource_path"]) for s in client.sent] == [
        ("POST", "/apis/authentication.k8s.io/v1/tokenreviews"),
        ("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews"),
    ]
    assert sample("qwen_operator_access_reviews_total", resource="tokenreviews") == reviews + 1
    sent = sample("qwen_operator_api_requests_total", verb="create", resource="tokenreviews")
    assert sent == sent_before == 0
