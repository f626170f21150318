"""Refusals are read from the apiserver's Status object, and `act` only carries out the plan.

The Status bodies below are what kube-apiserver returns (metav1.Status, as `kubectl -v=8` shows
them): the reason and the causes decide; the message is only shown to people.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from qwen_operator.process.kube import ApiError
from qwen_operator.reconcile import refusal
from qwen_operator.reconcile.refusal import Kind
from qwen_operator.reconcile.refusal import read as read_refusal
from testkit.fake import KEY, FakeCluster, reconciler, refused

ACT = Path(__file__).resolve().parent.parent.parent / "operator" / "qwen_operator" / "reconcile" / "act.py"


def status(
    code: int, reason: str, message: str, causes: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    details: dict[str, Any] = {"name": "q", "kind": "statefulsets"}
    if causes is not None:
        details["causes"] = causes
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "details": details, "code": code}  # fmt: skip


QUOTA = status(403, "Forbidden", 'services "q" is forbidden: exceeded quota: no-lb, requested: ...')
RBAC = status(403, "Forbidden", 'services "q" is forbidden: User "x" cannot patch resource "services"')
TERMINATING = status(
    403, "Forbidden", 'services "q" is forbidden: unable to create new content in namespace ns because it is '
    "being terminated", [{"reason": "NamespaceTerminating", "message": "...", "field": "metadata.namespace"}],
)  # fmt: skip
STS_IMMUTABLE = status(
    422, "Invalid", "StatefulSet.apps q is invalid: spec: Forbidden: updates to statefulset spec for "
    "fields other than 'replicas', 'ordinals', 'template', ... are forbidden",
    [{"reason": "FieldValueForbidden", "message": "Forbidden: updates to ...", "field": "spec"}],
)  # fmt: skip
JOB_IMMUTABLE = status(
    422, "Invalid", 'Job.batch "q-weights" is invalid: spec.template: Invalid value: ...: field is immutable',
    [{"reason": "FieldValueInvalid", "message": "field is immutable", "field": "spec.template"}],
)  # fmt: skip
CONFIG_MAP_IMMUTABLE = status(
    422, "Invalid", 'ConfigMap "q-launcher-0123456789" is invalid: data: Forbidden: field is immutable when '
    "`immutable` is set",
    [{"reason": "FieldValueForbidden", "message": "Forbidden: field is immutable when `immutable` is set",
      "field": "data"}],
)  # fmt: skip
"""kube-apiserver's answer to a change of an immutable ConfigMap's data (ValidateConfigMapUpdate)."""
TOLERATION = status(
    422, "Invalid", "StatefulSet.apps q is invalid: spec.template.spec.tolerations[0].operator: Unsupported",
    [{"reason": "FieldValueNotSupported", "field": "spec.template.spec.tolerations[0].operator"}],
)  # fmt: skip
CONFLICT = status(409, "Conflict", "Operation cannot be fulfilled on ...: the object has been modified")
NOT_FOUND = status(404, "NotFound", "the server could not find the requested resource")


@pytest.mark.parametrize(
    ("code", "body", "kind", "want"),
    [
        (403, QUOTA, "Service", Kind.FORBIDDEN),
        (403, RBAC, "Service", Kind.FORBIDDEN),
        (403, TERMINATING, "Service", Kind.NAMESPACE_TERMINATING),
        (422, STS_IMMUTABLE, "StatefulSet", Kind.FIELD_IMMUTABLE),
        (422, JOB_IMMUTABLE, "Job", Kind.FIELD_IMMUTABLE),
        (422, JOB_IMMUTABLE, "PodDisruptionBudget", Kind.INVALID),  # never replaced: its content is refused
        (422, CONFIG_MAP_IMMUTABLE, "ConfigMap", Kind.FIELD_IMMUTABLE),  # the launcher's: replaced
        (422, TOLERATION, "StatefulSet", Kind.INVALID),
        (409, CONFLICT, "StatefulSet", Kind.CONFLICT),
        (404, NOT_FOUND, "ServiceMonitor", Kind.NOT_SERVED),
        (500, {}, "StatefulSet", Kind.OTHER),
    ],
    ids=[
        "quota",
        "rbac",
        "terminating",
        "sts-immutable",
        "job-immutable",
        "pdb-invalid",
        "launcher-immutable",
        "invalid",
        "conflict",
        "not-found",
        "no-status",
    ],
)
def test_a_status_object_is_read_into_a_typed_refusal(
    code: int, body: dict[str, Any], kind: str, want: Kind
) -> None:
    found = read_refusal(code, body, kind, f"{kind} q")
    assert found.kind == want
    assert found.message == (body.get("message") or f"HTTP {code}")
    assert found.retry == (want == Kind.FORBIDDEN)


def test_the_message_text_decides_nothing() -> None:
    """The same words under another structure read as that structure says."""
    swapped = dict(QUOTA, message=TERMINATING["message"])
    assert read_refusal(403, swapped, "Service", "Service q").kind == Kind.FORBIDDEN
    invalid = dict(TOLERATION, message="spec: field is immutable")
    assert read_refusal(422, invalid, "StatefulSet", "StatefulSet q").kind == Kind.INVALID


@pytest.mark.parametrize(
    ("body", "outcome"),
    [(QUOTA, "retry"), (TERMINATING, "terminating"), (STS_IMMUTABLE, "replaced"), (CONFLICT, "error"),
     (NOT_FOUND, "error")],
    ids=["quota", "terminating", "immutable", "conflict", "not-found"],
)  # fmt: skip
def test_the_reconciler_answers_each_refusal_by_its_type(body: dict[str, Any], outcome: str) -> None:
    from qwen_operator.api.vocabulary import Result
    from qwen_operator.process.workqueue import Retry

    cluster = FakeCluster()
    reconciler(cluster).reconcile(KEY)
    cluster.edit({"model": {"cache": {"size": "700Gi"}}})  # a StatefulSet change: its apply is refused

    def refuse(manifest: Any, dry_run: bool) -> None:
        if manifest["kind"] == "StatefulSet":
            raise ApiError(int(body["code"]), str(body["reason"]), str(body["message"]), body)

    cluster.on_apply = refuse
    cluster.calls.clear()
    if outcome == "retry":
        with pytest.raises(Retry) as info:
            reconciler(cluster).reconcile(KEY)
        assert (
            info.value.reason == "WriteForbidden"
            and cluster.condition("Stalled")["reason"] == "WriteForbidden"
        )
    elif outcome == "terminating":
        assert reconciler(cluster).reconcile(KEY).result == Result.TERMINATING
        assert cluster.condition("Reconciling")["reason"] == "NamespaceTerminating"
    elif outcome == "replaced":
        reconciler(cluster).reconcile(KEY)
        assert ("delete", "StatefulSet") in cluster.calls and cluster.propagations == ["Orphan"]
    else:
        with pytest.raises(ApiError):
            reconciler(cluster).reconcile(KEY)
        assert ("delete", "StatefulSet") not in cluster.calls


def test_a_refusal_not_answered_is_raised_and_one_answered_is_returned() -> None:
    assert Kind.CONFLICT not in refusal.ANSWERED and Kind.NOT_SERVED not in refusal.ANSWERED
    assert {
        Kind.INVALID,
        Kind.FIELD_IMMUTABLE,
        Kind.FORBIDDEN,
        Kind.NAMESPACE_TERMINATING,
    } <= refusal.ANSWERED
    assert refused(403, "x").body["reason"] == "Forbidden"


def test_act_matches_no_message_text_reads_no_clock_and_chooses_no_operation() -> None:
    """act.py carries out the plan: no string comparison on an error's text, no clock, no kind
    or dry-run choice of its own (those are the plan's: reconcile/plan.py)."""
    tree = ast.parse(ACT.read_text())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    compares = [n for n in ast.walk(tree) if isinstance(n, ast.Compare)]
    assert not any(
        isinstance(c, ast.Attribute) and c.attr == "message" for n in compares for c in ast.walk(n)
    )
    assert not any(
        isinstance(c, ast.Constant) and isinstance(c.value, str) for n in compares for c in ast.walk(n)
    )
    assert not {"clock", "time", "datetime"} & (names | imported | {m.split(".")[-1] for m in modules if m})
    assert not {"WORKLOAD_KINDS", "REPLACEABLE", "registry"} & (names | imported | attrs)
    kinds = ("StatefulSet", "Service", "Orphan")
    assert not any(isinstance(n, ast.Constant) and n.value in kinds for n in ast.walk(tree))
