"""D4RL datasets (a name in D4RL's download cache, or a D4RL-layout HDF5 file) → a
tianshou-offline buffer file. The layout's rules (which rows are kept, their flags, the
``qlearning_compat`` mode, memory-mapped reading) are in
:mod:`tianshou_offline.data.d4rl_layout`, which ``load_buffer`` also uses.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from tianshou_offline.converters.d4rl_scores import D4RLDatasetInfo, find_dataset_info
from tianshou_offline.converters.result import ConversionResult
from tianshou_offline.data.atomic import check_new_output
from tianshou_offline.data.d4rl_layout import (
    D4RL_REQUIRED_KEYS,
    DEFAULT_CHUNK_ROWS,
    D4RLPlan,
    d4rl_transitions,
    dataset_at,
    infer_d4rl_spaces,
    iter_d4rl_chunks,
    plan_d4rl,
    read_d4rl_metadata,
)
from tianshou_offline.data.format import Provenance, open_h5
from tianshou_offline.data.writer import BufferWriter, Compression, NanPolicy
from tianshou_offline.errors import (
    DatasetFormatError,
    DataValidationError,
    SourceNotFoundError,
)
from tianshou_offline.progress import progress as progress_bar

log = logging.getLogger(__name__)

CONVERTER_NAME = "tianshou_offline.converters.d4rl"


def d4rl_dataset_dir() -> Path:
    """Where D4RL caches downloads: ``$D4RL_DATASET_DIR`` or ``~/.d4rl/datasets``."""
    env = os.environ.get("D4RL_DATASET_DIR")
    return Path(env).expanduser() if env else Path("~/.d4rl/datasets").expanduser()


def _looks_like_path(text: str) -> bool:
    return (
        os.sep in text
        or (os.altsep is not None and os.altsep in text)
        or text.startswith(("~", "."))
        or text.lower().endswith((".hdf5", ".h5", ".hdf"))
    )


def resolve_d4rl_source(
    name_or_path: str | os.PathLike[str],
) -> tuple[Path, D4RLDatasetInfo | None]:
    """Find the HDF5 file for a D4RL dataset name or a path.

    A path that exists is used as is. A name (``hopper-medium-v2``) is looked up in
    :func:`d4rl_dataset_dir` under the file name D4RL downloads it as
    (``hopper_medium-v2.hdf5``) or as ``NAME.hdf5``.

    :returns: the file and, when the name (or the file's name) is a known D4RL dataset, its
        reference-score/time-limit entry.
    :raises SourceNotFoundError: no such file; the message says where it looked and how to get it.
    """
    text = os.fspath(name_or_path)
    p = Path(text).expanduser()
    if p.is_file():
        info = find_dataset_info(p.stem)
        if info is None:
            info = next((i for i in _known() if i.filename == p.name), None)
        return p, info
    if p.exists():
        raise DatasetFormatError(f"{p}: is a directory, expected a D4RL HDF5 file")
    if _looks_like_path(text):
        raise SourceNotFoundError(f"{p}: no such file")
    info = find_dataset_info(text)
    root = d4rl_dataset_dir()
    candidates = [root / info.filename] if info is not None else []
    candidates.append(root / f"{info.name if info else text}.hdf5")
    for c in candidates:
        if c.is_file():
            return c, info
    looked = ", ".join(str(c) for c in dict.fromkeys(candidates))
    if info is None:
        from tianshou_offline.converters.d4rl_scores import dataset_info

        try:
            dataset_info(text)  # raises with close matches
        except SourceNotFoundError as e:
            raise SourceNotFoundError(
                f"{e}; no file at {looked} either (pass the path of a D4RL-layout HDF5 file)"
            ) from None
    assert info is not None
    raise SourceNotFoundError(
        f"D4RL dataset {info.name!r} is not downloaded: looked for {looked} "
        f"(D4RL_DATASET_DIR={os.environ.get('D4RL_DATASET_DIR', '<unset>')}); "
        f"get it with: mkdir -p {root} && curl -L -o {root / info.filename} {info.url}"
    )


def _known() -> list[D4RLDatasetInfo]:
    from tianshou_offline.converters.d4rl_scores import D4RL_DATASETS

    return list(D4RL_DATASETS.values())


def _check_rewards(plan: D4RLPlan, nan_policy: NanPolicy) -> None:
    if nan_policy == "ignore" or plan.rew.dtype.kind != "f":
        return
    if np.isfinite(plan.rew.sum()):  # NaN/inf propagate into the sum: all finite (fast path)
        return
    bad = ~np.isfinite(plan.rew) & plan.keep
    if not bad.any():
        return
    first = int(np.flatnonzero(bad)[0])
    msg = (
        f"{plan.filename}: 'rewards' has {int(bad.sum())} NaN/inf values among the rows "
        f"converted (first at source row {first})"
    )
    if nan_policy == "error":
        raise DataValidationError(
            msg + "; pass nan_policy='warn' (CLI: --nan-policy warn) to keep them"
        )
    log.warning("%s; kept as they are", msg)


def convert_d4rl(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    qlearning_compat: bool = False,
    float32: bool = False,
    with_infos: bool = False,
    max_episode_steps: int | None = None,
    env_id: str | None = None,
    compression: Compression = None,
    nan_policy: NanPolicy = "error",
    overwrite: bool = False,
    progress: bool | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> ConversionResult:
    """Convert a D4RL dataset (name or file) to a tianshou-offline buffer file.

    :param source: a D4RL name (``hopper-medium-v2``, resolved in :func:`d4rl_dataset_dir`)
        or the path of a D4RL-layout HDF5 file (gzip-compressed files are read transparently).
    :param output: the ``.hdf5`` buffer file to write (atomically).
    :param qlearning_compat: reproduce ``d4rl.qlearning_dataset`` row for row (module doc).
    :param float32: cast float64 observations/actions/rewards to float32 (default: keep dtypes).
    :param with_infos: store ``infos/*`` columns as the buffer's ``info`` (rows aligned).
    :param max_episode_steps: time limit for files without ``timeouts`` (defaults to D4RL's
        limit for known dataset names).
    :param env_id: gymnasium id to record for evaluation (D4RL files carry none).
    :param compression: output compression: None, ``"gzip"`` or ``"lzf"``.
    :param nan_policy: non-finite rewards: ``"error"`` (refuse, default), ``"warn"`` (keep and
        log a warning) or ``"ignore"``.
    :param overwrite: replace an existing output.
    :param progress: progress on stderr (a bar on a terminal, plain lines every 30 s
        otherwise; False: none).
    :param chunk_rows: source rows read per chunk.
    :returns: the output, transition and episode counts; ``details`` holds ``source_rows``
        and ``rows_dropped``.
    :raises SourceNotFoundError: unknown name / missing file (says where it looked, how to get it).
    :raises DatasetFormatError: missing keys, mismatched lengths or shapes.
    :raises DataValidationError: NaN rewards with ``nan_policy="error"``; no rows to write.
    :raises OutputExistsError: ``output`` exists and ``overwrite`` is False.
    """
    start = time.perf_counter()
    out = Path(output)
    src, info = resolve_d4rl_source(source)
    check_new_output(out, overwrite=overwrite)
    if max_episode_steps is None and info is not None:
        max_episode_steps = info.max_episode_steps
    with open_h5(src) as f:
        plan = plan_d4rl(
            f,
            qlearning_compat=qlearning_compat,
            float32=float32,
            with_infos=with_infos,
            max_episode_steps=max_episode_steps,
            map_source=True,
        )
        if plan.timeouts_source == "file":
            max_episode_steps_used = None
        else:
            max_episode_steps_used = max_episode_steps
        _check_rewards(plan, nan_policy)
        obs_space, act_space = infer_d4rl_spaces(plan)
        meta_kept, meta_skipped = read_d4rl_metadata(f)
        dataset_id = info.name if info is not None else src.stem
        extra: dict[str, Any] = {
            "source_file": str(src.resolve()),
            "semantics": plan.semantics,
            "source_rows": plan.n,
            "rows_dropped": plan.n - plan.n_kept,
            "next_observations_used": plan.next_obs is not None,
            "timeouts": plan.timeouts_source,
            "float32": float32,
            "with_infos": with_infos,
            "source_dtypes": {
                k: dataset_at(f, k).dtype.str
                for k in ("observations", "actions", "rewards", "next_observations")
                if k in f
            },
            "metadata": meta_kept,
        }
        if meta_skipped:
            extra["metadata_skipped"] = meta_skipped
        if max_episode_steps_used is not None:
            extra["max_episode_steps"] = max_episode_steps_used
        extra_attrs: dict[str, str] = {"d4rl_semantics": plan.semantics}
        if info is not None:
            extra["ref_min_score"] = info.ref_min_score
            extra["ref_max_score"] = info.ref_max_score
            extra["url"] = info.url
            extra_attrs["ref_min_score"] = repr(info.ref_min_score)
            extra_attrs["ref_max_score"] = repr(info.ref_max_score)
            extra_attrs["max_episode_steps"] = str(info.max_episode_steps)
        provenance = Provenance(
            source="d4rl", dataset_id=dataset_id, converter=CONVERTER_NAME, extra=extra
        )
        with (
            BufferWriter(
                out,
                observation_space=obs_space,
                action_space=act_space,
                env_id=env_id,
                provenance=provenance,
                compression=compression,
                overwrite=overwrite,
                nan_policy="ignore",  # checked above, once, over the whole column
                extra_attrs=extra_attrs,
            ) as writer,
            progress_bar(
                total=plan.n,
                unit="row",
                unit_scale=True,
                desc=f"converting {dataset_id}",
                enabled=progress,
            ) as bar,
        ):
            for consumed, cols in iter_d4rl_chunks(plan, chunk_rows):
                if cols:
                    writer.add_transitions(**cols)
                bar.update(consumed)
    n_written, n_episodes = writer.num_transitions, writer.num_episodes
    log.info(
        "%s → %s: %d transitions in %d episodes (%d of %d source rows dropped, %s semantics)",
        src,
        out,
        n_written,
        n_episodes,
        plan.n - plan.n_kept,
        plan.n,
        plan.semantics,
    )
    return ConversionResult(
        source=src,
        outputs=(out,),
        num_transitions=n_written,
        num_episodes=n_episodes,
        seconds=time.perf_counter() - start,
        details={"source_rows": plan.n, "rows_dropped": plan.n - plan.n_kept},
    )


def _disable(progress: bool | None) -> bool | None:
    """tqdm's ``disable``: None lets tqdm decide (off when stderr is not a terminal)."""
    return None if progress is None else not progress


__all__ = [
    "D4RL_REQUIRED_KEYS",
    "DEFAULT_CHUNK_ROWS",
    "convert_d4rl",
    "d4rl_dataset_dir",
    "d4rl_transitions",
    "read_d4rl_metadata",
    "resolve_d4rl_source",
]
