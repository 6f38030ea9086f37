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
import contextlib
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._lib import fuzz as _fuzz  # sets up the environment before Tianshou is imported
from benchmarks._lib import report, results

CODE = ("benchmarks/fuzz.py", "tianshou_offline")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mutants", type=int, default=10_000, help="number of mutants")
    p.add_argument("--seed", type=int, default=1, help="seed of the mutations")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--time-limit", type=float, default=10.0,
                   help="seconds per run (or --time-factor times the unmutated seed's run of "
                   "the same entry point and option set, where that is longer)")  # fmt: skip
    p.add_argument(
        "--time-factor",
        type=float,
        default=5.0,
        help="a mutant's run may take this many times as long as the seed's",
    )
    p.add_argument("--seed-time-limit", type=float, default=300.0,
                   help="seconds per run of an unmutated seed")  # fmt: skip
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
    p.add_argument("--only", nargs="+", metavar="MUTANT", type=_mutant_number,
                   help="replay these mutants of the run (numbers, or as a result names them: "
                   "writer_dict#397); a partial run, not kept")  # fmt: skip
    p.add_argument("--entries", nargs="+", choices=_fuzz.ENTRY_POINTS, metavar="ENTRY",
                   help="run only these entry points (seeds and mutants); a partial run, not "
                   "kept")  # fmt: skip
    p.add_argument("--json", metavar="OUT", help="also write the counts and failures as JSON")
    p.add_argument("--failures", type=int, default=40, help="failure groups to print")
    p.add_argument("--progress-every", type=int, default=5000, help="runs between tables")
    report.add_arguments(
        p, target="no untyped, inconsistent, timeout, memory or crash outcome", table=True
    )
    args = p.parse_args(argv)
    if args.table_only or args.readme:
        return report.show_kept(args, BENCHMARK, table, missed_targets)
    load = results.LoadMonitor().start()

    import logging

    logging.disable(logging.WARNING)  # the converters' warnings about odd (mutated) data
    # every entry point imported before the workers are forked: each run starts warm
    import tianshou_offline.cli
    import tianshou_offline.converters.d4rl
    import tianshou_offline.converters.minari
    import tianshou_offline.converters.minari.export
    import tianshou_offline.converters.rl_unplugged
    import tianshou_offline.converters.tianshou
    import tianshou_offline.data.repack
    import tianshou_offline.data.repair
    import tianshou_offline.data.stats  # noqa: F401

    with contextlib.suppress(ImportError):
        import minari  # noqa: F401  (export_minari's, imported lazily)

    root = Path(tempfile.mkdtemp(prefix="tianshou-offline-fuzz-"))
    try:
        seeds = _fuzz.make_seeds(root / "seeds")
        large = _fuzz.make_large_seeds(root / "large", args.large_seeds) if args.large_seeds else []
        seeds += large
        sizes = {s.name: _size(s.path) for s in seeds}
        print("seeds (bytes):", ", ".join(f"{k} {v}" for k, v in sizes.items()))
        pool = _fuzz.Pool(args.workers, args.time_limit, int(args.memory_limit * 2**30))
        seed_runs = list(pool.run(_fuzz.seed_jobs(seeds, time_limit=args.seed_time_limit,
                                                  entries=args.entries)))  # fmt: skip
        bad_seeds = [r for r in seed_runs if r.outcome != "ok"]
        for r in bad_seeds:
            print(f"seed {r.job.seed} fails {r.job.entry}: {r.outcome} {r.detail}")
        limits = _fuzz.relative_time_limits(seed_runs, args.time_limit, args.time_factor)
        for (kind, entry, v), limit in sorted(limits.items()):
            print(f"time limit {limit:g} s: {entry} {_fuzz.OPTIONS[entry][v]} of {kind} mutants")
        work = root / "mutants"
        work.mkdir()
        summary = _fuzz.Summary()
        t0 = time.perf_counter()
        small = [s for s in seeds if s not in large]
        jobs = _fuzz.jobs_for(
            small,
            args.mutants,
            args.seed,
            work,
            entries_per_mutant=args.entries_per_mutant,
            time_limits=limits,
            only=_only(args.only, small, 0, args.mutants),
            entries=args.entries,
        )
        if large:  # after the small ones, numbered on, from a seed of their own
            jobs = itertools.chain(jobs, _fuzz.jobs_for(
                large, args.large_mutants, args.seed + 10**6, work, first=args.mutants,
                time_limits=limits, only=_only(args.only, large, args.mutants, args.large_mutants),
                entries=args.entries))  # fmt: skip
        for i, result in enumerate(pool.run(jobs)):
            summary.add(result)
            if (i + 1) % args.progress_every == 0:
                elapsed = time.perf_counter() - t0
                print(f"{i + 1} runs, {len(summary.mutants)} mutants, {elapsed:.0f} s; this "
                      f"process {_fuzz._status('VmRSS') >> 20} MB resident", flush=True)  # fmt: skip
                print(summary.table(), flush=True)
        seconds = time.perf_counter() - t0
        runs = sum(sum(c.values()) for c in summary.counts.values())
        print(
            f"\n{len(summary.mutants)} mutants (seed {args.seed}), {runs} runs in {seconds:.0f} s "
            f"on {args.workers} workers; limits {args.time_limit:g} s (or {args.time_factor:g} "
            f"x the seed's run) and "
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
                "slowest_runs": [
                    {"entry": r.job.entry, "seconds": r.seconds, "peak_mb": r.peak_mb,
                     "outcome": r.outcome, "mutant": f"{r.job.seed}#{r.job.mutant}"}
                    for r in summary.slowest[:3]
                ],
                "largest_peak_runs": [
                    {"entry": r.job.entry, "seconds": r.seconds, "peak_mb": r.peak_mb,
                     "outcome": r.outcome, "mutant": f"{r.job.seed}#{r.job.mutant}"}
                    for r in summary.peak[:3]
                ],
                "seed_bytes": sizes,
                "seed_runs": len(seed_runs),
                "seed_seconds_max": max((r.seconds for r in seed_runs), default=0.0),
                "time_limits": [
                    {"seed": kind, "entry": entry, "options": _fuzz.OPTIONS[entry][v],
                     "seconds": limit}
                    for (kind, entry, v), limit in sorted(limits.items())
                ],
                "seed_failures": [f"{r.job.seed} {r.job.entry}: {r.outcome}" for r in bad_seeds],
            }  # fmt: skip
        if args.json:
            Path(args.json).write_text(json.dumps(doc, indent=1))
        missed = [f"{len(summary.failures)} failing runs (untyped, inconsistent, timeout, "
                  "memory or crash)"] if summary.failures else []  # fmt: skip
        missed += [f"seed {r.job.seed} fails {r.job.entry}: {r.outcome}" for r in bad_seeds]
        settings = {k: v for k, v in vars(args).items() if k in (
            "mutants", "workers", "time_limit", "time_factor", "seed_time_limit", "memory_limit",
            "entries_per_mutant", "large_seeds", "large_mutants")}  # fmt: skip
        name = f"{args.mutants}-seed{args.seed}" + (
            f"-large{args.large_seeds}mb" if args.large_seeds else "")  # fmt: skip
        if args.only or args.entries:
            print("not kept: a partial run (--only, --entries)")
            return report.finish(missed, args.check)
        return report.keep(BENCHMARK, name, settings=settings,
                           figures=doc, code=CODE, load=load, missed=missed, check=args.check,
                           seeds=[args.seed])  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)


