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

import io
import json
import logging
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tianshou_offline.data.atomic import (
    output_lock,
    remove_stale_temps,
    write_errors,
)
from tianshou_offline.errors import (
    DataValidationError,
    SourceNotFoundError,
    TianshouOfflineError,
)
from tianshou_offline.progress import progress as progress_bar
from tianshou_offline.scale._ray import (
    as_completed,
    error_message,
    no_tensorflow,
    node_name,
    ray_session,
)
from tianshou_offline.scale.cell_eval import (
    _evaluate,
    _save_policy,
    _score,
    best_episode_return,
    make_eval_env,
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
    _write_atomic,
    grid_from_mapping,
    load_grid,
)
from tianshou_offline.training import rng_state, set_rng_state

if TYPE_CHECKING:
    from tianshou.algorithm.algorithm_base import OfflineAlgorithm

    from tianshou_offline.loggers import LoggerKind

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
    "write_report",
]

log = logging.getLogger(__name__)

RESULT = "result.json"
CHECKPOINT = "last.pt"
CHECKPOINT_FORMAT = "tianshou_offline.scale.grid/1"

CheckpointHook = Callable[["Cell", int, Path], None]
"""Called in the worker with ``(cell, epoch, checkpoint path)`` after each checkpoint is
written: a place for logging or, in tests, for fault injection."""


@dataclass(frozen=True)
class CellLogging:
    """Where a cell's training statistics go (not part of the cell's key: logging does not
    change its results)."""

    kind: LoggerKind = "tensorboard"
    """``tensorboard`` (event files in the cell's directory), ``wandb`` (a W&B run per cell:
    named after the cell's key, grouped by its :attr:`Cell.group`, the cell's spec as its
    config) or ``none``."""
    wandb_project: str = "tianshou-offline-grid"
    """The W&B project (``wandb``)."""
    wandb_entity: str | None = None
    """The W&B team or user (default: the logged-in user's)."""



# --------------------------------------------------------------------------- one cell


def cell_dir(cell: Cell, output: str | os.PathLike[str]) -> Path:
    """Where ``cell`` writes: ``{output}/cells/{cell.key}``."""
    return Path(output) / "cells" / cell.key


