#!/usr/bin/env python3
"""Wall time of the README's test command (``python -m pytest``), kept like every other figure.

Target (issue 24): the whole suite in at most 600 s on two quiet cores (``--check``: exit 1
when missed, or when any test failed). The run writes a result file under
``benchmarks/results/test_suite/`` (counts, wall time, the slowest tests, the machine's load
during the run); ``--table-only`` / ``--readme`` print / write the README's paragraph from the
kept results. Run it from the environment CI uses (a fresh venv with the ``test`` extra)::

    python -m benchmarks.test_suite [--check] [-- PYTEST ARGS]
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._lib import report, results

BENCHMARK = "test_suite"
CODE = (
    "benchmarks/test_suite.py",
    "tianshou_offline",
    "tests",
    "examples",
    "setup.cfg",
    "pyproject.toml",
)
TARGET_S = 600.0
SLOWEST = 10


def _counts(junit: Path) -> tuple[dict[str, int], list[tuple[str, float]]]:
    """Passed/failed/errors/skipped and every test's time from pytest's JUnit XML."""
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    times: list[tuple[str, float]] = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        times.append((name, float(case.get("time", 0.0))))
        if case.find("failure") is not None:
            counts["failed"] += 1
        elif case.find("error") is not None:
            counts["errors"] += 1
        elif case.find("skipped") is not None:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    times.sort(key=lambda t: -t[1])
    return counts, times


def workers(pytest_args: Sequence[str], cpus: int | None = None) -> int:
    """The pytest-xdist workers a run starts: the last ``-n`` of pyproject.toml's ``addopts``
    and the extra arguments (``logical``/``auto``: one per CPU, at most ``--maxprocesses``;
    no ``-n`` or ``-n 0``: one process)."""
    import tomllib

    conf = tomllib.loads((results.REPO / "pyproject.toml").read_text())
    addopts = conf.get("tool", {}).get("pytest", {}).get("ini_options", {}).get("addopts", "")
    words = [*(shlex.split(addopts) if isinstance(addopts, str) else addopts), *pytest_args]
    n, most = "0", None
    for i, w in enumerate(words):
        if w in ("-n", "--numprocesses") and i + 1 < len(words):
            n = words[i + 1]
        elif w.startswith("--numprocesses="):
            n = w.split("=", 1)[1]
        elif w.startswith("-n") and len(w) > 2:
            n = w[2:]
        elif w.startswith("--maxprocesses="):
            most = int(w.split("=", 1)[1])
        elif w == "--maxprocesses" and i + 1 < len(words):
            most = int(words[i + 1])
    if n in ("logical", "auto"):
        count = cpus or os.cpu_count() or 1
        return min(count, most) if most else count
    return max(int(n), 1)


def summary(figures: dict[str, Any], machine: dict[str, Any]) -> str:
    """One run's counts, wall time, load and slowest tests, in a sentence."""
    load = machine.get("load") or {}
    slow = ", ".join(f"`{n.split('::')[-1]}` {s:.0f} s" for n, s in figures["slowest"][:5])
    return (
        f"`python -m pytest`: {figures['passed']} passed, {figures['failed']} failed, "
        f"{figures['errors']} errors, {figures['skipped']} skipped in "
        f"**{figures['seconds']:.0f} s** (target ≤ {TARGET_S:.0f} s) on {machine['cpus']} cores"
        + (f" ({figures['workers']} pytest-xdist workers)" if figures.get("workers", 1) > 1 else "")
        + ", "
        f"load median {load.get('median', float('nan')):.1f} "
        f"(max {load.get('max', float('nan')):.1f}); slowest: {slow}."
    )


def table(records: Sequence[dict[str, Any]]) -> str:
    """The README's paragraph: each kept run's :func:`summary`, and where it came from."""
    lines = [summary(r["figures"], r["machine"]) for r in records]
    return "\n\n".join(lines) + "\n\n" + results.provenance_line(records)


def readme_section() -> str:
    """The README's section: :func:`table` of the newest kept run."""
    return table(results.read_results(BENCHMARK))


def missed_targets(records: Sequence[dict[str, Any]]) -> list[str]:
    missed = []
    for r in records:
        f = r["figures"]
        if f["seconds"] > TARGET_S:
            missed.append(f"test suite {f['seconds']:.0f} s > {TARGET_S:.0f} s")
        if f["failed"] or f["errors"]:
            missed.append(f"test suite: {f['failed']} failed, {f['errors']} errors")
    return missed


def selects_tests(pytest_args: list[str]) -> bool:
    """Whether extra pytest arguments run less than the whole suite: ``-k``/``-m``, or a test
    path or node id (one that names a file or folder of the repository). An option's value
    (``-p no:cacheprovider``, ``--durations 25``) selects nothing."""
    return any(
        a in ("-k", "-m") or (not a.startswith("-") and (results.REPO / a.split("::")[0]).exists())
        for a in pytest_args
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    p.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    report.add_arguments(p, target=f"suite ≤ {TARGET_S:.0f} s, no failures", table=True)
    args = p.parse_args(argv)
    if args.table_only or args.readme:
        return report.show_kept(args, BENCHMARK, table, missed_targets)
    load = results.LoadMonitor().start()
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             f"--junitxml={junit}", *args.pytest_args],
            cwd=results.REPO,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        counts, times = _counts(junit)
    load.stop()
    figures = {**counts, "seconds": seconds, "exit_code": proc.returncode,
               "workers": workers(args.pytest_args),
               "slowest": [[n, s] for n, s in times[:SLOWEST]]}  # fmt: skip
    print(summary(figures, results.machine(load)))
    selects = selects_tests(args.pytest_args)
    return report.keep(
        BENCHMARK, "partial" if selects else "full",
        settings={"pytest_args": args.pytest_args}, figures=figures, code=CODE, load=load,
        missed=missed_targets([{"figures": figures}]), check=args.check,
    )  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
