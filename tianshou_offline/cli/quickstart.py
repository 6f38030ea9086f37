"""``tianshou-offline quickstart``: record expert data, train, evaluate, save replayable policies.

The results table goes to stdout, row by row as each is measured; training progress goes to
stderr through the examples' one progress policy
(:func:`~tianshou_offline.cli.example_args.training_progress`: tqdm on a terminal, a plain
line every few seconds otherwise).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from tianshou_offline.cli._run import Subparsers, UsageError, check_output

if TYPE_CHECKING:
    from tianshou.utils import BaseLogger

QUICKSTART_FILES = (
    "cartpole_expert.hdf5",
    "bc_policy.pt",
    "pendulum_expert.hdf5",
    "td3bc_pendulum_policy.pt",
)
"""``tianshou_offline.quickstart.quickstart_files`` (repeated so that a refused rerun is an
error in a fraction of a second, before torch is imported; tests/test_quickstart.py checks
that they agree)."""

QUICKSTART_PROGRESS_INTERVAL_S = 10.0
"""Seconds between plain progress lines (its training runs take 10–30 s each)."""


def _progress(desc: str, total_steps: int) -> tuple[BaseLogger | None, bool]:
    from tianshou_offline.cli.example_args import training_progress

    return training_progress(
        None,
        enabled=True,
        total_steps=total_steps,
        desc=desc,
        interval_s=QUICKSTART_PROGRESS_INTERVAL_S,
    )


def cmd_quickstart(args: argparse.Namespace) -> int:
    for flag in (
        "episodes",
        "epochs",
        "steps_per_epoch",
        "batch_size",
        "td3bc_steps",
        "eval_episodes",
    ):
        if getattr(args, flag) < 1:
            name = "--" + flag.replace("_", "-")
            raise UsageError(f"quickstart: {name} is {getattr(args, flag)}; expected at least 1")
    if args.workdir:
        workdir = check_output(
            args.workdir, flag="--workdir", overwrite=None, directory=True, parents=True
        )
        existing = [n for n in QUICKSTART_FILES if (workdir / n).exists()]
        if existing and not args.overwrite:
            from tianshou_offline.errors import OutputExistsError

            raise OutputExistsError(
                f"--workdir {workdir}: holds {', '.join(existing)} from an earlier run; pass "
                "--overwrite to replace them, or give a new --workdir"
            )
    else:
        workdir = Path(tempfile.mkdtemp(prefix="tianshou_offline_quickstart_"))
    from tianshou_offline.quickstart import TABLE_HEADER, QuickstartRow, run_quickstart

    header_shown = False

    def show_row(row: QuickstartRow) -> None:
        nonlocal header_shown
        if not header_shown:
            print(f"\n{TABLE_HEADER}\n{'-' * len(TABLE_HEADER)}", flush=True)
            header_shown = True
        print(row.line(), flush=True)

    print(f"quickstart: working in {workdir}", flush=True)
    result = run_quickstart(
        workdir,
        episodes=args.episodes,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        eval_episodes=args.eval_episodes,
        seed=args.seed,
        continuous_steps=args.td3bc_steps,
        overwrite=args.overwrite,
        progress=_progress,
        on_row=show_row,
    )
    print()
    width = max(len(f"{f.env_id} {f.kind}:") for f in result.outputs) + 2
    for f in result.outputs:
        print(f"{f'{f.env_id} {f.kind}:':<{width}}{f.path}")
    print("\nreplay a policy (record new episodes with it):")
    for f in result.outputs:
        if f.kind == "policy":
            name = f.path.stem.removesuffix("_policy")
            print(
                f"  tianshou-offline record --env {f.env_id} --policy {f.path} "
                f"--episodes 10 -o {name}_replay.hdf5"
            )
    return 0


def register(sub: Subparsers) -> None:
    """Add ``quickstart`` to the ``tianshou-offline`` command."""
    q = sub.add_parser(
        "quickstart",
        help="record CartPole and Pendulum expert data, train BC and TD3+BC, evaluate",
        description="Record expert episodes of CartPole-v1 and Pendulum-v1 to HDF5, train "
        "behaviour cloning and TD3+BC on them, evaluate, and save policies that "
        "`tianshou-offline record --policy FILE` replays (about a minute on one core).",
    )
    q.add_argument("--workdir", help="where files go (default: a new temporary directory)")
    q.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the files of an earlier run in --workdir (default: refuse)",
    )
    q.add_argument("--episodes", type=int, default=20, help="expert episodes to record")
    q.add_argument("--epochs", type=int, default=5)
    q.add_argument(
        "--steps-per-epoch", "--step-per-epoch", dest="steps_per_epoch", type=int, default=1000
    )
    q.add_argument("--batch-size", dest="batch_size", type=int, default=64)
    q.add_argument(
        "--td3bc-steps",
        dest="td3bc_steps",
        type=int,
        default=2000,
        help="gradient steps of TD3+BC on the Pendulum data",
    )
    q.add_argument("--eval-episodes", dest="eval_episodes", type=int, default=10)
    q.add_argument("--seed", type=int, default=0)
    q.set_defaults(func=cmd_quickstart)
