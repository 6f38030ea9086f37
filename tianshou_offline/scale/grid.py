"""Experiment grids on Ray: every (algorithm, dataset, seed, overrides) cell a task.

A :class:`Cell` is an algorithm name (:mod:`tianshou_offline.scale.algorithms`), a dataset
file, a seed, hyperparameter overrides and a :class:`Budget`; :func:`run_cell` turns it into
a result dict (in any process: a Ray task, a subprocess, this one). A cell:

- sets ``torch.set_num_threads(num_cpus)`` and seeds torch, numpy and ``random`` with its
  seed before it builds its networks: a cell is deterministic for its seed (on one kind of
  machine and library build);
- trains with Tianshou's ``OfflineTrainer`` (``epochs`` × ``steps_per_epoch`` gradient steps
  of ``batch_size``), testing ``test_episodes`` episodes in the environment after every epoch
  (the learning curve), logging to TensorBoard in its directory
  ``{output}/cells/{key}/`` and checkpointing there after every epoch (``last.pt``: the
  algorithm's state with its optimizers, the RNG states, the counters and the curve so far);
- evaluates the final policy on ``eval_episodes`` fresh episodes (seeded ``10_000 + seed``)
  and reports the mean return and, where the file stores reference scores (or names a D4RL
  dataset), the normalised score on D4RL's 0–100 scale;
- writes ``result.json`` (atomically) when done: a finished cell is skipped by a rerun. A
  cell that stopped mid-run (its worker killed, the driver interrupted) restarts from its
  last checkpoint: the same weights, optimizer and RNG states, so it trains on as the
  uninterrupted run would (its final weights and evaluation are the same; only the test
  returns logged during training after the restart differ, as the test environments are
  reset).

:func:`run_grid` runs the cells as Ray tasks (each with its own ``num_cpus``/``num_gpus``;
a small local grid runs in the calling process instead, :func:`choose_ray`;
Ray retries a task whose worker died, and that retry resumes from the checkpoint), and
:func:`aggregate` / :func:`write_report` make the table: mean ± standard error over seeds per
cell group (everything but the seed) as Markdown, CSV and JSON, and ``curves.png``, the
learning curves per group.

A grid file (YAML, TOML or JSON; :func:`load_grid`)::

    output: runs/pendulum-grid         # shared by every node on a cluster
    datasets: [data/pendulum-medium.hdf5]
    algorithms:
      il: {}
      cql: {cql_weight: [1.0, 5.0]}    # a list sweeps: one cell group per value
    seeds: 5                           # 0..4, or a list
    budget: {epochs: 10, steps_per_epoch: 1000, batch_size: 256, test_episodes: 5,
             eval_episodes: 10}
    resources: {num_cpus: 1, num_gpus: 0}
    ope: {estimators: [fqe, wdr], steps: 5000, gamma: 0.99}   # optional, see below
    seed_batch: false                  # true: a group's seeds train as one seed batch

With ``seed_batch: true`` each cell group's seeds train together in one process (one task) as
a seed batch (:mod:`tianshou_offline.scale.seed_group`; the algorithms with a seed-batched
form only), each seed recorded in its own cell directory as a single cell would be.

With ``ope`` the command (``tianshou-offline grid``) ranks every dataset's cells by
off-policy estimates of their final policies (``policy.pt``) computed from the dataset
alone, next to their true (evaluated) returns: which cell each estimator would have chosen
and what that choice costs (``ope.md``, ``ope.json``). Its keys (all optional):
``estimators`` (of ``fqe, is, wis, dr, wdr``), ``steps`` (FQE), ``gamma``, ``hidden_sizes``,
``lr``, ``tau``, ``batch_size``, ``behavior`` (``fit``/``stored``), ``behavior_steps``,
``target_std``, ``max_weight``, ``resamples``, ``seed``
(:class:`~tianshou_offline.evaluation.ope.OPESettings`).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tianshou_offline.data.atomic import write_errors
from tianshou_offline.errors import DataValidationError, TianshouOfflineError
from tianshou_offline.progress import progress as progress_bar
from tianshou_offline.scale._ray import (
    as_completed,
    error_message,
    no_tensorflow,
    ray_session,
)
from tianshou_offline.scale.cell_eval import best_episode_return, make_eval_env
from tianshou_offline.scale.grid_cell import (
    CHECKPOINT,
    CHECKPOINT_FORMAT,
    RESULT,
    CellFailure,
    CellLogging,
    CheckpointHook,
    cell_dir,
    finished_and_todo,
    finished_result,
    run_cell,
    trained_batch_overrides,
)
from tianshou_offline.scale.grid_report import (
    aggregate,
    format_markdown,
    plot_curves,
    write_report,
)
from tianshou_offline.scale.grid_spec import (
    OPE_KEYS,
    Budget,
    Cell,
    Grid,
    grid_from_mapping,
    load_grid,
)
from tianshou_offline.scale.seed_group import (
    run_seed_group,
    run_seed_group_task,
    run_seed_groups,
    seed_groups,
)

__all__ = [
    "CHECKPOINT",
    "CHECKPOINT_FORMAT",
    "OPE_KEYS",
    "RAY_MIN_CELLS",
    "RESULT",
    "Budget",
    "Cell",
    "CellFailure",
    "CellLogging",
    "CheckpointHook",
    "Grid",
    "GridResult",
    "aggregate",
    "best_episode_return",
    "cell_dir",
    "choose_ray",
    "finished_result",
    "format_markdown",
    "grid_from_mapping",
    "load_grid",
    "make_eval_env",
    "plot_curves",
    "run_cell",
    "run_cell_task",
    "run_grid",
    "run_seed_group",
    "run_seed_group_task",
    "run_seed_groups",
    "seed_groups",
    "trained_batch_overrides",
    "write_report",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the grid


@dataclass
class GridResult:
    results: list[dict[str, Any]]
    """Per finished cell (run now or before: ``skipped``), in the grid's order."""
    failures: list[CellFailure]
    files: dict[str, Path] = field(default_factory=dict)
    """The report: ``markdown``, ``csv``, ``json``, ``plot``."""
    used_ray: bool = False
    """Whether the cells ran as Ray tasks (else in this process, one after another)."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Where the time went: ``wall`` (the whole call), ``ray_start`` (starting or joining
    Ray; 0 without it), ``training`` (the cells' training time, summed over cells run now)."""


