"""Disk-backed buffers: datasets larger than RAM as Tianshou ``ReplayBuffer``s.

:class:`DiskReplayBuffer` is a :class:`~tianshou_offline.data.framestack.FrameStackReplayBuffer`
whose observation columns (``obs``, and ``obs_next`` where the files store one) stay in the
files: each file's column is memory-mapped read-only (``mmap`` of the bytes HDF5 stores for a
contiguous, unfiltered dataset) and the files' rows are numbered one after the other
(:class:`DiskColumn`). Everything else — ``act``, ``rew``, the flags, the stack-patch tables,
the (optional) ``info`` columns — is read into RAM, as the in-RAM loaders do, so that
``buffer[i]``, ``buffer.get(i, "obs")``, ``prev``/``next``, frame stacks, stack patches and
episode joins across files behave exactly as in a buffer from
:func:`~tianshou_offline.data.framestack.load_framestack_files` or
:func:`~tianshou_offline.data.buffer.load_buffer`. A sampled index is any row of any file:
sampling is uniform over all transitions of all files.

**Resident memory** (what is held in RAM per transition; the frames are in the page cache,
which the kernel evicts under pressure): ``act`` in its stored dtype (8 B for int64), ``rew``
(4 B float32), ``terminated``/``truncated``/``done`` (3 B), the two stack-patch index tables of
``FrameStackReplayBuffer`` (2 × 4 B), plus 8 B per ``info`` column kept (``include_info``):
**23 B per transition without info** (RL Unplugged: 4 info columns, +28 B) — 1.15 GB for
50M transitions — plus the patches' stacks themselves (``S·H·W`` bytes per patch, a few per
episode). Tianshou's ``_indices`` table (8 B per transition) is not kept. Continuous actions
are ``A × 4`` B (float32) and an unstacked file has no patch tables: **4·A + 7 B** per
transition (15 B for A = 2, 31 B for A = 6; ``tests/data/test_out_of_core_continuous.py`` measures
it with tracemalloc).

The algorithms' datasets see the columns through :meth:`DiskReplayBuffer.disk_columns` and
gather mini-batches from them instead of copying the dataset to device tables.

Layout: a column is mapped only where HDF5 stores it as one contiguous, unfiltered block
(:func:`~tianshou_offline.data.mapped.file_offset`); a chunked or compressed file raises
:class:`~tianshou_offline.errors.DatasetFormatError` naming ``tianshou-offline repack``
(:mod:`tianshou_offline.data.repack`), which rewrites it in that layout.
"""

from __future__ import annotations

import logging
import mmap
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
from tianshou.data import Batch, ReplayBuffer

from tianshou_offline.data.framestack import FrameStackReplayBuffer
from tianshou_offline.data.mapped import available_memory as available_memory
from tianshou_offline.data.mapped import file_offset, mappable_fd
from tianshou_offline.errors import DatasetFormatError

log = logging.getLogger(__name__)

Memory = Literal["ram", "disk", "auto"]
"""Where a loader keeps the observation columns: ``"ram"`` (read into memory), ``"disk"``
(memory-mapped, :class:`DiskReplayBuffer`) or ``"auto"`` (disk when they would take more than
half of the memory available now, see :func:`choose_memory`)."""

MEMORY_CHOICES: tuple[Memory, ...] = ("ram", "disk", "auto")

DISK_COLUMNS = ("obs", "obs_next")
"""The columns a disk-backed buffer leaves in the files."""

RESIDENT_BYTES_PER_TRANSITION = 23
"""RAM a :class:`DiskReplayBuffer` holds per transition without info columns (int64 actions;
see the module docstring)."""


