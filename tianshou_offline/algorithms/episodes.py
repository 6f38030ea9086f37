"""Episode arithmetic over a Tianshou ``ReplayBuffer``, vectorised over its storage rows:
n-step reward sums and bootstrap discounts, episode starts, discounted returns-to-go and
episode ends (the datasets' targets, FQE's initial states, the Decision Transformer's
returns-to-go). Re-exported by :mod:`~tianshou_offline.algorithms.core`.
"""

from __future__ import annotations

import numpy as np
from tianshou.data import ReplayBuffer

__all__ = ["episode_ends", "episode_starts", "n_step_targets", "return_to_go"]


def n_step_targets(
    buffer: ReplayBuffer, indices: np.ndarray, gamma: float, n_step: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """n-step reward sums for every transition at ``indices`` (storage rows).

    Follows ``buffer.next`` for up to ``n_step`` transitions, stopping at the end of an
    episode (terminated, truncated, cut, or the last stored step). Shared by the continuous
    and the discrete datasets.

    :returns: ``rew`` (N,) = Σ_{k<m} γ^k r_{t+k}; ``last`` (N,) the storage row of the last
        transition used (its ``obs_next`` is bootstrapped from); ``discount`` (N,) =
        γ^m (1 − terminated); ``terminated`` (N,) in {0, 1}.
    """
    n = len(indices)
    # the columns as stored (no whole-column copies: a caller may pass a chunk of the rows)
    rew_all = np.asarray(buffer.rew)
    term_all = np.asarray(buffer.terminated)
    done_all = np.asarray(buffer.done)
    cur = indices.copy()
    ret = np.zeros(n, dtype=np.float64)
    disc = np.ones(n, dtype=np.float64)
    alive = np.ones(n, dtype=bool)
    last = cur.copy()
    for k in range(n_step):
        ret[alive] += disc[alive] * rew_all[cur[alive]].astype(np.float64)
        disc[alive] *= gamma
        last[alive] = cur[alive]
        if k == n_step - 1:
            break
        nxt = np.asarray(buffer.next(cur))
        alive &= ~done_all[cur].astype(bool) & (nxt != cur)
        if not alive.any():
            break
        cur = np.where(alive, nxt, cur)
    terminated = term_all[last].astype(bool).astype(np.float64)
    return ret, last, disc * (1.0 - terminated), terminated


def episode_starts(buffer: ReplayBuffer) -> np.ndarray:
    """Storage rows of the first transition of every episode in ``buffer`` (``(E,)`` int64):
    the rows Tianshou's ``buffer.prev`` leaves unchanged."""
    indices = np.asarray(buffer.sample_indices(0), dtype=np.int64)
    starts: np.ndarray = indices[np.asarray(buffer.prev(indices)) == indices]
    return starts


def return_to_go(buffer: ReplayBuffer, gamma: float) -> np.ndarray:
    """The discounted return-to-go ``G_t = Σ_{k≥0} γ^k r_{t+k}`` of every stored transition,
    summed to the end of its stored episode (terminated, truncated, cut, or the last stored
    step: a truncated episode contributes only the rewards it holds).

    One backward sweep from every episode end along ``buffer.prev``: as many vectorised steps
    as the longest episode has transitions.

    :returns: ``(buffer.maxsize,)`` float64 indexed by storage row (rows not in use: 0).
    """
    rew = np.asarray(buffer.rew, dtype=np.float64)
    ret = np.zeros(len(rew), dtype=np.float64)
    indices = np.asarray(buffer.sample_indices(0), dtype=np.int64)
    if len(indices) == 0:
        return ret
    cur = indices[np.asarray(buffer.next(indices)) == indices]  # episode ends
    ret[cur] = rew[cur]
    while len(cur):
        prev = np.asarray(buffer.prev(cur))
        alive = prev != cur
        nxt, cur = cur[alive], prev[alive]
        ret[cur] = rew[cur] + gamma * ret[nxt]
    return ret


def episode_ends(buffer: ReplayBuffer) -> tuple[np.ndarray, np.ndarray]:
    """For every stored transition, the storage row of the last stored step of its episode
    (terminated, truncated, cut, or the last stored step) and how many steps lie between them.

    One backward sweep from every episode end along ``buffer.prev``, as :func:`return_to_go`.

    :returns: ``end`` and ``steps``, ``(buffer.maxsize,)`` int64 indexed by storage row (rows
        not in use: ``end`` −1, ``steps`` 0); ``steps`` is 0 on the last step itself.
    """
    size = len(np.asarray(buffer.rew))
    end = np.full(size, -1, dtype=np.int64)
    steps = np.zeros(size, dtype=np.int64)
    indices = np.asarray(buffer.sample_indices(0), dtype=np.int64)
    if len(indices) == 0:
        return end, steps
    cur = indices[np.asarray(buffer.next(indices)) == indices]
    end[cur] = cur
    while len(cur):
        prev = np.asarray(buffer.prev(cur))
        alive = prev != cur
        nxt, cur = cur[alive], prev[alive]
        end[cur] = end[nxt]
        steps[cur] = steps[nxt] + 1
    return end, steps
