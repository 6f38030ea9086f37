"""Reading a Minari dataset's episodes into blocks of many episodes for the writer: the
fast readers of Minari's HDF5 and Arrow/Parquet storage layouts, and Minari's own
``iterate_episodes`` for everything else (both give identical arrays)."""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import h5py
import numpy as np

from tianshou_offline.converters.minari.source import RESET_INFO_KEY, minari_errors
from tianshou_offline.converters.minari.spaces import (
    _as_storable,
    _build_tree,
    _Leaf,
    _tree_leaves,
    _tree_map,
)
from tianshou_offline.data.format import open_h5
from tianshou_offline.data.reading import check_extent
from tianshou_offline.data.writer import NanPolicy
from tianshou_offline.errors import (
    DatasetFormatError,
    DataValidationError,
)

log = logging.getLogger(__name__)


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


EpisodeFill = Callable[["_BlockBuffer"], None]
"""Reads or copies one episode's rows into a block buffer and commits them."""


def _in_blocks(
    episodes: Iterator[tuple[int, EpisodeFill]],
    block_rows: int,
    obs_leaves: list[_Leaf],
    obs_space: gym.Space[Any],
) -> Iterator[_Block]:
    """Blocks of about ``block_rows`` steps from ``episodes`` (each episode's steps and the
    function that fills them in); an episode without steps is counted, not stored."""
    buf: _BlockBuffer | None = None
    skipped = 0
    for t, fill in episodes:
        if t <= 0:  # no steps, no transitions: nothing to store
            skipped += 1
            continue
        if buf is not None and buf.rows + t > buf.capacity:
            yield buf.take(obs_leaves, obs_space, skipped)
            buf, skipped = None, 0
        if buf is None:
            buf = _BlockBuffer(max(block_rows, t))
        fill(buf)
    if buf is not None:
        yield buf.take(obs_leaves, obs_space, skipped)
    elif skipped:
        yield _empty_block(skipped)


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
        shape = tuple(dsid.get_space().get_simple_extent_dims() or ())
        if not shape or shape[0] != rows:
            raise DatasetFormatError(
                f"{self.path}: {group}/{name} has {shape[0] if shape else 0} rows; expected "
                + (
                    f"{rows} (steps + 1)"
                    if name.startswith("obs")
                    else f"{rows} (the length of rewards)"
                )
            )
        _check_storage(dsid, rows, shape, f"{self.path}: '{group}/{name}'")
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
        if attr.shape not in ((), (1,)) or np.dtype(attr.dtype).kind not in "iu":
            raise DatasetFormatError(
                f"{self.path}: attribute 'seed' of an episode has shape {attr.shape} and dtype "
                f"{attr.dtype}; expected one integer"
            )
        value = np.empty(attr.shape, dtype=np.int64)
        attr.read(value, self._int64)
        return int(value.reshape(-1)[0])

    def blocks(self, ids: Sequence[int]) -> Iterator[_Block]:
        """The selected episodes, in order, in blocks of about ``block_rows`` steps."""
        with open_h5(self.path) as f:  # the boundary: h5py's errors become typed errors
            yield from _in_blocks(
                self._episodes(f.id, ids), self.block_rows, self.obs_leaves, self.obs_space
            )

    def _episodes(self, fid: Any, ids: Sequence[int]) -> Iterator[tuple[int, EpisodeFill]]:
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
            rew_shape = tuple(rew_id.get_space().get_simple_extent_dims() or ())
            if len(rew_shape) != 1:
                raise DatasetFormatError(
                    f"{self.path}: {group}/rewards has shape {rew_shape}; expected (steps,)"
                )
            t = rew_shape[0]
            _check_storage(rew_id, t, rew_shape, f"{self.path}: '{group}/rewards'")
            yield t, functools.partial(self._read_episode, gid, group, int(ep), t)

    def _read_episode(self, gid: Any, group: str, ep: int, t: int, buf: _BlockBuffer) -> None:
        self._read_into(buf, gid, group, "rewards", t)
        for obs_name, next_name in self._names:
            full = self._read_into(buf, gid, group, obs_name, t + 1)
            buf.slot(next_name, t, full.dtype, full.shape[1:], "")[...] = full[1:]
        for name in ("actions", "terminations", "truncations"):
            self._read_into(buf, gid, group, name, t)
        buf.commit(ep, self._seed(gid), t)


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

            # one small file per episode: Arrow's thread pools speed nothing up here, and
            # each of their threads costs address space (see export._arrow_threads_at_one)
            tables = [pq.read_table(fn, use_threads=False, pre_buffer=False) for fn in files]
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
    def _field(node: Any, key: str, where: str) -> Any:
        """The field ``key`` of a struct array (a ``Dict`` or ``Tuple`` space's value),
        checked: the dataset's observations must have the fields of its space."""
        import pyarrow as pa

        if not isinstance(node, pa.StructArray) or node.type.get_field_index(key) < 0:
            fields = [f.name for f in node.type] if isinstance(node, pa.StructArray) else None
            raise DatasetFormatError(
                f"{where} is missing: the observation space has the field {key!r}, the stored "
                + (f"observations have {fields}" if fields is not None else f"value is {node.type}")
            )
        return node.field(key)

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
        yield from _in_blocks(self._episodes(ids), self.block_rows, self.obs_leaves, self.obs_space)

    def _episodes(self, ids: Sequence[int]) -> Iterator[tuple[int, EpisodeFill]]:
        for ep in ids:
            ep = int(ep)
            table = self._table(ep)
            names = set(table.column_names)
            missing = {"observations", "actions", "rewards", "terminations", "truncations"} - names
            if missing:
                raise DatasetFormatError(
                    f"{self.data_path / str(ep)}: episode {ep} lacks columns {sorted(missing)}"
                )
            yield table.num_rows - 1, functools.partial(self._copy_episode, ep, table)

    def _copy_episode(self, ep: int, table: Any, buf: _BlockBuffer) -> None:
        t = table.num_rows - 1
        where = f"{self.data_path / str(ep)}: episode {ep}"
        obs = self._array(table.column("observations"))
        for leaf in self.obs_leaves:
            node = obs
            for k in leaf.key:
                node = self._field(node, k, f"{where}: observations{leaf.hdf5}")
            full = self._numpy(leaf.space, node)
            buf.put(f"observations{leaf.hdf5}", full[:t], f"{where}: observations{leaf.hdf5}")
            buf.put(f"obs_next{leaf.hdf5}", full[1:], f"{where}: observations{leaf.hdf5}")
        act = self._numpy(self.act_space, self._array(table.column("actions")))
        buf.put("actions", act[:t], f"{where}: actions")
        for name in ("rewards", "terminations", "truncations"):
            col = np.asarray(self._array(table.column(name)).to_numpy(zero_copy_only=False))
            buf.put(name, col[:t], f"{where}: {name}")
        buf.commit(ep, self._seed(ep), t)


