"""``tianshou-offline quickstart``: record CartPole expert data, train, evaluate."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tianshou_offline.cli._run import Subparsers


def cmd_quickstart(args: argparse.Namespace) -> int:
    from tianshou_offline.quickstart import run_quickstart

    workdir = (
        Path(args.workdir)
        if args.workdir
        else Path(tempfile.mkdtemp(prefix="tianshou_offline_quickstart_"))
    )
    print(f"quickstart: working in {workdir}", flush=True)
    result = run_quickstart(
        workdir,
        episodes=args.episodes,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        eval_episodes=args.eval_episodes,
        seed=args.seed,
    )
    print()
    print(result.table())
    print()
    for name, path in result.files.items():
        print(f"{name}: {path}")
    return 0


def register(sub: Subparsers) -> None:
    """Add ``quickstart`` to the ``tianshou-offline`` command."""
    q = sub.add_parser("quickstart", help="record CartPole expert data, train BC, evaluate")
    q.add_argument("--workdir", help="where files go (default: a new temporary directory)")
    q.add_argument("--episodes", type=int, default=20, help="expert episodes to record")
    q.add_argument("--epochs", type=int, default=5)
    q.add_argument(
        "--steps-per-epoch", "--step-per-epoch", dest="steps_per_epoch", type=int, default=1000
    )
    q.add_argument("--batch-size", dest="batch_size", type=int, default=64)
    q.add_argument("--eval-episodes", dest="eval_episodes", type=int, default=10)
    q.add_argument("--seed", type=int, default=0)
    q.set_defaults(func=cmd_quickstart)
