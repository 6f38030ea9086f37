#!/usr/bin/env python3
"""Learning quality: tianshou-offline vs d3rlpy 2.8.1, trained on the same files.

Rows (the data):

- **Hopper-v5, HalfCheetah-v5**: ``medium``, ``medium-replay`` and ``expert`` of a family made
  by :func:`tianshou_offline.datasets.make_datasets` (SAC online, then recorded);
- **CartPole-v1**: ``medium`` of a family made the same way (DQN online);
- **MountainCar-v0**: episodes of a scripted energy-pumping controller with ε-random actions,
  recorded with :class:`~tianshou_offline.recording.EpisodeRecorder` as a user would, with
  the random and the noise-free scripted policy's mean returns stored as reference scores.

Lines (:data:`LINES`): ours — IL (behaviour cloning), BCQ, CQL, CRR (evaluated with both
acting rules), TD3+BC, IQL, ReBRAC, AWAC, the Decision Transformer (continuous) and
DiscreteImitationLearning, DiscreteBCQ, DiscreteCQL (two forms), DiscreteCRR, the discrete
Decision Transformer — against d3rlpy's same algorithms (BC, BCQ, CQL, CRR, TD3PlusBC, IQL,
ReBRAC, AWAC, DecisionTransformer; DiscreteBC, DiscreteBCQ, DiscreteCQL,
DiscreteDecisionTransformer; d3rlpy has no discrete CRR). **Settings**: our side is built by the registry
(:func:`tianshou_offline.algorithms.registry.make_algorithm`) from the scale's preset
(``small``: :data:`tianshou_offline.algorithms.PRESETS`, also ``tianshou-offline grid``'s
defaults; ``d4rl``: the same with 256 × 256 networks), with the preset's batch size; d3rlpy's
side gets the same settings through the benchmarks' one field map
(:func:`benchmarks._lib.field_map.d3rlpy_params`; :func:`~benchmarks._lib.field_map.check_expressible`
refuses a setting d3rlpy cannot
express), the same networks (:mod:`benchmarks._lib.d3rlpy_side`), the same batch size and
number of gradient steps, and the same data: our side loads the HDF5 file with
``load_buffer``; d3rlpy's gets the same arrays (``obs``, ``act``, ``rew``, ``terminated``,
episode ends) in an ``MDPDataset``. Every run is a process of its own (d3rlpy in its own
virtual environment, :func:`benchmarks._lib.peers.d3rlpy_python`), one torch thread each, at
most ``--jobs`` at a time. A gradient step is ``algorithm.update(buffer, batch_size)`` for ours
(as Tianshou's ``OfflineTrainer`` calls it) and
``algo.update(dataset.sample_transition_batch(batch_size))`` for d3rlpy (its ``fit`` loop's
step; the Decision Transformer's: ``sample_trajectory_batch(batch_size, length=K)``).

**Acting rules** (:data:`ACTING`): both sides' final policies are evaluated by the same code in
this environment, on the same evaluation seeds, each side acting by the same rule. d3rlpy's
policy is exported as TorchScript: with its ``save_policy`` (a trace of
``predict_best_action``: random draws inside it are traced, so they are redrawn on every
call), or, for CRR's actor-mean rule, a trace of its actor's mean ``tanh(μ)``. CRR is trained
once per seed and side and evaluated twice: with the actor's mean (ours: ``GaussianPolicy``'s
mode) and critic-weighted (ours: ``CriticWeightedPolicy`` on the trained actor and critics;
d3rlpy: ``save_policy``, its ``inner_predict_best_action``: 4 Gaussian samples, one drawn with
probability ``softmax(Q)``, redrawn every call). The Decision Transformer acts on the episode
so far, conditioned on the file's best episode return on both sides (as ``tianshou-offline
grid``'s cells: :data:`CONDITIONED`): ours through
:class:`~tianshou_offline.recording.dt_policies.ReturnConditionedActFn`, d3rlpy's through a
TorchScript trace of its masked acting step driven by its ``StatefulTransformerWrapper``'s rule
(:class:`benchmarks._lib.d3rlpy_side.DTContext`, checked against the wrapper in d3rlpy's
process).

Reported per cell: the normalised score ``100 · (R − R_random) / (R_expert − R_random)`` with
the reference returns stored in the file — the family's own random and expert policies, far
below D4RL's (printed beside them), so these are *not* D4RL-normalised scores — mean ± standard
error over seeds; the paired difference ours − d3rlpy (same seed index: same evaluation
episodes), mean ± standard error; training wall time per run. A difference is marked when a
Student-t test over the seeds' paired differences puts it beyond noise after Holm's
correction over all the table's differences (family-wise 5%). Every cell has the scale's
pre-registered seeds (:attr:`Scale.seeds`: 5 at the small scale); ``--seeds N`` runs the first
N of them, never more.

Every run is kept as a result file under ``benchmarks/results/quality_table/`` (its key holds
the code fingerprint: a run of older code is rerun, not reused), so an interrupted table
continues; ``--table-only`` prints and ``--readme`` writes the table from the kept results
alone (no data files needed). The families are made once and reused (``--data-dir``); their
generating policies are committed under ``benchmarks/results/quality_table/families/``.
``--scale d4rl`` is the D4RL budget (1M-transition files, SAC trained 1M steps, 1M gradient
steps, 5 seeds) for a GPU or a cluster; ``--device cuda`` runs both sides there; ``--ray
[ADDRESS]`` runs every job as a Ray task (one CPU, and a GPU with ``--device cuda``; retried if
its worker dies) on a cluster, or on a local Ray instance without an address, connected as the
experiment grids are. A job is not a grid cell (:func:`~tianshou_offline.scale.run_cell`):
both sides of the table must be trained by the same loop of gradient steps and evaluated by
the same code, and d3rlpy's side runs in its own interpreter.

Usage::

    python -m benchmarks.quality_table                       # the small scale, 2 processes
    python -m benchmarks.quality_table --rows mountaincar --seeds 3
    python -m benchmarks.quality_table --rows hopper-medium --sides d3rlpy --jobs 1
    python -m benchmarks.quality_table --scale d4rl --device cuda --jobs 8
    python -m benchmarks.quality_table --scale d4rl --ray auto   # on a node of a Ray cluster
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from benchmarks._lib import readme, results
from benchmarks._lib.peers import d3rlpy_python
from benchmarks._lib.quality_d3rlpy import worker_d3rlpy
from benchmarks._lib.quality_data import (
    arrays_path,
    export_arrays,
    keep_family_policies,
    prepare_data,
)
from benchmarks._lib.quality_jobs import make_jobs, run_jobs
from benchmarks._lib.quality_report import kept_runs, readme_section, report
from benchmarks._lib.quality_specs import (
    BENCHMARK,
    DEFAULT_DATA_DIR,
    LINES,
    ROW_GROUPS,
    ROW_ORDER,
    ROWS,
    SCALES,
)
from benchmarks._lib.quality_workers import worker_evaluate, worker_ours

# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=tuple(SCALES), default="small")
    parser.add_argument("--rows", default="all",
                        help=f"comma-separated rows or groups (hopper, halfcheetah): {', '.join(ROWS)}")  # fmt: skip
    parser.add_argument("--algorithms", default="",
                        help="comma-separated line keys (default: all): "
                        + ", ".join(dict.fromkeys(k for s in LINES.values() for k in s)))  # fmt: skip
    parser.add_argument("--seeds", type=int, default=None,
                        help="run the first N of the scale's pre-registered seeds (default: all)")  # fmt: skip
    parser.add_argument("--gradient-steps", type=int, default=None,
                        help="per run, every suite (default: the scale's)")  # fmt: skip
    parser.add_argument("--eval-episodes", type=int, default=None, help="default: the scale's")
    parser.add_argument("--jobs", type=int, default=2, help="processes at a time (1 thread each)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (both sides)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--results", type=Path, default=results.RESULTS_DIR,
                        help="kept run results (default: benchmarks/results)")  # fmt: skip
    parser.add_argument("--d3rlpy-python", default=None,
                        help="d3rlpy 2.8.1's interpreter (default: ~/.cache/tianshou-offline/d3rlpy-venv)")  # fmt: skip
    parser.add_argument("--no-d3rlpy", action="store_true", help="ours only (--sides ours)")
    parser.add_argument("--sides", default="ours,d3rlpy",
                        help="comma-separated sides to run: ours, d3rlpy")  # fmt: skip
    parser.add_argument("--table-only", action="store_true", help="print the table of kept results")
    parser.add_argument("--readme", action="store_true", help="write it into README.md")
    parser.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                        help="run every job as a Ray task: on the cluster at ADDRESS (e.g. auto), "
                        "or a local Ray instance without one; data and results on shared storage")  # fmt: skip
    parser.add_argument("--max-retries", type=int, default=2,
                        help="with --ray: reruns of a job whose worker died")  # fmt: skip
    parser.add_argument("--worker", choices=("ours", "d3rlpy", "evaluate"), help=argparse.SUPPRESS)
    parser.add_argument("job", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(Path(args.job).read_text())
        {"ours": worker_ours, "d3rlpy": worker_d3rlpy, "evaluate": worker_evaluate}[args.worker](
            spec
        )
        return 0

    keys: list[str] = []
    for part in (p.strip() for p in args.rows.split(",") if p.strip()):
        keys += list(ROW_ORDER) if part == "all" else ROW_GROUPS.get(part, [part])
    unknown = [k for k in keys if k not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {list(ROWS)}")
    rows = [ROWS[k] for k in dict.fromkeys(keys)]
    algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    scale = SCALES[args.scale]
    if args.gradient_steps:
        scale = dataclasses.replace(
            scale, gradient_steps=dict.fromkeys(scale.gradient_steps, args.gradient_steps)
        )
    if args.eval_episodes:
        scale = dataclasses.replace(scale, eval_episodes=args.eval_episodes)
    if args.seeds is not None and not 1 <= args.seeds <= scale.seeds:
        parser.error(f"--seeds {args.seeds}: the {scale.name} scale's cells have {scale.seeds} "
                     f"pre-registered seeds; run 1 to {scale.seeds} of them")  # fmt: skip
    seeds = args.seeds or scale.seeds
    if args.readme:  # always the README's whole table (small scale, every row)
        readme.write_sections({BENCHMARK: readme_section(args.results)})
    if args.table_only or args.readme:  # the kept results: nothing is made or trained
        print(report(kept_runs(scale, seeds, rows, args.results), rows, scale, seeds))
        return 0
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if args.no_d3rlpy:
        sides = [s for s in sides if s != "d3rlpy"]
    if not sides or set(sides) - {"ours", "d3rlpy"}:
        parser.error(f"--sides {args.sides!r}: expected 'ours', 'd3rlpy' or both")
    import torch

    import tianshou_offline.cli._no_tensorflow  # noqa: F401  (before Tianshou: no TensorFlow)

    torch.set_num_threads(1)
    files = prepare_data(rows, args.scale, args.data_dir)
    for path in keep_family_policies(rows, args.scale, args.data_dir):
        print(f"kept {path.relative_to(results.REPO)}", file=sys.stderr)
    d3rlpy: str | None = None
    arrays: dict[str, Path] = {}
    if "d3rlpy" in sides:
        if args.ray is None:
            d3rlpy = d3rlpy_python(args.d3rlpy_python, create=True, torch_version=torch.__version__)
        else:  # each node finds (or makes) its own: see _ray_job
            d3rlpy = args.d3rlpy_python
        for row in rows:
            arrays[row.key] = export_arrays(files[row.key], arrays_path(files[row.key]))
    jobs = make_jobs(rows, files, arrays, scale=scale, seeds=seeds, algorithms=algorithms,
                     sides=sides, device=args.device)  # fmt: skip
    start = time.perf_counter()
    failed = 0
    with results.LoadMonitor() as load:
        done = run_jobs(jobs, args.results, d3rlpy, parallel=args.jobs, use_ray=args.ray is not None,
                        ray_address=args.ray or None, device=args.device,
                        max_retries=args.max_retries, torch_version=torch.__version__)  # fmt: skip
        for i, (job, r) in enumerate(done, 1):
            if isinstance(r, BaseException):  # a failed run is reported, the others go on
                failed += 1
                print(f"[{i}/{len(jobs)}] {job.name}: FAILED {r}", file=sys.stderr, flush=True)
                continue
            for run in r:
                print(f"[{i}/{len(jobs)}] {job.name} {run['line']} seed {run['seed']}: score "
                      f"{run['score']:.1f} (return "
                      f"{run['return_mean']:.1f}), train {run['train_seconds']:.0f} s",
                      file=sys.stderr, flush=True)  # fmt: skip
    lo = load.summary()
    print(f"\n{len(jobs) - failed}/{len(jobs)} runs in {time.perf_counter() - start:.0f} s; load "
          f"average {lo['before']} → {lo['after']} (max {lo['max']}) on {os.cpu_count()} CPUs, "
          f"{args.jobs} processes at a time\n", flush=True)  # fmt: skip
    print(report(kept_runs(scale, seeds, rows, args.results), rows, scale, seeds))
    print("\nTraining wall times are of processes sharing the machine with other work (one "
          "thread each): not a speed comparison — the speed benchmark is.")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
