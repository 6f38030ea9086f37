"""The D4RL key layout, read with h5py (no d4rl, gym or mujoco): rows, flags and spaces.

A D4RL file holds flat, time-ordered columns: ``observations`` ``(N, *obs_shape)``,
``actions`` ``(N, *act_shape)``, ``rewards`` ``(N,)`` (or ``(N, 1)``), ``terminals`` ``(N,)``,
and optionally ``timeouts`` ``(N,)``, ``next_observations`` (like ``observations``),
``infos/*`` (``(N, ...)`` per key) and ``metadata/*`` (anything). Episodes are consecutive
rows; an episode ends at a row with ``terminals`` or ``timeouts`` set.

**Default semantics** (:func:`d4rl_transitions`, ``load_buffer`` on a D4RL file, and
``convert d4rl`` without options):

- ``terminated = terminals``; ``truncated = timeouts`` on rows that are not terminal.
- With ``next_observations``: every row is kept and ``obs_next = next_observations``. An
  unfinished last row ends its episode as *cut* (``done`` set, neither flag).
- Without ``next_observations``: ``obs_next[i] = observations[i + 1]``. A timed-out row has no
  successor in the file (the next row is a reset), so **the last transition of every
  timed-out episode is dropped** and the row before it becomes the episode's end, marked
  ``truncated``. A terminal row keeps its own observation as ``obs_next`` (a placeholder:
  targets never bootstrap from a terminal). An unfinished last row of the file has no
  successor either: it is dropped and the row before it ends the episode as cut.
- Without ``timeouts`` (old v0 files) no row is a timeout, unless ``max_episode_steps`` is
  given (or known for the dataset name): then the row at which an episode reaches the limit
  is a timeout.
- Dtypes are kept as stored (float64 "replay" files stay float64: the conversion is
  lossless); ``float32=True`` (CLI ``--float32``) casts float64 ``observations``,
  ``next_observations``, ``actions`` and ``rewards`` to float32. ``infos/*`` keep their dtype.

**``qlearning_compat``** reproduces ``d4rl.qlearning_dataset(env, terminate_on_end=False)``
row for row: for ``i in range(N - 1)``, rows whose ``timeouts`` is set (or, without
``timeouts``, whose step count reaches ``max_episode_steps - 1``, counted the way D4RL counts)
are dropped, and ``obs_next[i] = observations[i + 1]`` for every kept row (also for terminal
rows, and ``next_observations`` is ignored, as D4RL does); every column is float32 and
``terminated = terminals``. The only addition: the row before a dropped timeout row is marked
``truncated``, so episode boundaries (n-step returns, episode statistics) stay right without
changing any of D4RL's rows.

Reading is chunked (``chunk_rows`` rows at a time, one row of look-ahead), so memory stays
near the size of one chunk plus the actions and rewards columns, whatever ``N`` is.
Uncompressed contiguous columns stored with the dtype they are converted to (the common case
for uncompressed files) are not copied at all: the converter memory-maps them read-only and
the writer copies the values from the page cache straight into the output.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import h5py
import numpy as np

from tianshou_offline.data.columns import nest_columns
from tianshou_offline.data.format import iter_datasets, sorted_keys
from tianshou_offline.data.mapped import mappable_fd, mapped_location, read_rows
from tianshou_offline.data.reading import as_text, check_extent, dataset
from tianshou_offline.errors import DatasetFormatError, DataValidationError

log = logging.getLogger(__name__)

D4RL_REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")
DEFAULT_CHUNK_ROWS = 1 << 18
"""Rows read per chunk (262,144: ~45 MB for 17-dim observations and 6-dim actions)."""
METADATA_MAX_ELEMENTS = 64
"""``metadata/*`` arrays up to this many elements are kept in the provenance; larger ones
(e.g. policy weights) are listed by name and shape only."""


# --------------------------------------------------------------------------------------
# planning: validate the file, compute which rows are kept and their flags
# --------------------------------------------------------------------------------------


@dataclass
class D4RLPlan:
    """Everything about a D4RL file except the large columns, which are read per chunk."""

    filename: str
    n: int
    obs: h5py.Dataset
    next_obs: h5py.Dataset | None
    obs_dtype: np.dtype[Any]
    act: np.ndarray
    rew: np.ndarray
    keep: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    done: np.ndarray
    self_next: np.ndarray | None
    """Default semantics without next_observations: rows whose obs_next is their own obs."""
    infos: list[tuple[str, h5py.Dataset]] = field(default_factory=list)
    semantics: str = "default"
    timeouts_source: str = "file"
    obs_where: tuple[int, int] | None = None
    """``(fd, offset)`` of ``observations`` when it is read memory-mapped (:func:`_where`)."""
    next_obs_where: tuple[int, int] | None = None

    @property
    def n_kept(self) -> int:
        return int(np.count_nonzero(self.keep))


def dataset_at(f: h5py.File, key: str) -> h5py.Dataset:
    """``f[key]``: a dataset of numbers or bools with a simple dataspace (checked)."""
    return dataset(f, key, kinds="biuf")


def _read_flat(f: h5py.File, key: str, n: int, fd: int | None = None) -> np.ndarray:
    """A per-row scalar column as a 1-D array (``(N,)`` or ``(N, 1)`` accepted)."""
    ds = dataset_at(f, key)
    if ds.ndim == 0 or ds.shape[0] != n:
        rows = ds.shape[0] if ds.ndim else 0
        raise DatasetFormatError(
            f"{f.filename}: '{key}' has {rows} rows; expected {n} (the length of 'observations')"
        )
    if ds.ndim > 2 or (ds.ndim == 2 and ds.shape[1] != 1):
        raise DatasetFormatError(
            f"{f.filename}: '{key}' has shape {ds.shape}; expected ({n},) or ({n}, 1)"
        )
    check_extent(ds, n)
    return read_rows(ds, 0, n, ds.dtype, mapped_location(ds, ds.dtype, fd)).reshape(n)


def _float_dtype(dtype: np.dtype[Any], float32: bool) -> np.dtype[Any]:
    if float32 and dtype == np.float64:
        return np.dtype(np.float32)
    return np.dtype(dtype)


def _synth_timeouts(
    terminals: np.ndarray, max_episode_steps: int, *, d4rl_quirk: bool
) -> np.ndarray:
    """Rows at which an episode reaches its time limit, for files without ``timeouts``.

    ``d4rl_quirk`` replays ``qlearning_dataset``'s counter exactly: it restarts at 0 after a
    time-limit row but at 1 after a terminal row, and only looks at rows ``0 .. N-2``.
    """
    n = terminals.shape[0]
    out = np.zeros(n, dtype=bool)
    limit = max_episode_steps - 1
    term = terminals.tolist()
    step = 0
    if d4rl_quirk:
        for i in range(n - 1):
            if step == limit:
                out[i] = True
                step = 0
                continue
            if term[i]:
                step = 0
            step += 1
        return out
    for i in range(n):
        if term[i]:
            step = 0
        elif step == limit:
            out[i] = True
            step = 0
        else:
            step += 1
    return out


def plan_d4rl(
    f: h5py.File,
    *,
    qlearning_compat: bool,
    float32: bool,
    with_infos: bool,
    max_episode_steps: int | None,
    map_source: bool = False,
) -> D4RLPlan:
    """Validate the file and compute the rows kept and their flags.

    :param map_source: read large uncompressed columns as read-only memory maps of the file
        (:func:`file_offset`) instead of copies: for the converter, which only hands them
        to the writer; never for arrays returned to callers.
    """
    fname = f.filename
    missing = [k for k in D4RL_REQUIRED_KEYS if k not in f]
    if missing:
        present = ", ".join(as_text(k) for k in sorted_keys(f)[:12]) or "(none)"
        raise DatasetFormatError(
            f"{fname}: D4RL layout is missing {', '.join(repr(m) for m in missing)}; expected keys "
            f"{', '.join(D4RL_REQUIRED_KEYS)} (+ optional timeouts, next_observations, infos/*); "
            f"found {present}"
        )
    obs = dataset_at(f, "observations")
    if obs.ndim < 1:
        raise DatasetFormatError(f"{fname}: 'observations' is a scalar; expected (N, *obs_shape)")
    n = int(obs.shape[0])
    check_extent(obs, n)
    act_ds = dataset_at(f, "actions")
    if act_ds.ndim < 1 or act_ds.shape[0] != n:
        rows = act_ds.shape[0] if act_ds.ndim else 0
        raise DatasetFormatError(
            f"{fname}: 'actions' has {rows} rows; expected {n} (the length of 'observations')"
        )
    check_extent(act_ds, n)
    fd = mappable_fd(f) if map_source else None
    rew = _read_flat(f, "rewards", n, fd)
    terminals = _read_flat(f, "terminals", n, fd).astype(bool, copy=False)
    has_timeouts = "timeouts" in f
    timeouts_source = "file"
    if has_timeouts:
        timeouts = _read_flat(f, "timeouts", n, fd).astype(bool, copy=False)
    elif max_episode_steps is not None:
        if max_episode_steps < 1:
            raise DataValidationError(f"max_episode_steps={max_episode_steps}: expected >= 1")
        timeouts = _synth_timeouts(terminals, max_episode_steps, d4rl_quirk=qlearning_compat)
        timeouts_source = f"max_episode_steps={max_episode_steps}"
        log.info(
            "%s: no 'timeouts'; time limits derived from max_episode_steps=%d",
            fname,
            max_episode_steps,
        )
    elif qlearning_compat:
        raise DataValidationError(
            f"{fname}: has no 'timeouts', and d4rl.qlearning_dataset then splits episodes at "
            "the environment's time limit: pass max_episode_steps (CLI: --max-episode-steps), "
            "e.g. 1000 for the MuJoCo locomotion tasks"
        )
    else:
        timeouts = np.zeros(n, dtype=bool)
        timeouts_source = "none"
        log.info(
            "%s: no 'timeouts' and no max_episode_steps: episodes end only at terminals", fname
        )
    next_obs: h5py.Dataset | None = None
    if "next_observations" in f and not qlearning_compat:
        next_obs = dataset_at(f, "next_observations")
        if next_obs.shape != obs.shape:
            raise DatasetFormatError(
                f"{fname}: 'next_observations' has shape {next_obs.shape}; expected {obs.shape} "
                "(the shape of 'observations')"
            )
        check_extent(next_obs, n)
    infos: list[tuple[str, h5py.Dataset]] = []
    if with_infos and "infos" in f:
        group = f["infos"]
        if isinstance(group, h5py.Group):
            for name, ds in iter_datasets(group):
                if ds.shape is None or ds.ndim == 0 or ds.shape[0] != n:
                    raise DatasetFormatError(
                        f"{fname}: 'infos/{name}' has shape {ds.shape}; expected {n} rows"
                    )
                if ds.dtype.kind not in "biuf" or ds.dtype.names is not None:
                    log.warning(
                        "%s: skipping 'infos/%s' (dtype %s is not numeric)", fname, name, ds.dtype
                    )
                    continue
                check_extent(ds, n)
                infos.append((name, ds))

    if qlearning_compat:
        obs_dtype = np.dtype(np.float32)
        act_dtype = np.dtype(np.float32)
        rew_dtype = np.dtype(np.float32)
    else:
        obs_dtype = _float_dtype(obs.dtype, float32)
        act_dtype = _float_dtype(act_ds.dtype, float32)
        rew_dtype = _float_dtype(rew.dtype, float32)
        if not np.issubdtype(rew_dtype, np.floating):
            rew_dtype = np.dtype(np.float32)
    act = read_rows(act_ds, 0, n, act_dtype, mapped_location(act_ds, act_dtype, fd))
    rew = rew.astype(rew_dtype, copy=False)

    if qlearning_compat:
        keep = np.zeros(n, dtype=bool)
        if n > 1:
            keep[: n - 1] = ~timeouts[: n - 1]
        terminated = terminals.copy()
        truncated = np.zeros(n, dtype=bool)
        if n > 2:
            # the row before a dropped time-limit row ends its episode (data goes on elsewhere)
            truncated[: n - 2] = keep[: n - 2] & ~terminals[: n - 2] & timeouts[1 : n - 1]
        done = terminated | truncated
        self_next = None
        semantics = "qlearning_compat"
    elif next_obs is not None:
        keep = np.ones(n, dtype=bool)
        terminated = terminals  # read only from here on
        truncated = timeouts & ~terminals
        done = terminated | truncated
        self_next = None
        semantics = "default"
    else:
        drop = timeouts & ~terminals
        tail_cut = n > 0 and not terminals[-1] and not timeouts[-1]
        if n and not terminals[-1]:
            drop[-1] = True
        keep = ~drop
        terminated = terminals.copy()
        truncated = np.zeros(n, dtype=bool)
        if n > 1:
            truncated[:-1] = keep[:-1] & ~terminals[:-1] & timeouts[1:] & ~terminals[1:]
        done = terminated | truncated
        if tail_cut and n > 1 and keep[-2]:
            done[-2] = True  # the file stops mid-episode: cut, not truncated
        self_next = terminals
        semantics = "default"
    if n and keep[-1]:
        done[-1] = True  # the last kept row ends its episode
    elif n and keep.any():
        done[n - 1 - int(np.argmax(keep[::-1]))] = True
    return D4RLPlan(
        filename=fname,
        n=n,
        obs=obs,
        next_obs=next_obs,
        obs_dtype=obs_dtype,
        act=act,
        rew=rew,
        keep=keep,
        terminated=terminated,
        truncated=truncated,
        done=done,
        self_next=self_next,
        infos=infos,
        semantics=semantics,
        timeouts_source=timeouts_source,
        obs_where=mapped_location(obs, obs_dtype, fd),
        next_obs_where=None if next_obs is None else mapped_location(next_obs, obs_dtype, fd),
    )


def iter_d4rl_chunks(plan: D4RLPlan, chunk_rows: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(source rows consumed, columns)`` for consecutive chunks of source rows."""
    n = plan.n
    chunk_rows = max(1, int(chunk_rows))
    for a in range(0, n, chunk_rows):
        b = min(n, a + chunk_rows)
        keep = plan.keep[a:b]
        all_kept = bool(keep.all())
        idx = None if all_kept else np.flatnonzero(keep)
        if idx is not None and idx.size == 0:
            yield b - a, {}
            continue
        if plan.next_obs is not None:
            block = read_rows(plan.obs, a, b, plan.obs_dtype, plan.obs_where)
            nxt = read_rows(plan.next_obs, a, b, plan.obs_dtype, plan.next_obs_where)
            obs = block if idx is None else block[idx]
            obs_next = nxt if idx is None else nxt[idx]
        else:
            block = read_rows(plan.obs, a, min(n, b + 1), plan.obs_dtype, plan.obs_where)
            rel = np.arange(b - a) if idx is None else idx
            self_rows = None if plan.self_next is None else plan.self_next[a:b][rel]
            obs = block[: b - a] if idx is None else block[idx]
            if (
                idx is None
                and (self_rows is None or not self_rows.any())
                and block.shape[0] > b - a
            ):
                obs_next = block[1:]
            else:
                src = rel + 1 if self_rows is None else rel + 1 - self_rows.astype(np.intp)
                obs_next = block[src]
        sel: slice | np.ndarray = slice(a, b) if idx is None else idx + a
        cols: dict[str, Any] = {
            "obs": obs,
            "act": plan.act[sel],
            "rew": plan.rew[sel],
            "terminated": plan.terminated[sel],
            "truncated": plan.truncated[sel],
            "done": plan.done[sel],
            "obs_next": obs_next,
        }
        if plan.infos:
            flat = []
            for name, ds in plan.infos:
                arr = read_rows(ds, a, b, ds.dtype)
                flat.append((name, arr if idx is None else arr[idx]))
            cols["info"] = nest_columns(dict(flat))
        yield b - a, cols


def d4rl_transitions(
    f: h5py.File,
    *,
    qlearning_compat: bool = False,
    float32: bool = False,
    with_infos: bool = False,
    max_episode_steps: int | None = None,
) -> dict[str, Any]:
    """Read a whole D4RL-layout file into transition columns (see the module doc for rules).

    :param f: an open D4RL-layout HDF5 file.
    :param qlearning_compat: reproduce ``d4rl.qlearning_dataset`` row for row.
    :param float32: cast float64 observations/actions/rewards to float32 (default: keep).
    :param with_infos: also return ``info`` (a nested dict of the ``infos/*`` columns).
    :param max_episode_steps: time limit used when the file has no ``timeouts``.
    :returns: ``obs`` ``(M, *obs_shape)``, ``act`` ``(M, *act_shape)``, ``rew`` ``(M,)`` float,
        ``terminated``/``truncated``/``done`` ``(M,)`` bool and ``obs_next`` like ``obs``
        (``M <= N`` rows); ``done`` marks every episode end, including cut ones.
    :raises DatasetFormatError: a required key is missing, or lengths/shapes disagree.
    """
    plan = plan_d4rl(
        f,
        qlearning_compat=qlearning_compat,
        float32=float32,
        with_infos=with_infos,
        max_episode_steps=max_episode_steps,
    )
    for _, cols in iter_d4rl_chunks(plan, max(plan.n, 1)):
        if cols:
            return cols
    obs_shape = plan.obs.shape[1:]
    empty_obs = np.empty((0, *obs_shape), dtype=plan.obs_dtype)
    out: dict[str, Any] = {
        "obs": empty_obs,
        "act": plan.act[:0],
        "rew": plan.rew[:0],
        "terminated": np.zeros(0, dtype=bool),
        "truncated": np.zeros(0, dtype=bool),
        "done": np.zeros(0, dtype=bool),
        "obs_next": empty_obs.copy(),
    }
    return out


# --------------------------------------------------------------------------------------
# spaces, metadata, conversion
# --------------------------------------------------------------------------------------


def infer_d4rl_spaces(plan: D4RLPlan) -> tuple[gym.Space[Any], gym.Space[Any]]:
    """Box observations (unbounded); Box actions in [-1, 1] (D4RL's tasks) when the data fits,
    else bounded by the data; Discrete (MultiDiscrete) when the actions are integers from 0,
    a Box bounded by the data for other integers."""
    obs_shape = tuple(plan.obs.shape[1:])
    obs_space: gym.Space[Any]
    if plan.obs_dtype == np.bool_:
        obs_space = gym.spaces.Box(low=0, high=1, shape=obs_shape, dtype=np.bool_)
    elif np.issubdtype(plan.obs_dtype, np.integer):
        ii = np.iinfo(plan.obs_dtype)
        obs_space = gym.spaces.Box(
            low=ii.min, high=ii.max, shape=obs_shape, dtype=plan.obs_dtype.type
        )
    else:
        obs_space = gym.spaces.Box(
            low=-np.inf, high=np.inf, shape=obs_shape, dtype=plan.obs_dtype.type
        )
    act = plan.act
    shape = tuple(act.shape[1:])
    if np.issubdtype(act.dtype, np.integer) or act.dtype == np.bool_:
        if act.size == 0:
            return obs_space, (
                gym.spaces.Discrete(1)
                if act.ndim == 1
                else gym.spaces.MultiDiscrete(np.ones(shape, dtype=np.int64))
            )
        lo_i, hi_i = act.min(axis=0).astype(np.int64), act.max(axis=0).astype(np.int64)
        if lo_i.min() >= 0 and hi_i.max() < 2**31:
            if act.ndim == 1:
                return obs_space, gym.spaces.Discrete(int(hi_i) + 1)
            return obs_space, gym.spaces.MultiDiscrete(hi_i + 1)
        return obs_space, gym.spaces.Box(low=lo_i, high=hi_i, shape=shape, dtype=act.dtype.type)
    lo_all, hi_all = (float(act.min()), float(act.max())) if act.size else (0.0, 0.0)
    if np.isnan(lo_all) or np.isnan(hi_all):  # min/max propagate NaN; nanmin is slower
        finite = act[np.isfinite(act)] if act.size else act
        lo_all, hi_all = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if act.size == 0 or (lo_all >= -1.0 and hi_all <= 1.0):
        return obs_space, gym.spaces.Box(-1.0, 1.0, shape=shape, dtype=act.dtype.type)
    with np.errstate(invalid="ignore"):
        lo = np.fmin.reduce(act, axis=0)  # ignores NaN unless a whole column is NaN
        hi = np.fmax.reduce(act, axis=0)
    lo = np.where(np.isnan(lo), -np.inf, lo)
    hi = np.where(np.isnan(hi), np.inf, hi)
    log.warning(
        "%s: actions exceed [-1, 1] (min %.4g, max %.4g); the action space's bounds are taken "
        "from the data",
        plan.filename,
        float(np.min(lo)),
        float(np.max(hi)),
    )
    return obs_space, gym.spaces.Box(low=lo, high=hi, shape=shape, dtype=act.dtype.type)


def _json_scalar(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic) and not isinstance(value, np.void):
        return _json_scalar(value.item())
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if value is None or isinstance(value, str | int | float):
        return value
    return str(value)  # compound records, objects: as text


def read_d4rl_metadata(f: h5py.File) -> tuple[dict[str, Any], dict[str, list[int]]]:
    """The ``metadata/*`` entries of a D4RL file, JSON-ready.

    :returns: ``(kept, skipped)``: scalars, strings and arrays of at most
        :data:`METADATA_MAX_ELEMENTS` elements by path; larger arrays by path → shape.
    """
    kept: dict[str, Any] = {}
    skipped: dict[str, list[int]] = {}
    group = f.get("metadata")
    if not isinstance(group, h5py.Group):
        return kept, skipped
    for name, ds in iter_datasets(group):
        if ds.shape is None:
            kept[name] = None
            continue
        if ds.size > METADATA_MAX_ELEMENTS:
            skipped[name] = list(ds.shape)
            continue
        check_extent(ds, ds.shape[0] if ds.shape else 1)
        value = ds[()]
        if isinstance(value, np.ndarray):
            kept[name] = (
                [_json_scalar(v) for v in value.ravel().tolist()]
                if value.ndim
                else _json_scalar(value[()])
            )
        else:
            kept[name] = _json_scalar(value)
    for key, value in group.attrs.items():
        if np.size(value) <= METADATA_MAX_ELEMENTS:
            kept.setdefault(
                f"@{key}",
                _json_scalar(value)
                if np.ndim(value) == 0
                else [_json_scalar(v) for v in np.ravel(value).tolist()],
            )
    return kept, skipped
