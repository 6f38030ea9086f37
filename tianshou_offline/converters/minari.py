"""Minari datasets → tianshou-offline buffers, and buffers → Minari datasets.

**Reading** (:func:`convert_minari`). The ``minari`` package locates and opens the dataset
(``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``, or a local dataset directory), checks
its version and gives the spaces, env spec and metadata. Episodes are read in one of two ways:

- a *fast path* for the common case (HDF5, Arrow or Parquet storage; observation leaves that
  are Box, Discrete, MultiDiscrete or MultiBinary, nested in Dict/Tuple spaces freely; no
  JPEG-encoded image spaces; no ``--with-infos``): the storage's episode layout is read in
  bulk, skipping Minari's per-episode Python decoding, straight into blocks of many episodes
  (:data:`BLOCK_BYTES`) that go to the writer in one call each (HDF5: each array read by
  libhdf5 into its rows of the block; Arrow: each episode's file parsed by pyarrow from one
  reused buffer and its columns copied into the block);
- Minari's own ``MinariDataset.iterate_episodes`` for everything else (JPEG-encoded images
  are decoded by Minari, infos, any storage Minari supports).

Both give identical arrays (the tests compare them with ``iterate_episodes``, episode by
episode). Each episode's ``T + 1`` observations become ``obs = observations[:-1]`` and
``obs_next = observations[1:]``; ``terminations``/``truncations`` become
``terminated``/``truncated`` unchanged (an episode whose last step has neither flag ends as
*cut*); dtypes are kept. Dict observation spaces stay nested (``obs/<key>``), Tuple spaces
become ``obs/0``, ``obs/1``, … Per episode the Minari episode id and seed (``-1`` when none
was recorded) are stored as episode metadata columns ``episode_id`` and ``seed``.

With ``with_infos`` the episode infos are stored as the buffer's ``info``: Minari keeps one
info per observation (``T + 1``: the one from ``reset`` first), so ``info/<key>[t]`` is the
info returned by the step that produced ``obs_next[t]`` (Tianshou's convention) and the
``reset`` info is kept in ``info/_reset/<key>`` (repeated on every row of the episode); infos
with ``T`` rows are stored as they are.

**Export** (:func:`export_minari`): a buffer file becomes a Minari dataset that
``minari.load_dataset`` loads. ``observations`` of an episode are its ``obs`` followed by the
last ``obs_next``; episode seeds, infos (with their ``reset`` row) and the Minari metadata of
a converted dataset are restored, so Minari → buffer → Minari gives back every episode
exactly. Images are stored losslessly unless ``jpeg_encoding=True``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import secrets
import shutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import gymnasium as gym
import h5py
import numpy as np
from tqdm import tqdm

from tianshou_offline._report import report
from tianshou_offline.converters.d4rl import run_script
from tianshou_offline.data.format import Provenance
from tianshou_offline.data.writer import BufferWriter, Compression, NanPolicy
from tianshou_offline.errors import (
    DatasetFormatError,
    DataValidationError,
    MissingDependencyError,
    OutputExistsError,
    SourceNotFoundError,
)

log = logging.getLogger(__name__)

CONVERTER_NAME = "tianshou_offline.converters.minari"
RESET_INFO_KEY = "_reset"
"""Sub-key of ``info`` holding each episode's ``reset`` info (see the module doc)."""
NO_SEED = -1
"""The ``seed`` episode-metadata value of episodes recorded without a seed."""


def _import_minari() -> ModuleType:
    try:
        import minari
    except ImportError as e:
        raise MissingDependencyError(
            f"the Minari converter needs the 'minari' package ({e}); install it with "
            "pip install 'tianshou-offline[minari]' (and pyarrow for Arrow datasets)"
        ) from None
    return cast(ModuleType, minari)


def minari_datasets_root() -> Path:
    """Minari's local dataset root: ``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``."""
    env = os.environ.get("MINARI_DATASETS_PATH")
    return Path(env).expanduser() if env else Path("~/.minari/datasets").expanduser()


def _parse_dataset_id(dataset_id: str) -> tuple[str | None, str, int]:
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        ns, name, version = parse_dataset_id(dataset_id)
    except (ValueError, TypeError):
        raise DataValidationError(
            f"{dataset_id!r} is not a valid Minari dataset id: expected (namespace/)name-vN, "
            "e.g. D4RL/door/human-v2"
        ) from None
    return ns, name, int(version)


# --------------------------------------------------------------------------------------
# locating and opening
# --------------------------------------------------------------------------------------


def resolve_minari_source(
    id_or_path: str | os.PathLike[str], *, download: bool = False
) -> tuple[Path, str | None]:
    """Find a Minari dataset's data directory (the one holding ``metadata.json``).

    :param id_or_path: a dataset id (``D4RL/door/human-v2``), a dataset directory or its
        ``data`` sub-directory.
    :param download: download a dataset id that is not available locally (needs network).
    :returns: ``(data directory, dataset id or None for a path)``.
    :raises SourceNotFoundError: not found locally (the message says where it looked).
    :raises DatasetFormatError: a directory that is not a Minari dataset.
    """
    text = os.fspath(id_or_path)
    p = Path(text).expanduser()
    if p.exists():
        if (p / "metadata.json").is_file():
            return p, None
        if (p / "data" / "metadata.json").is_file():
            return p / "data", None
        raise DatasetFormatError(
            f"{p}: not a Minari dataset directory (no metadata.json in it or in {p / 'data'})"
        )
    if text.startswith(("/", ".", "~")) or text.endswith(("/", "/data")):
        raise SourceNotFoundError(f"{p}: no such Minari dataset directory")
    minari = _import_minari()
    _parse_dataset_id(text)
    root = minari_datasets_root()
    data = root / text / "data"
    if (data / "metadata.json").is_file():
        return data, text
    if download:
        log.info("downloading Minari dataset %s into %s", text, root)
        try:
            minari.download_dataset(text)
        except Exception as e:  # network, unknown remote id, ...
            raise SourceNotFoundError(f"Minari dataset {text!r}: download failed: {e}") from e
        if (data / "metadata.json").is_file():
            return data, text
    raise SourceNotFoundError(
        f"Minari dataset {text!r} not found: looked in {data} "
        f"(MINARI_DATASETS_PATH={os.environ.get('MINARI_DATASETS_PATH', '<unset>')}, "
        "default ~/.minari/datasets); download it with `minari download "
        f"{text}` or pass --download"
    )


def open_minari_dataset(data_path: Path) -> Any:
    """``minari.MinariDataset`` for a data directory, with typed errors."""
    minari = _import_minari()
    try:
        return minari.MinariDataset(data_path)
    except (ValueError, KeyError, json.JSONDecodeError, OSError) as e:
        raise DatasetFormatError(f"{data_path}: cannot open Minari dataset: {e}") from e


# --------------------------------------------------------------------------------------
# episode selection
# --------------------------------------------------------------------------------------

_SELECTION_RE = re.compile(r"^\s*(-?\d*)\s*(?::\s*(-?\d*)\s*(?::\s*(-?\d*)\s*)?)?$")


def parse_episode_selection(spec: str) -> list[slice | int]:
    """Parse ``"0:100"``, ``":10"``, ``"5"``, ``"0:100:2"``, ``"1,3,10:20"`` (Python slice
    syntax over the dataset's episodes, in order).

    :raises DataValidationError: malformed.
    """
    parts: list[slice | int] = []
    for item in spec.split(","):
        m = _SELECTION_RE.match(item)
        if not m or not item.strip():
            raise DataValidationError(
                f"episode selection {spec!r}: {item!r} is not an index or a start:stop[:step] slice"
            )
        a, b, c = m.groups()
        if ":" not in item:
            parts.append(int(a))
        else:
            if c is not None and c.strip() == "0":
                raise DataValidationError(f"episode selection {spec!r}: slice step must not be 0")
            parts.append(slice(int(a) if a else None, int(b) if b else None, int(c) if c else None))
    return parts


