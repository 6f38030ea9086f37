"""``tianshou-offline evaluate --fqe CHECKPOINT… --data FILE``: rank policy checkpoints by
their fitted-Q-evaluation estimate on a dataset (no environment needed)."""

from __future__ import annotations

import argparse
import json

from tianshou_offline.cli._run import (
    Subparsers,
    UsageError,
    check_input,
    check_output,
    positive_int,
)

CHECKPOINTS = (
    "a checkpoint of a continuous-action policy (policy.pt of the MuJoCo examples, or a "
    "save_policy_checkpoint file)"
)
"""What ``evaluate --fqe`` takes (repeated from ``recording.policies.CONTINUOUS_CHECKPOINT``
so that its errors need no library import)."""


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``evaluate``."""
    parser.add_argument(
        "--fqe",
        nargs="+",
        required=True,
        metavar="CHECKPOINT",
        help="policy checkpoints (policy.pt of the examples, or any save_policy_checkpoint "
        "file of a continuous policy) to rank by fitted Q evaluation",
    )
    parser.add_argument("--data", required=True, metavar="FILE", help="the buffer file")
    parser.add_argument(
        "--steps", type=int, default=20_000, help="FQE gradient steps per checkpoint (20000)"
    )
    parser.add_argument("--batch-size", type=int, default=256, help="mini-batch size (256)")
    parser.add_argument("--gamma", type=float, default=0.99, help="discount (0.99)")
    parser.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate (3e-4)")
    parser.add_argument("--tau", type=float, default=0.005, help="target Polyak factor (0.005)")
    parser.add_argument(
        "--hidden-sizes", type=int, nargs="+", default=[256, 256], help="Q-network widths"
    )
    parser.add_argument("--n-step", type=int, default=1, help="n-step regression target (1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every fit (0)")
    parser.add_argument("--device", default="cpu", help="torch device (cpu)")
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch CPU threads (default 1, as the examples and make-datasets: these small "
        "networks run fastest on one, and several fits on a shared machine far slower)",
    )
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json")


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.steps < 1:
        raise UsageError(f"--steps {args.steps}: expected at least 1")
    if args.n_step < 1:
        raise UsageError(f"--n-step {args.n_step}: expected at least 1")
    if not 0.0 < args.tau <= 1.0:
        raise UsageError(f"--tau {args.tau}: expected 0 < tau <= 1")
    for c in args.fqe:
        check_input(c, what=f"{CHECKPOINTS} for --fqe")
    check_input(args.data, what="a buffer file (--data)")
    out = check_output(args.json, flag="--json", overwrite=args.overwrite) if args.json else None
    import torch

    from tianshou_offline.evaluation import fqe_rank

    torch.set_num_threads(args.threads)
    results = fqe_rank(
        args.fqe,
        args.data,
        steps=args.steps,
        batch_size=args.batch_size,
        gamma=args.gamma,
        hidden_sizes=args.hidden_sizes,
        lr=args.lr,
        tau=args.tau,
        n_step=args.n_step,
        seed=args.seed,
        device=args.device,
        show_progress=True,
    )
    width = max(len("checkpoint"), *(len(str(r.checkpoint)) for r in results))
    print(f"{'checkpoint':<{width}}  {'FQE estimate':>12}  rank")
    for r in results:
        print(f"{r.checkpoint!s:<{width}}  {r.estimate:>12.4f}  {r.rank:>4}")
    print(
        f"FQE: {args.steps} steps per checkpoint on {args.data}; estimates are discounted "
        f"returns (gamma {args.gamma}) from the data's initial states"
    )
    if out is not None:
        from tianshou_offline.data.atomic import publish, temp_path

        payload = {
            "data": str(args.data),
            "method": "fqe",
            "steps": args.steps,
            "gamma": args.gamma,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "checkpoints": [
                {
                    "checkpoint": str(r.checkpoint),
                    "estimate": r.estimate,
                    "rank": r.rank,
                    "final_loss": r.final_loss,
                    "seconds": r.seconds,
                }
                for r in results
            ],
        }
        tmp = temp_path(out)
        try:
            tmp.write_text(json.dumps(payload, indent=2) + "\n")
            publish(tmp, out, overwrite=args.overwrite)
        finally:
            tmp.unlink(missing_ok=True)
    return 0


def register(sub: Subparsers) -> None:
    """Add ``evaluate`` to the ``tianshou-offline`` command."""
    p = sub.add_parser(
        "evaluate",
        help="rank policy checkpoints on a dataset (fitted Q evaluation)",
        description="Fitted Q evaluation (Le et al. 2019; Paine et al. 2020): fit Q of each "
        "checkpoint's policy on the data and rank the checkpoints by the estimated value "
        "E[Q(s0, pi(s0))] over the data's initial states. No environment is run.",
    )
    add_evaluate_arguments(p)
    p.set_defaults(func=cmd_evaluate)
