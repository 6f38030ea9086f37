"""Worker side of the RL Unplugged Atari converter: parse, verify and decode record chunks.

Each :class:`ChunkTask` holds a run of consecutive records plus up to ``S - 1`` records of
context before them and one look-ahead record after them (``S`` = frames per stack). For each
record ``i`` of the run the worker

1. parses the ``tf.train.Example`` (``o_t``/``o_tp1``: ``S`` PNGs; ``a_t``, ``a_tp1``,
   ``episode_id``: int64; ``r_t``, ``d_t``, ``episode_return``: float32);
2. derives ``terminated = d_t == 0``, ``truncated`` (the next record starts another
   ``episode_id`` without a terminal) and ``done`` (either, or the last record of the file);
3. checks ``a_t`` against the declared ``Discrete(n)`` action space and decodes **one** PNG,
   the newest frame ``o_t[S-1]``: the frame stored for row ``i`` (every PNG's header, its
   size, bit depth and colour type, is checked before it is decoded, so that a PNG announcing
   a huge image is refused without allocating it);
4. checks that Tianshou's rebuild of the stacks equals the record:

   - ``obs[i]`` is rebuilt from the stored frames of ``prev``-chain rows (``prev`` stops at
     an episode's first row); it must equal ``o_t[i]``;
   - ``obs_next[i]`` is rebuilt as ``obs[next(i)]`` (``next(i) = i`` where ``done[i]``); it
     must equal ``o_tp1[i]``.

   Frames are compared as PNG bytes first (equal bytes decode to equal pixels); frames whose
   bytes differ are decoded and compared pixel by pixel. A stack that differs is decoded in
   full and returned as a *patch* (see :mod:`tianshou_offline.data.framestack`).
"""

from __future__ import annotations

import itertools
import os
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tianshou_offline.converters._tfrecord import (
    PngDecoder,
    PngError,
    example_class,
    png_decoder,
)
from tianshou_offline.errors import DatasetFormatError

_FLOAT_FIELDS = ("r_t", "d_t", "episode_return")
_INT_FIELDS = ("a_t", "a_tp1", "episode_id")
_BYTES_FIELDS = ("o_t", "o_tp1")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IHDR = struct.Struct(">I4sIIBBBBB")


@dataclass(frozen=True)
class PngHeader:
    """A PNG's ``IHDR``: what decoding it would make, read without decoding it."""

    width: int
    height: int
    bit_depth: int
    colour_type: int
    """0 grayscale, 2 RGB, 3 palette, 4 grayscale + alpha, 6 RGBA."""

    @property
    def is_gray8(self) -> bool:
        """8-bit grayscale without alpha (an Atari frame)."""
        return self.bit_depth == 8 and self.colour_type == 0

    def describe(self) -> str:
        kind = {0: "grayscale", 2: "RGB", 3: "palette", 4: "grayscale+alpha", 6: "RGBA"}.get(
            self.colour_type, f"colour type {self.colour_type}"
        )
        return f"{self.width}x{self.height} {self.bit_depth}-bit {kind}"


def png_header(data: bytes) -> PngHeader:
    """The ``IHDR`` of a PNG (its first chunk, right after the signature), checked for its
    CRC and legal values; nothing is decompressed.

    :raises ValueError: not a PNG, or a malformed header.
    """
    if data[:8] != PNG_SIGNATURE:
        raise ValueError(f"does not start with the PNG signature (starts with {data[:8]!r})")
    if len(data) < 8 + _IHDR.size + 4:
        raise ValueError(f"{len(data)} bytes: too short for a PNG header")
    length, kind, width, height, depth, colour, comp, filt, interlace = _IHDR.unpack_from(data, 8)
    if kind != b"IHDR" or length != 13:
        raise ValueError(f"first chunk is {kind!r} of {length} bytes; expected IHDR of 13 bytes")
    crc = struct.unpack_from(">I", data, 8 + _IHDR.size)[0]
    if zlib.crc32(data[12 : 8 + _IHDR.size]) != crc:
        raise ValueError("IHDR CRC mismatch")
    if not (0 < width < 2**31 and 0 < height < 2**31) or comp != 0 or filt != 0 or interlace > 1:
        raise ValueError(
            f"IHDR holds {width}x{height}, compression {comp}, filter {filt}, interlace "
            f"{interlace}; not a valid PNG"
        )
    allowed = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
    if depth not in allowed.get(colour, ()):
        raise ValueError(f"IHDR: bit depth {depth} with colour type {colour} is not valid")
    return PngHeader(width, height, depth, colour)


