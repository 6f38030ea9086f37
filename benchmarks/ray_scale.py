#!/usr/bin/env python3
"""Shard conversion on Ray (1 and 2 workers) against the local process pool and the serial
conversion, start-up counted the same way on every side, sides interleaved; a projection for a
cluster of N nodes.

Data: ``--shards`` copies of one RL Unplugged-style shard of ``--transitions`` records
(real Atari frames when ale-py is installed; written with TensorFlow in a subprocess by
``rlu_speed.make_shard``, so this process never loads TensorFlow). Every side converts the
same shards with the same converter
(:func:`~tianshou_offline.converters.rl_unplugged.convert_shard`):

- **serial**: ``convert_rl_unplugged_atari(workers=1)``: every shard decoded in the calling
  process, one after another — the work itself, with no parallelism and no scheduler;
- **local pool, 2 workers**: ``convert_rl_unplugged_atari(workers=2)``, today's default:
  shards one after another, each decoded by a pool of 2 processes;
- **Ray, W workers**: ``convert_rl_unplugged_atari_ray`` on a local Ray instance of W CPUs,
  one task per shard of 1 CPU each (W shards at a time, each decoded in its task's process).

**Counted the same way**: each side runs in a fresh process of its own (``--child``), which
times (1) its start-up — importing the converter, and for Ray importing Ray and
``ray.init`` —, (2) a first conversion (the local pool starts its processes, Ray its workers,
each importing the converter), (3) a second conversion of the same shards to another folder
(Ray's workers are up; the local pool starts a new pool, as every call does). **Cold** =
(1) + (2): what one job costs from nothing; **warm** = (3): a further job in the same process
or cluster. The parent also times each child process from spawn to exit. Sides run in an
order rotated every round (``--rounds``); figures are medians, ratios medians of the
per-round ratios. Ray's scheduler overhead per task is measured with no-op tasks.

**Priority**: Ray starts its workers 15 nice levels below the driver by default (its
``worker_niceness``); on a shared machine that alone makes Ray's side several times slower
than the serial one, measuring the priority instead of the scheduling. Every side's worker
processes run at the benchmark's own priority (``RAY_worker_niceness=0``; choose with
``--ray-worker-niceness``).

Usage::

    nice -n 5 python -m benchmarks.ray_scale [--shards 6] [--transitions 3000] [--rounds 4]
    python -m benchmarks.ray_scale --table-only | --readme    # the docs' section (kept results)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._lib import report, results
from benchmarks._lib.peers import child_env

BENCHMARK = "ray_scale"
SIDES = ("serial", "local pool, 2 workers", "Ray, 1 worker", "Ray, 2 workers")
TARGET = 0.10
"""Ray's time at most 10% above the local pool's at equal workers (cold and warm)."""


def make_shards(cache: Path, shards: int, transitions: int) -> list[Path]:
    """``shards`` copies of one shard, ``{cache}/Breakout/run_1-0000K-of-00100``."""
    from tianshou_offline.converters.rl_unplugged import shard_filename

    first = cache / "Breakout" / shard_filename(1, 0)
    first.parent.mkdir(parents=True, exist_ok=True)
    code = (
        "from benchmarks.rlu_speed import make_shard; "
        f"make_shard(__import__('pathlib').Path({str(first)!r}), {transitions})"
    )
    env = child_env()
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    paths = [first]
    for k in range(1, shards):
        dst = first.with_name(shard_filename(1, k))
        shutil.copyfile(first, dst)
        paths.append(dst)
    return paths


def _ray_init(workers: int) -> None:
    import ray

    for attempt in range(3):  # Ray waits 30 s for its raylet; a loaded machine can miss that
        try:
            ray.init(num_cpus=workers, include_dashboard=False, logging_level=logging.WARNING)
            return
        except Exception as e:  # whatever ray.init raises: retried, then raised
            if attempt == 2:
                raise
            print(f"  ray.init failed ({e}); again", file=sys.stderr, flush=True)
            ray.shutdown()


def child(side: str, cache: Path, out: Path, shards: int) -> dict[str, float]:
    """One side in this (fresh) process: seconds of its start-up, first and second
    conversion (and for Ray the no-op task round trip)."""
    t0 = time.perf_counter()
    ray_workers = {"Ray, 1 worker": 1, "Ray, 2 workers": 2}.get(side)
    if ray_workers is not None:
        import ray

        from tianshou_offline.scale.convert import convert_rl_unplugged_atari_ray

        _ray_init(ray_workers)
    else:
        from tianshou_offline.converters.rl_unplugged import convert_rl_unplugged_atari
    figures = {"start_s": time.perf_counter() - t0}
    try:
        for run in ("first", "second"):
            t0 = time.perf_counter()
            if ray_workers is not None:
                res = convert_rl_unplugged_atari_ray(
                    "Breakout", out / run, shard_ids=range(shards), cache_dir=cache,
                    num_cpus=1, num_actions=4,
                )  # fmt: skip
                assert not res.failures, res.failures
            else:
                convert_rl_unplugged_atari(
                    "Breakout", out / run, shard_ids=range(shards), cache_dir=cache,
                    workers=1 if side == "serial" else 2, num_actions=4,
                )  # fmt: skip
            figures[f"{run}_s"] = time.perf_counter() - t0
        if ray_workers is not None:
            noop: Any = ray.remote(_noop).options(num_cpus=1)
            ray.get([noop.remote() for _ in range(20)])  # warm
            n = 200
            t0 = time.perf_counter()
            ray.get([noop.remote() for _ in range(n)])
            figures["per_task_s"] = (time.perf_counter() - t0) / n
    finally:
        if ray_workers is not None:
            ray.shutdown()
    return figures


def run_side(
    side: str, cache: Path, out: Path, shards: int, ray_worker_niceness: int
) -> dict[str, float]:
    """:func:`child` in a fresh process; adds ``process_s``, spawn to exit."""
    shutil.rmtree(out, ignore_errors=True)
    env = child_env()
    env["RAY_worker_niceness"] = str(ray_worker_niceness)  # Ray's own default: 15
    cmd = [sys.executable, "-m", "benchmarks.ray_scale", "--child", side, "--cache", str(cache),
           "--out", str(out), "--shards", str(shards)]  # fmt: skip
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(
            f"{side}: the child failed (exit {done.returncode}):\n{done.stderr[-3000:]}"
        )
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    figures["process_s"] = wall
    figures["output_bytes"] = sum(p.stat().st_size for p in (out / "second").rglob("*.hdf5"))
    shutil.rmtree(out, ignore_errors=True)
    return figures


def _noop() -> int:
    return 0


CODE = ("benchmarks/ray_scale.py", "benchmarks/rlu_speed.py", "tianshou_offline/scale",
        "tianshou_offline/converters")  # fmt: skip


PAIRS = (("Ray, 1 worker", "serial"), ("Ray, 2 workers", "local pool, 2 workers"))
"""Ray against the local side with the same number of worker processes."""


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every side in a fresh process per round, the order rotated every round."""
    tmp = Path(args.workdir or tempfile.mkdtemp(prefix="ray_scale_"))
    cache = tmp / "cache"
    paths = make_shards(cache, args.shards, args.transitions)
    size = paths[0].stat().st_size
    print(f"{args.shards} shards × {args.transitions} records ({size / 1e6:.1f} MB each), "
          f"{os.cpu_count()} cores (shared: figures vary run to run)", flush=True)  # fmt: skip
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    orders = []
    for r in range(args.rounds):
        order = list(SIDES[r % len(SIDES) :] + SIDES[: r % len(SIDES)])
        orders.append(order)
        for side in order:
            got = run_side(side, cache, tmp / "out", args.shards, args.ray_worker_niceness)
            runs[side].append(got)
            print(f"round {r} {side}: start-up {got['start_s']:.1f} s, first {got['first_s']:.1f} s, "
                  f"second {got['second_s']:.1f} s, process {got['process_s']:.1f} s", flush=True)  # fmt: skip
    shutil.rmtree(tmp, ignore_errors=True)

    def per_side(key: str) -> dict[str, list[float]]:
        return {side: [g[key] for g in runs[side]] for side in SIDES}

    cold = {side: [g["start_s"] + g["first_s"] for g in runs[side]] for side in SIDES}
    warm = per_side("second_s")
    process = per_side("process_s")

    def overhead(times: dict[str, list[float]]) -> dict[str, float]:
        return {a: float(np.median([x / y - 1 for x, y in zip(times[a], times[b], strict=True)]))
                for a, b in PAIRS}  # fmt: skip

    return {
        "shard_bytes": size,
        "orders": orders,
        "runs": runs,
        "median_cold_s": {k: float(np.median(v)) for k, v in cold.items()},
        "median_warm_s": {k: float(np.median(v)) for k, v in warm.items()},
        "median_start_s": {k: float(np.median(v)) for k, v in per_side("start_s").items()},
        "median_process_s": {k: float(np.median(v)) for k, v in process.items()},
        "overhead_cold": overhead(cold),
        "overhead_warm": overhead(warm),
        "overhead_process": overhead(process),
        "warm_speedup_over_serial": {
            side: float(np.median([s / x for s, x in zip(warm["serial"], warm[side], strict=True)]))
            for side in SIDES
        },
        "per_task_s": float(np.median([g["per_task_s"] for g in runs["Ray, 1 worker"]])),
        "output_bytes_per_shard": runs["serial"][0]["output_bytes"] / args.shards,
    }


