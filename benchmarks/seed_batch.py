"""Throughput of K seeds trained as one batched program (``make_seed_batch``) against K
separate single-thread processes of the plain algorithm, on the same cores.

The quality table's setting: the ``small`` preset (64 × 64 MLPs), batch 256, HalfCheetah-shaped
synthetic data (17-d observations, 6-d actions, 100k transitions; the values do not affect
speed). For each algorithm and round:

- **separate** — K processes, each one plain algorithm (``make_algorithm``, one torch
  thread), all started together and stepping for ``--seconds``;
- **batched** — one process with a K-seed batch (``make_seed_batch``, ``--batch-threads``
  torch threads), stepping for ``--seconds``.

Every process builds and warms up its algorithm first, then waits for the driver's start
signal; throughput is seed-steps per second (a batched step counts K). Rounds alternate which
side runs first; reported: the median throughput of each side and the median of the
per-round ratios batched ÷ separate, and the same ratio per CPU-second used (on a shared
machine the K separate processes take K shares of the CPUs against the batch's one, so the
wall-clock ratio is only fair on quiet cores; the CPU-time ratio is the work per seed-step). Target (issue 26): ≥ 5× with 10 seeds (``--check``:
exit 1 when missed). Every process is pinned to the first ``--cores`` CPUs (``taskset``
semantics through ``os.sched_setaffinity``) so both sides share the same cores.

Usage (from the repository root; the figures the README quotes)::

    python -m benchmarks.seed_batch                         # td3bc, iql, cql; K = 10; 2 cores
    python -m benchmarks.seed_batch --algorithms td3bc --rounds 3 --seconds 20 --check
    python -m benchmarks.seed_batch --table-only            # the table of the kept results
"""

from __future__ import annotations

import tianshou_offline.cli._no_tensorflow  # noqa: F401  (first: no TensorFlow in workers)

# isort: split

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from benchmarks._lib import report, results

BENCHMARK = "seed_batch"
CODE = (
    "benchmarks/seed_batch.py",
    "tianshou_offline/algorithms",
)
"""The code a run depends on (its result key includes their fingerprint)."""
TARGET = 5.0
"""Batched ÷ separate throughput with 10 seeds (issue 26)."""
OBS_DIM, ACT_DIM, SIZE = 17, 6, 100_000
PRESET = "small"
LABELS = {"td3bc": "TD3+BC", "iql": "IQL", "cql": "CQL", "il": "BC", "rebrac": "ReBRAC"}


# ------------------------------------------------------------------- worker side


def worker(args: argparse.Namespace) -> int:
    """Build, warm up, print ``ready``, wait for a line on stdin, step for ``seconds``,
    print one JSON line ``{"steps": …, "seconds": …, "seeds": …}``."""
    import torch
    from tianshou.utils.torch_utils import policy_within_training_step

    from benchmarks._lib.sides_continuous import Setup, synthetic_buffer
    from tianshou_offline.algorithms import make_algorithm, make_seed_batch

    torch.set_num_threads(args.threads)
    s = Setup.make(OBS_DIM, ACT_DIM)
    buffer = synthetic_buffer(OBS_DIM, ACT_DIM, SIZE)
    algo: Any
    if args.seeds:
        algo = make_seed_batch(
            args.algorithm, s.obs_space, s.act_space, seeds=args.seeds, preset=PRESET
        )
    else:
        torch.manual_seed(args.seed)
        algo = make_algorithm(args.algorithm, s.obs_space, s.act_space, preset=PRESET)
    algo.process_buffer(buffer)
    with policy_within_training_step(algo.policy):
        for _ in range(args.warmup):
            algo.update(buffer, args.batch_size)
        print("ready", flush=True)
        sys.stdin.readline()
        steps = 0
        cpu = time.process_time()
        start = time.perf_counter()
        deadline = start + args.seconds
        while time.perf_counter() < deadline:
            algo.update(buffer, args.batch_size)
            steps += 1
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
    seeds = max(args.seeds, 1)
    print(json.dumps({"steps": steps, "seconds": elapsed, "cpu_seconds": cpu, "seeds": seeds}))
    return 0


# ------------------------------------------------------------------- driver side


def _launch(args: argparse.Namespace, algorithm: str, *, seeds: int, seed: int, threads: int
            ) -> subprocess.Popen[str]:  # fmt: skip
    cmd = [
        sys.executable, "-m", "benchmarks.seed_batch", "--worker",
        "--algorithms", algorithm, "--seeds", str(seeds), "--seed", str(seed),
        "--threads", str(threads), "--seconds", str(args.seconds),
        "--warmup", str(args.warmup), "--batch-size", str(args.batch_size),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cores = set(range(args.cores))
    return subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: os.sched_setaffinity(0, cores),
    )


def _run_together(procs: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    """Wait until every process is ready, start them at once, collect their reports."""
    for p in procs:
        assert p.stdout is not None
        line = p.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"a worker failed to start (it printed {line!r})")
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    out = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"a worker exited with status {p.returncode}")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def separate(args: argparse.Namespace, algorithm: str) -> tuple[float, float]:
    """Seed-steps per second (wall) and per CPU-second of K single-thread plain processes
    running together."""
    procs = [_launch(args, algorithm, seeds=0, seed=s, threads=1) for s in range(args.k)]
    reports = _run_together(procs)
    steps = sum(r["steps"] for r in reports)
    wall = sum(r["steps"] / r["seconds"] for r in reports)
    return wall, steps / sum(r["cpu_seconds"] for r in reports)