RAY_MIN_CELLS = 4
"""A local grid (no ``address``) runs on Ray only from this many cells to run and with room
for two at once; fewer run in this process, one after another (``use_ray`` overrides it).
Ray's start-up (a local instance: tens of seconds on a busy machine) and a worker process per
cell that imports torch and Tianshou again cost more than a few small cells gain from
running side by side."""


def choose_ray(
    todo: Sequence[Cell], address: str | None, num_cpus: int | None, use_ray: bool | None
) -> bool:
    """Whether :func:`run_grid` runs ``todo`` on Ray: ``use_ray`` when given; with an
    ``address``, or a Ray this process already started (``ray.init`` by a test or a
    notebook), always; else from :data:`RAY_MIN_CELLS` cells and room for two at once."""
    if use_ray is not None:
        return use_ray
    if address:
        return True
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():  # started by the caller: nothing to pay
        return True
    cpus = num_cpus or os.cpu_count() or 1
    per_cell = max((c.num_cpus for c in todo), default=1.0)
    return len(todo) >= RAY_MIN_CELLS and cpus >= 2 * per_cell


def run_cell_task(
    cell: Cell,
    output: str,
    on_checkpoint: CheckpointHook | None = None,
    log_to: CellLogging = CellLogging(),
) -> dict[str, Any]:
    """What a grid's Ray task runs (:func:`run_cell`)."""
    no_tensorflow()
    return run_cell(cell, output, on_checkpoint=on_checkpoint, log_to=log_to)


