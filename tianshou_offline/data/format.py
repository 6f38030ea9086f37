"""The versioned HDF5 schema of a tianshou-offline buffer file (see ``docs/FORMAT.md``).

A buffer file is a valid Tianshou ``ReplayBuffer.save_hdf5`` file (so Tianshou's own
``ReplayBuffer.load_hdf5`` opens it) plus one extra group, ``/tianshou_offline``, holding the
format version, provenance, the serialised gymnasium spaces, the env id, frame-stacking
settings and the episode table. Nothing in it is pickled.

This module owns the names of every field, the JSON serialisation of gymnasium spaces,
provenance, and :func:`read_metadata` / :func:`open_h5` (safe opening with clear errors).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium as gym
import h5py
import numpy as np

from tianshou_offline.data.reading import (
    ReadOnlyFile,
    as_text,
    attr_bool,
    attr_int,
    attr_str,
    check_extent,
    check_global_heaps,
    check_rows,
    dataset,
    open_swmr_read,
    read_errors,
    read_index,
    rows,
)
from tianshou_offline.errors import (
    DatasetFormatError,
    SchemaVersionError,
    SourceNotFoundError,
    SpaceSerializationError,
)

_NEWEST_WRITTEN = "v114" if h5py.version.hdf5_version_tuple >= (1, 14) else "latest"
WRITE_LIBVER: tuple[str, str] = ("earliest", _NEWEST_WRITTEN)
"""The HDF5 file-format bounds of every file a writer creates or opens for writing: objects
in the earliest format that can hold them, never newer than HDF5 1.14's. Never ``"latest"``:
under HDF5 2.0 (h5py ≥ 3.15) that means format features no HDF5 1.x library reads, and h5py
< 3.15 (TensorFlow pins it), Tianshou's users, MATLAB and other tools could not open the
file. An h5py built on HDF5 < 1.14 knows no ``v114`` bound: there ``latest`` is that
library's own (≤ 1.12) format."""
SWMR_LIBVER: tuple[str, str] = ("v110", _NEWEST_WRITTEN)
"""The bounds of a file written in SWMR (append) mode: SWMR needs HDF5 1.10's format."""

FORMAT_NAME = "tianshou-offline-buffer"
FORMAT_VERSION = 1
"""Major version of the on-disk schema. Readers accept files whose version is <= this."""

EXT_GROUP = "tianshou_offline"
"""The group holding everything that is not part of Tianshou's own layout."""
EPISODES_GROUP = f"{EXT_GROUP}/episodes"
META_GROUP = "_meta"

TRANSITION_KEYS = ("obs", "act", "rew", "terminated", "truncated", "done", "obs_next", "info")
REQUIRED_KEYS = ("obs", "act", "rew", "terminated", "truncated", "done")
DATA_TYPE_ATTR = "__data_type__"
"""Tianshou tags every dataset with this attribute; ``ndarray``/``Tensor`` are plain arrays,
anything else is a pickle that Tianshou's loader would ``pickle.loads``."""
SAFE_DATA_TYPES = ("ndarray", "Tensor")

MAX_STACK_NUM = 1024
"""The largest frame-stacking ``stack_num`` a reader accepts (Atari uses 4)."""
MAX_SPACE_ELEMENTS = 1 << 22
"""The most elements a serialised space's shape (or ``nvec``) may have (4 Mi: a 3x1024x1024
image): Box bounds are allocated in full when a space is read back."""

SOURCE_KINDS = (
    "recorded",
    "buffer",
    "tianshou",
    "d4rl",
    "minari",
    "rl_unplugged",
    "tfds",
)


def package_version() -> str:
    from tianshou_offline._version import __version__

    return __version__


def utc_now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


