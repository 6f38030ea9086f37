"""Chronological columns → a Tianshou ``ReplayBuffer`` with correct episode boundaries.

Tianshou 2.0.1's ``ReplayBuffer.from_data`` leaves ``last_index`` at 0, which makes
``next()``/``prev()`` treat row 0 as an episode end and the last row as continuing into row 0;
:func:`buffer_from_columns` sets it to the last row. Every loader builds its buffer here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tianshou.data import ReplayBuffer


def buffer_from_columns(
    columns: Mapping[str, Any],
    *,
    stack_num: int = 1,
    save_only_last_obs: bool = False,
    sample_avail: bool = False,
) -> ReplayBuffer:
    """Build a ``ReplayBuffer`` from chronological columns, with correct episode boundaries.

    :param columns: ``obs``, ``act``, ``rew``, ``terminated``, ``truncated`` (and optionally
        ``done``, ``obs_next``, ``info``): arrays with N rows (``obs``/``obs_next``/``info``
        may be nested mappings). ``done`` defaults to ``terminated | truncated``; it marks
        episode ends, so an episode cut by the data source can end without either flag.
        Without ``obs_next`` the buffer derives it from ``obs[next(i)]`` (``ignore_obs_next``).
    :returns: a full buffer with ``maxsize == len == N``, ``last_index == [N - 1]``.
    """
    from tianshou.data import Batch, ReplayBuffer

    rew = np.asarray(columns["rew"])
    n = int(rew.shape[0])
    term = np.asarray(columns["terminated"], dtype=bool)
    trunc = np.asarray(columns["truncated"], dtype=bool)
    done = columns.get("done")
    done_arr = term | trunc if done is None else np.asarray(done, dtype=bool) | term | trunc
    has_obs_next = columns.get("obs_next") is not None
    buf = ReplayBuffer(
        max(n, 1),
        stack_num=stack_num,
        ignore_obs_next=not has_obs_next,
        save_only_last_obs=save_only_last_obs,
        sample_avail=sample_avail,
    )
    if n == 0:
        return buf
    data: dict[str, Any] = {
        "obs": columns["obs"],
        "act": columns["act"],
        "rew": rew,
        "terminated": term,
        "truncated": trunc,
        "done": done_arr,
    }
    if has_obs_next:
        data["obs_next"] = columns["obs_next"]
    info = columns.get("info")
    if info is not None and len(info) > 0:
        data["info"] = info
    batch = Batch(data)
    buf.set_batch(batch)
    buf._size = n
    buf._insertion_idx = 0
    buf.last_index = np.array([n - 1])
    return buf
