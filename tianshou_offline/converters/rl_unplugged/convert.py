"""Converting many RL Unplugged Atari shards: the plan (which shards, where, what is already
converted), resuming, and the parallel conversion."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tianshou_offline.converters.result import ConversionResult
from tianshou_offline.converters.rl_unplugged.shard import ShardResult, convert_shard
from tianshou_offline.converters.rl_unplugged.sources import (
    DEFAULT_CACHE_DIR,
    DEFAULT_OUTPUT_DIR,
    TOTAL_NUM_SHARDS,
    URL_PREFIX,
    check_game,
    download_file,
    shard_filename,
    shard_url,
)
from tianshou_offline.data.atomic import remove_stale_temps
from tianshou_offline.data.format import read_metadata
from tianshou_offline.data.writer import Compression
from tianshou_offline.errors import (
    OutputExistsError,
    SourceNotFoundError,
    TianshouOfflineError,
)

log = logging.getLogger(__name__)


def is_converted(
    output: str | os.PathLike[str], source: str | os.PathLike[str] | None = None
) -> bool:
    """Whether ``output`` is a complete, verified conversion (of ``source``, when given).

    Checks that the file opens, was written by this converter with verification, holds as
    many transitions as records were read, and (when ``source`` exists) that the source
    file's size matches the one recorded.
    """
    out = Path(output)
    if not out.exists():
        return False
    try:
        meta = read_metadata(out)
    except TianshouOfflineError as e:
        log.warning("%s: unreadable (%s); it will be converted again", out, e)
        return False
    ea = meta.extra_attrs
    try:
        records = int(ea.get("rlu.records", -1))
        size = int(ea.get("rlu.source_size", -1))
    except ValueError:
        return False
    if ea.get("rlu.verified") != "obs,obs_next" or records != meta.num_transitions or records < 1:
        return False
    if source is not None and Path(source).exists() and Path(source).stat().st_size != size:
        log.warning("%s: converted from a source of another size; it will be converted again", out)
        return False
    return True


ResultT = TypeVar("ResultT", bound=ConversionResult)

ShardJob = tuple[Path, Path, str, int | None, int | None]
"""(source, output, game, run id, shard id) of one shard to convert (:func:`plan_conversion`)."""


def _plan_jobs(
    paths: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    task: str | None,
    run_id: int,
    shard_ids: Sequence[int],
    cache_dir: str | os.PathLike[str],
    total_num_shards: int,
) -> list[ShardJob]:
    """The shards :func:`convert_rl_unplugged_atari` converts, in order."""
    cache = Path(cache_dir).expanduser()
    outdir = Path(output).expanduser()
    jobs: list[ShardJob] = []
    if shard_ids:
        if task is None:
            raise SourceNotFoundError("--task is required with shard ids")
        check_game(task)
        for sid in shard_ids:
            if not 0 <= sid < total_num_shards:
                raise SourceNotFoundError(
                    f"shard id {sid} does not exist; expected 0..{total_num_shards - 1}"
                )
            name = shard_filename(run_id, sid, total_num_shards)
            jobs.append((cache / task / name, outdir / task / f"{name}.hdf5", task, run_id, sid))
    for p in paths:
        src = Path(p).expanduser()
        game = task or src.resolve().parent.name
        jobs.append((src, outdir / game / f"{src.name}.hdf5", game, None, None))
    if not jobs:
        raise SourceNotFoundError("no shards given: pass shard ids (--shard-id 0-99) or files")
    return jobs


def shard_outputs(
    source: Sequence[str | os.PathLike[str]] = (),
    output: str | os.PathLike[str] = DEFAULT_OUTPUT_DIR,
    *,
    task: str | None = None,
    run_id: int = 1,
    shard_ids: Sequence[int] = (),
    cache_dir: str | os.PathLike[str] = DEFAULT_CACHE_DIR,
    total_num_shards: int = TOTAL_NUM_SHARDS,
) -> list[Path]:
    """The output files :func:`convert_rl_unplugged_atari` writes for these arguments (and
    their downloads, for shard ids), in order; nothing is read or written."""
    jobs = _plan_jobs(
        source,
        output,
        task=task,
        run_id=run_id,
        shard_ids=shard_ids,
        cache_dir=cache_dir,
        total_num_shards=total_num_shards,
    )
    return [out for _, out, *_ in jobs] + [src for src, _, _, _, sid in jobs if sid is not None]


def plan_conversion(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    task: str | None,
    run_id: int,
    shard_ids: Sequence[int],
    cache_dir: str | os.PathLike[str],
    total_num_shards: int,
    resume: bool,
    overwrite: bool,
    download: bool,
) -> tuple[list[str | os.PathLike[str]], str | None, list[ShardJob]]:
    """The checks and the plan of :func:`convert_rl_unplugged_atari` (also used by
    :mod:`tianshou_offline.scale`, which runs the same shards as Ray tasks): the explicit
    source files, the game, and the shards to convert, in order.

    :raises OutputExistsError: an output exists and neither ``resume`` nor ``overwrite``.
    :raises SourceNotFoundError: a source file is missing (and cannot be downloaded).
    """
    paths = [source] if isinstance(source, str | os.PathLike) else list(source)
    if shard_ids and task is None and len(paths) == 1 and isinstance(paths[0], str):
        if not Path(paths[0]).expanduser().exists():  # ("Breakout", out, shard_ids=[0])
            task, paths = paths[0], []
    jobs = _plan_jobs(
        paths,
        output,
        task=task,
        run_id=run_id,
        shard_ids=shard_ids,
        cache_dir=cache_dir,
        total_num_shards=total_num_shards,
    )
    # refuse early, before hours of work
    if not (resume or overwrite):
        existing = [str(o) for _, o, *_ in jobs if o.exists()]
        if existing:
            more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
            raise OutputExistsError(
                f"{existing[0]}{more}: output exists; pass --resume to skip converted shards "
                "or --overwrite to replace them"
            )
    for src, _, _game, job_run, job_sid in jobs:
        if src.exists():
            continue
        if download and job_sid is not None and job_run is not None:
            continue
        hint = " (pass --download to fetch it)" if job_sid is not None else ""
        raise SourceNotFoundError(f"{src}: no such file{hint}")
    return paths, task, jobs


def resumed_result(src: Path, out: Path) -> ShardResult | None:
    """The result of a shard that ``resume`` skips: ``out`` is converted and verified
    (:func:`is_converted`, against ``src`` when it exists); None when it must be converted."""
    if not is_converted(out, src if src.exists() else None):
        return None
    meta = read_metadata(out)
    log.info("%s: already converted and verified; skipped", out)
    return ShardResult(
        source=src,
        outputs=(out,),
        num_transitions=meta.num_transitions,
        num_episodes=meta.num_episodes or 0,
        obs_patches=int(meta.extra_attrs.get("rlu.obs_patches", 0)),
        obs_next_patches=int(meta.extra_attrs.get("rlu.obs_next_patches", 0)),
        pixel_compares=int(meta.extra_attrs.get("rlu.pixel_compares", 0)),
        seconds=0.0,
        skipped=True,
    )


def convert_rl_unplugged_atari(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] = (),
    output: str | os.PathLike[str] = DEFAULT_OUTPUT_DIR,
    *,
    task: str | None = None,
    run_id: int = 1,
    shard_ids: Sequence[int] = (),
    cache_dir: str | os.PathLike[str] = DEFAULT_CACHE_DIR,
    total_num_shards: int = TOTAL_NUM_SHARDS,
    workers: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    download: bool = False,
    url_prefix: str = URL_PREFIX,
    compression: Compression = None,
    contiguous: bool = False,
    num_actions: int | None = None,
    decoder: str = "auto",
    progress: bool = False,
    on_result: Callable[[ShardResult], None] | None = None,
) -> ConversionResult:
    """Convert many shards, one output file each: ``{output}/{task}/{shard}.hdf5``.

    :param source: shard files (one or a sequence; converted after the ``shard_ids``), or
        the game's name when it is a name, not a file (same as ``task``).
    :param output: the output directory.
    :param task: the game; required with ``shard_ids`` (optional with explicit files,
        where it defaults to each file's directory name).
    :param shard_ids: shard numbers, read from ``{cache_dir}/{task}/run_{run_id}-XXXXX-of-00100``.
    :param resume: skip shards whose output is already converted and verified
        (:func:`is_converted`); other existing outputs are converted again.
    :param overwrite: replace existing outputs.
    :param contiguous: write every shard with contiguous, uncompressed columns, ready for
        ``load_rl_unplugged(..., memory="disk")`` (see :func:`convert_shard`).
    :param download: fetch missing shards from ``url_prefix`` into ``cache_dir`` first.
    :param on_result: called after every shard (e.g. to report a line).
    :returns: every shard's output (``outputs``, ``parts``: one :class:`ShardResult` per
        shard, in order, ``skipped`` for shards left as they were), total counts and time.
    :raises OutputExistsError: an output exists and neither ``resume`` nor ``overwrite`` is set
        (checked for every shard before any work starts).
    """
    start = time.perf_counter()
    paths, task, jobs = plan_conversion(
        source,
        output,
        task=task,
        run_id=run_id,
        shard_ids=shard_ids,
        cache_dir=cache_dir,
        total_num_shards=total_num_shards,
        resume=resume,
        overwrite=overwrite,
        download=download,
    )
    results: list[ShardResult] = []
    for src, out, game, job_run, job_sid in jobs:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(out)
        done = resumed_result(src, out) if resume else None
        if done is not None:
            res = done
        else:
            if not src.exists():
                assert job_run is not None and job_sid is not None
                download_file(shard_url(game, job_run, job_sid, url_prefix), src, progress=progress)
            res = convert_shard(
                src,
                out,
                task=game,
                run_id=job_run,
                shard_id=job_sid,
                workers=workers,
                overwrite=True if (resume or overwrite) else False,
                compression=compression,
                contiguous=contiguous,
                num_actions=num_actions,
                decoder=decoder,
                progress=progress,
            )
        results.append(res)
        if on_result is not None:
            on_result(res)
    return combined_result(ConversionResult, paths, task, shard_ids, results, start)


def combined_result(
    kind: type[ResultT],
    paths: Sequence[str | os.PathLike[str]],
    task: str | None,
    shard_ids: Sequence[int],
    parts: Sequence[ShardResult],
    start: float,
    **extra: Any,
) -> ResultT:
    """The result (of type ``kind``, with the fields ``extra``) of a conversion of many
    shards: the shards' results ``parts`` in order, their outputs and counts together, the
    time since ``start`` (``time.perf_counter()``); the source names the game (with shard
    ids) and the files (:func:`plan_conversion`'s ``paths`` and ``task``)."""
    return kind(
        source=", ".join([*([task] if shard_ids and task else []), *map(str, paths)]),
        outputs=tuple(r.output for r in parts),
        num_transitions=sum(r.num_transitions for r in parts),
        num_episodes=sum(r.num_episodes for r in parts),
        seconds=time.perf_counter() - start,
        parts=tuple(parts),
        **extra,
    )