MAX_FRAME_SIDE = 256
"""The largest frame width/height the first record may announce (RL Unplugged's frames are
84x84; ALE's raw screen is 210x160): a bound on the memory one chunk of frames takes."""


def check_png_frame(
    png: bytes, shape: tuple[int, int] | None, *, where: str, what: str
) -> tuple[int, int]:
    """Check a frame's PNG header (nothing is decoded): an 8-bit grayscale image of
    ``shape`` ``(H, W)`` (None: any size up to :data:`MAX_FRAME_SIDE`).

    :returns: ``(H, W)`` the header announces.
    :raises DatasetFormatError: not a PNG, or another size, bit depth or colour type (the
        message names ``where``, ``what``, the header found and what was expected).
    """
    try:
        head = png_header(png)
    except ValueError as e:
        raise DatasetFormatError(f"{where}: {what} is not a valid PNG: {e}") from e
    hw = (head.height, head.width)
    if shape is not None:
        ok = head.is_gray8 and hw == shape
        expected = f"an 8-bit grayscale {shape[0]}x{shape[1]} frame (as in the first record)"
    else:
        ok = head.is_gray8 and max(hw) <= MAX_FRAME_SIDE
        expected = (
            f"an 8-bit grayscale frame of at most {MAX_FRAME_SIDE}x{MAX_FRAME_SIDE} pixels "
            "(RL Unplugged's are 84x84)"
        )
    if not ok:
        raise DatasetFormatError(
            f"{where}: {what} is a PNG of {head.describe()} (width x height); expected "
            f"{expected}; not decoded"
        )
    return hw


@dataclass
class ChunkTask:
    """Records handed to a worker.

    :ivar path: the source file (error messages).
    :ivar records: raw ``tf.train.Example`` payloads: context, run, look-ahead.
    :ivar n_context: how many leading records are context (already converted).
    :ivar has_lookahead: whether the last record is the look-ahead (not converted here).
    :ivar first_row: file row (0-based record number) of the first record of the run.
    :ivar stream_offsets: uncompressed byte offset of every record (error messages).
    :ivar stack_num: frames per stack ``S``.
    :ivar frame_shape: ``(H, W)`` every frame must have.
    :ivar num_actions: ``n`` of the declared ``Discrete(n)`` action space: every ``a_t`` must
        be in ``0..n-1`` (None: not checked).
    """

    path: str
    records: list[bytes]
    n_context: int
    has_lookahead: bool
    first_row: int
    stream_offsets: list[int]
    stack_num: int
    frame_shape: tuple[int, int]
    num_actions: int | None = None


@dataclass
class ChunkResult:
    """Columns of the run's rows (``B`` records) and the patches they need.

    ``frames`` is ``(B, H, W)`` uint8; ``act``/``a_tp1``/``episode_id`` ``(B,)`` int64;
    ``rew``/``discount``/``episode_return`` ``(B,)`` float32; ``terminated``/``truncated``/``done``
    ``(B,)`` bool. ``patches`` holds ``(row in file, key (0 obs, 1 obs_next), (S, H, W) stack)``.
    """

    first_row: int
    frames: np.ndarray
    act: np.ndarray
    rew: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    done: np.ndarray
    a_tp1: np.ndarray
    episode_id: np.ndarray
    episode_return: np.ndarray
    discount: np.ndarray
    patches: list[tuple[int, int, np.ndarray]] = field(default_factory=list)
    pixel_compares: int = 0


_DECODER: tuple[str, PngDecoder] | None = None
_DECODER_NAME = os.environ.get("TIANSHOU_OFFLINE_PNG_DECODER", "auto")


def init_worker(decoder: str) -> None:
    """Pool initializer: choose the PNG decoder of this process."""
    global _DECODER, _DECODER_NAME
    _DECODER_NAME = decoder
    _DECODER = png_decoder(decoder)


def _decoder() -> PngDecoder:
    global _DECODER
    if _DECODER is None:
        _DECODER = png_decoder(_DECODER_NAME)
    return _DECODER[1]