def choose_memory(memory: Memory, nbytes: int, what: str = "the dataset") -> Literal["ram", "disk"]:
    """Resolve ``memory="auto"``: ``"disk"`` when ``nbytes`` (the observation columns) exceed
    half of :func:`available_memory`, else ``"ram"``; the choice is logged (INFO)."""
    if memory not in MEMORY_CHOICES:
        raise ValueError(f"memory={memory!r}: expected one of {', '.join(MEMORY_CHOICES)}")
    if memory != "auto":
        return memory
    avail = available_memory()
    choice: Literal["ram", "disk"] = "disk" if nbytes > avail // 2 else "ram"
    log.info(
        "memory=auto: %s holds %.2f GB of observations, %.2f GB of memory is available: %s",
        what,
        nbytes / 1e9,
        avail / 1e9,
        "keeping them on disk (memory-mapped)" if choice == "disk" else "loading them into RAM",
    )
    return choice


# --------------------------------------------------------------------------------------
# one column across files
# --------------------------------------------------------------------------------------


class _Map:
    """One file's column: a read-only mapping of its bytes and the rows as an array."""

    __slots__ = ("array", "mm", "offset", "path", "row_bytes")

    def __init__(
        self, path: Path, offset: int, rows: int, row_shape: tuple[int, ...], dtype: np.dtype[Any]
    ) -> None:
        self.path = path
        self.row_bytes = int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize
        nbytes = rows * self.row_bytes
        aligned = offset - offset % mmap.ALLOCATIONGRANULARITY
        self.offset = offset - aligned
        if nbytes == 0:
            self.mm: mmap.mmap | None = None
            self.array = np.empty((0, *row_shape), dtype=dtype)
            return
        fd = os.open(path, os.O_RDONLY)
        try:
            self.mm = mmap.mmap(fd, nbytes + self.offset, prot=mmap.PROT_READ, offset=aligned)
        finally:
            os.close(fd)
        if hasattr(mmap, "MADV_RANDOM"):
            # sampled rows are scattered: no read-ahead of neighbours that are not used
            self.mm.madvise(mmap.MADV_RANDOM)
        flat = np.frombuffer(
            self.mm, dtype=dtype, count=nbytes // dtype.itemsize, offset=self.offset
        )
        self.array = flat.reshape(rows, *row_shape)


