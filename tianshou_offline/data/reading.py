"""Reading files that may be hostile: the one boundary between h5py's exceptions and the
package's errors, and checked access to what a file declares.

**The boundary.** h5py and libhdf5 answer corrupted metadata (a flipped bit in an object
header, a dangling link, a truncated heap) with plain ``OSError``, ``RuntimeError``,
``KeyError``, ``ValueError`` or ``TypeError``. :func:`read_errors` (a context manager) turns
any of them raised from inside h5py into a :class:`~tianshou_offline.errors.DatasetFormatError`
naming the file, with the original as ``__cause__``. Every file :func:`open_h5
<tianshou_offline.data.format.open_h5>` returns is a :class:`ReadOnlyFile` whose ``with``
block is such a boundary, so readers do not catch h5py's errors one call at a time. Errors
of the operating system while writing elsewhere (a full disk, a read-only directory) pass
through unchanged, as do the package's own errors and errors raised outside h5py (which
the checks below are there to prevent).

**Validate before trusting.** Counts, lengths, indices and shapes read from a file are
checked against each other and against what the file really stores before anything is
allocated or looped over: :func:`attr_int` / :func:`attr_bool` / :func:`attr_str` read
attributes with a type and a range; :func:`dataset`, :func:`rows` and :func:`check_rows`
check that an object is a dataset with a simple dataspace, the dtype expected and enough
rows; :func:`check_extent` refuses to read more bytes than the dataset's stored data can
hold (an extent declared far beyond the data, a chunk shape of gigabytes), so allocations are
bounded by the file's size.

**libhdf5's own traps.** Two corruptions make libhdf5 1.14 itself hang rather than fail,
and are defused before it reads the file: a global heap collection with a free-space object
of size 0 or an object whose size wraps around (:func:`check_global_heaps`, run by ``open_h5``) and, in SWMR-read mode (a file a
killed recorder left open), its metadata retries sleeping ever longer
(:func:`open_swmr_read`). A third makes it allocate: it allocates (and zeroes) the length a
variable-length value's stored descriptor claims (up to 4 GiB) before it looks the value up
in its heap; descriptors are checked against the file's size, those of attributes when the
file is opened (:func:`check_global_heaps`), those of datasets by :func:`check_extent`
(:func:`check_vlen_descriptors`). A fourth crashes it: a variable-length type whose kind (4
bits) is neither sequence nor string decodes, and converting a value of it dereferences a
NULL pointer (SIGSEGV in ``H5Aread``/``H5Dread``); such types, of attributes and of
datasets, are refused when the file is opened (the same scan), and :func:`attr_str`,
:func:`attr_int` and :func:`attr_bool` refuse an attribute whose type holds a
variable-length sequence before reading its value.

This module owns the boundary and opening files in SWMR-read mode; the checked accessors live
in :mod:`~tianshou_offline.data.validators` and the byte-level guards in
:mod:`~tianshou_offline.data.byte_guards`, both re-exported here.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import traceback
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import h5py

from tianshou_offline.data.byte_guards import (
    GCOL_FULL_SCAN_BYTES,
    GCOL_WINDOW_BYTES,
    check_global_heaps,
    check_vlen_descriptors,
)
from tianshou_offline.data.validators import (
    MAX_CHUNK_BYTES,
    MAX_FILTER_RATIO,
    as_text,
    attr_bool,
    attr_int,
    attr_str,
    check_extent,
    check_rows,
    dataset,
    read_index,
    row_bytes,
    rows,
    shape_of,
)
from tianshou_offline.errors import DatasetFormatError, TianshouOfflineError

__all__ = [
    "GCOL_FULL_SCAN_BYTES",
    "GCOL_WINDOW_BYTES",
    "MAX_CHUNK_BYTES",
    "MAX_FILTER_RATIO",
    "READ_ERRORS",
    "SWMR_READ_ATTEMPTS",
    "ReadOnlyFile",
    "as_text",
    "attr_bool",
    "attr_int",
    "attr_str",
    "check_extent",
    "check_global_heaps",
    "check_rows",
    "check_vlen_descriptors",
    "dataset",
    "open_swmr_read",
    "read_errors",
    "read_index",
    "row_bytes",
    "rows",
    "shape_of",
    "translate",
]

READ_ERRORS: tuple[type[Exception], ...] = (OSError, RuntimeError, KeyError, ValueError, TypeError)
"""What h5py raises for corrupted metadata (libhdf5's error stack mapped to builtins)."""

_SYSTEM_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("ENOSPC", "EDQUOT", "EACCES", "EPERM", "EROFS", "EMFILE", "ENFILE", "ENOMEM")
)
"""OS errors that are not about the file's content (they are never translated)."""

_WRITE_FAILED = re.compile(r"write failed|write request failed|unable to extend file")
"""libhdf5's words for a failed write (a full disk, an I/O error): never a reading error,
even inside a reading boundary (a block that reads one file and writes another)."""

_H5PY_DIR = os.path.dirname(h5py.__file__)


