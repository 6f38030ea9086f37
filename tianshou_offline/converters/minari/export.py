"""``export_minari``: a buffer file → a Minari dataset that ``minari.load_dataset`` loads,
restoring seeds, infos and Minari metadata of converted datasets."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from tianshou_offline.converters.minari.source import (
    RESET_INFO_KEY,
    _import_minari,
    _parse_dataset_id,
    minari_datasets_root,
)
from tianshou_offline.converters.minari.spaces import (
    _ARRAY_SPACES,
    _batch_tree,
    _infer_space,
    _tree_leaves,
    _tree_map,
    _tree_map2,
)
from tianshou_offline.data.atomic import (
    atomic_output,
    in_child_process,
    is_write_failure,
    write_errors,
)
from tianshou_offline.errors import (
    DatasetFormatError,
    DataValidationError,
    OutputExistsError,
)
from tianshou_offline.progress import progress as progress_bar

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------


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


def _stored_episodes(src: Path, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """``(starts, ends, seeds)`` of the episodes a tianshou-offline file's episode table
    stores (read and checked by :func:`~tianshou_offline.data.stats.stored_episode_table`, as
    ``inspect`` reads it), ``seeds`` its ``seed`` metadata column or None; None for other
    layouts (their episodes come from ``done``).

    :raises DatasetFormatError: the table is malformed (a metadata column that is not one
        value per episode included) or ends elsewhere than the ``n`` rows the buffer loads.
    :raises DataValidationError: seeds that are no integers.
    """
    from tianshou_offline.data.format import detect_layout, open_h5
    from tianshou_offline.data.stats import stored_episode_table

    with open_h5(src) as f:  # opened once: opening scans the file's bytes (byte_guards)
        if detect_layout(f) != "tianshou_offline":
            return None
        table = stored_episode_table(f)
    starts = table.starts.astype(np.int64)
    ends = starts + table.lengths.astype(np.int64)
    stored = int(ends[-1]) if ends.size else 0
    if stored != n:
        raise DatasetFormatError(
            f"{src}: its episode table covers {stored} rows, but the buffer loads {n}; "
            "expected the episodes to cover every row"
        )
    seeds = table.metadata.get("seed")
    if seeds is not None and seeds.dtype.kind not in "iu":
        raise DataValidationError(
            f"{src}: episode metadata 'seed' has dtype {seeds.dtype}; expected integers (each "
            "episode's reset seed, -1 for none), which Minari stores as the episode's seed"
        )
    return starts, ends, seeds


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


def _obs_next_like_obs(src: Path, obs_tree: Any, next_tree: Any) -> Any:
    """``next_tree`` with the dtypes of ``obs_tree``: Minari stores one observation per step,
    so ``obs_next`` must have the keys and row shapes of ``obs`` and a dtype it can take (a
    buffer file may store them differently: numbers and bools are cast, other dtypes must
    match)."""
    obs = [(k, np.shape(a)[1:]) for k, a in _tree_leaves(obs_tree)]
    nxt = [(k, np.shape(b)[1:]) for k, b in _tree_leaves(next_tree)]
    kinds = [
        (k, np.asarray(a).dtype, np.asarray(b).dtype)
        for (k, a), (_, b) in zip(_tree_leaves(obs_tree), _tree_leaves(next_tree), strict=False)
    ]
    bad = [(k, x, y) for k, x, y in kinds if x != y and not (x.kind in "biuf" and y.kind in "biuf")]
    if obs != nxt or bad:

        def show(leaves: list[tuple[str, Any]]) -> str:
            return ", ".join(f"{k or 'obs'} {shape}" for k, shape in leaves[:4])

        what = f"({show(nxt)}) differ from obs rows ({show(obs)})" if obs != nxt else (
            f"{bad[0][0] or 'obs'} has dtype {bad[0][2]} where obs has {bad[0][1]}"
        )  # fmt: skip
        raise DataValidationError(
            f"{src}: obs_next rows {what}; Minari stores one observation per step, so obs_next "
            "must have the keys and shapes of obs and a dtype it can take"
        )

    def cast(a: Any, b: Any) -> Any:
        if isinstance(a, Mapping):
            return {k: cast(a[k], b[k]) for k in a}
        if isinstance(a, tuple):
            return tuple(cast(x, y) for x, y in zip(a, b, strict=True))
        return np.asarray(b).astype(np.asarray(a).dtype, copy=False)

    return cast(obs_tree, next_tree)


def _describe(node: Any) -> str:
    """What a value of a column tree is, for messages."""
    if isinstance(node, Mapping):
        return f"the keys {sorted(map(str, node))}"
    if isinstance(node, tuple):
        return f"a tuple of {len(node)}"
    a = np.asarray(node)
    return f"rows of shape {a.shape[1:]} and dtype {a.dtype}"


def _check_leaves(src: Path, what: str, tree: Any) -> None:
    """Before a space is inferred from the column ``what`` (the file stores none): every
    array of ``tree`` has one row per step of numbers or bools, which is what a space can be
    inferred from (:func:`_infer_space`).

    :raises DataValidationError: naming the array, its shape and dtype.
    """
    for key, leaf in _tree_leaves(tree):
        a = np.asarray(leaf)
        if a.ndim == 0 or a.dtype.kind not in "biuf":
            where = f"{what}/{key}" if key else what
            raise DataValidationError(
                f"{src}: {where} has shape {a.shape} and dtype {a.dtype}; expected rows of "
                "numbers or bools (the file stores no space, so Minari's is inferred from them)"
            )


def _fit_space(src: Path, what: str, tree: Any, space: Any, data_format: str) -> Any:
    """``tree`` (the column ``what`` as Minari's structure, :func:`_batch_tree`) checked
    against ``space``, the space the dataset will declare: Minari stores and decodes each
    value through its space, so the keys of a ``Dict``, the items of a ``Tuple`` and the row
    shape of every array space must be the space's (a buffer file's stored space may
    disagree with its data), every array holds numbers or bools and no row has a
    zero-length dimension (the buffer format cannot store it, so the export would not
    convert back). Arrow and Parquet storage encode each value with the space's dtype: a
    leaf of another dtype is cast to it where that keeps every value, and refused where
    not. Other spaces (Text, Graph, …) pass as they are. Returns the (cast) tree.

    :raises DataValidationError: naming the column, what it holds and what the space
        expects.
    """
    import gymnasium as gym

    kind = {"obs": "observation", "act": "action"}.get(what, what)

    def fail(where: str, node: Any, expected: str) -> DataValidationError:
        return DataValidationError(
            f"{src}: {where} holds {_describe(node)}; the {kind} space {space} expects "
            f"{expected}, so Minari could not store it as it is"
        )

    def fit(where: str, node: Any, sp: Any) -> Any:
        if isinstance(sp, gym.spaces.Dict):
            if not isinstance(node, Mapping) or set(map(str, node)) != set(sp.spaces):
                raise fail(where, node, f"the keys {sorted(sp.spaces)} at {where}")
            return {k: fit(f"{where}/{k}", node[k], sub) for k, sub in sp.spaces.items()}
        if isinstance(sp, gym.spaces.Tuple):
            if not isinstance(node, tuple) or len(node) != len(sp.spaces):
                raise fail(where, node, f"a tuple of {len(sp.spaces)} at {where}")
            return tuple(
                fit(f"{where}/{i}", x, sub)
                for i, (x, sub) in enumerate(zip(node, sp.spaces, strict=True))
            )
        if not isinstance(sp, _ARRAY_SPACES):
            return node
        shape = () if isinstance(sp, gym.spaces.Discrete) else tuple(sp.shape)
        if isinstance(node, Mapping | tuple):
            raise fail(where, node, f"one array of rows of shape {shape} at {where}")
        a = np.asarray(node)
        if a.ndim == 0 or a.shape[1:] != shape or a.dtype.kind not in "biuf":
            raise fail(where, a, f"rows of shape {shape} holding numbers at {where}")
        if 0 in shape:
            raise DataValidationError(
                f"{src}: {where} has rows of shape {shape}; expected every dimension of a row "
                "to be at least 1 (the buffer format cannot store a zero-length dimension, so "
                "the export would not convert back)"
            )
        want = np.dtype(sp.dtype)
        if data_format == "hdf5" or a.dtype == want:
            return a
        with np.errstate(invalid="ignore", over="ignore"):
            cast = a.astype(want)
            same = cast.astype(a.dtype) == a
        if a.dtype.kind == "f" and want.kind == "f":
            same |= np.isnan(a)
        if not bool(np.all(same)):
            i = int(np.flatnonzero(~same.reshape(len(a), -1).all(axis=1))[0])
            raise DataValidationError(
                f"{src}: {where} has dtype {a.dtype} and row {i} changes when cast to {want}, "
                f"the dtype of the {kind} space {space} that Minari's {data_format} storage "
                "encodes with; export with data_format='hdf5' (CLI: --data-format hdf5), which "
                "stores the values as they are"
            )
        return cast

    return fit(what, tree, space)


def export_target(dataset_id: str) -> Path:
    """The directory :func:`export_minari` writes the dataset ``dataset_id`` to:
    ``$MINARI_DATASETS_PATH/<dataset_id>`` (Minari's layout; ``data/`` inside)."""
    return minari_datasets_root() / dataset_id


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
    :param author: dataset metadata, as the four below (defaults: those of the Minari
        dataset the buffer was converted from, if any).
    :param author_email: dataset metadata.
    :param algorithm_name: dataset metadata.
    :param code_permalink: dataset metadata.
    :param description: dataset metadata.
    :param progress: progress on stderr (a bar on a terminal, plain lines every 30 s
        otherwise; False: none).
    :returns: the dataset's data directory.
    :raises OutputExistsError: a dataset with that id exists and ``overwrite`` is False (also
        one, or any directory, that appears there while the export runs: it is left as it is).
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
    target = export_target(dataset_id)
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
    stored = _stored_episodes(src, n)
    seeds: np.ndarray | None = None
    if stored is not None:
        starts, ends, seeds = stored
    else:
        done = np.asarray(buf.done, dtype=bool).copy()
        done[-1] = True
        ends = np.flatnonzero(done) + 1
        starts = np.concatenate([[0], ends[:-1]])

    obs_space = md.observation_space
    act_space = md.action_space
    obs_tree = _batch_tree(buf.obs, obs_space)
    meta_keys = set(buf._meta.get_keys())
    has_next = "obs_next" in meta_keys
    next_tree = _batch_tree(buf.obs_next, obs_space) if has_next else None
    act: Any = np.asarray(buf.act)
    if obs_space is None:
        _check_leaves(src, "obs", obs_tree)
        obs_space = _infer_space(obs_tree)
    if act_space is None:
        _check_leaves(src, "act", act)
        act_space = _infer_space(act)
    obs_tree = _fit_space(src, "obs", obs_tree, obs_space, data_format)
    act = _fit_space(src, "act", act, act_space, data_format)
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
    if has_next:
        next_tree = _obs_next_like_obs(src, obs_tree, next_tree)
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
    if info is not None and not hasattr(info, "get_keys"):
        raise DataValidationError(
            f"{src}: its info is one array of shape {np.shape(info)}, not a group of columns; "
            "Minari stores episode infos as a dictionary (export with --no-infos / "
            "include_infos=False to leave them out)"
        )
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

    with write_errors(target), _nothing_made_again(target):
        if namespace is not None and namespace not in list_local_namespaces():
            create_namespace(namespace)
        target.parent.mkdir(parents=True, exist_ok=True)

    def write_storage(tmp: Path) -> None:
        if data_format == "hdf5":
            _write_storage(tmp)
            return
        import pyarrow as pa

        with _arrow_threads_at_one():
            try:
                _write_storage(tmp)
            except pa.ArrowException as e:
                # pthread_create refused (EAGAIN): the thread's stack could not be mapped
                # under an address-space limit, or the thread limit is reached; a resource
                # failure like a refused allocation, not a fault of the data
                if "Failed to launch worker thread" not in str(e):
                    raise
                raise MemoryError(
                    f"Arrow could not start a thread to write {dataset_id} ({e}): the "
                    "process's address space or thread limit is exhausted"
                ) from e

    def _write_storage(tmp: Path) -> None:
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
        with progress_bar(
            total=len(starts), unit="episode", desc=f"exporting {dataset_id}", enabled=progress
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

    # a directory that appeared at the target meanwhile is kept unless overwrite
    with atomic_output(target, overwrite=overwrite) as tmp:
        # Minari's HDF5 writer in a process of its own: when a write fails there (a full
        # disk), libhdf5 1.14 cannot close Minari's file, and the process that holds it may
        # crash at its next HDF5 call or at exit
        in_child_process(lambda: _with_collect_errors_logged(write_storage, tmp))
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


@contextmanager
def _nothing_made_again(target: Path) -> Iterator[None]:
    """When the block fails after a directory on the way to ``target`` vanished (deleted
    during the run), remove what was made again in its place meanwhile: Minari's namespace
    calls make the datasets root and the namespace directory anew (``makedirs``) and write the
    namespace's metadata file before failing. Only empty directories and that file go, so the
    place is as the deletion left it. An open descriptor of each directory tells a deleted
    one (no link left) from one still in place, even where the file system gives the new
    directory the old one's inode number."""
    fds = {d: os.open(d, os.O_RDONLY | os.O_DIRECTORY) for d in target.parents if d.is_dir()}
    try:
        yield
    except BaseException:
        gone = [d for d, fd in fds.items() if os.fstat(fd).st_nlink == 0]
        top = gone[-1] if gone else None  # the parents are listed from the nearest up
        if top is not None and top.is_dir():
            for here, dirs, files in os.walk(top, topdown=False):
                for name in files:
                    if name == "namespace_metadata.json":
                        Path(here, name).unlink(missing_ok=True)
                for name in dirs:
                    with contextlib.suppress(OSError):  # not empty: left as it is
                        Path(here, name).rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()
        raise
    finally:
        for fd in fds.values():
            os.close(fd)


@contextmanager
def _arrow_threads_at_one() -> Iterator[None]:
    """Arrow's CPU and I/O thread pools at one thread each while the block runs (their
    sizes restored after). Minari's Arrow and Parquet storage writes one small table per
    episode (``pyarrow.dataset.write_dataset``): more threads speed nothing up there, and
    each costs its stack and, with glibc, a malloc arena of 64 MiB of address space, so the
    default pools (a CPU thread per core; up to 8 I/O threads, started as tasks queue up)
    can exhaust an address-space limit (``RLIMIT_AS``) that the export itself fits in."""
    import pyarrow as pa

    cpu, io = pa.cpu_count(), pa.io_thread_count()
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    try:
        yield
    finally:
        pa.set_cpu_count(cpu)
        pa.set_io_thread_count(io)


@contextmanager
def _collect_errors_logged() -> Iterator[None]:
    """While Minari writes: when a write fails, h5py reports it on stderr each time it
    collects one of Minari's HDF5 objects (a traceback from ``ObjectID.__dealloc__``, through
    ``sys.excepthook`` or ``sys.unraisablehook``) and Minari goes on; the failure is
    reported once, as :class:`~tianshou_offline.errors.OutputWriteError`, so those reports
    become debug log lines (both hooks are restored after)."""
    previous_except, previous_unraisable = sys.excepthook, sys.unraisablehook

    def except_hook(
        kind: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        if is_write_failure(exc):
            log.debug("a failed write reported when h5py collected an object: %s", exc)
        else:
            previous_except(kind, exc, tb)

    def unraisable_hook(unraisable: Any) -> None:
        exc = unraisable.exc_value
        if exc is not None and is_write_failure(exc):
            log.debug("a failed write reported when h5py collected an object: %s", exc)
        else:
            previous_unraisable(unraisable)

    sys.excepthook, sys.unraisablehook = except_hook, unraisable_hook
    try:
        yield
    finally:
        sys.excepthook, sys.unraisablehook = previous_except, previous_unraisable


def _with_collect_errors_logged(fn: Any, tmp: Path) -> None:
    with _collect_errors_logged():
        fn(tmp)