@dataclass(kw_only=True)
class Provenance:
    """Where the data in a file came from. Stored as attributes of ``/tianshou_offline``.

    :param source: the kind of source: one of :data:`SOURCE_KINDS` (free text is accepted).
    :param dataset_id: the source's name for the data (``hopper-medium-v2``,
        ``D4RL/door/human-v2``, ``Breakout/run_1-00001``), or None.
    :param converter: the module or tool that wrote the file.
    :param converter_version: its version (defaults to this package's version).
    :param created: ISO-8601 UTC time of writing (filled in by the writer).
    :param extra: any further JSON-serialisable facts (seeds, episode ids, source metadata).
    """

    source: str
    dataset_id: str | None = None
    converter: str = "tianshou_offline"
    converter_version: str = field(default_factory=package_version)
    package_version: str = field(default_factory=package_version)
    created: str = field(default_factory=utc_now_iso)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_attrs(self) -> dict[str, str]:
        d = asdict(self)
        extra = d.pop("extra")
        out = {f"provenance.{k}": ("" if v is None else str(v)) for k, v in d.items()}
        out["provenance.extra"] = json.dumps(extra, default=_json_default, sort_keys=True)
        return out

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> Provenance:
        def get(name: str) -> str:
            return _attr_str(attrs.get(f"provenance.{name}", ""))

        extra_raw = get("extra") or "{}"
        try:
            extra = json.loads(extra_raw)
        except (ValueError, RecursionError):  # not JSON, or nested too deeply to parse
            extra = None
        if not isinstance(extra, dict):
            extra = {"unparsed": extra_raw[:10_000]}
        return cls(
            source=get("source") or "unknown",
            dataset_id=get("dataset_id") or None,
            converter=get("converter"),
            converter_version=get("converter_version"),
            package_version=get("package_version"),
            created=get("created"),
            extra=extra,
        )


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


_attr_str = as_text


# --------------------------------------------------------------------------------------
# gymnasium spaces <-> JSON (no pickle)
# --------------------------------------------------------------------------------------


def _array_to_json(a: np.ndarray) -> Any:
    """Compact JSON for Box bounds: a scalar when every element is equal."""
    if a.size > 0 and np.all(a == a.flat[0]):
        return {"fill": _float_json(a.flat[0])}
    return {"values": [_float_json(x) for x in a.ravel()]}


def _float_json(x: Any) -> Any:
    x = x.item() if isinstance(x, np.generic) else x
    if isinstance(x, float):
        if np.isposinf(x):
            return "inf"
        if np.isneginf(x):
            return "-inf"
        if np.isnan(x):
            return "nan"
    return x


def _json_to_array(d: Any, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
    def conv(x: Any) -> Any:
        if isinstance(x, str):
            if x not in ("inf", "-inf", "nan"):
                raise ValueError(f"bound {x!r} is not a number, 'inf', '-inf' or 'nan'")
            return float(x)
        if isinstance(x, bool) or not isinstance(x, int | float):
            raise ValueError(f"bound {x!r} is not a number")
        return x

    if not isinstance(d, Mapping):
        raise ValueError(f"bounds {d!r} are not {{'fill': x}} or {{'values': [...]}}")
    if "fill" in d:
        return np.full(shape, conv(d["fill"]), dtype=dtype)
    values = d["values"]
    if not isinstance(values, list) or len(values) != math.prod(shape):
        raise ValueError(f"bounds have {np.size(values)} values; expected {math.prod(shape)}")
    return np.asarray([conv(x) for x in values], dtype=dtype).reshape(shape)


def _json_int(d: Mapping[str, Any], key: str, default: int | None = None, lo: int = 0) -> int:
    value = d.get(key, default) if default is not None else d[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"{key}={value!r}: expected an integer >= {lo}")
    return value


def _json_ints(value: Any, key: str, lo: int) -> np.ndarray:
    """A list (or nested lists) of integers >= lo, of at most MAX_SPACE_ELEMENTS elements."""
    arr = np.asarray(value)
    if arr.size > MAX_SPACE_ELEMENTS or arr.dtype.kind not in "iu" or (arr.size and arr.min() < lo):
        raise ValueError(f"{key}={str(value)[:60]}: expected integers >= {lo}")
    return arr


def _json_shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) > 32:
        raise ValueError(f"shape {value!r}: expected a list of at most 32 sizes")
    if any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in value):
        raise ValueError(f"shape {value!r}: expected sizes >= 0")
    if math.prod(value) > MAX_SPACE_ELEMENTS:
        raise ValueError(
            f"shape {value!r} has {math.prod(value)} elements; at most {MAX_SPACE_ELEMENTS} "
            "are read back"
        )
    return tuple(value)


