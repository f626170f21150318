"""The operator uses Kopf through its public API only.

Kopf's private modules (`kopf._cogs`, `kopf._core`, ...) change between patch releases. The
operator once replaced four of their functions as a side effect of an import, and filtered
Kopf's log by the text of one of its messages; each Kopf upgrade could break that silently.
This reads every module of `operator/qwen_operator` with `ast` (nothing is imported) and fails
on any import of a private Kopf module, any use of a private name under Kopf, any assignment
to (or deletion of) an attribute of anything imported from Kopf, any `setattr`/`delattr` on
it, and any string that names a private Kopf module (a logger, `importlib.import_module`).
Attributes of the objects Kopf hands to handlers (`settings.watching...`, `memo.runtime`) are
the public API, and are not Kopf's modules: those stay allowed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "qwen_operator"


def _private_kopf(module: str) -> bool:
    parts = module.split(".")
    return parts[0] == "kopf" and any(p.startswith("_") for p in parts[1:])


def _root(node: ast.expr) -> ast.Name | None:
    """The name an attribute or subscript chain starts from: `kopf` in `kopf.a.b[c].d`."""
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Call):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node if isinstance(node, ast.Name) else None


def _dotted(node: ast.expr) -> list[str]:
    """The attribute names along a chain, outermost last: ["a", "b"] for `kopf.a.b`."""
    names: list[str] = []
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Call):
        if isinstance(node, ast.Attribute):
            names.insert(0, node.attr)
        node = node.func if isinstance(node, ast.Call) else node.value
    return names


def _targets(node: ast.AST) -> list[ast.expr]:
    if isinstance(node, ast.Assign):
        return list(node.targets)
    if isinstance(node, ast.AugAssign | ast.AnnAssign):
        return [node.target]
    if isinstance(node, ast.Delete):
        return list(node.targets)
    if isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
        return [node.target]
    if isinstance(node, ast.With | ast.AsyncWith):
        return [i.optional_vars for i in node.items if i.optional_vars is not None]
    if isinstance(node, ast.NamedExpr):
        return [node.target]
    return []


def _flatten(targets: list[ast.expr]) -> Iterator[ast.expr]:
    for target in targets:
        if isinstance(target, ast.Tuple | ast.List):
            yield from _flatten(list(target.elts))
        elif isinstance(target, ast.Starred):
            yield from _flatten([target.value])
        else:
            yield target


def violations(source: str, filename: str = "<source>") -> list[str]:
    """What in `source` goes past Kopf's public API, as "line: what"."""
    tree = ast.parse(source, filename=filename)
    kopf_names: set[str] = set()
    """Names bound to Kopf or to anything imported from it (its modules, classes, functions)."""
    found: list[str] = []

    def bad(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{getattr(node, 'lineno', 0)}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "kopf" or alias.name.startswith("kopf."):
                    kopf_names.add(alias.asname or alias.name.split(".")[0])
                    if _private_kopf(alias.name):
                        bad(node, f"imports the private module {alias.name}")
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").split(".")[0] == "kopf"
        ):
            for alias in node.names:
                kopf_names.add(alias.asname or alias.name)
                if _private_kopf(f"{node.module}.{alias.name}"):
                    bad(node, f"imports the private {node.module}.{alias.name}")
    # An alias of a Kopf name (`k = kopf`) is Kopf too; repeated until nothing new is bound.
    while True:
        aliases = {
            t.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Name | ast.Attribute)
            and (root := _root(node.value)) is not None and root.id in kopf_names
            for t in node.targets if isinstance(t, ast.Name)
        }  # fmt: skip
        if aliases <= kopf_names:
            break
        kopf_names |= aliases

    for node in ast.walk(tree):
        for target in _flatten(_targets(node)):
            if isinstance(target, ast.Attribute | ast.Subscript):
                root = _root(target)
                if root is not None and root.id in kopf_names:
                    bad(node, f"assigns to {ast.unparse(target)}, an attribute of Kopf")
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            root = _root(node)
            if root is not None and root.id in kopf_names and node.attr.startswith("_"):
                chain = ".".join([root.id, *_dotted(node)])
                if not node.attr.startswith("__") or node.attr == "__dict__":
                    bad(node, f"uses {chain}, a private name of Kopf")
        if isinstance(node, ast.Call):
            func = node.func
            name = (
                func.attr
                if isinstance(func, ast.Attribute)
                else func.id
                if isinstance(func, ast.Name)
                else ""
            )
            if name in ("setattr", "delattr") and node.args:
                root = _root(node.args[0])
                if root is not None and root.id in kopf_names:
                    bad(node, f"{name}() on {ast.unparse(node.args[0])}, Kopf")
            if name in ("vars",) and node.args:
                root = _root(node.args[0])
                if root is not None and root.id in kopf_names:
                    bad(node, f"vars() of {ast.unparse(node.args[0])}, Kopf")
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and _private_kopf(node.value.strip())
        ):
            bad(node, f"names the private Kopf module {node.value!r}")
    return found


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_scan_reads_every_module_of_the_operator() -> None:
    found = {p.relative_to(PACKAGE).as_posix() for p in modules()}
    assert {"process/handlers.py", "process/optional_kinds.py", "process/main.py", "cli.py"} <= found
    assert "process/optional_watch.py" not in found


def test_no_module_of_the_operator_goes_past_kopfs_public_api() -> None:
    found = [v for path in modules() for v in violations(path.read_text(), str(path.relative_to(ROOT)))]
    assert found == [], "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        "from kopf._cogs.clients import watching\n",
        "import kopf._core.reactor.queueing as queueing\n",
        "from kopf import _cogs\n",
        "import kopf\nkopf._cogs.clients.watching.infinite_watch = f\n",
        "import kopf\nx = kopf._core\n",
        "import kopf\nkopf.on.event = f\n",
        "import kopf\nkopf.PRESENT += 1\n",
        "import kopf\ndel kopf.run\n",
        "import kopf\nsetattr(kopf.on, 'event', f)\n",
        "import kopf as k\nsetattr(k, 'run', f)\n",
        "import kopf\ndelattr(kopf, 'run')\n",
        "from kopf import on\non.event = f\n",
        "from kopf import Memo as M\nM.x = 1\n",
        "import kopf\nk = kopf\nk.run = f\n",
        "import kopf\nk = kopf.on\nsetattr(k, 'event', f)\n",
        "import kopf\nkopf.__dict__['run'] = f\n",
        "import kopf\nvars(kopf)['run'] = f\n",
        "import kopf\nkopf.x, y = 1, 2\n",
        "import logging\nlogging.getLogger('kopf._core.reactor.observation').addFilter(f)\n",
        "import importlib\nimportlib.import_module('kopf._cogs.clients.watching')\n",
        "import pytest\nimport kopf\npytest.MonkeyPatch().setattr(kopf, 'run', f)\n",
    ],
)
def test_the_scan_catches_each_way_past_the_public_api(source: str) -> None:
    assert violations(source), source


def test_the_public_api_and_the_objects_kopf_hands_over_are_allowed() -> None:
    source = """
import kopf
import logging

def configure(settings: kopf.OperatorSettings, memo: kopf.Memo) -> None:
    settings.peering.standalone = True
    settings.watching.label_selectors[("", "v1", "pods")] = "a=b"
    memo.runtime = object()
    setattr(memo, "x", 1)

logging.getLogger("kopf.objects").setLevel(logging.WARNING)
kopf.run(standalone=True, memo=kopf.Memo(namespaces=()))
GPU = {"x": kopf.PRESENT}

@kopf.on.event("v1", "pods")
async def event(**_): ...
"""
    assert violations(source) == []
