"""``tianshou-offline inspect``: it names what it counts (a cut episode: neither flag set) and
never replaces a plot without ``--overwrite``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.helpers.cli_probe import run_probe


def test_inspect_names_the_cut_episode(tmp_path: Path) -> None:
    import gymnasium as gym

    from tianshou_offline import BufferWriter

    out = tmp_path / "cut.hdf5"
    with BufferWriter(out, observation_space=gym.spaces.Box(-1, 1, (2,)),
                      action_space=gym.spaces.Discrete(2)) as w:  # fmt: skip
        for flags in ((True, False), (False, True), (False, False)):
            w.add_episode(obs=np.zeros((3, 2), np.float32), act=np.zeros(3, np.int64),
                          rew=np.ones(3, np.float32),
                          terminated=np.array([False, False, flags[0]]),
                          truncated=np.array([False, False, flags[1]]),
                          obs_next=np.zeros((3, 2), np.float32))  # fmt: skip
    _, text = run_probe("inspect", str(out))
    assert "episodes:        3 (1 terminated, 1 truncated, 1 cut: neither flag set" in text
    _, text = run_probe("inspect", str(out), "--json")
    assert '"cut_episodes": 1' in text


def test_plot_is_not_replaced_without_overwrite(recorded: Path, tmp_path: Path) -> None:
    png = tmp_path / "p.png"
    png.write_bytes(b"precious")
    res = subprocess.run([sys.executable, "-m", "tianshou_offline.cli", "inspect", str(recorded),
                          "--plot", str(png)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 2 and res.stderr.startswith("error:") and "--overwrite" in res.stderr
    assert png.read_bytes() == b"precious"
    doc, _ = run_probe("inspect", str(recorded), "--plot", str(png), "--overwrite")
    assert doc["code"] == 0 and png.read_bytes().startswith(b"\x89PNG")
