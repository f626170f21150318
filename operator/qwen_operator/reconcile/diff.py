"""Decide whether a child needs a server-side apply: pure functions, no I/O.

Idle means idle: a child is applied only when the rendered manifest changed (its hash,
kept in an annotation on the child, differs) or when the live object drifted from it
(someone edited a field the operator owns). The live object carries defaults the
apiserver added, so "drifted" means: some field the operator sets has another value.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from kubernetes.utils import parse_quantity

from qwen_operator.api.vocabulary import HASH_ANNOTATION


class Drift(StrEnum):
    """Why a child must be applied."""

    MISSING = "missing"
    CHANGED = "changed"
    """The rendered manifest changed (its hash differs)."""
    DRIFTED = "drifted"
    """Someone edited a field the operator owns."""


def manifest_hash(manifest: Mapping[str, Any]) -> str:
    """A stable digest of a rendered manifest (without the hash annotation itself)."""
    body = dict(manifest)  # shallow: only metadata changes, and a deep copy of a StatefulSet costs
    meta = body.get("metadata")
    if meta is not None and meta.get("annotations") is not None:
        annotations = {k: v for k, v in meta["annotations"].items() if k != HASH_ANNOTATION}
        body["metadata"] = {k: v for k, v in meta.items() if k != "annotations"}
        if annotations:
            body["metadata"]["annotations"] = annotations
    data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()[:20]


def with_hash(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest to apply: the rendered one plus its hash annotation (nested parts shared)."""
    meta = dict(manifest.get("metadata") or {})
    meta["annotations"] = {**(meta.get("annotations") or {}), HASH_ANNOTATION: manifest_hash(manifest)}
    return {**manifest, "metadata": meta}


def quantity(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    try:
        return Decimal(parse_quantity(value))  # type: ignore[no-untyped-call]
    except (ValueError, InvalidOperation, TypeError):
        return None


def _scalar_equal(want: Any, have: Any) -> bool:
    if want == have and type(want) is type(have):
        return True
    if isinstance(want, bool) or isinstance(have, bool):
        return False
    if isinstance(want, (int, float)) and isinstance(have, (int, float)):
        return float(want) == float(have)
    a, b = quantity(want), quantity(have)  # "4" vs 4, "1000m" vs "1": the apiserver normalizes
    return a is not None and a == b


def contains(want: Any, have: Any) -> bool:
    """True when every field of `want` has the same value in `have` (extra fields in `have` ok).

    An empty value the apiserver omits ("", [], {}, false) matches a missing one.
    """
    if have is None and (want is None or want is False or (isinstance(want, (str, list, dict)) and not want)):
        return True
    if isinstance(want, Mapping):
        if not isinstance(have, Mapping):
            return False
        return all(contains(v, have.get(k)) for k, v in want.items() if v is not None)
    if isinstance(want, list):
        if not isinstance(have, list) or len(want) != len(have):
            return False
        return all(contains(w, h) for w, h in zip(want, have, strict=True))
    if want is None:
        return True
    return _scalar_equal(want, have)


def drift(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> Drift | None:
    """Why `desired` (with its hash annotation) must be applied over `live`; None when it need not."""
    if live is None:
        return Drift.MISSING
    want_hash = ((desired.get("metadata") or {}).get("annotations") or {}).get(HASH_ANNOTATION)
    have_hash = ((live.get("metadata") or {}).get("annotations") or {}).get(HASH_ANNOTATION)
    if want_hash != have_hash:
        return Drift.CHANGED
    for key in ("metadata", "spec"):
        if not contains(desired.get(key), live.get(key)):
            return Drift.DRIFTED
    if "data" in desired and data_digest(desired) != live_data_digest(live):
        return Drift.DRIFTED
    if not contains(desired.get(IMMUTABLE), live.get(IMMUTABLE)):
        return Drift.DRIFTED
    return None


DATA_DIGEST = "dataDigest"
"""Where a slim live ConfigMap keeps the digest of its data (snapshot.child_from), not the data."""


IMMUTABLE = "immutable"
"""A ConfigMap's top-level flag: once true its data cannot change (the launcher's, see
children/launcher.py). The slim live manifest keeps it."""


def data_digest(obj: Mapping[str, Any]) -> str:
    """A digest of a ConfigMap's data: compared instead of the data, which the cache does not keep."""
    return hashlib.sha256(json.dumps(obj.get("data") or {}, sort_keys=True).encode()).hexdigest()[:20]


def live_data_digest(live: Mapping[str, Any]) -> str:
    """The digest of a slim live ConfigMap's data; one without data (the apiserver omits an empty
    map: the replicas' ConfigMap with no entry) has the digest of no data."""
    return str(live.get(DATA_DIGEST) or data_digest({}))


COMPARED = ("metadata", "spec")
"""The parts of a child drift compares, field by field, and the slim live manifest keeps
(snapshot.child_from). apiVersion and kind name the object: the slim manifest leaves them out, so
comparing them would name them in every event ("Updated StatefulSet q: apiVersion, kind")."""


def changed_fields(live: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> list[str]:
    """The paths (one level below metadata and spec, and `data`) where `desired` differs from the
    slim `live` manifest: what an event names. Only what `drift` compares: a field named here is
    one the apply changes."""
    if live is None:
        return []
    out: list[str] = []
    for key in COMPARED:
        want, have = _unhashed(desired.get(key)), _unhashed(live.get(key))
        if isinstance(want, Mapping) and isinstance(have, Mapping):
            out += [f"{key}.{k}" for k, v in want.items() if not contains(v, have.get(k))]
        elif not contains(want, have):
            out.append(key)
    if "data" in desired and data_digest(desired) != live_data_digest(live):
        out.append("data")
    if not contains(desired.get(IMMUTABLE), live.get(IMMUTABLE)):
        out.append(IMMUTABLE)
    return out


def _unhashed(part: Any) -> Any:
    """metadata without the hash annotation: it changes with every change, so it names none."""
    if not isinstance(part, Mapping) or not isinstance(part.get("annotations"), Mapping):
        return part
    annotations = {k: v for k, v in part["annotations"].items() if k != HASH_ANNOTATION}
    return {**part, "annotations": annotations}
