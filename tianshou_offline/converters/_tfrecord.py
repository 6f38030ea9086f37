"""TFRecord files without TensorFlow: framing, CRC checks, ``tf.train.Example`` parsing, PNG.

A TFRecord file (optionally GZIP- or ZLIB-compressed as a whole) is a sequence of records::

    uint64 length          little endian
    uint32 masked_crc32c(length bytes)
    byte   data[length]
    uint32 masked_crc32c(data)

with ``masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 (mod 2**32)``. :class:`TFRecordChunkReader`
streams such a file in chunks of whole records, verifying both CRCs of every record, and
raises :class:`~tianshou_offline.errors.DatasetFormatError` naming the file, the record number
and its byte offset in the (uncompressed) record stream when something is wrong.

``tf.train.Example`` messages are parsed with the ``protobuf`` package from a descriptor built
here from the public field numbers of ``example.proto``/``feature.proto`` (no generated code,
no TensorFlow). PNGs are decoded with ``pyspng`` when installed, else OpenCV, else Pillow.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np

from tianshou_offline.errors import DatasetFormatError, SourceNotFoundError

log = logging.getLogger(__name__)

Compression = Literal["auto", "gzip", "zlib", "none"]

_MASK_DELTA = 0xA282EAD8
_HEADER = struct.Struct("<QI")
_U32 = struct.Struct("<I")
_GZIP_MAGIC = b"\x1f\x8b"
MAX_RECORD_BYTES = 1 << 28
"""A record longer than this (256 MiB) is refused before it is buffered: RL Unplugged's
records are tens of kilobytes, and a corrupt length field must not make the reader hold the
rest of the file in memory waiting for it."""


# --------------------------------------------------------------------------------------
# CRC32C
# --------------------------------------------------------------------------------------


def _load_crc32c() -> Callable[[bytes | memoryview], int]:
    try:
        import crc32c as _crc32c_mod

        fn: Callable[[bytes | memoryview], int] = _crc32c_mod.crc32c
        return fn
    except ImportError:  # pragma: no cover - exercised only without the extra
        pass
    try:  # pragma: no cover
        import google_crc32c

        def _g(data: bytes | memoryview) -> int:
            return int(google_crc32c.value(bytes(data)))

        return _g
    except ImportError:  # pragma: no cover
        pass
    raise ImportError(  # pragma: no cover
        "verifying TFRecord CRCs needs the 'crc32c' package: pip install 'tianshou-offline[rlu]'"
    )


def masked_crc32c(data: bytes | memoryview, crc32c: Callable[[bytes | memoryview], int]) -> int:
    """The TFRecord checksum of ``data``: CRC32C, rotated right by 15 bits, plus a constant."""
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF


# --------------------------------------------------------------------------------------
# framing
# --------------------------------------------------------------------------------------


@dataclass
class RecordChunk:
    """Whole TFRecord records, consecutive in the file.

    :ivar data: the raw bytes holding the records' payloads.
    :ivar starts: ``(n,)`` int64 offsets of each payload inside ``data``.
    :ivar lengths: ``(n,)`` int64 payload lengths in bytes.
    :ivar first_record: the 0-based number of the first record in the file.
    :ivar stream_offsets: ``(n,)`` int64 offsets of each record's header in the
        uncompressed record stream (for error messages).
    """

    data: bytes
    starts: np.ndarray
    lengths: np.ndarray
    first_record: int
    stream_offsets: np.ndarray

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    def record(self, i: int) -> bytes:
        """The payload of the ``i``-th record of this chunk."""
        s = int(self.starts[i])
        return self.data[s : s + int(self.lengths[i])]


def detect_compression(path: Path) -> Literal["gzip", "none"]:
    """``"gzip"`` when the file starts with the gzip magic bytes, else ``"none"``."""
    with open(path, "rb") as fh:
        head = fh.read(2)
    return "gzip" if head == _GZIP_MAGIC else "none"


class TFRecordChunkReader:
    """Stream a TFRecord file as :class:`RecordChunk` s, verifying every CRC.

    Memory is bounded by ``chunk_bytes`` (plus one record): the file is read and decompressed
    incrementally.

    :param path: the TFRecord file.
    :param compression: ``"auto"`` (gzip if the file starts with the gzip magic), ``"gzip"``,
        ``"zlib"`` or ``"none"``.
    :param chunk_bytes: target uncompressed size of one chunk.
    :param max_records: at most this many records per chunk.
    :param verify_crc: check the length and data CRCs of every record.
    :param on_read: called with the number of *file* bytes consumed (progress bars).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        compression: Compression = "auto",
        chunk_bytes: int = 4 << 20,
        max_records: int = 2048,
        verify_crc: bool = True,
        on_read: Callable[[int], None] | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise SourceNotFoundError(f"{self.path}: no such file")
        if self.path.is_dir():
            raise DatasetFormatError(f"{self.path}: is a directory, expected a TFRecord file")
        if compression == "auto":
            compression = detect_compression(self.path)
        self.compression = compression
        self.chunk_bytes = chunk_bytes
        self.max_records = max_records
        self.verify_crc = verify_crc
        self.on_read = on_read
        self._crc32c = _load_crc32c() if verify_crc else None
        self.records_read = 0
        self.bytes_read = 0  # uncompressed stream bytes consumed by whole records

    def _file_blocks(self, fh: BinaryIO, block: int) -> Iterator[bytes]:
        """Yield the file's bytes in blocks, each reported to ``on_read``."""
        while True:
            b = fh.read(block)
            if not b:
                return
            if self.on_read is not None:
                self.on_read(len(b))
            yield b

    def _raw_blocks(self, block: int = 1 << 20) -> Iterator[bytes]:
        """Yield the uncompressed byte stream in blocks."""
        with open(self.path, "rb") as fh:
            if self.compression == "none":
                yield from self._file_blocks(fh, block)
                return
            wbits = 31 if self.compression == "gzip" else 15
            d = zlib.decompressobj(wbits)
            fed = False  # has the current decompressor seen any input?
            compressed_pos = 0
            for b in self._file_blocks(fh, block):
                compressed_pos += len(b)
                while b:
                    fed = True
                    try:
                        out = d.decompress(b)
                    except zlib.error as e:
                        raise DatasetFormatError(
                            f"{self.path}: {self.compression} stream is corrupt near compressed "
                            f"byte {compressed_pos} (after {self.records_read} whole records): {e}"
                        ) from e
                    if out:
                        yield out
                    if d.eof:
                        # concatenated gzip members: a new decompressor takes what is left
                        b = d.unused_data
                        d = zlib.decompressobj(wbits)
                        fed = False
                    else:
                        b = b""
            if fed and not d.eof:
                tail = d.flush()
                if tail:
                    yield tail
                raise DatasetFormatError(
                    f"{self.path}: file is truncated: the {self.compression} stream ends before "
                    f"its end marker; record {self.records_read} (uncompressed byte offset "
                    f"{self.bytes_read}) and everything after it is missing or incomplete "
                    "(download it again)"
                )

    def __iter__(self) -> Iterator[RecordChunk]:
        buf = bytearray()
        stream_base = 0  # stream offset of buf[0]
        crc = self._crc32c
        path = self.path
        unpack_header = _HEADER.unpack_from
        unpack_u32 = _U32.unpack_from
        delta = _MASK_DELTA
        max_records = self.max_records
        chunk_bytes = self.chunk_bytes
        starts: list[int] = []
        lengths: list[int] = []
        records = self.records_read

        def fail(pos: int, what: str) -> DatasetFormatError:
            return DatasetFormatError(
                f"{path}: record {records} (uncompressed byte offset {stream_base + pos}): "
                f"{what}; the file is corrupt (download it again)"
            )

        pos = 0  # parse position in buf
        chunk_begin = 0  # buf offset of the first record not yet emitted
        for block in self._raw_blocks():
            buf += block
            n = len(buf)
            mv = memoryview(buf)
            try:
                while n - pos >= 12:
                    length, len_crc = unpack_header(buf, pos)
                    end = pos + 16 + length
                    if crc is not None:
                        c = crc(mv[pos : pos + 8])
                        if ((((c >> 15) | (c << 17)) + delta) & 0xFFFFFFFF) != len_crc:
                            raise fail(pos, "length CRC mismatch")
                    if length > MAX_RECORD_BYTES:
                        raise fail(
                            pos, f"the length field says {length} bytes; expected at most "
                            f"{MAX_RECORD_BYTES}"
                        )
                    if end > n:
                        break
                    if crc is not None:
                        c = crc(mv[pos + 12 : end - 4])
                        got = (((c >> 15) | (c << 17)) + delta) & 0xFFFFFFFF
                        stored = unpack_u32(buf, end - 4)[0]
                        if got != stored:
                            raise fail(
                                pos,
                                f"data CRC mismatch (stored 0x{stored:08x}, computed 0x{got:08x})",
                            )
                    starts.append(pos + 12)
                    lengths.append(length)
                    pos = end
                    records += 1
                    if len(starts) >= max_records or pos - chunk_begin >= chunk_bytes:
                        yield self._emit(
                            buf, chunk_begin, pos, starts, lengths, records, stream_base
                        )
                        chunk_begin = pos
            finally:
                mv.release()
            self.records_read = records
            self.bytes_read = stream_base + pos
            # drop what was emitted; keep the records of the chunk in progress and the tail
            if chunk_begin:
                del buf[:chunk_begin]
                stream_base += chunk_begin
                pos -= chunk_begin
                if starts:
                    starts = [x - chunk_begin for x in starts]
                chunk_begin = 0
        self.records_read = records
        if starts:
            yield self._emit(buf, chunk_begin, pos, starts, lengths, records, stream_base)
        leftover = len(buf) - pos
        if leftover:
            if leftover < 12:
                what = f"{leftover} bytes of a 12-byte record header"
            else:
                length = _HEADER.unpack_from(buf, pos)[0]
                what = f"{leftover - 12} of the {length + 4} bytes the record header announces"
            raise DatasetFormatError(
                f"{path}: file is truncated: record {records} (uncompressed byte offset "
                f"{stream_base + pos}) is incomplete: the file ends after {what}; download it again"
            )

    @staticmethod
    def _emit(
        buf: bytearray,
        begin: int,
        end: int,
        starts: list[int],
        lengths: list[int],
        records: int,
        stream_base: int,
    ) -> RecordChunk:
        st = np.asarray(starts, dtype=np.int64)
        chunk = RecordChunk(
            data=bytes(buf[begin:end]),
            starts=st - begin,
            lengths=np.asarray(lengths, dtype=np.int64),
            first_record=records - len(starts),
            stream_offsets=st - 12 + stream_base,
        )
        starts.clear()
        lengths.clear()
        return chunk


