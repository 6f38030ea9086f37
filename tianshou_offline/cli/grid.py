"""``tianshou-offline grid SPEC``: an experiment grid (algorithms × datasets × seeds ×
overrides) as Ray tasks, resumable, with its results table (:mod:`tianshou_offline.scale.grid`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tianshou_offline.cli._run import Subparsers, check_output


def add_grid_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="SPEC", help="the grid file (.yaml, .toml or .json)")
    p.add_argument(
        "--address",
        default=None,
        help="the Ray cluster (auto, HOST:6379, ray://HOST:10001); default: a new local Ray "
        "instance on this machine",
    )
    p.add_argument(
        "--num-cpus",
        type=int,
        default=None,
        help="CPUs of the local Ray instance (default: all cores; ignored with --address)",
    )
    p.add_argument("--output", default=None, help="replace the grid file's output directory")
    p.add_argument(
        "--max-retries",
        type=int,
        default=3,
        metavar="N",
        help="how often a cell whose worker died is rerun from its checkpoint (default 3)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--logger",
        choices=["tensorboard", "wandb", "none"],
        default="tensorboard",
        help="where each cell's training statistics go: TensorBoard event files in its "
        "directory, a Weights & Biases run per cell (named after the cell, grouped by its "
        "setting across seeds, the cell's spec as its config; pip install "
        "'tianshou-offline[wandb]'; WANDB_MODE=offline writes the runs into the cells' "
        "directories), or nowhere (default: tensorboard); a seed-batched group (seed_batch in the grid file) "
        "logs no training statistics",
    )
    p.add_argument(
        "--wandb-project",
        default="tianshou-offline-grid",
        help="the W&B project (--logger wandb; default: tianshou-offline-grid)",
    )
    p.add_argument("--wandb-entity", default=None, help="the W&B team or user (--logger wandb)")
    ray = p.add_mutually_exclusive_group()
    ray.add_argument(
        "--ray",
        dest="use_ray",
        action="store_const",
        const=True,
        default=None,
        help="run the cells as Ray tasks even for a small local grid (default: Ray with "
        "--address, or from 4 cells to run with room for two at once; smaller grids run in "
        "this process, one cell after another: Ray's start-up would cost more than it gains)",
    )
    ray.add_argument(
        "--no-ray",
        dest="use_ray",
        action="store_const",
        const=False,
        help="run every cell in this process, one after another",
    )


def _cell_line(result: dict[str, Any]) -> str:
    if result.get("skipped"):
        return f"skipped (finished): {result['key']}"
    score = result.get("normalized_score")
    extra = f", normalised score {score:.1f}" if score is not None else ""
    resumed = result.get("resumed_from_epoch") or 0
    again = f", resumed from epoch {resumed}" if resumed else ""
    n = len(result.get("returns") or ())
    # one seed: the spread shown is over its evaluation episodes, said so (a bare "± 0.0"
    # read as a spread over seeds)
    spread = (
        f" (std {result['final_return_std']:.1f} over {n} evaluation episodes)" if n > 1 else ""
    )
    return (
        f"{result['key']}: return {result['final_return_mean']:.1f}{spread}{extra} "
        f"({result['train_seconds']:.1f}s training, {result.get('eval_seconds', 0.0):.1f}s "
        f"evaluation on {result['node']}{again})"
    )


def _time_line(seconds: dict[str, float], used_ray: bool, cells_run: int) -> str:
    """Where the wall time went: training (summed over the cells run now), Ray's start-up,
    and the rest (data loading, evaluation, process start-up, the report)."""
    wall = seconds.get("wall", 0.0)
    training = seconds.get("training", 0.0)
    ray = seconds.get("ray_start", 0.0)
    how = (
        f"{ray:.1f}s starting Ray, cells side by side as Ray tasks"
        if used_ray
        else "no Ray (cells in this process, one after another)"
    )
    rest = max(wall - training - ray, 0.0)
    return (
        f"time: {wall:.1f}s wall for {cells_run} cell(s) run now: {training:.1f}s training "
        f"(summed over cells), {how}; the other {rest:.1f}s: start-up in each process "
        "(imports, and Tianshou's numba compiling its buffer code on first use), loading "
        "data, evaluation and the report"
    )


def cmd_grid(args: argparse.Namespace) -> int:
    from tianshou_offline.errors import TianshouOfflineError
    from tianshou_offline.scale.grid import CellLogging, format_markdown, load_grid, run_grid

    grid = load_grid(args.spec)
    check_output(
        args.output or grid.output,
        flag="--output" if args.output else f"the output of {args.spec}",
        overwrite=None,
        directory=True,
        parents=True,
    )
    res = run_grid(
        grid,
        args.output,
        address=args.address,
        num_cpus=args.num_cpus,
        max_retries=args.max_retries,
        progress=False if args.no_progress else None,
        on_cell=lambda r: print(_cell_line(r), flush=True),
        use_ray=args.use_ray,
        log_to=CellLogging(args.logger, args.wandb_project, args.wandb_entity),
    )
    for f in res.failures:
        print(f"failed: {f.cell.key}: {f.error}", flush=True)
    from tianshou_offline.scale.grid import aggregate

    print(format_markdown(aggregate(res.results)), end="", flush=True)
    files = dict(res.files)
    if grid.ope is not None and res.results:
        files.update(_ope_selection(res.results, grid.ope, args.output or grid.output))
    for what, path in files.items():
        print(f"{what}: {path}")
    run_now = sum(1 for r in res.results if not r.get("skipped")) + len(res.failures)
    print(_time_line(res.seconds, res.used_ray, run_now))
    if res.failures:
        raise TianshouOfflineError(
            f"{len(res.failures)} of {len(grid.cells)} cells failed (listed above); rerun the "
            "grid to retry them (finished cells are skipped)"
        )
    return 0


def _ope_selection(
    results: list[dict[str, Any]], ope: Mapping[str, Any], output: str | os.PathLike[str]
) -> dict[str, Path]:
    """Rank every dataset's cells by the grid's off-policy estimators (their ``policy.pt``
    on the dataset alone) next to their evaluated returns; print the tables and write
    ``ope.md`` and ``ope.json`` into ``output``."""
    import json

    from tianshou_offline.errors import DataValidationError
    from tianshou_offline.evaluation.ope import OPESettings, select_checkpoints
    from tianshou_offline.scale.grid_spec import _write_atomic

    try:
        settings = OPESettings(**ope)
    except (TypeError, ValueError) as e:
        raise DataValidationError(f"grid file: ope: {e}") from e
    from tianshou_offline.scale.algorithms import RETURN_CONDITIONED

    by_data: dict[str, list[dict[str, Any]]] = {}
    skipped = sorted(str(r["key"]) for r in results
                     if r["spec"]["algorithm"] in RETURN_CONDITIONED)  # fmt: skip
    for r in results:
        if r["spec"]["algorithm"] not in RETURN_CONDITIONED:
            by_data.setdefault(str(r["spec"]["dataset"]), []).append(r)
    reports, lines = [], []
    if skipped:  # π(a|s) of a history-dependent policy is undefined: IS, DR and FQE need it
        lines += [
            "Not ranked (a return-conditioned policy acts on the episode so far; the "
            f"off-policy estimators need a Markov policy): {', '.join(skipped)}",
            "",
        ]
    for data, cells in by_data.items():
        entries = [(str(r["key"]), Path(r["dir"]) / "policy.pt", float(r["final_return_mean"]))
                   for r in cells]  # fmt: skip
        report = select_checkpoints(entries, data, settings)
        reports.append(report)
        names = list(settings.estimators)
        lines += [
            f"### Off-policy selection on {Path(data).name}",
            "",
            "| cell | true return | " + " | ".join(f"{n} (rank)" for n in names) + " |",
            "| --- | ---: | " + " | ".join("---:" for _ in names) + " |",
        ]
        for row in sorted(report["rows"], key=lambda x: -x["true_return"]):
            est = " | ".join(f"{row['estimates'][n]['value']:.2f} ({row['ranks'][n]})"
                             for n in names)  # fmt: skip
            lines.append(f"| {row['label']} | {row['true_return']:.1f} | {est} |")
        lines.append("")
        for n in names:
            sel = report["selection"][n]
            rho = "n/a" if sel["spearman"] is None else f"{sel['spearman']:+.2f}"
            lines.append(
                f"- {n} picks {sel['pick']} (true return {sel['pick_return']:.1f}; best "
                f"{sel['best_return']:.1f}, regret {sel['regret']:.1f}; Spearman {rho})"
            )
        lines.append("")
    lines.append(
        f"Estimates are discounted returns (gamma {settings.gamma}) from each dataset's initial "
        "states, computed without the environment; true returns are the cells' evaluations."
    )
    text = "\n".join(lines) + "\n"
    print(text, end="", flush=True)
    out = Path(output)
    md, js = out / "ope.md", out / "ope.json"
    _write_atomic(md, text.encode())
    payload = {"settings": {**settings.__dict__, "estimators": list(settings.estimators)},
               "datasets": reports}  # fmt: skip
    _write_atomic(js, (json.dumps(payload, indent=1) + "\n").encode())
    return {"ope markdown": md, "ope json": js}


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "grid",
        help="run an experiment grid (algorithms × datasets × seeds × overrides) on Ray "
        "(needs the [ray] extra)",
        description="Run every cell of an experiment grid as a Ray task (trains with "
        "OfflineTrainer, evaluates, logs to TensorBoard or W&B, checkpoints); finished cells are "
        "skipped and interrupted ones resume from their checkpoint; writes results.md/.csv/"
        ".json and curves.png into the output directory.",
    )
    add_grid_arguments(p)
    p.set_defaults(func=cmd_grid)