def space_to_dict(space: gym.Space[Any]) -> dict[str, Any]:
    """Describe a gymnasium space as plain JSON-able data.

    Supported: Box, Discrete, MultiDiscrete, MultiBinary, Text, Dict, Tuple (nested freely).
    """
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": np.dtype(space.dtype).str,
            "low": _array_to_json(space.low),
            "high": _array_to_json(space.high),
        }
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {
            "type": "MultiDiscrete",
            "nvec": np.asarray(space.nvec).tolist(),
            "start": np.asarray(space.start).tolist(),
            "dtype": np.dtype(space.dtype).str,
        }
    if isinstance(space, gym.spaces.MultiBinary):
        return {"type": "MultiBinary", "n": np.asarray(space.n).tolist()}
    if isinstance(space, gym.spaces.Text):
        return {
            "type": "Text",
            "max_length": int(space.max_length),
            "min_length": int(space.min_length),
            "charset": "".join(sorted(space.character_set)),
        }
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "spaces": {k: space_to_dict(s) for k, s in space.spaces.items()}}
    if isinstance(space, gym.spaces.Tuple):
        return {"type": "Tuple", "spaces": [space_to_dict(s) for s in space.spaces]}
    raise SpaceSerializationError(
        f"cannot serialise gymnasium space {type(space).__name__}: expected Box, Discrete, "
        "MultiDiscrete, MultiBinary, Text, Dict or Tuple"
    )


def space_from_dict(d: Mapping[str, Any], _depth: int = 0) -> gym.Space[Any]:
    """Inverse of :func:`space_to_dict`.

    :raises SpaceSerializationError: not a description :func:`space_to_dict` writes (unknown
        type, missing or malformed fields, bounds that do not fit the shape, a shape of more
        than :data:`MAX_SPACE_ELEMENTS` elements, nesting deeper than 32 levels).
    """
    if not isinstance(d, Mapping):
        raise SpaceSerializationError(
            f"malformed space description {str(d)[:200]!r}: expected a JSON object"
        )
    if _depth > 32:
        raise SpaceSerializationError("space description is nested more than 32 levels deep")
    kind = d.get("type")
    try:
        if kind == "Box":
            shape = _json_shape(d["shape"])
            dtype = np.dtype(d["dtype"])
            if dtype.kind not in "biuf":
                raise ValueError(f"dtype {dtype} is not a number or bool type")
            return gym.spaces.Box(
                low=_json_to_array(d["low"], shape, dtype),
                high=_json_to_array(d["high"], shape, dtype),
                shape=shape,
                dtype=dtype.type,
            )
        if kind == "Discrete":
            return gym.spaces.Discrete(
                _json_int(d, "n", lo=1), start=_json_int(d, "start", 0, lo=-(2**62))
            )
        if kind == "MultiDiscrete":
            dtype = np.dtype(d.get("dtype", "<i8"))
            if dtype.kind not in "iu":
                raise ValueError(f"dtype {dtype} is not an integer type")
            nvec = _json_ints(d["nvec"], "nvec", 1)
            start = _json_ints(d.get("start", 0), "start", -(2**62))
            return gym.spaces.MultiDiscrete(nvec, dtype=dtype.type, start=start)
        if kind == "MultiBinary":
            n = d["n"]
            if isinstance(n, list):
                return gym.spaces.MultiBinary(list(_json_shape(n)))
            return gym.spaces.MultiBinary(_json_shape([n])[0])
        if kind == "Text":
            charset = d["charset"]
            if not isinstance(charset, str) or not charset:
                raise ValueError(f"charset {str(charset)[:40]!r}: expected a non-empty string")
            return gym.spaces.Text(
                max_length=_json_int(d, "max_length", lo=0),
                min_length=_json_int(d, "min_length", 1, lo=0),
                charset=charset,
            )
        if kind == "Dict":
            spaces = d["spaces"]
            if not isinstance(spaces, Mapping):
                raise ValueError("'spaces' is not an object")
            return gym.spaces.Dict(
                {str(k): space_from_dict(v, _depth + 1) for k, v in spaces.items()}
            )
        if kind == "Tuple":
            spaces = d["spaces"]
            if not isinstance(spaces, list):
                raise ValueError("'spaces' is not a list")
            return gym.spaces.Tuple([space_from_dict(v, _depth + 1) for v in spaces])
    except SpaceSerializationError:
        raise
    except (KeyError, TypeError, ValueError, OverflowError, AssertionError) as e:
        # gymnasium checks its arguments with assert (Discrete(0), Box(low > high), ...)
        raise SpaceSerializationError(
            f"malformed space description {str(dict(d))[:200]!r}: {type(e).__name__}: {e}"
        ) from e
    raise SpaceSerializationError(f"unknown space type {kind!r} in {str(dict(d))[:200]!r}")


