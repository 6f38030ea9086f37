"""Byte-level guards against libhdf5's own traps, run on a file's raw bytes before libhdf5
reads what they describe: global heap collections that would make it loop forever or whose
variable-length attribute values claim more bytes than the file holds
(:func:`check_global_heaps`, run when a file is opened), and the stored descriptors of
variable-length datasets (:func:`check_vlen_descriptors`, run by
:func:`~tianshou_offline.data.validators.check_extent`). See
:mod:`~tianshou_offline.data.reading` (which re-exports these).
"""

from __future__ import annotations

import os
import struct
from typing import Any

import h5py
import numpy as np

from tianshou_offline.errors import DatasetFormatError

__all__ = [
    "GCOL_FULL_SCAN_BYTES",
    "GCOL_WINDOW_BYTES",
    "check_global_heaps",
    "check_vlen_descriptors",
]


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
    (:func:`_check_vlen_types`): libhdf5 allocates (and zeroes) the length a descriptor
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
            _check_vlen_types(mm, ranges, size, offsets, os.fspath(path))


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
_VLEN_KINDS = (0, 1)
"""The kinds of variable-length type libhdf5 knows (the low 4 bits of that byte): 0, a
sequence; 1, a string. libhdf5 1.14 decodes any other kind without complaint and then
dereferences a NULL callback when it converts a value of it: ``H5Aread``/``H5Dread`` →
``H5T__conv_vlen`` → ``H5T__vlen_disk_write`` → ``H5VL_blob_put``, SIGSEGV (fuzz mutant
contiguous#1214, seed 4: one bit turned an attribute's kind 1 into 3)."""


def _vlen_type_candidates(mm: Any, lo: int, hi: int, want: bytes) -> list[int]:
    """Offsets in ``[lo, hi)`` where a variable-length datatype message of size ``want``
    (4 bytes) may start: class 9 in versions 1-5, a character set of 0 or 1; the second byte
    (kind and padding) may be anything, so that a corrupt kind is found too. Vectorized over
    copies of 8 MiB blocks: no array views ``mm``, so an exception raised meanwhile (a
    signal, ``KeyboardInterrupt``) does not keep it from closing."""
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
        ok &= np.isin(x[idx + 2], (0, 1)) & (x[idx + 3] == 0)
        out.extend(int(i) + start for i in idx[ok])
    return out


def _check_vlen_types(
    mm: Any, ranges: list[tuple[int, int]], size: int, offsets: int, fname: str
) -> None:
    """Refuse a variable-length datatype (a string, as h5py stores ``str`` attributes and
    string columns, or a sequence) that libhdf5 would crash on or blow up for, before it
    reads any value of it:

    - a kind other than sequence or string (:data:`_VLEN_KINDS`), in an attribute message or
      in the datatype message of an object header (a dataset's type): libhdf5 dereferences
      a NULL pointer converting its values;
    - an attribute whose stored descriptors claim more bytes than the file holds. An element
      of such an attribute is a descriptor (a ``uint32`` length, the address of a global heap
      collection and an ``uint32`` object index). libhdf5 allocates and zeroes ``length``
      times the base type's size for it before it looks the object up, so a corrupted length
      (up to 4 GiB) is a blow-up.

    Attribute messages are found wherever they are stored (object header chunks, or a
    fractal heap for dense attribute storage) by their datatype message; a candidate is
    checked only when the bytes around it parse as a whole attribute message (version, name,
    datatype, dataspace sizes consistent) or, for a dataset's type, as an object header
    message of type 3 (the datatype), so that array data that happens to hold such bytes is
    never refused. A variable-length type nested in a compound or an array type is not
    checked.
    """
    dt_size = 4 + offsets + 4
    want = dt_size.to_bytes(4, "little")
    for lo, hi in ranges:
        for q in _vlen_type_candidates(mm, lo, hi, want):
            if q + 16 > size:
                continue
            data = _attribute_data(mm, q, size)
            kind = mm[q + 1] & 0xF
            if kind not in _VLEN_KINDS and (data is not None or _is_datatype_message(mm, q)):
                raise DatasetFormatError(
                    f"{fname}: the variable-length datatype of "
                    f"{'an attribute' if data is not None else 'an object'} at byte {q} has "
                    f"kind {kind}; expected 0 (a sequence) or 1 (a string): libhdf5 crashes "
                    "reading its values; the file is damaged"
                )
            if data is None or mm[q + 1] not in _VLEN_CLASS_BITS:
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


