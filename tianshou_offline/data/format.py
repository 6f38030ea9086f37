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
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import h5py
import numpy as np

from tianshou_offline.errors import (
    DatasetFormatError,
    SchemaVersionError,
    SourceNotFoundError,
    SpaceSerializationError,
)

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
        except json.JSONDecodeError:
            extra = {"unparsed": extra_raw}
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


def _attr_str(v: Any) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.ndarray) and v.shape == ():
        return _attr_str(v.item())
    return str(v)


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
    def conv(x: Any) -> float:
        return float(x) if isinstance(x, str) else x  # "inf", "-inf", "nan"

    if "fill" in d:
        return np.full(shape, conv(d["fill"]), dtype=dtype)
    return np.asarray([conv(x) for x in d["values"]], dtype=dtype).reshape(shape)


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


def space_from_dict(d: Mapping[str, Any]) -> gym.Space[Any]:
    """Inverse of :func:`space_to_dict`."""
    try:
        kind = d["type"]
        if kind == "Box":
            shape = tuple(int(x) for x in d["shape"])
            dtype = np.dtype(d["dtype"])
            return gym.spaces.Box(
                low=_json_to_array(d["low"], shape, dtype),
                high=_json_to_array(d["high"], shape, dtype),
                shape=shape,
                dtype=dtype.type,
            )
        if kind == "Discrete":
            return gym.spaces.Discrete(int(d["n"]), start=int(d.get("start", 0)))
        if kind == "MultiDiscrete":
            return gym.spaces.MultiDiscrete(
                np.asarray(d["nvec"]),
                dtype=np.dtype(d.get("dtype", "<i8")).type,
                start=np.asarray(d.get("start", 0)),
            )
        if kind == "MultiBinary":
            n = d["n"]
            return gym.spaces.MultiBinary(n if isinstance(n, int) else list(n))
        if kind == "Text":
            return gym.spaces.Text(
                max_length=int(d["max_length"]),
                min_length=int(d.get("min_length", 1)),
                charset=d["charset"],
            )
        if kind == "Dict":
            return gym.spaces.Dict({k: space_from_dict(v) for k, v in d["spaces"].items()})
        if kind == "Tuple":
            return gym.spaces.Tuple([space_from_dict(v) for v in d["spaces"]])
    except (KeyError, TypeError, ValueError) as e:
        raise SpaceSerializationError(f"malformed space description {dict(d)!r}: {e}") from e
    raise SpaceSerializationError(f"unknown space type {kind!r} in {dict(d)!r}")


def space_to_json(space: gym.Space[Any] | None) -> str:
    return "" if space is None else json.dumps(space_to_dict(space), sort_keys=True)


def space_from_json(text: str) -> gym.Space[Any] | None:
    if not text:
        return None
    try:
        return space_from_dict(json.loads(text))
    except json.JSONDecodeError as e:
        raise SpaceSerializationError(f"space attribute is not valid JSON: {e}") from e


