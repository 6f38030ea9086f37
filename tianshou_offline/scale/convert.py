"""RL Unplugged Atari shards converted on Ray: one task per shard.

:func:`convert_rl_unplugged_atari_ray` takes the arguments of
:func:`~tianshou_offline.converters.rl_unplugged.convert_rl_unplugged_atari` and makes the
same plan with the same checks (an existing output is refused unless ``resume`` or
``overwrite``; a missing source unless it can be downloaded), then:

- skips, on the driver, the shards ``resume`` finds converted and verified
  (:func:`~tianshou_offline.converters.rl_unplugged.resumed_result`);
- submits every other shard as a Ray task (``num_cpus`` each; its ``workers`` decoding
  processes are that many) which writes its output atomically (a temporary beside the
  output, renamed into place: :mod:`tianshou_offline.data.atomic`) in the output directory;
- a task whose worker process dies (killed, out of memory, its node lost) is run again by Ray
  (``max_retries``); one that fails with a transient I/O error too (``OSError`` outside the
  package's typed errors); a shard whose data is bad fails at once, with its error;
- the driver counts finished shards on one progress bar, calls ``on_result`` per shard as
  it finishes, and returns the shards that failed with their errors (``failures``) after
  every other shard is done: one bad shard does not stop the job.

Storage: the source files (or, with ``download``, the cache directory) and the output
directory must be visible at the same paths on every node (a network file system, a shared
volume); a task that cannot write the output directory fails with a
:class:`~tianshou_offline.errors.ClusterError` naming its node and the directory.

A retried task finds its earlier attempt's temporary beside the output and removes it (on
the same node: its process is gone; see :mod:`tianshou_offline.data.atomic` for temporaries
of other nodes); an output its earlier attempt already published and verified is kept.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tianshou_offline.converters import rl_unplugged as rlu
from tianshou_offline.converters.result import ConversionResult
from tianshou_offline.data.atomic import remove_stale_temps, remove_temp, temp_path
from tianshou_offline.data.writer import Compression
from tianshou_offline.errors import (
    ClusterError,
    OutputExistsError,
    SourceNotFoundError,
    TianshouOfflineError,
)
from tianshou_offline.progress import progress as progress_bar
from tianshou_offline.scale._ray import (
    as_completed,
    error_message,
    node_name,
    ray_session,
)

log = logging.getLogger(__name__)

ShardHook = Callable[[Path, Path], None]
"""Called in the worker with ``(source, output)`` before a shard is converted (on every
attempt): a place for logging or, in tests, for fault injection."""


@dataclass(frozen=True)
class ShardFailure:
    """A shard that could not be converted (after Ray's retries)."""

    source: Path
    output: Path
    error: str
    """The error's type and message (the typed error raised in the task, or Ray's)."""


@dataclass(frozen=True)
class DistributedConversionResult(ConversionResult):
    """A :class:`ConversionResult` of the shards that were converted or skipped (``parts``,
    in the plan's order), plus the shards that failed."""

    failures: tuple[ShardFailure, ...] = ()


class TransientShardError(OSError):
    """An I/O error inside a task that is not one of the package's typed errors (a network
    file system hiccup): Ray retries the task."""


def check_output_dir(directory: Path) -> None:
    """Make ``directory`` and write (then remove) a probe file in it, on this node.

    :raises ClusterError: this node cannot write there (naming the node and the directory).
    """
    probe = temp_path(directory / ".write-probe", "probe")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
    except OSError as e:
        raise ClusterError(
            f"{directory}: node {node_name()} cannot write the output directory ({e}); "
            "expected a directory every Ray node can write at the same path (a shared file "
            "system)"
        ) from e
    finally:
        if probe.exists():
            remove_temp(probe)


def convert_shard_task(
    job: rlu.ShardJob, options: dict[str, Any], before_shard: ShardHook | None = None
) -> rlu.ShardResult:
    """What one Ray task runs: convert one shard (see the module doc); also callable
    in-process.

    :param options: ``workers``, ``overwrite``, ``resume``, ``download``, ``url_prefix``,
        ``compression``, ``contiguous``, ``num_actions``, ``decoder`` as for
        :func:`~tianshou_offline.converters.rl_unplugged.convert_rl_unplugged_atari`.
    """
    src, out, game, job_run, job_sid = job
    try:
        check_output_dir(out.parent)
        remove_stale_temps(out)
        if before_shard is not None:
            before_shard(src, out)
        if not options["overwrite"] and out.exists():
            # the driver saw no output (or resume found it unverified): a verified one now is
            # an earlier attempt's; anything else is another writer's, and kept
            done = rlu.resumed_result(src, out)
            if done is not None:
                return done
            if not options["resume"]:
                raise OutputExistsError(f"{out}: output appeared during the job; it is kept")
        if not src.exists():
            if options["download"] and job_run is not None and job_sid is not None:
                url = rlu.shard_url(game, job_run, job_sid, options["url_prefix"])
                rlu.download_file(url, src, progress=False)
            else:
                raise SourceNotFoundError(
                    f"{src}: no such file on node {node_name()}; expected the source files "
                    "at the same path on every Ray node (a shared file system), or --download"
                )
        return rlu.convert_shard(
            src,
            out,
            task=game,
            run_id=job_run,
            shard_id=job_sid,
            workers=options["workers"],
            overwrite=True,  # checked above: nothing is replaced that the job may not replace
            compression=options["compression"],
            contiguous=options["contiguous"],
            num_actions=options["num_actions"],
            decoder=options["decoder"],
            progress=False,
        )
    except OSError as e:
        if isinstance(e, TianshouOfflineError):
            raise
        raise TransientShardError(f"{src} on node {node_name()}: {e}") from e


def convert_rl_unplugged_atari_ray(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] = (),
    output: str | os.PathLike[str] = rlu.DEFAULT_OUTPUT_DIR,
    *,
    task: str | None = None,
    run_id: int = 1,
    shard_ids: Sequence[int] = (),
    cache_dir: str | os.PathLike[str] = rlu.DEFAULT_CACHE_DIR,
    total_num_shards: int = rlu.TOTAL_NUM_SHARDS,
    address: str | None = None,
    num_cpus: float = 1.0,
    max_retries: int = 3,
    resume: bool = False,
    overwrite: bool = False,
    download: bool = False,
    url_prefix: str = rlu.URL_PREFIX,
    compression: Compression = None,
    contiguous: bool = False,
    num_actions: int | None = None,
    decoder: str = "auto",
    progress: bool | None = None,
    on_result: Callable[[rlu.ShardResult], None] | None = None,
    before_shard: ShardHook | None = None,
) -> DistributedConversionResult:
    """Convert many RL Unplugged Atari shards as Ray tasks, one output file each:
    ``{output}/{task}/{shard}.hdf5`` (see the module doc).

    The arguments not listed are those of
    :func:`~tianshou_offline.converters.rl_unplugged.convert_rl_unplugged_atari`.

    :param address: the Ray cluster (None: a Ray instance this process already runs, else a
        new local one; see :func:`~tianshou_offline.scale._ray.ray_session`).
    :param num_cpus: CPUs each shard's task requests; its decoding processes are
        ``max(1, int(num_cpus))`` (1: decoded in the task's process).
    :param max_retries: how often Ray runs a shard again whose worker died or that failed
        with a transient I/O error.
    :param progress: a progress bar of shards on the driver (the package's policy).
    :param on_result: called on the driver for each shard as it finishes (or is skipped).
    :param before_shard: called in the worker before each attempt (:data:`ShardHook`).
    :returns: the shards converted or skipped (``parts``, in order) and those that failed
        (``failures``, with their errors).
    :raises OutputExistsError: as the local conversion, before any task is submitted.
    :raises SourceNotFoundError: as the local conversion, before any task is submitted.
    :raises ClusterError: the Ray cluster cannot be reached.
    """
    start = time.perf_counter()
    paths, task, jobs = rlu.plan_conversion(
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
    options: dict[str, Any] = {
        "workers": max(1, int(num_cpus)),
        "overwrite": overwrite,
        "resume": resume,
        "download": download,
        "url_prefix": url_prefix,
        "compression": compression,
        "contiguous": contiguous,
        "num_actions": num_actions,
        "decoder": decoder,
    }
    results: dict[int, rlu.ShardResult] = {}
    failures: dict[int, ShardFailure] = {}
    todo: list[int] = []
    for i, (src, out, *_) in enumerate(jobs):
        done = rlu.resumed_result(src, out) if resume and not overwrite else None
        if done is None:
            todo.append(i)
        else:
            results[i] = done
    bar = progress_bar(total=len(jobs), desc="convert shards on Ray", unit="shard",
                       enabled=progress)  # fmt: skip
    try:
        for i in sorted(results):
            bar.update(1)
            if on_result is not None:
                on_result(results[i])
        if todo:
            with ray_session(address) as ray:
                _run_tasks(ray, jobs, todo, options, num_cpus, max_retries, before_shard,
                           results, failures, bar, on_result)  # fmt: skip
    finally:
        bar.close()
    return rlu.combined_result(
        DistributedConversionResult,
        paths,
        task,
        shard_ids,
        [results[i] for i in sorted(results)],
        start,
        failures=tuple(failures[i] for i in sorted(failures)),
    )


def _run_tasks(
    ray: Any,
    jobs: Sequence[rlu.ShardJob],
    todo: Sequence[int],
    options: dict[str, Any],
    num_cpus: float,
    max_retries: int,
    before_shard: ShardHook | None,
    results: dict[int, rlu.ShardResult],
    failures: dict[int, ShardFailure],
    bar: Any,
    on_result: Callable[[rlu.ShardResult], None] | None,
) -> None:
    """Submit the shards ``todo`` and collect them as they finish (into ``results`` or
    ``failures``); Ctrl-C cancels the tasks still running."""
    remote: Any = ray.remote(convert_shard_task).options(
        num_cpus=num_cpus,
        max_retries=max_retries,
        retry_exceptions=[TransientShardError],
        name="tianshou_offline.convert_shard",
    )
    refs = {remote.remote(jobs[i], options, before_shard): i for i in todo}
    with closing(as_completed(refs)) as done:
        for i, res, error in done:
            src, out, *_ = jobs[i]
            if error is not None:
                failures[i] = ShardFailure(src, out, error_message(error))
                log.warning("%s: failed: %s", src, failures[i].error)
            else:
                results[i] = res
                if on_result is not None:
                    on_result(res)
            bar.update(1)
