"""Rows a :class:`~tianshou_offline.data.writer.BufferWriter` was given and has not written
yet: columns flattened into ``(path, array)`` pairs (nested ``Dict``/``Tuple`` observations
become ``prefix/key`` paths), checked, and held as blocks of rows that are split where a
write ends."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tianshou_offline.data.h5io import Schema
from tianshou_offline.errors import (
    DataValidationError,
)


def flatten_columns(value: Any, prefix: str) -> list[tuple[str, np.ndarray]]:
    """Flatten a (possibly nested) column into ``[(path, array), ...]``.

    Mappings (and Tianshou ``Batch``) become ``prefix/key``; tuples and lists of arrays become
    ``prefix/0``, ``prefix/1``, … (gymnasium ``Tuple`` spaces).
    """
    if isinstance(value, np.ndarray):
        return [(prefix, value)]
    if hasattr(value, "to_dict") and hasattr(value, "keys"):  # tianshou Batch
        value = value.to_dict(recursive=False)
    if isinstance(value, Mapping):
        out: list[tuple[str, np.ndarray]] = []
        for key in sorted(value.keys()):
            if "/" in str(key):
                raise DataValidationError(f"column {prefix!r}: key {key!r} must not contain '/'")
            out.extend(flatten_columns(value[key], f"{prefix}/{key}"))
        return out
    if isinstance(value, tuple):
        out = []
        for i, item in enumerate(value):
            out.extend(flatten_columns(item, f"{prefix}/{i}"))
        return out
    arr = np.asarray(value)
    return [(prefix, arr)]


def _check_array(path: str, arr: np.ndarray) -> None:
    if arr.dtype == object:
        raise DataValidationError(
            f"column {path!r} has dtype object (Python objects); expected numeric, bool or "
            "fixed-size string arrays (objects would need pickling, which the format forbids)"
        )
    if arr.ndim == 0:
        raise DataValidationError(f"column {path!r} is a scalar; expected one row per step")


def _split_rows(
    parts: Sequence[np.ndarray], rows: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``parts`` (consecutive row blocks) split after ``rows`` rows, as views."""
    head: list[np.ndarray] = []
    for i, part in enumerate(parts):
        n = part.shape[0]
        if rows >= n:
            head.append(part)
            rows -= n
            continue
        if rows:
            head.append(part[:rows])
        return head, [part[rows:], *parts[i + 1 :]]
    return head, []


class _PendingRows:
    """Rows added but not yet written: for each column path, consecutive blocks of rows
    (C-contiguous, of the column's dtype). Every column holds ``rows`` rows; ``nbytes`` is
    the size of all the blocks."""

    __slots__ = ("nbytes", "parts", "rows")

    def __init__(
        self, parts: dict[str, list[np.ndarray]] | None = None, rows: int = 0, nbytes: int = 0
    ) -> None:
        self.parts: dict[str, list[np.ndarray]] = {} if parts is None else parts
        self.rows = rows
        self.nbytes = nbytes

    def add(self, cols: Sequence[tuple[str, np.ndarray]], schema: Schema, rows: int) -> None:
        """Add ``rows`` rows of every column (``(path, array)`` pairs, converted to the
        schema's dtype and made C-contiguous where they are not)."""
        parts = self.parts
        for path, arr in cols:
            want = schema[path][1]
            if arr.dtype != want or not arr.flags.c_contiguous:
                arr = np.ascontiguousarray(arr, dtype=want)
            parts.setdefault(path, []).append(arr)
            self.nbytes += arr.nbytes
        self.rows += rows

    def split(self, rows: int) -> tuple[dict[str, list[np.ndarray]], _PendingRows]:
        """The first ``rows`` rows of every column (views) and the pending rows after them."""
        head: dict[str, list[np.ndarray]] = {}
        left: dict[str, list[np.ndarray]] = {}
        left_bytes = 0
        for path, all_parts in self.parts.items():
            head[path], rest = _split_rows(all_parts, rows)
            if rest:
                left[path] = rest
                left_bytes += sum(a.nbytes for a in rest)
        return head, _PendingRows(left, self.rows - rows, left_bytes)

    def set_true(self, path: str, row: int) -> None:
        """Set pending row ``row`` (0: the first pending row) of the bool column ``path``."""
        offset = 0
        parts = self.parts[path]
        for i, arr in enumerate(parts):
            if row < offset + arr.shape[0]:
                arr = arr.copy()  # the pending part may be the caller's array
                arr[row - offset] = True
                parts[i] = arr
                return
            offset += arr.shape[0]
