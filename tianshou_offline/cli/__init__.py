"""The ``tianshou-offline`` command: quickstart, record, inspect, repair, convert, export,
make-datasets, evaluate.

One module per command group (``quickstart``, ``record``, ``inspect``, ``convert``,
``export``), each with a ``register(subparsers)`` that adds its parsers and handlers. This
package is the only place that parses arguments, prints, or turns errors into exit codes: bad
input prints one line (``error: ...``) to stderr and exits with code 2, no traceback.
Building the parser imports no library module beyond ``errors``, so ``--help`` is instant;
each handler imports what it runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from tianshou_offline._version import __version__
from tianshou_offline.cli import (
    _no_tensorflow,  # noqa: F401  (first: no TensorFlow via TensorBoard)
    convert,
    datasets,
    evaluate,
    export,
    grid,
    inspect,
    quickstart,
    record,
)
from tianshou_offline.cli._run import (
    ArgumentParser,
    UsageError,
    configure_logging,
    parse_arguments,
    run_command,
    run_script,
)

GROUPS = (quickstart, record, inspect, convert, export, datasets, evaluate, grid)


def build_parser() -> argparse.ArgumentParser:
    """The ``tianshou-offline`` argument parser (every command group registered)."""
    parser = ArgumentParser(
        prog="tianshou-offline",
        description="Offline-RL datasets as Tianshou ReplayBuffers (HDF5): record, convert, "
        "inspect, train.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the command; returns the exit code."""
    args = parse_arguments(build_parser(), argv)
    configure_logging(args.verbose)
    return run_command(args.func, args)


__all__ = ["UsageError", "build_parser", "main", "run_command", "run_script"]
