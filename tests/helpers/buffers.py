"""Helpers for building real Tianshou buffers in tests."""

from __future__ import annotations

import numpy as np
from tianshou.data import Batch, ReplayBuffer


def fill(buf: ReplayBuffer, lengths: list[int], *, obs_dim: int = 3, seed: int = 0,
         last_unfinished: bool = False, with_info: bool = True) -> list[dict[str, np.ndarray]]:
    """Add episodes with the given lengths to ``buf`` step by step (Tianshou's own add()).

    Returns the episodes as column dicts in the order they were added.
    """
    rng = np.random.default_rng(seed)
    episodes: list[dict[str, np.ndarray]] = []
    for e, length in enumerate(lengths):
        obs = rng.normal(size=(length + 1, obs_dim)).astype(np.float32)
        act = rng.integers(0, 4, size=length)
        rew = rng.normal(size=length)
        term = np.zeros(length, bool)
        trunc = np.zeros(length, bool)
        unfinished = last_unfinished and e == len(lengths) - 1
        if not unfinished:
            if e % 2 == 0:
                term[-1] = True
            else:
                trunc[-1] = True
        for t in range(length):
            b = Batch(obs=obs[t], act=act[t], rew=rew[t], terminated=term[t], truncated=trunc[t],
                      obs_next=obs[t + 1])
            if with_info:
                b.info = Batch(step=np.int64(t), ep=np.int64(e))
            else:
                b.info = {}
            buf.add(b)
        episodes.append({"obs": obs[:-1], "obs_next": obs[1:], "act": act, "rew": rew,
                         "terminated": term, "truncated": trunc})
    return episodes


def episodes_of(buf: ReplayBuffer) -> list[np.ndarray]:
    """Episodes of a loaded buffer by following next() from every episode start.

    Starts are rows i with prev(i) == i; the walk uses only Tianshou's own next().
    """
    n = len(buf)
    idx = np.arange(n)
    starts = idx[buf.prev(idx) == idx]
    out = []
    for s in starts:
        rows = [int(s)]
        while True:
            nxt = int(buf.next(rows[-1]))
            if nxt == rows[-1]:
                break
            rows.append(nxt)
        out.append(np.asarray(rows))
    return out
