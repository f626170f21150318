"""The README's API reference is generated from the models and must stay in step."""

from __future__ import annotations

from pathlib import Path

from qwen_operator.api import docs
from qwen_operator.api.vocabulary import EventReason, Reason

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_generated_parts_are_current() -> None:
    text = README.read_text()
    assert docs.START in text and docs.END in text
    assert docs.REASONS_START in text and docs.REASONS_END in text
    assert docs.replace_in(text) == text, "run `make docs` and commit README.md"


def test_every_reason_is_documented_in_the_vocabulary() -> None:
    for enum in (Reason, EventReason):
        documented = docs.member_docs(enum)
        assert set(documented) == {str(m) for m in enum}, enum
        assert all(" | " in doc for doc in documented.values()), "docstrings are `condition | meaning`"
    table = docs.reasons_tables()
    assert "| `Scheduling` | Ready=False, Reconciling=True |" in table
    assert "| `ContextReduced` | Warning |" in table


def test_reference_lists_every_field_with_default() -> None:
    ref = docs.api_reference()
    for row in (
        "| `spec.context.maxModelLen` | integer | `262144` |",
        "| `spec.parallelism.tensor` | integer | `4` |",
        "| `status.context.effective` | integer |",
        "| `status.context.history[].from` | integer |",
    ):
        assert row in ref
