"""D4RL-layout HDF5 files → transitions (read with h5py; no d4rl, gym or mujoco needed).

Default semantics (used by :func:`tianshou_offline.load_buffer` on D4RL-layout files):

- ``terminated = terminals``, ``truncated = timeouts`` (all False when absent).
- ``obs_next`` comes from ``next_observations`` when the file has it; otherwise it is the
  next row's observation inside the episode. Without ``next_observations`` the last
  transition of a timed-out episode has no successor and is dropped, and the row before it
  becomes the episode's (truncated) end; a terminal row's ``obs_next`` is its own ``obs``
  (never bootstrapped from); a final row that is neither terminal nor timed out is dropped
  likewise and the episode is marked as cut.
"""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np

from tianshou_offline.errors import DatasetFormatError

D4RL_REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")


def _read(f: h5py.File, key: str) -> np.ndarray:
    ds = f[key]
    if not isinstance(ds, h5py.Dataset):
        raise DatasetFormatError(f"{f.filename}: '{key}' is a group; expected a dataset")
    return np.asarray(ds[()])


def d4rl_transitions(f: h5py.File) -> dict[str, Any]:
    """Read a D4RL-layout file into transition columns with the default semantics.

    :returns: a dict with ``obs`` ``(N, obs_dim)``, ``act`` ``(N, act_dim)``, ``rew`` ``(N,)``,
        ``terminated``/``truncated``/``done`` ``(N,)`` bool and ``obs_next`` like ``obs``;
        ``done`` marks every episode end (including episodes cut by the end of the data).
    :raises DatasetFormatError: a required key is missing or lengths disagree.
    """
    missing = [k for k in D4RL_REQUIRED_KEYS if k not in f]
    if missing:
        raise DatasetFormatError(
            f"{f.filename}: D4RL layout is missing {', '.join(missing)}; expected keys "
            f"{', '.join(D4RL_REQUIRED_KEYS)} (+ optional timeouts, next_observations)"
        )
    obs = _read(f, "observations")
    act = _read(f, "actions")
    rew = _read(f, "rewards").reshape(-1)
    terminals = _read(f, "terminals").reshape(-1).astype(bool)
    n = obs.shape[0]
    timeouts = (
        _read(f, "timeouts").reshape(-1).astype(bool)
        if "timeouts" in f
        else np.zeros(n, dtype=bool)
    )
    next_obs = _read(f, "next_observations") if "next_observations" in f else None
    for name, arr in (
        ("actions", act),
        ("rewards", rew),
        ("terminals", terminals),
        ("timeouts", timeouts),
        ("next_observations", next_obs),
    ):
        if arr is not None and arr.shape[0] != n:
            raise DatasetFormatError(
                f"{f.filename}: '{name}' has {arr.shape[0]} rows; expected {n} "
                "(the length of 'observations')"
            )
    if next_obs is not None:
        done = terminals | timeouts
        if n:
            done[-1] = True
        return {
            "obs": obs,
            "act": act,
            "rew": rew,
            "terminated": terminals,
            "truncated": timeouts & ~terminals,
            "done": done,
            "obs_next": next_obs,
        }
    # rebuild obs_next from the following row; drop rows that have no successor
    keep = np.ones(n, dtype=bool)
    drop = timeouts & ~terminals
    if n:
        if not terminals[-1]:
            drop[-1] = True
    keep &= ~drop
    obs_next = np.empty_like(obs)
    if n > 1:
        obs_next[:-1] = obs[1:]
    if n:
        obs_next[-1] = obs[-1]
    obs_next[terminals] = obs[terminals]
    # the row before a dropped row ends its episode (truncated: data continues in the env)
    before_drop = np.zeros(n, dtype=bool)
    if n > 1:
        before_drop[:-1] = drop[1:] & ~terminals[:-1] & ~drop[:-1]
    truncated = before_drop & ~terminals
    # the row before a dropped final row (not a timeout) is a cut, not a truncation
    if n > 1 and drop[-1] and not timeouts[-1]:
        truncated[-2] = False
    done = terminals | truncated
    if n > 1 and drop[-1] and not terminals[-2]:
        done[-2] = True
    idx = np.flatnonzero(keep)
    if idx.size:
        done[idx[-1]] = True
    return {
        "obs": obs[idx],
        "act": act[idx],
        "rew": rew[idx],
        "terminated": terminals[idx],
        "truncated": truncated[idx],
        "done": done[idx],
        "obs_next": obs_next[idx],
    }
