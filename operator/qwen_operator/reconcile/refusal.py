"""An apiserver's refusal, read from the `Status` object it returned, never from its message text.

The apiserver answers a refused write with a `Status` (metav1.Status): an HTTP code, a
machine-readable `reason`, and `details.causes[]` that name the field and the cause's type (its
JSON key is `reason` too: metav1.StatusCause's Type).
`read` turns one into a typed `Refusal` for the decision to answer (reconcile/decide.py); the
message is kept only to be shown to people.

- 400 BadRequest, 422 Invalid: the content (a value the schema let through, a webhook's
  verdict). A 422 whose causes are all on fields the registry says are fixed at creation, of a
  kind the operator replaces, is `FIELD_IMMUTABLE`: the decision plans the replacement.
- 403 Forbidden with the cause `NamespaceTerminating`: the namespace is being deleted.
- 403 Forbidden otherwise: a ResourceQuota, an admission policy or RBAC forbids the write. The
  three return the same Status (reason Forbidden, no cause), so the operator does not guess
  which: the message says, and the write is retried with back-off.
- 404 NotFound on an apply: the kind's API is not served (an apply creates a missing object).
- 409 Conflict: someone wrote in between; the next pass reads it.

One answer is not a refusal but travels the same way: `EXISTS`, a lookup (plan.Lookup) found an
object of a child's name that the cache did not hold. Nothing was written; the decision judges
whether it is ours (reconcile/decide.py `owned`) and, if not, leaves it alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from qwen_operator.api.vocabulary import Reason
from qwen_operator.children import registry
from qwen_operator.reconcile.snapshot import Child

NAMESPACE_TERMINATING_CAUSE = "NamespaceTerminating"
"""The cause of the NamespaceLifecycle admission's refusal (k8s.io/api core/v1
NamespaceTerminatingCause); seen on kube-apiserver 1.36 for an apply and its dry run."""
FIELD_FORBIDDEN_CAUSE = "FieldValueForbidden"
"""The cause type of `field.Forbidden`: a StatefulSet's `spec` beyond what may change in place."""


class Kind(StrEnum):
    """What a refusal means for the decision."""

    INVALID = "Invalid"
    FIELD_IMMUTABLE = "FieldImmutable"
    FORBIDDEN = "Forbidden"
    NAMESPACE_TERMINATING = "NamespaceTerminating"
    NOT_SERVED = "NotServed"
    CONFLICT = "Conflict"
    OTHER = "Other"
    EXISTS = "Exists"
    """Not the apiserver's refusal: a lookup found objects of children's names (`Refusal.found`)."""


ANSWERED = frozenset(
    {Kind.INVALID, Kind.FIELD_IMMUTABLE, Kind.FORBIDDEN, Kind.NAMESPACE_TERMINATING, Kind.EXISTS}
)
"""Refusals the decision answers with a plan (a status, a replacement); the others are errors
the queue retries (an API about to be served, a conflict, an outage)."""


@dataclass(frozen=True)
class Refusal:
    """The apiserver refused a write of the plan: nothing after it was written."""

    kind: Kind
    what: str
    """Kind and name of the object it refused ("StatefulSet q")."""
    message: str
    code: int = 0
    fields: tuple[str, ...] = ()
    """The fields its causes name."""
    done: tuple[str, ...] = ()
    """What the plan wrote before it (idents), whose events the next plan posts."""
    said: tuple[Any, ...] = ()
    """The events the plan attached to what it wrote before the refusal (events.Event)."""
    found: tuple[Child, ...] = ()
    """`EXISTS`: the objects the lookups found, for the decision to judge."""

    @property
    def reason(self) -> str:
        """The status reason that reports it."""
        return Reason.WRITE_FORBIDDEN if self.kind == Kind.FORBIDDEN else Reason.INVALID_SPEC

    @property
    def retry(self) -> bool:
        """It may end without the resource changing, and no watch would tell: look again later."""
        return self.kind == Kind.FORBIDDEN


def _causes(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    details = status.get("details") if isinstance(status.get("details"), Mapping) else {}
    return [c for c in (details or {}).get("causes") or [] if isinstance(c, Mapping)]


def _immutable(object_kind: str, causes: list[Mapping[str, Any]]) -> bool:
    child = registry.BY_KIND.get(object_kind)
    if child is None or child.replaced is None or not causes:
        return False
    fixed = child.fixed_fields
    return all(c.get("reason") == FIELD_FORBIDDEN_CAUSE or str(c.get("field") or "") in fixed for c in causes)


def read(code: int, status: Mapping[str, Any], object_kind: str, what: str) -> Refusal:
    """The typed refusal of a write of `what` (an object of `object_kind`) answered with `code`
    and the Status body `status` ({} when the body was not a Status)."""
    reason = str(status.get("reason") or "")
    message = str(status.get("message") or f"HTTP {code}")
    causes = _causes(status)
    fields = tuple(str(c.get("field") or "") for c in causes if c.get("field"))
    kind = Kind.OTHER
    if code == 422 or reason == "Invalid":
        kind = Kind.FIELD_IMMUTABLE if _immutable(object_kind, causes) else Kind.INVALID
    elif code == 400 or reason == "BadRequest":
        kind = Kind.INVALID
    elif code == 403 or reason == "Forbidden":
        terminating = any(c.get("reason") == NAMESPACE_TERMINATING_CAUSE for c in causes)
        kind = Kind.NAMESPACE_TERMINATING if terminating else Kind.FORBIDDEN
    elif code == 404 or reason == "NotFound":
        kind = Kind.NOT_SERVED
    elif code == 409 or reason in ("Conflict", "AlreadyExists"):
        kind = Kind.CONFLICT
    return Refusal(kind, what, message, code, fields)


def exists(found: tuple[Child, ...]) -> Refusal:
    """The lookups found these objects: nothing was written."""
    names = ", ".join(f"{c.kind} {c.name}" for c in found)
    return Refusal(Kind.EXISTS, names, f"found {names}, which the cache did not hold", found=found)