def iter_records(
    path: str | os.PathLike[str], *, compression: Compression = "auto", verify_crc: bool = True
) -> Iterator[bytes]:
    """Yield every record payload of a TFRecord file (CRC-checked)."""
    for chunk in TFRecordChunkReader(path, compression=compression, verify_crc=verify_crc):
        for i in range(len(chunk)):
            yield chunk.record(i)


# --------------------------------------------------------------------------------------
# tf.train.Example without TensorFlow
# --------------------------------------------------------------------------------------

_EXAMPLE_CLASS: Any = None


def example_class() -> Any:
    """The ``tf.train.Example`` message class, built from a descriptor (cached per process).

    Field numbers follow TensorFlow's public ``example.proto``/``feature.proto``:
    ``Example.features = 1``; ``Features.feature = 1`` (map<string, Feature>);
    ``Feature.bytes_list = 1``, ``float_list = 2``, ``int64_list = 3`` (oneof);
    ``*List.value = 1`` (floats and int64s packed).
    """
    global _EXAMPLE_CLASS
    if _EXAMPLE_CLASS is not None:
        return _EXAMPLE_CLASS
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    except ImportError as e:  # pragma: no cover
        raise ImportError(
            "parsing tf.train.Example records needs 'protobuf': pip install 'tianshou-offline[rlu]'"
        ) from e
    f = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(
        name="tianshou_offline_tf_example.proto", package="tianshou_offline.tf", syntax="proto3"
    )
    pkg = ".tianshou_offline.tf."
    m = fdp.message_type.add(name="BytesList")
    m.field.add(name="value", number=1, type=f.TYPE_BYTES, label=f.LABEL_REPEATED)
    for name, ftype in (("FloatList", f.TYPE_FLOAT), ("Int64List", f.TYPE_INT64)):
        m = fdp.message_type.add(name=name)
        fld = m.field.add(name="value", number=1, type=ftype, label=f.LABEL_REPEATED)
        fld.options.packed = True
    m = fdp.message_type.add(name="Feature")
    m.oneof_decl.add(name="kind")
    for number, (name, tname) in enumerate(
        (("bytes_list", "BytesList"), ("float_list", "FloatList"), ("int64_list", "Int64List")),
        start=1,
    ):
        m.field.add(
            name=name,
            number=number,
            type=f.TYPE_MESSAGE,
            label=f.LABEL_OPTIONAL,
            type_name=pkg + tname,
            oneof_index=0,
        )
    m = fdp.message_type.add(name="Features")
    entry = m.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    entry.field.add(
        name="value",
        number=2,
        type=f.TYPE_MESSAGE,
        label=f.LABEL_OPTIONAL,
        type_name=pkg + "Feature",
    )
    m.field.add(
        name="feature",
        number=1,
        type=f.TYPE_MESSAGE,
        label=f.LABEL_REPEATED,
        type_name=pkg + "Features.FeatureEntry",
    )
    m = fdp.message_type.add(name="Example")
    m.field.add(
        name="features",
        number=1,
        type=f.TYPE_MESSAGE,
        label=f.LABEL_OPTIONAL,
        type_name=pkg + "Features",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    _EXAMPLE_CLASS = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tianshou_offline.tf.Example")
    )
    return _EXAMPLE_CLASS


