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
(:func:`check_vlen_descriptors`).
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
import numpy as np

from tianshou_offline.errors import DatasetFormatError, TianshouOfflineError

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

MAX_FILTER_RATIO = 1100
"""A filtered (compressed) chunk expands to at most this many times its stored size (gzip's
limit is about 1032:1; LZF's and shuffle's are far lower)."""
MAX_CHUNK_BYTES = 1 << 28
"""Largest chunk (256 MiB uncompressed) a reader accepts: libhdf5 holds one whole chunk in
memory to read any element of it."""
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


GCOL_FULL_SCAN_BYTES = 64 << 20
"""Files up to this size are scanned whole by :func:`check_global_heaps`; larger ones in their
first and last :data:`GCOL_WINDOW_BYTES` (where HDF5 writers put metadata)."""
GCOL_WINDOW_BYTES = 8 << 20
_GCOL = b"GCOL"


def check_global_heaps(path: str | os.PathLike[str], base: int = 0) -> None:
    """Refuse a file whose global heap collections (where variable-length strings, such as
    the format's attributes, live) would make libhdf5 loop forever.

    libhdf5 (1.14) walks a collection's objects by their sizes and never advances past a
    free-space object (index 0) of size 0, nor past an object whose padded size wraps around
    its ``size_t`` arithmetic: reading any string stored in such a collection hangs.
    Collections are found by their signature (``GCOL``, version 1, three zero bytes, a size of
    at least 4096 bytes that fits in the file), a pattern that random data does not produce by
    chance, and walked as libhdf5 walks them.

    The same pass checks the descriptors of variable-length attributes
    (:func:`_check_vlen_attributes`): libhdf5 allocates (and zeroes) the length a descriptor
    claims before it looks the object up in its heap.

    :param base: where the superblock is (a user block before it shifts every address).
    :raises DatasetFormatError: such a collection or descriptor, naming its byte offset.
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < base + 16:
            return
        mm = _FileView(fh.fileno(), size)
        lengths = _size_of_lengths(mm, base)
        if lengths is None:
            return  # libhdf5 refuses the superblock itself
        if size <= GCOL_FULL_SCAN_BYTES:
            ranges = [(0, size)]
        else:
            ranges = [(0, GCOL_WINDOW_BYTES), (size - GCOL_WINDOW_BYTES, size)]
        for lo, hi in ranges:
            pos = mm.find(_GCOL, lo, hi)
            while pos != -1:
                where = _looping_object(mm, pos, size, lengths)
                if where is not None:
                    raise DatasetFormatError(
                        f"{os.fspath(path)}: the global heap collection at byte {pos} is "
                        f"corrupt (the object at byte {where} has a size that makes "
                        "libhdf5 loop forever: 0, or one that wraps around); the file is "
                        "damaged"
                    )
                pos = mm.find(_GCOL, pos + 4, hi)
        offsets = _size_of_offsets(mm, base)
        if offsets is not None:
            _check_vlen_attributes(mm, ranges, size, offsets, os.fspath(path))


class _FileView:
    """Read-only bytes of an open file by position, read with ``os.pread`` in blocks of
    :attr:`BLOCK` bytes (the last :attr:`KEEP` blocks kept): indexing gives an ``int``,
    slicing ``bytes``, ``find``/``rfind`` search a range. Unlike a memory map of the whole
    file it needs no address space in proportion to the file's size (a map of a 500 MB file
    failed with ``ENOMEM`` under the fuzz harness's address-space limit), and the scan reads
    only the ranges it searches and the objects it walks."""

    BLOCK = 1 << 16
    KEEP = 64

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._size = size
        self._blocks: dict[int, bytes] = {}

    def __len__(self) -> int:
        return self._size

    def _block(self, k: int) -> bytes:
        got = self._blocks.pop(k, None)
        if got is None:
            got = os.pread(self._fd, self.BLOCK, k * self.BLOCK)
            if len(self._blocks) >= self.KEEP:
                del self._blocks[next(iter(self._blocks))]  # the least recently used
        self._blocks[k] = got
        return got

    def _read(self, lo: int, hi: int) -> bytes:
        lo, hi = max(0, lo), min(hi, self._size)
        if hi <= lo:
            return b""
        if hi - lo > self.KEEP * self.BLOCK // 2:  # a large range: one read, not cached
            return os.pread(self._fd, hi - lo, lo)
        first, last = lo // self.BLOCK, (hi - 1) // self.BLOCK
        data = b"".join(self._block(k) for k in range(first, last + 1))
        return data[lo - first * self.BLOCK : hi - first * self.BLOCK]

    def __getitem__(self, key: int | slice) -> Any:
        if isinstance(key, slice):
            if key.step not in (None, 1):
                raise ValueError("a _FileView slice has no step")
            lo = 0 if key.start is None else key.start
            hi = self._size if key.stop is None else key.stop
            return self._read(lo, hi)
        if not 0 <= key < self._size:
            raise IndexError(f"byte {key} is outside the file ({self._size} bytes)")
        return self._read(key, key + 1)[0]

    def find(self, sub: bytes, lo: int, hi: int) -> int:
        """The first offset of ``sub`` in ``[lo, hi)``, or -1 (read in 8 MiB chunks)."""
        step = 8 << 20
        for start in range(max(0, lo), min(hi, self._size), step):
            chunk = self._read(start, min(hi, start + step + len(sub) - 1))
            at = chunk.find(sub)
            if at >= 0:
                return start + at
        return -1

    def rfind(self, sub: bytes, lo: int, hi: int) -> int:
        """The last offset of ``sub`` in ``[lo, hi)``, or -1."""
        at = self._read(lo, hi).rfind(sub)
        return -1 if at < 0 else max(0, lo) + at


def _size_of_lengths(mm: Any, base: int) -> int | None:
    version = mm[base + 8]
    at = base + (14 if version in (0, 1) else 10 if version in (2, 3) else -1)
    if at < base or at >= len(mm):
        return None
    n = int(mm[at])
    return n if n in (2, 4, 8, 16) else None


def _size_of_offsets(mm: Any, base: int) -> int | None:
    version = mm[base + 8]
    at = base + (13 if version in (0, 1) else 9 if version in (2, 3) else -1)
    if at < base or at >= len(mm):
        return None
    n = int(mm[at])
    return n if n in (2, 4, 8) else None


_VLEN_CLASS_BITS = (0x00, 0x01, 0x10, 0x11, 0x20, 0x21)
"""The second byte of a variable-length datatype message: a sequence or a string, and its
padding."""


def _vlen_type_candidates(mm: Any, lo: int, hi: int, want: bytes) -> list[int]:
    """Offsets in ``[lo, hi)`` where a variable-length datatype message of size ``want``
    (4 bytes) may start: class 9 in versions 1-5, a sequence or string, a character set of
    0 or 1. Vectorized over copies of 8 MiB blocks: no array views ``mm``, so an exception
    raised meanwhile (a signal, ``KeyboardInterrupt``) does not keep it from closing."""
    out: list[int] = []
    step = 8 << 20
    for start in range(lo, hi, step):
        x = np.frombuffer(mm[start : min(hi, start + step) + 8], dtype=np.uint8)
        if x.size < 8:
            break
        idx = np.flatnonzero(x[4 : x.size - 3] == want[0])
        for k in (1, 2, 3):
            idx = idx[x[idx + 4 + k] == want[k]]
        v = x[idx]
        ok = ((v & 0xF) == 9) & (v >= 0x19) & (v <= 0x59)
        ok &= np.isin(x[idx + 1], _VLEN_CLASS_BITS) & (x[idx + 2] <= 1) & (x[idx + 3] == 0)
        out.extend(int(i) + start for i in idx[ok])
    return out


def _check_vlen_attributes(
    mm: Any, ranges: list[tuple[int, int]], size: int, offsets: int, fname: str
) -> None:
    """Refuse an attribute of a variable-length type (a string, as h5py stores ``str``
    attributes) whose stored descriptors claim more bytes than the file holds.

    An element of such an attribute is a descriptor (a ``uint32`` length, the address of a
    global heap collection and an ``uint32`` object index). libhdf5 allocates and zeroes
    ``length`` times the base type's size for it before it looks the object up, so a
    corrupted length (up to 4 GiB) is a blow-up. Attribute messages are found wherever they
    are stored (object header chunks, or a fractal heap for dense attribute storage) by their
    datatype message; a candidate is checked only when the bytes around it parse as a whole
    attribute message (version, name, datatype, dataspace sizes consistent).
    """
    dt_size = 4 + offsets + 4
    want = dt_size.to_bytes(4, "little")
    for lo, hi in ranges:
        for q in _vlen_type_candidates(mm, lo, hi, want):
            if q + 16 > size:
                continue
            data = _attribute_data(mm, q, size)
            if data is None:
                continue
            at, n = data
            base_size = int.from_bytes(mm[q + 12 : q + 16], "little") if mm[q + 1] & 0xF == 0 else 1
            n = min(n, (size - at) // dt_size)
            if n <= 0:
                continue
            raw = np.frombuffer(mm[at : at + n * dt_size], dtype="<u4")  # a copy: mm stays closable
            lengths = raw.reshape(n, dt_size // 4)[:, 0].astype(np.int64) * max(1, base_size)
            bad = np.flatnonzero(lengths > size)
            if bad.size:
                k = int(bad[0])
                raise DatasetFormatError(
                    f"{fname}: the variable-length attribute value at byte {at + k * dt_size} "
                    f"claims {int(lengths[k])} bytes, more than the whole file ({size} bytes); "
                    "the file is damaged"
                )


def _attribute_data(mm: Any, q: int, size: int) -> tuple[int, int] | None:
    """For a datatype message at ``q`` inside an attribute message: ``(offset of the
    attribute's data, number of elements)``; None when the bytes before and after ``q`` are
    not an attribute message."""
    # the name ends right before the datatype (version 1: then zero padding to 8 bytes)
    zeros = 0
    while zeros < min(8, q) and mm[q - 1 - zeros] == 0:
        zeros += 1
    end = q - 1 - zeros  # the name's last byte
    if zeros == 0 or end <= 0:
        return None
    start = mm.rfind(b"\0", max(0, end - 4096), end) + 1
    name_len = end + 2 - start  # with its terminating NUL
    for version, head in ((1, 8), (2, 8), (3, 9)):
        h = start - head
        if h < 0 or mm[h] != version or int.from_bytes(mm[h + 2 : h + 4], "little") != name_len:
            continue
        align = 8 if version == 1 else 1  # version 1 pads name, datatype, dataspace to 8

        def pad(x: int, align: int = align) -> int:
            return (x + align - 1) // align * align

        if h + head + pad(name_len) != q:
            continue
        if version > 1 and mm[h + 1] & 0x3:
            return None  # a shared datatype or dataspace: not stored here
        dt_len = int.from_bytes(mm[h + 4 : h + 6], "little")
        ds_len = int.from_bytes(mm[h + 6 : h + 8], "little")
        ds = q + pad(dt_len)
        if dt_len < 16 or ds + 8 > size:
            return None
        n = _dataspace_elements(mm, ds, ds_len, size)
        if n is None:
            return None
        return ds + pad(ds_len), n
    return None


def _dataspace_elements(mm: Any, ds: int, ds_len: int, size: int) -> int | None:
    """Elements of the dataspace message at ``ds`` (None when it does not parse)."""
    version, rank, flags = mm[ds], mm[ds + 1], mm[ds + 2]
    if version == 1:
        dims_at = ds + 8
    elif version == 2:
        if mm[ds + 3] == 2:
            return 0  # a null dataspace
        dims_at = ds + 4
    else:
        return None
    if rank > 32 or dims_at + 8 * rank > min(size, ds + ds_len) or flags & ~0x3:
        return None
    n = 1
    for i in range(rank):
        n *= int.from_bytes(mm[dims_at + 8 * i : dims_at + 8 * i + 8], "little")
    return n


def _looping_object(mm: Any, pos: int, file_size: int, lengths: int) -> int | None:
    """Where libhdf5's walk of the collection at ``pos`` would stop advancing, or None."""
    head = 8 + lengths
    if pos + head > file_size or mm[pos + 4] != 1 or mm[pos + 5 : pos + 8] != b"\0\0\0":
        return None
    size = int.from_bytes(mm[pos + 8 : pos + head], "little")
    if size < 4096 or pos + size > file_size:
        return None  # not a collection libhdf5 would read (it refuses these sizes)
    end = pos + size
    obj_head = 8 + lengths  # index (2), references (2), reserved (4), size
    p = pos + head
    while p < end:
        if p + obj_head > end:
            return None  # a tail too small for an object header: free space
        idx = int.from_bytes(mm[p : p + 2], "little")
        obj = int.from_bytes(mm[p + 8 : p + obj_head], "little")
        # libhdf5's size_t arithmetic: the padded size of an object of nearly 2**64 bytes
        # wraps to a few bytes, and a step of 2**63 or more moves the walk backwards
        need = obj if idx == 0 else obj_head + (obj + 7) % _WORD // 8 * 8
        need %= _WORD
        if need == 0 or need >= _WORD // 2:
            return p
        p += need
    return None


_WORD = 1 << 64
"""libhdf5's ``size_t`` wraps at this value."""


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


# --------------------------------------------------------------------------------------
# attributes
# --------------------------------------------------------------------------------------


def _where(obj: h5py.HLObject) -> str:
    return obj.name or "/"


def attr_int(
    obj: h5py.HLObject,
    name: str,
    default: int,
    *,
    lo: int | None = None,
    hi: int | None = None,
) -> int:
    """Attribute ``name`` of ``obj`` as an int in ``[lo, hi]`` (``default`` when absent).

    :raises DatasetFormatError: not an integer (a string, an array, a float with a fraction,
        NaN) or out of range; the message names the file and the attribute.
    """
    if name not in obj.attrs:
        return default
    raw = obj.attrs[name]
    value: int | None = None
    arr = np.asarray(raw) if not isinstance(raw, bytes | str) else None
    if arr is not None and arr.shape == () and arr.dtype.kind in "biu":
        value = int(arr.item())
    elif arr is not None and arr.shape == () and arr.dtype.kind == "f":
        f = float(arr)
        if np.isfinite(f) and f == int(f):
            value = int(f)
    if value is None or (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = (
            f"an integer in [{lo}, {hi}]" if lo is not None and hi is not None
            else f"an integer >= {lo}" if lo is not None
            else "an integer"
        )  # fmt: skip
        raise DatasetFormatError(
            f"{obj.file.filename}: attribute '{_where(obj)}@{name}' is {_show(raw)}; "
            f"expected {bounds}"
        )
    return value


def attr_bool(obj: h5py.HLObject, name: str, default: bool) -> bool:
    """Attribute ``name`` as a bool (a bool or the integers 0/1; ``default`` when absent)."""
    if name not in obj.attrs:
        return default
    raw = obj.attrs[name]
    arr = np.asarray(raw) if not isinstance(raw, bytes | str) else None
    if arr is not None and arr.shape == () and arr.dtype.kind in "biu" and int(arr) in (0, 1):
        return bool(arr)
    raise DatasetFormatError(
        f"{obj.file.filename}: attribute '{_where(obj)}@{name}' is {_show(raw)}; expected a bool"
    )


def attr_str(obj: h5py.HLObject, name: str, default: str = "") -> str:
    """Attribute ``name`` as text (bytes decoded as UTF-8, undecodable bytes replaced)."""
    if name not in obj.attrs:
        return default
    return as_text(obj.attrs[name])


def as_text(v: Any) -> str:
    """An attribute value as text."""
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    if isinstance(v, np.ndarray) and v.shape == ():
        return as_text(v.item())
    if isinstance(v, np.bytes_):
        return as_text(bytes(v))
    return str(v)


def _show(v: Any) -> str:
    text = repr(v.item() if isinstance(v, np.ndarray) and v.shape == () else v)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------------------
# datasets
# --------------------------------------------------------------------------------------


def dataset(group: h5py.Group, key: str, *, kinds: str | None = None) -> h5py.Dataset:
    """``group[key]`` checked to be a dataset with a simple (not null) dataspace and, when
    ``kinds`` is given, a dtype of one of those numpy kinds (``"biuf"``: numbers or bools).

    :raises DatasetFormatError: missing, a group, a null dataspace or the wrong dtype.
    """
    fname = group.file.filename
    where = f"{group.name.rstrip('/')}/{key}"
    if key not in group:
        raise DatasetFormatError(f"{fname}: '{where}' is missing")
    item = group[key]
    if not isinstance(item, h5py.Dataset):
        raise DatasetFormatError(
            f"{fname}: '{where}' is a {type(item).__name__}; expected a dataset"
        )
    if item.shape is None:
        raise DatasetFormatError(f"{fname}: '{where}' has a null dataspace; expected an array")
    if kinds is not None and item.dtype.kind not in kinds:
        raise DatasetFormatError(
            f"{fname}: '{where}' has dtype {item.dtype}; expected " + _kinds_text(kinds)
        )
    return item


def _kinds_text(kinds: str) -> str:
    names = {"b": "bool", "i": "int", "u": "uint", "f": "float", "S": "bytes", "O": "object"}
    return "/".join(names.get(k, k) for k in kinds) + " values"


def shape_of(ds: h5py.Dataset) -> tuple[int, ...]:
    """The dataset's shape (a null dataspace is refused)."""
    if ds.shape is None:
        raise DatasetFormatError(
            f"{ds.file.filename}: '{ds.name}' has a null dataspace; expected an array"
        )
    return tuple(int(x) for x in ds.shape)


def rows(ds: h5py.Dataset) -> int:
    """Length of the first axis (a scalar or null dataspace is refused)."""
    shape = shape_of(ds)
    if not shape:
        raise DatasetFormatError(
            f"{ds.file.filename}: '{ds.name}' is a scalar; expected one row per element"
        )
    return shape[0]


def check_rows(ds: h5py.Dataset, n: int, *, exact: bool = False, what: str = "") -> None:
    """``ds`` has at least (``exact``: exactly) ``n`` rows."""
    have = rows(ds)
    if have < n or (exact and have != n):
        raise DatasetFormatError(
            f"{ds.file.filename}: '{ds.name}' has {have} rows; expected "
            f"{'' if exact else 'at least '}{n}{f' ({what})' if what else ''}"
        )


def row_bytes(ds: h5py.Dataset) -> int:
    """Bytes of one row in memory (numpy's itemsize; 16 per variable-length element)."""
    shape = shape_of(ds)
    return int(np.prod(shape[1:], dtype=np.int64)) * int(ds.dtype.itemsize)


def check_extent(ds: h5py.Dataset, n_rows: int) -> None:
    """Refuse to read rows ``[0, n_rows)`` of ``ds`` when the file cannot hold them.

    An unfiltered dataset stores every byte it returns (its storage must be at least what is
    read); a filtered one expands each chunk at most :data:`MAX_FILTER_RATIO` times; a chunk
    is at most :data:`MAX_CHUNK_BYTES`. Reading data the file does not store would allocate
    (and return) fill values sized by whatever extent the file declares.
    """
    shape = shape_of(ds)
    need = (n_rows if shape else 1) * row_bytes(ds)
    fname = ds.file.filename
    if ds.chunks is not None:
        chunk_bytes = int(np.prod(ds.chunks, dtype=np.int64)) * ds.dtype.itemsize
        if chunk_bytes > MAX_CHUNK_BYTES:
            raise DatasetFormatError(
                f"{fname}: '{ds.name}' has chunks of shape {ds.chunks} ({chunk_bytes} bytes); "
                f"expected chunks of at most {MAX_CHUNK_BYTES} bytes"
            )
    if need == 0:
        return
    plist = ds.id.get_create_plist()
    layout = plist.get_layout()
    if layout not in (h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED, h5py.h5d.COMPACT):
        return  # virtual datasets: their sources are checked when read
    if plist.get_external_count():
        return  # raw data in external files: libhdf5 checks their sizes
    stored = int(ds.id.get_storage_size())
    filtered = layout == h5py.h5d.CHUNKED and plist.get_nfilters() > 0
    can_hold = stored * MAX_FILTER_RATIO if filtered else stored
    if need > can_hold:
        raise DatasetFormatError(
            f"{fname}: '{ds.name}' declares shape {shape} but stores {stored} bytes"
            f"{' (compressed)' if filtered else ''}; reading {n_rows} rows needs {need} bytes "
            "(truncated or tampered data)"
        )
    if ds.dtype.kind == "O" and (
        h5py.check_vlen_dtype(ds.dtype) is not None
        or getattr(h5py.check_string_dtype(ds.dtype), "length", 0) is None
    ):
        check_vlen_descriptors(ds, plist, layout)


_VLEN_FILTERS = {h5py.h5z.FILTER_DEFLATE, h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_FLETCHER32}
"""Filters whose chunks :func:`check_vlen_descriptors` can undo (others are not checked)."""


def check_vlen_descriptors(ds: h5py.Dataset, plist: Any, layout: int) -> None:
    """Refuse a variable-length dataset (strings, sequences) whose stored descriptors claim
    more bytes than the file holds, before libhdf5 reads it: libhdf5 allocates and zeroes the
    length a descriptor claims (a ``uint32``, up to 4 GiB times the base type's size) before
    it looks the object up in the global heap.

    The descriptors are the dataset's raw data: read from the file (contiguous layout) or chunk
    by chunk (chunked; deflate, shuffle and Fletcher-32 undone, chunks with other filters not
    checked; a chunk that lies beyond the end of the file is refused). Compact datasets keep
    theirs in the object header, where they are not checked.
    """
    fname = ds.file.filename
    size = os.path.getsize(fname)
    offsets, _ = ds.file.id.get_create_plist().get_sizes()
    elem = 4 + int(offsets) + 4
    vlen = h5py.check_vlen_dtype(ds.dtype)
    base = 1 if vlen is None else max(1, np.dtype(vlen).itemsize)
    pieces: list[tuple[int, bytes]] = []  # (file offset, raw descriptor bytes)
    with open(fname, "rb") as fh:
        if layout == h5py.h5d.CONTIGUOUS:
            at = ds.id.get_offset()
            if at is None:
                return
            fh.seek(at)
            pieces.append((at, fh.read(min(int(ds.id.get_storage_size()), size))))
        elif layout == h5py.h5d.CHUNKED:
            filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
            if not set(filters) <= _VLEN_FILTERS:
                return
            chunk_bytes = int(np.prod(ds.chunks, dtype=np.int64)) * elem
            infos: list[Any] = []
            try:
                ds.id.chunk_iter(infos.append)  # libhdf5 >= 1.12.3: one pass over the index
            except (AttributeError, NotImplementedError):
                infos = [ds.id.get_chunk_info(i) for i in range(ds.id.get_num_chunks())]
            for info in infos:
                at, n = info.byte_offset, int(info.size)
                if at is None or at + n > size:
                    raise DatasetFormatError(
                        f"{fname}: '{ds.name}' has a chunk of {n} bytes at byte {at}, beyond the "
                        f"end of the file ({size} bytes); the file is damaged"
                    )
                fh.seek(at)
                raw = _unfilter(fh.read(n), filters, int(info.filter_mask), elem, chunk_bytes)
                if raw is not None:
                    pieces.append((at, raw))
    for at, raw in pieces:
        k = len(raw) // elem
        lengths = np.frombuffer(raw[: k * elem], dtype="<u4").reshape(k, elem // 4)[:, 0]
        bad = np.flatnonzero(lengths.astype(np.int64) * base > size)
        if bad.size:
            i = int(bad[0])
            raise DatasetFormatError(
                f"{fname}: element {i} of '{ds.name}' stored at byte {at} claims "
                f"{int(lengths[i]) * base} bytes, more than the whole file ({size} bytes); the "
                "file is damaged"
            )


def _unfilter(raw: bytes, filters: list[int], mask: int, elem: int, limit: int) -> bytes | None:
    """A chunk's stored bytes with its filters undone (None when they cannot be)."""
    import zlib

    for i in reversed(range(len(filters))):
        if mask & (1 << i):
            continue  # this filter was skipped for this chunk
        if filters[i] == h5py.h5z.FILTER_FLETCHER32:
            raw = raw[:-4]
        elif filters[i] == h5py.h5z.FILTER_DEFLATE:
            try:
                raw = zlib.decompressobj().decompress(raw, limit)
            except zlib.error:
                return None  # libhdf5 refuses it too
        elif filters[i] == h5py.h5z.FILTER_SHUFFLE:
            k = len(raw) // elem
            body = np.frombuffer(raw[: k * elem], dtype=np.uint8).reshape(elem, k)
            raw = body.T.tobytes() + raw[k * elem :]
    return raw


def read_index(ds: h5py.Dataset, n: int) -> np.ndarray:
    """The first ``n`` values of a 1-D integer dataset (an index, a count), as int64."""
    if ds.ndim != 1 or ds.dtype.kind not in "iu":
        raise DatasetFormatError(
            f"{ds.file.filename}: '{ds.name}' has shape {ds.shape} and dtype {ds.dtype}; "
            "expected a 1-D array of integers"
        )
    check_rows(ds, n)
    check_extent(ds, n)
    if ds.dtype.kind == "u" and ds.dtype.itemsize >= 8:
        raw = ds[:n]
        if raw.size and int(raw.max()) > np.iinfo(np.int64).max:
            raise DatasetFormatError(
                f"{ds.file.filename}: '{ds.name}' holds {int(raw.max())}; expected values "
                "below 2**63"
            )
        return np.asarray(raw, dtype=np.int64)
    out: np.ndarray = np.asarray(ds[:n], dtype=np.int64)
    return out
