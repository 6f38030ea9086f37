"""Tianshou's own ``save_hdf5`` layout (``ReplayBuffer``, and ``VectorReplayBuffer`` /
``ReplayBufferManager``), read without unpickling anything: which rows of ``_meta`` hold data,
in chronological order.

A ``ReplayBuffer`` file stores ``maxsize`` rows; ``_size`` of them hold data and, once the
circular buffer is full, the oldest row is ``_insertion_idx``. A ``VectorReplayBuffer`` file
concatenates ``buffer_num`` sub-buffers: sub-buffer ``i`` owns rows
``[_offset[i], _offset[i + 1])`` (the last one up to ``maxsize``), holds ``_lengths[i]`` rows
of data, and its newest row is ``last_index[i]``. Every one of these numbers is checked
against the others before a row is read.
"""

from __future__ import annotations

import h5py
import numpy as np

from tianshou_offline.data.reading import attr_int, dataset, read_index, rows
from tianshou_offline.errors import DatasetFormatError

Segments = list[tuple[int, int]]
"""Chronological list of ``[start, stop)`` row ranges of the stored arrays."""


def tianshou_segments(f: h5py.File, layout: str) -> tuple[Segments, list[int]]:
    """Chronological row ranges of a Tianshou ``save_hdf5`` file, and the positions (in the
    chronological order) of the rows that end a sub-buffer, whose episode must end there
    even if it was unfinished.

    :param layout: ``"tianshou"`` or ``"tianshou_vector"`` (see ``detect_layout``).
    :raises DatasetFormatError: sizes, offsets or indices that contradict each other.
    """
    fname = f.filename
    maxsize = attr_int(f, "maxsize", 0, lo=0)
    if layout == "tianshou":
        size = attr_int(f, "_size", 0, lo=0, hi=maxsize)
        ins = attr_int(f, "_insertion_idx", size % max(maxsize, 1), lo=0, hi=max(maxsize - 1, 0))
        if size < maxsize or ins == 0:
            return ([(0, size)] if size else []), []
        return [(ins, maxsize), (0, ins)], []
    names = ("_offset", "_lengths", "last_index")
    missing = [k for k in names if k not in f]
    if missing:
        raise DatasetFormatError(
            f"{fname}: VectorReplayBuffer file lacks {', '.join(repr(m) for m in missing)}; "
            "expected '_offset', '_lengths' and 'last_index'"
        )
    k = rows(dataset(f, "_offset"))
    offsets, lengths, last_index = (read_index(dataset(f, key), k) for key in names)
    for key in names[1:]:
        if rows(f[key]) != k:
            raise DatasetFormatError(
                f"{fname}: '{key}' has {rows(f[key])} entries; expected {k} (one per "
                "sub-buffer, as '_offset')"
            )
    buffer_num = attr_int(f, "buffer_num", k, lo=0)
    if buffer_num != k:
        raise DatasetFormatError(
            f"{fname}: buffer_num is {buffer_num} but '_offset' lists {k} sub-buffers"
        )
    edges = np.append(offsets, maxsize)
    sizes = edges[1:] - edges[:-1]
    if k and (offsets[0] != 0 or np.any(sizes < 1)):
        raise DatasetFormatError(
            f"{fname}: '_offset' is {offsets[:8].tolist()}{'...' if k > 8 else ''} with "
            f"maxsize {maxsize}; expected increasing offsets from 0, each sub-buffer at "
            "least one row"
        )
    segments: Segments = []
    cut_rows: list[int] = []
    pos = 0
    for i in range(k):
        off, sub_size, length, last = (
            int(offsets[i]), int(sizes[i]), int(lengths[i]), int(last_index[i])
        )  # fmt: skip
        if length < 0 or length > sub_size:
            raise DatasetFormatError(
                f"{fname}: '_lengths'[{i}] is {length}; expected 0..{sub_size} (the size of "
                f"sub-buffer {i})"
            )
        if length == 0:
            continue
        if length < sub_size:
            segs = [(off, off + length)]
        else:
            if not off <= last < off + sub_size:
                raise DatasetFormatError(
                    f"{fname}: 'last_index'[{i}] is {last}; expected {off}..{off + sub_size - 1} "
                    f"(the rows of sub-buffer {i})"
                )
            ins = (last - off + 1) % sub_size
            segs = (
                [(off + ins, off + sub_size), (off, off + ins)] if ins else [(off, off + sub_size)]
            )
        segments += [s for s in segs if s[1] > s[0]]
        pos += length
        cut_rows.append(pos - 1)
    return segments, cut_rows[:-1]
