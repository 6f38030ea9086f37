"""Compact frame-stacked buffers: one frame per step plus exact "stack patches".

A compact file stores, in ``/_meta/obs``, one frame ``(H, W)`` per transition (the newest
frame of its observation) and is written with Tianshou's ``stack_num=S``,
``save_only_last_obs=True`` and ``ignore_obs_next=True`` settings. Tianshou rebuilds

- ``obs[i]      = [frame[p^(S-1)(i)], ..., frame[p(i)], frame[i]]`` where ``p`` is
  ``ReplayBuffer.prev`` (stops at the first row of an episode, repeating its frame), and
- ``obs_next[i] = obs[next(i)]`` where ``next(i) = i`` on the last row of an episode.

Wherever that rebuild differs from the source data (episode starts whose source stacks hold
padding frames, the true final ``obs_next`` of an episode, a break in the sequence of
records), the exact stack is stored once in the side table ``/tianshou_offline/stack_patches``::

    row    (K,)            int64   transition row in this file
    key    (K,)            uint8   0 = obs, 1 = obs_next
    stack  (K, S, H, W)    dtype of obs   the exact stacked observation

:class:`FrameStackReplayBuffer` (a Tianshou ``ReplayBuffer``) applies the patches on
``buffer[i]``/``buffer.get(i, "obs")``, so sampled ``obs``/``obs_next`` equal the source.
:func:`load_framestack_files` opens one or several such files as one buffer, joining an
episode that continues from one file into the next when the data proves it does.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tianshou.data import Batch, ReplayBuffer

from tianshou_offline.data.atomic import h5_output, in_child_process, temp_path
from tianshou_offline.data.columns import buffer_from_columns, nest_columns, verify_buffer
from tianshou_offline.data.format import (
    DATA_TYPE_ATTR,
    EXT_GROUP,
    MAX_STACK_NUM,
    META_GROUP,
    WRITE_LIBVER,
    check_episode_ends,
    check_version,
    detect_layout,
    episode_bounds,
    group_at,
    open_h5,
    shard_columns,
)
from tianshou_offline.data.reading import (
    attr_bool,
    attr_int,
    check_extent,
    dataset,
    read_index,
    rows,
    shape_of,
)
from tianshou_offline.errors import DatasetFormatError, StackNumMismatchError
from tianshou_offline.progress import progress as progress_bar

log = logging.getLogger(__name__)

PATCH_GROUP = f"{EXT_GROUP}/stack_patches"
PATCH_FORMAT = "tianshou-offline-stack-patches"
PATCH_VERSION = 1
KEY_OBS = 0
KEY_OBS_NEXT = 1


# --------------------------------------------------------------------------------------
# writing: a spool on disk, attached to a finished buffer file
# --------------------------------------------------------------------------------------


class PatchSpool:
    """Collects stack patches on disk while a file is converted (memory stays bounded).

    :param output: the file being converted: the spool is a temporary beside it
        (:func:`~tianshou_offline.data.atomic.temp_path`, tag ``patches``), which a later run
        for the same output removes if this process is killed.
    :param stack_shape: ``(S, H, W)`` of one stack.
    :param dtype: frame dtype (uint8 for Atari).
    """

    def __init__(self, output: Path, stack_shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        self.stack_shape = tuple(stack_shape)
        self.dtype = np.dtype(dtype)
        self.path = temp_path(output, "patches")
        self._fh = open(self.path, "xb")  # closed by close() / discard()
        self.rows: list[int] = []
        self.keys: list[int] = []

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, row: int, key: int, stack: np.ndarray) -> None:
        """Append the exact stack of ``key`` (0 obs, 1 obs_next) at transition ``row``."""
        if stack.shape != self.stack_shape or stack.dtype != self.dtype:
            raise DatasetFormatError(
                f"stack patch at row {row} has shape {stack.shape} {stack.dtype}; expected "
                f"{self.stack_shape} {self.dtype}"
            )
        self._fh.write(np.ascontiguousarray(stack).tobytes())
        self.rows.append(int(row))
        self.keys.append(int(key))

    def count(self, key: int) -> int:
        return sum(1 for k in self.keys if k == key)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def discard(self) -> None:
        self.close()
        if self.path.exists():
            self.path.unlink()

    def attach(
        self,
        h5_path: Path,
        *,
        compression: str | None,
        attrs: Mapping[str, str | int] | None = None,
    ) -> None:
        """Write the side table (and ``attrs`` on ``/tianshou_offline``) into ``h5_path``.

        ``h5_path`` is a finished buffer file not yet renamed into place (the caller renames).
        """
        self.close()
        # in a child process that ends without closing the file after a failed write: libhdf5
        # crashed closing the file opened for appending when a write there had failed (a full
        # disk, an I/O error)
        in_child_process(lambda: self._write_table(h5_path, compression, attrs))
        self.discard()

    def _write_table(
        self, h5_path: Path, compression: str | None, attrs: Mapping[str, str | int] | None
    ) -> None:
        k = len(self.rows)
        stack_bytes = int(np.prod(self.stack_shape)) * self.dtype.itemsize
        with h5_output(h5_path, "a", close_on_error=False, libver=WRITE_LIBVER) as f:
            g = f.require_group(PATCH_GROUP)
            g.attrs["format"] = PATCH_FORMAT
            g.attrs["version"] = np.int64(PATCH_VERSION)
            g.attrs["stack_num"] = np.int64(self.stack_shape[0])
            g.attrs["keys"] = "0=obs,1=obs_next"
            g.create_dataset("row", data=np.asarray(self.rows, dtype=np.int64))
            g.create_dataset("key", data=np.asarray(self.keys, dtype=np.uint8))
            chunk_rows = max(1, min(k, (1 << 20) // max(stack_bytes, 1)))
            kw: dict[str, Any] = {}
            if compression is not None and k:
                kw["compression"] = compression
            ds = g.create_dataset(
                "stack",
                shape=(k, *self.stack_shape),
                dtype=self.dtype,
                chunks=(chunk_rows, *self.stack_shape) if k else None,
                **kw,
            )
            if k:
                mm = np.memmap(self.path, dtype=self.dtype, mode="r", shape=(k, *self.stack_shape))
                step = max(1, (64 << 20) // stack_bytes)
                for s in range(0, k, step):
                    ds[s : s + step] = mm[s : s + step]
                del mm
            for name in ("row", "key", "stack"):
                # Tianshou's load_hdf5 requires the tag on every dataset of the file
                g[name].attrs[DATA_TYPE_ATTR] = "ndarray"
            if attrs:
                ea = f[EXT_GROUP].attrs
                for key, value in attrs.items():
                    ea[key] = value if isinstance(value, str) else np.int64(value)


# --------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------


class FrameStackReplayBuffer(ReplayBuffer):
    """A Tianshou ``ReplayBuffer`` holding one frame per step that rebuilds exact stacks.

    ``_meta.obs`` is ``(N, H, W)``; ``buffer[i].obs`` / ``.obs_next`` are ``(S, H, W)``
    (``(B, S, H, W)`` for an index array), built by Tianshou's frame stacking and then
    overwritten by the stored exact stacks where the file has a patch for that row.
    Build it with :meth:`from_buffer` or :func:`load_framestack_files`.

    Saving it with Tianshou's ``save_hdf5`` drops the patches; use the converters' files.
    """

    _obs_patch_index: np.ndarray | None = None
    _obs_patch_stacks: np.ndarray | None = None
    _obs_next_patch_index: np.ndarray | None = None
    _obs_next_patch_stacks: np.ndarray | None = None

    @classmethod
    def from_buffer(
        cls,
        buffer: ReplayBuffer,
        *,
        obs_patches: tuple[np.ndarray, np.ndarray] | None = None,
        obs_next_patches: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> FrameStackReplayBuffer:
        """Wrap the data of a ``save_only_last_obs`` buffer (shared, not copied).

        :param obs_patches: ``(rows (K,) int, stacks (K, S, H, W))`` exact obs stacks.
        :param obs_next_patches: likewise for obs_next.
        """
        new = cls(
            buffer.maxsize,
            stack_num=buffer.stack_num,
            ignore_obs_next=True,
            save_only_last_obs=True,
            sample_avail=bool(getattr(buffer, "_sample_avail", False)),
        )
        if len(buffer):
            new.set_batch(buffer._meta)
        new._size = buffer._size
        new._insertion_idx = buffer._insertion_idx
        new.last_index = np.array(buffer.last_index)
        new.set_patches(obs_patches=obs_patches, obs_next_patches=obs_next_patches)
        return new

    def set_patches(
        self,
        *,
        obs_patches: tuple[np.ndarray, np.ndarray] | None,
        obs_next_patches: tuple[np.ndarray, np.ndarray] | None,
    ) -> None:
        """Replace the patch tables (rows index this buffer's storage)."""
        n = self.maxsize

        def build(
            patches: tuple[np.ndarray, np.ndarray] | None,
        ) -> tuple[np.ndarray | None, np.ndarray | None]:
            if patches is None or len(patches[0]) == 0:
                return None, None
            rows, stacks = patches
            rows = np.asarray(rows, dtype=np.int64)
            if rows.min() < 0 or rows.max() >= n:
                raise DatasetFormatError(
                    f"stack patch rows span {rows.min()}..{rows.max()}; expected 0..{n - 1}"
                )
            if len(np.unique(rows)) != len(rows):
                raise DatasetFormatError("stack patches name the same row twice")
            index = np.full(n, -1, dtype=np.int32 if len(rows) < 2**31 else np.int64)
            index[rows] = np.arange(len(rows))
            return index, np.asarray(stacks)

        self._obs_patch_index, self._obs_patch_stacks = build(obs_patches)
        self._obs_next_patch_index, self._obs_next_patch_stacks = build(obs_next_patches)

    @property
    def num_patches(self) -> tuple[int, int]:
        """(obs patches, obs_next patches)."""
        a = 0 if self._obs_patch_stacks is None else len(self._obs_patch_stacks)
        b = 0 if self._obs_next_patch_stacks is None else len(self._obs_next_patch_stacks)
        return a, b

    def patch_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows with an obs patch and rows with an obs_next patch (sorted)."""
        out = []
        for index in (self._obs_patch_index, self._obs_next_patch_index):
            out.append(np.empty(0, np.int64) if index is None else np.flatnonzero(index >= 0))
        return out[0], out[1]

    @staticmethod
    def _patch(value: Any, index: Any, table: np.ndarray | None, stacks: np.ndarray | None) -> Any:
        if table is None or stacks is None or not isinstance(value, np.ndarray):
            return value
        idx = np.asarray(index)
        p = table[idx]
        if idx.ndim == 0:
            return stacks[int(p)].copy() if p >= 0 else value
        mask = p >= 0
        if mask.any():
            if not value.flags.writeable:
                value = value.copy()
            value[mask] = stacks[p[mask]]
        return value

    def get(
        self,
        index: int | list[int] | np.ndarray,
        key: str,
        default_value: Any = None,
        stack_num: int | None = None,
    ) -> Batch | np.ndarray:
        """Tianshou's ``get`` with exact obs stacks where the data has a patch."""
        value = super().get(index, key, default_value, stack_num)
        if key == "obs" and (stack_num is None or stack_num == self.stack_num):
            value = self._patch(value, index, self._obs_patch_index, self._obs_patch_stacks)
        return value

    def __getitem__(self, index: Any) -> Any:
        """Tianshou's ``buffer[index]`` with exact ``obs`` and ``obs_next`` stacks."""
        batch = super().__getitem__(index)
        if self._obs_next_patch_index is None:
            return batch
        if isinstance(index, slice):
            indices = (
                self.sample_indices(0)
                if index == slice(None)
                else self._indices[: len(self)][index]
            )
        else:
            indices = index
        batch.obs_next = self._patch(
            batch.obs_next, indices, self._obs_next_patch_index, self._obs_next_patch_stacks
        )
        return batch


def read_patches(
    f: h5py.File, n: int, frame: tuple[tuple[int, ...], np.dtype[Any]] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(row, key, stack)`` of a file's side table (empty arrays when it has none), checked:
    ``row``/``key``/``stack`` have one entry per patch, rows are within the ``n`` transitions,
    keys are 0 (obs) or 1 (obs_next), no row is patched twice for the same key, and stacks
    are ``(K, S, *frame_shape)`` with ``S`` the file's ``stack_num``.

    :param frame: ``(frame shape, dtype)`` of the file's ``obs`` column, which every stack
        must match.
    """
    if PATCH_GROUP not in f:
        return np.empty(0, np.int64), np.empty(0, np.uint8), np.empty((0,))
    fname = f.filename
    g = group_at(f, PATCH_GROUP)
    version = attr_int(g, "version", 0)
    if version < 1 or version > PATCH_VERSION:
        raise DatasetFormatError(
            f"{fname}: stack patches version {version}; this package reads 1..{PATCH_VERSION}"
        )
    k = rows(dataset(g, "row"))
    for name in ("key", "stack"):
        if rows(dataset(g, name)) != k:
            raise DatasetFormatError(
                f"{fname}: stack_patches row/key/stack lengths differ ({k} rows, "
                f"{rows(g[name])} {name}s)"
            )
    rows_ = read_index(g["row"], k)
    keys = read_index(g["key"], k)
    stack_ds = dataset(g, "stack", kinds="biuf")
    stack_num = attr_int(f, "stack_num", 1, lo=1, hi=MAX_STACK_NUM)
    if frame is not None:
        want = (k, stack_num, *frame[0])
        if shape_of(stack_ds) != want or stack_ds.dtype != frame[1]:
            raise DatasetFormatError(
                f"{fname}: stack_patches/stack has shape {stack_ds.shape} {stack_ds.dtype}; "
                f"expected {want} {frame[1]} (stack_num stacks of the obs frames)"
            )
    check_extent(stack_ds, k)
    if k and (rows_.min() < 0 or rows_.max() >= n):
        raise DatasetFormatError(
            f"{fname}: stack_patches rows span {rows_.min()}..{rows_.max()}; the file has {n} "
            "transitions"
        )
    if k and not np.isin(keys, (KEY_OBS, KEY_OBS_NEXT)).all():
        raise DatasetFormatError(
            f"{fname}: stack_patches/key holds {sorted(set(keys.tolist()) - {0, 1})[:5]}; "
            "expected 0 (obs) or 1 (obs_next)"
        )
    if k and len(np.unique(rows_ * 2 + keys)) != k:
        raise DatasetFormatError(f"{fname}: stack_patches name the same row twice")
    stacks = np.asarray(stack_ds[()]) if k else np.empty((0, stack_num, *shape_of(stack_ds)[2:]))
    return rows_, keys.astype(np.uint8), stacks


def _frame(f: h5py.File) -> tuple[tuple[int, ...], np.dtype[Any]]:
    obs = dataset(group_at(f, META_GROUP), "obs")
    return shape_of(obs)[1:], obs.dtype


def check_patch_stack_num(fname: str, stored: int, requested: int, patches: int) -> None:
    """Refuse a ``stack_num`` override on a file that stores stack patches: each patch is an
    exact stack of ``stored`` frames, which another stack size cannot use.

    :raises StackNumMismatchError: ``requested != stored`` and ``patches > 0``.
    """
    if patches and requested != stored:
        raise StackNumMismatchError(
            f"{fname}: stores frame stacks of stack_num={stored} (exact stacks for {patches} "
            f"rows), stack_num={requested} was requested; load it with stack_num={stored} "
            "(or None: the file's)"
        )


def wrap_with_patches(f: h5py.File, buffer: ReplayBuffer) -> FrameStackReplayBuffer:
    """Wrap a buffer loaded from ``f`` with the file's stack patches (used by ``load_buffer``).

    :raises StackNumMismatchError: the buffer's ``stack_num`` (an override) is not the file's
        and the file has patches.
    """
    rows, keys, stacks = read_patches(f, len(buffer), _frame(f))
    stored = attr_int(f, "stack_num", 1, lo=1, hi=MAX_STACK_NUM)
    check_patch_stack_num(f.filename, stored, int(buffer.stack_num), len(rows))
    obs_sel = keys == KEY_OBS
    next_sel = keys == KEY_OBS_NEXT
    buf = FrameStackReplayBuffer.from_buffer(
        buffer,
        obs_patches=(rows[obs_sel], stacks[obs_sel]) if obs_sel.any() else None,
        obs_next_patches=(rows[next_sel], stacks[next_sel]) if next_sel.any() else None,
    )
    verify_buffer(buf, f.filename)
    return buf


def load_framestack_files(
    paths: Sequence[str | os.PathLike[str]],
    *,
    join_episodes: bool = True,
    include_info: bool = True,
    progress: bool | None = None,
) -> FrameStackReplayBuffer:
    """Open compact frame-stacked files (one or many) as one exact :class:`FrameStackReplayBuffer`.

    Files are concatenated in the given order. With ``join_episodes``, when file ``A`` ends
    in an episode cut by the end of the file (neither terminated nor truncated) and the next
    file ``B`` continues it (same ``info/episode_id`` when present, and ``A``'s last
    ``obs_next`` equals ``B``'s first ``obs``), the episode boundary between them is removed
    so n-step returns run across the files; stacks stay exact (the affected rows of ``B`` get
    patches holding their verified stacks).

    :returns: a buffer with ``len == sum of the files' transitions``; ``obs`` frames are read
        into memory (``N * H * W`` bytes for uint8 frames).
    :raises DatasetFormatError: a file is not a compact frame-stacked buffer, or the files
        disagree on frame shape, dtype, stack size or columns.
    """
    if not paths:
        raise ValueError("load_framestack_files(): no files given")
    infos: list[dict[str, Any]] = []
    schema: dict[str, tuple[tuple[int, ...], np.dtype[Any]]] | None = None
    stack_num: int | None = None
    for p in paths:
        with open_h5(p) as f:
            if detect_layout(f) != "tianshou_offline":
                raise DatasetFormatError(f"{p}: not a tianshou-offline buffer file")
            check_version(f)
            s = attr_int(f, "stack_num", 1, lo=1, hi=MAX_STACK_NUM)
            if (
                not attr_bool(f, "_save_only_last_obs", False)
                or META_GROUP not in f
                or "obs_next" in group_at(f, META_GROUP)
            ):
                raise DatasetFormatError(
                    f"{p}: not a compact frame-stacked file (expected save_only_last_obs=True "
                    "and no stored obs_next); open it with load_buffer()"
                )
            starts, lengths = episode_bounds(f)
            n = int(starts[-1] + lengths[-1]) if len(starts) else 0
            cols, _ = shard_columns(
                p, group_at(f, META_GROUP), n, include_info=include_info,
                expected="a compact frame-stacked file",
            )  # fmt: skip
            if schema is None:
                schema, stack_num = cols, s
            elif cols != schema or s != stack_num:
                raise DatasetFormatError(
                    f"{p}: columns or stack_num differ from {paths[0]} "
                    f"({sorted(cols)} stack_num={s} vs {sorted(schema)} stack_num={stack_num})"
                )
            infos.append({"path": Path(p), "n": n, "starts": starts, "lengths": lengths})
    assert schema is not None and stack_num is not None
    total = sum(i["n"] for i in infos)
    flat: dict[str, np.ndarray] = {
        name: np.empty((total, *shape), dtype=dtype) for name, (shape, dtype) in schema.items()
    }
    obs_rows: list[np.ndarray] = []
    obs_stacks: list[np.ndarray] = []
    next_rows: list[np.ndarray] = []
    next_stacks: list[np.ndarray] = []
    row_bytes = sum(
        int(np.prod(shape, dtype=np.int64)) * dtype.itemsize for shape, dtype in schema.values()
    )
    show = progress if progress is not None else total * row_bytes >= (1 << 30)
    offset = 0
    with progress_bar(
        total=total * row_bytes, unit="B", unit_scale=True, desc="loading", enabled=show
    ) as bar:
        for info in infos:
            n = info["n"]
            info["start"] = offset
            with open_h5(info["path"]) as f:
                meta = f[META_GROUP]
                for name in flat:
                    ds = meta[name]
                    if n:
                        ds.read_direct(flat[name], np.s_[0:n], np.s_[offset : offset + n])
                bar.update(n * row_bytes)
                rows, keys, stacks = read_patches(f, n, (schema["obs"][0], schema["obs"][1]))
            _check_file_episodes(flat, info, offset)
            _split_patches(
                rows, keys, stacks, offset, (obs_rows, obs_stacks), (next_rows, next_stacks)
            )
            offset += n
    columns = nest_columns(flat)
    for flag in ("terminated", "truncated"):  # as load_buffer: derived when not stored
        if flag not in columns:
            done = columns.get("done")
            columns[flag] = (
                np.asarray(done, dtype=bool)
                if flag == "terminated" and isinstance(done, np.ndarray)
                else np.zeros(total, dtype=bool)
            )
    frame_shape = schema["obs"][0]
    frame_dtype = schema["obs"][1]
    empty_stacks = np.empty((0, stack_num, *frame_shape), dtype=frame_dtype)

    def cat(rows: list[np.ndarray], stacks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if not rows:
            return np.empty(0, np.int64), empty_stacks
        return np.concatenate(rows), np.concatenate(stacks)

    source = ", ".join(str(i["path"]) for i in infos)
    plain = buffer_from_columns(
        columns, stack_num=stack_num, save_only_last_obs=True, source=source
    )
    buf = FrameStackReplayBuffer.from_buffer(
        plain, obs_patches=cat(obs_rows, obs_stacks), obs_next_patches=cat(next_rows, next_stacks)
    )
    if join_episodes and len(infos) > 1:
        _join_files(buf, infos, columns, stack_num)
    verify_buffer(buf, source)
    return buf


def _split_patches(
    rows: np.ndarray,
    keys: np.ndarray,
    stacks: np.ndarray,
    offset: int,
    obs: tuple[list[np.ndarray], list[np.ndarray]],
    obs_next: tuple[list[np.ndarray], list[np.ndarray]],
) -> None:
    """Append one file's patches (:func:`read_patches`) to ``obs`` or ``obs_next`` (a row
    list and a stack list) by their key, rows shifted by ``offset`` (the file's first row in
    the joint buffer)."""
    for key, (r_out, s_out) in ((KEY_OBS, obs), (KEY_OBS_NEXT, obs_next)):
        sel = keys == key
        if sel.any():
            r_out.append(rows[sel] + offset)
            s_out.append(stacks[sel])


def _check_file_episodes(flat: Mapping[str, np.ndarray], info: dict[str, Any], offset: int) -> None:
    """One file's rows of the joint columns end episodes where its episode table says."""
    n = info["n"]
    rows = slice(offset, offset + n)
    done = np.zeros(n, dtype=bool)
    for key in ("done", "terminated", "truncated"):
        if key in flat:
            done |= np.asarray(flat[key][rows], dtype=bool)
    check_episode_ends(str(info["path"]), done, info["starts"], info["lengths"])


def _join_files(
    buf: FrameStackReplayBuffer,
    infos: list[dict[str, Any]],
    columns: Mapping[str, Any],
    stack_num: int,
) -> None:
    term = np.asarray(columns["terminated"], bool)
    trunc = np.asarray(columns["truncated"], bool)
    ep_id = (
        columns.get("info", {}).get("episode_id") if isinstance(columns.get("info"), dict) else None
    )
    if ep_id is not None and np.ndim(ep_id) != 1:
        ep_id = None  # not one id per row: not evidence either way
    joins: list[int] = []
    extra_rows: list[int] = []
    for a, b in itertools.pairwise(infos):
        if a["n"] == 0 or b["n"] == 0:
            continue
        last = a["start"] + a["n"] - 1
        first = b["start"]
        if term[last] or trunc[last]:
            continue
        if ep_id is not None and ep_id[last] != ep_id[first]:
            continue
        if not np.array_equal(buf[last].obs_next, buf.get(first, "obs")):
            log.info(
                "%s -> %s: the episode does not continue (obs differ); kept apart",
                a["path"].name,
                b["path"].name,
            )
            continue
        joins.append(last)
        # rows of B whose Tianshou stack would reach back into A once joined
        row = first
        for _ in range(stack_num - 1):
            extra_rows.append(row)
            if buf.done[row] or row >= first + b["n"] - 1:
                break
            row += 1
    if not joins:
        return
    obs_idx = buf._obs_patch_index
    todo = [r for r in extra_rows if obs_idx is None or obs_idx[r] < 0]
    new_stacks = np.asarray(buf.get(np.asarray(todo, dtype=np.int64), "obs")) if todo else None
    old_rows, _ = buf.patch_rows()
    old_stacks = buf._obs_patch_stacks
    old_order = old_rows
    obs_rows = old_order
    obs_stacks = (
        old_stacks[obs_idx[old_rows]]
        if old_stacks is not None and obs_idx is not None
        else np.empty((0, *buf.get(0, "obs").shape), dtype=buf.obs.dtype)
    )
    if new_stacks is not None:
        obs_rows = np.concatenate([obs_rows, np.asarray(todo, dtype=np.int64)])
        obs_stacks = np.concatenate([obs_stacks, new_stacks])
    next_idx = buf._obs_next_patch_index
    next_rows = np.flatnonzero(next_idx >= 0) if next_idx is not None else np.empty(0, np.int64)
    next_stacks = (
        buf._obs_next_patch_stacks[next_idx[next_rows]]
        if next_idx is not None and buf._obs_next_patch_stacks is not None
        else None
    )
    buf.set_patches(
        obs_patches=(obs_rows, obs_stacks),
        obs_next_patches=None if next_stacks is None else (next_rows, next_stacks),
    )
    done = buf.done
    for last in joins:
        done[last] = False
    log.info("joined %d episodes that continue across files", len(joins))
