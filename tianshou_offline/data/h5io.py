"""The HDF5 side of :class:`~tianshou_offline.data.writer.BufferWriter`: :class:`H5Store`.

An :class:`H5Store` is one open buffer file (``docs/FORMAT.md``): it creates the file at a
hidden temporary path beside the output with its columns, Tianshou's bookkeeping and the
header attributes; writes rows, the episode table and the committed counts; and moves the
file into place. The writer decides what to write and when; this module decides how.

How, and why it is fast: attributes go through h5py's low-level calls; disk blocks are
reserved ahead of the writes (Linux ``fallocate``); columns are resized and written without
h5py's checks; in atomic mode without compression, whole chunks go to libhdf5 as they are
(``H5Dwrite_chunk``). In append mode (SWMR) every commit flushes the rows, then the episode
table and the counts, so a killed process leaves a file that loads with every committed
episode.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import numpy as np

from tianshou_offline.data.atomic import detach_files, publish, rename_noreplace, temp_path
from tianshou_offline.data.format import (
    DATA_TYPE_ATTR,
    EPISODES_GROUP,
    EXT_GROUP,
    META_GROUP,
    SWMR_LIBVER,
    WRITE_LIBVER,
    check_version,
    committed_counts,
    detect_layout,
    iter_datasets,
    open_h5,
)
from tianshou_offline.data.repair import repair_file
from tianshou_offline.errors import DatasetFormatError, DataValidationError

log = logging.getLogger(__name__)

Schema = Mapping[str, tuple[tuple[int, ...], np.dtype[Any]]]
"""Column path under ``/_meta`` (``"obs"``, ``"obs/a"``, ``"act"``, …) → (row shape, dtype)."""

_PART_BYTES = 1 << 20
"""Pending parts at least this large are written as they are; smaller ones are joined first."""
_STR_DTYPE: np.dtype[Any] = h5py.string_dtype("utf-8")
_ATTR_TYPES: dict[tuple[str, bool], tuple[Any, Any]] = {}


def _put_attrs(obj: h5py.HLObject, values: Mapping[str, Any]) -> None:
    """``obj.attrs[k] = v`` for each item, through h5py's low-level calls.

    Stores exactly what h5py's ``AttributeManager`` stores (same HDF5 types, scalar
    dataspaces; ``str`` as variable-length UTF-8) for ``str`` and numpy scalars, which are
    all the writer sets, without its per-call overhead (~50 µs each, ~40 per file). Other
    values go through ``obj.attrs``.
    """
    oid = obj.id
    for name, value in values.items():
        is_str = isinstance(value, str)
        data = np.array(value, dtype=_STR_DTYPE) if is_str else np.asarray(value)
        if data.ndim != 0 or (not is_str and data.dtype.kind not in "biuf"):
            obj.attrs[name] = value
            continue
        key = (data.dtype.str, is_str)
        types = _ATTR_TYPES.get(key)
        if types is None:
            dt = _STR_DTYPE if is_str else data.dtype
            types = _ATTR_TYPES[key] = (
                h5py.h5t.py_create(dt, logical=True),
                h5py.h5t.py_create(dt),
            )
        bname = name.encode()
        if h5py.h5a.exists(oid, bname):
            h5py.h5a.delete(oid, bname)
        attr = h5py.h5a.create(oid, bname, types[0], h5py.h5s.create_simple(()))
        attr.write(data, mtype=types[1])


def _modify_attr(obj: h5py.HLObject, name: str, value: np.generic) -> None:
    """Overwrite the value of an existing numeric scalar attribute (same type)."""
    h5py.h5a.open(obj.id, name.encode()).write(np.asarray(value))


def _load_fallocate() -> Any:
    """Linux ``fallocate(2)`` through ctypes, or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).fallocate64
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fn.restype = ctypes.c_int
    return fn


_FALLOCATE = _load_fallocate()
_FALLOC_FL_KEEP_SIZE = 1


