"""The documentation site (``mkdocs.yml``, ``docs/``) builds with warnings as errors
(``mkdocs build --strict``: broken links and anchors, pages missing from the nav, API pages
whose objects do not resolve), offline, and its code examples run: every ``python`` block
compiles, and the blocks marked ``<!-- runs in tests/test_docs.py -->`` are executed on the
files the tests make for them (the README's own example runs in tests/test_readme_example.py)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RUN_MARK = "<!-- runs in tests/test_docs.py -->"
BLOCK = re.compile(
    r"(?P<mark><!-- runs in tests/test_docs\.py -->\n)?```python\n(?P<code>.*?)```", re.S
)

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings")


def _blocks() -> list[tuple[str, str, bool]]:
    """``(page, code, marked to run)`` of every python block of the site."""
    out = []
    for page in sorted(DOCS.rglob("*.md")):
        for m in BLOCK.finditer(page.read_text(encoding="utf-8")):
            out.append((str(page.relative_to(DOCS)), m.group("code"), m.group("mark") is not None))
    return out


def test_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    site = tmp_path / "site"
    res = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert "WARNING" not in res.stderr, res.stderr[-3000:]
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in DOCS.rglob("*.md"):  # every page is reachable from the navigation
        assert str(page.relative_to(DOCS)) in nav, page
    api = (site / "api" / "workflows" / "index.html").read_text()
    assert "export_policy" in api and "compute_reference_scores" in api  # from the docstrings
    assert (site / "tutorials" / "deploy" / "index.html").is_file()
    home = (site / "index.html").read_text()  # the README (docs/hooks.py), links made relative
    assert "benchmarks/results/quickstart_time" in home and 'href="tutorials/record/"' in home


def test_every_python_example_compiles() -> None:
    blocks = _blocks()
    assert any(run for _, _, run in blocks)
    for page, code, _ in blocks:
        try:
            ast.parse(code)
        except SyntaxError as e:
            raise AssertionError(f"docs/{page}: a python example does not compile: {e}") from e


def test_marked_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The deployment example loads the exports of a TD3+BC-style policy for 17-dimensional
    observations (HalfCheetah's), as ``export-policy`` writes them."""
    import torch

    import tianshou_offline.algorithms as A
    from tianshou_offline.deploy import export_policy
    from tianshou_offline.recording.policies import save_policy_checkpoint

    torch.manual_seed(0)
    obs = gym.spaces.Box(-np.inf, np.inf, (17,), np.float32)
    act = gym.spaces.Box(-1.0, 1.0, (6,), np.float32)
    policy = A.DeterministicPolicy(
        actor=A.DeterministicActor(17, 6, (8,)), action_space=act, observation_space=obs
    )
    ckpt = save_policy_checkpoint(tmp_path / "policy.pt", policy)
    export_policy(ckpt, tmp_path / "td3bc.ts")
    export_policy(ckpt, tmp_path / "td3bc.onnx", format="onnx")
    monkeypatch.chdir(tmp_path)
    ran = 0
    for page, code, run in _blocks():
        if run:
            namespace: dict[str, object] = {}
            exec(compile(code, f"docs/{page}", "exec"), namespace)
            ran += 1
    assert ran >= 1


def test_api_reference_covers_every_public_module() -> None:
    """Every module of the package whose path has no ``_``-prefixed part has an entry
    (``::: module``) on an API page: a new module needs its page line."""
    package = ROOT / "tianshou_offline"
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for p in package.rglob("*.py")
        if p.stem != "__init__" and not any(x.startswith("_") for x in p.relative_to(ROOT).parts)
    }
    listed = set()
    for page in (DOCS / "api").glob("*.md"):
        listed |= set(re.findall(r"^::: ([\w.]+)$", page.read_text(encoding="utf-8"), re.M))
    assert sorted(modules - listed) == []
