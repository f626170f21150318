"""The README's API reference is generated from the models and must stay in step."""

from __future__ import annotations

from pathlib import Path

from qwen_operator import docs

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_api_reference_is_current() -> None:
    text = README.read_text()
    assert docs.START in text and docs.END in text
    assert docs.replace_in(text) == text, "run `make docs` and commit README.md"


def test_reference_lists_every_field_with_default() -> None:
    ref = docs.api_reference()
    for row in (
        "| `spec.context.maxModelLen` | integer | `262144` |",
        "| `spec.parallelism.tensor` | integer | `4` |",
        "| `status.context.effective` | integer |",
        "| `status.context.history[].from` | integer |",
    ):
        assert row in ref