class DiskColumn:
    """A column of one or several files, memory-mapped, its rows numbered across the files.

    Indexing with an integer array (any shape) gathers rows into a new array of shape
    ``(*rows.shape, *row_shape)`` (numpy's fancy indexing copies out of the page cache with the
    GIL released, so a prefetch thread overlaps it with training). Converting the whole
    column to an array (``np.asarray``) is refused: that is the copy a disk-backed buffer
    exists to avoid (gather the rows you need with :meth:`take`).
    """

    def __init__(
        self, name: str, maps: Sequence[_Map], row_shape: tuple[int, ...], dtype: np.dtype[Any]
    ) -> None:
        self.name = name
        self._maps = list(maps)
        lengths = np.asarray([len(m.array) for m in self._maps], dtype=np.int64)
        self._ends = np.cumsum(lengths)
        self._starts = self._ends - lengths
        self.row_shape = tuple(row_shape)
        self.dtype = np.dtype(dtype)
        self.shape = (int(self._ends[-1]) if len(self._ends) else 0, *self.row_shape)

    @classmethod
    def open(
        cls,
        name: str,
        parts: Sequence[tuple[Path, int, int]],
        row_shape: tuple[int, ...],
        dtype: np.dtype[Any],
    ) -> DiskColumn:
        """Map ``(file, byte offset, rows)`` parts, in order."""
        return cls(
            name, [_Map(p, off, n, row_shape, dtype) for p, off, n in parts], row_shape, dtype
        )

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of the column in the files (not in RAM)."""
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def files(self) -> list[Path]:
        return [m.path for m in self._maps]

    def take(self, rows: Any) -> np.ndarray:
        """Rows at ``rows`` (int or int array of any shape, values in ``[0, len)``)."""
        idx = np.asarray(rows)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"{self.name}: row indices must be integers, got {idx.dtype}")
        n = self.shape[0]
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= n):
            raise IndexError(
                f"{self.name}: rows {int(idx.min())}..{int(idx.max())} outside 0..{n - 1}"
            )
        if len(self._maps) == 1:
            out: np.ndarray = self._maps[0].array[idx]
            return out
        flat = idx.reshape(-1)
        which = np.searchsorted(self._ends, flat, side="right")
        result = np.empty((flat.shape[0], *self.row_shape), dtype=self.dtype)
        for k in np.unique(which).tolist():
            sel = which == k
            result[sel] = self._maps[k].array[flat[sel] - self._starts[k]]
        return result.reshape(*idx.shape, *self.row_shape)

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, slice):
            return self.take(np.arange(self.shape[0])[index])
        return self.take(index)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise TypeError(
            f"the '{self.name}' column is disk-backed ({self.nbytes / 1e9:.2f} GB in "
            f"{len(self._maps)} file(s)); converting it to an array would read it all into RAM. "
            "Gather rows with column.take(rows), or load with memory='ram'"
        )

    def will_need(self, rows: np.ndarray, span: int = 1) -> None:
        """Ask the kernel to start reading rows ``rows[j] .. rows[j] + span - 1`` (clipped to
        their file) in the background (``MADV_WILLNEED``): a prefetcher calls it for batches it
        gathers later, so that reads from a cold page cache overlap."""
        if not hasattr(mmap, "MADV_WILLNEED"):  # pragma: no cover - non-Linux
            return
        flat = np.asarray(rows, dtype=np.int64).reshape(-1)
        which = np.searchsorted(self._ends, flat, side="right")
        page = mmap.PAGESIZE
        for k, r in zip(which.tolist(), flat.tolist(), strict=True):
            m = self._maps[k]
            if m.mm is None:
                continue
            local = r - int(self._starts[k])
            stop = min(local + span, len(m.array))
            a = m.offset + local * m.row_bytes
            b = m.offset + stop * m.row_bytes
            a0 = a - a % page
            m.mm.madvise(mmap.MADV_WILLNEED, a0, b - a0)

    def drop_cache(self) -> None:
        """Evict the column's pages from the page cache (``posix_fadvise(DONTNEED)`` on the
        files; benchmarks use it for cold-cache figures)."""
        for m in self._maps:
            if m.mm is None:
                continue
            m.mm.madvise(mmap.MADV_DONTNEED) if hasattr(mmap, "MADV_DONTNEED") else None
            fd = os.open(m.path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def map_column(fname: str, ds: h5py.Dataset, rows: int, name: str) -> tuple[Path, int, int]:
    """``(file, byte offset, rows)`` of a dataset that can be memory-mapped.

    :raises DatasetFormatError: chunked, compressed, not fully written or otherwise not a
        plain byte block (the message names ``tianshou-offline repack``).
    """
    fd = mappable_fd(ds.file)
    offset = file_offset(ds, ds.dtype, fd)
    if offset is None:
        dcpl = ds.id.get_create_plist()
        layout = {
            h5py.h5d.CONTIGUOUS: "contiguous",
            h5py.h5d.CHUNKED: "chunked",
            h5py.h5d.COMPACT: "compact",
        }.get(dcpl.get_layout(), "unknown")
        filters = [
            str(dcpl.get_filter(i)[3], "ascii", "replace") for i in range(dcpl.get_nfilters())
        ]
        found = layout + (f" with filters {', '.join(filters)}" if filters else "")
        if fd is None:
            found += " in a file that cannot be mapped (driver or user block)"
        raise DatasetFormatError(
            f"{fname}: column '{ds.name}' is stored {found}; a disk-backed buffer "
            "(memory='disk') needs contiguous, uncompressed columns. Rewrite the file with "
            f"`tianshou-offline repack {fname} OUT.hdf5` (or load it with memory='ram')"
        )
    return Path(fname), offset, rows


# --------------------------------------------------------------------------------------
# the buffer
# --------------------------------------------------------------------------------------


class DiskReplayBuffer(FrameStackReplayBuffer):
    """A Tianshou ``ReplayBuffer`` whose observation columns stay in the files (see module doc).

    ``buffer[i]``, ``buffer.get(i, key)``, ``prev``/``next``, ``sample``: as Tianshou's buffer
    over the same data (frame stacks, stack patches and joined episodes included); the
    observations of each call are gathered from the mapped files. ``buffer.obs`` (and
    ``buffer.obs_next``) is the :class:`DiskColumn`. Build it with the loaders
    (``load_buffer(..., memory="disk")``, ``load_framestack_files(..., memory="disk")``).
    """

    _disk: dict[str, DiskColumn]

    @classmethod
    def from_columns(
        cls,
        disk: Mapping[str, DiskColumn],
        ram: Mapping[str, Any],
        *,
        stack_num: int,
        save_only_last_obs: bool,
        sample_avail: bool = False,
    ) -> DiskReplayBuffer:
        """A full buffer over ``disk`` columns (``obs`` required) and in-RAM columns (``act``,
        ``rew``, ``terminated``, ``truncated``, ``done``, optional ``info``), all with N rows."""
        n = int(np.asarray(ram["rew"]).shape[0])
        if "obs" not in disk:
            raise DatasetFormatError("a disk-backed buffer needs an 'obs' column")
        for name, col in disk.items():
            if len(col) != n:
                raise DatasetFormatError(
                    f"column {name} has {len(col)} rows; expected {n} (as rew)"
                )
        buf = cls(
            max(n, 1),
            stack_num=stack_num,
            ignore_obs_next="obs_next" not in disk,
            save_only_last_obs=save_only_last_obs,
            sample_avail=sample_avail,
        )
        buf._disk = dict(disk)
        buf._indices = np.zeros(0, dtype=np.int64)  # slices are resolved without it
        if n:
            buf.set_batch(Batch(dict(ram)))
            buf._size = n
            buf._insertion_idx = 0
            buf.last_index = np.array([n - 1])
        return buf

    def disk_columns(self) -> dict[str, DiskColumn]:
        """The columns left in the files (``obs``; ``obs_next`` where stored), by name —
        the interface the algorithms' datasets detect to stream mini-batches from disk."""
        return dict(self._disk)

    def drop_cache(self) -> None:
        """Evict the mapped columns from the page cache (cold-cache measurements)."""
        for col in self._disk.values():
            col.drop_cache()

    def __getattr__(self, key: str) -> Any:
        disk = self.__dict__.get("_disk")
        if disk is not None and key in disk:
            return disk[key]
        return super().__getattr__(key)

    def _stack_rows(self, index: np.ndarray, stack_num: int) -> np.ndarray:
        """``(*index.shape, stack_num)`` rows ``[p^(S-1)(i), …, p(i), i]`` (``p`` = prev)."""
        out = np.empty((*index.shape, stack_num), dtype=np.int64)
        cur = index
        for k in range(stack_num - 1, -1, -1):
            out[..., k] = cur
            if k:
                cur = np.asarray(self.prev(cur))
        return out

    def get(
        self,
        index: int | list[int] | np.ndarray,
        key: str,
        default_value: Any = None,
        stack_num: int | None = None,
    ) -> Batch | np.ndarray:
        """Tianshou's ``get``; ``obs``/``obs_next`` are gathered from the files (stacked,
        with exact obs stacks where the data has a patch)."""
        col = self._disk.get(key)
        if col is None:
            return super().get(index, key, default_value, stack_num)
        sn = self.stack_num if stack_num is None else stack_num
        idx = np.asarray(index, dtype=np.int64)
        value = col.take(idx if sn == 1 else self._stack_rows(idx, sn))
        if key == "obs" and sn == self.stack_num:
            value = self._patch(value, index, self._obs_patch_index, self._obs_patch_stacks)
        return value

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            index = self.sample_indices(0) if index == slice(None) else np.arange(len(self))[index]
        return super().__getitem__(index)

    def set_batch(self, batch: Any) -> None:
        """As Tianshou's, for the in-RAM columns (the disk columns are not part of it)."""
        assert len(batch) == self.maxsize, "the batch must have one row per transition"
        self._meta = batch


