"""The package's layers import downward only, and no module imports itself through others.

The layer order is written here once (``docs/ARCHITECTURE.md`` draws it). Every import in
``tianshou_offline/`` counts, at module level or inside a function (a lazy import is still a
dependency), except those under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tianshou_offline"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "_version", "progress"),  # the foundation: imports nothing of ours
    ("data", "algorithms", "loggers"),  # HDF5 format, loaders | offline algorithms | loggers
    ("converters", "recording", "training"),  # sources | episodes → the writer | resumable runs
    ("quickstart", "datasets", "evaluation", "scale", "deploy"),  # workflows; independent
    ("cli",),  # the only place that parses arguments, prints, or sets exit codes
)
"""Lowest first. A unit (a top-level module or sub-package of ``tianshou_offline``) may import
units of lower layers only: not a unit of a higher layer, nor another unit of its own layer."""

FACADE = "tianshou_offline"
"""The package ``__init__`` re-exports the public API lazily; nothing of ours imports it."""


def _layer_of() -> dict[str, int]:
    return {unit: i for i, units in enumerate(LAYERS) for unit in units}


def _modules(package: Path = PACKAGE) -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for p in package.rglob("*.py"):
        parts = p.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = p
    return mods


def _imports(path: Path, name: str, mods: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for sub in node.body for n in ast.walk(sub))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            targets.add(module)
            targets.update(f"{module}.{a.name}" for a in node.names)
    found: set[str] = set()
    for target in targets:
        while target and target not in mods:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else FACADE


def _graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    mods = _modules(package)
    graph = {name: _imports(path, name, mods) for name, path in mods.items()}
    for name, path in mods.items():  # a package's __init__ re-exporting its own modules
        if path.name == "__init__.py":
            graph[name] = {t for t in graph[name] if not t.startswith(name + ".")}
    return graph


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports that go up, sideways within a layer, into an unlisted unit or the facade."""
    layer = _layer_of()
    out: list[str] = []
    for module, targets in sorted(graph.items()):
        src = _unit(module)
        for target in sorted(targets):
            dst = _unit(target)
            if dst == src:
                continue
            if dst == FACADE:
                out.append(f"{module} imports the package facade {FACADE}")
            elif src == FACADE:
                continue
            elif src not in layer or dst not in layer:
                out.append(f"{module} -> {target}: unit not in LAYERS")
            elif layer[dst] >= layer[src]:
                way = "sideways" if layer[dst] == layer[src] else "upward"
                out.append(f"{module} -> {target}: {way} ({src} is layer {layer[src]}, "
                           f"{dst} layer {layer[dst]})")  # fmt: skip
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_unit_has_a_layer() -> None:
    units = {_unit(m) for m in _modules()} - {FACADE}
    assert units <= set(_layer_of()), f"add to LAYERS: {sorted(units - set(_layer_of()))}"


def test_imports_go_downward_only() -> None:
    assert layer_violations(_graph()) == []


def test_no_import_cycles() -> None:
    assert cycles(_graph()) == []


BENCHMARKS = PACKAGE.parent / "benchmarks"


def test_benchmarks_have_no_import_cycle_no_path_edits_and_no_tests_imports() -> None:
    """``benchmarks/`` is a package over ``benchmarks/_lib``: no cycle among its modules (the
    two speed scripts imported each other), no ``sys.path`` edits, nothing from ``tests/``."""
    assert cycles(_graph(BENCHMARKS)) == []
    tests = {p.stem for p in (PACKAGE.parent / "tests").glob("*.py")} | {"tests"}
    for path in BENCHMARKS.rglob("*.py"):
        text = path.read_text()
        assert "sys.path" not in text, path
        for node in ast.walk(ast.parse(text)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])  # fmt: skip
            assert not {n.split(".")[0] for n in names} & tests, (path, names)



TESTS = PACKAGE.parent / "tests"


def test_tests_mirror_the_package_and_share_helpers_only() -> None:
    """The tests are laid out like the package (``tests/algorithms/test_iql.py`` …): every test
    module sits in a folder of ``tests/`` (the top level holds the cross-cutting ones), no
    test module imports another test module (shared code lives in ``tests/helpers/`` or a
    ``conftest.py``), and only ``tests/helpers/examples.py`` touches ``sys.path`` (code run
    in a child process, a string here, emulates ``python script.py`` as it likes)."""
    package_units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()}
    for folder in TESTS.iterdir():
        if folder.is_dir() and folder.name not in ("helpers", "__pycache__"):
            assert folder.name in package_units | {"benchmarks"}, folder
            assert (folder / "__init__.py").is_file(), folder
    for path in TESTS.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level:
                # a relative import can only reach tests/: no test module or conftest
                names = [f"tests.{n}" for n in (node.module or "").split(".") if n]
                names += [f"tests.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                names = []
            for name in names:
                # a test module is a top-level test_*/conftest (rootdir on sys.path) or
                # anything under tests/ but helpers; benchmarks.test_suite is not one
                parts = name.split(".")
                assert not parts[0].startswith(("test_", "conftest")), (path, name)
                if parts[0] == "tests":
                    assert parts[1:2] in ([], ["helpers"]), (path, name)
                    assert not parts[-1].startswith(("test_", "conftest")), (path, name)
            edits_sys_path = (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and ast.unparse(node.func.value) == "sys.path"
                and node.func.attr in ("insert", "append", "extend", "remove", "pop")
            )
            assert not edits_sys_path or path == TESTS / "helpers" / "examples.py", (path, node)


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"tianshou_offline.data.a": {"tianshou_offline.cli"}}, "upward"),
        ({"tianshou_offline.data.a": {"tianshou_offline.algorithms.b"}}, "sideways"),
        ({"tianshou_offline.data.a": {"tianshou_offline"}}, "facade"),
    ],
)
def test_the_checks_catch_violations(graph: dict[str, set[str]], expected: str) -> None:
    assert any(expected in v for v in layer_violations(graph))


def test_the_cycle_check_catches_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
