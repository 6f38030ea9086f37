"""Checking a loaded buffer independently of the package (:func:`check_buffer`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np


def _leaves(batch: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    from tianshou.data import Batch

    for key in batch.get_keys():
        value = batch[key]
        if isinstance(value, Batch):
            yield from _leaves(value, f"{prefix}{key}/")
        else:
            yield f"{prefix}{key}", value


def check_buffer(buf: Any) -> str | None:
    """What is inconsistent about a loaded buffer, or None.

    Invariants: ``len == maxsize == N``; ``last_index == [N-1]``; every column has N rows;
    ``next``/``prev`` stay in range, move by one row inside an episode and stop exactly at the
    rows ``done`` marks (and at row 0 / N-1); ``buffer[i]`` of episode starts, ends and random
    rows gives one row per index for every key; ``sample`` works.
    """
    n = len(buf)
    if n == 0:
        return None if buf._size == 0 else f"len 0 but _size {buf._size}"
    if buf.maxsize != n:
        return f"maxsize {buf.maxsize} != len {n}"
    if list(np.asarray(buf.last_index).reshape(-1)) != [n - 1]:
        return f"last_index {buf.last_index} != [{n - 1}]"
    for name, leaf in _leaves(buf._meta):
        shape = np.shape(leaf)
        if not shape or shape[0] != n:
            return f"column {name} has shape {shape}; expected {n} rows"
    done = np.asarray(buf.done[:n])
    if done.dtype != np.bool_ or done.shape != (n,):
        return f"done is {done.dtype} {done.shape}"
    if not done[n - 1]:
        return "the last row does not end an episode"
    idx = np.arange(n)
    nxt = np.asarray(buf.next(idx))
    prv = np.asarray(buf.prev(idx))
    want_next = np.where(done, idx, idx + 1)
    start = np.concatenate([[True], done[:-1]])
    want_prev = np.where(start, idx, idx - 1)
    if not np.array_equal(nxt, want_next):
        i = int(np.flatnonzero(nxt != want_next)[0])
        return f"next({i}) = {nxt[i]}; expected {want_next[i]}"
    if not np.array_equal(prv, want_prev):
        i = int(np.flatnonzero(prv != want_prev)[0])
        return f"prev({i}) = {prv[i]}; expected {want_prev[i]}"
    rng = np.random.default_rng(0)
    probe = np.unique(
        np.concatenate(
            [
                [0, n - 1],
                np.flatnonzero(done)[:8],
                np.flatnonzero(start)[:8],
                rng.integers(0, n, 16),
            ]
        )
    )
    batch = buf[probe]
    for name, leaf in _leaves(batch):
        shape = np.shape(leaf)
        if not shape or shape[0] != len(probe):
            return f"buffer[indices].{name} has shape {shape}; expected {len(probe)} rows"
    one = buf[int(probe[-1])]
    if one is None:
        return "buffer[i] is None"
    _, indices = buf.sample(min(8, n))
    if len(indices) != min(8, n) or np.any((indices < 0) | (indices >= n)):
        return f"sample gave indices {indices}"
    avail = buf.sample_indices(0)
    if np.any((avail < 0) | (avail >= n)):
        return "sample_indices(0) out of range"
    return None
