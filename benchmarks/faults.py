"""Every writer under every write fault, many times at random moments; prints a table per
writer and fault and keeps the result file.

    python -m benchmarks.faults --trials 100 --seed 1

The writers, faults and checks are those of ``tests/test_faults.py`` (the harness is
:mod:`benchmarks._lib.faults`): the converters ``convert d4rl``, ``convert minari`` (HDF5
and Arrow storage), ``convert tianshou`` (a ``ReplayBuffer``'s and a ``VectorReplayBuffer``'s
file), ``convert tfds`` (an RLDS dataset prepared here with tensorflow-datasets, with and
without ``--frame-stack``) and ``convert rl-unplugged-atari`` (two GZIP TFRecord shards),
``BufferWriter``, ``EpisodeRecorder``, ``make-datasets``, ``export minari``, ``repack``, a
grid cell + report, a policy checkpoint, a Decision Transformer's checkpoint and a training
checkpoint (``last.pt``) written over the previous one, each under ``RLIMIT_FSIZE``,
``ENOSPC`` and ``EIO`` from a random write call (an ``LD_PRELOAD`` shim), a full tmpfs (in
a user+mount namespace), a read-only output directory (``readonly``: a read-only bind mount
there) and the output directory deleted at a random write call (``vanish``, by the shim). A
trial's moment is a random fraction in [0, 1.1) of what the writer needs (its largest file's
bytes, its write calls, its total bytes): most trials fail somewhere in the run, a few finish
(``readonly`` has no moment: every trial fails at once).

Columns: ``trials``; ``typed`` (the fault bit and the writer raised ``OutputWriteError`` /
the CLI exited 2 with one ``error:`` line naming the output and the cause); ``finished``
(the fault came too late to bite; the output must then be complete); ``intact`` (every output
present complete, the earlier output beside it unchanged, the recorder's file holding exactly
its committed episodes; ``vanish``: nothing made again where the directory was, and no run
that finishes as if it had not vanished); ``temps left``; ``untyped`` (any other exception or exit); ``crash``
(the process died). The target: ``intact`` = ``trials``, 0 temporaries, 0 untyped, 0 crashes.

``--readme`` rewrites the README's section from the kept results (nothing is run): each
writer under each fault from the newest result that ran it (``--faults`` runs some faults).
"""

from __future__ import annotations

import argparse
import collections
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._lib import faults as harness
from benchmarks._lib.readme import write_sections
from benchmarks._lib.results import LoadMonitor, provenance_line, read_results, write_result

BENCHMARK = "faults"

CODE = (
    "benchmarks/faults.py",
    "benchmarks/_lib/faults",
    "tianshou_offline/data",
    "tianshou_offline/recording",
    "tianshou_offline/datasets",
    "tianshou_offline/scale/grid.py",
    "tianshou_offline/scale/grid_cell.py",
    "tianshou_offline/scale/seed_group.py",
    "tianshou_offline/converters",
    "tianshou_offline/cli",
    "tianshou_offline/training.py",
)


def table(rows: list[dict[str, Any]]) -> tuple[str, dict[str, dict[str, int]]]:
    """The table (text) and its counts per ``writer/fault``."""
    counts: dict[str, dict[str, int]] = collections.defaultdict(
        lambda: dict.fromkeys(
            ("trials", "typed", "finished", "intact", "temps_left", "untyped", "crash"), 0
        )
    )
    for r in rows:
        c = counts[f"{r['writer']}/{r['fault']}"]
        c["trials"] += 1
        c["typed"] += r["outcome"] == "typed"
        c["finished"] += r["outcome"] == "ok"
        c["untyped"] += r["outcome"] == "untyped"
        c["crash"] += r["outcome"] == "crash"
        c["temps_left"] += bool(r["temps"])
        c["intact"] += r["outcome"] != "crash" and not r["wrong"] and r["earlier_intact"]
    head = ("writer", "fault", "trials", "typed", "finished", "intact", "temps left",
            "untyped", "crash")  # fmt: skip
    lines = ["{:<20} {:<7} {:>6} {:>6} {:>8} {:>6} {:>10} {:>7} {:>5}".format(*head)]
    for key in sorted(counts):
        writer, fault = key.split("/")
        c = counts[key]
        lines.append(
            f"{writer:<20} {fault:<7} {c['trials']:>6} {c['typed']:>6} {c['finished']:>8} "
            f"{c['intact']:>6} {c['temps_left']:>10} {c['untyped']:>7} {c['crash']:>5}"
        )
    return "\n".join(lines), dict(counts)


