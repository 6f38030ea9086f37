#!/usr/bin/env python3
"""Shard conversion throughput on Ray (1 and 2 workers) against the local process pool, and a
projection for a cluster of N nodes.

Data: ``--shards`` copies of one RL Unplugged-style shard of ``--transitions`` records
(real Atari frames when ale-py is installed; written with TensorFlow in a subprocess by
``rlu_speed.make_shard``, so this process never loads TensorFlow). Every side converts the
same shards with the same converter
(:func:`~tianshou_offline.converters.rl_unplugged.convert_shard`):

- **local, W workers**: ``convert_rl_unplugged_atari(workers=W)``, today's default: shards one
  after another, each decoded by a pool of W processes (W=1: in the calling process);
- **Ray, W workers**: ``convert_rl_unplugged_atari_ray`` on a local Ray instance of W CPUs,
  one task per shard of 1 CPU each (W shards at a time, each decoded in its task's
  process); the workers are started and warmed up on a job of their own first, timed apart.

At equal worker counts the two do the same work: W processes decoding PNGs; the local pool
also parallelises within a shard, Ray across shards. Ray's start-up (``ray.init``) is timed
separately and not part of the throughput (a cluster is started once for many jobs);
the workers' start (process, imports) is timed apart too. The
scheduler overhead per task is measured with no-op tasks.

Usage::

    nice -n 19 python -m benchmarks.ray_scale [--shards 6] [--transitions 3000]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._lib import report, results
from benchmarks._lib.peers import child_env


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


def run_local(cache: Path, out: Path, shards: int, workers: int) -> float:
    from tianshou_offline.converters.rl_unplugged import convert_rl_unplugged_atari

    t0 = time.perf_counter()
    convert_rl_unplugged_atari(
        "Breakout", out, shard_ids=range(shards), cache_dir=cache, workers=workers, num_actions=4
    )
    return time.perf_counter() - t0


def run_ray(cache: Path, out: Path, shards: int, workers: int) -> tuple[float, float, float, float]:
    """Seconds of the conversion, of ``ray.init``, of the workers' warm-up job, and per
    no-op task round trip."""
    import ray

    from tianshou_offline.scale.convert import convert_rl_unplugged_atari_ray

    for attempt in range(3):  # Ray waits 30 s for its raylet; a loaded machine can miss that
        t0 = time.perf_counter()
        try:
            ray.init(num_cpus=workers, include_dashboard=False, logging_level=logging.WARNING)
            break
        except Exception as e:
            if attempt == 2:
                raise
            print(f"  ray.init failed ({e}); again", flush=True)
            ray.shutdown()
    init_s = time.perf_counter() - t0
    try:
        # start every worker (its process and the converter's imports) on a warm-up job,
        # timed apart: a cluster's workers stay up across shards and jobs
        t0 = time.perf_counter()
        warm = convert_rl_unplugged_atari_ray(
            "Breakout", out / "warm-up", shard_ids=range(workers), cache_dir=cache, num_cpus=1,
            num_actions=4,
        )  # fmt: skip
        assert not warm.failures, warm.failures
        warm_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = convert_rl_unplugged_atari_ray(
            "Breakout", out, shard_ids=range(shards), cache_dir=cache, num_cpus=1, num_actions=4
        )
        seconds = time.perf_counter() - t0
        assert not res.failures, res.failures
        noop: Any = ray.remote(_noop).options(num_cpus=1)
        ray.get([noop.remote() for _ in range(20)])  # warm
        n = 200
        t0 = time.perf_counter()
        ray.get([noop.remote() for _ in range(n)])
        per_task = (time.perf_counter() - t0) / n
    finally:
        ray.shutdown()
    return seconds, init_s, warm_s, per_task


def _noop() -> int:
    return 0


CODE = ("benchmarks/ray_scale.py", "benchmarks/rlu_speed.py", "tianshou_offline/scale",
        "tianshou_offline/converters")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--shards", type=int, default=6)
    ap.add_argument("--transitions", type=int, default=3000, help="records per shard")
    ap.add_argument("--workdir", default=None)
    report.add_arguments(ap, target="Ray's overhead <= +10% of the local pool's time")
    args = ap.parse_args()
    load = results.LoadMonitor().start()
    tmp = Path(args.workdir or tempfile.mkdtemp(prefix="ray_scale_"))
    cache = tmp / "cache"
    paths = make_shards(cache, args.shards, args.transitions)
    size = paths[0].stat().st_size
    n = args.shards * args.transitions
    print(f"{args.shards} shards × {args.transitions} records ({size / 1e6:.1f} MB each), "
          f"{os.cpu_count()} cores on this machine (shared: figures vary run to run)")  # fmt: skip
    rows: list[tuple[str, float]] = []
    ray_info: dict[int, tuple[float, float]] = {}
    for workers in (1, 2):
        out = tmp / f"local{workers}"
        rows.append(
            (f"local pool, {workers} worker(s)", run_local(cache, out, args.shards, workers))
        )
        out = tmp / f"ray{workers}"
        seconds, init_s, warm_s, per_task = run_ray(cache, out, args.shards, workers)
        rows.append((f"Ray, {workers} worker(s)", seconds))
        print(
            f"  Ray, {workers} worker(s): {seconds:.1f} s (ray.init {init_s:.1f} s, workers' warm-up {warm_s:.1f} s)",
            flush=True,
        )
        ray_info[workers] = (init_s, per_task)
        out_size = sum(p.stat().st_size for p in (out / "Breakout").glob("*.hdf5")) / args.shards
    print(f"\n{'side':<26}{'seconds':>9}{'transitions/s':>15}{'s/shard':>9}")
    for name, s in rows:
        print(f"{name:<26}{s:>9.1f}{n / s:>15,.0f}{s / args.shards:>9.2f}")
    t = dict(rows)
    for w in (1, 2):
        local, ray_s = t[f"local pool, {w} worker(s)"], t[f"Ray, {w} worker(s)"]
        print(f"Ray overhead at {w} worker(s): {100 * (ray_s / local - 1):+.1f}% of the local pool's "
              f"time (target: <= +10%); ray.init {ray_info[w][0]:.1f} s (not counted), "
              f"{1e3 * ray_info[w][1]:.2f} ms per no-op task")  # fmt: skip
    speedup = t["Ray, 1 worker(s)"] / t["Ray, 2 worker(s)"]
    print(f"Ray 2 workers vs 1: x{speedup:.2f} (2 shared cores: other processes take their share)")
    per_shard_cpu = t["Ray, 1 worker(s)"] / args.shards  # one core per shard
    print(
        "\nProjection (embarrassingly parallel: one shard per core, no shared state):\n"
        f"  measured: {per_shard_cpu:.2f} s per shard of {args.transitions} records on one core "
        f"({args.transitions / per_shard_cpu:,.0f} records/s/core), output {out_size / 1e6:.1f} MB per shard"
    )
    rlu_records = 46 * 5 * 50 * args.transitions  # the job, at this shard size
    core_s = 46 * 5 * 50 * per_shard_cpu
    for nodes, cores in ((1, 2), (4, 16), (16, 16), (64, 32)):
        c = nodes * cores
        task_s = (
            ray_info[1][1] * 46 * 5 * 50
        )  # scheduler: one round trip per task, serial on the driver
        write_mb_s = c * out_size / per_shard_cpu / 1e6
        print(f"  {nodes:>3} nodes × {cores:>2} cores: {core_s / c / 60:8.1f} min for 46×5×50 shards "
              f"({rlu_records / 1e6:.0f}M records at this size) if storage sustains "
              f"{write_mb_s:,.0f} MB/s of writes; scheduler floor {task_s:.1f} s")  # fmt: skip
    print(
        "  limits: the output file system must absorb every core's writes at once (the figure\n"
        "  above) and every node must read its sources from it (or download them); the\n"
        "  driver's per-task overhead is negligible against seconds-long shards. A real RL\n"
        "  Unplugged shard holds ~500k records (50M per run / 100 shards): scale the per-shard\n"
        "  time, the output size and the total by 500k / --transitions."
    )
    load.stop()
    overhead = {w: t[f"Ray, {w} worker(s)"] / t[f"local pool, {w} worker(s)"] - 1 for w in (1, 2)}
    missed = [f"Ray's overhead at {w} worker(s) {100 * o:+.1f}% > +10%"
              for w, o in overhead.items() if o > 0.10]  # fmt: skip
    return report.keep(
        "ray_scale", f"{args.shards}x{args.transitions}",
        settings={"shards": args.shards, "transitions": args.transitions},
        figures={"seconds": dict(rows), "overhead": overhead,
                 "ray_init_s": {w: i[0] for w, i in ray_info.items()},
                 "per_task_s": {w: i[1] for w, i in ray_info.items()}},
        code=CODE, load=load, missed=missed, check=args.check,
    )  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
