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

from tianshou_offline.data.columns import buffer_from_columns, nest_columns
from tianshou_offline.data.format import (
    DATA_TYPE_ATTR,
    MAX_STACK_NUM,
    META_GROUP,
    SAFE_DATA_TYPES,
    Provenance,
    check_episode_ends,
    check_version,
    detect_layout,
    episode_bounds,
    group_at,
    iter_datasets,
    open_h5,
)
from tianshou_offline.data.reading import attr_bool, attr_int, attr_str, check_extent, row_bytes
from tianshou_offline.data.tianshou_layout import Segments, tianshou_segments
from tianshou_offline.data.writer import BufferWriter, Compression
from tianshou_offline.errors import DatasetFormatError, UnsafeDataError
from tianshou_offline.progress import Progress
from tianshou_offline.progress import progress as progress_bar

if TYPE_CHECKING:
    import gymnasium as gym
    from tianshou.data import Batch, ReplayBuffer

    from tianshou_offline.data.ondisk import Memory

log = logging.getLogger(__name__)

_PROGRESS_BYTES = 1 << 30

FLAG_KEYS = ("terminated", "truncated", "done")
NUMBER_KINDS = "biuf"
"""numpy dtype kinds of flags and rewards: bool, int, uint, float."""
COLUMN_KINDS = "biufcS"
"""numpy dtype kinds a data column may have: numbers, bools and fixed-size bytes (variable
length strings and compound types are not part of the format)."""


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


def _tag(ds: h5py.Dataset) -> str:
    """Tianshou's ``__data_type__`` of a dataset (``ndarray`` when absent)."""
    return attr_str(ds, DATA_TYPE_ATTR, "ndarray")


def _unsafe_fields(group: h5py.Group, prefix: str) -> list[str]:
    return [
        f"{prefix}{name} ({_tag(ds)[:40]})"
        for name, ds in iter_datasets(group)
        if DATA_TYPE_ATTR in ds.attrs and _tag(ds) not in SAFE_DATA_TYPES
    ]


def _check_column(fname: str, name: str, ds: h5py.Dataset, stored: int) -> None:
    """A data column that is read: an array of numbers (flags and rewards: 1-D) with at
    least ``stored`` rows that the file really holds."""
    where = f"'{META_GROUP}/{name}'"
    if ds.shape is None or ds.ndim == 0:
        raise DatasetFormatError(
            f"{fname}: column {where} is {'null' if ds.shape is None else 'a scalar'}; "
            f"expected an array with one row per transition ({stored} rows)"
        )
    flag_or_rew = name in (*FLAG_KEYS, "rew")
    kinds = NUMBER_KINDS if flag_or_rew else COLUMN_KINDS
    if ds.dtype.kind not in kinds or ds.dtype.names is not None:
        raise DatasetFormatError(
            f"{fname}: column {where} has dtype {ds.dtype}; expected "
            + ("numbers or bools" if flag_or_rew else "numbers, bools or fixed-size bytes")
        )
    if flag_or_rew and ds.ndim != 1:
        raise DatasetFormatError(
            f"{fname}: column {where} has shape {ds.shape}; expected ({stored},) (one value per "
            "transition)"
        )
    if ds.shape[0] < stored:
        raise DatasetFormatError(
            f"{fname}: column {where} has {ds.shape[0]} rows; expected at least {stored} "
            "(mismatched column lengths)"
        )
    check_extent(ds, stored)


UNPICKLING_ERRORS: tuple[type[Exception], ...] = (
    pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError,
    IndexError, KeyError, OverflowError, RecursionError,
)  # fmt: skip
"""What ``pickle.loads`` raises on bytes that are not a valid pickle (truncated, garbage, a
reference to a class that does not exist or does not accept the stored state)."""