def parse_example(
    payload: bytes, *, path: str, record: int, offset: int, message: Any = None
) -> tuple[list[bytes], list[bytes], tuple[int, int, int], tuple[float, float, float]]:
    """Parse one RL Unplugged Atari record.

    :returns: ``(o_t PNGs, o_tp1 PNGs, (a_t, a_tp1, episode_id), (r_t, d_t, episode_return))``.
    :raises DatasetFormatError: not an Example, or a feature is missing or has the wrong kind.
    """
    from google.protobuf.message import DecodeError

    ex = message if message is not None else example_class()()
    try:
        ex.ParseFromString(payload)
    except DecodeError as e:  # what protobuf raises for bytes that are not the message
        raise DatasetFormatError(
            f"{path}: record {record} (uncompressed byte offset {offset}) is not a "
            f"tf.train.Example: {e}"
        ) from e
    feats = ex.features.feature
    try:
        o_t = list(feats["o_t"].bytes_list.value)
        o_tp1 = list(feats["o_tp1"].bytes_list.value)
        if not o_t or not o_tp1:
            raise KeyError("o_t")
        ints = (
            int(feats["a_t"].int64_list.value[0]),
            int(feats["a_tp1"].int64_list.value[0]),
            int(feats["episode_id"].int64_list.value[0]),
        )
        floats = (
            float(feats["r_t"].float_list.value[0]),
            float(feats["d_t"].float_list.value[0]),
            float(feats["episode_return"].float_list.value[0]),
        )
    except (KeyError, IndexError):
        missing = [
            k
            for k, kind in (
                *((k, "bytes_list") for k in _BYTES_FIELDS),
                *((k, "int64_list") for k in _INT_FIELDS),
                *((k, "float_list") for k in _FLOAT_FIELDS),
            )
            if k not in feats or feats[k].WhichOneof("kind") != kind
        ]
        raise DatasetFormatError(
            f"{path}: record {record} (uncompressed byte offset {offset}): features "
            f"{', '.join(missing) or '?'} are missing or of the wrong kind; expected o_t, o_tp1 "
            "(bytes), a_t, a_tp1, episode_id (int64), r_t, d_t, episode_return (float)"
        ) from None
    return o_t, o_tp1, ints, floats