# --------------------------------------------------------------------------------------
# opening files safely
# --------------------------------------------------------------------------------------

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def open_h5(path: str | os.PathLike[str]) -> h5py.File:
    """Open ``path`` read-only, turning every failure into a one-line typed error.

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
    if head != HDF5_SIGNATURE and not _has_hdf5_signature_at_offset(p):
        raise DatasetFormatError(
            f"{p}: not an HDF5 file (no HDF5 signature found; first bytes {head[:8]!r})"
        )
    try:
        return h5py.File(p, "r")
    except OSError as e:
        msg = str(e)
        if "already open for write" in msg or "SWMR" in msg:
            try:
                return h5py.File(p, "r", libver="latest", swmr=True)
            except OSError as e2:
                raise DatasetFormatError(f"{p}: cannot open HDF5 file: {e2}") from e2
        if "truncated" in msg:
            raise DatasetFormatError(
                f"{p}: HDF5 file is truncated (the file is shorter than its header says; "
                "an interrupted copy or download?)"
            ) from e
        raise DatasetFormatError(f"{p}: cannot open HDF5 file: {msg}") from e


def _has_hdf5_signature_at_offset(p: Path) -> bool:
    """HDF5 allows a user block: the signature may sit at 512, 1024, 2048, ... bytes."""
    size = p.stat().st_size
    offset = 512
    with open(p, "rb") as fh:
        while offset + 8 <= size:
            fh.seek(offset)
            if fh.read(8) == HDF5_SIGNATURE:
                return True
            offset *= 2
    return False


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
    """Yield ``(relative path, dataset)`` for every dataset below ``group``, sorted."""
    for key in sorted(group.keys()):
        item = group[key]
        name = f"{prefix}{key}"
        if isinstance(item, h5py.Group):
            yield from iter_datasets(item, name + "/")
        else:
            yield name, item


def detect_layout(f: h5py.File) -> str:
    if EXT_GROUP in f:
        return "tianshou_offline"
    if META_GROUP in f:
        return "tianshou_vector" if "buffer_num" in f.attrs or "_offset" in f else "tianshou"
    if "observations" in f and "actions" in f:
        return "d4rl"
    keys = ", ".join(sorted(f.keys())[:12]) or "(none)"
    raise DatasetFormatError(
        f"{f.filename}: unrecognised HDF5 layout: top-level keys are {keys}; expected a "
        f"tianshou-offline buffer ('{EXT_GROUP}' and '{META_GROUP}'), a Tianshou save_hdf5 file "
        "('_meta') or the D4RL layout ('observations', 'actions', 'rewards', 'terminals')"
    )


def check_version(f: h5py.File) -> int:
    attrs = f[EXT_GROUP].attrs
    if "format_version" not in attrs:
        raise SchemaVersionError(
            f"{f.filename}: '/{EXT_GROUP}' has no 'format_version' attribute; expected "
            f"version <= {FORMAT_VERSION}"
        )
    raw = attrs["format_version"]
    try:
        version = int(raw)
    except (TypeError, ValueError) as e:
        raise SchemaVersionError(
            f"{f.filename}: format_version {raw!r} is not an integer; expected <= {FORMAT_VERSION}"
        ) from e
    if version < 1 or version > FORMAT_VERSION:
        raise SchemaVersionError(
            f"{f.filename}: format_version {version} is not supported by tianshou-offline "
            f"{package_version()} (reads versions 1..{FORMAT_VERSION}); upgrade the package"
        )
    return version


def committed_counts(f: h5py.File) -> tuple[int, int]:
    """(transitions, episodes) committed to a tianshou-offline file.

    The episode table is written last, so a file whose writer was killed mid-append still
    reports exactly the episodes that were complete.
    """
    ep = f[EPISODES_GROUP]
    n_ep = min(len(ep["start"]), len(ep["length"]))
    declared = int(f[EXT_GROUP].attrs.get("num_episodes", n_ep))
    n_ep = min(n_ep, declared)
    if n_ep == 0:
        return 0, 0
    start = int(ep["start"][n_ep - 1])
    length = int(ep["length"][n_ep - 1])
    return start + length, n_ep


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
        group = f if layout == "d4rl" else f[META_GROUP]
        columns = {name: (tuple(ds.shape), ds.dtype.str) for name, ds in iter_datasets(group)}
        root = f.attrs
        md = DatasetMetadata(
            path=p,
            layout=layout,
            format_version=None,
            num_transitions=int(root.get("_size", 0)),
            num_episodes=None,
            observation_space=None,
            action_space=None,
            env_id=None,
            env_spec=None,
            stack_num=int(root.get("stack_num", 1)),
            save_only_last_obs=bool(root.get("_save_only_last_obs", False)),
            obs_next_stored=("next_observations" if layout == "d4rl" else "obs_next") in group,
            provenance=None,
            columns=columns,
            file_size=p.stat().st_size,
        )
        if layout == "d4rl":
            md.num_transitions = int(f["observations"].shape[0])
        elif layout == "tianshou_vector" and "_lengths" in f:
            md.num_transitions = int(np.sum(f["_lengths"][()]))
        elif layout == "tianshou_offline":
            md.format_version = check_version(f)
            md.num_transitions, md.num_episodes = committed_counts(f)
            ext = f[EXT_GROUP].attrs
            known = {
                "format", "format_version", "num_transitions", "num_episodes",
                "observation_space", "action_space", "env_id", "env_spec", "stack_num",
                "save_only_last_obs", "obs_next_stored",
            }
            md.extra_attrs = {
                k: _attr_str(v)
                for k, v in ext.items()
                if not k.startswith("provenance.") and k not in known
            }
            md.observation_space = space_from_json(_attr_str(ext.get("observation_space", "")))
            md.action_space = space_from_json(_attr_str(ext.get("action_space", "")))
            md.env_id = _attr_str(ext.get("env_id", "")) or None
            md.env_spec = _attr_str(ext.get("env_spec", "")) or None
            md.provenance = Provenance.from_attrs(ext)
        return md
