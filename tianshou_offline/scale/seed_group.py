"""Seed groups of an experiment grid (a grid file's ``seed_batch: true``).

The cells of a group differ only in their seed; their unfinished ones train in one process
(one task) as one seed batch (:func:`~tianshou_offline.algorithms.seeds.make_seed_batch`:
seed k built and sampled as the cell of that seed would be, see
:mod:`tianshou_offline.algorithms.seeds.core`), then every seed is evaluated, saved and
recorded into its own cell directory as :func:`~tianshou_offline.scale.grid_cell.run_cell`
does (``result.json`` with the same fields, ``policy.pt``), so the table, a rerun's skipping
and ``ope`` work unchanged. Each epoch tests every seed's policy (the learning curves).
Differences from single cells: no TensorBoard events and no per-epoch checkpoints (an
interrupted group restarts from scratch), and only algorithms with a seed-batched form.
Re-exported by :mod:`tianshou_offline.scale.grid`.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Sequence
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

import numpy as np

from tianshou_offline.data.atomic import output_lock, write_errors
from tianshou_offline.errors import (
    DataValidationError,
    TianshouOfflineError,
)
from tianshou_offline.scale._ray import (
    as_completed,
    error_message,
    no_tensorflow,
    ray_session,
)
from tianshou_offline.scale.cell_eval import _evaluate, best_episode_return
from tianshou_offline.scale.grid_cell import (
    CellFailure,
    cell_data,
    cell_dir,
    finished_and_todo,
    record_result,
    trained_batch_overrides,
)
from tianshou_offline.scale.grid_spec import Cell, _write_atomic

__all__ = ["run_seed_group", "run_seed_group_task", "run_seed_groups", "seed_groups"]

log = logging.getLogger(__name__)


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
    out, todo = finished_and_todo(cells, output)
    if todo:
        dirs = [cell_dir(cells[i], output) for i in todo]
        kept = "nothing of an unfinished group is kept (a rerun starts it afresh)"
        with ExitStack() as stack:
            for d in dirs:
                with write_errors(d, kept=kept):  # a read-only or vanished output directory
                    d.mkdir(parents=True, exist_ok=True)
                stack.enter_context(output_lock(d))
            stack.enter_context(write_errors(Path(output), kept=kept))
            trained = _train_group([cells[i] for i in todo], dirs)
        for i, result in zip(todo, trained, strict=True):
            out[i] = {**result, "skipped": False}
    return [out[i] for i in range(len(cells))]


def run_seed_group_task(cells: Sequence[Cell], output: str) -> list[dict[str, Any]]:
    """What a grid's Ray task runs for a seed group (:func:`run_seed_group`), in a worker
    process it owns: freed memory is kept there (a batch's large tensors are reused, not
    page-faulted in afresh at every step; see :mod:`tianshou_offline.algorithms.allocator`)."""
    no_tensorflow()
    from tianshou_offline.algorithms.allocator import retain_freed_memory

    retain_freed_memory()
    return run_seed_group(cells, output)


def _train_group(cells: Sequence[Cell], dirs: Sequence[Path]) -> list[dict[str, Any]]:
    no_tensorflow()
    import torch
    from tianshou.trainer import OfflineTrainerParams
    from tianshou.utils import LazyLogger

    from tianshou_offline.data.buffer import load_buffer
    from tianshou_offline.scale.algorithms import RETURN_CONDITIONED, build_seed_batch

    first = cells[0]
    for cell, d in zip(cells, dirs, strict=True):
        _write_atomic(d / "cell.json", json.dumps(cell.spec(), indent=1).encode())
    threads = max(1, int(first.num_cpus))
    torch.set_num_threads(threads)
    device = "cuda" if first.num_gpus > 0 else "cpu"
    random.seed(first.seed)
    np.random.seed(first.seed)
    dataset, env_id, obs_space, act_space = cell_data(first)
    seeds = [c.seed for c in cells]
    overrides = trained_batch_overrides(first, act_space)  # LB-SAC's lr: the budget's batch
    conditioned = first.algorithm in RETURN_CONDITIONED  # as run_cell: the data's best return
    if conditioned and "target_return" not in overrides:
        overrides["target_return"] = best_episode_return(dataset)
    batch = build_seed_batch(first.algorithm, obs_space, act_space, overrides, seeds)
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
        result = record_result(
            batch.members[k], cell, d, env_id=env_id, dataset=dataset, curve=curves[k],
            target_return=overrides.get("target_return") if conditioned else None,
            resumed_from_epoch=0, train_seconds=train_seconds,
            threads=threads, device=device, extra={"seed_batch": len(cells)},
        )  # fmt: skip
        results.append(result)
    return results
