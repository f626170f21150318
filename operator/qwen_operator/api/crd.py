"""Generate the CustomResourceDefinition from the pydantic models.

Pydantic emits JSON Schema 2020-12; the apiserver wants a structural OpenAPI v3 schema.
This module turns one into the other: inline `$ref`s, turn `X | None` into an optional X,
`int | str` into `x-kubernetes-int-or-string`, numeric `exclusiveMinimum` into the boolean
form, and add each model's rules as CEL `x-kubernetes-validations`.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from qwen_operator import api
from qwen_operator.api.rules import ApiObject
from qwen_operator.api.vocabulary import ConditionType, Reason

Schema = dict[str, Any]
_DEFAULT_OBJECT = "x-qwen-default-object"
_PRESERVE = "x-kubernetes-preserve-unknown-fields"


def _models(root: type[BaseModel]) -> dict[str, type[ApiObject]]:
    """Every ApiObject class reachable from `root`, by class name (pydantic's $defs keys)."""
    found: dict[str, type[ApiObject]] = {}
    stack: list[type[Any]] = [root]
    while stack:
        cls = stack.pop()
        if not (isinstance(cls, type) and issubclass(cls, ApiObject)) or cls.__name__ in found:
            continue
        found[cls.__name__] = cls
        for field in cls.model_fields.values():
            stack.extend(_classes_in(field.annotation))
    return found


def _classes_in(annotation: Any) -> list[type[Any]]:
    if isinstance(annotation, type):
        return [annotation]
    return [c for arg in getattr(annotation, "__args__", ()) for c in _classes_in(arg)]


class _Converter:
    def __init__(self, root: type[BaseModel]) -> None:
        self.full = root.model_json_schema(by_alias=True)
        self.defs: dict[str, Schema] = self.full.get("$defs", {})
        self.models = _models(root)

    def convert(self, node: Schema) -> Schema:
        node = dict(node)
        if "$ref" in node:
            name = node.pop("$ref").rsplit("/", 1)[-1]
            node = {**self.convert(self.defs[name]), **node}
            return self._finish(node, self.models.get(name))
        if "anyOf" in node:
            node = self._any_of(node)
            if "anyOf" not in node:
                return self.convert(node)
        return self._finish(self._recurse(node), None)

    def _any_of(self, node: Schema) -> Schema:
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if node.get("default", ...) is None:
            node.pop("default")
        types = sorted(o.get("type", "") for o in options)
        if types == ["integer", "string"]:
            # each option's constraints stay: the apiserver applies pattern to strings, minimum to ints
            (text,) = [o for o in options if o["type"] == "string"]
            return {
                **{k: v for k, v in text.items() if k != "type"},
                **node,
                "x-kubernetes-int-or-string": True,
            }
        if len(options) != 1:
            raise ValueError(f"cannot express anyOf {options} structurally")
        return {**options[0], **node}

    def _recurse(self, node: Schema) -> Schema:
        if "properties" in node:
            node["properties"] = {k: self.convert(v) for k, v in node["properties"].items()}
        if isinstance(node.get("items"), dict):
            node["items"] = self.convert(node["items"])
        extra = node.get("additionalProperties")
        if node.get(_PRESERVE) or extra is False or extra is True:
            node.pop("additionalProperties", None)
        elif isinstance(extra, dict):
            node["additionalProperties"] = self.convert(extra)
        return node

    @staticmethod
    def _finish(node: Schema, model: type[ApiObject] | None) -> Schema:
        node.pop("title", None)
        if "const" in node:  # a one-value Literal: OpenAPI v3 in a CRD knows enum, not const
            node["enum"] = [node.pop("const")]
        if isinstance(node.get("exclusiveMinimum"), int | float) and not isinstance(
            node["exclusiveMinimum"], bool
        ):
            node["minimum"], node["exclusiveMinimum"] = node["exclusiveMinimum"], True
        if node.pop(_DEFAULT_OBJECT, False):
            # The apiserver checks a default against the object's CEL rules as written, before
            # nested defaults apply, so an object with rules defaults to its full defaults.
            node["default"] = {}
            if model is not None and model.rules:
                node["default"] = model().model_dump(by_alias=True, mode="json", exclude_none=True)
        elif node.get("default", 0) in ("", [], {}, None):
            node.pop("default")
        if model is not None and model.rules and "x-kubernetes-validations" not in node:
            node["x-kubernetes-validations"] = [r.as_crd() for r in model.rules]
        if node.get(_PRESERVE):
            node["type"] = "object"
        first: dict[str, Any] = {k: node.pop(k) for k in ("type", "description") if k in node}
        return {**first, **node}


def schema_of(model: type[BaseModel]) -> Schema:
    """The structural OpenAPI schema of one model."""
    conv = _Converter(model)
    node = conv.convert({k: v for k, v in conv.full.items() if k != "$defs"})
    return _Converter._finish(node, model if issubclass(model, ApiObject) else None)


NEW_STATUS = {
    "conditions": [
        {
            "type": str(ConditionType.RECONCILING),
            "status": "True",
            "reason": str(Reason.PROGRESSING),
            "message": "waiting for the operator's first reconciliation",
        }
    ]
}
"""What a resource reads before the operator wrote anything: in progress (kstatus reads a
resource with no status at all as Current, so Flux and `kubectl wait` would be done at once)."""


def openapi_schema() -> Schema:
    """The whole resource's schema: root rules, spec and status."""
    spec = schema_of(api.QwenThinkingDeploymentSpec)
    spec["default"] = {}
    return {
        "type": "object",
        "description": api.QwenThinkingDeployment.__doc__,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "serving.qwen-operator.io/v1alpha1"},
            "kind": {"type": "string", "description": "QwenThinkingDeployment"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": {**schema_of(api.QwenThinkingDeploymentStatus), "default": NEW_STATUS},
        },
        # Not Rule.as_crd(): the schema declares no fields under metadata, so the apiserver
        # could not resolve a fieldPath such as .metadata.name (the CLI still reports it).
        "x-kubernetes-validations": [
            {"rule": r.cel, "message": r.message} for r in api.QwenThinkingDeployment.rules
        ],
    }