def _preallocate(f: h5py.File, nbytes: int) -> bool:
    """Reserve disk blocks for the next ``nbytes`` past the end of ``f``'s file.

    ``fallocate(FALLOC_FL_KEEP_SIZE)``: the file's size does not change (libhdf5 sees
    nothing), but the buffered writes that follow find their blocks allocated instead of
    reserving them page by page (ext4's delayed allocation, a share of the cost of writing).
    Best effort: returns False where unsupported (other systems, file systems, drivers).
    Blocks left unused past the end are released by truncating the closed file to its size.
    """
    if _FALLOCATE is None or f.driver != "sec2":
        return False
    try:
        fd = f.id.get_vfd_handle()
        return bool(_FALLOCATE(fd, _FALLOC_FL_KEEP_SIZE, os.fstat(fd).st_size, nbytes) == 0)
    except (OSError, ValueError, TypeError):
        return False


def _extend(ds: h5py.Dataset, rows: int, row_shape: tuple[int, ...] = ()) -> None:
    """Resize a chunked column with rows of ``row_shape`` to ``rows`` rows (h5py's low-level
    call: no checks)."""
    ds.id.set_extent((rows, *row_shape))


def _write_block(ds: h5py.Dataset, start: int, block: np.ndarray) -> None:
    """Write ``block`` at row ``start`` of ``ds`` with h5py's low-level call (the writer makes
    every block C-contiguous with the column's dtype, so ``ds[a:b] = x``'s checks are moot)."""
    if block.shape[0]:
        fspace = ds.id.get_space()
        fspace.select_hyperslab((start,) + (0,) * (block.ndim - 1), block.shape)
        ds.id.write(h5py.h5s.create_simple(block.shape), fspace, block)