def space_to_json(space: gym.Space[Any] | None) -> str:
    return "" if space is None else json.dumps(space_to_dict(space), sort_keys=True)


def space_from_json(text: str) -> gym.Space[Any] | None:
    if not text:
        return None
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as e:  # RecursionError: nested too deeply to parse
        raise SpaceSerializationError(f"space attribute is not valid JSON: {e}") from e
    return space_from_dict(doc)


# --------------------------------------------------------------------------------------
# opening files safely
# --------------------------------------------------------------------------------------

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def open_h5(path: str | os.PathLike[str]) -> ReadOnlyFile:
    """Open ``path`` read-only, turning every failure into a one-line typed error.

    Use it as ``with open_h5(path) as f:`` (``f`` is the ``h5py.File``): the ``with`` block
    is the package's boundary for h5py's low-level exceptions (corrupted metadata), which
    become :class:`DatasetFormatError` naming the file
    (:class:`~tianshou_offline.data.reading.ReadOnlyFile`).

    A file that a recorder was appending to when its process was killed is still open
    "for SWMR write" in its superblock; it is opened in SWMR-read mode, which sees every
    episode that was committed.
    """
    p = Path(path)
    if not p.exists():
        raise SourceNotFoundError(f"{p}: no such file")
    if p.is_dir():
        raise DatasetFormatError(f"{p}: is a directory, expected an HDF5 file")
    with open(p, "rb") as fh:
        head = fh.read(8)
    base = 0 if head == HDF5_SIGNATURE else _hdf5_signature_offset(p)
    if base is None:
        raise DatasetFormatError(
            f"{p}: not an HDF5 file (no HDF5 signature found; first bytes {head[:8]!r})"
        )
    check_global_heaps(p, base)
    with read_errors(p):
        try:
            return ReadOnlyFile(h5py.File(p, "r"))
        except OSError as e:
            msg = str(e)
            if "already open for write" in msg or "SWMR" in msg:
                try:
                    return ReadOnlyFile(open_swmr_read(p))
                except OSError as e2:
                    raise DatasetFormatError(f"{p}: cannot open HDF5 file: {e2}") from e2
            if "truncated" in msg:
                raise DatasetFormatError(
                    f"{p}: HDF5 file is truncated (the file is shorter than its header says; "
                    "an interrupted copy or download?)"
                ) from e
            raise DatasetFormatError(f"{p}: cannot open HDF5 file: {msg}") from e