def process_chunk(task: ChunkTask) -> ChunkResult:
    """Parse, decode and verify one chunk (runs in a worker process)."""
    decode = _decoder()
    S = task.stack_num
    H, W = task.frame_shape
    recs = task.records
    n_all = len(recs)
    ctx = task.n_context
    n_run = n_all - ctx - (1 if task.has_lookahead else 0)
    row0 = task.first_row - ctx  # file row of recs[0]
    msg = example_class()()
    parse = msg.ParseFromString
    o_t: list[list[bytes]] = []
    o_tp1: list[list[bytes]] = []
    scalars: list[tuple[int, int, int, float, float, float]] = []
    for w, payload in enumerate(recs):
        try:  # fast path; parse_example() explains what is wrong
            parse(payload)
            f = msg.features.feature
            ot = list(f["o_t"].bytes_list.value)
            otp = list(f["o_tp1"].bytes_list.value)
            scalars.append(
                (
                    f["a_t"].int64_list.value[0],
                    f["a_tp1"].int64_list.value[0],
                    f["episode_id"].int64_list.value[0],
                    f["r_t"].float_list.value[0],
                    f["d_t"].float_list.value[0],
                    f["episode_return"].float_list.value[0],
                )
            )
        except Exception:
            parse_example(payload, path=task.path, record=row0 + w, offset=task.stream_offsets[w])
            raise  # pragma: no cover - parse_example raised already
        if len(ot) != S or len(otp) != S:
            raise DatasetFormatError(
                f"{task.path}: record {row0 + w} (uncompressed byte offset "
                f"{task.stream_offsets[w]}): o_t has {len(ot)} and o_tp1 {len(otp)} frames; "
                f"expected {S} each (as in the first record)"
            )
        o_t.append(ot)
        o_tp1.append(otp)
    ints = np.array([sc[:3] for sc in scalars], dtype=np.int64).reshape(n_all, 3)
    floats = np.array([sc[3:] for sc in scalars], dtype=np.float32).reshape(n_all, 3)

    def where(w: int) -> str:
        return f"{task.path}: record {row0 + w} (uncompressed byte offset {task.stream_offsets[w]})"

    n_act = task.num_actions
    if n_act is not None:
        act = ints[ctx : ctx + n_run, 0]
        bad = np.flatnonzero((act < 0) | (act >= n_act))
        if bad.size:
            w = ctx + int(bad[0])
            raise DatasetFormatError(
                f"{where(w)}: a_t is {int(ints[w, 0])}; expected an action of the declared "
                f"action space Discrete({n_act}), 0..{n_act - 1} ({bad.size} records of this "
                "chunk are outside it)"
            )

    def dec(png: bytes, w: int, what: str) -> np.ndarray:
        check_png_frame(png, (H, W), where=where(w), what=what)
        try:
            img = decode(png)
        except PngError as e:
            raise DatasetFormatError(f"{where(w)}: {what} is not a valid PNG: {e}") from e
        if img.ndim == 3 and img.shape[2] == 1:
            img = img[:, :, 0]
        if img.shape != (H, W) or img.dtype != np.uint8:
            raise DatasetFormatError(
                f"{where(w)}: {what} decodes to a {img.shape} {img.dtype} image; expected an "
                f"8-bit grayscale {H}x{W} frame"
            )
        return img

    term = floats[:, 1] == 0.0
    eid = ints[:, 2]
    done = term.copy()
    trunc = np.zeros(n_all, dtype=bool)
    trunc[:-1] = ~term[:-1] & (eid[1:] != eid[:-1])
    done |= trunc
    if not task.has_lookahead:
        done[-1] = True  # last record of the file: the episode is cut here
    done_l: list[bool] = done.tolist()
    # dones_before[w] = number of episode ends among rows 0..w-1 of the window
    dones_before = list(itertools.accumulate(done_l, initial=0))
    newest_b = [ot[S - 1] for ot in o_t]
    # frames: the stored (newest) frame of each record; context rows decoded on demand
    frames = np.empty((n_run, H, W), dtype=np.uint8)
    newest: dict[int, np.ndarray] = {}
    for k in range(n_run):
        w = ctx + k
        frames[k] = dec(newest_b[w], w, f"o_t[{S - 1}]")
        newest[w] = frames[k]

    def newest_frame(w: int) -> np.ndarray:
        img = newest.get(w)
        if img is None:
            img = dec(newest_b[w], w, f"o_t[{S - 1}]")
            newest[w] = img
        return img

    patches: list[tuple[int, int, np.ndarray]] = []
    pixel_compares = 0
    first_global = row0 == 0  # recs[0] is the file's first record
    for k in range(n_run):
        w = ctx + k
        ot = o_t[w]
        lo = w - (S - 1)
        # --- obs: Tianshou's prev chain (stops at an episode start and at the file's row 0)
        if lo >= 0 and dones_before[w] == dones_before[lo]:
            if ot[: S - 1] == newest_b[lo:w]:
                chain = None  # the common case: the S-1 previous rows of the same episode
            else:
                chain = list(range(lo, w + 1))
        else:
            chain = [w]
            j = w
            for _ in range(S - 1):
                if j > 0 and not done_l[j - 1]:
                    j -= 1
                elif j == 0 and not first_global:  # pragma: no cover - context covers S-1
                    raise AssertionError("context too short for the stack")
                chain.append(j)
            chain.reverse()
            if all(ot[pos] == newest_b[chain[pos]] for pos in range(S - 1)):
                chain = None
        if chain is not None:
            ok = True
            for pos in range(S - 1):
                if ot[pos] != newest_b[chain[pos]]:
                    pixel_compares += 1
                    if not np.array_equal(dec(ot[pos], w, f"o_t[{pos}]"), newest_frame(chain[pos])):
                        ok = False
                        break
            if not ok:
                stack = np.stack([dec(ot[p], w, f"o_t[{p}]") for p in range(S - 1)] + [frames[k]])
                patches.append((task.first_row + k, 0, stack))
        # --- obs_next: Tianshou's obs[next(i)], next(i) = i on an episode's last row
        nxt = w if done_l[w] else w + 1
        otp = o_tp1[w]
        target = o_t[nxt]
        if otp != target:
            ok = True
            for pos in range(S):
                if otp[pos] != target[pos]:
                    pixel_compares += 1
                    if not np.array_equal(
                        dec(otp[pos], w, f"o_tp1[{pos}]"), dec(target[pos], nxt, f"o_t[{pos}]")
                    ):
                        ok = False
                        break
            if not ok:
                stack = np.stack([dec(otp[p], w, f"o_tp1[{p}]") for p in range(S)])
                patches.append((task.first_row + k, 1, stack))
    run = slice(ctx, ctx + n_run)
    return ChunkResult(
        first_row=task.first_row,
        frames=frames,
        act=ints[run, 0].copy(),
        rew=floats[run, 0].copy(),
        terminated=term[run].copy(),
        truncated=trunc[run].copy(),
        done=done[run].copy(),
        a_tp1=ints[run, 1].copy(),
        episode_id=ints[run, 2].copy(),
        episode_return=floats[run, 2].copy(),
        discount=floats[run, 1].copy(),
        patches=patches,
        pixel_compares=pixel_compares,
    )
