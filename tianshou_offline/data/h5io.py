"""Low-level HDF5 I/O of :class:`~tianshou_offline.data.writer.BufferWriter`.

Attributes through h5py's low-level calls, disk blocks reserved ahead of the writes
(Linux ``fallocate``), resizing columns and writing rows, whole chunks handed to libhdf5
as they are (``H5Dwrite_chunk``).
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import numpy as np

_PART_BYTES = 1 << 20
"""Pending parts at least this large are written as they are; smaller ones are joined first."""
_STR_DTYPE = h5py.string_dtype("utf-8")
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
    reserving them page by page (ext4 delayed allocation: ~15% of the cost of writing).
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
