"""The streaming, chunked, atomic writer behind every converter, the recorder and save_buffer.

Usage::

    with BufferWriter("out.hdf5", observation_space=env.observation_space,
                      action_space=env.action_space,
                      provenance=Provenance(source="d4rl", dataset_id="hopper-medium-v2")) as w:
        w.add_episode(obs=..., act=..., rew=..., terminated=..., truncated=..., obs_next=...)
        w.add_transitions(...)   # many rows at once; episodes end where ``done`` is True
        w.add_transitions(..., done=ends, episode_metadata=[{...}, ...])  # one per episode

Converters hand over large blocks (many episodes per ``add_transitions`` call): the cost per
call is then negligible next to the cost per byte.

Two modes:

- **atomic** (default): everything is written to a hidden temporary file beside the output,
  which is renamed into place by :meth:`BufferWriter.close`. An exception inside the
  ``with`` block (or a killed process) never leaves anything at the output path; an existing
  output is refused unless ``overwrite=True``, also one that appears while the file is
  written (the rename does not replace it: :mod:`tianshou_offline.data.atomic`). Temporary
  files of killed writers of the same output are removed when the next writer starts.
- **append** (``append=True``, used by :class:`~tianshou_offline.recording.EpisodeRecorder`):
  the file at ``path`` grows one committed episode at a time in HDF5 SWMR mode, so a process
  killed at any moment leaves a readable file holding every committed episode.

Columns are chunked and resizable (chunks of about ``chunk_bytes``, a power of two of rows).
In atomic mode without compression, whole chunks go to libhdf5 as they are
(``H5Dwrite_chunk``, no copy into a chunk buffer), rows that would leave a chunk half-written
wait for the next flush, and disk blocks are reserved ahead of the writes (Linux
``fallocate``); the file's content is the same either way. The writer decides what is
written when; :class:`~tianshou_offline.data.h5io.H5Store` does the HDF5 I/O.

Columns are numpy arrays whose first axis is time; ``obs``/``obs_next``/``info`` may be
nested mappings (gymnasium ``Dict`` spaces) or tuples (``Tuple`` spaces, stored as groups
with keys ``"0"``, ``"1"``, …).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from tianshou_offline.data.atomic import (
    check_new_output,
    is_write_failure,
    remove_stale_temps,
    write_error,
)
from tianshou_offline.data.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    Provenance,
    space_to_json,
    utc_now_iso,
)
from tianshou_offline.data.h5io import FileSpec, H5Store
from tianshou_offline.data.pending_rows import (
    _check_array,
    _PendingRows,
    flatten_columns,
)
from tianshou_offline.errors import (
    DataValidationError,
    SourceNotFoundError,
    TianshouOfflineError,
)

log = logging.getLogger(__name__)

Compression = Literal["gzip", "lzf"] | None
NanPolicy = Literal["error", "warn", "ignore"]

_DEFAULT_CHUNK_BYTES = 1 << 20
_FLUSH_BYTES = 32 << 20


_NO_METADATA: Mapping[str, Any] = MappingProxyType({})
"""The metadata of episodes that have none (one shared, read-only mapping)."""


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
    :param contiguous: store every column contiguous and uncompressed, so that
        ``load_buffer(path, memory="disk")`` memory-maps the file (the columns are written
        chunked and rewritten once on :meth:`close`; not with ``compression`` or ``append``).
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
        contiguous: bool = False,
    ) -> None:
        if contiguous and (compression is not None or append):
            raise ValueError(
                "contiguous=True stores uncompressed columns in a finished file; it cannot be "
                "combined with compression or append"
            )
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
        self.overwrite = overwrite and not append
        self.chunk_bytes = chunk_bytes
        self.nan_policy = nan_policy
        self.extra_attrs = dict(extra_attrs or {})
        self.contiguous = contiguous

        self._store: H5Store | None = None
        """The file, from the first write on (or from the start when appending to one)."""
        self._closed = False
        self._schema: dict[str, tuple[tuple[int, ...], np.dtype[Any]]] | None = None
        self._meta_keys: list[str] | None = None
        self._pending = _PendingRows()
        self._written_rows = 0  # rows on disk
        self._total_rows = 0  # rows on disk + pending
        # episode table (committed on flush)
        self._ep_start: list[int] = []
        self._ep_length: list[int] = []
        self._ep_return: list[float] = []
        self._ep_meta: list[Mapping[str, Any]] = []
        self._episodes_on_disk = 0
        self._open_start = 0  # first row of the episode in progress
        self._open_return = 0.0

        if append:
            if overwrite:
                raise ValueError("append=True and overwrite=True are mutually exclusive")
            remove_stale_temps(self.path)
            if self.path.exists():
                with self._io():
                    self._open_existing_for_append()
        else:
            check_new_output(self.path, overwrite=overwrite)
            if not self.path.parent.exists():
                raise SourceNotFoundError(f"{self.path.parent}: output directory does not exist")
            remove_stale_temps(self.path)

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
    def in_place(self) -> bool:
        """Append mode: this writer moved its new file to ``path`` (its first commit)."""
        return self._store is not None and self._store.moved

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
            end_metadata=None if metadata is None else [metadata],
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
        episode_metadata: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Append N rows that may span several episodes.

        An episode ends at every row where ``done`` is True (default
        ``terminated | truncated``). Rows after the last end stay in an open episode that the
        next call continues; :meth:`end_episode` or :meth:`close` ends it. Passing many
        episodes per call is much cheaper than one :meth:`add_episode` call per episode.

        :param obs: ``(N, *obs_shape)`` array, or a nested mapping/tuple of such arrays.
        :param act: ``(N, *act_shape)`` array.
        :param rew: ``(N,)`` float array.
        :param terminated: ``(N,)`` bool array: the MDP reached a terminal state.
        :param truncated: ``(N,)`` bool array: the episode was cut (time limit).
        :param obs_next: like ``obs``; required iff ``store_obs_next``.
        :param info: optional mapping of ``(N, ...)`` arrays.
        :param done: optional ``(N,)`` bool array of episode ends (must include every
            terminated/truncated row).
        :param episode_metadata: per-episode attributes (as for :meth:`add_episode`), one
            mapping per episode that ends in this call, in row order (as many as ``done``
            rows); required when earlier episodes have metadata.
        """
        if episode_metadata is not None and (
            isinstance(episode_metadata, Mapping | str)
            or not isinstance(episode_metadata, Sequence)
        ):
            raise DataValidationError(
                "episode_metadata must be a sequence of mappings, one per episode that ends "
                f"in this call; got {type(episode_metadata).__name__}"
            )
        self._add(
            obs=obs,
            act=act,
            rew=rew,
            terminated=terminated,
            truncated=truncated,
            obs_next=obs_next,
            info=info,
            done=done,
            end_metadata=episode_metadata,
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
        end_metadata: Sequence[Mapping[str, Any]] | None,
    ) -> None:
        """Check and flatten the columns of one add (see :meth:`add_transitions`), then
        keep them."""
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
        self._keep(cols, rew_arr, done_arr, end_metadata)

    def _keep(
        self,
        cols: Sequence[tuple[str, np.ndarray]],
        rew: np.ndarray,
        done: np.ndarray,
        end_metadata: Sequence[Mapping[str, Any]] | None,
    ) -> None:
        """Keep the checked columns of one add (N rows; ``rew`` and ``done`` among them) as
        pending rows, and the episodes that end in it."""
        n = int(rew.shape[0])
        if n == 0:
            return
        self._check_rewards(rew)
        # episodes ending in this call, validated before anything is kept
        ends = np.flatnonzero(done)
        keys_before = self._meta_keys
        metas = self._episode_metas(ends.size, end_metadata)
        try:
            self._accept_schema(cols)
        except BaseException:
            self._meta_keys = keys_before
            raise
        if self._pending.nbytes >= _FLUSH_BYTES and not self.append:
            # written before these rows join them: the last rows of a file stay pending
            # until close(), which writes their final chunk whole (see h5io._write_rows)
            with self._io():
                self._write_pending(final=False)
        assert self._schema is not None
        self._pending.add(cols, self._schema, n)
        self._record_episodes(ends, rew, metas)
        self._total_rows += n

    def end_episode(self, metadata: Mapping[str, Any] | None = None) -> None:
        """End the episode in progress at the last row added (``done`` set on that row)."""
        self._check_open()
        if self._open_start >= self._total_rows:
            raise DataValidationError(
                "end_episode(): no rows were added since the last episode end"
            )
        last = self._total_rows - 1
        self._set_done(last)
        self._close_episode(
            start=self._open_start, end=last + 1, ret=self._open_return, metadata=metadata
        )

    def flush(self) -> None:
        """Write pending rows and commit finished episodes (append mode: to the final path)."""
        self._check_open()
        with self._io():
            self._write_pending(final=True)
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
            if self._total_rows == 0 and self._store is None:
                raise DataValidationError(
                    f"{self.path}: no transitions were written; nothing saved"
                )
            with self._io():
                self._write_pending(final=True)
                self._commit_episodes()
                assert self._store is not None
                if self._ep_start:
                    self._write_counts()
                self._store.finish(contiguous=self.contiguous)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Discard everything not yet committed; in atomic mode nothing reaches ``path``."""
        if self._store is not None:
            self._store.discard()
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
                self._pending = _PendingRows()
                if self._store is not None:
                    if self._store.tmp_path is not None:  # nothing reached the path yet
                        self._store.discard()
                    else:
                        self._store.close()
                self._closed = True
            else:
                self.abort()

    # ------------------------------------------------------------------ internals

    @contextmanager
    def _io(self) -> Iterator[None]:
        """Where the file is written: a write the system refuses (a full disk, an I/O error,
        a read-only or vanished directory; h5py's ``OSError``, or its ``RuntimeError`` that
        carries an errno) becomes :class:`~tianshou_offline.errors.OutputWriteError` naming
        the output, and the writer is aborted: atomic mode leaves nothing at ``path`` (the
        temporary is deleted); append mode closes the file, which keeps every episode
        committed before, as after a kill."""
        try:
            yield
        except TianshouOfflineError:
            raise
        except Exception as e:
            if not is_write_failure(e):
                raise
            if self._store is not None:
                self._store.abandon()  # closing it must not write (and fail) again
            self.abort()
            raise write_error(self.path, e) from e

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"BufferWriter for {self.path} is closed")

    def _check_rewards(self, rew: np.ndarray) -> None:
        """Apply ``nan_policy`` to the rewards of one add."""
        if self.nan_policy != "ignore" and np.issubdtype(rew.dtype, np.floating):
            bad = ~np.isfinite(rew)
            if bad.any():
                row = int(np.flatnonzero(bad)[0]) + self._total_rows
                msg = (
                    f"column 'rew' has {int(bad.sum())} non-finite values (first at row {row}); "
                    "expected finite rewards"
                )
                if self.nan_policy == "error":
                    raise DataValidationError(msg + " (pass nan_policy='warn' to keep them)")
                log.warning(msg)

    def _record_episodes(
        self, ends: np.ndarray, rew: np.ndarray, metas: Sequence[Mapping[str, Any]]
    ) -> None:
        """The episodes that end at rows ``ends`` of the add whose rewards are ``rew``
        (first row: ``num_transitions`` before it), vectorised: one segment sum per episode."""
        base = self._total_rows
        if ends.size:
            last = int(ends[-1])
            firsts = np.empty(ends.size, dtype=np.int64)
            firsts[0] = 0
            firsts[1:] = ends[:-1] + 1
            returns = np.add.reduceat(rew[: last + 1], firsts, dtype=np.float64)
            returns[0] += self._open_return
            starts = firsts + base
            starts[0] = self._open_start
            self._ep_start.extend(starts.tolist())
            self._ep_length.extend((ends + (base + 1) - starts).tolist())
            self._ep_return.extend(returns.tolist())
            self._ep_meta.extend(metas)
            self._open_start = base + last + 1
            self._open_return = float(rew[last + 1 :].sum(dtype=np.float64))
        else:
            self._open_return += float(rew.sum(dtype=np.float64))

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

    def _episode_metas(
        self, count: int, metadata: Sequence[Mapping[str, Any]] | None
    ) -> list[Mapping[str, Any]]:
        """Checked metadata for ``count`` episodes that end now (``{}`` each when none)."""
        if metadata is None:
            if count and self._meta_keys:
                raise DataValidationError(
                    f"episode {len(self._ep_start)} has no metadata; earlier episodes have "
                    f"{self._meta_keys}"
                )
            return [_NO_METADATA] * count  # shared and read-only: no allocation per episode
        if len(metadata) != count:
            raise DataValidationError(
                f"episode_metadata has {len(metadata)} entries; expected {count} (one per "
                "episode that ends in this call, i.e. per row where done is True)"
            )
        keys_before = self._meta_keys
        try:
            return [self._check_meta(m) for m in metadata]
        except BaseException:
            self._meta_keys = keys_before  # nothing of this call is kept
            raise

    def _close_episode(
        self, *, start: int, end: int, ret: float, metadata: Mapping[str, Any] | None
    ) -> None:
        (md,) = self._episode_metas(1, None if metadata is None else [metadata])
        self._ep_start.append(start)
        self._ep_length.append(end - start)
        self._ep_return.append(ret)
        self._ep_meta.append(md)
        self._open_start = end
        self._open_return = 0.0

    def _set_done(self, row: int) -> None:
        if row >= self._written_rows:
            self._pending.set_true("done", row - self._written_rows)
        else:
            assert self._store is not None
            self._store.set_true("done", row)

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

    # --- the file (H5Store does the I/O)

    def _header(self) -> dict[str, Any]:
        """The attributes of ``/tianshou_offline`` in a new file (the counts start at 0)."""
        ea: dict[str, Any] = {
            "format": FORMAT_NAME,
            "format_version": np.int64(FORMAT_VERSION),
            "num_transitions": np.int64(0),
            "num_episodes": np.int64(0),
            "observation_space": space_to_json(self.observation_space),
            "action_space": space_to_json(self.action_space),
            "env_id": self.env_id or "",
            "env_spec": self.env_spec or "",
            "stack_num": np.int64(self.stack_num),
            "save_only_last_obs": np.bool_(self.save_only_last_obs),
            "obs_next_stored": np.bool_(self.store_obs_next),
            "compression": self.compression or "",
        }
        prov = self.provenance
        prov.created = utc_now_iso()
        ea.update(prov.to_attrs())
        ea.update({k: str(v) for k, v in self.extra_attrs.items()})
        return ea

    def _create_store(self) -> H5Store:
        """Create the file (at a temporary path) for the schema, the pending rows and the
        first episode's metadata keys."""
        assert self._schema is not None
        first = self._ep_meta[0] if self._ep_meta else {}
        keys = self._meta_keys or sorted(first)
        spec = FileSpec(
            schema=self._schema,
            header=self._header(),
            stack_num=self.stack_num,
            store_obs_next=self.store_obs_next,
            save_only_last_obs=self.save_only_last_obs,
            compression=self.compression,
            compression_opts=self.compression_opts,
            chunk_bytes=self.chunk_bytes,
            first_rows=self._pending.rows,
            flush_bytes=_FLUSH_BYTES,
            metadata_examples={key: first.get(key) for key in keys},
        )
        return H5Store.create(self.path, spec, swmr=self.append, overwrite=self.overwrite)

    def _open_existing_for_append(self) -> None:
        """Continue a file written by an earlier append-mode writer (repairing it if needed)."""
        store, committed = H5Store.open_for_append(self.path)
        self._schema = committed.schema
        self.store_obs_next = any(p.split("/")[0] == "obs_next" for p in committed.schema)
        self.stack_num = committed.stack_num
        self.save_only_last_obs = committed.save_only_last_obs
        self._meta_keys = committed.metadata_keys
        n = committed.num_transitions
        self._written_rows = self._total_rows = self._open_start = n
        # keep python-side episode table complete for num_episodes
        self._ep_start = committed.episode_start
        self._ep_length = committed.episode_length
        self._ep_return = committed.episode_return
        self._ep_meta = [_NO_METADATA] * len(committed.episode_start)
        self._episodes_on_disk = len(committed.episode_start)
        self._store = store

    def _write_pending(self, *, final: bool) -> None:
        """Write the pending rows (creating the file at the first write).

        ``final`` (``flush``/``close``): all of them (the last chunk of each column is written
        whole). Otherwise (enough rows are pending, more will come): only up to the last
        multiple of the store's ``align`` rows, where every column's chunks end, so that only
        whole chunks are written; the rows after it stay pending.
        """
        pending = self._pending
        if pending.rows == 0:
            return
        store = self._store
        if store is None:
            store = self._store = self._create_store()
            if self.append and self._ep_start:
                self._write_counts()
                # first commit happens in the temp file; after it, rename and go SWMR
        start = self._written_rows
        stop = start + pending.rows
        cut = stop if final or not store.align else stop - stop % store.align
        if cut <= start:
            return
        # the rows about to be written (libhdf5's own structures come on top, so the file
        # normally ends past the reserved blocks)
        store.reserve(pending.nbytes + 8 * (stop - start))
        rows, rest = pending.split(cut - start)
        store.write_rows(start, rows, cut, final=final)
        self._pending = rest
        self._written_rows = cut

    def _commit_episodes(self) -> None:
        """Extend the episode table (written last: it is what readers trust) and the counts;
        append mode: flush (the first time, move the file into place and go SWMR)."""
        store = self._store
        first = self._episodes_on_disk
        if store is None or len(self._ep_start) <= first:
            return
        store.append_episodes(
            first,
            self._ep_start[first:],
            self._ep_length[first:],
            self._ep_return[first:],
            self._ep_meta[first:],
            self._meta_keys,
        )
        self._episodes_on_disk = len(self._ep_start)
        self._write_counts()
        if self.append:
            try:
                store.publish()
            except BaseException as e:  # e.g. a file appeared at the path: nothing of ours stays
                if is_write_failure(e):
                    store.abandon()  # closing it must not write (and fail) again
                self.abort()
                raise

    def _write_counts(self) -> None:
        """Record the finished episodes' rows and count in the file."""
        assert self._store is not None
        n = self._ep_start[-1] + self._ep_length[-1] if self._ep_start else 0
        self._store.write_counts(n, len(self._ep_start))
