"""No TensorFlow in the commands that do not read TFRecords through it, nor in ``import
tianshou_offline`` (``cli/_no_tensorflow.py``; issues 13 and 23), and ``inspect`` without
Tianshou."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.helpers.cli_probe import run_probe


def test_no_tensorflow_in_commands(recorded: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")  # only meaningful where TensorFlow is installed
    d4rl = tmp_path / "d.hdf5"
    rng = np.random.default_rng(0)
    with h5py.File(d4rl, "w") as f:
        f["observations"] = rng.normal(size=(50, 3)).astype(np.float32)
        f["actions"] = rng.uniform(-1, 1, size=(50, 1)).astype(np.float32)
        f["rewards"] = rng.normal(size=50).astype(np.float32)
        f["terminals"] = np.zeros(50, bool)
        f["timeouts"] = np.arange(50) % 25 == 24
    commands = [
        ("inspect", str(recorded)),
        ("convert", "d4rl", str(d4rl), "-o", str(tmp_path / "o.hdf5")),
        ("convert", "tianshou", str(recorded), "-o", str(tmp_path / "t.hdf5")),
    ]
    for command in commands:
        doc, _ = run_probe(*command)
        assert doc == {"code": 0, "tensorflow": False, "tianshou": doc["tianshou"]}, command
    # a command that does import tianshou (and so TensorBoard) still keeps TensorFlow out
    doc, _ = run_probe("convert", "tianshou", str(recorded), "-o", str(tmp_path / "t2.hdf5"))
    assert doc["tianshou"] and not doc["tensorflow"]


_IMPORT_PROBE = """
import sys, types
if sys.argv[1:] == ["tensorflow-first"]:  # as if the user had imported TensorFlow already
    sys.modules["tensorflow"] = types.ModuleType("tensorflow")
    import tianshou_offline
else:
    from tianshou_offline import load_buffer
    from tianshou_offline.algorithms import TD3BC  # imports tianshou, and so TensorBoard
    assert "tensorboard" in sys.modules
print("tensorflow" in sys.modules, "tensorboard.compat.notf" in sys.modules)
"""


def test_library_import_is_quiet_and_tensorflow_free() -> None:
    """Issue 23: ``from tianshou_offline import load_buffer`` printed TensorFlow/CUDA lines
    (Tianshou → TensorBoard → TensorFlow) where TensorFlow is installed. The package keeps
    TensorBoard in its no-TensorFlow mode unless TensorFlow was imported first."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("only meaningful where TensorFlow is installed")
    res = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "True"] and res.stderr == "", res.stdout + res.stderr
    res = subprocess.run([sys.executable, "-c", _IMPORT_PROBE, "tensorflow-first"],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[1] == "False"  # TensorBoard keeps the user's TensorFlow


def test_inspect_does_not_import_tianshou(recorded: Path) -> None:
    """``inspect`` is a fraction of a second: its memory note asks for the available memory
    without importing tianshou (which data.ondisk does: 4 s on a busy machine)."""
    doc, _ = run_probe("inspect", str(recorded))
    assert doc["code"] == 0 and doc["tianshou"] is False, doc
