"""Interrupted training resumes exactly (issue 30, item 4): an example script killed with
SIGKILL in the middle of an epoch and restarted with ``--resume-path .../last.pt`` ends with
the same weights, optimizer states, step count and counters as a run that was never
interrupted, bit for bit on CPU.

Every example shares the resume code (:mod:`tianshou_offline.training` through
``examples/mujoco/d4rl_common.py`` and ``examples/atari/_common.py``); here the MuJoCo-style
TD3+BC (target networks, a policy delay on the step count, noise from torch's generator,
mini-batches from numpy's); ``tests/test_atari.py`` kills and resumes an Atari example.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from _resume import REPO, assert_same_training, epoch_of, run_example, run_in_process

SCRIPT = REPO / "examples" / "mujoco" / "d4rl_td3_bc.py"


@pytest.fixture(scope="module")
def pendulum(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two episodes of Pendulum with random actions."""
    import gymnasium as gym

    from tianshou_offline import EpisodeRecorder

    path = tmp_path_factory.mktemp("data") / "pendulum.hdf5"
    env = EpisodeRecorder(gym.make("Pendulum-v1"), path)
    env.action_space.seed(0)
    for seed in (0, 1):
        env.reset(seed=seed)
        done = False
        while not done:
            _, _, term, trunc, _ = env.step(env.action_space.sample())
            done = term or trunc
    env.close()
    return path


def _last(logdir: Path) -> Path:
    (path,) = logdir.glob("Pendulum-v1/td3_bc/0/*/last.pt")
    return path


def test_killed_example_resumes_to_the_same_weights(pendulum: Path, tmp_path: Path) -> None:
    args = ["--expert-data-task", str(pendulum), "--epoch", "3", "--step-per-epoch", "20",
            "--test-num", "1", "--hidden-sizes", "16", "--batch-size", "32", "--threads", "1",
            "--logger", "none", "--show-progress", "0"]  # fmt: skip
    run_in_process(SCRIPT, [*args, "--logdir", str(tmp_path / "straight")])
    # killed at the 31st of 60 gradient steps: in the middle of the second epoch
    killed = run_example(SCRIPT, [*args, "--logdir", str(tmp_path / "killed")], tmp_path,
                         kill_at=31)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    last = _last(tmp_path / "killed")
    assert epoch_of(last) == 1  # the checkpoint of the first epoch
    run_in_process(SCRIPT, [*args, "--resume-path", str(last)])
    assert_same_training(_last(tmp_path / "straight"), last, (3, 3 * 20 * 32, 60))