def _hdf5_signature_offset(p: Path) -> int | None:
    """HDF5 allows a user block: the signature may sit at 512, 1024, 2048, ... bytes."""
    size = p.stat().st_size
    offset = 512
    with open(p, "rb") as fh:
        while offset + 8 <= size:
            fh.seek(offset)
            if fh.read(8) == HDF5_SIGNATURE:
                return offset
            offset *= 2
    return None


# --------------------------------------------------------------------------------------
# metadata
# --------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class DatasetMetadata:
    """What :func:`read_metadata` reports about a buffer file (without reading the data)."""

    path: Path
    layout: str
    """``tianshou_offline`` (this format), ``tianshou`` (Tianshou's save_hdf5,
    ``tianshou_vector`` for VectorReplayBuffer files) or ``d4rl`` (D4RL key layout)."""
    format_version: int | None
    num_transitions: int
    num_episodes: int | None
    observation_space: gym.Space[Any] | None
    action_space: gym.Space[Any] | None
    env_id: str | None
    env_spec: str | None
    stack_num: int
    save_only_last_obs: bool
    obs_next_stored: bool
    provenance: Provenance | None
    columns: dict[str, tuple[tuple[int, ...], str]]
    """Every data column: ``"obs/pixels"`` → (shape, dtype string)."""
    file_size: int
    extra_attrs: dict[str, Any] = field(default_factory=dict)


def iter_datasets(group: h5py.Group, prefix: str = "") -> Iterator[tuple[str, h5py.Dataset]]:
    """Yield ``(relative path, dataset)`` for every dataset below ``group``, sorted (named
    datatypes are skipped; a link that loops back is refused)."""
    yield from _iter_datasets(group, prefix, 0)


def _iter_datasets(
    group: h5py.Group, prefix: str, depth: int
) -> Iterator[tuple[str, h5py.Dataset]]:
    if depth > 32:
        raise DatasetFormatError(
            f"{group.file.filename}: '{group.name}' is nested more than 32 groups deep "
            "(a link that loops back?)"
        )
    for key in sorted_keys(group):
        item = group[key]
        name = f"{prefix}{as_text(key)}"
        if isinstance(item, h5py.Group):
            yield from _iter_datasets(item, name + "/", depth + 1)
        elif isinstance(item, h5py.Dataset):
            yield name, item


def sorted_keys(group: h5py.Group) -> list[Any]:
    """The member names of ``group``, sorted (a corrupted name that is not UTF-8 comes back
    from h5py as bytes; it sorts by its text)."""
    return sorted(group.keys(), key=as_text)


def group_at(f: h5py.File, key: str) -> h5py.Group:
    """``f[key]`` checked to be a group."""
    item = f[key]
    if not isinstance(item, h5py.Group):
        raise DatasetFormatError(
            f"{f.filename}: '/{key}' is a {type(item).__name__}; expected a group"
        )
    return item


def detect_layout(f: h5py.File) -> str:
    if EXT_GROUP in f:
        group_at(f, EXT_GROUP)
        if META_GROUP in f:
            group_at(f, META_GROUP)
        return "tianshou_offline"
    if META_GROUP in f:
        group_at(f, META_GROUP)
        return "tianshou_vector" if "buffer_num" in f.attrs or "_offset" in f else "tianshou"
    if "observations" in f and "actions" in f:
        return "d4rl"
    keys = ", ".join(as_text(k) for k in sorted_keys(f)[:12]) or "(none)"
    raise DatasetFormatError(
        f"{f.filename}: unrecognised HDF5 layout: top-level keys are {keys}; expected a "
        f"tianshou-offline buffer ('{EXT_GROUP}' and '{META_GROUP}'), a Tianshou save_hdf5 file "
        "('_meta') or the D4RL layout ('observations', 'actions', 'rewards', 'terminals')"
    )


