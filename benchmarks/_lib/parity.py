"""What the return-parity benchmarks (``parity_continuous.py``, ``parity_discrete.py``)
share: the table of both sides' returns, the check that paired runs really trained on the
same mini-batches, and how a run is kept (their statistics are :mod:`benchmarks._lib.stats`)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from benchmarks._lib import report, results
from benchmarks._lib.stats import diff_cell, mean_std

T = TypeVar("T")

Column = tuple[str, Callable[[Any], float], bool]
"""A metric of the table: its title, its value in a run, whether a difference column follows."""


def pairing_summary(runs: Sequence[Any], stream_id: Callable[[Any], object]) -> str:
    """In how many (algorithm, seed) pairs of a paired run both sides consumed the same
    mini-batch stream (``stream_id(run)``: a digest recorded by the run, None if unknown).

    :param runs: objects with ``algorithm``, ``seed``, ``implementation`` and ``sampling``.
    """
    by_key = {(r.algorithm, r.seed, r.implementation): r for r in runs if r.sampling == "paired"}
    pairs = [
        (r, by_key[(r.algorithm, r.seed, "tianshou")])
        for r in runs
        if r.sampling == "paired"
        and r.implementation == "ours"
        and (r.algorithm, r.seed, "tianshou") in by_key
    ]
    if not pairs:
        return "mini-batches: unpaired (each side its own generator)"
    same = sum(stream_id(a) is not None and stream_id(a) == stream_id(b) for a, b in pairs)
    return f"mini-batches: paired; the same random stream on both sides in {same}/{len(pairs)} runs"


def sides(runs: Sequence[Any], algorithm: str) -> tuple[list[Any], list[Any]]:
    """The runs of ``algorithm`` on each side (ours, Tianshou's), each in seed order."""

    def side(implementation: str) -> list[Any]:
        mine = (r for r in runs if r.algorithm == algorithm and r.implementation == implementation)
        return sorted(mine, key=lambda r: r.seed)

    return side("ours"), side("tianshou")


def format_table(
    runs: Sequence[Any],
    labels: Mapping[str, str],
    columns: Sequence[Column],
    *,
    both_sides: bool,
) -> str:
    """The Markdown table of both sides' returns: a row per algorithm of ``labels`` (its
    label, in this order) that has runs of ours, and for each of ``columns`` the mean ± SD
    over seeds of each side, then (where the column asks for it) the difference of the means,
    paired over seeds when both sides ran the same seeds.

    :param both_sides: leave out an algorithm without Tianshou runs (else its Tianshou cells
        are ``—``).
    """
    head, align = "| algorithm ", "|---"
    for title, _, difference in columns:
        head += f"| ours: {title} | Tianshou: {title} " + ("| difference " if difference else "")
        align += "|---:|---:" + ("|---:" if difference else "")
    rows = [head + "| seeds |", align + "|---:|"]
    for name, label in labels.items():
        ours, ts = sides(runs, name)
        if not ours or (both_sides and not ts):
            continue
        paired = [r.seed for r in ours] == [r.seed for r in ts]
        cells = []
        for _, value, difference in columns:
            a = [value(r) for r in ours]
            b = [value(r) for r in ts]
            cells += [mean_std(a), mean_std(b)]
            if difference:
                cells.append(diff_cell(a, b, paired) if b else "—")
        rows.append(f"| {label} | " + " | ".join(cells) + f" | {len(ours)} |")
    return "\n".join(rows)


def summary(
    runs: Sequence[T], table: Callable[[Sequence[T]], str], stream_id: Callable[[T], object]
) -> str:
    """``table(runs)``, then the :func:`pairing_summary` line (in how many (algorithm, seed)
    pairs both sides trained on the same mini-batches)."""
    return f"{table(runs)}\n{pairing_summary(runs, stream_id)}"


def shown(
    args: argparse.Namespace,
    benchmark: str,
    block: Callable[[Mapping[str, Any]], str],
    run_type: Callable[..., T],
    table: Callable[[Sequence[T]], str],
    stream_id: Callable[[T], object],
) -> list[T] | None:
    """What a parity benchmark prints instead of running: with ``--table-only``/``--readme``
    its kept results (:func:`~benchmarks._lib.report.show_blocks` of ``block``; returns no
    runs), with ``--table-from`` the :func:`summary` of the runs of those earlier ``--json``
    files (lists of runs as dicts, in file order; returns them); None when it is to run."""
    if args.table_only or args.readme:
        report.show_blocks(args, benchmark, block)
        return []
    if args.table_from:
        loaded = [run_type(**r) for f in args.table_from for r in json.loads(Path(f).read_text())]
        print(summary(loaded, table, stream_id))
        return loaded
    return None


def result_name(
    paired: bool, variants: Sequence[str], chosen: Sequence[str], default: Sequence[str]
) -> str:
    """The kept result's name of a parity run: ``paired`` or ``unpaired``, then the options
    that change what is compared (``variants``, e.g. ``cql-double-q``), then the algorithms
    when not all of the ``default`` ones ran (so a partial rerun does not replace a full
    one)."""
    parts = ["paired" if paired else "unpaired", *variants]
    if list(chosen) != list(default):
        parts += chosen
    return "-".join(parts)


def keep_runs(
    benchmark: str,
    name: str,
    runs: Sequence[Any],
    *,
    settings: Mapping[str, Any],
    code: Sequence[str],
    load: results.LoadMonitor,
    data: Path,
) -> None:
    """Keep a parity run: every run's figures (``dataclasses.asdict``), the seeds, the
    hash of the data file."""
    report.keep(
        benchmark, name, settings=settings, figures={"runs": [asdict(r) for r in runs]},
        code=code, load=load, missed=[], check=False, seeds=sorted({r.seed for r in runs}),
        data={data.name: results.file_sha256(data)},
    )  # fmt: skip
