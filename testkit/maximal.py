"""A resource at every bound of the CRD: the largest one the apiserver would store.

Built from the CRD's own schema, not by hand, so a bound added or raised later is in it without
anyone remembering to: every string at its maxLength (matching its pattern), every list at its
maxItems, every map at its maxProperties (keys at the longest a key may be), every optional
object present. Then the few choices the rules force (one model source; a value or a valueFrom)
are made for the larger side, or per `variant`. tests/unit/test_bounds.py renders it and weighs
each child against etcd's request limit; e2e/test_crd.py has the apiserver accept it.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any, Literal

from qwen_operator.api import MAX_NAME_LENGTH, MAX_QUALIFIED_NAME, crd

Source = Literal["huggingFace", "shared", "pvc"]
SOURCES: tuple[Source, ...] = ("huggingFace", "shared", "pvc")
"""Where the weights come from: each renders other children (an init container, a Job, a claim)."""
NAME = "q" * MAX_NAME_LENGTH
NAMESPACE = "n" * 63
INT64_MAX = 2**63 - 1
"""An integer with no maximum in the schema: the apiserver's largest."""


def walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every node of an OpenAPI schema with its path (`.a.b`, `[]` for items, `{}` for a map's
    values): what the CRD tests and the bounds test read."""
    out = [(path, node)]
    for key, child in node.get("properties", {}).items():
        out += walk(child, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        out += walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        out += walk(node["additionalProperties"], f"{path}{{}}")
    return out


def spec_schema() -> dict[str, Any]:
    schema: dict[str, Any] = crd.openapi_schema()["properties"]["spec"]
    return schema


def maximal(node: dict[str, Any], counter: itertools.count[int] | None = None) -> Any:
    """The largest value `node` admits; strings differ from each other (list items that must
    be unique, such as env names, are)."""
    count = counter if counter is not None else itertools.count()
    if "enum" in node:
        return max(node["enum"], key=lambda v: len(json.dumps(v)))
    if node.get("type") == "string" or node.get("x-kubernetes-int-or-string"):
        return _string(node, next(count))
    kind = node["type"]
    if kind == "object" and "additionalProperties" in node:
        return {_key(i): maximal(node["additionalProperties"], count) for i in range(node["maxProperties"])}
    if kind == "object":
        return {k: maximal(child, count) for k, child in node.get("properties", {}).items()}
    if kind == "array":
        return [maximal(node["items"], count) for _ in range(node["maxItems"])]
    if kind in ("integer", "number"):
        return node.get("maximum", INT64_MAX)
    if kind == "boolean":
        return True
    raise ValueError(f"no largest value for {node}")


def _string(node: dict[str, Any], n: int) -> str:
    """The longest string the node admits: a plain one, or the first shape its pattern takes."""
    size = node["maxLength"]
    tag = f"a{n}"
    shapes = [
        (tag + "a" * size)[:size],  # names, arguments, values
        "1" * size,  # a quantity
        "1" * (size - 1) + "%",  # a percentage
        "http://" + "a" * (size - 7),  # a URL
        "a" * (size - 64) + "/" + "b" * 63,  # a resource name: domain/name
    ]
    pattern = node.get("pattern")
    for shape in shapes:
        if pattern is None or re.search(pattern, shape):
            return shape
    raise ValueError(f"no string of {size} characters matches {pattern}")


def _key(i: int) -> str:
    """A map key at the longest a key may be: a label key's prefix and name, distinct per `i`."""
    prefix = f"k{i}".ljust(MAX_QUALIFIED_NAME - 64, "a")
    return f"{prefix}/{'b' * 63}"


def maximal_spec(pipeline: int = 2, source: Source = "huggingFace") -> dict[str, Any]:
    """The spec at every bound, with `pipeline` pods a replica (above 1: a LeaderWorkerSet, which
    holds the pod template twice) and the weights from `source`."""
    spec: dict[str, Any] = maximal(spec_schema())
    spec["parallelism"]["pipeline"] = pipeline
    for var in spec["runtime"]["env"]:  # a value or a valueFrom: the value is the longer
        del var["valueFrom"]
    model = spec["model"]
    if source == "pvc":
        del model["source"]["huggingFace"]
        model["cache"]["mode"] = "PerReplica"
    else:
        del model["source"]["pvc"]
        model["cache"]["mode"] = "Shared" if source == "shared" else "PerReplica"
    return spec


def maximal_resource(pipeline: int = 2, source: Source = "huggingFace") -> dict[str, Any]:
    """The whole resource, with the longest name and namespace."""
    return {
        "apiVersion": "serving.qwen-operator.io/v1alpha1",
        "kind": "QwenThinkingDeployment",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "uid": "u" * 36},
        "spec": maximal_spec(pipeline, source),
    }


def value_from_sizes() -> dict[str, int]:
    """Each one-source valueFrom at its bounds, in JSON bytes: all below an env value's bound."""
    env = spec_schema()["properties"]["runtime"]["properties"]["env"]["items"]
    sources = env["properties"]["valueFrom"]["properties"]
    return {name: len(json.dumps({name: maximal(node)})) for name, node in sources.items()}