# --------------------------------------------------------------------------------------
# PNG decoding
# --------------------------------------------------------------------------------------

PngDecoder = Callable[[bytes], np.ndarray]


class PngError(ValueError):
    """A PNG a decoder cannot read: what its library raised about the bytes (pyspng's
    ``RuntimeError``, OpenCV's ``cv2.error`` or no image, Pillow's ``OSError``,
    ``SyntaxError``, ``ValueError``, ...), or a format or mode that is not a grayscale PNG.
    The converters turn it into a :class:`~tianshou_offline.errors.DatasetFormatError`
    naming the record; anything else a decoder raises is a bug and passes through."""


def _decoder_pyspng() -> PngDecoder:
    import pyspng

    load = pyspng.load

    def decode(png: bytes) -> np.ndarray:
        try:
            return np.asarray(load(png))
        except (RuntimeError, ValueError) as e:  # "pyspng: could not decode ..."
            raise PngError(str(e)) from e

    return decode


def _decoder_cv2() -> PngDecoder:
    import cv2

    def decode(png: bytes) -> np.ndarray:
        try:
            arr = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        except cv2.error as e:
            raise PngError(f"OpenCV: {e}") from e
        if arr is None:
            raise PngError("OpenCV could not decode the PNG")
        return np.asarray(arr)

    return decode


