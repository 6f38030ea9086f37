"""Importing the example scripts in the test process, as ``python examples/<folder>/<name>.py``
finds their sibling modules (``d4rl_common``, ``_common``, ``_no_tensorflow``): the script's
folder first on ``sys.path`` while it is imported (the only place the tests touch
``sys.path``; ``tests/test_layers.py`` checks that)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


@contextmanager
def folder_on_path(folder: Path) -> Iterator[None]:
    """``folder`` first on ``sys.path`` for the block (removed afterwards)."""
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))


def import_example(folder: Path, name: str) -> ModuleType:
    """``import name`` from ``folder`` (an ``examples/`` folder), its siblings importable."""
    with folder_on_path(folder):
        return importlib.import_module(name)
