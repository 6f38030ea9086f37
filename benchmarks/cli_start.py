#!/usr/bin/env python3
"""Start time of ``tianshou-offline --help`` and every ``convert``/``export`` ``--help``.

Target (issue 10): under 1 s each with the ``test`` extra (TensorFlow) installed
(``--check``: exit 1 when missed). Reference: ``python -c pass`` (the interpreter's own
start), measured interleaved in the same run. Every run writes a result file under
``benchmarks/results/cli_start/``; ``--table-only`` / ``--readme`` print / write the README
table from the kept results.

    python -m benchmarks.cli_start [--repeats 7] [--check]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from benchmarks._lib import report, results

BENCHMARK = "cli_start"
CODE = ("benchmarks/cli_start.py", "tianshou_offline/cli", "tianshou_offline/__init__.py")
TARGET_S = 1.0
COMMANDS = [
    ["--help"],
    ["convert", "--help"],
    ["convert", "d4rl", "--help"],
    ["convert", "minari", "--help"],
    ["convert", "rl-unplugged-atari", "--help"],
    ["convert", "tfds", "--help"],
    ["convert", "tianshou", "--help"],
    ["export", "minari", "--help"],
]


def _time(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def table(records: Sequence[dict[str, Any]]) -> str:
    """The README table: each command's median start time and its ratio to the interpreter's."""
    lines = ["| command | median s | ÷ `python -c pass` | < 1 s |", "|---|---:|---:|---|"]
    for r in records:
        ref = r["figures"]["python -c pass"]
        lines.append(f"| `python -c pass` | {ref:.3f} | 1.0× | |")
        for name, m in r["figures"]["commands"].items():
            ok = "yes" if m < TARGET_S else "**no**"
            lines.append(f"| `tianshou-offline {name}` | {m:.3f} | {m / ref:.1f}× | {ok} |")
    return "\n".join(lines) + "\n\n" + results.provenance_line(records)


def readme_section() -> str:
    """The README's section: :func:`table` of every kept result."""
    return table(results.read_results(BENCHMARK))


def missed_targets(records: Sequence[dict[str, Any]]) -> list[str]:
    return [f"tianshou-offline {name}: {m:.2f} s ≥ {TARGET_S} s" for r in records
            for name, m in r["figures"]["commands"].items() if m >= TARGET_S]  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    p.add_argument("--repeats", type=int, default=7)
    report.add_arguments(p, target=f"every command < {TARGET_S} s", table=True)
    args = p.parse_args()
    if args.table_only or args.readme:
        return report.show_kept(args, BENCHMARK, table, missed_targets)
    load = results.LoadMonitor().start()
    exe = shutil.which("tianshou-offline")
    base = [exe] if exe else [sys.executable, "-m", "tianshou_offline.cli"]
    reference = [sys.executable, "-c", "pass"]
    times: dict[str, list[float]] = {" ".join(c): [] for c in COMMANDS}
    ref: list[float] = []
    for _ in range(args.repeats):  # interleaved: each round runs every command once
        ref.append(_time(reference))
        for c in COMMANDS:
            times[" ".join(c)].append(_time([*base, *c]))
    r = statistics.median(ref)
    print(f"{'command':<42} {'median s':>9} {'÷ python -c pass':>17}  target < 1 s")
    print(f"{'python -c pass':<42} {r:9.3f} {1.0:17.1f}")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(
            f"{'tianshou-offline ' + name:<42} {m:9.3f} {m / r:17.1f}  {'ok' if m < 1 else 'MISSED'}"
        )
    load.stop()
    figures = {"python -c pass": r,
               "commands": {name: statistics.median(ts) for name, ts in times.items()}}  # fmt: skip
    path = results.write_result(
        BENCHMARK, "help", settings={"repeats": args.repeats, "entry": "console script"
        if exe else "python -m tianshou_offline.cli"}, figures=figures, code=CODE, load=load,
    )  # fmt: skip
    print(f"kept: {path.relative_to(results.REPO)}")
    return report.finish(missed_targets([json.loads(path.read_text())]), args.check)


if __name__ == "__main__":
    raise SystemExit(main())
