"""The command-line options every benchmark with a target or a README table shares, the
exit status of ``--check``, and the start of a measuring run."""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from benchmarks._lib import results


def add_arguments(
    parser: argparse.ArgumentParser, *, target: str | None = None, table: bool = False
) -> None:
    """``--check`` (with a ``target``: its description), and with ``table``
    ``--table-only``/``--readme`` (the README table from the kept results)."""
    if target is not None:
        parser.add_argument(
            "--check", action="store_true",
            help=f"exit 1 when the target is missed ({target})".replace("%", "%%"),  # argparse's %
        )
    if table:
        parser.add_argument(
            "--table-only", action="store_true", help="print the table of the kept results"
        )
        parser.add_argument("--readme", action="store_true", help="write it into README.md")


def finish(missed: Sequence[str], check: bool) -> int:
    """Print the missed targets (stderr); the exit status: 1 when ``check`` and any missed."""
    if missed:
        print("missed targets:\n" + "\n".join(f"- {m}" for m in missed), file=sys.stderr)
    return 1 if check and missed else 0


def show_kept(
    args: argparse.Namespace,
    benchmark: str,
    table: Callable[[list[dict[str, Any]]], str],
    missed_targets: Callable[[list[dict[str, Any]]], list[str]] | None = None,
    *,
    latest: bool = True,
) -> int:
    """``--table-only``/``--readme``: print (and with ``--readme`` write into README.md) the
    table of the kept results of ``benchmark`` (with ``latest`` the newest per name, else
    all of them); the exit status of :func:`finish` (a benchmark without a target: 0)."""
    from benchmarks._lib import readme

    records = results.read_results(benchmark, latest=latest)
    text = table(records)
    if args.readme:
        readme.write_sections({benchmark: text})
    print(text)
    missed = missed_targets(records) if missed_targets is not None else []
    return finish(missed, getattr(args, "check", False))


def per_result(
    records: Sequence[Mapping[str, Any]], render: Callable[[Mapping[str, Any]], str]
) -> str:
    """A generated section of one block per kept result (``render(record)``), then the
    results' :func:`~benchmarks._lib.results.provenance_line`."""
    return "\n\n".join([*map(render, records), results.provenance_line(records)])


def show_blocks(
    args: argparse.Namespace,
    benchmark: str,
    render: Callable[[Mapping[str, Any]], str],
    missed_targets: Callable[[list[dict[str, Any]]], list[str]] | None = None,
) -> int:
    """:func:`show_kept` of a benchmark whose section is one block per kept result
    (:func:`per_result` with ``render``)."""
    return show_kept(args, benchmark, functools.partial(per_result, render=render), missed_targets)


def start_run(threads: int) -> results.LoadMonitor:
    """The start of a measuring run in this process: warnings-only logging, ``threads``
    torch threads, and the machine's load monitored from now on."""
    import torch

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(threads)
    return results.LoadMonitor().start()


def kept_section(benchmark: str, render: Callable[[Mapping[str, Any]], str]) -> str:
    """The README section of ``benchmark``: :func:`per_result` of its kept results."""
    return per_result(results.read_results(benchmark), render)


def keep(
    benchmark: str,
    name: str,
    *,
    settings: Mapping[str, Any],
    figures: Mapping[str, Any],
    code: Sequence[str],
    load: results.LoadMonitor,
    missed: Sequence[str],
    check: bool,
    seeds: Sequence[int] = (),
    data: Mapping[str, str] | None = None,
) -> int:
    """Write the run's result file (:func:`benchmarks._lib.results.write_result`), print where,
    and :func:`finish`."""
    path = results.write_result(
        benchmark, name, settings=settings, figures=figures, code=code, load=load, seeds=seeds,
        data=data,
    )  # fmt: skip
    print(f"kept: {path.relative_to(results.REPO)}")
    return finish(missed, check)