def batched(args: argparse.Namespace, algorithm: str, threads: int) -> tuple[float, float]:
    """Seed-steps per second (wall) and per CPU-second of one K-seed batch."""
    (r,) = _run_together([_launch(args, algorithm, seeds=args.k, seed=0, threads=threads)])
    seed_steps = float(r["seeds"] * r["steps"])
    return seed_steps / r["seconds"], seed_steps / r["cpu_seconds"]


def measure(args: argparse.Namespace, algorithm: str) -> dict[str, Any]:
    """Alternating rounds of both sides; medians and the per-round ratios."""
    sep: list[float] = []
    sep_cpu: list[float] = []
    bat: dict[int, list[float]] = {t: [] for t in args.batch_threads}
    bat_cpu: dict[int, list[float]] = {t: [] for t in args.batch_threads}
    for rnd in range(args.rounds):
        order = ["separate", "batched"] if rnd % 2 == 0 else ["batched", "separate"]
        for side in order:
            if side == "separate":
                wall, cpu = separate(args, algorithm)
                sep.append(wall)
                sep_cpu.append(cpu)
            else:
                for t in args.batch_threads:
                    wall, cpu = batched(args, algorithm, t)
                    bat[t].append(wall)
                    bat_cpu[t].append(cpu)
        print(f"{algorithm} round {rnd + 1}: separate {sep[-1]:.0f} seed-steps/s; "
              + ", ".join(f"batched ({t} thr) {v[-1]:.0f}" for t, v in bat.items()),
              flush=True)  # fmt: skip
    return {
        "separate": {
            "median": statistics.median(sep),
            "rounds": sep,
            "per_cpu_second": statistics.median(sep_cpu),
        },
        "batched": {
            str(t): {
                "median": statistics.median(v),
                "rounds": v,
                "ratio_median": statistics.median(b / s for b, s in zip(v, sep, strict=True)),
                "ratios": [b / s for b, s in zip(v, sep, strict=True)],
                "per_cpu_second": statistics.median(bat_cpu[t]),
                "cpu_ratio_median": statistics.median(
                    b / s for b, s in zip(bat_cpu[t], sep_cpu, strict=True)
                ),
            }
            for t, v in bat.items()
        },
    }


def table(records: Sequence[dict[str, Any]]) -> str:
    """The README table: each algorithm's throughputs and the ratio (median of rounds)."""
    lines = [
        "| algorithm (64 × 64, batch 256) | K | separate: K processes × 1 thread, seed-steps/s "
        "| batched: 1 process, seed-steps/s (threads) | batched ÷ separate | ≥ 5× "
        "| per CPU-second: batched ÷ separate |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in records:
        k = r["settings"]["k"]
        for algorithm, f in r["figures"]["algorithms"].items():
            for threads, b in f["batched"].items():
                ok = "yes" if b["ratio_median"] >= TARGET else "**no**"
                lines.append(
                    f"| {LABELS.get(algorithm, algorithm)} | {k} | {f['separate']['median']:.0f} "
                    f"| {b['median']:.0f} ({threads}) | {b['ratio_median']:.2f}× | {ok} "
                    f"| {b['cpu_ratio_median']:.2f}× |"
                )
    return "\n".join(lines) + "\n\n" + results.provenance_line(records)


def readme_section() -> str:
    """The README's section: :func:`table` of the kept results."""
    return table(results.read_results(BENCHMARK))


def missed_targets(records: Sequence[dict[str, Any]]) -> list[str]:
    return [
        f"{a} (K={r['settings']['k']}, {t} thread(s)): {b['ratio_median']:.2f}× < {TARGET}×"
        for r in records
        for a, f in r["figures"]["algorithms"].items()
        for t, b in f["batched"].items()
        if b["ratio_median"] < TARGET
    ]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--algorithms", default="td3bc,iql,cql", help="comma-separated names")
    p.add_argument("--k", type=int, default=10, help="seeds (processes on the separate side)")
    p.add_argument("--cores", type=int, default=2, help="pin every process to CPUs 0..cores-1")
    p.add_argument("--batch-threads", type=int, nargs="+", default=[2],
                   help="torch threads of the batched process (several: one run each)")  # fmt: skip
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=15.0, help="stepping time per side")
    p.add_argument("--warmup", type=int, default=20, help="steps before timing")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--seeds", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    report.add_arguments(p, target=f"batched ≥ {TARGET}× separate", table=True)
    args = p.parse_args(argv)
    if args.worker:
        args.algorithm = args.algorithms
        return worker(args)
    if args.table_only or args.readme:
        return report.show_kept(args, BENCHMARK, table, missed_targets)
    if args.cores > (os.cpu_count() or 1):
        p.error(f"--cores {args.cores}: this machine has {os.cpu_count()} CPUs")
    algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    load = results.LoadMonitor().start()
    figures = {"algorithms": {a: measure(args, a) for a in algorithms}}
    load.stop()
    settings = {
        "algorithms": algorithms, "k": args.k, "cores": args.cores,
        "batch_threads": args.batch_threads, "rounds": args.rounds, "seconds": args.seconds,
        "warmup": args.warmup, "batch_size": args.batch_size, "preset": PRESET,
        "data": f"synthetic {SIZE} transitions, obs {OBS_DIM}, act {ACT_DIM}",
    }  # fmt: skip
    path = results.write_result(
        BENCHMARK, f"k{args.k}-{'-'.join(algorithms)}", settings=settings, figures=figures,
        code=CODE, load=load, seeds=list(range(args.k)),
    )  # fmt: skip
    print(table([json.loads(path.read_text())]))
    print(f"kept: {path.relative_to(results.REPO)}")
    return report.finish(missed_targets([json.loads(path.read_text())]), args.check)


if __name__ == "__main__":
    raise SystemExit(main())