def check_version(f: h5py.File) -> int:
    attrs = group_at(f, EXT_GROUP).attrs
    if "format_version" not in attrs:
        raise SchemaVersionError(
            f"{f.filename}: '/{EXT_GROUP}' has no 'format_version' attribute; expected "
            f"version <= {FORMAT_VERSION}"
        )
    raw = attrs["format_version"]
    try:
        version = int(raw)
    except (TypeError, ValueError, OverflowError) as e:
        raise SchemaVersionError(
            f"{f.filename}: format_version {_attr_str(raw)[:40]!r} is not an integer; expected "
            f"<= {FORMAT_VERSION}"
        ) from e
    if version < 1 or version > FORMAT_VERSION:
        raise SchemaVersionError(
            f"{f.filename}: format_version {version} is not supported by tianshou-offline "
            f"{package_version()} (reads versions 1..{FORMAT_VERSION}); upgrade the package"
        )
    return version


def episode_bounds(f: h5py.File) -> tuple[np.ndarray, np.ndarray]:
    """``(start, length)`` (int64, ``(E,)``) of the episodes committed to a tianshou-offline
    file, checked: the first starts at row 0, each starts where the one before ends, every
    length is >= 1 and the last ends within the stored rows of ``_meta/rew``.

    The episode table is written last, so a file whose writer was killed mid-append still
    reports exactly the episodes that were complete: ``E = min(len(start), len(length),
    num_episodes)``.

    :raises DatasetFormatError: the table is missing, malformed or contradicts itself or
        the data.
    """
    fname = f.filename
    ext = group_at(f, EXT_GROUP)
    if EPISODES_GROUP not in f:
        raise DatasetFormatError(f"{fname}: '/{EPISODES_GROUP}' (the episode table) is missing")
    ep = group_at(f, EPISODES_GROUP)
    start_ds = dataset(ep, "start")
    length_ds = dataset(ep, "length")
    n_ep = min(rows(start_ds), rows(length_ds))
    n_ep = min(n_ep, attr_int(ext, "num_episodes", n_ep, lo=0))
    if n_ep == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if META_GROUP not in f:
        raise DatasetFormatError(f"{fname}: '/{META_GROUP}' (the data columns) is missing")
    stored = min(rows(dataset(group_at(f, META_GROUP), "rew")), 2**62)
    starts = read_index(start_ds, n_ep)
    lengths = read_index(length_ds, n_ep)
    where = f"'/{EPISODES_GROUP}'"
    if starts[0] != 0:
        raise DatasetFormatError(
            f"{fname}: {where}: episode 0 starts at row {starts[0]}; expected row 0"
        )
    bad = np.flatnonzero((lengths < 1) | (lengths > stored) | (starts > stored))
    if bad.size:
        i = int(bad[0])
        raise DatasetFormatError(
            f"{fname}: {where}: episode {i} has start {starts[i]} and length {lengths[i]}; "
            f"expected a length >= 1 within the {stored} stored rows"
        )
    ends = starts + lengths  # no overflow: both are <= stored (a dataset's extent)
    gap = np.flatnonzero(starts[1:] != ends[:-1])
    if gap.size:
        i = int(gap[0]) + 1
        raise DatasetFormatError(
            f"{fname}: {where}: episode {i} starts at row {starts[i]}; expected row "
            f"{ends[i - 1]} (where episode {i - 1} ends)"
        )
    if ends[-1] > stored:
        raise DatasetFormatError(
            f"{fname}: {where}: the episodes cover {ends[-1]} rows; '/{META_GROUP}/rew' stores "
            f"{stored}"
        )
    return starts, lengths


def committed_counts(f: h5py.File) -> tuple[int, int]:
    """(transitions, episodes) committed to a tianshou-offline file (see
    :func:`episode_bounds`, which checks the episode table)."""
    starts, lengths = episode_bounds(f)
    if not len(starts):
        return 0, 0
    return int(starts[-1] + lengths[-1]), len(starts)


