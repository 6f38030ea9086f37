"""Checked access to what an HDF5 file declares: attributes read with a type and a range
(:func:`attr_int`, :func:`attr_bool`, :func:`attr_str`), datasets checked for a simple
dataspace, the expected dtype and enough rows (:func:`dataset`, :func:`rows`,
:func:`check_rows`), and extents checked against the bytes the file stores before anything is
read (:func:`check_extent`), so allocations are bounded by the file's size. See
:mod:`~tianshou_offline.data.reading` (which re-exports these) for the reading boundary.
"""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np

from tianshou_offline.data.byte_guards import check_vlen_descriptors
from tianshou_offline.errors import DatasetFormatError

__all__ = [
    "MAX_CHUNK_BYTES",
    "MAX_FILTER_RATIO",
    "as_text",
    "attr_bool",
    "attr_int",
    "attr_str",
    "check_extent",
    "check_rows",
    "dataset",
    "read_index",
    "row_bytes",
    "rows",
    "shape_of",
]

MAX_FILTER_RATIO = 1100
"""A filtered (compressed) chunk expands to at most this many times its stored size (gzip's
limit is about 1032:1; LZF's and shuffle's are far lower)."""
MAX_CHUNK_BYTES = 1 << 28
"""Largest chunk (256 MiB uncompressed) a reader accepts: libhdf5 holds one whole chunk in
memory to read any element of it."""


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
    raw = _attr_value(obj, name, "an integer")
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
    raw = _attr_value(obj, name, "a bool")
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
    return as_text(_attr_value(obj, name, "text"))


def _attr_value(obj: h5py.HLObject, name: str, expected: str) -> Any:
    """``obj.attrs[name]``, read only after its stored type is checked: a type that holds a
    variable-length sequence (which no attribute of any layout read here has) is refused
    before libhdf5 converts its values. A corrupted string's kind reads as such a sequence,
    and converting it crashes libhdf5 (SIGSEGV; see ``byte_guards._VLEN_KINDS``, which finds
    it in the file's bytes when the file is opened, within the windows it scans)."""
    if obj.attrs.get_id(name).get_type().detect_class(h5py.h5t.VLEN):
        raise DatasetFormatError(
            f"{obj.file.filename}: attribute '{_where(obj)}@{name}' is stored as a "
            f"variable-length sequence; expected {expected}"
        )
    return obj.attrs[name]


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
