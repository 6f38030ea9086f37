"""Flat (repacked-layout) HDF5 files of synthetic transitions, shared by the out-of-core
tests of the continuous and the discrete algorithms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tianshou_offline.data.writer import BufferWriter

OBS_DIM, ACT_DIM = 5, 2


def write_flat(
    path: Path, n: int, *, seed: int, obs_next: bool = False, num_actions: int | None = None
) -> Path:
    """``n`` transitions in episodes of 3..40 steps, some terminated and some truncated, float64
    observations (cast to float32 by the datasets) and actions in ``[-2, 2]`` (with
    ``num_actions``: integer actions in ``0..num_actions-1``)."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(2.0, 3.0, (n, OBS_DIM))
    terminated = np.zeros(n, bool)
    truncated = np.zeros(n, bool)
    t = 0
    while t < n:
        t += int(rng.integers(3, 40))
        if t <= n:
            (terminated if rng.random() < 0.5 else truncated)[t - 1] = True
    truncated[-1] = not terminated[-1]
    columns: dict[str, Any] = {
        "obs": obs,
        "act": (
            rng.uniform(-2.0, 2.0, (n, ACT_DIM)).astype(np.float32)
            if num_actions is None
            else rng.integers(0, num_actions, n)
        ),
        "rew": rng.normal(size=n).astype(np.float32),
        "terminated": terminated,
        "truncated": truncated,
    }
    if obs_next:
        columns["obs_next"] = rng.normal(size=(n, OBS_DIM))
    with BufferWriter(path, contiguous=True, store_obs_next=obs_next) as w:
        w.add_transitions(**columns)
    return path