def check_episode_ends(
    fname: str, done: np.ndarray, starts: np.ndarray, lengths: np.ndarray
) -> None:
    """The rows that end an episode in the loaded data (``done | terminated | truncated``)
    are exactly those the episode table says.

    :raises DatasetFormatError: they differ (the first differing row is named).
    """
    n = int(done.shape[0])
    want = np.zeros(n, dtype=bool)
    if len(starts):
        want[starts + lengths - 1] = True
    diff = np.flatnonzero(want != done)
    if diff.size:
        row = int(diff[0])
        raise DatasetFormatError(
            f"{fname}: row {row} {'ends' if done[row] else 'does not end'} an episode in "
            f"'/{META_GROUP}' (done/terminated/truncated) but the episode table "
            f"'/{EPISODES_GROUP}' says it {'ends' if want[row] else 'does not end'} one"
        )


def read_metadata(path: str | os.PathLike[str]) -> DatasetMetadata:
    """Read the schema, sizes, spaces and provenance of a buffer file without loading data.

    Works for all layouts :func:`tianshou_offline.load_buffer` accepts.

    :raises SourceNotFoundError: the file does not exist.
    :raises DatasetFormatError: not HDF5, truncated, or an unrecognised layout.
    :raises SchemaVersionError: a tianshou-offline file of an unsupported version.
    """
    p = Path(path)
    with open_h5(p) as f:
        layout = detect_layout(f)
        group = f if layout == "d4rl" else group_at(f, META_GROUP)
        columns = {
            name: (tuple(ds.shape) if ds.shape is not None else (), ds.dtype.str)
            for name, ds in iter_datasets(group)
        }
        md = DatasetMetadata(
            path=p,
            layout=layout,
            format_version=None,
            num_transitions=0,
            num_episodes=None,
            observation_space=None,
            action_space=None,
            env_id=None,
            env_spec=None,
            stack_num=attr_int(f, "stack_num", 1, lo=1, hi=MAX_STACK_NUM),
            save_only_last_obs=attr_bool(f, "_save_only_last_obs", False),
            obs_next_stored=("next_observations" if layout == "d4rl" else "obs_next") in group,
            provenance=None,
            columns=columns,
            file_size=p.stat().st_size,
        )
        if layout == "d4rl":
            md.num_transitions = rows(dataset(f, "observations"))
        elif layout in ("tianshou", "tianshou_vector"):
            from tianshou_offline.data.tianshou_layout import tianshou_segments

            segments, _ = tianshou_segments(f, layout)
            md.num_transitions = sum(b - a for a, b in segments)
        else:
            md.format_version = check_version(f)
            md.num_transitions, md.num_episodes = committed_counts(f)
            ext = group_at(f, EXT_GROUP)
            known = {
                "format", "format_version", "num_transitions", "num_episodes",
                "observation_space", "action_space", "env_id", "env_spec", "stack_num",
                "save_only_last_obs", "obs_next_stored",
            }  # fmt: skip
            # a corrupted attribute name that is not UTF-8 comes back from h5py as bytes
            names = {as_text(k): k for k in ext.attrs.keys()}
            md.extra_attrs = {
                k: _attr_str(ext.attrs[raw])
                for k, raw in names.items()
                if not k.startswith("provenance.") and k not in known
            }
            md.observation_space = read_space(ext, "observation_space")
            md.action_space = read_space(ext, "action_space")
            md.env_id = attr_str(ext, "env_id") or None
            md.env_spec = attr_str(ext, "env_spec") or None
            md.provenance = Provenance.from_attrs(ext.attrs)
        return md


def read_space(group: h5py.Group, name: str) -> gym.Space[Any] | None:
    """The gymnasium space stored as JSON in attribute ``name`` of ``group`` (None when
    empty or absent).

    :raises DatasetFormatError: the attribute does not hold a space (names the file and the
        attribute; the :class:`SpaceSerializationError` is the cause).
    """
    try:
        return space_from_json(attr_str(group, name))
    except SpaceSerializationError as e:
        raise DatasetFormatError(
            f"{group.file.filename}: attribute '{group.name}@{name}' does not describe a "
            f"gymnasium space: {e}"
        ) from e