def select_episodes(selection: str | slice | Sequence[int] | None, total: int) -> np.ndarray:
    """Positions (``0 .. total-1``) of the selected episodes, in selection order.

    :raises SourceNotFoundError: an index beyond the dataset.
    :raises DataValidationError: malformed selection, or nothing selected.
    """
    if selection is None:
        return np.arange(total)
    parts: list[slice | int]
    if isinstance(selection, str):
        parts = parse_episode_selection(selection)
    elif isinstance(selection, slice):
        parts = [selection]
    else:
        parts = [int(i) for i in selection]
    out: list[np.ndarray] = []
    for part in parts:
        if isinstance(part, slice):
            out.append(np.arange(total)[part])
        else:
            if not -total <= part < total:
                raise SourceNotFoundError(
                    f"episode {part} was selected but the dataset has {total} episodes"
                )
            out.append(np.array([part % total]))
    idx = np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
    if idx.size == 0:
        raise DataValidationError(
            f"episode selection {selection!r} selects no episodes (of {total})"
        )
    return idx.astype(np.int64)


# --------------------------------------------------------------------------------------
# spaces and trees
# --------------------------------------------------------------------------------------

_ARRAY_SPACES = (
    gym.spaces.Box,
    gym.spaces.Discrete,
    gym.spaces.MultiDiscrete,
    gym.spaces.MultiBinary,
)


@dataclass(frozen=True)
class _Leaf:
    key: tuple[str, ...]
    """Path in the returned tree (Dict keys, Tuple indices as strings)."""
    hdf5: str
    """Path below ``observations`` in Minari's HDF5 storage."""
    space: gym.Space[Any]


def _is_image_space(space: gym.Space[Any]) -> bool:
    from minari.dataset.minari_storage import is_image_space

    return bool(is_image_space(space))


def _leaves(
    space: gym.Space[Any], jpeg: bool, key: tuple[str, ...] = (), hdf5: str = ""
) -> list[_Leaf] | None:
    """The array leaves of a space, or None when the fast path cannot read it."""
    if isinstance(space, gym.spaces.Dict):
        out: list[_Leaf] = []
        for name, sub in space.spaces.items():
            got = _leaves(sub, jpeg, (*key, str(name)), f"{hdf5}/{name}")
            if got is None:
                return None
            out += got
        return out
    if isinstance(space, gym.spaces.Tuple):
        out = []
        for i, sub in enumerate(space.spaces):
            got = _leaves(sub, jpeg, (*key, str(i)), f"{hdf5}/_index_{i}")
            if got is None:
                return None
            out += got
        return out
    if isinstance(space, _ARRAY_SPACES):
        if jpeg and _is_image_space(space):
            return None
        return [_Leaf(key, hdf5, space)]
    return None


def _build_tree(
    space: gym.Space[Any], values: Mapping[tuple[str, ...], Any], key: tuple[str, ...] = ()
) -> Any:
    if isinstance(space, gym.spaces.Dict):
        return {
            name: _build_tree(sub, values, (*key, str(name))) for name, sub in space.spaces.items()
        }
    if isinstance(space, gym.spaces.Tuple):
        return tuple(_build_tree(sub, values, (*key, str(i))) for i, sub in enumerate(space.spaces))
    return values[key]


def _tree_map(fn: Any, tree: Any) -> Any:
    if isinstance(tree, Mapping):
        return {k: _tree_map(fn, v) for k, v in tree.items()}
    if isinstance(tree, tuple):
        return tuple(_tree_map(fn, v) for v in tree)
    return fn(tree)


