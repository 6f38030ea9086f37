"""Arrays and files → a Tianshou ``ReplayBuffer`` with correct episode boundaries, and back.

:func:`load_buffer` reads three layouts:

- tianshou-offline buffer files (``docs/FORMAT.md``);
- Tianshou's own ``ReplayBuffer.save_hdf5`` / ``VectorReplayBuffer.save_hdf5`` files,
  without unpickling anything unless ``allow_pickle=True`` (the pickled per-buffer copies and
  random state in those files are never read);
- the D4RL key layout (``observations``, ``actions``, ``rewards``, ``terminals``,
  ``timeouts``, ``next_observations``) used by Tianshou's offline examples.

The returned buffer is a plain ``tianshou.data.ReplayBuffer`` whose ``maxsize`` equals the
number of transitions, in chronological order, with ``last_index`` at the last row (Tianshou's
``ReplayBuffer.from_data`` leaves it at 0, which makes ``next()``/``prev()`` treat row 0 as an
episode end and the last row as continuing into row 0).
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import h5py
import numpy as np

from tianshou_offline.data.columns import buffer_from_columns
from tianshou_offline.data.format import (
    DATA_TYPE_ATTR,
    META_GROUP,
    SAFE_DATA_TYPES,
    Provenance,
    check_version,
    committed_counts,
    detect_layout,
    iter_datasets,
    open_h5,
)
from tianshou_offline.data.writer import BufferWriter, Compression
from tianshou_offline.errors import DatasetFormatError, UnsafeDataError
from tianshou_offline.progress import Progress
from tianshou_offline.progress import progress as progress_bar

if TYPE_CHECKING:
    import gymnasium as gym
    from tianshou.data import Batch, ReplayBuffer

log = logging.getLogger(__name__)

Segments = list[tuple[int, int]]
"""Chronological list of ``[start, stop)`` row ranges of the stored arrays."""

_PROGRESS_BYTES = 1 << 30


# --------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------


def _read_segments(ds: h5py.Dataset, segments: Segments, bar: Progress | None) -> np.ndarray:
    total = sum(b - a for a, b in segments)
    out = np.empty((total, *ds.shape[1:]), dtype=ds.dtype)
    pos = 0
    row_bytes = max(1, out.itemsize * int(np.prod(ds.shape[1:], dtype=np.int64)))
    step = max(1, (64 << 20) // row_bytes)
    for a, b in segments:
        for s in range(a, b, step):
            e = min(b, s + step)
            if e > s:
                ds.read_direct(out, np.s_[s:e], np.s_[pos : pos + e - s])
                if bar is not None:
                    bar.update((e - s) * row_bytes)
            pos += e - s
    return out


def _unsafe_fields(group: h5py.Group, prefix: str) -> list[str]:
    bad = []
    for name, ds in iter_datasets(group):
        tag = ds.attrs.get(DATA_TYPE_ATTR)
        if tag is not None:
            tag = tag.decode() if isinstance(tag, bytes) else str(tag)
        if tag is not None and tag not in SAFE_DATA_TYPES:
            bad.append(f"{prefix}{name} ({tag})")
    return bad


def _read_group(
    group: h5py.Group,
    segments: Segments,
    *,
    allow_pickle: bool,
    include_info: bool,
    bar: Progress | None,
    path: str = "",
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in group.keys():
        name = f"{path}{key}"
        if not include_info and name == "info":
            continue
        item = group[key]
        if isinstance(item, h5py.Group):
            out[key] = _read_group(
                item,
                segments,
                allow_pickle=allow_pickle,
                include_info=include_info,
                bar=bar,
                path=name + "/",
            )
            continue
        tag = item.attrs.get(DATA_TYPE_ATTR, "ndarray")
        tag = tag.decode() if isinstance(tag, bytes) else str(tag)
        if tag in SAFE_DATA_TYPES:
            out[key] = _read_segments(item, segments, bar)
        else:
            if not allow_pickle:  # pragma: no cover - checked before reading
                raise UnsafeDataError(f"{group.file.filename}: {name} is pickled")
            obj = pickle.loads(item[()].tobytes())
            arr = np.asarray(obj)
            out[key] = np.concatenate([arr[a:b] for a, b in segments], axis=0)
    return out


def _tianshou_segments(f: h5py.File, layout: str) -> tuple[Segments, list[int]]:
    """Chronological row ranges of a Tianshou save_hdf5 file, and the rows that end a
    sub-buffer (whose episode must end there even if it was unfinished)."""
    root = f.attrs
    maxsize = int(root.get("maxsize", 0))
    if layout == "tianshou":
        size = int(root.get("_size", 0))
        ins = int(root.get("_insertion_idx", size % max(maxsize, 1)))
        if size < maxsize or ins == 0:
            return ([(0, size)] if size else []), []
        return [(ins, maxsize), (0, ins)], []
    # VectorReplayBuffer / ReplayBufferManager
    offsets = np.asarray(f["_offset"][()]) if "_offset" in f else None
    lengths = np.asarray(f["_lengths"][()]) if "_lengths" in f else None
    last_index = np.asarray(f["last_index"][()]) if "last_index" in f else None
    if offsets is None or lengths is None or last_index is None:
        raise DatasetFormatError(
            f"{f.filename}: VectorReplayBuffer file lacks '_offset', '_lengths' or 'last_index'"
        )
    edges = [*offsets.tolist(), maxsize]
    segments: Segments = []
    cut_rows: list[int] = []
    pos = 0
    for i, off in enumerate(offsets.tolist()):
        sub_size = edges[i + 1] - off
        length = int(lengths[i])
        if length == 0:
            continue
        if length < sub_size:
            segs = [(off, off + length)]
        else:
            ins = (int(last_index[i]) - off + 1) % sub_size
            segs = (
                [(off + ins, off + sub_size), (off, off + ins)] if ins else [(off, off + sub_size)]
            )
        segments += [s for s in segs if s[1] > s[0]]
        pos += length
        cut_rows.append(pos - 1)
    return segments, cut_rows[:-1]


def load_buffer(
    path: str | os.PathLike[str],
    *,
    allow_pickle: bool = False,
    include_info: bool = True,
    stack_num: int | None = None,
    sample_avail: bool | None = None,
    progress: bool | None = None,
) -> ReplayBuffer:
    """Load an HDF5 buffer file into a Tianshou ``ReplayBuffer``.

    :param path: a tianshou-offline file, a Tianshou ``save_hdf5`` file (ReplayBuffer or
        VectorReplayBuffer) or a D4RL-layout file.
    :param allow_pickle: unpickle pickled data columns of Tianshou files (e.g. ``info``
        entries holding Python objects). Off by default: unpickling runs arbitrary code.
    :param include_info: read the ``info`` columns (skip them to avoid pickled infos).
    :param stack_num: override the file's frame-stacking ``stack_num``.
    :param sample_avail: Tianshou's ``sample_avail`` (sample only indices with a full stack).
    :param progress: show a progress bar (default: when more than 1 GiB is read).
    :returns: a ``ReplayBuffer`` with ``len(buf) == maxsize == N`` transitions in
        chronological order and correct episode boundaries.
    :raises SourceNotFoundError: no such file.
    :raises DatasetFormatError: not HDF5, truncated, unknown layout, inconsistent columns.
    :raises SchemaVersionError: unsupported format version.
    :raises UnsafeDataError: pickled data columns without ``allow_pickle=True``.
    """
    p = Path(path)
    with open_h5(p) as f:
        try:
            layout = detect_layout(f)
            if layout == "d4rl":
                from tianshou_offline.data.d4rl_layout import d4rl_transitions

                columns = d4rl_transitions(f)
                return buffer_from_columns(
                    columns, stack_num=stack_num or 1, sample_avail=bool(sample_avail)
                )
            return _load_meta_layout(
                f,
                layout,
                allow_pickle=allow_pickle,
                include_info=include_info,
                stack_num=stack_num,
                sample_avail=sample_avail,
                progress=progress,
            )
        except (KeyError, ValueError, TypeError) as e:
            if isinstance(e, DatasetFormatError):
                raise
            raise DatasetFormatError(f"{p}: malformed buffer file: {e}") from e
        except OSError as e:
            raise DatasetFormatError(f"{p}: cannot read data (corrupt or truncated?): {e}") from e


def _load_meta_layout(
    f: h5py.File,
    layout: str,
    *,
    allow_pickle: bool,
    include_info: bool,
    stack_num: int | None,
    sample_avail: bool | None,
    progress: bool | None,
) -> ReplayBuffer:
    fname = f.filename
    meta = f[META_GROUP]
    if not isinstance(meta, h5py.Group):
        raise DatasetFormatError(f"{fname}: '{META_GROUP}' is not a group")
    missing = [k for k in ("obs", "act", "rew") if k not in meta]
    if missing:
        raise DatasetFormatError(
            f"{fname}: '{META_GROUP}' is missing {', '.join(missing)}; expected obs, act, rew, "
            "terminated, truncated"
        )
    unsafe = _unsafe_fields(meta, f"{META_GROUP}/")
    if not include_info:
        unsafe = [u for u in unsafe if not u.startswith(f"{META_GROUP}/info")]
    if unsafe and (layout == "tianshou_offline" or not allow_pickle):
        hint = (
            "the tianshou-offline format never stores pickles (file tampered with?)"
            if layout == "tianshou_offline"
            else "pass allow_pickle=True (CLI: --allow-pickle) only if you trust this file"
            + (
                ", or include_info=False to skip the info columns"
                if all(u.startswith(f"{META_GROUP}/info") for u in unsafe)
                else ""
            )
        )
        raise UnsafeDataError(f"{fname}: refusing to unpickle {', '.join(unsafe)}; {hint}")

    root = f.attrs
    file_stack = int(root.get("stack_num", 1))
    save_only_last = bool(root.get("_save_only_last_obs", False))
    file_sample_avail = bool(root.get("_sample_avail", False))
    cut_rows: list[int] = []
    if layout == "tianshou_offline":
        check_version(f)
        n, _ = committed_counts(f)
        segments: Segments = [(0, n)] if n else []
    else:
        segments, cut_rows = _tianshou_segments(f, layout)
        n = sum(b - a for a, b in segments)
    stored = max((b for _, b in segments), default=0)
    for name, ds in iter_datasets(meta):
        if not include_info and name.startswith("info"):
            continue
        tag = ds.attrs.get(DATA_TYPE_ATTR, "ndarray")
        tag = tag.decode() if isinstance(tag, bytes) else str(tag)
        if tag in SAFE_DATA_TYPES and (ds.ndim == 0 or ds.shape[0] < stored):
            raise DatasetFormatError(
                f"{fname}: column '{META_GROUP}/{name}' has {ds.shape[0] if ds.ndim else 0} rows; "
                f"expected at least {stored} (mismatched column lengths)"
            )
    total_bytes = sum(
        ds.dtype.itemsize * int(np.prod(ds.shape[1:], dtype=np.int64)) * n
        for _, ds in iter_datasets(meta)
    )
    show = progress if progress is not None else total_bytes >= _PROGRESS_BYTES
    with progress_bar(
        total=total_bytes,
        unit="B",
        unit_scale=True,
        desc=f"loading {Path(fname).name}",
        enabled=show,
    ) as bar:
        columns = _read_group(
            meta, segments, allow_pickle=allow_pickle, include_info=include_info, bar=bar
        )
    for key in ("terminated", "truncated"):
        if key not in columns:
            if key == "terminated" and "done" in columns:
                columns[key] = np.asarray(columns["done"], dtype=bool)
            else:
                columns[key] = np.zeros(n, dtype=bool)
    done = np.asarray(columns.get("done", columns["terminated"] | columns["truncated"]), dtype=bool)
    done = done.copy() if not done.flags.writeable else done
    for row in cut_rows:
        done[row] = True
    if n:
        done[n - 1] = True  # a trailing unfinished episode is cut there, as in save_buffer
    columns["done"] = done
    buf = buffer_from_columns(
        columns,
        stack_num=stack_num or file_stack,
        save_only_last_obs=save_only_last,
        sample_avail=file_sample_avail if sample_avail is None else sample_avail,
    )
    if layout == "tianshou_offline" and save_only_last:
        from tianshou_offline.data.framestack import PATCH_GROUP, wrap_with_patches

        if PATCH_GROUP in f:
            # exact stacks where Tianshou's rebuild differs from the source (docs/FORMAT.md)
            return wrap_with_patches(f, buf)
    return buf


# --------------------------------------------------------------------------------------
# saving
# --------------------------------------------------------------------------------------


def _chronological_indices(buffer: ReplayBuffer) -> tuple[np.ndarray, list[int]]:
    """Row indices of ``buffer._meta`` in chronological order, and the positions (in that
    order) that end a sub-buffer of a VectorReplayBuffer."""
    subs = getattr(buffer, "buffers", None)
    if subs is None:
        size, ins, maxsize = len(buffer), buffer._insertion_idx, buffer.maxsize
        if size < maxsize or ins == 0:
            return np.arange(size), []
        return np.concatenate([np.arange(ins, maxsize), np.arange(0, ins)]), []
    parts: list[np.ndarray] = []
    cuts: list[int] = []
    pos = 0
    offsets = np.asarray(buffer._offset)
    for off, sub in zip(offsets.tolist(), subs, strict=True):
        idx, _ = _chronological_indices(sub)
        if len(idx) == 0:
            continue
        parts.append(idx + off)
        pos += len(idx)
        cuts.append(pos - 1)
    if not parts:
        return np.arange(0), []
    return np.concatenate(parts), cuts[:-1]


def _batch_to_columns(batch: Batch) -> dict[str, Any]:
    from tianshou.data import Batch

    out: dict[str, Any] = {}
    for key in batch.get_keys():
        value = batch[key]
        if isinstance(value, Batch):
            if len(value.get_keys()) == 0:
                continue
            out[key] = _batch_to_columns(value)
        else:
            out[key] = np.asarray(value)
    return out


def save_buffer(
    buffer: ReplayBuffer,
    path: str | os.PathLike[str],
    *,
    observation_space: gym.Space[Any] | None = None,
    action_space: gym.Space[Any] | None = None,
    env_id: str | None = None,
    provenance: Provenance | None = None,
    compression: Compression = None,
    compression_opts: int | None = None,
    include_info: bool = True,
    overwrite: bool = False,
) -> Path:
    """Save any Tianshou ``ReplayBuffer`` (incl. ``VectorReplayBuffer``) to the format.

    Transitions are written in chronological order (circular buffers are unrolled, vector
    sub-buffers concatenated, each sub-buffer's unfinished last episode ended as cut).
    Frame-stacking settings (``stack_num``, ``save_only_last_obs``, ``ignore_obs_next``)
    are kept. The file is written atomically.

    :raises OutputExistsError: ``path`` exists and ``overwrite`` is False.
    :raises DataValidationError: the buffer is empty or holds Python objects.
    """
    order, cuts = _chronological_indices(buffer)
    store_obs_next = bool(getattr(buffer, "_save_obs_next", True)) and "obs_next" in (
        buffer._meta.get_keys()
    )
    with BufferWriter(
        path,
        observation_space=observation_space,
        action_space=action_space,
        env_id=env_id,
        provenance=provenance or Provenance(source="buffer", converter="save_buffer"),
        compression=compression,
        compression_opts=compression_opts,
        store_obs_next=store_obs_next,
        stack_num=buffer.stack_num,
        save_only_last_obs=bool(getattr(buffer, "_save_only_last_obs", False)),
        overwrite=overwrite,
    ) as writer:
        if len(order) == 0:
            return writer.close()  # raises: nothing to save
        meta = buffer._meta
        step = 1 << 16
        for s in range(0, len(order), step):
            idx = order[s : s + step]
            cols = _batch_to_columns(cast("Batch", meta[idx]))
            done = np.asarray(cols.get("done", cols["terminated"] | cols["truncated"]), bool)
            done = done.copy()
            for c in cuts:
                if s <= c < s + len(idx):
                    done[c - s] = True
            writer.add_transitions(
                obs=cols["obs"],
                act=cols["act"],
                rew=cols["rew"],
                terminated=cols["terminated"],
                truncated=cols["truncated"],
                obs_next=cols.get("obs_next") if store_obs_next else None,
                info=cols.get("info") if include_info else None,
                done=done,
            )
    return Path(path)