ColumnSpec = dict[str, tuple[tuple[int, ...], "np.dtype[Any]"]]
"""Each column's row shape and dtype (what every shard of one buffer must share)."""


def shard_columns(
    path: str | os.PathLike[str],
    meta: h5py.Group,
    n: int,
    *,
    include_info: bool,
    expected: str,
) -> tuple[ColumnSpec, dict[str, h5py.Dataset]]:
    """The numeric columns of one shard's ``/_meta`` group, each checked to hold ``n`` rows
    within the file's extent: their row shapes and dtypes, and the datasets by name.

    :param expected: what a file missing ``obs``, ``act`` or ``rew`` was expected to be (for
        the error message).
    :raises DatasetFormatError: a non-numeric or 0-d column, a missing required column, or
        per-transition scalars (``rew``, flags) with rows of another shape.
    """
    cols: ColumnSpec = {}
    datasets: dict[str, h5py.Dataset] = {}
    for name, ds in iter_datasets(meta):
        if not include_info and (name == "info" or name.startswith("info/")):
            continue
        if ds.shape is None or ds.ndim == 0 or ds.dtype.kind not in "biuf":
            raise DatasetFormatError(
                f"{path}: column '{META_GROUP}/{name}' has shape {ds.shape} and dtype "
                f"{ds.dtype}; expected rows of numbers or bools"
            )
        check_rows(ds, n)
        check_extent(ds, n)
        cols[name] = (tuple(ds.shape[1:]), ds.dtype)
        datasets[name] = ds
    for col in ("obs", "act", "rew"):
        if col not in cols:
            raise DatasetFormatError(
                f"{path}: '{META_GROUP}/{col}' is missing or not an array; expected {expected}"
            )
    for col in ("rew", "terminated", "truncated", "done"):
        if col in cols and cols[col][0] != ():
            raise DatasetFormatError(
                f"{path}: column '{META_GROUP}/{col}' has rows of shape {cols[col][0]}; "
                "expected one value per transition"
            )
    return cols, datasets


class DiskShard(NamedTuple):
    """What :func:`check_disk_shard` found in one file of a disk-backed buffer."""

    rows: int
    """transitions committed (the episode table's)."""
    starts: np.ndarray
    lengths: np.ndarray
    settings: tuple[int, bool, bool]
    """``(stack_num, save_only_last_obs, sample_avail)``."""
    columns: ColumnSpec
    datasets: dict[str, h5py.Dataset]


def check_disk_shard(f: h5py.File, path: str, *, include_info: bool) -> DiskShard:
    """The checks a file passes before the disk-backed loader
    (:func:`~tianshou_offline.data.ondisk.load_disk_files`) maps or reads any of its columns:
    the tianshou-offline layout and a known version, frame-stacking settings, the episode
    table and the columns (:func:`shard_columns`).

    :raises DatasetFormatError: another layout, a malformed setting, episode table or column.
    :raises SchemaVersionError: an unknown format version.
    """
    if detect_layout(f) != "tianshou_offline":
        raise DatasetFormatError(
            f"{path}: not a tianshou-offline buffer file; a disk-backed buffer reads "
            "the tianshou-offline format (convert the file, or load it with memory='ram')"
        )
    check_version(f)
    s = attr_int(f, "stack_num", 1, lo=1, hi=MAX_STACK_NUM)
    settings = (
        s,
        attr_bool(f, "_save_only_last_obs", False),
        attr_bool(f, "_sample_avail", False),
    )
    starts, lengths = episode_bounds(f)
    n = int(starts[-1] + lengths[-1]) if len(starts) else 0
    cols, datasets = shard_columns(
        path, group_at(f, META_GROUP), n, include_info=include_info,
        expected="obs, act, rew, terminated, truncated",
    )  # fmt: skip
    return DiskShard(n, starts, lengths, settings, cols, datasets)
