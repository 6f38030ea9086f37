"""Shared pytest configuration: keep torch on one thread (2-core CI machines), and keep
TensorBoard (imported by tianshou) from importing TensorFlow in the test process, as the CLI
does (tests that read TFRecords through TensorFlow still import it themselves)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import tianshou_offline.cli._no_tensorflow  # noqa: F401

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def _torch_threads() -> None:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def expert_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the session's gathered expert datasets (``benchmarks/_lib/experts/pendulum.py``,
    ``benchmarks/_lib/experts/cartpole.py``): every test file that trains on them shares one gathering
    (about a minute each) instead of gathering its own. Under pytest-xdist the folder is shared
    by the run's workers (in their common base folder), so that each dataset is gathered once
    per run, not once per worker (``cached_file`` locks it while one worker gathers)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = tmp_path_factory.getbasetemp().parent / "expert_data"
        shared.mkdir(exist_ok=True)
        return shared
    return tmp_path_factory.mktemp("expert_data")


@pytest.fixture(scope="session")
def pendulum_random(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two episodes (400 steps) of Pendulum-v1 with seeded random actions: the data of the
    example scripts' kill-and-resume and logger tests."""
    import gymnasium as gym

    from tianshou_offline import EpisodeRecorder

    path = tmp_path_factory.mktemp("pendulum_random") / "pendulum.hdf5"
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
