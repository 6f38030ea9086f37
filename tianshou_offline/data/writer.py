"""The streaming, chunked, atomic writer behind every converter, the recorder and save_buffer.

Usage::

    with BufferWriter("out.hdf5", observation_space=env.observation_space,
                      action_space=env.action_space,
                      provenance=Provenance(source="d4rl", dataset_id="hopper-medium-v2")) as w:
        w.add_episode(obs=..., act=..., rew=..., terminated=..., truncated=..., obs_next=...)
        w.add_transitions(...)   # many rows at once; episodes end where ``done`` is True

Two modes:

- **atomic** (default): everything is written to a hidden temporary file beside the output,
  which is renamed into place by :meth:`BufferWriter.close`. An exception inside the
  ``with`` block (or a killed process) never leaves anything at the output path; an existing
  output is refused unless ``overwrite=True``.
- **append** (``append=True``, used by :class:`~tianshou_offline.recording.EpisodeRecorder`):
  the file at ``path`` grows one committed episode at a time in HDF5 SWMR mode, so a process
  killed at any moment leaves a readable file holding every committed episode.

Columns are numpy arrays whose first axis is time; ``obs``/``obs_next``/``info`` may be
nested mappings (gymnasium ``Dict`` spaces) or tuples (``Tuple`` spaces, stored as groups
with keys ``"0"``, ``"1"``, …).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import gymnasium as gym
import h5py
import numpy as np

from tianshou_offline.data.format import (
    DATA_TYPE_ATTR,
    EPISODES_GROUP,
    EXT_GROUP,
    FORMAT_NAME,
    FORMAT_VERSION,
    META_GROUP,
    Provenance,
    check_version,
    committed_counts,
    detect_layout,
    iter_datasets,
    open_h5,
    space_to_json,
    utc_now_iso,
)
from tianshou_offline.errors import (
    DatasetFormatError,
    DataValidationError,
    OutputExistsError,
    SourceNotFoundError,
)

log = logging.getLogger(__name__)

Compression = Literal["gzip", "lzf"] | None
NanPolicy = Literal["error", "warn", "ignore"]

_FLAG_KEYS = ("terminated", "truncated", "done")
_DEFAULT_CHUNK_BYTES = 1 << 20
_FLUSH_BYTES = 32 << 20


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


class BufferWriter:
    """Stream transitions into a tianshou-offline HDF5 buffer file (``docs/FORMAT.md``).

    :param path: the output file.
    :param observation_space: gymnasium observation space, serialised to JSON in the file.
    :param action_space: gymnasium action space, serialised likewise.
    :param env_id: the gymnasium id that rebuilds the environment, when known.
    :param env_spec: a JSON env spec (e.g. ``env.spec.to_json()``), when known.
    :param provenance: where the data comes from (source kind, dataset id, converter).
    :param compression: ``None`` (default, fastest), ``"gzip"`` or ``"lzf"``.
    :param compression_opts: gzip level 0–9.
    :param store_obs_next: write an ``obs_next`` column (every add must pass ``obs_next``);
        when False, ``obs_next`` is rebuilt by the buffer as ``obs[next(i)]`` (Tianshou's
        ``ignore_obs_next``), which is exact inside episodes but loses the final ``obs_next``.
    :param stack_num: Tianshou frame-stacking ``stack_num`` the loaded buffer uses.
    :param save_only_last_obs: obs holds one frame per step, stacks rebuilt at sample time.
    :param overwrite: replace an existing output (atomic mode only).
    :param append: append committed episodes to ``path`` in SWMR mode (see module doc).
    :param chunk_bytes: target HDF5 chunk size per column.
    :param nan_policy: what to do with NaN rewards: ``"error"`` (default), ``"warn"``, ``"ignore"``.
    :param extra_attrs: more string attributes for ``/tianshou_offline`` (e.g. converter options).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        observation_space: gym.Space[Any] | None = None,
        action_space: gym.Space[Any] | None = None,
        env_id: str | None = None,
        env_spec: str | None = None,
        provenance: Provenance | None = None,
        compression: Compression = None,
        compression_opts: int | None = None,
        store_obs_next: bool = True,
        stack_num: int = 1,
        save_only_last_obs: bool = False,
        overwrite: bool = False,
        append: bool = False,
        chunk_bytes: int = _DEFAULT_CHUNK_BYTES,
        nan_policy: NanPolicy = "error",
        extra_attrs: Mapping[str, str] | None = None,
    ) -> None:
        if compression not in (None, "gzip", "lzf"):
            raise ValueError(f"compression={compression!r}: expected None, 'gzip' or 'lzf'")
        if stack_num < 1:
            raise ValueError(f"stack_num={stack_num}: expected >= 1")
        self.path = Path(path)
        self.observation_space = observation_space
        self.action_space = action_space
        self.env_id = env_id
        self.env_spec = env_spec
        self.provenance = provenance or Provenance(source="buffer")
        self.compression = compression
        self.compression_opts = compression_opts if compression == "gzip" else None
        self.store_obs_next = store_obs_next
        self.stack_num = stack_num
        self.save_only_last_obs = save_only_last_obs
        self.append = append
        self.chunk_bytes = chunk_bytes
        self.nan_policy = nan_policy
        self.extra_attrs = dict(extra_attrs or {})

        self._file: h5py.File | None = None
        self._tmp_path: Path | None = None
        self._closed = False
        self._schema: dict[str, tuple[tuple[int, ...], np.dtype[Any]]] | None = None
        self._meta_keys: list[str] | None = None
        self._pending: dict[str, list[np.ndarray]] = {}
        self._pending_rows = 0
        self._pending_bytes = 0
        self._written_rows = 0  # rows on disk
        self._total_rows = 0  # rows on disk + pending
        # episode table (committed on flush)
        self._ep_start: list[int] = []
        self._ep_length: list[int] = []
        self._ep_return: list[float] = []
        self._ep_meta: list[dict[str, Any]] = []
        self._episodes_on_disk = 0
        self._open_start = 0  # first row of the episode in progress
        self._open_return = 0.0

        if append:
            if overwrite:
                raise ValueError("append=True and overwrite=True are mutually exclusive")
            if self.path.exists():
                self._open_existing_for_append()
        else:
            if self.path.exists() and not overwrite:
                raise OutputExistsError(
                    f"{self.path}: output exists; pass overwrite=True (CLI: --overwrite) to replace it"
                )
            if not self.path.parent.exists():
                raise SourceNotFoundError(f"{self.path.parent}: output directory does not exist")

    # ------------------------------------------------------------------ public API

    @property
    def num_transitions(self) -> int:
        """Rows added so far (written or pending)."""
        return self._total_rows

    @property
    def num_episodes(self) -> int:
        """Episodes finished so far."""
        return len(self._ep_start)

    @property
    def metadata_keys(self) -> list[str]:
        """The per-episode metadata keys fixed by the first episode (or the existing file)."""
        return list(self._meta_keys or [])

    def add_episode(
        self,
        *,
        obs: Any,
        act: Any,
        rew: Any,
        terminated: Any,
        truncated: Any,
        obs_next: Any = None,
        info: Any = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Add one whole episode (T steps) and end it.

        The last step ends the episode: ``done[T-1]`` is set even when neither flag is
        (an episode cut short by the data source), the other rows must not be terminal.

        :param metadata: per-episode attributes (scalars: number, bool or str), stored as
            columns of ``/tianshou_offline/episodes/metadata``.
        """
        term = np.asarray(terminated, dtype=bool)
        trunc = np.asarray(truncated, dtype=bool)
        ends = (
            np.flatnonzero(term[:-1] | trunc[:-1])
            if term.ndim == 1 and term.shape == trunc.shape
            else np.zeros(0, dtype=np.int64)
        )
        if len(ends):
            raise DataValidationError(
                f"add_episode(): row {int(ends[0])} of {term.shape[0]} is terminated/truncated; "
                "only the last row of an episode may be (use add_transitions for many episodes)"
            )
        done = np.zeros(term.shape, dtype=bool)
        if done.ndim == 1 and len(done):
            done[-1] = True
        self._add(
            obs=obs,
            act=act,
            rew=rew,
            terminated=term,
            truncated=trunc,
            obs_next=obs_next,
            info=info,
            done=done,
            end_metadata=metadata,
        )

    def add_transitions(
        self,
        *,
        obs: Any,
        act: Any,
        rew: Any,
        terminated: Any,
        truncated: Any,
        obs_next: Any = None,
        info: Any = None,
        done: Any = None,
    ) -> None:
        """Append N rows that may span several episodes.

        An episode ends at every row where ``done`` is True (default
        ``terminated | truncated``). Rows after the last end stay in an open episode that the
        next call continues; :meth:`end_episode` or :meth:`close` ends it.

        :param obs: ``(N, *obs_shape)`` array, or a nested mapping/tuple of such arrays.
        :param act: ``(N, *act_shape)`` array.
        :param rew: ``(N,)`` float array.
        :param terminated: ``(N,)`` bool array: the MDP reached a terminal state.
        :param truncated: ``(N,)`` bool array: the episode was cut (time limit).
        :param obs_next: like ``obs``; required iff ``store_obs_next``.
        :param info: optional mapping of ``(N, ...)`` arrays.
        :param done: optional ``(N,)`` bool array of episode ends (must include every
            terminated/truncated row).
        """
        self._add(
            obs=obs,
            act=act,
            rew=rew,
            terminated=terminated,
            truncated=truncated,
            obs_next=obs_next,
            info=info,
            done=done,
            end_metadata=None,
        )

    def _add(
        self,
        *,
        obs: Any,
        act: Any,
        rew: Any,
        terminated: Any,
        truncated: Any,
        obs_next: Any,
        info: Any,
        done: Any,
        end_metadata: Mapping[str, Any] | None,
    ) -> None:
        self._check_open()
        rew_arr = np.asarray(rew)
        n = int(rew_arr.shape[0]) if rew_arr.ndim else 0
        if rew_arr.ndim != 1:
            raise DataValidationError(f"column 'rew' has shape {rew_arr.shape}; expected (N,)")
        term = np.asarray(terminated, dtype=bool)
        trunc = np.asarray(truncated, dtype=bool)
        done_arr = term | trunc if done is None else np.asarray(done, dtype=bool)
        if done is not None and done_arr.shape == term.shape and np.any((term | trunc) & ~done_arr):
            row = int(np.flatnonzero((term | trunc) & ~done_arr)[0])
            raise DataValidationError(
                f"column 'done' is False at row {row} where terminated/truncated is True"
            )
        cols: list[tuple[str, np.ndarray]] = []
        cols += flatten_columns(obs, "obs")
        cols.append(("act", np.asarray(act)))
        cols.append(("rew", rew_arr))
        cols.append(("terminated", term))
        cols.append(("truncated", trunc))
        cols.append(("done", done_arr))
        if self.store_obs_next:
            if obs_next is None:
                raise DataValidationError(
                    "column 'obs_next' is missing; this writer stores obs_next "
                    "(pass obs_next=..., or create the writer with store_obs_next=False)"
                )
            cols += flatten_columns(obs_next, "obs_next")
        elif obs_next is not None:
            raise DataValidationError(
                "column 'obs_next' was given but the writer has store_obs_next=False"
            )
        if info is not None:
            cols += flatten_columns(info, "info")
        for path, arr in cols:
            _check_array(path, arr)
            if arr.shape[0] != n:
                raise DataValidationError(
                    f"column {path!r} has {arr.shape[0]} rows; expected {n} (the length of 'rew')"
                )
        if n == 0:
            return
        if self.nan_policy != "ignore" and np.issubdtype(rew_arr.dtype, np.floating):
            bad = ~np.isfinite(rew_arr)
            if bad.any():
                row = int(np.flatnonzero(bad)[0]) + self._total_rows
                msg = (
                    f"column 'rew' has {int(bad.sum())} non-finite values (first at row {row}); "
                    "expected finite rewards"
                )
                if self.nan_policy == "error":
                    raise DataValidationError(msg + " (pass nan_policy='warn' to keep them)")
                log.warning(msg)
        self._accept_schema(cols)
        for path, arr in cols:
            want = self._schema[path][1]  # type: ignore[index]
            self._pending.setdefault(path, []).append(np.ascontiguousarray(arr, dtype=want))
            self._pending_bytes += arr.nbytes
        # episode bookkeeping
        base = self._total_rows
        ends = np.flatnonzero(done_arr)
        rew64 = rew_arr.astype(np.float64, copy=False)
        prev = 0
        for end_row in ends.tolist():
            self._close_episode(
                start=self._open_start,
                end=base + end_row + 1,
                ret=self._open_return + float(rew64[prev : end_row + 1].sum()),
                metadata=end_metadata if end_row == n - 1 else None,
            )
            prev = end_row + 1
        self._open_return += float(rew64[prev:].sum())
        self._total_rows += n
        self._pending_rows += n
        if self._pending_bytes >= _FLUSH_BYTES and not self.append:
            self._write_pending()

    def end_episode(self, metadata: Mapping[str, Any] | None = None) -> None:
        """End the episode in progress at the last row added (``done`` set on that row)."""
        self._check_open()
        if self._open_start >= self._total_rows:
            raise DataValidationError("end_episode(): no rows were added since the last episode end")
        last = self._total_rows - 1
        self._set_done(last)
        self._close_episode(
            start=self._open_start, end=last + 1, ret=self._open_return, metadata=metadata
        )

    def flush(self) -> None:
        """Write pending rows and commit finished episodes (append mode: to the final path)."""
        self._check_open()
        self._write_pending()
        self._commit_episodes()

    def close(self) -> Path:
        """Finish the file: end an open episode (as cut), commit, rename into place.

        :returns: the output path.
        :raises DataValidationError: nothing was written.
        """
        if self._closed:
            return self.path
        try:
            if self._open_start < self._total_rows:
                self.end_episode()
            if self._total_rows == 0 and self._file is None:
                raise DataValidationError(
                    f"{self.path}: no transitions were written; nothing saved"
                )
            self._write_pending()
            self._commit_episodes()
            assert self._file is not None
            self._finalize_attrs()
            self._file.close()
            self._file = None
            if not self.append and self._tmp_path is not None:
                os.replace(self._tmp_path, self.path)
                self._tmp_path = None
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Discard everything not yet committed; in atomic mode nothing reaches ``path``."""
        if self._file is not None:
            try:
                self._file.close()
            except Exception:  # pragma: no cover - best effort cleanup
                pass
            self._file = None
        if self._tmp_path is not None and self._tmp_path.exists():
            self._tmp_path.unlink()
        self._tmp_path = None
        self._closed = True

    def __enter__(self) -> BufferWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            if self.append:
                # commit nothing more; what is on disk is complete episodes only
                self._pending.clear()
                if self._file is not None:
                    self._file.close()
                    self._file = None
                self._closed = True
            else:
                self.abort()

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"BufferWriter for {self.path} is closed")

    def _check_meta(self, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
        md = dict(metadata or {})
        for k, v in md.items():
            if "/" in k:
                raise DataValidationError(f"episode metadata key {k!r} must not contain '/'")
            if isinstance(v, np.generic):
                md[k] = v.item()
            elif not isinstance(v, bool | int | float | str):
                raise DataValidationError(
                    f"episode metadata {k!r}={v!r} has type {type(v).__name__}; "
                    "expected a number, bool or str"
                )
        if self._meta_keys is None:
            if md:
                self._meta_keys = sorted(md)
        elif sorted(md) != self._meta_keys:
            raise DataValidationError(
                f"episode metadata keys {sorted(md)} differ from the first episode's "
                f"{self._meta_keys}; every episode must report the same keys"
            )
        return md

    def _close_episode(
        self, *, start: int, end: int, ret: float, metadata: Mapping[str, Any] | None
    ) -> None:
        if metadata is None and self._meta_keys:
            raise DataValidationError(
                f"episode {len(self._ep_start)} has no metadata; earlier episodes have "
                f"{self._meta_keys}"
            )
        self._ep_start.append(start)
        self._ep_length.append(end - start)
        self._ep_return.append(ret)
        self._ep_meta.append(self._check_meta(metadata))
        self._open_start = end
        self._open_return = 0.0

    def _set_done(self, row: int) -> None:
        if row >= self._written_rows:
            # in the pending buffer
            offset = self._written_rows
            for arr in self._pending["done"]:
                if row < offset + arr.shape[0]:
                    arr[row - offset] = True
                    return
                offset += arr.shape[0]
        else:
            assert self._file is not None
            self._file[f"{META_GROUP}/done"][row] = True

    def _accept_schema(self, cols: Sequence[tuple[str, np.ndarray]]) -> None:
        if self._schema is None:
            schema: dict[str, tuple[tuple[int, ...], np.dtype[Any]]] = {}
            for path, arr in cols:
                schema[path] = (tuple(arr.shape[1:]), arr.dtype)
            self._schema = schema
            return
        got = {p for p, _ in cols}
        want = set(self._schema)
        if got != want:
            missing = sorted(want - got)
            extra = sorted(got - want)
            raise DataValidationError(
                f"columns differ from the first rows written: missing {missing}, unexpected {extra}"
            )
        for path, arr in cols:
            shape, dtype = self._schema[path]
            if tuple(arr.shape[1:]) != shape:
                raise DataValidationError(
                    f"column {path!r} has row shape {tuple(arr.shape[1:])}; expected {shape}"
                )
            if arr.dtype != dtype and not np.can_cast(arr.dtype, dtype, casting="same_kind"):
                raise DataValidationError(
                    f"column {path!r} has dtype {arr.dtype}; expected {dtype}"
                )

    # --- file creation

    def _chunk_rows(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> int:
        row_bytes = max(1, int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
        # small files get small chunks (HDF5 allocates whole chunks): never more rows per
        # chunk than the first write holds (at least 1024)
        cap = max(self._pending_rows, 1024)
        return int(min(max(1, self.chunk_bytes // row_bytes), cap, 1 << 17))

    def _create_file(self) -> None:
        assert self._schema is not None
        if self.append:
            self._tmp_path = self.path.with_name(
                f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
            )
            f = h5py.File(self._tmp_path, "w", libver="latest")
        else:
            self._tmp_path = self.path.with_name(
                f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
            )
            f = h5py.File(self._tmp_path, "w")
        self._file = f
        meta = f.create_group(META_GROUP)
        meta.attrs[DATA_TYPE_ATTR] = "Batch"
        for path, (shape, dtype) in self._schema.items():
            self._create_column(meta, path, shape, dtype)
        self._create_column(f, "_indices", (), np.dtype(np.int64))
        f.create_dataset("last_index", data=np.zeros(1, dtype=np.int64))
        f["last_index"].attrs[DATA_TYPE_ATTR] = "ndarray"
        options = f.create_group("options")
        options.attrs["stack_num"] = np.int64(self.stack_num)
        options.attrs["ignore_obs_next"] = np.bool_(not self.store_obs_next)
        options.attrs["save_only_last_obs"] = np.bool_(self.save_only_last_obs)
        options.attrs["sample_avail"] = np.bool_(False)
        root = f.attrs
        for key in ("maxsize", "_size", "_insertion_idx", "_ep_len", "_ep_start_idx"):
            root[key] = np.int64(0)
        root["_ep_return"] = np.float64(0.0)
        root["stack_num"] = np.int64(self.stack_num)
        root["_save_obs_next"] = np.bool_(self.store_obs_next)
        root["_save_only_last_obs"] = np.bool_(self.save_only_last_obs)
        root["_sample_avail"] = np.bool_(False)
        ext = f.create_group(EXT_GROUP)
        ea = ext.attrs
        ea["format"] = FORMAT_NAME
        ea["format_version"] = np.int64(FORMAT_VERSION)
        ea["num_transitions"] = np.int64(0)
        ea["num_episodes"] = np.int64(0)
        ea["observation_space"] = space_to_json(self.observation_space)
        ea["action_space"] = space_to_json(self.action_space)
        ea["env_id"] = self.env_id or ""
        ea["env_spec"] = self.env_spec or ""
        ea["stack_num"] = np.int64(self.stack_num)
        ea["save_only_last_obs"] = np.bool_(self.save_only_last_obs)
        ea["obs_next_stored"] = np.bool_(self.store_obs_next)
        ea["compression"] = self.compression or ""
        prov = self.provenance
        prov.created = utc_now_iso()
        for k, v in prov.to_attrs().items():
            ea[k] = v
        for k, v in self.extra_attrs.items():
            ea[k] = str(v)
        eps = f.create_group(EPISODES_GROUP)
        for name, col_dtype in (("start", "<i8"), ("length", "<i8"), ("return", "<f8")):
            self._create_column(eps, name, (), np.dtype(col_dtype), chunk_rows=1024)
        if self._meta_keys or (self._ep_meta and self._ep_meta[0]):
            keys = self._meta_keys or sorted(self._ep_meta[0])
            md = eps.create_group("metadata")
            first = self._ep_meta[0] if self._ep_meta else {}
            for key in keys:
                value = first.get(key)
                if isinstance(value, str):
                    dt: np.dtype[Any] = h5py.string_dtype("utf-8")
                elif isinstance(value, bool):
                    dt = np.dtype(bool)
                elif isinstance(value, int):
                    dt = np.dtype(np.int64)
                else:
                    dt = np.dtype(np.float64)
                self._create_column(md, key, (), dt, chunk_rows=1024)

    def _create_column(
        self,
        group: h5py.Group,
        path: str,
        shape: tuple[int, ...],
        dtype: np.dtype[Any],
        chunk_rows: int | None = None,
    ) -> None:
        rows = chunk_rows or self._chunk_rows(shape, dtype)
        kwargs: dict[str, Any] = {}
        if self.compression is not None:
            kwargs["compression"] = self.compression
            if self.compression_opts is not None:
                kwargs["compression_opts"] = self.compression_opts
        parent, _, name = path.rpartition("/")
        g = group.require_group(parent) if parent else group
        ds = g.create_dataset(
            name,
            shape=(0, *shape),
            maxshape=(None, *shape),
            chunks=(rows, *shape),
            dtype=dtype,
            **kwargs,
        )
        ds.attrs[DATA_TYPE_ATTR] = "ndarray"

    def _open_existing_for_append(self) -> None:
        """Continue a file written by an earlier append-mode writer (repairing it if needed)."""
        with open_h5(self.path) as f:
            if detect_layout(f) != "tianshou_offline":
                raise DatasetFormatError(
                    f"{self.path}: cannot append: not a tianshou-offline buffer file"
                )
            check_version(f)
            swmr_crashed = f.swmr_mode
            n, n_ep = committed_counts(f)
            lengths = {p: ds.shape[0] for p, ds in iter_datasets(f[META_GROUP])}
        if swmr_crashed or any(v != n for v in lengths.values()):
            log.warning("%s: was not closed cleanly; keeping its %d committed episodes", self.path, n_ep)
            repair_file(self.path)
        f = h5py.File(self.path, "a", libver="latest")
        try:
            meta = f[META_GROUP]
            self._schema = {
                p: (tuple(ds.shape[1:]), ds.dtype) for p, ds in iter_datasets(meta)
            }
            self.store_obs_next = any(p.split("/")[0] == "obs_next" for p in self._schema)
            self.stack_num = int(f.attrs.get("stack_num", 1))
            self.save_only_last_obs = bool(f.attrs.get("_save_only_last_obs", False))
            eps = f[EPISODES_GROUP]
            if "metadata" in eps:
                self._meta_keys = sorted(eps["metadata"].keys())
            n, n_ep = committed_counts(f)
            self._written_rows = self._total_rows = self._open_start = n
            self._episodes_on_disk = n_ep
            # keep python-side episode table complete for num_episodes
            self._ep_start = [int(x) for x in eps["start"][:n_ep]]
            self._ep_length = [int(x) for x in eps["length"][:n_ep]]
            self._ep_return = [float(x) for x in eps["return"][:n_ep]]
            self._ep_meta = [{} for _ in range(n_ep)]
            f.swmr_mode = True
        except BaseException:
            f.close()
            raise
        self._file = f

    # --- writing

    def _write_pending(self) -> None:
        if self._pending_rows == 0:
            return
        if self._file is None:
            self._create_file()
            if self.append:
                self._finalize_attrs()
                # first commit happens in the temp file; after it, rename and go SWMR
        assert self._file is not None
        f = self._file
        start = self._written_rows
        stop = start + self._pending_rows
        meta = f[META_GROUP]
        for path, parts in self._pending.items():
            ds = meta[path]
            ds.resize(stop, axis=0)
            block = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
            ds[start:stop] = block
        idx = f["_indices"]
        idx.resize(stop, axis=0)
        idx[start:stop] = np.arange(start, stop, dtype=np.int64)
        self._pending = {}
        self._pending_rows = 0
        self._pending_bytes = 0
        self._written_rows = stop

    def _commit_episodes(self) -> None:
        """Extend the episode table (written last: it is what readers trust) and flush."""
        if self._file is None:
            return
        f = self._file
        n_ep = len(self._ep_start)
        first = self._episodes_on_disk
        if n_ep > first:
            eps = f[EPISODES_GROUP]
            if self.append:
                f.flush()  # data rows reach the disk before the table that points at them
            if self._meta_keys and "metadata" not in eps:
                raise DataValidationError(
                    f"{self.path}: episode metadata {self._meta_keys} appeared after the file "
                    "was created without metadata; every episode must report the same keys"
                )
            cols: dict[str, np.ndarray] = {
                "start": np.asarray(self._ep_start[first:], dtype=np.int64),
                "length": np.asarray(self._ep_length[first:], dtype=np.int64),
                "return": np.asarray(self._ep_return[first:], dtype=np.float64),
            }
            if "metadata" in eps:
                md = eps["metadata"]
                for k in md.keys():
                    vals = [m.get(k) for m in self._ep_meta[first:]]
                    cols[f"metadata/{k}"] = np.asarray(vals, dtype=md[k].dtype)
            # length and start last: committed_counts() reads min(len(start), len(length))
            for name in sorted(cols, key=lambda c: c in ("start", "length")):
                ds = eps[name]
                ds.resize(n_ep, axis=0)
                ds[first:n_ep] = cols[name]
            self._episodes_on_disk = n_ep
            self._update_counts()
            if self.append:
                f.flush()
                if self._tmp_path is not None:
                    # first commit of a new append-mode file: move it into place, go SWMR
                    f.close()
                    os.replace(self._tmp_path, self.path)
                    self._tmp_path = None
                    self._file = h5py.File(self.path, "a", libver="latest")
                    self._file.swmr_mode = True

    def _update_counts(self) -> None:
        assert self._file is not None
        f = self._file
        n = self._ep_start[-1] + self._ep_length[-1] if self._ep_start else 0
        n_ep = len(self._ep_start)
        ea = f[EXT_GROUP].attrs
        ea.modify("num_transitions", np.int64(n))
        ea.modify("num_episodes", np.int64(n_ep))
        root = f.attrs
        root.modify("maxsize", np.int64(n))
        root.modify("_size", np.int64(n))
        f["last_index"][0] = max(n - 1, 0)

    def _finalize_attrs(self) -> None:
        assert self._file is not None
        if self._ep_start:
            self._update_counts()


def repair_file(path: str | os.PathLike[str]) -> Path:
    """Rewrite a buffer file whose writer was killed, keeping its committed episodes.

    The result is a cleanly closed file (readable by Tianshou's ``load_hdf5`` as well);
    the rewrite goes to a temporary file that replaces ``path`` atomically.
    """
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.{secrets.token_hex(4)}.repair.tmp")
    try:
        with open_h5(p) as src, h5py.File(tmp, "w", libver="latest") as dst:
            n, n_ep = committed_counts(src)
            for key, value in src.attrs.items():
                dst.attrs[key] = value
            dst.attrs["maxsize"] = np.int64(n)
            dst.attrs["_size"] = np.int64(n)

            def copy_group(s: h5py.Group, d: h5py.Group, rows: int | None) -> None:
                for k, v in s.attrs.items():
                    d.attrs[k] = v
                for key in s.keys():
                    item = s[key]
                    if isinstance(item, h5py.Group):
                        copy_group(item, d.create_group(key), rows)
                    else:
                        data = item[:rows] if rows is not None and item.ndim else item[()]
                        kw: dict[str, Any] = {}
                        if item.chunks is not None:
                            kw = {
                                "chunks": item.chunks,
                                "maxshape": (None, *item.shape[1:]),
                                "compression": item.compression,
                                "compression_opts": item.compression_opts,
                            }
                        out = d.create_dataset(key, data=data, **kw)
                        for ak, av in item.attrs.items():
                            out.attrs[ak] = av

            for key in src.keys():
                item = src[key]
                if key == EXT_GROUP:
                    g = dst.create_group(key)
                    for ak, av in item.attrs.items():
                        g.attrs[ak] = av
                    g.attrs["num_transitions"] = np.int64(n)
                    g.attrs["num_episodes"] = np.int64(n_ep)
                    copy_group(item["episodes"], g.create_group("episodes"), n_ep)
                    for sub in item.keys():
                        if sub != "episodes":
                            src.copy(item[sub], g, name=sub)
                elif key in (META_GROUP, "_indices"):
                    if isinstance(item, h5py.Group):
                        copy_group(item, dst.create_group(key), n)
                    else:
                        dst.create_dataset(
                            key, data=item[:n], chunks=item.chunks, maxshape=(None,)
                        )
                        for ak, av in item.attrs.items():
                            dst[key].attrs[ak] = av
                elif key == "last_index":
                    dst.create_dataset(key, data=np.array([max(n - 1, 0)], dtype=np.int64))
                    dst[key].attrs[DATA_TYPE_ATTR] = "ndarray"
                else:
                    src.copy(item, dst, name=key)
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    return p
