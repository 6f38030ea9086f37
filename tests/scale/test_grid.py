"""A small experiment grid runs in this process without Ray (``tianshou_offline.scale.grid``):
when Ray is chosen, and what the command prints for a grid of one cell. The grids on Ray are
in ``tests/scale/test_scale.py``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest


def test_grid_without_ray_for_a_small_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Issue 23: a 2-cell grid paid Ray's start-up (142 s wall for 28 s of training), printed
    '0 cell/s' and '± 0.0'. A small local grid runs in this process (Ray only when asked, for
    a cluster, a Ray already started, or from RAY_MIN_CELLS cells with room for two at once),
    the cell line says what its spread is over, the progress line has no zero rate, and a
    last line says where the time went."""
    from tianshou_offline.cli import main
    from tianshou_offline.quickstart import record_cartpole_expert
    from tianshou_offline.scale import grid as sg

    one = [sg.Cell("il", "d.hdf5", seed=0, budget=sg.Budget())]
    assert not sg.choose_ray(one * 2, None, 8, None) or "ray" in sys.modules
    assert sg.choose_ray(one * 2, "auto", None, None) and sg.choose_ray(one, None, 1, True)
    if "ray" not in sys.modules:
        assert sg.choose_ray(one * sg.RAY_MIN_CELLS, None, 2, None)
        assert not sg.choose_ray(one * sg.RAY_MIN_CELLS, None, 1, None)  # room for one only
    data = record_cartpole_expert(tmp_path / "cp.hdf5", episodes=3, eps=0.25, seed=0)
    spec = tmp_path / "grid.json"
    budget = {"epochs": 1, "steps_per_epoch": 20, "batch_size": 32, "test_episodes": 1,
              "eval_episodes": 2}  # fmt: skip
    spec.write_text(json.dumps({"output": str(tmp_path / "runs"), "datasets": [str(data)],
                                "algorithms": ["il"], "seeds": 1, "budget": budget}))  # fmt: skip
    monkeypatch.setenv("TIANSHOU_OFFLINE_PROGRESS_INTERVAL", "0")
    assert main(["grid", str(spec)]) == 0  # the default for one cell: no Ray
    out, err = capsys.readouterr()
    assert "time: " in out and "no Ray (cells in this process" in out, out
    assert "over 2 evaluation episodes" in out and "± 0.0" not in out
    assert "| il on cp | 1 |" in out and "(1 seed)" in out
    assert not re.search(r"(?<![\d.])0 cell/s", err), err  # "10 cell/s" is a rate, "0 cell/s" not
    assert "grid cells in this process: 1/1 cell" in err, err
