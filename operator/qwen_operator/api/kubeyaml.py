"""Manifests read the way kubectl and the apiserver read them, so `render` agrees with `apply`.

kubectl and the apiserver read YAML with Go's library (sigs.k8s.io/yaml), then convert it to
JSON; PyYAML reads the same text differently. Go's reading, which this module follows:

* `y`, `n`, `yes`, `no`, `on`, `off` (in three spellings each) are booleans, also as keys;
* `1e3`, `1.0e5`, `0o17`, `0b101`, `08` and `1_000` are numbers, `1:20` is a string;
* a date such as `2024-01-01` stays a string;
* an integral number such as `2.0` arrives as the integer 2 (the JSON conversion writes it so);
* a key that is not a string becomes one (`1` -> "1", `off` -> "false");
* an unknown tag (`!!python/object:...`) is ignored: the value is read as if untagged.

And it refuses what a manifest must never be, naming where: a key given twice (kubectl keeps
the last one silently, the apiserver's strict decoding refuses it), a value JSON cannot carry
(`.inf`, `.nan`), nesting deeper than `MAX_DEPTH`, and aliases that expand the document
beyond `MAX_VALUES` values (a "billion laughs": a few lines that expand to gigabytes).
PyYAML parses and composes (anchors resolved to shared nodes, marks kept for line numbers);
the scalars are resolved here.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Iterator
from typing import Any

import yaml

MAX_DEPTH = 64
"""Collections inside collections; a Kubernetes object is a dozen deep at most."""
MAX_VALUES = 100_000
"""Values in one document once every alias is expanded; a resource has a few hundred."""

_TAG = "tag:yaml.org,2002:"
_PLAIN = "!qwen/plain"
"""The tag this module's resolver gives an untagged plain scalar: resolved later, as Go does."""
_BOOLEANS = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), True),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), False),
}
_SPECIAL: dict[str, Any] = {
    **_BOOLEANS,
    **dict.fromkeys(("", "~", "null", "Null", "NULL")),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
_GO_INT = re.compile(r"([+-]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)")
_YAML_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_DOT_FLOAT = re.compile(r"\.[0-9]+([eE][-+]?[0-9]+)?")
_UINT64 = 2**64
_JSON_INTEGRAL = 1e21
"""Go's JSON encoder writes an integral float below this without exponent, which then decodes as
an integer on the apiserver."""


class ManifestError(ValueError):
    """The text is not a manifest Kubernetes would read: `where` is a field path or a line."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


class _Loader(yaml.SafeLoader):
    """PyYAML's parser and composer; plain scalars keep a marker tag for `_resolve_plain`."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode:
            return _PLAIN if implicit[0] else _TAG + "str"
        return _TAG + ("seq" if kind is yaml.SequenceNode else "map")


def load_all(text: str) -> list[Any]:
    """Every non-empty document of `text`, as the apiserver would receive it."""
    text = text.removeprefix("\ufeff")
    try:
        _check_depth(text)
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        raise ManifestError(
            _at(exc.problem_mark or exc.context_mark), str(exc.problem or exc.context or exc)
        ) from None
    except yaml.YAMLError as exc:
        raise ManifestError("document", str(exc)) from None
    return [doc for node in nodes if node is not None and (doc := _Document().value(node, "")) is not None]


def _check_depth(text: str) -> None:
    """Refuse deep nesting from the event stream (iterative), before the composer recurses."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise ManifestError(_at(event.start_mark), f"nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


class _Document:
    """Converts one composed document; counts values, aliases expanded, against MAX_VALUES."""

    def __init__(self) -> None:
        self.values = 0

    def value(self, node: yaml.Node, path: str) -> Any:
        self.values += 1
        if self.values > MAX_VALUES:
            raise ManifestError(
                _line(node), f"aliases expand the document beyond {MAX_VALUES} values (excessive aliasing)"
            )
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.value(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        return _json_number(_scalar(node), path or _line(node))

    def _mapping(self, node: yaml.MappingNode, path: str) -> dict[str, Any]:
        """In order, as kubectl reads it: a merge (`<<`) overwrites the keys before it, a key after
        it overwrites the merged one; of several merged mappings the first wins. A key written
        twice is refused (kubectl would keep the last one without a word)."""
        out: dict[str, Any] = {}
        written: set[str] = set()
        for key_node, value_node in node.value:
            if _is_merge(key_node):
                for source in reversed(list(_merge_sources(value_node))):
                    out.update(self._mapping(source, path))
                continue
            key = _key(key_node)
            where = f"{path}.{key}" if path else key
            if key in written:
                raise ManifestError(where, f"duplicate key ({_line(key_node)}): a key may appear once")
            written.add(key)
            out[key] = self.value(value_node, where)
        return out


def _at(mark: Any) -> str:
    """Where, as Go's YAML errors say it: `line N` (1-based)."""
    return "document" if mark is None else f"line {mark.line + 1}"


def _line(node: yaml.Node) -> str:
    return _at(node.start_mark)


def _is_merge(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and (
        (node.tag == _PLAIN and node.value == "<<") or node.tag == _TAG + "merge"
    )


def _merge_sources(node: yaml.Node) -> Iterator[yaml.MappingNode]:
    """`<<: *a` or `<<: [*a, *b]`; the first named wins a key both define (as in Go)."""
    items = node.value if isinstance(node, yaml.SequenceNode) else [node]
    for item in items:
        if not isinstance(item, yaml.MappingNode):
            raise ManifestError(_line(item), "a merge key (<<) takes a mapping or a list of mappings")
        yield item


def _key(node: yaml.Node) -> str:
    """Go's YAML-to-JSON conversion makes every key a string."""
    if not isinstance(node, yaml.ScalarNode):
        raise ManifestError(_line(node), "a mapping key must be a scalar")
    value = _scalar(node)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return str(_json_number(value, _line(node)))
    return str(value)


def _scalar(node: yaml.ScalarNode) -> Any:
    tag, text = node.tag, node.value
    if tag == _PLAIN:
        return _resolve_plain(text)
    kind = tag.removeprefix(_TAG)
    if kind not in ("binary", "int", "float", "bool", "null"):
        return text  # !!str, !!timestamp, and any tag Go does not know: the text as it is
    if kind == "binary":
        try:
            return base64.b64decode(text.encode(), validate=False).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            raise ManifestError(_line(node), "!!binary value is not base64") from None
    value = _resolve_plain(text)
    wanted: dict[str, tuple[type, ...]] = {
        "int": (int,),
        "float": (int, float),
        "bool": (bool,),
        "null": (type(None),),
    }
    wanted_kind = wanted[kind]
    if not isinstance(value, wanted_kind) or (kind != "bool" and isinstance(value, bool)):
        raise ManifestError(_line(node), f"cannot read {text!r} as !!{kind}")
    return float(value) if kind == "float" and isinstance(value, int | float) else value


def _resolve_plain(text: str) -> Any:
    """A plain scalar as Go's YAML library resolves it (goyaml.v2 `resolve`)."""
    if text in _SPECIAL:
        return _SPECIAL[text]
    hint = text[0]
    if hint == "." and _DOT_FLOAT.fullmatch(text):
        return float(text)
    if not (hint.isdigit() and hint.isascii()) and hint not in "+-":
        return text
    plain = text.replace("_", "")
    number = _GO_INT.fullmatch(plain)
    if number is not None:
        sign, digits = number.groups()
        octal = len(digits) > 1 and digits[0] == "0" and digits[1].isdigit()  # Go: a leading 0 is octal
        value = int(digits, 8) if octal else int(digits, 0)
        value = -value if sign == "-" else value
        if -(2**63) <= value < _UINT64:
            return value
    if _YAML_FLOAT.fullmatch(plain):
        return float(plain)
    return text


def _json_number(value: Any, where: str) -> Any:
    """What the value becomes once written as JSON and read back by the apiserver."""
    if not isinstance(value, float):
        return value
    if math.isnan(value) or math.isinf(value):
        raise ManifestError(where, f"{value} is not a number JSON can carry")
    return int(value) if value.is_integer() and abs(value) < _JSON_INTEGRAL else value