BENCHMARK = "fuzz"


def missed_targets(records: list[dict[str, Any]]) -> list[str]:
    return [f"{r['name']}: {sum(r['figures']['counts'][e].get(o, 0) for e in r['figures']['counts'] for o in _fuzz.FAILURES)} failing runs"
            for r in records
            if any(r["figures"]["counts"][e].get(o, 0) for e in r["figures"]["counts"] for o in _fuzz.FAILURES)]  # fmt: skip


def table(records: list[dict[str, Any]]) -> str:
    """Each kept run's outcome table, its slowest and largest runs and its refused
    allocations."""
    out = []
    for r in records:
        f, st = r["figures"], r["settings"]
        large = (f" + {st['large_mutants']} of two ~{st['large_seeds']} MB seeds written at run time"
                 if st.get("large_seeds") else "")  # fmt: skip
        time_limit = f"{st['time_limit']:g} s"
        if "time_factor" in st:
            longer = f["time_limits"]
            top = max(longer, key=lambda x: x["seconds"], default=None)
            time_limit += (
                f" or {st['time_factor']:g} × the unmutated seed's run of the same entry point and "
                f"option set where that is longer ({len(longer)} of them, up to "
                f"{top['seconds']:g} s: `{top['entry']}` of {top['seed']})" if top else
                f" or {st['time_factor']:g} × the unmutated seed's run where that is longer (none)"
            )  # fmt: skip
        lines = [
            f"Seed {f['seed']}: {st['mutants']:,} mutants{large}, {f['runs']:,} runs in "
            f"{f['seconds']:.0f} s on {st['workers']} workers; limits {time_limit} and "
            f"{st['memory_limit']:g} GiB per run; largest input {max(f['seed_bytes'].values()) / 1e6:,.1f} MB.",
            "",
            "| entry point | runs | " + " | ".join(_fuzz.OUTCOMES) + " |",
            "|---|---:|" + "---:|" * len(_fuzz.OUTCOMES),
        ]  # fmt: skip
        total: dict[str, int] = {}
        for entry in _fuzz.ENTRY_POINTS:
            c = f["counts"].get(entry)
            if not c:
                continue
            for o in _fuzz.OUTCOMES:
                total[o] = total.get(o, 0) + c.get(o, 0)
            lines.append(f"| {entry} | {sum(c.values()):,} | "
                         + " | ".join(f"{c.get(o, 0):,}" for o in _fuzz.OUTCOMES) + " |")  # fmt: skip
        lines.append(f"| **all** | {sum(total.values()):,} | "
                     + " | ".join(f"{total.get(o, 0):,}" for o in _fuzz.OUTCOMES) + " |")  # fmt: skip
        slow, peak = f["slowest_runs"][0], f["largest_peak_runs"][0]
        lines += [
            "",
            f"Slowest run {slow['seconds']:.2f} s (`{slow['entry']}`, {slow['outcome']}, "
            f"{slow['mutant']}); largest peak memory {peak['peak_mb']:.1f} MB above the worker's "
            f"baseline (`{peak['entry']}`, {peak['outcome']}, {peak['mutant']}).",
        ]
        refused = f["refused_allocations"]
        if refused:
            without = sum("without an address-space limit too" in x["detail"] for x in refused)
            lines.append(
                f"{len(refused)} typed errors came after an allocation sized by a corrupt field "
                f"was refused at every probe (> {_fuzz.PROBE_STEPS_GIB[-1]} GiB beyond the limit), "
                f"{without} of them also without any address-space limit."
            )
        groups: dict[str, list[dict[str, Any]]] = {}
        for x in f["failures"]:
            detail = " ".join(x["detail"].split())[:140]  # one line (details may hold newlines)
            groups.setdefault(f"`{x['entry']}` {x['outcome']}: {detail}", []).append(x)
        if groups or f.get("seed_failures"):
            lines.append("")
            lines.append("Failures:")
        for what in f.get("seed_failures", []):
            lines.append(f"- unmutated seed {what}")
        for what, xs in groups.items():
            mutation = " ".join(xs[0]["mutation"].split())[:80]
            lines.append(f"- {len(xs)} × {what} (e.g. {xs[0]['mutant']}: {mutation})")
        out.append("\n".join(lines))
    out.append(results.provenance_line(records))
    return "\n\n".join(out)


def readme_section() -> str:
    """The documentation's section: :func:`table` of the kept results."""
    return table(results.read_results(BENCHMARK))


def _mutant_number(text: str) -> tuple[str | None, int]:
    """``--only``'s ``writer_dict#397`` (or ``397``): the seed's name (None) and the number."""
    kind, _, number = text.rpartition("#")
    try:
        return kind or None, int(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NUMBER or SEED#NUMBER") from None


def _only(
    wanted: list[tuple[str | None, int]] | None, seeds: list[_fuzz.Seed], first: int, n: int
) -> set[int] | None:
    """The mutant numbers of ``wanted`` among the ``n`` mutants of ``seeds`` (numbered from
    ``first``, the seeds in turn), each checked to be of the seed it names."""
    if wanted is None:
        return None
    out = set()
    for kind, m in wanted:
        if not first <= m < first + n or not seeds:
            continue
        name = seeds[(m - first) % len(seeds)].name
        if kind is not None and kind != name:
            raise SystemExit(f"error: mutant {m} is a mutant of {name}, not of {kind}")
        out.add(m)
    return out


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


if __name__ == "__main__":
    sys.exit(main())
