"""YAML read as kubectl reads it (e2e/test_crd.py compares with kubectl itself)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from qwen_operator.api import kubeyaml


def value(text: str) -> Any:
    (doc,) = kubeyaml.load_all(f"v: {text}\n")
    return doc["v"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("y", True), ("NO", False), ("off", False), ("On", True), ("tRUE", "tRUE"), ("~", None),
        ("Null", None),
        ("2e1", 20), ("1.0e5", 100000), ("0o17", 15), ("017", 15), ("08", 8), ("0b101", 5), ("0x1F", 31),
        ("1_000", 1000), ("1_0.5", 10.5), ("2.0", 2), ("5.", 5), (".5", 0.5), ("-0", 0), ("+1", 1),
        ("1:20", "1:20"), ("2024-01-01", "2024-01-01"), ("=", "="), ("'yes'", "yes"), ("!!str 5", "5"),
        ("!!float 3", 3), ("!!python/name:os.system x", "x"), ("!custom 5", "5"), ("!!binary aGk=", "hi"),
    ],
)  # fmt: skip
def test_scalars_resolve_as_in_go(text: str, expected: Any) -> None:
    got = value(text)
    assert got == expected and type(got) is type(expected), (text, got)


def test_keys_become_strings_and_merges_follow_go() -> None:
    (doc,) = kubeyaml.load_all(
        "keys: {y: 1, off: 2, 1: 3, 2.0: 4}\nb: &b {a: 1, b: 2}\n"
        "after: {<<: *b, b: 3}\nbefore: {b: 3, <<: [*b, {a: 9, d: 5}]}\n"
    )
    assert doc["keys"] == {"true": 1, "false": 2, "1": 3, "2": 4}
    assert doc["after"] == {"a": 1, "b": 3}
    assert doc["before"] == {"a": 1, "b": 2, "d": 5}  # a merge overwrites the keys before it


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("a:\n  b: 1\n  b: 2\n", "a.b"),
        ("a: {y: 1, yes: 2}\n", "a.true"),
        ("a: .inf\n", "a"),
        ("a: [.nan]\n", "a[0]"),
        ("a: !!int x\n", "line 1"),
        ("a:\n\tb: 1\n", "line 2"),
        ("a: " + "[" * 100 + "]" * 100 + "\n", "line 1"),
    ],
)
def test_refusals_name_where(text: str, where: str) -> None:
    with pytest.raises(kubeyaml.ManifestError) as info:
        kubeyaml.load_all(text)
    assert info.value.where == where, str(info.value)


def test_a_billion_laughs_is_refused_quickly() -> None:
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    started = time.process_time()
    with pytest.raises(kubeyaml.ManifestError, match="excessive aliasing"):
        kubeyaml.load_all("\n".join(lines))
    print(f"refused after {time.process_time() - started:.3f} s CPU")  # 9^9 values were it expanded


def test_documents_bom_and_empty_ones() -> None:
    assert kubeyaml.load_all("\ufeffa: 1\r\n---\n---\nb: 2\n") == [{"a": 1}, {"b": 2}]