def is_disk_backed(buffer: ReplayBuffer) -> bool:
    """Whether ``buffer`` leaves columns on disk (a :class:`DiskReplayBuffer`)."""
    return isinstance(buffer, DiskReplayBuffer)


# --------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------


def observation_bytes(paths: Sequence[str | os.PathLike[str]]) -> int:
    """Bytes of the ``obs`` and ``obs_next`` columns of tianshou-offline files (the part a
    disk-backed buffer leaves on disk; for ``memory="auto"``)."""
    from tianshou_offline.data.format import META_GROUP, open_h5

    total = 0
    for p in paths:
        with open_h5(p) as f:
            meta = f.get(META_GROUP)
            if not isinstance(meta, h5py.Group):
                continue
            for name in DISK_COLUMNS:
                ds = meta.get(name)
                if isinstance(ds, h5py.Dataset) and ds.shape:
                    total += int(np.prod(ds.shape, dtype=np.int64)) * ds.dtype.itemsize
    return total


def load_disk_files(
    paths: Sequence[str | os.PathLike[str]],
    *,
    include_info: bool = True,
    join_episodes: bool = True,
    stack_num: int | None = None,
    sample_avail: bool | None = None,
) -> DiskReplayBuffer:
    """Open one or several tianshou-offline files as one :class:`DiskReplayBuffer`.

    Files are concatenated in the given order (all must have the same columns, dtypes and
    frame-stacking settings). ``obs`` (and a stored ``obs_next``) are memory-mapped; the
    other columns, the episode tables and the stack patches are read and checked as the
    in-RAM loaders do. Compact frame-stacked files (``save_only_last_obs``) are joined across
    files where an episode continues (``join_episodes``, see
    :func:`~tianshou_offline.data.framestack.load_framestack_files`).

    :param stack_num: override the files' ``stack_num``.
    :param sample_avail: Tianshou's ``sample_avail`` (default: the files' setting).
    :raises DatasetFormatError: not a tianshou-offline file, inconsistent files, or a column
        that cannot be mapped (the message names ``tianshou-offline repack``).
    """
    from tianshou_offline.data.columns import nest_columns, verify_buffer
    from tianshou_offline.data.format import MAX_STACK_NUM, META_GROUP, check_disk_shard, open_h5
    from tianshou_offline.data.framestack import (
        _check_file_episodes,
        _join_files,
        _split_patches,
        check_patch_stack_num,
        read_patches,
    )

    if not paths:
        raise ValueError("load_disk_files(): no files given")
    if stack_num is not None and not 1 <= stack_num <= MAX_STACK_NUM:
        raise DatasetFormatError(f"stack_num={stack_num}: expected 1..{MAX_STACK_NUM}")
    infos: list[dict[str, Any]] = []
    schema: dict[str, tuple[tuple[int, ...], np.dtype[Any]]] | None = None
    settings: tuple[int, bool, bool] | None = None
    for p in paths:
        with open_h5(p) as f:
            fname = str(p)
            shard = check_disk_shard(f, fname, include_info=include_info)
            n, starts, lengths = shard.rows, shard.starts, shard.lengths
            cols, datasets, this = shard.columns, shard.datasets, shard.settings
            parts = {
                name: map_column(fname, ds, n, name)
                for name, ds in datasets.items()
                if name in DISK_COLUMNS
            }
            if schema is None:
                schema, settings = cols, this
            elif cols != schema or this != settings:
                raise DatasetFormatError(
                    f"{fname}: columns or frame-stacking settings differ from {paths[0]} "
                    f"({sorted(cols)} {this} vs {sorted(schema)} {settings})"
                )
            infos.append(
                {"path": Path(p), "n": n, "starts": starts, "lengths": lengths, "parts": parts}
            )
    assert schema is not None and settings is not None
    file_stack, save_only_last, file_sample_avail = settings
    total = sum(i["n"] for i in infos)
    ram: dict[str, np.ndarray] = {
        name: np.empty((total, *shape), dtype=dtype)
        for name, (shape, dtype) in schema.items()
        if name not in DISK_COLUMNS
    }
    frame = schema["obs"]
    obs_rows: list[np.ndarray] = []
    obs_stacks: list[np.ndarray] = []
    next_rows: list[np.ndarray] = []
    next_stacks: list[np.ndarray] = []
    offset = 0
    for info in infos:
        n = info["n"]
        info["start"] = offset
        with open_h5(info["path"]) as f:
            meta = f[META_GROUP]
            for name, arr in ram.items():
                if n:
                    meta[name].read_direct(arr, np.s_[0:n], np.s_[offset : offset + n])
            if save_only_last:
                rows, keys, stacks = read_patches(f, n, frame)
                info["patches"] = len(rows)
                _split_patches(
                    rows, keys, stacks, offset, (obs_rows, obs_stacks), (next_rows, next_stacks)
                )
        _check_file_episodes(ram, info, offset)
        offset += n
    disk = {
        name: DiskColumn.open(name, [i["parts"][name] for i in infos], *schema[name])
        for name in DISK_COLUMNS
        if name in schema
    }
    columns = nest_columns(ram)
    term = np.asarray(columns.get("terminated", np.zeros(total, bool)), dtype=bool)
    if "terminated" not in columns and isinstance(columns.get("done"), np.ndarray):
        term = np.asarray(columns["done"], dtype=bool)
    trunc = np.asarray(columns.get("truncated", np.zeros(total, bool)), dtype=bool)
    done = np.asarray(columns.get("done", term | trunc), dtype=bool) | term | trunc
    if total:
        done[total - 1] = True
    columns["terminated"], columns["truncated"], columns["done"] = term, trunc, done
    source = ", ".join(str(i["path"]) for i in infos)
    buf = DiskReplayBuffer.from_columns(
        disk,
        columns,
        stack_num=stack_num or file_stack,
        save_only_last_obs=save_only_last,
        sample_avail=file_sample_avail if sample_avail is None else sample_avail,
    )

    def cat(
        rows: list[np.ndarray], stacks: list[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray] | None:
        return (np.concatenate(rows), np.concatenate(stacks)) if rows else None

    if stack_num is not None:
        patched = [i["path"] for i in infos if i.get("patches")]
        check_patch_stack_num(
            ", ".join(map(str, patched)),
            file_stack,
            stack_num,
            sum(i.get("patches", 0) for i in infos),
        )
    if save_only_last and (stack_num is None or stack_num == file_stack):
        buf.set_patches(
            obs_patches=cat(obs_rows, obs_stacks), obs_next_patches=cat(next_rows, next_stacks)
        )
        if join_episodes and len(infos) > 1:
            _join_files(buf, infos, columns, file_stack)
    verify_buffer(buf, source)
    log.info(
        "%s: %d transitions disk-backed (%.2f GB mapped in %d file(s), %.1f MB in RAM)",
        source if len(infos) == 1 else f"{len(infos)} files",
        total,
        sum(c.nbytes for c in disk.values()) / 1e9,
        len(infos),
        resident_bytes(buf) / 1e6,
    )
    return buf


def resident_bytes(buffer: DiskReplayBuffer) -> int:
    """Bytes a disk-backed buffer holds in RAM: its in-RAM columns and patch tables."""
    from tianshou_offline.data.columns import _leaves

    meta = buffer._meta
    total = sum(np.asarray(arr).nbytes for _, arr in _leaves({k: meta[k] for k in meta.get_keys()}))
    for name in (
        "_obs_patch_index",
        "_obs_patch_stacks",
        "_obs_next_patch_index",
        "_obs_next_patch_stacks",
    ):
        arr = getattr(buffer, name, None)
        if isinstance(arr, np.ndarray):
            total += arr.nbytes
    return total