_DATATYPE_MESSAGE = 0x0003
"""The object header message type of a datatype (a dataset's, or a committed datatype's)."""


def _is_datatype_message(mm: Any, q: int) -> bool:
    """Whether the bytes before ``q`` are the header of an object header message of type
    :data:`_DATATYPE_MESSAGE` large enough for a variable-length type (16 bytes or more): in
    a version 1 object header 2 bytes of type, 2 of size, a flags byte and 3 reserved zero
    bytes; in a version 2 one 1 byte of type, 2 of size, a flags byte and, where the header
    tracks creation order, 2 bytes of it, at a message boundary of the chunk it is in
    (:func:`_v2_message_at`: those few bytes alone occur in array data)."""
    if q >= 8 and mm[q - 3 : q] == b"\0\0\0":
        if int.from_bytes(mm[q - 8 : q - 6], "little") == _DATATYPE_MESSAGE:
            return int.from_bytes(mm[q - 6 : q - 4], "little") >= 16
    for head in (4, 6):  # version 2, without and with a creation order
        h = q - head
        if h >= 0 and mm[h] == _DATATYPE_MESSAGE and mm[h + 3] & 0x02 == 0:  # not shared
            if int.from_bytes(mm[h + 1 : h + 3], "little") >= 16:
                if _v2_message_at(mm, h, creation_order=head == 6):
                    return True
    return False


_V2_CHUNK_SEARCH = 1 << 16
"""How far before a message :func:`_v2_message_at` looks for the start of its chunk."""


def _v2_message_at(mm: Any, h: int, *, creation_order: bool) -> bool:
    """Whether a message starts at ``h`` in a version 2 object header chunk: walking the
    messages of the nearest chunk that starts before it (``OHDR``, or a continuation chunk
    ``OCHK``) by their sizes lands on ``h``."""
    lo = max(0, h - _V2_CHUNK_SEARCH)
    msg_head = 6 if creation_order else 4
    starts: list[tuple[int, int]] = []  # (first message, end of the chunk's messages)
    o = mm.rfind(b"OHDR", lo, h)
    if o >= 0 and o + 6 <= h and mm[o + 4] == 2:
        flags = mm[o + 5]
        if bool(flags & 0x04) == creation_order:
            p = o + 6 + (16 if flags & 0x20 else 0) + (4 if flags & 0x10 else 0)
            width = 1 << (flags & 0x03)
            size = int.from_bytes(mm[p : p + width], "little")
            starts.append((p + width, p + width + size))
    c = mm.rfind(b"OCHK", lo, h)
    if c >= 0:
        starts.append((c + 4, h + 1))
    for p, end in starts:
        while p < min(end, h + 1):
            if p == h:
                return True
            p += msg_head + int.from_bytes(mm[p + 1 : p + 3], "little")
    return False


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
    at, buf = p, b""  # the bytes from `at` on, read _WALK_BYTES at a time
    header = _OBJECT_HEADERS.get(lengths)
    unpack = header.unpack_from if header is not None else None
    while p < end:
        if p + obj_head > end:
            return None  # a tail too small for an object header: free space
        if p < at or p + obj_head > at + len(buf):
            at, buf = p, mm[p : min(end, p + _WALK_BYTES)]
        o = p - at
        if unpack is not None:
            idx, obj = unpack(buf, o)
        else:
            idx = int.from_bytes(buf[o : o + 2], "little")
            obj = int.from_bytes(buf[o + 8 : o + obj_head], "little")
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
_OBJECT_HEADERS = {n: struct.Struct(f"<H6x{c}") for n, c in ((2, "H"), (4, "I"), (8, "Q"))}
"""A global heap object's index and size, by the file's size of lengths."""
_WALK_BYTES = 1 << 20
"""Bytes of a collection :func:`_looping_object` reads at a time: it walks them as a local
``bytes`` object (a collection holds an object per string, a few dozen bytes each; reading
each header through the file view took 21 s for the 129 collections in the scanned windows
of a 1.6 GB file of strings, fuzz mutant large_writer#1538, seed 4)."""


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
