#!/usr/bin/env python3
"""The README's quickstart transcript and its running time, from a kept run.

Runs the README's command (``tianshou-offline quickstart --workdir qs``) in a fresh temporary
directory, as a user would (the console script, or ``python -m tianshou_offline.cli`` where it
is not installed), and keeps what it printed on stdout and how long it took from the start of
the process to its exit. ``--readme`` writes the transcript and the time into the README's
Quickstart section; ``tests/test_quickstart.py`` checks that the transcript is what the
command prints (modulo the time column).

    python -m benchmarks.quickstart_time [--repeats 1]
    python -m benchmarks.quickstart_time --readme
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._lib import report, results

BENCHMARK = "quickstart_time"
CODE = (
    "benchmarks/quickstart_time.py",
    "tianshou_offline/quickstart.py",
    "tianshou_offline/cli",
    "tianshou_offline/algorithms",
    "tianshou_offline/data",
    "tianshou_offline/recording",
)
ARGV = ("quickstart", "--workdir", "qs")
"""The README's command, after ``tianshou-offline``."""


def _command() -> tuple[list[str], str]:
    exe = shutil.which("tianshou-offline")
    if exe:
        return [exe], "console script"
    return [sys.executable, "-m", "tianshou_offline.cli"], "python -m tianshou_offline.cli"


def run_once() -> tuple[float, str]:
    """One run of the README's command in a fresh directory: (wall seconds, its stdout)."""
    base, _ = _command()
    with tempfile.TemporaryDirectory(prefix="quickstart-") as cwd:
        start = time.perf_counter()
        p = subprocess.run([*base, *ARGV], cwd=cwd, capture_output=True, text=True, check=False,
                           env={**os.environ, "TQDM_DISABLE": "1"})  # fmt: skip
        wall = time.perf_counter() - start
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"error: quickstart_time: the quickstart exited {p.returncode}: {tail}")
    return wall, p.stdout


def section(records: Sequence[dict[str, Any]]) -> str:
    """The README's Quickstart transcript (the newest kept run) and the sentence on its time."""
    if not records:
        return "_No kept run: `python -m benchmarks.quickstart_time`._"
    r = records[-1]
    f: dict[str, Any] = r["figures"]
    stdout = str(f["stdout"])
    load = r["machine"]["load"]
    walls = ", ".join(f"{w:.0f} s" for w in f["wall_s"])
    return (
        "```text\n$ tianshou-offline " + " ".join(ARGV) + "\n" + stdout.rstrip("\n")
        + "\n```\n\n"
        f"The run above took **{statistics.median(f['wall_s']):.0f} s** from start to exit "
        f"({len(f['wall_s'])} run(s): {walls}) on {r['machine']['cpus']} cores at load "
        f"{load['median']:.1f} (`python -m benchmarks.quickstart_time`).\n\n"
        + results.provenance_line([r])
    )


def readme_section() -> str:
    """The README's section: :func:`section` of the newest kept result."""
    return section(results.read_results(BENCHMARK))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--repeats", type=int, default=1, help="runs of the command (default 1)")
    report.add_arguments(p, table=True)
    args = p.parse_args(argv)
    if args.table_only or args.readme:
        return report.show_kept(args, BENCHMARK, section)
    if args.repeats < 1:
        p.error(f"--repeats is {args.repeats}; expected at least 1")
    walls: list[float] = []
    stdout = ""
    with results.LoadMonitor() as load:
        for _ in range(args.repeats):
            wall, out = run_once()
            walls.append(wall)
            stdout = stdout or out
            print(f"quickstart: {wall:.1f} s", file=sys.stderr)
    print(stdout, end="")
    _, entry = _command()
    path = results.write_result(
        BENCHMARK, "quickstart", settings={"argv": list(ARGV), "repeats": args.repeats,
                                           "entry": entry}, figures={"wall_s": walls, "stdout": stdout},
        code=CODE, load=load,
    )  # fmt: skip
    print(f"kept: {Path(path).relative_to(results.REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