def _tree_leaves(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            yield from _tree_leaves(v, f"{prefix}/{k}" if prefix else str(k))
    elif isinstance(tree, tuple):
        for i, v in enumerate(tree):
            yield from _tree_leaves(v, f"{prefix}/{i}" if prefix else str(i))
    else:
        yield prefix, tree


def _as_storable(arr: Any, where: str) -> np.ndarray:
    """numpy array the writer accepts: object arrays of bytes/str become fixed-size bytes."""
    a = np.asarray(arr)
    if a.dtype == object or a.dtype.kind == "U":
        try:
            flat = [x.encode("utf-8") if isinstance(x, str) else bytes(x) for x in a.ravel()]
            return np.asarray(flat, dtype=np.bytes_).reshape(a.shape)
        except (TypeError, ValueError):
            raise DatasetFormatError(
                f"{where}: holds Python objects of type {type(a.ravel()[0]).__name__}; "
                "expected numeric, bool or string arrays"
            ) from None
    return a


# --------------------------------------------------------------------------------------
# episodes
# --------------------------------------------------------------------------------------


@dataclass
class _Episode:
    """One Minari episode: ``observations`` has T + 1 rows, the other columns T."""

    id: int
    seed: int | None
    observations: Any
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    infos: Mapping[str, Any] | None = None

    @property
    def length(self) -> int:
        return int(self.rewards.shape[0])


BLOCK_BYTES = 32 << 20
"""Target size of one block of episodes (all its columns) handed to the writer in one call."""


@dataclass
class _Block:
    """Consecutive episodes, concatenated: every column has one row per step."""

    ids: list[int]
    seeds: list[int | None]
    lengths: np.ndarray
    """``(E,)`` int64 steps per episode (all >= 1)."""
    obs: Any
    obs_next: Any
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    info: Any = None
    consumed: int = 0
    """Episodes of the selection this block accounts for (episodes without steps included)."""


def _row_bytes(space: gym.Space[Any]) -> int:
    """Bytes per step of a space's arrays (for block sizes; a guess is good enough)."""
    if isinstance(space, gym.spaces.Dict):
        return sum(_row_bytes(s) for s in space.spaces.values())
    if isinstance(space, gym.spaces.Tuple):
        return sum(_row_bytes(s) for s in space.spaces)
    shape = space.shape or ()
    dtype = np.dtype(space.dtype) if space.dtype is not None else np.dtype(np.float64)
    return max(1, int(np.prod(shape, dtype=np.int64))) * dtype.itemsize


def _block_rows(obs_space: gym.Space[Any], act_space: gym.Space[Any]) -> int:
    """Steps per block: :data:`BLOCK_BYTES` over the bytes of one step (obs twice, act, rew,
    flags)."""
    row = 2 * _row_bytes(obs_space) + _row_bytes(act_space) + 8 + 2
    return max(1, BLOCK_BYTES // row)


class _BlockBuffer:
    """Preallocated columns that consecutive episodes are read or copied into, so a block is
    assembled with one copy per value and handed to the writer in one call.

    Every column has ``capacity + 1`` rows: an episode's ``T + 1`` observations are read into
    the observation column whole, the extra (final) row being overwritten by the next
    episode's first observation once it has been copied to ``obs_next``.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.rows = 0
        self.ids: list[int] = []
        self.seeds: list[int | None] = []
        self.lengths: list[int] = []
        self.columns: dict[str, np.ndarray] = {}

    def slot(
        self, name: str, rows: int, dtype: np.dtype[Any], row_shape: tuple[int, ...], where: str
    ) -> np.ndarray:
        """The next ``rows`` rows of column ``name`` (created with ``dtype`` on first use)."""
        arr = self.columns.get(name)
        if arr is None:
            arr = self.columns[name] = np.empty((self.capacity + 1, *row_shape), dtype=dtype)
        elif arr.shape[1:] != row_shape:
            raise DatasetFormatError(
                f"{where} has rows of shape {row_shape}; expected {arr.shape[1:]} (as in the "
                "episodes before it)"
            )
        return arr[self.rows : self.rows + rows]

    def put(self, name: str, value: np.ndarray, where: str) -> np.ndarray:
        """Copy ``value`` (one episode's rows) into column ``name``; returns the rows."""
        dst = self.slot(name, value.shape[0], value.dtype, tuple(value.shape[1:]), where)
        if value.dtype != dst.dtype and not np.can_cast(value.dtype, dst.dtype, "same_kind"):
            raise DatasetFormatError(
                f"{where} has dtype {value.dtype}; expected {dst.dtype} (as in the episodes "
                "before it)"
            )
        dst[...] = value
        return dst

    def commit(self, ep: int, seed: int | None, t: int) -> None:
        self.ids.append(ep)
        self.seeds.append(seed)
        self.lengths.append(t)
        self.rows += t

    def take(self, obs_leaves: list[_Leaf], obs_space: gym.Space[Any], skipped: int) -> _Block:
        """The block of the episodes committed so far (``skipped``: episodes without steps
        passed over since the previous block)."""
        r = self.rows
        cols = self.columns

        def tree(prefix: str) -> Any:
            return _build_tree(
                obs_space, {leaf.key: cols[prefix + leaf.hdf5][:r] for leaf in obs_leaves}
            )

        return _Block(
            ids=self.ids,
            seeds=self.seeds,
            lengths=np.asarray(self.lengths, dtype=np.int64),
            obs=tree("observations"),
            obs_next=tree("obs_next"),
            actions=cols["actions"][:r],
            rewards=cols["rewards"][:r],
            terminations=cols["terminations"][:r],
            truncations=cols["truncations"][:r],
            consumed=len(self.ids) + skipped,
        )


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _empty_block(skipped: int) -> _Block:
    """A block without episodes that accounts for ``skipped`` episodes without steps."""
    empty = np.zeros(0)
    return _Block(
        ids=[],
        seeds=[],
        lengths=np.zeros(0, dtype=np.int64),
        obs=None,
        obs_next=None,
        actions=empty,
        rewards=empty,
        terminations=empty,
        truncations=empty,
        consumed=skipped,
    )


class _HDF5FastReader:
    """Bulk reader of Minari's HDF5 storage (``main_data.hdf5``, one group per episode).

    Each dataset is opened and read straight into the rows of a preallocated block
    (:class:`_BlockBuffer`) through h5py's low-level API: libhdf5's per-dataset cost (open,
    extent, read: ~20 µs) is the only per-episode overhead left.
    """

    def __init__(
        self,
        data_path: Path,
        obs_leaves: list[_Leaf],
        obs_space: gym.Space[Any],
        block_rows: int,
    ) -> None:
        self.path = data_path / "main_data.hdf5"
        self.obs_leaves = obs_leaves
        self.obs_space = obs_space
        self.block_rows = block_rows
        # numpy dtype and HDF5 memory type per array name, taken from the first episode:
        # asking libhdf5 for them again on every read costs more than the read itself
        self._types: dict[str, tuple[np.dtype[Any], Any]] = {}
        self._int64 = h5py.h5t.py_create(np.dtype(np.int64))
        self._names = [(f"observations{leaf.hdf5}", f"obs_next{leaf.hdf5}") for leaf in obs_leaves]
        arrays = ["rewards", "actions", "terminations", "truncations"]
        self._bnames = {name: name.encode() for name in arrays + [o for o, _ in self._names]}

    def _read_into(self, buf: _BlockBuffer, gid: Any, group: str, name: str, rows: int) -> Any:
        """Open ``group/name`` and read it whole (``rows`` rows, checked) into column ``name``
        of ``buf``; returns the rows it fills."""
        try:
            dsid = h5py.h5d.open(gid, self._bnames[name])
        except KeyError:
            raise DatasetFormatError(f"{self.path}: '{group}/{name}' is missing") from None
        shape = dsid.get_space().get_simple_extent_dims()
        if not shape or shape[0] != rows:
            raise DatasetFormatError(
                f"{self.path}: {group}/{name} has {shape[0] if shape else 0} rows; expected "
                + (
                    f"{rows} (steps + 1)"
                    if name.startswith("obs")
                    else f"{rows} (the length of rewards)"
                )
            )
        types = self._types.get(name)
        if types is None:
            dtype = np.dtype(dsid.dtype)
            if dtype.kind not in "biuf":
                raise DatasetFormatError(
                    f"{self.path}: '{group}/{name}' has dtype {dtype}; expected numbers or booleans"
                )
            types = self._types[name] = (dtype, h5py.h5t.py_create(dtype))
        out = buf.slot(name, rows, types[0], shape[1:], f"{self.path}: {group}/{name}")
        # the extent was checked against the slot: libhdf5 writes exactly out.nbytes
        if out.size:
            dsid.read(h5py.h5s.ALL, h5py.h5s.ALL, out, types[1])
        return out

    def _seed(self, gid: Any) -> int | None:
        if not h5py.h5a.exists(gid, b"seed"):
            return None
        attr = h5py.h5a.open(gid, b"seed")
        value = np.empty(attr.shape, dtype=np.int64)
        attr.read(value, self._int64)
        return int(value)

    def blocks(self, ids: Sequence[int]) -> Iterator[_Block]:
        """The selected episodes, in order, in blocks of about ``block_rows`` steps."""
        buf: _BlockBuffer | None = None
        skipped = 0
        with h5py.File(self.path, "r") as f:
            fid = f.id
            for ep in ids:
                group = f"episode_{ep}"
                try:
                    gid = h5py.h5g.open(fid, group.encode())
                except KeyError:
                    raise DatasetFormatError(f"{self.path}: '{group}' is missing") from None
                try:
                    rew_id = h5py.h5d.open(gid, b"rewards")
                except KeyError:
                    raise DatasetFormatError(f"{self.path}: '{group}/rewards' is missing") from None
                rew_shape = rew_id.get_space().get_simple_extent_dims()
                if len(rew_shape) != 1:
                    raise DatasetFormatError(
                        f"{self.path}: {group}/rewards has shape {rew_shape}; expected (steps,)"
                    )
                t = rew_shape[0]
                if t == 0:  # no steps, no transitions: nothing to store
                    skipped += 1
                    continue
                if buf is not None and buf.rows + t > buf.capacity:
                    yield buf.take(self.obs_leaves, self.obs_space, skipped)
                    buf, skipped = None, 0
                if buf is None:
                    buf = _BlockBuffer(max(self.block_rows, t))
                self._read_into(buf, gid, group, "rewards", t)
                for obs_name, next_name in self._names:
                    full = self._read_into(buf, gid, group, obs_name, t + 1)
                    buf.slot(next_name, t, full.dtype, full.shape[1:], "")[...] = full[1:]
                for name in ("actions", "terminations", "truncations"):
                    self._read_into(buf, gid, group, name, t)
                buf.commit(int(ep), self._seed(gid), t)
        if buf is not None:
            yield buf.take(self.obs_leaves, self.obs_space, skipped)
        elif skipped:
            yield _empty_block(skipped)


class _ArrowFastReader:
    """Bulk reader of Minari's Arrow/Parquet storage (one directory per episode id): each
    episode's memory-mapped table is copied straight into the rows of a block."""

    def __init__(
        self,
        data_path: Path,
        fmt: str,
        obs_leaves: list[_Leaf],
        obs_space: gym.Space[Any],
        act_space: gym.Space[Any],
        block_rows: int,
    ) -> None:
        self.data_path = data_path
        self.fmt = fmt
        self.obs_leaves = obs_leaves
        self.obs_space = obs_space
        self.act_space = act_space
        self.block_rows = block_rows
        self._root = os.fspath(data_path)
        self._buffer = bytearray(1 << 20)

    def _table(self, ep: int) -> Any:
        """The episode's table. Arrow files are read into a buffer that is reused for the next
        episode (the caller copies the values out first): cheaper than memory-mapping each
        small file, which costs a map, page faults and an unmap per episode."""
        import pyarrow as pa

        ext = "." + ("arrow" if self.fmt == "arrow" else "parquet")
        folder = os.path.join(self._root, str(ep))
        try:
            with os.scandir(folder) as it:
                files = sorted(e.path for e in it if e.name.endswith(ext) and e.is_file())
        except FileNotFoundError:
            files = []
        if not files:
            raise DatasetFormatError(f"{folder}: no *{ext} file for episode {ep}")
        if self.fmt != "arrow":
            import pyarrow.parquet as pq

            tables = [pq.read_table(fn) for fn in files]
            return tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        import pyarrow.ipc as ipc

        if len(files) > 1:  # several parts: each keeps its own buffer
            return pa.concat_tables(
                [ipc.open_file(pa.py_buffer(_read_bytes(fn))).read_all() for fn in files]
            )
        with open(files[0], "rb", buffering=0) as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > len(self._buffer):
                self._buffer = bytearray(max(size, 2 * len(self._buffer)))
            view = memoryview(self._buffer)[:size]
            got = 0
            while got < size:
                k = fh.readinto(view[got:])
                if not k:
                    raise DatasetFormatError(f"{files[0]}: file shrank while being read")
                got += k
        return ipc.open_file(pa.py_buffer(view)).read_all()

    @staticmethod
    def _array(column: Any) -> Any:
        """One Arrow array for a table column (no copy when it has one chunk)."""
        if hasattr(column, "num_chunks"):
            return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
        return column

    @staticmethod
    def _numpy(space: gym.Space[Any], arr: Any) -> np.ndarray:
        """A leaf's values (one row per observation) as a numpy view where possible."""
        if isinstance(space, gym.spaces.Discrete):
            return np.asarray(arr.to_numpy(zero_copy_only=False))
        shape = space.shape or ()
        size = int(np.prod(shape, dtype=np.int64))
        if (
            hasattr(arr, "values")
            and getattr(arr.type, "list_size", None) == size
            and arr.offset == 0
            and arr.null_count == 0
            and len(arr.values) == len(arr) * size
        ):
            values = arr.values  # the flat child of a fixed-size list: no compute call
        else:
            values = arr.flatten()
        return np.asarray(values.to_numpy(zero_copy_only=False)).reshape(len(arr), *shape)

    def _seed(self, ep: int) -> int | None:
        try:
            doc = json.loads(_read_bytes(os.path.join(self._root, str(ep), "metadata.json")))
        except FileNotFoundError:
            return None
        seed = doc.get("seed") if isinstance(doc, dict) else None
        return None if seed is None else int(seed)

    def blocks(self, ids: Sequence[int]) -> Iterator[_Block]:
        """The selected episodes, in order, in blocks of about ``block_rows`` steps."""
        buf: _BlockBuffer | None = None
        skipped = 0
        for ep in ids:
            ep = int(ep)
            table = self._table(ep)
            names = set(table.column_names)
            missing = {"observations", "actions", "rewards", "terminations", "truncations"} - names
            if missing:
                raise DatasetFormatError(
                    f"{self.data_path / str(ep)}: episode {ep} lacks columns {sorted(missing)}"
                )
            t = table.num_rows - 1
            if t <= 0:
                skipped += 1
                continue
            if buf is not None and buf.rows + t > buf.capacity:
                yield buf.take(self.obs_leaves, self.obs_space, skipped)
                buf, skipped = None, 0
            if buf is None:
                buf = _BlockBuffer(max(self.block_rows, t))
            where = f"{self.data_path / str(ep)}: episode {ep}"
            obs = self._array(table.column("observations"))
            for leaf in self.obs_leaves:
                node = obs
                for k in leaf.key:
                    node = node.field(k)
                full = self._numpy(leaf.space, node)
                buf.put(f"observations{leaf.hdf5}", full[:t], f"{where}: observations{leaf.hdf5}")
                buf.put(f"obs_next{leaf.hdf5}", full[1:], f"{where}: observations{leaf.hdf5}")
            act = self._numpy(self.act_space, self._array(table.column("actions")))
            buf.put("actions", act[:t], f"{where}: actions")
            for name in ("rewards", "terminations", "truncations"):
                col = np.asarray(self._array(table.column(name)).to_numpy(zero_copy_only=False))
                buf.put(name, col[:t], f"{where}: {name}")
            buf.commit(ep, self._seed(ep), t)
        if buf is not None:
            yield buf.take(self.obs_leaves, self.obs_space, skipped)
        elif skipped:
            yield _empty_block(skipped)


def _minari_episodes(dataset: Any, ids: Sequence[int], with_infos: bool) -> Iterator[_Episode]:
    """Episodes through Minari's own ``iterate_episodes`` (any storage, decodes JPEG)."""
    metas = dataset.storage.get_episode_metadata(ids)
    for ep, meta in zip(dataset.iterate_episodes(ids), metas, strict=True):
        seed = meta.get("seed") if isinstance(meta, Mapping) else None
        yield _Episode(
            id=int(ep.id),
            seed=None if seed is None else int(seed),
            observations=ep.observations,
            actions=ep.actions,
            rewards=np.asarray(ep.rewards),
            terminations=np.asarray(ep.terminations),
            truncations=np.asarray(ep.truncations),
            infos=ep.infos if with_infos else None,
        )


def _episode_blocks(
    episodes: Iterator[_Episode], data_path: Path, with_infos: bool
) -> Iterator[_Block]:
    """One block per episode (Minari's iterator; the arrays are used as they are)."""
    for ep in episodes:
        t = ep.length
        obs = ep.observations
        for path, leaf in _tree_leaves(obs, "observations"):
            if not isinstance(leaf, np.ndarray) or leaf.shape[:1] != (t + 1,):
                got = np.shape(leaf)[:1] if isinstance(leaf, np.ndarray) else type(leaf).__name__
                raise DatasetFormatError(
                    f"{data_path}: episode {ep.id}: {path} has {got} rows; expected {t + 1} "
                    "(steps + 1)"
                )
        if t == 0:  # no steps, no transitions: nothing to store
            yield _empty_block(1)
            continue
        yield _Block(
            ids=[ep.id],
            seeds=[ep.seed],
            lengths=np.array([t], dtype=np.int64),
            obs=_tree_map(lambda a, n=t: a[:n], obs),
            obs_next=_tree_map(lambda a: a[1:], obs),
            actions=np.asarray(ep.actions),
            rewards=ep.rewards,
            terminations=ep.terminations,
            truncations=ep.truncations,
            info=_split_infos(ep.infos, t, ep.id) if with_infos else None,
            consumed=1,
        )


def _check_block(block: _Block, data_path: Path, nan_policy: NanPolicy) -> tuple[np.ndarray, int]:
    """Validate a block; returns ``(done, count of non-finite rewards kept)``.

    ``done`` marks every episode's last row; a ``terminations``/``truncations`` flag on any
    other row, or (``nan_policy="error"``) a non-finite reward, is refused naming the episode.
    """
    n = int(block.rewards.shape[0]) if block.rewards.ndim else 0
    ends = np.cumsum(block.lengths) - 1
    if block.rewards.ndim != 1 or (ends.size and int(ends[-1]) != n - 1):
        k = 0 if block.rewards.ndim != 1 else int(np.searchsorted(ends, n - 1))
        raise DatasetFormatError(
            f"{data_path}: episode {block.ids[min(k, len(block.ids) - 1)]}: rewards have shape "
            f"{block.rewards.shape}; expected ({int(block.lengths.sum())},) (one per step)"
        )
    done = np.zeros(n, dtype=bool)
    done[ends] = True

    def episode_of(row: int) -> tuple[int, int, int]:
        k = int(np.searchsorted(ends, row))
        return block.ids[k], row - (int(ends[k]) + 1 - int(block.lengths[k])), int(block.lengths[k])

    for name, flags in (("terminations", block.terminations), ("truncations", block.truncations)):
        if flags.shape != (n,):
            raise DatasetFormatError(
                f"{data_path}: episode {block.ids[0]}: {name} has shape {flags.shape}; "
                f"expected ({n},) (one per step)"
            )
        inner = flags.astype(bool, copy=False) & ~done
        if inner.any():
            ep, row, t = episode_of(int(np.flatnonzero(inner)[0]))
            raise DataValidationError(
                f"{data_path}: episode {ep}: row {row} of {t} is set in {name}; only the last "
                "step of an episode may be terminal or truncated"
            )
    bad_count = 0
    rew = block.rewards
    if nan_policy != "ignore" and np.issubdtype(rew.dtype, np.floating):
        bad = ~np.isfinite(rew)
        if bad.any():
            if nan_policy == "error":
                ep, _, _ = episode_of(int(np.flatnonzero(bad)[0]))
                k = block.ids.index(ep)
                stop = int(ends[k]) + 1
                count = int(np.count_nonzero(bad[stop - int(block.lengths[k]) : stop]))
                raise DataValidationError(
                    f"{data_path}: episode {ep} has {count} NaN/inf rewards; pass "
                    "nan_policy='warn' (CLI: --nan-policy warn) to keep them"
                )
            bad_count = int(np.count_nonzero(bad))
    return done, bad_count


# --------------------------------------------------------------------------------------
# conversion
# --------------------------------------------------------------------------------------


def _split_infos(infos: Mapping[str, Any] | None, t: int, ep: int) -> dict[str, Any] | None:
    """``(step infos with T rows, reset infos repeated T times)`` as one ``info`` tree."""
    if not infos:
        return None
    step: dict[str, Any] = {}
    reset: dict[str, Any] = {}

    def walk(node: Mapping[str, Any], s: dict[str, Any], r: dict[str, Any], path: str) -> None:
        for key, value in node.items():
            where = f"episode {ep}: infos/{path}{key}"
            if isinstance(value, Mapping):
                s_sub: dict[str, Any] = {}
                r_sub: dict[str, Any] = {}
                walk(value, s_sub, r_sub, f"{path}{key}/")
                if s_sub:
                    s[str(key)] = s_sub
                if r_sub:
                    r[str(key)] = r_sub
                continue
            arr = _as_storable(value, where)
            if arr.ndim == 0:
                raise DatasetFormatError(f"{where} is a scalar; expected one row per step")
            if arr.shape[0] == t + 1:
                s[str(key)] = arr[1:]
                r[str(key)] = np.repeat(arr[:1], t, axis=0)
            elif arr.shape[0] == t:
                s[str(key)] = arr
            else:
                raise DatasetFormatError(
                    f"{where} has {arr.shape[0]} rows; expected {t + 1} (one per observation) "
                    f"or {t} (one per step)"
                )

    walk(infos, step, reset, "")
    if RESET_INFO_KEY in step:
        raise DatasetFormatError(
            f"episode {ep}: an info key is named {RESET_INFO_KEY!r}, which is reserved"
        )
    if reset:
        step[RESET_INFO_KEY] = reset
    return step


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(_json_safe(v) for v in value)
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, gym.Space):
        return str(value)
    return value


def _env_id(env_spec_json: str | None) -> str | None:
    if not env_spec_json:
        return None
    try:
        doc = json.loads(env_spec_json)
    except json.JSONDecodeError:
        return None
    env_id = doc.get("id") if isinstance(doc, Mapping) else None
    return str(env_id) if env_id else None


def convert_minari(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    episodes: str | slice | Sequence[int] | None = None,
    with_infos: bool = False,
    download: bool = False,
    reader: str = "auto",
    compression: Compression = None,
    nan_policy: NanPolicy = "error",
    overwrite: bool = False,
    progress: bool | None = None,
) -> Path:
    """Convert a Minari dataset to a tianshou-offline buffer file (see the module doc).

    :param source: a dataset id (``D4RL/door/human-v2``) found under ``$MINARI_DATASETS_PATH``
        (or ``~/.minari/datasets``), or a local dataset directory.
    :param output: the ``.hdf5`` buffer file to write (atomically).
    :param episodes: which episodes (positions in the dataset): ``"0:100"``, ``"1,5,9:20"``,
        a slice or a sequence of ints; None for all.
    :param with_infos: store episode infos as ``info`` (uses Minari's episode iterator).
    :param download: download the dataset id first if it is not available locally.
    :param reader: ``"auto"`` (fast path when possible) or ``"minari"`` (always
        ``iterate_episodes``).
    :param compression: output compression: None, ``"gzip"`` or ``"lzf"``.
    :param nan_policy: non-finite rewards: ``"error"`` (refuse), ``"warn"`` or ``"ignore"``.
    :param overwrite: replace an existing output.
    :param progress: tqdm progress bar on stderr (None: only when stderr is a terminal).
    :returns: the output path.
    :raises MissingDependencyError: ``minari`` (or ``pyarrow`` for Arrow data) not installed.
    :raises SourceNotFoundError: the dataset is not available locally, or an episode index
        is out of range.
    :raises DatasetFormatError: a malformed dataset, unsupported space (Text; Dict/Tuple
        actions).
    :raises DataValidationError: NaN rewards with ``nan_policy="error"``; bad selection.
    :raises OutputExistsError: ``output`` exists and ``overwrite`` is False.
    """
    if reader not in ("auto", "minari"):
        raise DataValidationError(f"reader={reader!r}: expected 'auto' or 'minari'")
    out = Path(output)
    data_path, dataset_id = resolve_minari_source(source, download=download)
    if out.exists() and not overwrite:
        raise OutputExistsError(
            f"{out}: output exists; pass overwrite=True (CLI: --overwrite) to replace it"
        )
    dataset = open_minari_dataset(data_path)
    metadata = dict(dataset.storage.metadata)
    obs_space: gym.Space[Any] = dataset.observation_space
    act_space: gym.Space[Any] = dataset.action_space
    if not isinstance(act_space, _ARRAY_SPACES):
        raise DatasetFormatError(
            f"{data_path}: action space {act_space} is not supported: expected Box, Discrete, "
            "MultiDiscrete or MultiBinary"
        )
    positions = select_episodes(episodes, int(dataset.total_episodes))
    ids = [int(i) for i in np.asarray(dataset.episode_indices)[positions]]
    fmt = str(metadata.get("data_format", "hdf5"))
    jpeg = bool(metadata.get("jpeg_encoding", True))
    obs_leaves = _leaves(obs_space, jpeg)
    act_ok = _leaves(act_space, jpeg) is not None
    block_iter: Iterator[_Block]
    block_rows = _block_rows(obs_space, act_space)
    if reader == "auto" and not with_infos and obs_leaves is not None and act_ok and fmt == "hdf5":
        used = "fast-hdf5"
        block_iter = _HDF5FastReader(data_path, obs_leaves, obs_space, block_rows).blocks(ids)
    elif (
        reader == "auto"
        and not with_infos
        and obs_leaves is not None
        and act_ok
        and fmt in ("arrow", "parquet")
    ):
        used = f"fast-{fmt}"
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise MissingDependencyError(
                f"{data_path}: reading Minari '{fmt}' storage needs pyarrow: pip install pyarrow"
            ) from None
        block_iter = _ArrowFastReader(
            data_path, fmt, obs_leaves, obs_space, act_space, block_rows
        ).blocks(ids)
    else:
        used = "minari"
        if _has_text(obs_space):
            raise DatasetFormatError(
                f"{data_path}: observation space {obs_space} contains a Text space, which the "
                "buffer format does not store"
            )
        block_iter = _episode_blocks(
            _minari_episodes(dataset, ids, with_infos), data_path, with_infos
        )

    env_spec = metadata.get("env_spec")
    env_spec = env_spec if isinstance(env_spec, str) else None
    ds_id = str(metadata.get("dataset_id") or dataset_id or data_path.parent.name)
    minari_meta = {
        k: _json_safe(v)
        for k, v in metadata.items()
        if k not in ("observation_space", "action_space", "env_spec")
    }
    selection = (
        None if episodes is None else (episodes if isinstance(episodes, str) else repr(episodes))
    )
    extra = {
        "data_path": str(data_path.resolve()),
        "minari_metadata": minari_meta,
        "episodes": selection or "all",
        "reader": used,
        "with_infos": with_infos,
    }
    extra_attrs: dict[str, str] = {"minari_dataset_id": ds_id}
    for key in ("ref_min_score", "ref_max_score"):
        if metadata.get(key) is not None:
            extra_attrs[key] = repr(float(metadata[key]))
    if isinstance(metadata.get("eval_env_spec"), str):
        extra_attrs["eval_env_spec"] = metadata["eval_env_spec"]
    provenance = Provenance(
        source="minari", dataset_id=ds_id, converter=CONVERTER_NAME, extra=extra
    )

    bad_rewards = 0
    with (
        BufferWriter(
            out,
            observation_space=obs_space,
            action_space=act_space,
            env_id=_env_id(env_spec),
            env_spec=env_spec,
            provenance=provenance,
            compression=compression,
            overwrite=overwrite,
            nan_policy="ignore",  # checked per episode below, reported once
            extra_attrs=extra_attrs,
        ) as writer,
        tqdm(
            total=len(ids),
            unit="ep",
            desc=f"converting {ds_id}",
            file=sys.stderr,
            disable=None if progress is None else not progress,
        ) as bar,
    ):
        for block in block_iter:
            if not block.ids:
                bar.update(block.consumed)
                continue
            done, bad = _check_block(block, data_path, nan_policy)
            bad_rewards += bad
            try:
                writer.add_transitions(
                    obs=block.obs,
                    obs_next=block.obs_next,
                    act=block.actions,
                    rew=block.rewards,
                    terminated=block.terminations,
                    truncated=block.truncations,
                    info=block.info,
                    done=done,
                    episode_metadata=[
                        {"episode_id": ep, "seed": NO_SEED if seed is None else seed}
                        for ep, seed in zip(block.ids, block.seeds, strict=True)
                    ],
                )
            except DataValidationError as e:
                which = (
                    f"episode {block.ids[0]}"
                    if len(block.ids) == 1
                    else f"episodes {block.ids[0]}..{block.ids[-1]}"
                )
                raise DataValidationError(f"{data_path}: {which}: {e}") from None
            bar.update(block.consumed)
    if bad_rewards:
        log.warning("%s: kept %d NaN/inf rewards", data_path, bad_rewards)
    log.info(
        "%s → %s: %d episodes, %d transitions (%s reader)",
        ds_id,
        out,
        writer.num_episodes,
        writer.num_transitions,
        used,
    )
    return out


def _has_text(space: gym.Space[Any]) -> bool:
    if isinstance(space, gym.spaces.Text):
        return True
    if isinstance(space, gym.spaces.Dict):
        return any(_has_text(s) for s in space.spaces.values())
    if isinstance(space, gym.spaces.Tuple):
        return any(_has_text(s) for s in space.spaces)
    return False


# --------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------


def _batch_tree(value: Any, space: gym.Space[Any] | None) -> Any:
    """A Tianshou Batch column as the structure Minari expects for ``space``."""
    from tianshou.data import Batch

    if isinstance(value, Batch):
        keys = list(value.get_keys())
        if isinstance(space, gym.spaces.Tuple):
            return tuple(_batch_tree(value[str(i)], sub) for i, sub in enumerate(space.spaces))
        if isinstance(space, gym.spaces.Dict):
            return {
                k: _batch_tree(value[k], space.spaces.get(k)) for k in space.spaces if k in keys
            }
        return {k: _batch_tree(value[k], None) for k in keys}
    return np.asarray(value)


def _infer_space(tree: Any) -> gym.Space[Any]:
    if isinstance(tree, Mapping):
        return gym.spaces.Dict({k: _infer_space(v) for k, v in tree.items()})
    if isinstance(tree, tuple):
        return gym.spaces.Tuple([_infer_space(v) for v in tree])
    arr = np.asarray(tree)
    if np.issubdtype(arr.dtype, np.integer) and arr.ndim == 1:
        return gym.spaces.Discrete(int(arr.max()) + 1 if arr.size else 1)
    if np.issubdtype(arr.dtype, np.integer):
        ii = np.iinfo(arr.dtype)
        return gym.spaces.Box(ii.min, ii.max, shape=arr.shape[1:], dtype=arr.dtype.type)
    return gym.spaces.Box(-np.inf, np.inf, shape=arr.shape[1:], dtype=arr.dtype.type)


def _env_spec_object(text: str | None) -> Any:
    """``EnvSpec`` from its JSON, tolerating fields of other gymnasium versions (or None)."""
    if not text:
        return None
    from dataclasses import fields

    from gymnasium.envs.registration import EnvSpec

    try:
        return EnvSpec.from_json(text)
    except Exception:
        try:
            doc = json.loads(text)
            known = {f.name for f in fields(EnvSpec)}
            return EnvSpec.from_json(json.dumps({k: v for k, v in doc.items() if k in known}))
        except Exception as e:
            log.warning(
                "env spec cannot be rebuilt with this gymnasium (%s); exporting without it", e
            )
            return None


def _read_episode_metadata(path: Path) -> dict[str, np.ndarray]:
    from tianshou_offline.data.format import (
        EPISODES_GROUP,
        committed_counts,
        detect_layout,
        open_h5,
    )

    with open_h5(path) as f:
        if detect_layout(f) != "tianshou_offline":
            return {}
        _, n_ep = committed_counts(f)
        eps = f[EPISODES_GROUP]
        out = {"start": np.asarray(eps["start"][:n_ep]), "length": np.asarray(eps["length"][:n_ep])}
        md = eps.get("metadata")
        if isinstance(md, h5py.Group):
            for k in md.keys():
                out[f"metadata/{k}"] = np.asarray(md[k][:n_ep])
        return out


def _restore_infos(info: Any, s: int, e: int) -> dict[str, Any] | None:
    """Minari infos of rows ``[s, e)``: step infos, prefixed by the reset row where stored."""
    if info is None:
        return None
    step = {k: v for k, v in info.items() if k != RESET_INFO_KEY}
    reset = info.get(RESET_INFO_KEY, {})

    def merge(st: Mapping[str, Any], rs: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in st.items():
            if isinstance(v, Mapping):
                out[k] = merge(v, rs.get(k, {}) if isinstance(rs.get(k), Mapping) else {})
            elif k in rs:
                out[k] = np.concatenate([rs[k][s : s + 1], v[s:e]], axis=0)
            else:
                out[k] = v[s:e]
        return out

    merged = merge(step, reset)
    return merged or None


def _info_has_t_rows_only(info: Any) -> bool:
    """True when some info leaf has no reset row (T rows per episode)."""
    if not info:
        return False
    step = {k: v for k, v in info.items() if k != RESET_INFO_KEY}
    reset = info.get(RESET_INFO_KEY, {})
    step_paths = {p for p, _ in _tree_leaves(step)}
    reset_paths = {p for p, _ in _tree_leaves(reset)} if reset else set()
    return bool(step_paths - reset_paths)


def export_minari(
    buffer_path: str | os.PathLike[str],
    dataset_id: str,
    *,
    data_format: str = "hdf5",
    overwrite: bool = False,
    include_infos: bool = True,
    jpeg_encoding: bool = False,
    author: str | None = None,
    author_email: str | None = None,
    algorithm_name: str | None = None,
    code_permalink: str | None = None,
    description: str | None = None,
    progress: bool | None = None,
) -> Path:
    """Write a buffer file as a Minari dataset under ``$MINARI_DATASETS_PATH`` (see module doc).

    :param buffer_path: any file :func:`tianshou_offline.load_buffer` reads.
    :param dataset_id: the new dataset's id, ``(namespace/)name-vN``.
    :param data_format: Minari storage: ``"hdf5"`` (default), ``"arrow"`` or ``"parquet"``.
    :param overwrite: replace an existing dataset with that id.
    :param include_infos: export the buffer's ``info`` columns as episode infos.
    :param jpeg_encoding: let Minari JPEG-encode image spaces (lossy); default stores raw arrays.
    :param author, author_email, algorithm_name, code_permalink, description: dataset metadata
        (defaults: those of the Minari dataset the buffer was converted from, if any).
    :param progress: tqdm progress bar on stderr (None: only when stderr is a terminal).
    :returns: the dataset's data directory.
    :raises OutputExistsError: a dataset with that id exists and ``overwrite`` is False.
    :raises DataValidationError: malformed id; empty buffer; infos Arrow cannot store.
    """
    minari = _import_minari()
    from minari.data_collector import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage
    from minari.namespace import create_namespace, list_local_namespaces

    from tianshou_offline.data.buffer import load_buffer
    from tianshou_offline.data.format import read_metadata

    if data_format not in ("hdf5", "arrow", "parquet"):
        raise DataValidationError(f"data_format={data_format!r}: expected hdf5, arrow or parquet")
    namespace, _, _ = _parse_dataset_id(dataset_id)
    src = Path(buffer_path)
    md = read_metadata(src)
    root = minari_datasets_root()
    target = root / dataset_id
    if target.exists():
        if not overwrite:
            raise OutputExistsError(
                f"Minari dataset {dataset_id!r} exists at {target}; pass overwrite=True "
                "(CLI: --overwrite) to replace it"
            )
        if not (target / "data" / "metadata.json").is_file():
            raise OutputExistsError(
                f"{target} exists and is not a Minari dataset; refusing to replace it"
            )

    buf = load_buffer(src, include_info=include_infos)
    n = len(buf)
    if n == 0:
        raise DataValidationError(f"{src}: the buffer is empty; nothing to export")
    table = _read_episode_metadata(src)
    if table:
        starts = table["start"].astype(np.int64)
        ends = starts + table["length"].astype(np.int64)
    else:
        done = np.asarray(buf.done, dtype=bool).copy()
        done[-1] = True
        ends = np.flatnonzero(done) + 1
        starts = np.concatenate([[0], ends[:-1]])
    seeds = table.get("metadata/seed")

    obs_space = md.observation_space
    act_space = md.action_space
    obs_tree = _batch_tree(buf.obs, obs_space)
    meta_keys = set(buf._meta.get_keys())
    has_next = "obs_next" in meta_keys
    next_tree = _batch_tree(buf.obs_next, obs_space) if has_next else None
    act = np.asarray(buf.act)
    if obs_space is None:
        obs_space = _infer_space(obs_tree)
    if act_space is None:
        act_space = _infer_space(act)
    if not has_next:
        log.warning(
            "%s stores no obs_next: each episode's final observation is repeated from its last obs",
            src,
        )
    # Minari keeps one observation per step: check obs_next[t] == obs[t + 1] inside episodes
    inside = np.ones(n, dtype=bool)
    inside[ends - 1] = False
    inside_rows = np.flatnonzero(inside)
    mismatches = 0
    if has_next and inside_rows.size:
        for (_, a), (_, b) in zip(_tree_leaves(obs_tree), _tree_leaves(next_tree), strict=True):
            x, y = a[inside_rows + 1], b[inside_rows]
            same = x == y
            if np.issubdtype(x.dtype, np.floating):
                same |= np.isnan(x) & np.isnan(y)
            mismatches += int(np.count_nonzero(~same.reshape(len(inside_rows), -1).all(axis=1)))
    if mismatches:
        log.warning(
            "%s: %d transitions have obs_next different from the next row's obs (e.g. D4RL "
            "terminal placeholders); Minari stores one observation per step, so the next "
            "row's obs is exported",
            src,
            mismatches,
        )
    info = buf.info if include_infos and "info" in meta_keys else None
    info_tree = _batch_tree(info, None) if info is not None and len(info.get_keys()) else None
    if info_tree is not None and data_format != "hdf5" and _info_has_t_rows_only(info_tree):
        raise DataValidationError(
            f"{src}: its info columns have one row per step (no reset row), but Minari's "
            f"{data_format} storage needs one per observation; export with data_format='hdf5' "
            "(CLI: --data-format hdf5) or without infos (CLI: --no-infos)"
        )

    prov = md.provenance
    src_meta: Mapping[str, Any] = {}
    if prov is not None and isinstance(prov.extra.get("minari_metadata"), Mapping):
        src_meta = prov.extra["minari_metadata"]

    def pick(value: str | None, key: str) -> str | None:
        if value is not None:
            return value
        v = src_meta.get(key)
        return str(v) if isinstance(v, str) else None

    def pick_set(value: str | None, key: str) -> set[str] | None:
        if value is not None:
            return {value}
        v = src_meta.get(key)
        if isinstance(v, list | tuple | set):
            return {str(x) for x in v}
        return {v} if isinstance(v, str) else None

    dataset_meta: dict[str, Any] = {"dataset_id": dataset_id, "minari_version": minari.__version__}
    authors = pick_set(author, "author")
    emails = pick_set(author_email, "author_email")
    if authors:
        dataset_meta["author"] = authors
    if emails:
        dataset_meta["author_email"] = emails
    for key, value in (
        ("algorithm_name", algorithm_name),
        ("code_permalink", code_permalink),
        ("description", description),
    ):
        got = pick(value, key)
        if got is not None:
            dataset_meta[key] = got
    for key in ("ref_min_score", "ref_max_score"):
        raw = md.extra_attrs.get(key)
        if raw:
            dataset_meta[key] = float(raw)
    if isinstance(md.extra_attrs.get("eval_env_spec"), str) and md.extra_attrs["eval_env_spec"]:
        dataset_meta["eval_env_spec"] = md.extra_attrs["eval_env_spec"]
    if isinstance(src_meta.get("requirements"), list):
        dataset_meta["requirements"] = list(src_meta["requirements"])
    if src_meta.get("num_episodes_average_score") is not None and "ref_max_score" in dataset_meta:
        dataset_meta["num_episodes_average_score"] = int(src_meta["num_episodes_average_score"])

    if namespace is not None and namespace not in list_local_namespaces():
        create_namespace(namespace)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        data_path = tmp / "data"
        tmp.mkdir()
        storage = MinariStorage.new(
            data_path,
            observation_space=obs_space,
            action_space=act_space,
            env_spec=_env_spec_object(md.env_spec),
            data_format=data_format,
            jpeg_encoding=jpeg_encoding,
        )
        storage.update_metadata(dataset_meta)
        batch: list[Any] = []
        with tqdm(
            total=len(starts),
            unit="ep",
            desc=f"exporting {dataset_id}",
            file=sys.stderr,
            disable=None if progress is None else not progress,
        ) as bar:
            for i, (s, e) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
                last_next = (
                    _tree_map(lambda a, e=e: a[e - 1 : e], next_tree)
                    if next_tree is not None
                    else _tree_map(lambda a, e=e: a[e - 1 : e], obs_tree)
                )
                observations = _tree_map2(
                    lambda a, b, s=s, e=e: np.concatenate([a[s:e], b], axis=0), obs_tree, last_next
                )
                seed = None
                if seeds is not None and int(seeds[i]) >= 0:
                    seed = int(seeds[i])
                batch.append(
                    EpisodeBuffer(
                        id=i,
                        seed=seed,
                        observations=observations,
                        actions=act[s:e],
                        rewards=np.asarray(buf.rew[s:e]),
                        terminations=np.asarray(buf.terminated[s:e], dtype=bool),
                        truncations=np.asarray(buf.truncated[s:e], dtype=bool),
                        infos=_restore_infos(info_tree, s, e),
                    )
                )
                if len(batch) >= 64:
                    storage.update_episodes(batch)
                    bar.update(len(batch))
                    batch = []
            if batch:
                storage.update_episodes(batch)
                bar.update(len(batch))
        if target.exists():
            trash = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.old"
            os.replace(target, trash)
            os.replace(tmp, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    minari.load_dataset(dataset_id)  # what users will call: must succeed
    log.info(
        "%s → Minari dataset %s (%d episodes, %d steps) at %s",
        src,
        dataset_id,
        len(starts),
        n,
        target,
    )
    return target / "data"


def _tree_map2(fn: Any, a: Any, b: Any) -> Any:
    if isinstance(a, Mapping):
        return {k: _tree_map2(fn, a[k], b[k]) for k in a}
    if isinstance(a, tuple):
        return tuple(_tree_map2(fn, x, y) for x, y in zip(a, b, strict=True))
    return fn(a, b)


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------


def add_minari_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``convert minari`` (shared by the CLI and ``converters/convert_minari.py``)."""
    parser.add_argument(
        "source",
        metavar="DATASET_ID_OR_PATH",
        help="Minari dataset id (looked up in $MINARI_DATASETS_PATH or ~/.minari/datasets) or "
        "a local dataset directory",
    )
    parser.add_argument("-o", "--output", required=True, help="output .hdf5 buffer file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument(
        "--download",
        action="store_true",
        help="download the dataset first if it is not available locally",
    )
    parser.add_argument(
        "--episodes",
        default=None,
        metavar="SEL",
        help="episode subset, Python slice syntax: 0:100, :10, 5, 1,3,10:20",
    )
    parser.add_argument("--with-infos", action="store_true", help="store episode infos as info")
    parser.add_argument(
        "--reader",
        choices=("auto", "minari"),
        default="auto",
        help="auto: bulk fast path when possible (default); minari: always "
        "MinariDataset.iterate_episodes",
    )
    parser.add_argument(
        "--compression",
        choices=("gzip", "lzf"),
        default=None,
        help="compress the output (default: none, fastest)",
    )
    parser.add_argument(
        "--nan-policy",
        choices=("error", "warn", "ignore"),
        default="error",
        help="non-finite rewards: refuse (default), keep with a warning, or keep",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_minari_command(args: argparse.Namespace) -> int:
    """Run ``convert minari`` from parsed arguments; report a one-line summary."""
    from tianshou_offline.data.format import read_metadata

    out = convert_minari(
        args.source,
        args.output,
        episodes=args.episodes,
        with_infos=args.with_infos,
        download=args.download,
        reader=args.reader,
        compression=args.compression,
        nan_policy=cast(NanPolicy, args.nan_policy),
        overwrite=args.overwrite,
        progress=False if args.no_progress else None,
    )
    md = read_metadata(out)
    report(f"wrote {out}: {md.num_transitions} transitions, {md.num_episodes} episodes")
    return 0


def register_cli(convert_subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``convert minari DATASET_ID -o OUT`` to the ``tianshou-offline`` command."""
    parser = convert_subparsers.add_parser(
        "minari",
        help="Minari dataset (id or directory; HDF5 or Arrow storage) → buffer",
        description="Convert a Minari dataset to a tianshou-offline buffer: each episode's "
        "T+1 observations become obs/obs_next; terminations/truncations, spaces (Dict/Tuple "
        "kept nested), env spec, episode ids and seeds are kept. See docs/CONVERTERS.md.",
    )
    add_minari_arguments(parser)
    parser.set_defaults(func=run_minari_command)


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``export minari``."""
    parser.add_argument("buffer", metavar="BUFFER.hdf5", help="buffer file to export")
    parser.add_argument(
        "--dataset-id", required=True, help="id of the new Minari dataset, (namespace/)name-vN"
    )
    parser.add_argument(
        "--data-format",
        choices=("hdf5", "arrow", "parquet"),
        default="hdf5",
        help="Minari storage backend (default: hdf5)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    parser.add_argument("--no-infos", action="store_true", help="do not export info columns")
    parser.add_argument(
        "--jpeg",
        action="store_true",
        help="JPEG-encode image observations (lossy; default: raw arrays)",
    )
    parser.add_argument("--author", default=None)
    parser.add_argument("--author-email", default=None)
    parser.add_argument("--algorithm-name", default=None)
    parser.add_argument("--code-permalink", default=None)
    parser.add_argument("--description", default=None)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_export_command(args: argparse.Namespace) -> int:
    """Run ``export minari`` from parsed arguments; report a one-line summary."""
    data = export_minari(
        args.buffer,
        args.dataset_id,
        data_format=args.data_format,
        overwrite=args.overwrite,
        include_infos=not args.no_infos,
        jpeg_encoding=args.jpeg,
        author=args.author,
        author_email=args.author_email,
        algorithm_name=args.algorithm_name,
        code_permalink=args.code_permalink,
        description=args.description,
        progress=False if args.no_progress else None,
    )
    with open(data / "metadata.json") as fh:
        meta = json.load(fh)
    report(
        f"wrote Minari dataset {args.dataset_id} at {data.parent}: "
        f"{meta.get('total_episodes')} episodes, {meta.get('total_steps')} steps"
    )
    return 0


def register_export_cli(
    export_subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Add ``export minari BUFFER.hdf5 --dataset-id ns/name-v0`` to ``tianshou-offline``."""
    parser = export_subparsers.add_parser(
        "minari",
        help="buffer → Minari dataset (loadable with minari.load_dataset)",
        description="Write a buffer file as a Minari dataset under $MINARI_DATASETS_PATH "
        "(or ~/.minari/datasets). Minari → buffer → Minari preserves every episode exactly.",
    )
    add_export_arguments(parser)
    parser.set_defaults(func=run_export_command)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tianshou_offline.converters.minari DATASET_ID -o OUT`` (same as the CLI)."""
    return run_script(
        add_minari_arguments,
        run_minari_command,
        argv,
        prog="convert_minari.py",
        description="Convert a Minari dataset to a tianshou-offline HDF5 buffer.",
    )


__all__ = [
    "NO_SEED",
    "RESET_INFO_KEY",
    "convert_minari",
    "export_minari",
    "minari_datasets_root",
    "open_minari_dataset",
    "parse_episode_selection",
    "register_cli",
    "register_export_cli",
    "resolve_minari_source",
    "select_episodes",
]


if __name__ == "__main__":
    sys.exit(main())
