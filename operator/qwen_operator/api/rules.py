"""Cross-field rules, written once: as CEL for the apiserver and as Python for the CLI.

Each rule carries the CEL expression that goes into the CRD's `x-kubernetes-validations`
and a Python predicate over the same object, so `qwen-operator render` and the apiserver
reject exactly the same resources with the same message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel


@dataclass(frozen=True)
class Rule:
    """One cross-field rule of an object in the API."""

    cel: str
    message: str
    check: Callable[[Any], bool]
    field_path: str | None = None
    """Where the apiserver reports the failure, relative to the object (CEL fieldPath)."""

    def as_crd(self) -> dict[str, str]:
        out = {"rule": self.cel, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        return out


class RuleError(ValueError):
    """A rule failed; carries the rule so errors can name its field path."""

    def __init__(self, rule: Rule) -> None:
        super().__init__(rule.message)
        self.rule = rule


class ApiObject(BaseModel):
    """Base of every API object: camelCase on the wire, unknown fields rejected, rules checked.

    Strict types, as the apiserver's schema: `"2"` is no integer and `"yes"` no boolean (pydantic
    would convert them, and `render` would accept what `kubectl apply` refuses)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        strict=True,
        use_attribute_docstrings=True,
    )
    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> ApiObject:
        for rule in type(self).rules:
            if not rule.check(self):
                raise RuleError(rule)
        return self


def cel_string_list(values: tuple[str, ...]) -> str:
    """A CEL list literal of strings."""
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"
