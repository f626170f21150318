"""The vocabulary is the one place reasons are spelt: the operator's code uses its members."""

from __future__ import annotations

import ast
from pathlib import Path

from qwen_operator.api import vocabulary
from qwen_operator.api.vocabulary import (
    ConditionType,
    EventReason,
    KubeletReason,
    LauncherReason,
    Phase,
    Reason,
)
from qwen_operator.memory import cures
from qwen_runtime import record

PACKAGE = Path(vocabulary.__file__).resolve().parent
WORDS = {
    str(m)
    for enum in (Reason, EventReason, KubeletReason, LauncherReason, ConditionType, Phase)
    for m in enum
} - {"True", "False", "Unknown"}
"""Every reason, condition type and phase; not a condition's status (`Unknown` is also a launcher
reason, and a condition status the API model spells)."""
EXEMPT = "# not a reason"
"""A line that spells one of the words for something else (a printer column's title) says so."""


def _literals(path: Path) -> list[tuple[int, str]]:
    text = path.read_text()
    exempt = {i for i, line in enumerate(text.splitlines(), 1) if line.rstrip().endswith(EXEMPT)}
    tree = ast.parse(text, str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and node.lineno not in exempt
    ]


def test_no_reason_is_spelt_outside_the_vocabulary() -> None:
    found = [
        f"{path.name}:{line}: {text!r}"
        for path in sorted(PACKAGE.glob("*.py"))
        if path.name != "vocabulary.py"
        for line, text in _literals(path)
        if text in WORDS
    ]
    assert found == [], "use the vocabulary's members:\n" + "\n".join(found)


def test_the_check_finds_a_literal() -> None:
    sample = PACKAGE / "vocabulary.py"  # the one module allowed to spell them
    assert any(text in WORDS for _, text in _literals(sample))


def test_the_launchers_reasons_are_the_runtimes_own() -> None:
    assert LauncherReason is record.Reason
    assert {
        "KVCacheInsufficient",
        "CudaOOM",
        "InsufficientFreeMemory",
        "OOMKilled",
    } == cures.MEMORY_FAILURES
    assert "Unknown" not in vocabulary.CRASH_REASONS and "InvalidArguments" in vocabulary.CRASH_REASONS


def test_selector_and_labels() -> None:
    assert (
        vocabulary.selector_string("x") == "app.kubernetes.io/instance=x,app.kubernetes.io/name=qwen-thinking"
    )
    assert vocabulary.labels("x", vocabulary.Component.SERVER) == {
        "app.kubernetes.io/name": "qwen-thinking", "app.kubernetes.io/instance": "x",
        "app.kubernetes.io/component": "server", "app.kubernetes.io/managed-by": "qwen-operator",
    }  # fmt: skip
    assert vocabulary.label_string(vocabulary.MANAGED_LABELS) == (
        "app.kubernetes.io/managed-by=qwen-operator,app.kubernetes.io/name=qwen-thinking"
    )
