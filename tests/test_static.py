"""ruff and mypy --strict over the package, examples and tests (run in CI via pytest)."""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean() -> None:
    # this interpreter's ruff (the test extra installs it), not whichever is first on PATH:
    # run from an unactivated venv, a PATH lookup found none and the check was skipped
    pytest.importorskip("ruff")
    p = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert p.returncode == 0, p.stdout + p.stderr


def test_mypy_strict_clean() -> None:
    pytest.importorskip("mypy")
    # files and strictness come from [tool.mypy] in pyproject.toml
    p = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


_SCANNED = ("tianshou_offline", "tests", "examples", "converters", "benchmarks")


def _requirement_name(line: str) -> str | None:
    m = re.match(r"\s*([A-Za-z0-9_.\-]+)", line)
    return re.sub(r"[-_.]+", "-", m.group(1)).lower() if m else None


def _declared_closure() -> set[str]:
    """Every distribution setup.cfg's requirements (all extras) install, with what they pull in."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    text = cfg.get("options", "install_requires")
    text += "\n" + "\n".join(v for _, v in cfg.items("options.extras_require"))
    todo = [n for n in map(_requirement_name, text.splitlines()) if n]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo += [n for r in requires if "extra ==" not in r and (n := _requirement_name(r))]
    return seen


def test_every_import_is_declared() -> None:
    """Every third-party module the repository imports is installed by a requirement in
    setup.cfg (or by what those pull in). An import that only this machine's own packages
    satisfy passes here and fails in CI's fresh venv (``scipy`` once did). Modules that are not
    installed here (d3rlpy, which benchmarks run in a venv of their own) are not checked."""
    declared = _declared_closure()
    owners = importlib.metadata.packages_distributions()
    local = {p.name for p in ROOT.iterdir()} | {p.stem for d in _SCANNED for p in (ROOT / d).rglob("*.py")}
    undeclared = []
    for folder in _SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    modules = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top in sys.stdlib_module_names or top in local or top.startswith("_"):
                        continue
                    dists = [_requirement_name(d) for d in owners.get(top, [])]
                    if dists and not any(d in declared for d in dists):
                        rel = path.relative_to(ROOT)
                        undeclared.append(f"{rel}:{node.lineno} {module} ({', '.join(map(str, dists))})")
    assert not undeclared, "imports no requirement in setup.cfg installs:\n" + "\n".join(undeclared)
