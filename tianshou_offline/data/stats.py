"""Dataset statistics (episode returns and lengths, action distribution) and plots."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from tianshou_offline.data.atomic import atomic_output, check_new_output
from tianshou_offline.data.format import (
    EPISODES_GROUP,
    META_GROUP,
    check_version,
    committed_counts,
    detect_layout,
    episode_bounds,
    group_at,
    open_h5,
)
from tianshou_offline.data.reading import check_extent, check_rows, dataset
from tianshou_offline.errors import DatasetFormatError


@dataclass(frozen=True)
class EpisodeTable:
    """Per-episode facts of a buffer file; arrays of shape ``(num_episodes,)``."""

    starts: np.ndarray
    """int64 first row of each episode."""
    lengths: np.ndarray
    """int64 number of transitions."""
    returns: np.ndarray
    """float64 undiscounted sum of rewards."""
    terminated: np.ndarray
    """bool: the episode ended in a terminal state."""
    truncated: np.ndarray
    """bool: the episode was truncated (time limit)."""
    metadata: dict[str, np.ndarray]
    """per-episode attributes stored by a recorder callback."""


def episode_table_from_flags(rew: np.ndarray, done: np.ndarray) -> tuple[np.ndarray, ...]:
    """Starts, lengths and returns of the episodes delimited by ``done`` (a trailing
    unfinished episode counts as an episode)."""
    n = int(rew.shape[0])
    ends = np.flatnonzero(done)
    if n and (len(ends) == 0 or ends[-1] != n - 1):
        ends = np.append(ends, n - 1)
    starts = (
        np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
        if len(ends)
        else np.zeros(0, np.int64)
    )
    lengths = (ends + 1 - starts).astype(np.int64)
    csum = np.concatenate([[0.0], np.cumsum(rew, dtype=np.float64)])
    returns = csum[ends + 1] - csum[starts]
    return starts, lengths, returns


def episode_table(path: str | os.PathLike[str]) -> EpisodeTable:
    """Read the per-episode table of any layout :func:`~tianshou_offline.load_buffer` reads.

    tianshou-offline files answer from their stored episode table (no data scan); other
    layouts are loaded and split at their episode boundaries.
    """
    p = Path(path)
    with open_h5(p) as f:
        if detect_layout(f) == "tianshou_offline":
            return stored_episode_table(f)
    from tianshou_offline.data.buffer import load_buffer

    buf = load_buffer(p, include_info=False)
    n = len(buf)  # an empty Tianshou buffer has no columns at all (``buf.rew`` raises)
    rew = np.asarray(buf.rew[:n], dtype=np.float64) if n else np.zeros(0)
    done = np.asarray(buf.done[:n], dtype=bool) if n else np.zeros(0, dtype=bool)
    starts, lengths, returns = episode_table_from_flags(rew, done)
    ends = starts + lengths - 1
    return EpisodeTable(
        starts=starts,
        lengths=lengths,
        returns=returns,
        terminated=np.asarray(buf.terminated)[ends] if n else np.zeros(0, dtype=bool),
        truncated=np.asarray(buf.truncated)[ends] if n else np.zeros(0, dtype=bool),
        metadata={},
    )


def _column(group: h5py.Group, key: str, n: int, *, kinds: str = "biuf") -> np.ndarray:
    """The first ``n`` values of a 1-D column of the dtype ``kinds`` (default: numbers or
    bools), checked."""
    ds = dataset(group, key, kinds=kinds)
    if ds.ndim != 1:
        raise DatasetFormatError(
            f"{group.file.filename}: '{ds.name}' has shape {ds.shape}; expected ({n},)"
        )
    check_rows(ds, n)
    check_extent(ds, n)
    return np.asarray(ds[:n])


def stored_episode_table(f: h5py.File) -> EpisodeTable:
    """The episode table of an open tianshou-offline file (its layout already known),
    checked against its data columns."""
    check_version(f)
    starts, lengths = episode_bounds(f)
    n_ep = len(starts)
    n = int(starts[-1] + lengths[-1]) if n_ep else 0
    ends = starts + lengths - 1
    eps = group_at(f, EPISODES_GROUP)
    meta = group_at(f, META_GROUP)
    flags = {}
    for key in ("terminated", "truncated"):
        flags[key] = (
            _column(meta, key, n).astype(bool)[ends] if key in meta else np.zeros(n_ep, bool)
        )
    if "return" in eps:
        returns = _column(eps, "return", n_ep).astype(np.float64)
    else:  # recompute what the writer stores
        csum = np.concatenate([[0.0], np.cumsum(_column(meta, "rew", n), dtype=np.float64)])
        returns = csum[ends + 1] - csum[starts]
    md: dict[str, np.ndarray] = {}
    group = eps.get("metadata")
    if isinstance(group, h5py.Group):
        for k in group.keys():
            arr = _column(group, k, n_ep, kinds="biufSO")
            if arr.dtype.kind in "OS":
                arr = np.asarray(
                    [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in arr]
                )
            md[k] = arr
    return EpisodeTable(
        starts=starts,
        lengths=lengths,
        returns=returns,
        terminated=flags["terminated"],
        truncated=flags["truncated"],
        metadata=md,
    )


def describe(values: np.ndarray) -> dict[str, float]:
    """mean, std, min, median, max of a 1-D array (NaN when empty)."""
    if values.size == 0:
        return dict.fromkeys(("mean", "std", "min", "median", "max"), float("nan"))
    v = values.astype(np.float64)
    return {
        "mean": float(v.mean()),
        "std": float(v.std()),
        "min": float(v.min()),
        "median": float(np.median(v)),
        "max": float(v.max()),
    }


def read_actions(path: str | os.PathLike[str], max_rows: int = 1_000_000) -> np.ndarray:
    """Up to ``max_rows`` actions of a buffer file (evenly strided when there are more)."""
    with open_h5(path) as f:
        layout = detect_layout(f)
        if layout == "d4rl":
            ds = dataset(f, "actions")
            n = ds.shape[0] if ds.ndim else 0
        else:
            ds = dataset(group_at(f, META_GROUP), "act")
            if layout == "tianshou_offline":
                n = committed_counts(f)[0]
            else:
                n = ds.shape[0] if ds.ndim else 0
        if ds.ndim == 0 or ds.dtype.kind not in "biuf":
            raise DatasetFormatError(
                f"{f.filename}: '{ds.name}' has shape {ds.shape} and dtype {ds.dtype}; expected "
                "one row of numbers per transition"
            )
        check_rows(ds, n)
        check_extent(ds, n)
        stride = max(1, n // max_rows)
        return np.asarray(ds[:n:stride])


def histogram(ax: Any, values: np.ndarray, color: str) -> str:
    """Draw a histogram of the finite ``values`` (any numeric or bool dtype) on ``ax``; returns
    a note for the title naming the values left out (infinite or NaN rewards sum to infinite
    or NaN returns, which no bin holds)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    finite = v[np.isfinite(v)]
    dropped = v.size - finite.size
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        if lo == hi:
            lo, hi = lo - max(0.5, abs(lo) * 1e-3), hi + max(0.5, abs(hi) * 1e-3)
        t = np.linspace(0.0, 1.0, min(50, max(5, finite.size // 2)) + 1)
        with np.errstate(over="ignore", invalid="ignore"):
            edges = lo * (1.0 - t) + hi * t  # finite even when hi - lo overflows
        if np.all(np.isfinite(edges)) and np.all(np.diff(edges) > 0):
            ax.hist(finite, bins=edges, color=color)
        else:  # a range no float64 bins can split
            dropped = v.size
    return f"; {dropped} not finite, not drawn" if dropped else ""


def plot_dataset(
    path: str | os.PathLike[str], out: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Draw return and length histograms and the action distribution to a PNG file.

    :param overwrite: replace an existing ``out``.
    :raises OutputExistsError: ``out`` exists and ``overwrite`` is False (also a file that
        appears there while the plot is drawn: it is left untouched).
    """
    check_new_output(out, overwrite=overwrite)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = episode_table(path)
    act = read_actions(path)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    note = histogram(axes[0], table.returns, "tab:blue")
    axes[0].set_title(f"episode return (n={len(table.returns)}){note}")
    axes[0].set_xlabel("return")
    axes[0].set_ylabel("episodes")
    note = histogram(axes[1], table.lengths, "tab:green")
    axes[1].set_title(f"episode length{note}")
    axes[1].set_xlabel("steps")
    ax = axes[2]
    if act.dtype.kind in "biu" and act.ndim == 1:  # discrete actions (bool: 0/1)
        values, counts = np.unique(act, return_counts=True)
        ax.bar(values.astype(str), counts, color="tab:orange")
        ax.set_title("action counts")
        ax.set_xlabel("action")
    else:
        flat = act.reshape(act.shape[0], -1).astype(np.float64)
        dims = min(flat.shape[1], 8)
        columns = [flat[:, i] for i in range(dims)]
        finite = [c[np.isfinite(c)] for c in columns]
        dropped = sum(c.size - f.size for c, f in zip(columns, finite, strict=True))
        ax.violinplot(finite, showmedians=True)
        note = f"; {dropped} values not finite, not drawn" if dropped else ""
        ax.set_title(f"action distribution per dimension (first {dims}){note}")
        ax.set_xlabel("dimension")
    fig.suptitle(Path(path).name)
    fig.tight_layout()
    o = Path(out)
    with atomic_output(o, overwrite=overwrite, tag="png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
        plt.close(fig)
    return o


def summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Episode statistics as a JSON-able dict (used by ``tianshou-offline inspect``)."""
    t = episode_table(path)
    return {
        "episodes": len(t.returns),
        "transitions": int(np.sum(t.lengths)),
        "terminated_episodes": int(np.sum(t.terminated)),
        "truncated_episodes": int(np.sum(t.truncated)),
        "cut_episodes": int(np.sum(~(t.terminated | t.truncated))),
        "return": describe(t.returns),
        "length": describe(t.lengths),
        "metadata_columns": sorted(t.metadata),
    }
