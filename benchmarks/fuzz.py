"""Fuzz every reading entry point with mutants of valid files and print the outcome table.

    python -m benchmarks.fuzz --mutants 10000 --seed 1

Seeds, mutations, entry points and outcomes are those of ``tests/test_fuzz.py`` (the harness is
:mod:`benchmarks._lib.fuzz`): mutants of files written by ``BufferWriter``, ``EpisodeRecorder``,
Tianshou's ``ReplayBuffer``/``VectorReplayBuffer.save_hdf5``, a D4RL-layout file, the RL
Unplugged converter, a Minari dataset written by Minari and an RL Unplugged TFRecord shard,
fed to ``load_buffer``, ``tianshou-offline inspect``, ``convert tianshou``, ``convert d4rl``,
``load_rl_unplugged``, ``convert_minari`` and ``convert_shard``. Each run happens in a worker
process under a time limit and an address-space limit (``RLIMIT_AS``: the worker's size plus
``--memory-limit``). The target: no ``untyped``, ``inconsistent``, ``timeout``, ``memory`` or
``crash`` outcome.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._lib import fuzz as _fuzz  # sets up the environment before Tianshou is imported
from benchmarks._lib import report, results

CODE = ("benchmarks/fuzz.py", "tianshou_offline")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mutants", type=int, default=10_000, help="number of mutants")
    p.add_argument("--seed", type=int, default=1, help="seed of the mutations")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--time-limit", type=float, default=10.0, help="seconds per run")
    p.add_argument("--memory-limit", type=float, default=1.0, help="GiB per run (RLIMIT_AS)")
    p.add_argument(
        "--entries-per-mutant",
        type=int,
        default=None,
        help="run this many of a mutant's entry points, drawn at random (default: all)",
    )
    p.add_argument("--large-seeds", type=int, default=0, metavar="MB",
                   help="also two seeds of about MB megabytes each, written at run time "
                   "(large_writer, large_frames; 0: none)")  # fmt: skip
    p.add_argument("--large-mutants", type=int, default=40,
                   help="mutants of the large seeds (each a copy of MB megabytes)")  # fmt: skip
    p.add_argument("--json", metavar="OUT", help="also write the counts and failures as JSON")
    p.add_argument("--failures", type=int, default=40, help="failure groups to print")
    p.add_argument("--progress-every", type=int, default=5000, help="runs between tables")
    report.add_arguments(p, target="no untyped, inconsistent, timeout, memory or crash outcome")
    args = p.parse_args(argv)
    load = results.LoadMonitor().start()

    import logging

    logging.disable(logging.WARNING)  # the converters' warnings about odd (mutated) data
    # every entry point imported before the workers are forked: each run starts warm
    import tianshou_offline.cli
    import tianshou_offline.converters.d4rl
    import tianshou_offline.converters.minari
    import tianshou_offline.converters.rl_unplugged
    import tianshou_offline.converters.tianshou
    import tianshou_offline.data.stats  # noqa: F401

    root = Path(tempfile.mkdtemp(prefix="tianshou-offline-fuzz-"))
    try:
        seeds = _fuzz.make_seeds(root / "seeds")
        large = _fuzz.make_large_seeds(root / "large", args.large_seeds) if args.large_seeds else []
        seeds += large
        sizes = {s.name: _size(s.path) for s in seeds}
        print("seeds (bytes):", ", ".join(f"{k} {v}" for k, v in sizes.items()))
        pool = _fuzz.Pool(args.workers, args.time_limit, int(args.memory_limit * 2**30))
        bad_seeds = [r for r in pool.run(_fuzz.seed_jobs(seeds)) if r.outcome != "ok"]
        for r in bad_seeds:
            print(f"seed {r.job.seed} fails {r.job.entry}: {r.outcome} {r.detail}")
        work = root / "mutants"
        work.mkdir()
        summary = _fuzz.Summary()
        t0 = time.perf_counter()
        small = [s for s in seeds if s not in large]
        jobs = _fuzz.jobs_for(
            small, args.mutants, args.seed, work, entries_per_mutant=args.entries_per_mutant
        )
        if large:  # after the small ones, numbered on, from a seed of their own
            jobs = itertools.chain(jobs, _fuzz.jobs_for(
                large, args.large_mutants, args.seed + 10**6, work, first=args.mutants))  # fmt: skip
        for i, result in enumerate(pool.run(jobs)):
            summary.add(result)
            if (i + 1) % args.progress_every == 0:
                elapsed = time.perf_counter() - t0
                print(f"{i + 1} runs, {len(summary.mutants)} mutants, {elapsed:.0f} s", flush=True)
                print(summary.table(), flush=True)
        seconds = time.perf_counter() - t0
        runs = sum(sum(c.values()) for c in summary.counts.values())
        print(
            f"\n{len(summary.mutants)} mutants (seed {args.seed}), {runs} runs in {seconds:.0f} s "
            f"on {args.workers} workers; limits {args.time_limit:g} s and "
            f"{args.memory_limit:g} GiB per run; largest input {max(sizes.values())} bytes\n"
        )
        print(summary.report(args.failures))
        load.stop()
        doc = {
                "mutants": len(summary.mutants),
                "seed": args.seed,
                "runs": runs,
                "seconds": seconds,
                "counts": {k: dict(v) for k, v in summary.counts.items()},
                "failures": [
                    {
                        "entry": r.job.entry,
                        "outcome": r.outcome,
                        "detail": r.detail,
                        "mutant": f"{r.job.seed}#{r.job.mutant}",
                        "mutation": r.job.description,
                    }
                    for r in summary.failures
                ],
                "refused_allocations": [
                    {"entry": r.job.entry, "mutant": f"{r.job.seed}#{r.job.mutant}",
                     "mutation": r.job.description, "detail": r.detail}
                    for r in summary.refused
                ],
                "slowest": [[r.job.entry, r.seconds, r.peak_mb] for r in summary.slowest],
                "seed_failures": [f"{r.job.seed} {r.job.entry}: {r.outcome}" for r in bad_seeds],
            }  # fmt: skip
        if args.json:
            Path(args.json).write_text(json.dumps(doc, indent=1))
        missed = [f"{len(summary.failures)} failing runs (untyped, inconsistent, timeout, "
                  "memory or crash)"] if summary.failures else []  # fmt: skip
        missed += [f"seed {r.job.seed} fails {r.job.entry}: {r.outcome}" for r in bad_seeds]
        settings = {k: v for k, v in vars(args).items() if k in (
            "mutants", "workers", "time_limit", "memory_limit", "entries_per_mutant",
            "large_seeds", "large_mutants")}  # fmt: skip
        name = f"{args.mutants}-seed{args.seed}" + (
            f"-large{args.large_seeds}mb" if args.large_seeds else "")  # fmt: skip
        return report.keep("fuzz", name, settings=settings,
                           figures=doc, code=CODE, load=load, missed=missed, check=args.check,
                           seeds=[args.seed])  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


if __name__ == "__main__":
    sys.exit(main())