def readme_section() -> str:
    """The README's table: the kept results' counts, summed over the faults per writer; each
    writer under each fault from the newest result that ran it (a run of some faults is kept
    beside a run of the others)."""
    records = read_results(BENCHMARK)
    lines = [
        "| writer | trials | typed error | finished | outputs intact | temporaries left | "
        "untyped | crash |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes: list[str] = []
    shown: set[str] = set()
    per_writer: dict[str, dict[str, int]] = {}
    records.sort(key=lambda r: str(r["created"]), reverse=True)
    for r in records:
        used = sorted(k for k in r["figures"]["counts"] if k not in shown)
        for key in used:
            c = r["figures"]["counts"][key]
            total = per_writer.setdefault(key.split("/")[0], dict.fromkeys(c, 0))
            for k, v in c.items():
                total[k] += v
        shown.update(used)
        if not used:
            continue
        by_faults: dict[tuple[str, ...], list[str]] = {}  # the writers shown, by faults shown
        for writer in sorted({k.split("/")[0] for k in used}):
            shown_faults = tuple(f for f in r["settings"]["faults"] if f"{writer}/{f}" in used)
            by_faults.setdefault(shown_faults, []).append(writer)
        skipped = r["figures"]["skipped"]
        notes.append(
            "; ".join(f"{', '.join(ws)}: {r['settings']['trials']} trials per writer under each "
                      f"of {', '.join(fs)}" for fs, ws in by_faults.items())
            + (f" ({', '.join(skipped)} skipped here)" if skipped else "")
            + f"; {r['figures']['seconds']:.0f} s in all (result {r['name']}, code "
            f"{r['versions']['code_fingerprint']})."
        )  # fmt: skip
    for writer in sorted(per_writer):
        c = per_writer[writer]
        lines.append(
            f"| {writer} | {c['trials']} | {c['typed']} | {c['finished']} | {c['intact']} | "
            f"{c['temps_left']} | {c['untyped']} | {c['crash']} |"
        )
    for note in notes:
        lines += ["", note]
    lines += ["", provenance_line(records)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=100, help="trials per writer and fault")
    p.add_argument("--seed", type=int, default=1, help="seed of the moments")
    p.add_argument("--writers", nargs="+", default=list(harness.WRITERS),
                   choices=list(harness.WRITERS))  # fmt: skip
    p.add_argument("--faults", nargs="+", default=list(harness.FAULTS),
                   choices=list(harness.FAULTS))  # fmt: skip
    p.add_argument("--no-result", action="store_true", help="do not write a result file")
    p.add_argument("--failures", type=int, default=20, help="failing trials to print")
    p.add_argument("--readme", action="store_true", help="rewrite the README section; run nothing")
    args = p.parse_args(argv)
    if args.readme:
        changed = write_sections({BENCHMARK: readme_section()})
        print(f"README sections changed: {changed or 'none'}")
        return 0

    rng = random.Random(args.seed)
    moments = {
        (w, f): [rng.uniform(0.0, 1.1) for _ in range(args.trials)]
        for f in args.faults
        for w in args.writers
    }
    work = Path(tempfile.mkdtemp(prefix="tianshou-offline-faults-"))
    t0 = time.perf_counter()
    try:
        with LoadMonitor() as load:
            skipped, rows = harness.sweep(
                args.writers, tuple(args.faults), lambda w, f: moments[(w, f)], work,
                timeout=3600,
            )  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - t0
    text, counts = table(rows)
    print(text)
    for fault, why in skipped.items():
        print(f"{fault}: skipped ({why})")
    bad = [r for r in rows
           if r["outcome"] in ("untyped", "crash") or r["wrong"] or r["temps"]
           or not r["earlier_intact"]]  # fmt: skip
    for r in bad[: args.failures]:
        print(f"FAILED {r['writer']} {r['fault']} at {r['value']}: {r['outcome']} "
              f"{r['message'][-300:]!r} wrong={r['wrong']} temps={r['temps']}")  # fmt: skip
    print(f"{len(rows)} trials in {seconds:.0f} s; {len(bad)} failed the checks")
    if not args.no_result:
        everyone = args.writers == list(harness.WRITERS)
        name = "all-writers" if everyone else "-".join(w.replace(" ", "-") for w in args.writers)
        if args.faults != list(harness.FAULTS):
            name += "-under-" + "-".join(args.faults)
        path = write_result(
            BENCHMARK,  # a run of some writers or faults is kept beside the others' results
            name,
            settings={
                "trials": args.trials,
                "writers": args.writers,
                "faults": args.faults,
                "moments": "uniform [0, 1.1) of what the writer needs",
            },
            figures={
                "counts": counts,
                "skipped": skipped,
                "failures": bad[:50],
                "seconds": round(seconds, 1),
            },
            seeds=[args.seed],
            code=CODE,
            load=load,
        )
        print(
            f"result: {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}"
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
