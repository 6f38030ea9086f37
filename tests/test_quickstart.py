"""The quickstart runs end to end (small budget) through the real CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tianshou_offline.quickstart import run_quickstart

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_function(tmp_path: Path) -> None:
    result = run_quickstart(tmp_path, episodes=8, epochs=2, steps_per_epoch=500, eval_episodes=5)
    dataset, bc = result.rows[0], result.rows[1]
    assert dataset.episodes == 8 and dataset.mean_return > 150
    assert bc.mean_return >= 195  # BC of a noisy expert on CartPole
    assert result.files["dataset"].exists() and result.files["bc_policy"].exists()
    assert "behaviour cloning" in result.table()


def test_quickstart_example_script(tmp_path: Path) -> None:
    p = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), "--workdir", str(tmp_path),
         "--episodes", "4", "--epochs", "1", "--steps-per-epoch", "200", "--eval-episodes", "2"],
        capture_output=True, text=True, timeout=600,
    )
    assert p.returncode == 0, p.stderr
    assert "mean return" in p.stdout and "behaviour cloning" in p.stdout
    assert (tmp_path / "cartpole_expert.hdf5").exists()


@pytest.mark.parametrize("flag", ["--epochs", "--steps-per-epoch"])
def test_quickstart_rejects_bad_values(flag: str) -> None:
    p = subprocess.run([sys.executable, "-m", "tianshou_offline.cli", "quickstart", flag, "zero"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "invalid int value" in p.stderr and "Traceback" not in p.stderr