def _raised_in_h5py(exc: BaseException) -> bool:
    for frame in traceback.extract_tb(exc.__traceback__):
        name = frame.filename
        if name.startswith(_H5PY_DIR) or name.startswith("h5py/") or "/h5py/" in name:
            return True
    return False


def translate(path: str | os.PathLike[str], exc: BaseException) -> DatasetFormatError | None:
    """The typed error for a low-level exception raised by h5py while reading ``path``, or
    None when ``exc`` is not one (a package error, an OS error such as a full disk, or an
    exception raised outside h5py)."""
    if isinstance(exc, TianshouOfflineError) or not isinstance(exc, READ_ERRORS):
        return None
    if isinstance(exc, OSError) and exc.errno in _SYSTEM_ERRNOS:
        return None
    if _WRITE_FAILED.search(str(exc)):  # writing another file in the same block failed
        return None
    if not _raised_in_h5py(exc):
        return None
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, KeyError) and text.startswith(("'", '"')) and text.endswith(("'", '"')):
        text = text[1:-1]
    if any(marker in text for marker in _NEWER_FORMAT_MARKERS):
        return DatasetFormatError(
            f"{os.fspath(path)}: the file uses an HDF5 format version that this HDF5 "
            f"{h5py.version.hdf5_version} (h5py {h5py.version.version}) does not read: it was "
            "written by a newer HDF5 (e.g. h5py >= 3.15, HDF5 2.x, with libver='latest'), or "
            "it is damaged; read it with a newer h5py (pip install -U h5py; TensorFlow pins "
            "h5py < 3.15), or rewrite it there with 'tianshou-offline repack FILE OUT', which "
            f"writes HDF5 1.10-1.14 format ({type(exc).__name__}: {text})"
        )
    return DatasetFormatError(
        f"{os.fspath(path)}: cannot read the HDF5 file (corrupt or truncated?): "
        f"{type(exc).__name__}: {text}"
    )


_NEWER_FORMAT_MARKERS = (
    "bad version number",
    "bad object header version",
    "bad superblock version",
    "unknown superblock version",
    "wrong version number",
)
"""libhdf5's words when a file holds a format message of a version it does not know (what a
newer library writes with ``libver="latest"``)."""


@contextlib.contextmanager
def read_errors(path: str | os.PathLike[str]) -> Iterator[None]:
    """The boundary: h5py's low-level exceptions inside the block become
    :class:`DatasetFormatError` naming ``path`` (original as ``__cause__``)."""
    try:
        yield
    except READ_ERRORS as e:
        typed = translate(path, e)
        if typed is None:
            raise
        raise typed from e


SWMR_READ_ATTEMPTS = 24
"""Metadata read attempts of a file opened in SWMR-read mode (libhdf5's default is 100)."""


def _libhdf5() -> Any:
    """The libhdf5 that h5py loaded, through ctypes (None where it cannot be found)."""
    try:
        import ctypes

        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if "/libhdf5" in line and ".so" in line}
        for path in sorted(paths):
            if "libhdf5_hl" not in path:
                return ctypes.CDLL(path)
    except (OSError, IndexError, AttributeError):
        pass
    return None


def open_swmr_read(path: str | os.PathLike[str]) -> Any:
    """Open ``path`` read-only in SWMR-read mode (a file whose writer was killed is still
    marked open for writing), with :data:`SWMR_READ_ATTEMPTS` metadata read attempts.

    In SWMR mode libhdf5 rereads metadata whose checksum fails, sleeping twice as long before
    each attempt, to see past a writer's torn writes: with its default of 100 attempts a
    corrupted file makes a reader sleep for days. 24 attempts sleep about 30 ms in all.
    h5py does not expose ``H5Pset_metadata_read_attempts``; it is called on h5py's own
    libhdf5 (Linux), else the default applies.
    """
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
    lib = _libhdf5()
    if lib is not None:
        import ctypes

        lib.H5Pset_metadata_read_attempts(
            ctypes.c_int64(fapl.id), ctypes.c_uint(SWMR_READ_ATTEMPTS)
        )
    flags = h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ
    return h5py.File(h5py.h5f.open(os.fsencode(path), flags, fapl=fapl))


class ReadOnlyFile:
    """An open ``h5py.File`` whose ``with`` block is a :func:`read_errors` boundary (made by
    :func:`~tianshou_offline.data.format.open_h5`).

    ``with open_h5(path) as f:`` binds ``f`` to the ``h5py.File`` itself; outside a ``with``
    statement the object forwards attribute and item access to it (and ``close()``).
    """

    def __init__(self, file: Any) -> None:
        self.file = file
        self.filename: str = file.filename

    def __enter__(self) -> Any:
        return self.file

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.file.close()
        if exc is not None:
            typed = translate(self.filename, exc)
            if typed is not None:
                raise typed from exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)

    def __getitem__(self, key: str) -> Any:
        return self.file[key]

    def __contains__(self, key: str) -> bool:
        return key in self.file

    def __iter__(self) -> Iterator[str]:
        return iter(self.file)

    def __len__(self) -> int:
        return len(self.file)
