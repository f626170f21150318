"""The documentation: its generated parts (the API reference, the tables of condition and event
reasons) are what the types generate, the site builds with `mkdocs build --strict` (no broken
link or anchor, no page left out of the nav), and the README's links into it resolve."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from markdown.extensions.toc import slugify

from qwen_operator.api import docs
from qwen_operator.api.vocabulary import EventReason, Reason

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "mkdocs.yml").is_file())
DOCS = ROOT / "docs"
API_PAGE = DOCS / "reference" / "api.md"


def test_generated_pages_are_current() -> None:
    assert docs.START in API_PAGE.read_text() and docs.END in API_PAGE.read_text()
    assert docs.stale(DOCS) == [], "run `make docs` and commit docs/"


def test_check_finds_a_stale_page_and_make_docs_cures_it(tmp_path: Path) -> None:
    copy = tmp_path / "docs"
    shutil.copytree(DOCS, copy)
    page = copy / API_PAGE.relative_to(DOCS)
    good = page.read_text()
    row = "| `spec.replicas` | integer | `1` |"
    assert row in good
    page.write_text(good.replace(row, "| `spec.replicas` | integer | `7` |"))
    assert page.read_text() != good
    assert docs.main(["--check", str(copy)]) == 1
    assert page.read_text() != good, "--check wrote the page"
    assert docs.main([str(copy)]) == 0
    assert page.read_text() == good
    assert docs.main(["--check", str(copy)]) == 0


def test_each_generated_block_is_in_one_page(tmp_path: Path) -> None:
    copy = tmp_path / "docs"
    shutil.copytree(DOCS, copy)
    page = copy / API_PAGE.relative_to(DOCS)
    page.write_text(page.read_text().replace(docs.START, ""))
    with pytest.raises(ValueError, match="api-reference:start"):
        docs.stale(copy)


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


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    argv = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)


def test_site_builds_strictly(tmp_path: Path) -> None:
    done = mkdocs_build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "reference" / "api" / "index.html").is_file()


def test_strict_build_fails_on_a_broken_link_and_a_page_out_of_the_nav(tmp_path: Path) -> None:
    """The build above passing means something: the same config refuses these."""
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(DOCS, tmp_path / "docs")
    with (tmp_path / "docs" / "design.md").open("a") as page:
        page.write("\n[gone](gitops.md#no-such-section) [outside](../samples/qwen3-235b-thinking.yaml)\n")
    (tmp_path / "docs" / "orphan.md").write_text("# Not in the nav\n")
    done = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert "orphan.md" in out and "#no-such-section" in out and "qwen3-235b-thinking.yaml" in out


def test_readme_links_into_the_docs_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/[^)#\s]+)(?:#([^)\s]+))?\)", readme)
    assert len(links) >= 10, links
    for target, anchor in links:
        page = ROOT / target
        assert page.is_file(), target
        if anchor:
            headings = re.findall(r"^#+ (.+)$", page.read_text(), flags=re.M)
            assert anchor in {slugify(h, "-") for h in headings}, f"{target}#{anchor}"