PRINTER_COLUMNS = [
    {
        "name": "Replicas",
        "type": "integer",
        "jsonPath": ".status.replicas",
        "description": "Replicas that exist",
    },
    {
        "name": "Ready",  # not a reason
        "type": "integer",
        "jsonPath": ".status.readyReplicas",
        "description": "Replicas ready",
    },
    {
        "name": "Context",
        "type": "integer",
        "jsonPath": ".status.context.effective",
        "description": "Context length in force",
    },
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Phase"},
    {
        "name": "Progress",
        "type": "string",
        "jsonPath": ".status.progress",
        "description": "The replicas' stages in short",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Endpoint",
        "type": "string",
        "jsonPath": ".status.endpoint",
        "priority": 1,
        "description": "OpenAI-compatible URL",
    },
]


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition object."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{api.PLURAL}.{api.GROUP}",
            "labels": {
                "app.kubernetes.io/name": "qwen-operator",
                "app.kubernetes.io/part-of": "qwen-operator",
            },
        },
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": list(api.SHORT_NAMES),
                "categories": list(api.CATEGORIES),
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


def crd_yaml() -> str:
    """The CRD as the YAML text checked in under crds/."""
    header = "# Generated by `qwen-operator crd` from qwen_operator/api/. Do not edit.\n"
    return header + yaml.dump(crd(), Dumper=_NoAliasDumper, sort_keys=False, width=1000, allow_unicode=True)


class _NoAliasDumper(yaml.SafeDumper):
    """Write shared sub-objects out in full: anchors would puzzle readers of the CRD."""

    def ignore_aliases(self, data: Any) -> bool:
        return True
