"""Which test code may import which: the unit tests, the end-to-end suite, the development
tooling (e2e/devcluster) and the benchmarks stay apart, sharing only testkit/ and the tooling.

Imports are read with `ast` from the files in the repository (nothing is imported), relative
imports resolved, plus the module names given as strings to `pytest_plugins`,
`pytest.register_assert_rewrite` and `importlib.import_module`.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# (file relative to the repository, imported module): violations that are known and
# scheduled to go. Delete an entry when its import is gone. None today.
ALLOWED: set[tuple[str, str]] = set()

Import = tuple[str, int, str]
"""(file relative to the repository, line, imported module)."""


def python_files(top: str) -> list[Path]:
    return sorted(p for p in (ROOT / top).rglob("*.py") if "__pycache__" not in p.parts)


def _string_args(call: ast.Call) -> Iterator[str]:
    for arg in call.args:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            yield arg.value


def _dynamic(node: ast.AST) -> Iterator[str]:
    """Modules named in strings: pytest_plugins = (...), register_assert_rewrite(...),
    importlib.import_module(...), __import__(...)."""
    if isinstance(node, ast.Assign | ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if any(isinstance(t, ast.Name) and t.id == "pytest_plugins" for t in targets) and node.value:
            for const in ast.walk(node.value):
                if isinstance(const, ast.Constant) and isinstance(const.value, str):
                    yield const.value
    elif isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in ("register_assert_rewrite", "import_module", "__import__"):
            yield from _string_args(node)


def imports_in(source: str, rel: str) -> list[Import]:
    """Every module that `source`, the file at `rel` in the repository, imports.
    `from a.b import c` counts as a.b.c (c may be a module); a relative import is resolved
    against the file's package (its directory)."""
    found: list[Import] = []
    for node in ast.walk(ast.parse(source, filename=rel)):
        if isinstance(node, ast.Import):
            found += [(rel, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module.split(".") if node.module else []
            if node.level:
                package = rel.split("/")[:-1]
                base = package[: len(package) - (node.level - 1)] + base
            names = [alias.name for alias in node.names]
            found += [(rel, node.lineno, ".".join(base if n == "*" else [*base, n])) for n in names]
        else:
            found += [(rel, getattr(node, "lineno", 0), name) for name in _dynamic(node)]
    return found


def imports_of(path: Path) -> list[Import]:
    return imports_in(path.read_text(), path.relative_to(ROOT).as_posix())


def all_imports(*tops: str) -> list[Import]:
    return [imp for top in tops for path in python_files(top) for imp in imports_of(path)]


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def is_suite(module: str) -> bool:
    """The end-to-end suite: any e2e module but the development tooling (e2e.devcluster)."""
    return within(module, "e2e") and not within(module, "e2e.devcluster")


def is_tests(module: str) -> bool:
    return within(module, "tests")


def allowed(imp: Import) -> bool:
    rel, _, module = imp
    return any(rel == path and within(module, known) for path, known in ALLOWED)


def offenders(imports: list[Import], forbidden: Callable[[str], bool]) -> list[str]:
    return [f"{rel}:{line} imports {module}" for rel, line, module in imports
            if forbidden(module) and not allowed((rel, line, module))]  # fmt: skip


def check(rule: str, imports: list[Import], forbidden: Callable[[str], bool]) -> None:
    bad = offenders(imports, forbidden)
    assert not bad, f"{rule}; offenders:\n  " + "\n  ".join(bad)


@pytest.mark.parametrize("top", ["tests", "e2e", "e2e/devcluster", "bench", "testkit"])
def test_every_module_is_found_and_parses(top: str) -> None:
    """The rules below see real files (a moved directory would make them pass vacuously)."""
    files = python_files(top)
    assert files, f"no Python files under {top}/"
    assert all(isinstance(imports_of(path), list) for path in files)


def test_unit_tests_do_not_import_the_e2e_suite() -> None:
    check("tests/ may use e2e.devcluster (tooling) but not the e2e suite", all_imports("tests"), is_suite)


def test_e2e_does_not_import_unit_tests() -> None:
    check("e2e/ (suite and devcluster) may not import tests; shared test code goes in testkit/",
          all_imports("e2e"), is_tests)  # fmt: skip


def test_bench_imports_no_test_code_and_no_fake() -> None:
    check("bench/ may not import tests or testkit's fake cluster: it measures the real thing",
          all_imports("bench"), lambda m: is_tests(m) or within(m, "testkit.fake"))  # fmt: skip


def test_devcluster_does_not_import_the_suite() -> None:
    check("e2e/devcluster (tooling) may not import the e2e suite (conftest, operator_fixtures, test_*)",
          all_imports("e2e/devcluster"), is_suite)  # fmt: skip


def test_testkit_imports_neither_tests_nor_the_suite() -> None:
    check("testkit/ is shared by tests/ and e2e/, so it imports neither",
          all_imports("testkit"), lambda m: is_tests(m) or is_suite(m))  # fmt: skip


def test_the_checks_catch_what_they_forbid() -> None:
    """The import reader resolves what the rules need (relative imports, `from e2e import x`,
    strings), and the allow-list covers only its own file and module."""
    source = (
        "from e2e import conftest\n"
        "from e2e.devcluster import cluster\n"
        "from . import test_reconciler\n"
        "from .. import testkit\n"
        "pytest_plugins = ('e2e.operator_fixtures',)\n"
    )
    assert {m for _, _, m in imports_in(source, "tests/test_example.py")} == {
        "e2e.conftest", "e2e.devcluster.cluster", "tests.test_reconciler", "testkit", "e2e.operator_fixtures"
    }  # fmt: skip
    assert [is_suite(m) for m in ("e2e.conftest", "e2e.test_crd", "e2e", "e2e.devcluster.kube")] == [
        True, True, True, False
    ]  # fmt: skip
    ALLOWED.add(("bench/operator.py", "tests.test_reconciler"))
    try:
        assert allowed(("bench/operator.py", 1, "tests.test_reconciler.FakeKube"))
        assert not allowed(("bench/operator.py", 1, "tests.test_api"))
        assert not allowed(("bench/launcher.py", 1, "tests.test_reconciler"))
    finally:
        ALLOWED.clear()