def _check_storage(dsid: Any, rows: int, shape: tuple[int, ...], where: str) -> None:
    """Before a dataset's rows are allocated and read: the file stores them (the low-level
    twin of :func:`~tianshou_offline.data.reading.check_extent`, one call in the common
    case of uncompressed data)."""
    need = rows * int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dsid.dtype).itemsize
    if need <= dsid.get_storage_size():
        return
    check_extent(h5py.Dataset(dsid), rows)


def _minari_episodes(
    dataset: Any, ids: Sequence[int], with_infos: bool, data_path: Path
) -> Iterator[_Episode]:
    """Episodes through Minari's own ``iterate_episodes`` (any storage, decodes JPEG)."""
    with minari_errors(data_path):
        yield from _minari_episodes_unchecked(dataset, ids, with_infos, data_path)


MINARI_BATCH = 256
"""Episodes checked (:func:`_check_hdf5_episodes`) and then read by Minari at a time."""


def _minari_episodes_unchecked(
    dataset: Any, ids: Sequence[int], with_infos: bool, data_path: Path | None = None
) -> Iterator[_Episode]:
    h5 = None if data_path is None else data_path / "main_data.hdf5"
    for lo in range(0, len(ids), MINARI_BATCH):
        batch = ids[lo : lo + MINARI_BATCH]
        if h5 is not None and h5.is_file():
            _check_hdf5_episodes(h5, batch)
        metas = dataset.storage.get_episode_metadata(batch)
        for ep, meta in zip(dataset.iterate_episodes(batch), metas, strict=True):
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


_MAX_EPISODE_DEPTH = 16
"""Nesting of an episode's groups (Dict/Tuple spaces, infos) beyond which it is refused."""
_MAX_EPISODE_OBJECTS = 100_000
"""Groups and datasets one episode may reach (links followed) before it is refused."""


def _check_hdf5_episodes(h5: Path, ids: Sequence[int]) -> None:
    """Before Minari reads episodes ``ids`` of ``h5`` (it reads every dataset of an episode
    whole, as the file declares it): each dataset's extent is within what the file stores
    (:func:`~tianshou_offline.data.reading.check_extent`), so a declared extent of petabytes
    is a typed error instead of an allocation. Links are followed as Minari follows them; a
    cycle or a nesting deeper than :data:`_MAX_EPISODE_DEPTH` is refused."""
    with open_h5(h5) as f:
        for ep in ids:
            name = f"episode_{int(ep)}"
            if name not in f:
                continue  # Minari's own error names it
            stack: list[tuple[Any, int]] = [(f[name], 0)]
            seen = 0
            while stack:
                obj, depth = stack.pop()
                seen += 1
                if seen > _MAX_EPISODE_OBJECTS:
                    raise DatasetFormatError(
                        f"{h5}: {name} holds more than {_MAX_EPISODE_OBJECTS} groups and "
                        "datasets (links that lead back into it?)"
                    )
                if isinstance(obj, h5py.Dataset):
                    shape = obj.shape
                    check_extent(obj, int(shape[0]) if shape else 1)
                elif isinstance(obj, h5py.Group):
                    if depth >= _MAX_EPISODE_DEPTH:
                        raise DatasetFormatError(
                            f"{h5}: '{obj.name}' is nested {depth} groups deep in {name}; "
                            f"expected at most {_MAX_EPISODE_DEPTH} (a link cycle?)"
                        )
                    stack.extend((obj[key], depth + 1) for key in obj)


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
    for name, arr in (
        ("rewards", block.rewards),
        ("terminations", block.terminations),
        ("truncations", block.truncations),
        ("actions", block.actions),
        *_tree_leaves(block.obs, "observations"),
    ):
        dtype = np.asarray(arr).dtype
        if dtype.kind not in "biuf" or dtype.names is not None:
            raise DatasetFormatError(
                f"{data_path}: episode {block.ids[0]}: {name} has dtype {dtype}; expected "
                "numbers or bools"
            )
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