def _decoder_pillow() -> PngDecoder:
    from PIL import Image

    def decode(png: bytes) -> np.ndarray:
        try:
            with Image.open(io.BytesIO(png)) as im:
                if im.format != "PNG":
                    raise PngError(f"not a PNG image ({im.format})")
                if im.mode not in ("L", "I;16", "I;16B", "I"):
                    raise PngError(f"PNG mode {im.mode!r} is not grayscale")
                return np.asarray(im)
        except PngError:
            raise
        # UnidentifiedImageError and truncated data are OSErrors; broken chunks SyntaxError
        except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error,
                Image.DecompressionBombError) as e:  # fmt: skip
            raise PngError(f"Pillow: {type(e).__name__}: {e}") from e

    return decode


_DECODERS: dict[str, Callable[[], PngDecoder]] = {
    "pyspng": _decoder_pyspng,
    "cv2": _decoder_cv2,
    "pillow": _decoder_pillow,
}


def png_decoder(name: str = "auto") -> tuple[str, PngDecoder]:
    """Pick a PNG decoder: ``"pyspng"``, ``"cv2"``, ``"pillow"``, or ``"auto"`` (first found).

    :returns: ``(name, decode)`` where ``decode(png_bytes)`` returns the image as stored
        (2-D for grayscale).
    """
    names = list(_DECODERS) if name == "auto" else [name]
    errors = []
    for n in names:
        if n not in _DECODERS:
            raise ValueError(f"unknown PNG decoder {n!r}; expected one of {', '.join(_DECODERS)}")
        try:
            return n, _DECODERS[n]()
        except ImportError as e:
            errors.append(f"{n}: {e}")
    raise ImportError(
        "no PNG decoder available (" + "; ".join(errors) + "); pip install pyspng (or pillow)"
    )
