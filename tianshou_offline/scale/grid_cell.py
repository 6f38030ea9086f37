"""One cell of an experiment grid: where it writes, its stored result, and
:func:`run_cell`, which trains it with Tianshou's ``OfflineTrainer`` (resuming from its
checkpoint), evaluates it and records its ``result.json`` and ``policy.pt``. Re-exported by
:mod:`tianshou_offline.scale.grid`, which runs a grid's cells.
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tianshou_offline.data.atomic import output_lock, remove_stale_temps, write_errors
from tianshou_offline.errors import SourceNotFoundError
from tianshou_offline.scale._ray import no_tensorflow, node_name
from tianshou_offline.scale.cell_eval import (
    _evaluate,
    _save_policy,
    _score,
    best_episode_return,
    make_eval_env,
)
from tianshou_offline.scale.grid_spec import Cell, _write_atomic
from tianshou_offline.training import rng_state, set_rng_state

if TYPE_CHECKING:
    import gymnasium as gym
    from tianshou.algorithm.algorithm_base import OfflineAlgorithm

    from tianshou_offline.loggers import LoggerKind

__all__ = [
    "CHECKPOINT",
    "CHECKPOINT_FORMAT",
    "RESULT",
    "CellFailure",
    "CellLogging",
    "CheckpointHook",
    "cell_data",
    "cell_dir",
    "finished_and_todo",
    "finished_result",
    "record_result",
    "run_cell",
    "trained_batch_overrides",
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


@dataclass(frozen=True)
class CellFailure:
    cell: Cell
    error: str


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


def cell_data(cell: Cell) -> tuple[Path, str, gym.Space[Any], gym.Space[Any]]:
    """The cell's dataset file, the id of the environment it is evaluated in (the cell's, else
    the one stored with the data) and that environment's observation and action spaces.

    :raises SourceNotFoundError: no dataset file on this node, or no environment id.
    """
    import gymnasium as gym

    from tianshou_offline.data.format import read_metadata

    dataset = Path(cell.dataset)
    if not dataset.is_file():
        raise SourceNotFoundError(
            f"{dataset}: no such dataset file on node {node_name()}; on a cluster the data "
            "must be at the same path on every node"
        )
    env_id = cell.env_id or read_metadata(dataset).env_id
    if env_id is None:
        raise SourceNotFoundError(f"{dataset}: the file names no environment; set env_id")
    probe = gym.make(env_id)
    spaces = probe.observation_space, probe.action_space
    probe.close()
    return dataset, env_id, *spaces


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
    # one worker per cell (the other fails at once); a failed write of the cell's files
    # (checkpoints, TensorBoard events, policy, result) is an OutputWriteError naming it
    kept = "its finished checkpoints are kept (a rerun resumes from the last one)"
    with write_errors(directory, kept=kept):  # a read-only or vanished output directory
        directory.mkdir(parents=True, exist_ok=True)
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
    import torch
    from tianshou.data import Collector, CollectStats
    from tianshou.env import DummyVectorEnv
    from tianshou.trainer import OfflineTrainerParams

    from tianshou_offline.data.buffer import load_buffer
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

    dataset, env_id, obs_space, act_space = cell_data(cell)
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
    result = record_result(
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


def record_result(
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


def finished_and_todo(
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