def _write_rows(
    ds: h5py.Dataset,
    start: int,
    parts: Sequence[np.ndarray],
    chunk_rows: int | None,
    final: bool = False,
) -> int:
    """Write the rows of ``parts`` (concatenated) at row ``start`` of ``ds``; returns the row
    after them.

    With ``chunk_rows`` (an unfiltered column of a file no one else reads yet), every chunk
    the rows fill completely is handed to libhdf5 as it is (``H5Dwrite_chunk``): its bytes go
    from the array to the file without the copy into a chunk buffer that ``H5Dwrite`` makes.
    The partial chunk at the start (begun by an earlier write) takes the ordinary path, as
    does the one at the end, unless ``final`` (no rows will follow): it is then padded to a
    whole chunk (the padding lies beyond the dataset's extent) and written directly too.
    """
    block = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
    n = int(block.shape[0])
    stop = start + n
    if chunk_rows is None or n == 0:
        _write_block(ds, start, block)
        return stop
    first = min(-(-start // chunk_rows) * chunk_rows, stop)  # first chunk boundary >= start
    last = max(stop // chunk_rows * chunk_rows, first)
    _write_block(ds, start, block[: first - start])
    dsid = ds.id
    zeros = (0,) * (block.ndim - 1)
    for c in range(first, last, chunk_rows):
        dsid.write_direct_chunk((c, *zeros), block[c - start : c - start + chunk_rows])
    if last < stop:
        tail = block[last - start :]
        if final and last % chunk_rows == 0:
            padded = np.zeros((chunk_rows, *block.shape[1:]), dtype=block.dtype)
            padded[: stop - last] = tail
            dsid.write_direct_chunk((last, *zeros), padded)
        else:
            _write_block(ds, last, tail)
    return stop


def chunk_rows(
    shape: tuple[int, ...], dtype: np.dtype[Any], *, chunk_bytes: int, first_rows: int
) -> int:
    """Rows per chunk of a column with rows of ``shape`` and ``dtype``: about
    ``chunk_bytes``, rounded to the nearest power of two (so every column's chunks end at the
    same multiples of 2**17 rows and writers that add rows in such blocks never leave a chunk
    half-written), at most 2**17 rows.

    Small files get small chunks (HDF5 allocates whole chunks): never more rows per chunk
    than the first write holds (``first_rows``, at least 1024).
    """
    row_bytes = max(1, int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
    cap = max(first_rows, 1024)
    rows = int(min(max(1, chunk_bytes // row_bytes), cap, 1 << 17))
    lower = 1 << (rows.bit_length() - 1)
    return lower if rows < lower * 3 // 2 or lower * 2 > cap else lower * 2


def _metadata_dtype(value: Any) -> np.dtype[Any]:
    """The column dtype of an episode metadata value (UTF-8 string, bool, int64, float64)."""
    if isinstance(value, str):
        return _STR_DTYPE
    if isinstance(value, bool):
        return np.dtype(bool)
    if isinstance(value, int):
        return np.dtype(np.int64)
    return np.dtype(np.float64)


@dataclass(frozen=True)
class FileSpec:
    """What a new buffer file holds before its first row (see :meth:`H5Store.create`)."""

    schema: Schema
    """The columns under ``/_meta``, created empty and resizable."""
    header: Mapping[str, Any]
    """The attributes of ``/tianshou_offline`` (format, counts, spaces as JSON, provenance,
    …), written as given (``str`` and numpy scalars)."""
    stack_num: int
    """Tianshou's frame-stacking setting (its ``stack_num`` attributes)."""
    store_obs_next: bool
    """An ``obs_next`` column is stored (Tianshou's ``_save_obs_next``, ``ignore_obs_next``)."""
    save_only_last_obs: bool
    """Tianshou's ``save_only_last_obs``."""
    compression: str | None
    """The HDF5 filter of every column: ``"gzip"``, ``"lzf"`` or None."""
    compression_opts: int | None
    """The filter's level."""
    chunk_bytes: int
    """Target bytes per chunk (see :func:`chunk_rows`)."""
    first_rows: int
    """The rows of the first write (small files get small chunks)."""
    flush_bytes: int
    """The writer's flush size in bytes: writes are cut at whole chunks (``H5Store.align``
    rows, the largest chunk) only where that many rows of all the columns fit in it."""
    metadata_examples: Mapping[str, Any]
    """Episode metadata key → the first episode's value (its type gives the column's
    dtype; None: float64); empty: no metadata columns."""


class Committed(NamedTuple):
    """The committed part of a file that an append-mode writer continues."""

    schema: dict[str, tuple[tuple[int, ...], np.dtype[Any]]]
    """The file's columns (see :data:`Schema`)."""
    stack_num: int
    save_only_last_obs: bool
    metadata_keys: list[str] | None
    """The episode metadata columns; None where the file has none."""
    num_transitions: int
    """Rows of the committed episodes (the rows after them are dropped)."""
    episode_start: list[int]
    """The committed episodes' first rows, lengths (rows) and returns."""
    episode_length: list[int]
    episode_return: list[float]


class H5Store:
    """One open buffer file: its columns, episode table, counts and attributes.

    Made by :meth:`create` (a new file at a temporary path) or :meth:`open_for_append`.
    Rows are numbered from 0 across the file; every column has the same rows.

    :param path: the output path (the file's final place).
    :param swmr: append mode: the file is opened with ``libver=SWMR_LIBVER`` (HDF5 1.10–1.14 format) and, once at
        ``path``, in SWMR mode; every commit is flushed.
    :param overwrite: :meth:`finish` replaces a file at ``path``; otherwise (and always in
        append mode) a file that appeared there during the run is left untouched and
        :class:`~tianshou_offline.errors.OutputExistsError` raised (the temporary file stays
        for :meth:`discard`).
    """

    def __init__(
        self,
        file: h5py.File,
        *,
        path: Path,
        tmp_path: Path | None,
        swmr: bool,
        schema: Schema,
        filters: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        self.path = path
        self.overwrite = overwrite
        self.tmp_path = tmp_path
        """Where the file is while it is not at ``path`` yet (None once it is)."""
        self.swmr = swmr
        self.schema = schema
        self.align = 0
        """Rows at multiples of which every directly written column's chunks end (0: none):
        writes that stop there write whole chunks only."""
        self._file: h5py.File | None = file
        self._filters = dict(filters or {})
        self._datasets: dict[str, h5py.Dataset] = {}
        self._direct_rows: dict[str, int] = {}
        """Chunk rows of the columns whose whole chunks are written directly (atomic mode,
        no compression)."""
        self._preallocated = False
        self.moved = False
        """Append mode: this store moved its new file to ``path`` (:meth:`publish`)."""

    @property
    def file(self) -> h5py.File:
        """The open file."""
        assert self._file is not None, f"{self.path}: the file is closed"
        return self._file

    # ------------------------------------------------------------------ opening

    @classmethod
    def create(
        cls, path: Path, spec: FileSpec, *, swmr: bool, overwrite: bool = False
    ) -> H5Store:
        """Create an empty buffer file as ``spec`` describes, at a temporary path beside
        ``path`` (:func:`~tianshou_offline.data.atomic.temp_path`; :meth:`finish` or, in
        append mode, :meth:`publish` moves it there)."""
        tmp_path = temp_path(path)
        try:
            f = h5py.File(tmp_path, "w", libver=SWMR_LIBVER if swmr else WRITE_LIBVER)
        except BaseException:  # e.g. the disk is full: libhdf5 may have created the file
            tmp_path.unlink(missing_ok=True)
            raise
        filters: dict[str, Any] = {}
        if spec.compression is not None:
            filters["compression"] = spec.compression
            if spec.compression_opts is not None:
                filters["compression_opts"] = spec.compression_opts
        store = cls(
            f,
            path=path,
            tmp_path=tmp_path,
            swmr=swmr,
            schema=spec.schema,
            filters=filters,
            overwrite=overwrite and not swmr,
        )
        try:
            store._create_layout(spec)
        except BaseException:
            store.discard()
            raise
        return store

    def _create_layout(self, spec: FileSpec) -> None:
        """The groups, columns and attributes of a new file."""
        f = self.file
        # whole chunks go straight to the file when no filter transforms them and no reader
        # can see the file before it is complete (atomic mode)
        direct = not self.swmr and not self._filters
        meta = f.create_group(META_GROUP)
        _put_attrs(meta, {DATA_TYPE_ATTR: "Batch"})
        for path, (shape, dtype) in self.schema.items():
            if 0 in shape:  # HDF5 chunks (and so resizable columns) need every dimension >= 1
                raise DataValidationError(
                    f"{self.path}: column '{path}' has rows of shape {shape}; expected every "
                    "dimension of a row to be at least 1 (a zero-length dimension cannot be "
                    "stored in a chunked column)"
                )
            rows = chunk_rows(shape, dtype, chunk_bytes=spec.chunk_bytes, first_rows=spec.first_rows)
            self._create_column(meta, path, shape, dtype, rows)
            if direct and dtype.kind in "biufS":
                self._direct_rows[path] = rows
        int64 = np.dtype(np.int64)
        rows = chunk_rows((), int64, chunk_bytes=spec.chunk_bytes, first_rows=spec.first_rows)
        self._create_column(f, "_indices", (), int64, rows)
        if direct:
            self._direct_rows["_indices"] = rows
            # chunk rows are powers of two: the largest is a multiple of all the others;
            # held-back rows (fewer than that) must stay a small part of a flush
            align = max(self._direct_rows.values())
            row_bytes = 8 + sum(
                int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                for shape, dtype in self.schema.values()
            )
            self.align = align if align * row_bytes <= spec.flush_bytes else 0
        last_index = f.create_dataset("last_index", data=np.zeros(1, dtype=np.int64))
        _put_attrs(last_index, {DATA_TYPE_ATTR: "ndarray"})
        self._datasets["last_index"] = last_index
        options = f.create_group("options")
        _put_attrs(
            options,
            {
                "stack_num": np.int64(spec.stack_num),
                "ignore_obs_next": np.bool_(not spec.store_obs_next),
                "save_only_last_obs": np.bool_(spec.save_only_last_obs),
                "sample_avail": np.bool_(False),
            },
        )
        root: dict[str, Any] = {
            key: np.int64(0)
            for key in ("maxsize", "_size", "_insertion_idx", "_ep_len", "_ep_start_idx")
        }
        root["_ep_return"] = np.float64(0.0)
        root["stack_num"] = np.int64(spec.stack_num)
        root["_save_obs_next"] = np.bool_(spec.store_obs_next)
        root["_save_only_last_obs"] = np.bool_(spec.save_only_last_obs)
        root["_sample_avail"] = np.bool_(False)
        _put_attrs(f, root)
        ext = f.create_group(EXT_GROUP)
        _put_attrs(ext, spec.header)
        eps = f.create_group(EPISODES_GROUP)
        for name, col_dtype in (("start", "<i8"), ("length", "<i8"), ("return", "<f8")):
            self._create_column(eps, name, (), np.dtype(col_dtype), 1024)
        if spec.metadata_examples:
            md = eps.create_group("metadata")
            for key, value in spec.metadata_examples.items():
                self._create_column(md, key, (), _metadata_dtype(value), 1024)

    def _create_column(
        self,
        group: h5py.Group,
        path: str,
        shape: tuple[int, ...],
        dtype: np.dtype[Any],
        rows: int,
    ) -> None:
        """Create an empty resizable column at ``group/path`` with rows of ``shape`` and
        ``dtype``, in chunks of ``rows`` rows, with the file's filters."""
        parent, _, name = path.rpartition("/")
        g = group.require_group(parent) if parent else group
        ds = g.create_dataset(
            name,
            shape=(0, *shape),
            maxshape=(None, *shape),
            chunks=(rows, *shape),
            dtype=dtype,
            **self._filters,
        )
        _put_attrs(ds, {DATA_TYPE_ATTR: "ndarray"})
        self._datasets[ds.name.lstrip("/")] = ds  # saves a lookup by name later

    @classmethod
    def open_for_append(cls, path: Path) -> tuple[H5Store, Committed]:
        """Open a file written by an earlier append-mode writer, in SWMR mode, and read
        what it has committed.

        A file whose writer was killed (still in SWMR mode, or columns longer than the
        committed episodes) is rewritten first by :func:`repair_file`, keeping its
        committed episodes.

        :raises DatasetFormatError: not a tianshou-offline buffer file (or a newer version).
        """
        with open_h5(path) as f:
            if detect_layout(f) != "tianshou_offline":
                raise DatasetFormatError(f"{path}: cannot append: not a tianshou-offline buffer file")
            check_version(f)
            swmr_crashed = f.swmr_mode
            n, n_ep = committed_counts(f)
            lengths = {p: ds.shape[0] for p, ds in iter_datasets(f[META_GROUP])}
        if swmr_crashed or any(v != n for v in lengths.values()):
            log.warning("%s: was not closed cleanly; keeping its %d committed episodes", path, n_ep)
            repair_file(path)
        f = h5py.File(path, "a", libver=SWMR_LIBVER)
        try:
            schema = {p: (tuple(ds.shape[1:]), ds.dtype) for p, ds in iter_datasets(f[META_GROUP])}
            eps = f[EPISODES_GROUP]
            n, n_ep = committed_counts(f)
            committed = Committed(
                schema=schema,
                stack_num=int(f.attrs.get("stack_num", 1)),
                save_only_last_obs=bool(f.attrs.get("_save_only_last_obs", False)),
                metadata_keys=sorted(eps["metadata"].keys()) if "metadata" in eps else None,
                num_transitions=n,
                episode_start=[int(x) for x in eps["start"][:n_ep]],
                episode_length=[int(x) for x in eps["length"][:n_ep]],
                episode_return=[float(x) for x in eps["return"][:n_ep]],
            )
            f.swmr_mode = True
        except BaseException:
            f.close()
            raise
        return cls(f, path=path, tmp_path=None, swmr=True, schema=schema), committed

    # ------------------------------------------------------------------ writing

    def _dataset(self, path: str) -> h5py.Dataset:
        """The dataset at ``path`` in the open file (looked up once: h5py lookups are slow)."""
        ds = self._datasets.get(path)
        if ds is None:
            ds = self._datasets[path] = self.file[path]
        return ds

    def reserve(self, nbytes: int) -> None:
        """Reserve disk blocks for ``nbytes`` about to be written (files written directly
        only; best effort, see :func:`_preallocate`)."""
        if self._direct_rows:
            self._preallocated |= _preallocate(self.file, nbytes)

    def write_rows(
        self,
        start: int,
        columns: Mapping[str, Sequence[np.ndarray]],
        stop: int,
        *,
        final: bool,
    ) -> None:
        """Write rows ``start:stop`` of every column (extended to ``stop`` rows) and of
        ``_indices`` (``arange(start, stop)``, int64).

        :param columns: for each column path of the schema, consecutive blocks of rows,
            C-contiguous and of the column's dtype, ``stop - start`` rows in all.
        :param final: no rows follow: the last chunk of a directly written column is
            written whole (see :func:`_write_rows`).
        """
        for path, parts in columns.items():
            ds = self._dataset(f"{META_GROUP}/{path}")
            _extend(ds, stop, self.schema[path][0])
            direct = self._direct_rows.get(path)
            row = start
            small: list[np.ndarray] = []  # consecutive small parts are written as one block
            for i, part in enumerate(parts):
                if part.nbytes < _PART_BYTES:
                    small.append(part)
                    continue
                if small:
                    row = _write_rows(ds, row, small, direct)
                    small = []
                row = _write_rows(ds, row, [part], direct, final and i == len(parts) - 1)
            if small:
                row = _write_rows(ds, row, small, direct, final)
            assert row == stop
        idx = self._dataset("_indices")
        _extend(idx, stop)
        _write_rows(
            idx,
            start,
            [np.arange(start, stop, dtype=np.int64)],
            self._direct_rows.get("_indices"),
            final,
        )

    def set_true(self, path: str, row: int) -> None:
        """Set row ``row`` (already written) of the bool column ``path`` to True."""
        self.file[f"{META_GROUP}/{path}"][row] = True

    def append_episodes(
        self,
        first: int,
        start: Sequence[int],
        length: Sequence[int],
        ret: Sequence[float],
        metadata: Sequence[Mapping[str, Any]],
        metadata_keys: Sequence[str] | None,
    ) -> None:
        """Write episodes ``first``, ``first + 1``, … of the episode table
        (``/tianshou_offline/episodes``), one entry of each sequence per episode.

        ``start`` and ``length`` (rows, int64) are extended last: readers trust
        ``min(len(start), len(length))`` episodes. Append mode: the rows are flushed first,
        so that the table never points at rows not on disk.

        :param ret: the episodes' returns (float64).
        :param metadata: the episodes' metadata (values for the file's metadata columns).
        :param metadata_keys: the writer's metadata keys.
        :raises DataValidationError: episodes have metadata but the file was created
            without metadata columns.
        """
        f = self.file
        n_ep = first + len(start)
        eps = f[EPISODES_GROUP]
        if self.swmr:
            f.flush()  # data rows reach the disk before the table that points at them
        if metadata_keys and "metadata" not in eps:
            raise DataValidationError(
                f"{self.path}: episode metadata {metadata_keys} appeared after the file "
                "was created without metadata; every episode must report the same keys"
            )
        cols: dict[str, np.ndarray] = {
            "start": np.asarray(start, dtype=np.int64),
            "length": np.asarray(length, dtype=np.int64),
            "return": np.asarray(ret, dtype=np.float64),
        }
        if "metadata" in eps:
            md = eps["metadata"]
            for k in md.keys():
                cols[f"metadata/{k}"] = np.asarray([m.get(k) for m in metadata], dtype=md[k].dtype)
        # length and start last: committed_counts() reads min(len(start), len(length))
        for name in sorted(cols, key=lambda c: c in ("start", "length")):
            ds = self._dataset(f"{EPISODES_GROUP}/{name}")
            _extend(ds, n_ep)
            if name.startswith("metadata/"):
                ds[first:n_ep] = cols[name]  # h5py converts str to its vlen strings
            else:
                _write_block(ds, first, cols[name])

    def write_counts(self, num_transitions: int, num_episodes: int) -> None:
        """Record the committed rows and episodes: the format's counts, Tianshou's
        ``maxsize``/``_size`` and ``last_index``."""
        f = self.file
        n = num_transitions
        ext = f[EXT_GROUP]
        _modify_attr(ext, "num_transitions", np.int64(n))
        _modify_attr(ext, "num_episodes", np.int64(num_episodes))
        _modify_attr(f, "maxsize", np.int64(n))
        _modify_attr(f, "_size", np.int64(n))
        _write_block(self._dataset("last_index"), 0, np.array([max(n - 1, 0)], dtype=np.int64))

    def publish(self) -> None:
        """Append mode, after a commit: flush the file; the first time, move it into place
        and reopen it in SWMR mode (readers may open it from then on). A file that appeared
        at ``path`` meanwhile is left untouched
        (:class:`~tianshou_offline.errors.OutputExistsError`).

        :raises FileNotFoundError: (``ENOENT``) the file in place was deleted (its directory
            with it, say): the commit went nowhere, as every later one would."""
        f = self.file
        f.flush()
        self._check_in_place()
        if self.tmp_path is not None:
            f.close()
            self._file = None
            self._datasets = {}
            rename_noreplace(self.tmp_path, self.path)
            self.tmp_path = None
            self.moved = True
            self._file = h5py.File(self.path, "a", libver=SWMR_LIBVER)
            self._file.swmr_mode = True

    def _check_in_place(self) -> None:
        """Append mode, the file in place (published): it is still there.

        :raises FileNotFoundError: (``ENOENT``) it has no link left (deleted, its directory
            with it, say): what was just written went nowhere."""
        if self.tmp_path is None and self._file is not None:
            if os.fstat(self._file.id.get_vfd_handle()).st_nlink == 0:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(self.path))

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Close the file (where it is: a new file not yet published stays at ``tmp_path``).

        Flushed first: a write that fails then raises with the file still open, to be
        abandoned (:meth:`abandon`) and closed; libhdf5 1.14 cannot recover from a close
        whose writes fail (the process crashes at exit). So does a file in place that was
        deleted meanwhile (``FileNotFoundError``)."""
        if self._file is not None:
            self._file.flush()
            self._check_in_place()
            self._file.close()
            self._file = None
            self._datasets = {}

    def finish(self, *, contiguous: bool = False) -> None:
        """Close the file; atomic mode: release disk blocks reserved past its end and
        move it into place (:func:`~tianshou_offline.data.atomic.publish`: replacing a file
        at ``path`` only with ``overwrite``).

        :param contiguous: first rewrite the file with every column contiguous and
            uncompressed (:func:`~tianshou_offline.data.repack.repack_file`), the layout a
            disk-backed buffer memory-maps."""
        self.close()
        if self._preallocated and self.tmp_path is not None:
            st = os.stat(self.tmp_path)
            if st.st_blocks * 512 > st.st_size + (1 << 20):
                # blocks reserved past the end: released (the size does not change)
                os.truncate(self.tmp_path, st.st_size)
        if not self.swmr and self.tmp_path is not None:
            if contiguous:
                from tianshou_offline.data.repack import repack_file

                packed = temp_path(self.path, "repack")
                try:
                    repack_file(self.tmp_path, packed)
                except BaseException:
                    if packed.exists():
                        packed.unlink()
                    raise
                self.tmp_path.unlink()
                self.tmp_path = packed
            publish(self.tmp_path, self.path, overwrite=self.overwrite)
            self.tmp_path = None

    def abandon(self) -> None:
        """After a failed write: point the file's descriptor at ``/dev/null``
        (:func:`~tianshou_offline.data.atomic.detach_files`), so that closing it writes
        nothing more into the file and cannot fail again."""
        if self._file is not None:
            detach_files(self.tmp_path or self.path)

    def discard(self) -> None:
        """Close the file (best effort) and delete it if it is not at ``path`` yet (then its
        close writes nowhere: :meth:`abandon`)."""
        if self._file is not None and self.tmp_path is not None:
            self.abandon()
        if self._file is not None:
            try:
                self._file.close()
            except Exception:  # pragma: no cover - best effort cleanup
                pass
            self._file = None
            self._datasets = {}
        if self.tmp_path is not None and self.tmp_path.exists():
            self.tmp_path.unlink()
        self.tmp_path = None