def missed_targets(records: Sequence[dict[str, Any]]) -> list[str]:
    return [f"{r['name']}: {side} {how} {100 * o:+.0f}% of its local peer's time > +{100 * TARGET:.0f}%"
            for r in records for how in ("cold", "warm")
            for side, o in r["figures"][f"overhead_{how}"].items() if o > TARGET]  # fmt: skip


def run_table(s: dict[str, Any], f: dict[str, Any]) -> str:
    """One run's seconds per side (cold, warm, start-up, whole process) and Ray's overhead."""
    n = s["shards"] * s["transitions"]
    lines = [
        f"{s['shards']} shards × {s['transitions']:,} records ({f['shard_bytes'] / 1e6:.1f} MB "
        f"each), {len(f['orders'])} rounds, each side in a fresh process, order rotated; Ray's "
        f"workers at niceness +{s.get('ray_worker_niceness', 15)} over the driver's (Ray's "
        "default +15; the local pool's at +0):",
        "",
        "| side | cold s (records/s) | warm s (records/s) | of which start-up s | process s | warm ÷ serial |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for side in SIDES:
        c, w = f["median_cold_s"][side], f["median_warm_s"][side]
        lines.append(
            f"| {side} | {c:.1f} ({n / c:,.0f}) | {w:.1f} ({n / w:,.0f}) | "
            f"{f['median_start_s'][side]:.1f} | {f['median_process_s'][side]:.1f} | "
            f"{f['warm_speedup_over_serial'][side]:.2f}× |"
        )
    lines.append("")
    for a, b in PAIRS:
        lines.append(
            f"- {a} vs {b}: cold {100 * f['overhead_cold'][a]:+.0f}%, warm "
            f"{100 * f['overhead_warm'][a]:+.0f}%, whole process "
            f"{100 * f['overhead_process'][a]:+.0f}% (target ≤ +{100 * TARGET:.0f}%)"
        )
    verdict = []
    for how in ("warm", "cold"):
        met = [a.split(", ")[1] for a, _ in PAIRS if f[f"overhead_{how}"][a] <= TARGET]
        missed = [a.split(", ")[1] for a, _ in PAIRS if f[f"overhead_{how}"][a] > TARGET]
        verdict.append(f"{how}: " + "; ".join(
            x for x in (f"met at {' and '.join(met)}" if met else "",
                        f"missed at {' and '.join(missed)}" if missed else "") if x))  # fmt: skip
    lines.append(f"- Ray's overhead target (≤ +{100 * TARGET:.0f}%), {', '.join(verdict)}")
    lines.append(
        f"- a no-op Ray task: {1e3 * f['per_task_s']:.2f} ms; serial conversion "
        f"{f['median_warm_s']['serial'] / s['shards']:.2f} s per shard "
        f"({f['output_bytes_per_shard'] / 1e6:.1f} MB written per shard)"
    )
    return "\n".join(lines)


def table(records: Sequence[dict[str, Any]]) -> str:
    """:func:`run_table` of every kept result, what the columns mean, the provenance."""
    out = [run_table(r["settings"], r["figures"]) for r in records]
    out.append(
        "Cold: importing the converter (and Ray, and `ray.init`) plus a first conversion, which "
        "starts the pool's or Ray's worker processes; warm: a second conversion in the same "
        "process (Ray's workers up, the local pool started anew as every call does); process: "
        "spawn to exit of the side's process. Ratios are medians of per-round ratios."
    )
    out.append(results.provenance_line(records))
    return "\n\n".join(out)


def readme_section() -> str:
    """The documentation's section: :func:`table` of the kept results."""
    return table(results.read_results(BENCHMARK))


def projection(f: dict[str, Any], transitions: int) -> None:
    """Print a cluster projection from the serial per-shard time (one core per shard)."""
    per_shard = f["median_warm_s"]["serial"] / f["n_shards"]
    out_size = f["output_bytes_per_shard"]
    print(
        "\nProjection (embarrassingly parallel: one shard per core, no shared state):\n"
        f"  measured: {per_shard:.2f} s per shard of {transitions} records on one core "
        f"({transitions / per_shard:,.0f} records/s/core), output {out_size / 1e6:.1f} MB per shard"
    )
    jobs = 46 * 5 * 50
    for nodes, cores in ((1, 2), (4, 16), (16, 16), (64, 32)):
        c = nodes * cores
        print(f"  {nodes:>3} nodes × {cores:>2} cores: {jobs * per_shard / c / 60:8.1f} min for 46×5×50 "
              f"shards if storage sustains {c * out_size / per_shard / 1e6:,.0f} MB/s of writes; "
              f"scheduler floor {f['per_task_s'] * jobs:.1f} s")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--shards", type=int, default=6)
    ap.add_argument("--transitions", type=int, default=3000, help="records per shard")
    ap.add_argument("--rounds", type=int, default=4, help="4: each side once in each place")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--ray-worker-niceness", type=int, default=0,
                    help="niceness Ray adds to its workers (Ray's default 15; 0: the same "
                    "priority as the local pool's processes)")  # fmt: skip
    ap.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    report.add_arguments(ap, target="Ray's time <= +10% of the local side's at equal workers, "
                         "cold and warm", table=True)  # fmt: skip
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, Path(args.cache), Path(args.out), args.shards)))
        return 0
    if args.table_only or args.readme:
        return report.show_kept(args, BENCHMARK, table, missed_targets)
    load = results.LoadMonitor().start()
    figures = measure(args)
    load.stop()
    figures["n_shards"] = args.shards
    settings = {"shards": args.shards, "transitions": args.transitions, "rounds": args.rounds,
                "ray_worker_niceness": args.ray_worker_niceness}  # fmt: skip
    name = f"{args.shards}x{args.transitions}"
    print(run_table(settings, figures))
    projection(figures, args.transitions)
    missed = missed_targets([{"name": name, "figures": figures}])
    return report.keep(
        BENCHMARK, name, settings=settings, figures=figures, code=CODE, load=load,
        missed=missed, check=args.check,
    )  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