def run_grid(
    cells: Sequence[Cell] | Grid,
    output: str | os.PathLike[str] | None = None,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    max_retries: int = 3,
    progress: bool | None = None,
    on_cell: Callable[[dict[str, Any]], None] | None = None,
    on_checkpoint: CheckpointHook | None = None,
    use_ray: bool | None = None,
    seed_batch: bool | None = None,
    log_to: CellLogging = CellLogging(),
) -> GridResult:
    """Run every cell not finished yet — as Ray tasks, or for a small local grid in this
    process one after another (:func:`choose_ray`) — then write the report
    (:func:`write_report`) into ``output``.

    :param cells: the cells, or a :class:`Grid` (whose ``output`` is the default).
    :param address: the Ray cluster (None: a Ray instance this process runs, else a new
        local one of ``num_cpus`` CPUs).
    :param max_retries: how often Ray reruns a cell whose worker died (it resumes from its
        checkpoint).
    :param on_cell: called on the driver with each cell's result as it finishes (finished
        cells first, marked ``skipped``).
    :param on_checkpoint: called in the worker after each checkpoint (:data:`CheckpointHook`).
    :param log_to: where each cell's statistics go (TensorBoard, W&B, none).
    :param use_ray: True: Ray always; False: never (this process; ``address`` must be None);
        None: :func:`choose_ray`.
    :param seed_batch: train each group's unfinished seeds as one seed batch (one task;
        :mod:`~tianshou_offline.scale.seed_group`); None: the :class:`Grid`'s setting.
    :returns: the results, the cells that failed with their errors, the report's files,
        whether Ray ran them and where the time went.
    """
    start = time.perf_counter()
    if isinstance(cells, Grid):
        output = cells.output if output is None else output
        seed_batch = cells.seed_batch if seed_batch is None else seed_batch
        cells = cells.cells
    if output is None:
        raise DataValidationError("run_grid: no output directory")
    out = Path(output)
    with write_errors(out, kept="nothing was written"):  # a read-only or vanished directory
        out.mkdir(parents=True, exist_ok=True)
    keys = [c.key for c in cells]
    if len(set(keys)) != len(keys):
        raise DataValidationError("run_grid: the same cell is listed twice")
    results, todo = finished_and_todo(cells, out)
    failures: dict[int, CellFailure] = {}
    if use_ray is False and address:
        raise DataValidationError(f"run_grid: address={address!r} with use_ray=False")
    ray_used = bool(todo) and choose_ray([cells[i] for i in todo], address, num_cpus, use_ray)
    ray_start = 0.0
    todo_done = todo
    if seed_batch and todo:  # every group's seeds in one task; the loop below reports them
        ray_start = run_seed_groups(
            cells, todo, str(out), results, failures, address=address, num_cpus=num_cpus,
            max_retries=max_retries, ray_used=ray_used,
        )  # fmt: skip
        todo = []
    where = "on Ray" if ray_used else "in this process"
    with progress_bar(total=len(cells), desc=f"grid cells {where}", unit="cell",
                      enabled=progress) as bar:  # fmt: skip
        for i in sorted(results):
            bar.update(1)
            if on_cell is not None:
                on_cell(results[i])
        if todo and not ray_used:
            for i in todo:
                try:
                    results[i] = run_cell(
                        cells[i], str(out), on_checkpoint=on_checkpoint, log_to=log_to
                    )
                except TianshouOfflineError as e:
                    failures[i] = CellFailure(cells[i], f"{type(e).__name__}: {e}")
                    log.warning("cell %s failed: %s", cells[i].key, failures[i].error)
                else:
                    if on_cell is not None:
                        on_cell(results[i])
                bar.update(1)
        elif todo:
            t0 = time.perf_counter()
            with ray_session(address, num_cpus=num_cpus) as ray:
                ray_start = time.perf_counter() - t0
                refs: dict[Any, int] = {}
                for i in todo:
                    remote: Any = ray.remote(run_cell_task).options(
                        num_cpus=cells[i].num_cpus,
                        num_gpus=cells[i].num_gpus,
                        max_retries=max_retries,
                        name=f"cell {cells[i].key}",
                    )
                    refs[remote.remote(cells[i], str(out), on_checkpoint, log_to)] = i
                with closing(as_completed(refs)) as finished:
                    for i, result, error in finished:
                        if error is not None:
                            msg = error_message(error)
                            failures[i] = CellFailure(cells[i], msg)
                            log.warning("cell %s failed: %s", cells[i].key, msg)
                        else:
                            results[i] = result
                            if on_cell is not None:
                                on_cell(results[i])
                        bar.update(1)
    ordered = [results[i] for i in sorted(results)]
    files = write_report(ordered, out)
    training = sum(float(results[i]["train_seconds"]) for i in todo_done if i in results)
    seconds = {"wall": time.perf_counter() - start, "ray_start": ray_start, "training": training}
    return GridResult(
        ordered, [failures[i] for i in sorted(failures)], files, used_ray=ray_used, seconds=seconds
    )
