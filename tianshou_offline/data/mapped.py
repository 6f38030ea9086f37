"""Reading rows of HDF5 datasets without copies: contiguous, unfiltered datasets are
memory-mapped read-only straight from the file; everything else is read with h5py.

Used by the D4RL layout reader (:mod:`tianshou_offline.data.d4rl_layout`), whose converter hands
the mapped rows to the writer, which copies them from the page cache into the output.
"""

from __future__ import annotations

import mmap
import os
from typing import Any

import h5py
import numpy as np


def mappable_fd(f: h5py.File) -> int | None:
    """The file descriptor of ``f`` when its datasets can be memory-mapped (see
    :func:`file_offset`): a plain (``sec2``) file without a user block, on a POSIX system."""
    if os.name != "posix":
        return None
    try:
        if f.driver != "sec2" or f.userblock_size:
            return None
        return int(f.id.get_vfd_handle())
    except (OSError, ValueError, TypeError, AttributeError, NotImplementedError):
        return None


def file_offset(ds: h5py.Dataset, dtype: np.dtype[Any], fd: int | None) -> int | None:
    """Where ``ds``'s values start in its file (descriptor ``fd``, from :func:`mappable_fd`),
    when they can be memory-mapped as ``dtype``.

    That is: a contiguous, fully allocated dataset without filters or external storage,
    stored with exactly ``dtype`` (numbers or booleans), in a file at least as long as the
    data. Otherwise None (read with h5py).
    """
    if fd is None or ds.dtype != dtype or dtype.kind not in "biuf" or ds.ndim == 0:
        return None
    try:
        offset = ds.id.get_offset()
        dcpl = ds.id.get_create_plist()
        if (
            offset is None
            or dcpl.get_layout() != h5py.h5d.CONTIGUOUS
            or dcpl.get_nfilters()
            or dcpl.get_external_count()
        ):
            return None
        nbytes = int(np.prod(ds.shape, dtype=np.int64)) * dtype.itemsize
        if ds.id.get_storage_size() != nbytes or os.fstat(fd).st_size < offset + nbytes:
            return None
    except (OSError, ValueError, TypeError, AttributeError, NotImplementedError):
        return None
    return int(offset)


def mapped_location(
    ds: h5py.Dataset, dtype: np.dtype[Any], fd: int | None
) -> tuple[int, int] | None:
    """``(fd, offset)`` for :func:`read_rows` when ``ds`` can be mapped, else None."""
    offset = file_offset(ds, dtype, fd)
    return None if fd is None or offset is None else (fd, offset)


def map_rows(
    ds: h5py.Dataset, fd: int, offset: int, start: int, stop: int, dtype: np.dtype[Any]
) -> np.ndarray:
    """Rows ``[start, stop)`` of a contiguous dataset as a read-only view of the page cache.

    No copy is made: the writer then copies the values from the page cache straight to the
    output. The mapping is released when the last view of it is.
    """
    row = int(np.prod(ds.shape[1:], dtype=np.int64)) * dtype.itemsize
    first = offset + start * row
    aligned = first - first % mmap.ALLOCATIONGRANULARITY
    length = (stop - start) * row + (first - aligned)
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)  # fault pages in at once
    m = mmap.mmap(fd, length, flags=flags, prot=mmap.PROT_READ, offset=aligned)
    count = (stop - start) * (row // dtype.itemsize)
    out = np.frombuffer(m, dtype=dtype, count=count, offset=first - aligned)
    return out.reshape(stop - start, *ds.shape[1:])


def read_rows(
    ds: h5py.Dataset,
    start: int,
    stop: int,
    dtype: np.dtype[Any],
    mapped: tuple[int, int] | None = None,
) -> np.ndarray:
    """Rows ``[start, stop)`` of ``ds`` as ``dtype``: mapped from the file when ``mapped``
    (``(fd, offset)``, see :func:`file_offset`) is given, else read into a new array (HDF5
    converts types)."""
    if mapped is not None and stop > start:
        return map_rows(ds, mapped[0], mapped[1], start, stop, dtype)
    out = np.empty((stop - start, *ds.shape[1:]), dtype=dtype)
    if stop > start:
        ds.read_direct(out, np.s_[start:stop])
    return out


def available_memory() -> int:
    """Bytes of memory available to a new allocation now (``MemAvailable`` of
    ``/proc/meminfo``; elsewhere the physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 1 << 62
