"""Chronological columns → a Tianshou ``ReplayBuffer`` with correct episode boundaries.

Tianshou 2.0.1's ``ReplayBuffer.from_data`` leaves ``last_index`` at 0, which makes
``next()``/``prev()`` treat row 0 as an episode end and the last row as continuing into row 0;
:func:`buffer_from_columns` sets it to the last row. Every loader builds its buffer here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from tianshou_offline.errors import DatasetFormatError, raised_within

if TYPE_CHECKING:
    from tianshou.data import ReplayBuffer


def buffer_from_columns(
    columns: Mapping[str, Any],
    *,
    stack_num: int = 1,
    save_only_last_obs: bool = False,
    sample_avail: bool = False,
    source: str = "",
) -> ReplayBuffer:
    """Build a ``ReplayBuffer`` from chronological columns, with correct episode boundaries.

    :param columns: ``obs``, ``act``, ``rew``, ``terminated``, ``truncated`` (and optionally
        ``done``, ``obs_next``, ``info``): arrays with N rows (``obs``/``obs_next``/``info``
        may be nested mappings). ``done`` defaults to ``terminated | truncated``; it marks
        episode ends, so an episode cut by the data source can end without either flag.
        Without ``obs_next`` the buffer derives it from ``obs[next(i)]`` (``ignore_obs_next``).
    :param source: the file the columns were read from (error messages).
    :returns: a full buffer with ``maxsize == len == N``, ``last_index == [N - 1]``, checked
        by :func:`verify_buffer`.
    :raises DatasetFormatError: the columns do not all have N rows (``rew``, flags: ``(N,)``),
        or the buffer built from them fails :func:`verify_buffer`.
    """
    from tianshou.data import Batch, ReplayBuffer

    where = f"{source}: " if source else ""
    for key in ("rew", "terminated", "truncated", "done"):
        if isinstance(columns.get(key), Mapping):
            raise DatasetFormatError(f"{where}{key} is a group of columns; expected one array")
    rew = np.asarray(columns["rew"])
    if rew.ndim != 1:
        raise DatasetFormatError(f"{where}rew has shape {rew.shape}; expected (N,)")
    n = int(rew.shape[0])
    for name, arr in _leaves(columns):
        shape = np.shape(arr)
        if not shape or shape[0] != n:
            raise DatasetFormatError(
                f"{where}column {name} has shape {shape}; expected {n} rows (as rew)"
            )
        if name in ("terminated", "truncated", "done") and len(shape) != 1:
            raise DatasetFormatError(f"{where}column {name} has shape {shape}; expected ({n},)")
    if stack_num < 1:
        raise DatasetFormatError(f"{where}stack_num is {stack_num}; expected >= 1")
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
    verify_buffer(buf, source)
    return buf


def nest_columns(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Columns keyed by ``/``-separated paths (``"info/a/b"``) as nested dicts
    (``{"info": {"a": {"b": ...}}}``); the inverse of :func:`_leaves`."""
    out: dict[str, Any] = {}
    for path, arr in flat.items():
        parts = path.split("/")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = arr
    return out


def _leaves(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            yield from _leaves(value, f"{prefix}{key}/")
        elif hasattr(value, "get_keys"):  # a Tianshou Batch
            yield from _leaves({k: value[k] for k in value.get_keys()}, f"{prefix}{key}/")
        else:
            yield f"{prefix}{key}", value


def verify_buffer(buf: ReplayBuffer, source: str = "") -> None:
    """Check a loaded buffer before handing it out: every column has ``len(buf)`` rows,
    ``done`` is a bool column that ends the last episode, ``last_index`` is the last row, and
    reading rows (``buffer[indices]``, frame stacks included) works at the first and the last
    row and at the first episode ends.

    :raises DatasetFormatError: naming ``source`` and what is inconsistent.
    """
    where = f"{source}: " if source else ""
    n = len(buf)
    if n == 0:
        return
    if buf.maxsize != n or list(np.asarray(buf.last_index).reshape(-1)) != [n - 1]:
        raise DatasetFormatError(
            f"{where}loaded buffer has maxsize {buf.maxsize} and last_index {buf.last_index}; "
            f"expected {n} and [{n - 1}]"
        )
    meta = buf._meta
    for name, arr in _leaves({k: meta[k] for k in meta.get_keys()}):
        shape = np.shape(arr)
        if not shape or shape[0] != n:
            raise DatasetFormatError(f"{where}column {name} has shape {shape}; expected {n} rows")
    done = np.asarray(buf.done)
    if done.dtype != np.bool_ or done.shape != (n,):
        raise DatasetFormatError(f"{where}done is {done.dtype} {done.shape}; expected bool ({n},)")
    probe = np.unique(np.concatenate([[0, n - 1], np.flatnonzero(done)[:2]]))
    try:
        batch = buf[probe]
    except (IndexError, ValueError, TypeError, KeyError) as e:
        if not raised_within(e, ("tianshou",)):  # our own buffer class failing is a bug
            raise
        raise DatasetFormatError(
            f"{where}the loaded buffer cannot return rows {probe.tolist()}: {type(e).__name__}: {e}"
        ) from e
    for name, arr in _leaves({k: batch[k] for k in batch.get_keys()}):
        shape = np.shape(arr)
        if not shape or shape[0] != len(probe):
            raise DatasetFormatError(
                f"{where}buffer[{probe.tolist()}].{name} has shape {shape}; expected "
                f"{len(probe)} rows"
            )