def load_buffer(
    path: str | os.PathLike[str],
    *,
    allow_pickle: bool = False,
    include_info: bool = True,
    stack_num: int | None = None,
    sample_avail: bool | None = None,
    progress: bool | None = None,
    memory: Memory = "ram",
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
    :param memory: ``"ram"`` (default) reads every column into memory; ``"disk"`` returns a
        :class:`~tianshou_offline.data.ondisk.DiskReplayBuffer` whose ``obs``/``obs_next``
        stay in the file, memory-mapped (tianshou-offline files with contiguous, uncompressed
        columns: ``BufferWriter(contiguous=True)`` or ``tianshou-offline repack``); ``"auto"``
        chooses disk when the observations exceed half of the available memory (logged).
    :returns: a ``ReplayBuffer`` with ``len(buf) == maxsize == N`` transitions in
        chronological order and correct episode boundaries.
    :raises SourceNotFoundError: no such file.
    :raises DatasetFormatError: not HDF5, truncated, unknown layout, inconsistent columns
        (every count, index and shape in the file is checked before it is used; a file that
        loads is self-consistent).
    :raises SchemaVersionError: unsupported format version.
    :raises UnsafeDataError: pickled data columns without ``allow_pickle=True``.
    """
    p = Path(path)
    with open_h5(p) as f:  # the boundary: h5py's errors become DatasetFormatError
        layout = detect_layout(f)
        if memory != "ram":
            from tianshou_offline.data.ondisk import choose_memory, observation_bytes

            if layout != "tianshou_offline":
                if memory == "disk":
                    raise DatasetFormatError(
                        f"{p}: a {layout}-layout file; a disk-backed buffer (memory='disk') "
                        "reads the tianshou-offline format: convert it first (tianshou-offline "
                        "convert), or load it with memory='ram'"
                    )
            elif choose_memory(memory, observation_bytes([p]), str(p)) == "disk":
                memory = "disk"
    if memory == "disk":
        from tianshou_offline.data.ondisk import load_disk_files

        return load_disk_files(
            [p],
            include_info=include_info,
            join_episodes=False,
            stack_num=stack_num,
            sample_avail=sample_avail,
        )
    with open_h5(p) as f:
        layout = detect_layout(f)
        if layout == "d4rl":
            from tianshou_offline.data.d4rl_layout import d4rl_transitions

            columns = d4rl_transitions(f)
            return buffer_from_columns(
                columns,
                stack_num=stack_num or 1,
                sample_avail=bool(sample_avail),
                source=str(p),
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
    if META_GROUP not in f:
        raise DatasetFormatError(f"{fname}: '/{META_GROUP}' (the data columns) is missing")
    meta = group_at(f, META_GROUP)
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

    file_stack = attr_int(f, "stack_num", 1, lo=1, hi=MAX_STACK_NUM)
    save_only_last = attr_bool(f, "_save_only_last_obs", False)
    file_sample_avail = attr_bool(f, "_sample_avail", False)
    if stack_num is not None and not 1 <= stack_num <= MAX_STACK_NUM:
        raise DatasetFormatError(f"stack_num={stack_num}: expected 1..{MAX_STACK_NUM}")
    cut_rows: list[int] = []
    starts = lengths = np.zeros(0, np.int64)
    if layout == "tianshou_offline":
        check_version(f)
        starts, lengths = episode_bounds(f)
        n = int(starts[-1] + lengths[-1]) if len(starts) else 0
        segments: Segments = [(0, n)] if n else []
    else:
        segments, cut_rows = tianshou_segments(f, layout)
        n = sum(b - a for a, b in segments)
    stored = max((b for _, b in segments), default=0)
    flat: dict[str, Any] = {}
    pickled: dict[str, h5py.Dataset] = {}
    for name, ds in iter_datasets(meta):
        if not include_info and (name == "info" or name.startswith("info/")):
            continue
        if _tag(ds) in SAFE_DATA_TYPES:
            _check_column(fname, name, ds, stored)
            flat[name] = ds
        else:
            pickled[name] = ds
    for key in ("obs", "act", "rew"):
        if (
            key not in flat
            and not any(k.startswith(key + "/") for k in flat)
            and key not in pickled
        ):
            raise DatasetFormatError(
                f"{fname}: '{META_GROUP}/{key}' holds no data arrays; expected the {key} column"
            )
    total_bytes = sum(row_bytes(ds) * n for ds in flat.values())
    show = progress if progress is not None else total_bytes >= _PROGRESS_BYTES
    values: dict[str, Any] = {}
    with progress_bar(
        total=total_bytes,
        unit="B",
        unit_scale=True,
        desc=f"loading {Path(fname).name}",
        enabled=show,
    ) as bar:
        for name, ds in flat.items():
            values[name] = _read_segments(ds, segments, bar)
    for name, ds in pickled.items():  # allow_pickle=True: the caller trusts the file
        blob = ds[()].tobytes()
        try:
            obj = pickle.loads(blob)
        except UNPICKLING_ERRORS as e:  # the bytes are not a pickle (or name a missing class)
            raise DatasetFormatError(
                f"{fname}: column '{META_GROUP}/{name}' is marked pickled but does not unpickle "
                f"({type(e).__name__}: {str(e)[:200]}); expected a pickled array"
            ) from e
        arr = np.asarray(obj)
        if arr.ndim == 0 or arr.shape[0] < stored:
            raise DatasetFormatError(
                f"{fname}: pickled column '{META_GROUP}/{name}' has shape {arr.shape}; expected "
                f"at least {stored} rows"
            )
        values[name] = np.concatenate([arr[a:b] for a, b in segments], axis=0)
    columns = nest_columns(values)
    for key in ("terminated", "truncated"):
        if not isinstance(columns.get(key, np.zeros(0)), np.ndarray):
            raise DatasetFormatError(f"{fname}: '{META_GROUP}/{key}' is a group; expected flags")
        if key not in columns:
            if key == "terminated" and isinstance(columns.get("done"), np.ndarray):
                columns[key] = np.asarray(columns["done"], dtype=bool)
            else:
                columns[key] = np.zeros(n, dtype=bool)
    if "done" in columns and not isinstance(columns["done"], np.ndarray):
        raise DatasetFormatError(f"{fname}: '{META_GROUP}/done' is a group; expected flags")
    term = np.asarray(columns["terminated"], dtype=bool)
    trunc = np.asarray(columns["truncated"], dtype=bool)
    done = np.asarray(columns.get("done", term | trunc), dtype=bool) | term | trunc
    for row in cut_rows:
        done[row] = True
    if n:
        done[n - 1] = True  # a trailing unfinished episode is cut there, as in save_buffer
    if layout == "tianshou_offline":
        check_episode_ends(fname, done, starts, lengths)
    columns["done"] = done
    buf = buffer_from_columns(
        columns,
        stack_num=stack_num or file_stack,
        save_only_last_obs=save_only_last,
        sample_avail=file_sample_avail if sample_avail is None else sample_avail,
        source=fname,
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
            # a run of consecutive rows (a buffer that never wrapped, or a chunk on one side
            # of the wrap) is sliced: its columns are views of the buffer's arrays instead of
            # a fancy-indexed copy (of a 250 MB frame column, a 250 MB copy)
            rows: slice | np.ndarray = idx
            if idx[-1] - idx[0] == len(idx) - 1 and bool(np.all(np.diff(idx) == 1)):
                rows = slice(int(idx[0]), int(idx[-1]) + 1)
            cols = _batch_to_columns(cast("Batch", meta[rows]))
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