def finished_result(cell: Cell, output: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The result of a finished cell (its ``result.json``), else None."""
    path = cell_dir(cell, output) / RESULT
    if not path.is_file():
        return None
    try:
        result: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        log.warning("%s: unreadable (%s); the cell runs again", path, e)
        return None
    return result if result.get("spec") == cell.spec() else None


def trained_batch_overrides(cell: Cell, action_space: Any) -> dict[str, Any]:
    """The cell's overrides, with ``batch_size`` set to the budget's where the algorithm's
    config has one (LB-SAC's learning-rate rule reads it): the batch the cell trains at, not
    the preset's (1024 in ``small``), unless the grid file overrides it."""
    from tianshou_offline.algorithms.registry import config_class  # torch: only when a cell runs

    overrides = dict(cell.overrides)
    names = {f.name for f in fields(config_class(cell.algorithm, action_space))}
    if "batch_size" in names and "batch_size" not in overrides:
        overrides["batch_size"] = cell.budget.batch_size
    return overrides


def run_cell(
    cell: Cell,
    output: str | os.PathLike[str],
    *,
    on_checkpoint: CheckpointHook | None = None,
    log_to: CellLogging = CellLogging(),
) -> dict[str, Any]:
    """Train, evaluate and record one cell in this process (see the module doc); a finished
    cell returns its stored result (``skipped: True``).

    :returns: ``spec``, ``key``, ``group``, ``final_return_mean``/``_std``, ``returns``,
        ``normalized_score`` (None without reference scores), ``curve`` (``[gradient step,
        mean test return]`` per test), ``gradient_steps``, ``resumed_from_epoch`` (0: a fresh
        start), ``train_seconds``, ``eval_seconds``, ``node``, ``num_threads``, ``dir``.
    :raises SourceNotFoundError: no dataset file, or no environment to evaluate in.
    :raises DataValidationError: unknown algorithm or hyperparameter.
    :raises OutputBusyError: another worker runs this cell right now (two grids on one
        output): it will write the result.
    :raises OutputWriteError: a checkpoint or the result cannot be written.
    """
    done = finished_result(cell, output)
    if done is not None:
        return {**done, "skipped": True}
    directory = cell_dir(cell, output)
    directory.mkdir(parents=True, exist_ok=True)
    # one worker per cell (the other fails at once); a failed write of the cell's files
    # (checkpoints, TensorBoard events, policy, result) is an OutputWriteError naming it
    kept = "its finished checkpoints are kept (a rerun resumes from the last one)"
    from tianshou_offline.loggers import writer_thread_errors_not_printed

    with output_lock(directory), write_errors(directory, kept=kept):
        done = finished_result(cell, output)  # finished while this one waited to start
        if done is not None:
            return {**done, "skipped": True}
        with writer_thread_errors_not_printed():  # TensorBoard's: raised here, typed
            return _run_cell(cell, directory, on_checkpoint, log_to)


def _run_cell(
    cell: Cell, directory: Path, on_checkpoint: CheckpointHook | None, log_to: CellLogging
) -> dict[str, Any]:
    """:func:`run_cell` in the cell's ``directory``, holding its lock."""
    no_tensorflow()
    import gymnasium as gym
    import torch
    from tianshou.data import Collector, CollectStats
    from tianshou.env import DummyVectorEnv
    from tianshou.trainer import OfflineTrainerParams

    from tianshou_offline.data.buffer import load_buffer
    from tianshou_offline.data.format import read_metadata
    from tianshou_offline.loggers import log_summary
    from tianshou_offline.scale.algorithms import RETURN_CONDITIONED, build_algorithm

    _write_atomic(directory / "cell.json", json.dumps(cell.spec(), indent=1).encode())
    ckpt_path = directory / CHECKPOINT
    remove_stale_temps(ckpt_path)
    threads = max(1, int(cell.num_cpus))
    torch.set_num_threads(threads)
    device = "cuda" if cell.num_gpus > 0 else "cpu"
    random.seed(cell.seed)
    np.random.seed(cell.seed)
    torch.manual_seed(cell.seed)

    dataset = Path(cell.dataset)
    if not dataset.is_file():
        raise SourceNotFoundError(
            f"{dataset}: no such dataset file on node {node_name()}; on a cluster the data "
            "must be at the same path on every node"
        )
    meta = read_metadata(dataset)
    env_id = cell.env_id or meta.env_id
    if env_id is None:
        raise SourceNotFoundError(f"{dataset}: the file names no environment; set env_id")
    probe = gym.make(env_id)
    obs_space, act_space = probe.observation_space, probe.action_space
    probe.close()
    overrides = trained_batch_overrides(cell, act_space)
    conditioned = cell.algorithm in RETURN_CONDITIONED
    if conditioned and "target_return" not in overrides:
        overrides["target_return"] = best_episode_return(dataset)
    algorithm = build_algorithm(cell.algorithm, obs_space, act_space, overrides)
    algorithm.to(device)
    untyped: Any = algorithm  # Tianshou's Algorithm.state_dict (with optimizers) is untyped
    buffer = load_buffer(dataset)

    state: dict[str, Any] | None = None
    if ckpt_path.is_file():
        try:
            state = torch.load(ckpt_path, map_location=device, weights_only=True)
        except Exception as e:  # truncated or foreign file: start afresh
            log.warning("%s: unreadable checkpoint (%s); the cell starts afresh", ckpt_path, e)
            state = None
        if state is not None and state.get("format") != CHECKPOINT_FORMAT:
            state = None
    curve: list[list[float]] = []
    counters = (0, 0, 0)
    if state is not None:
        untyped.load_state_dict(state["algorithm"])
        set_rng_state(state["rng"])
        curve = [list(p) for p in state["curve"]]
        counters = (int(state["epoch"]), int(state["env_step"]), int(state["gradient_step"]))
        log.info("%s: resumed from epoch %d", cell.key, counters[0])

    budget = cell.budget

    def save_checkpoint(epoch: int, env_step: int, gradient_step: int) -> str:
        payload = {
            "format": CHECKPOINT_FORMAT,
            "algorithm": untyped.state_dict(),
            "rng": rng_state(),
            "curve": curve,
            "epoch": epoch,
            "env_step": env_step,
            "gradient_step": gradient_step,
        }
        buf = io.BytesIO()
        torch.save(payload, buf)
        _write_atomic(ckpt_path, buf.getvalue())
        if on_checkpoint is not None:
            on_checkpoint(cell, epoch, ckpt_path)
        return str(ckpt_path)

    logger = _cell_logger(cell, directory, log_to, counters, curve, save_checkpoint)
    test_envs = DummyVectorEnv([lambda: make_eval_env(env_id)] * min(budget.test_episodes, 5))
    test_envs.seed(cell.seed)
    test_collector = Collector[CollectStats](algorithm, test_envs)
    t0 = time.perf_counter()
    try:
        algorithm.run_training(
            OfflineTrainerParams(
                buffer=buffer,
                test_collector=test_collector,
                max_epochs=budget.epochs,
                epoch_num_steps=budget.steps_per_epoch,
                test_step_num_episodes=budget.test_episodes,
                batch_size=budget.batch_size,
                resume_from_log=state is not None,
                logger=logger,
                show_progress=False,
                verbose=False,
            )
        )
    except BaseException:
        logger.finalize()
        raise
    finally:
        test_envs.close()
    train_seconds = time.perf_counter() - t0
    result = _record_result(
        algorithm, cell, directory, env_id=env_id, dataset=dataset, curve=curve,
        target_return=overrides.get("target_return") if conditioned else None,
        resumed_from_epoch=counters[0], train_seconds=train_seconds, threads=threads,
        device=device,
    )  # fmt: skip
    log_summary(logger.inner, {"eval/return_mean": result["final_return_mean"],
                               "eval/return_std": result["final_return_std"],
                               "eval/normalized_score": result["normalized_score"],
                               "eval/episodes": cell.budget.eval_episodes})  # fmt: skip
    return {**result, "skipped": False}


def _record_result(
    algorithm: OfflineAlgorithm[Any],
    cell: Cell,
    directory: Path,
    *,
    env_id: str,
    dataset: Path,
    curve: list[list[float]],
    target_return: float | None,
    resumed_from_epoch: int,
    train_seconds: float,
    threads: int,
    device: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate a cell's trained policy, save it (``policy.pt``) and write its
    ``result.json`` (the fields :func:`run_cell` returns, and ``extra``)."""
    budget = cell.budget
    t0 = time.perf_counter()
    returns = _evaluate(algorithm, env_id, budget.eval_episodes, 10_000 + cell.seed)
    eval_seconds = time.perf_counter() - t0
    mean = float(np.mean(returns))
    _save_policy(algorithm, directory / "policy.pt")
    result: dict[str, Any] = {
        "spec": cell.spec(),
        "key": cell.key,
        "group": cell.group,
        "env_id": env_id,
        "final_return_mean": mean,
        "final_return_std": float(np.std(returns)),
        "returns": [float(r) for r in returns],
        "normalized_score": _score(dataset, mean),
        "curve": curve,
        "target_return": target_return,
        "gradient_steps": budget.epochs * budget.steps_per_epoch,
        "resumed_from_epoch": resumed_from_epoch,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "node": node_name(),
        "pid": os.getpid(),
        "num_threads": threads,
        "device": device,
        "dir": str(directory),
        **(extra or {}),
    }
    _write_atomic(directory / RESULT, json.dumps(result, indent=1).encode())
    return result


def _cell_logger(
    cell: Cell,
    directory: Path,
    log_to: CellLogging,
    counters: tuple[int, int, int],
    curve: list[list[float]],
    save_checkpoint: Callable[[int, int, int], str],
) -> Any:
    """The cell's logger (``log_to``, writing into ``directory``) wrapped so that it restores
    the checkpoint's counters (not the logger's records: a worker killed between the
    checkpoint and a write would disagree), records each test's mean return in ``curve``
    and writes the checkpoint after every epoch, whatever the logger."""
    from tianshou_offline.loggers import DelegatingLogger, WandbSettings, make_logger

    wandb = None
    if log_to.kind == "wandb":
        wandb = WandbSettings(project=log_to.wandb_project, entity=log_to.wandb_entity,
                              name=cell.key, group=cell.group, config=cell.spec())  # fmt: skip
    # the training statistics every 1000 gradient steps, and at least once an epoch
    interval = min(1000, cell.budget.steps_per_epoch)
    inner = make_logger(log_to.kind, directory, update_interval=interval, wandb=wandb,
                        text={"cell": json.dumps(cell.spec())})  # fmt: skip
    batch_size, last_saved = cell.budget.batch_size, [counters[0]]

    class CellLogger(DelegatingLogger):
        def restore_data(self) -> tuple[int, int, int]:
            return self.restore_counters(counters)

        def log_test_data(self, log_data: dict[str, Any], step: int) -> None:
            stat = log_data.get("returns_stat") or {}
            if "mean" in stat:
                curve.append([float(step // batch_size), float(stat["mean"])])
            self.inner.log_test_data(log_data, step)

        def save_data(
            self,
            epoch: int,
            env_step: int,
            update_step: int,
            save_checkpoint_fn: Callable[[int, int, int], str] | None = None,
        ) -> None:
            if epoch > last_saved[0]:
                last_saved[0] = epoch
                save_checkpoint(epoch, env_step, update_step)

    return CellLogger(inner)


# --------------------------------------------------------------------------- the grid


@dataclass(frozen=True)
class CellFailure:
    cell: Cell
    error: str


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
Ray's start-up (a local instance: 10–30 s on a busy 2-core machine) and a worker process per
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
    out.mkdir(parents=True, exist_ok=True)
    keys = [c.key for c in cells]
    if len(set(keys)) != len(keys):
        raise DataValidationError("run_grid: the same cell is listed twice")
    results, todo = _finished_and_todo(cells, out)
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


# --------------------------------------------------------------------------- seed groups
#
# A grid file's ``seed_batch: true``: the cells of a group differ only in their seed; their
# unfinished ones train in one process (one task) as one seed batch
# (:func:`~tianshou_offline.algorithms.seeds.make_seed_batch`: seed k built and sampled as
# the cell of that seed would be, see :mod:`tianshou_offline.algorithms.seeds.core`), then
# every seed is evaluated, saved and recorded into its own cell directory as :func:`run_cell`
# does (``result.json`` with the same fields, ``policy.pt``), so the table, a rerun's skipping
# and ``ope`` work unchanged. Each epoch tests every seed's policy (the learning curves).
# Differences from single cells: no TensorBoard events and no per-epoch checkpoints (an
# interrupted group restarts from scratch), and only algorithms with a seed-batched form.


def _finished_and_todo(
    cells: Sequence[Cell], output: str | os.PathLike[str]
) -> tuple[dict[int, dict[str, Any]], list[int]]:
    """The stored results of the finished ``cells`` by index (``skipped: True``) and the
    indices of the others."""
    results: dict[int, dict[str, Any]] = {}
    todo: list[int] = []
    for i, cell in enumerate(cells):
        done = finished_result(cell, output)
        if done is None:
            todo.append(i)
        else:
            results[i] = {**done, "skipped": True}
    return results, todo


def run_seed_groups(
    cells: Sequence[Cell],
    todo: Sequence[int],
    output: str,
    results: dict[int, dict[str, Any]],
    failures: dict[int, CellFailure],
    *,
    address: str | None,
    num_cpus: int | None,
    max_retries: int,
    ray_used: bool,
) -> float:
    """Train the cells ``todo`` of ``cells`` group by group (:func:`run_seed_group`; Ray
    tasks when ``ray_used``), filling ``results`` and ``failures`` by index.

    :returns: the seconds Ray took to start (0 without Ray).
    """
    groups = [[todo[j] for j in g] for g in seed_groups([cells[i] for i in todo])]

    def record(group: list[int], out: list[dict[str, Any]] | None, error: str | None) -> None:
        for n, i in enumerate(group):
            if out is not None:
                results[i] = out[n]
            else:
                failures[i] = CellFailure(cells[i], str(error))
                log.warning("cell %s failed: %s", cells[i].key, error)

    if not ray_used:
        for group in groups:
            try:
                record(group, run_seed_group([cells[i] for i in group], output), None)
            except TianshouOfflineError as e:
                record(group, None, f"{type(e).__name__}: {e}")
        return 0.0
    t0 = time.perf_counter()
    with ray_session(address, num_cpus=num_cpus) as ray:
        ray_start = time.perf_counter() - t0
        refs: dict[Any, int] = {}
        for g, group in enumerate(groups):
            first = cells[group[0]]
            remote: Any = ray.remote(run_seed_group_task).options(
                num_cpus=first.num_cpus,
                num_gpus=first.num_gpus,
                max_retries=max_retries,
                name=f"seed group {first.group}",
            )
            refs[remote.remote([cells[i] for i in group], output)] = g
        with closing(as_completed(refs)) as finished:
            for g, out, error in finished:
                record(groups[g], out, None if error is None else error_message(error))
    return ray_start


def seed_groups(cells: Sequence[Cell]) -> list[list[int]]:
    """Indices of ``cells`` grouped by everything but the seed (and resources), in order of
    first appearance."""
    groups: dict[str, list[int]] = {}
    for i, cell in enumerate(cells):
        spec = {**cell.spec(), "seed": None}
        groups.setdefault(json.dumps(spec, sort_keys=True), []).append(i)
    return list(groups.values())


def run_seed_group(cells: Sequence[Cell], output: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Train the cells of one group (see the module doc) in this process; finished cells
    return their stored results (``skipped: True``).

    :returns: one result per cell, in order (the fields of ``run_cell``'s, and
        ``seed_batch``: how many seeds trained together).
    :raises DataValidationError: the cells are not one group, or the algorithm has no
        seed-batched form.
    :raises SourceNotFoundError: no dataset file, or no environment to evaluate in.
    """
    if not cells:
        return []
    first = cells[0]
    key = {**first.spec(), "seed": None}
    for c in cells[1:]:
        if {**c.spec(), "seed": None} != key:
            raise DataValidationError(
                f"seed group: cell {c.key} differs from {first.key} in more than its seed"
            )
    out, todo = _finished_and_todo(cells, output)
    if todo:
        dirs = [cell_dir(cells[i], output) for i in todo]
        kept = "nothing of an unfinished group is kept (a rerun starts it afresh)"
        with ExitStack() as stack:
            for d in dirs:
                d.mkdir(parents=True, exist_ok=True)
                stack.enter_context(output_lock(d))
            stack.enter_context(write_errors(Path(output), kept=kept))
            trained = _train_group([cells[i] for i in todo], dirs)
        for i, result in zip(todo, trained, strict=True):
            out[i] = {**result, "skipped": False}
    return [out[i] for i in range(len(cells))]


def run_seed_group_task(cells: Sequence[Cell], output: str) -> list[dict[str, Any]]:
    """What a grid's Ray task runs for a seed group (:func:`run_seed_group`)."""
    no_tensorflow()
    return run_seed_group(cells, output)


def _train_group(cells: Sequence[Cell], dirs: Sequence[Path]) -> list[dict[str, Any]]:
    no_tensorflow()
    import gymnasium as gym
    import torch
    from tianshou.trainer import OfflineTrainerParams
    from tianshou.utils import LazyLogger

    from tianshou_offline.data.buffer import load_buffer
    from tianshou_offline.data.format import read_metadata
    from tianshou_offline.scale.algorithms import build_seed_batch

    first = cells[0]
    for cell, d in zip(cells, dirs, strict=True):
        _write_atomic(d / "cell.json", json.dumps(cell.spec(), indent=1).encode())
    threads = max(1, int(first.num_cpus))
    torch.set_num_threads(threads)
    device = "cuda" if first.num_gpus > 0 else "cpu"
    random.seed(first.seed)
    np.random.seed(first.seed)
    dataset = Path(first.dataset)
    if not dataset.is_file():
        raise SourceNotFoundError(f"{dataset}: no such dataset file on node {node_name()}")
    meta = read_metadata(dataset)
    env_id = first.env_id or meta.env_id
    if env_id is None:
        raise SourceNotFoundError(f"{dataset}: the file names no environment; set env_id")
    probe = gym.make(env_id)
    obs_space, act_space = probe.observation_space, probe.action_space
    probe.close()
    seeds = [c.seed for c in cells]
    batch = build_seed_batch(first.algorithm, obs_space, act_space, first.overrides, seeds)
    batch.to(device)
    buffer = load_buffer(dataset)
    budget = first.budget
    curves: list[list[list[float]]] = [[] for _ in cells]

    def test_seeds(gradient_step: int) -> None:
        for k, member in enumerate(batch.members):
            returns = _evaluate(member, env_id, budget.test_episodes, cells[k].seed)
            curves[k].append([float(gradient_step), float(np.mean(returns))])

    class EpochTests(LazyLogger):
        """Tests every seed's policy after each epoch (the trainer's checkpoint hook)."""

        def save_data(self, epoch: int, env_step: int, gradient_step: int,
                      save_checkpoint_fn: Any = None) -> None:  # fmt: skip
            test_seeds(gradient_step)

    test_seeds(0)
    t0 = time.perf_counter()
    batch.run_training(
        OfflineTrainerParams(
            buffer=buffer,
            test_collector=None,
            max_epochs=budget.epochs,
            epoch_num_steps=budget.steps_per_epoch,
            batch_size=budget.batch_size,
            save_checkpoint_fn=lambda epoch, env_step, gradient_step: "",
            logger=EpochTests(),
            show_progress=False,
            verbose=False,
        )
    )
    train_seconds = time.perf_counter() - t0
    results = []
    for k, (cell, d) in enumerate(zip(cells, dirs, strict=True)):
        result = _record_result(
            batch.members[k], cell, d, env_id=env_id, dataset=dataset, curve=curves[k],
            target_return=None, resumed_from_epoch=0, train_seconds=train_seconds,
            threads=threads, device=device, extra={"seed_batch": len(cells)},
        )  # fmt: skip
        results.append(result)
    return results
