"""The whole resource, and how a body from the apiserver (or a file) is read into it, with one
clear error."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError

from qwen_operator.api.defaults import MAX_NAME_LENGTH
from qwen_operator.api.rules import ApiObject, Rule, RuleError
from qwen_operator.api.spec import QwenThinkingDeploymentSpec, _sub

__all__ = [
    "NAME_PATTERN",
    "InvalidResource",
    "ObjectMeta",
    "QwenThinkingDeployment",
    "parse_resource",
    "without_nulls",
]


class ObjectMeta(ApiObject):
    """The part of metadata the operator reads."""

    model_config = ApiObject.model_config | {"extra": "ignore"}

    name: str
    namespace: str = "default"
    uid: str | None = None
    generation: int | None = None
    annotations: dict[str, str] = Field(default_factory=dict)


NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"


class QwenThinkingDeployment(ApiObject):
    """A Qwen3 thinking model served by vLLM."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=(
                f"self.metadata.name.size() <= {MAX_NAME_LENGTH} && "
                f"self.metadata.name.matches('{NAME_PATTERN}')"
            ),
            message=(
                f"metadata.name must be at most {MAX_NAME_LENGTH} characters, start with a letter and "
                "contain only lowercase letters, digits and '-' (it names the StatefulSet and Services)"
            ),
            check=lambda r: (
                len(r.metadata.name) <= MAX_NAME_LENGTH
                and re.match(NAME_PATTERN, r.metadata.name) is not None
            ),
            field_path=".metadata.name",
        ),
    )

    api_version: Literal["serving.qwen-operator.io/v1alpha1"] = "serving.qwen-operator.io/v1alpha1"
    kind: Literal["QwenThinkingDeployment"] = "QwenThinkingDeployment"
    metadata: ObjectMeta
    spec: QwenThinkingDeploymentSpec = _sub(QwenThinkingDeploymentSpec)
    status: Any = Field(default=None, exclude=True)
    """Ignored, as the apiserver ignores it outside the status subresource (`kubectl get -o yaml`)."""


class InvalidResource(ValueError):
    """The resource breaks a schema or CEL rule; `field` names where."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def without_nulls(value: Any) -> Any:
    """The apiserver drops a field whose value is null (none of ours is nullable), then defaults it."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def parse_resource(obj: dict[str, Any]) -> QwenThinkingDeployment:
    """Validate a whole resource the way the apiserver would, with one clear error."""
    try:
        return QwenThinkingDeployment.model_validate(without_nulls(obj))
    except ValidationError as exc:
        err = exc.errors()[0]
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, RuleError):
            path = cause.rule.field_path or ""
            field = (field + path) if field else path.lstrip(".")
            raise InvalidResource(field, cause.rule.message) from None
        raise InvalidResource(field or "resource", err["msg"].removeprefix("Value error, ")) from None
