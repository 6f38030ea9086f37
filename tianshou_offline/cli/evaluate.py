"""``tianshou-offline evaluate``: estimate and rank policy checkpoints on a dataset, no
environment needed.

- ``evaluate --ope fqe,is,wis,dr,wdr CHECKPOINT… --data FILE``: off-policy estimates of
  every checkpoint (continuous or discrete) with bootstrap intervals, and the ranking by each
  (:func:`tianshou_offline.evaluation.ope.ope_rank`);
- ``evaluate --fqe CHECKPOINT… --data FILE``: fitted Q evaluation of continuous-action
  checkpoints (:func:`tianshou_offline.evaluation.fqe_rank`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from tianshou_offline.cli._run import (
    Subparsers,
    UsageError,
    check_input,
    check_output,
    positive_int,
)

if TYPE_CHECKING:
    from tianshou_offline.algorithms import FQEConfig

CHECKPOINTS = (
    "a checkpoint of a continuous-action policy (policy.pt of the MuJoCo examples, or a "
    "save_policy_checkpoint file)"
)
"""What ``evaluate --fqe`` takes (repeated from ``recording.policies.CONTINUOUS_CHECKPOINT``
so that its errors need no library import)."""


OPE_NAMES = ("fqe", "is", "wis", "dr", "wdr")
"""The estimators of ``--ope`` (``evaluation.estimators.ESTIMATORS``, repeated so that
parsing imports nothing heavy; a test keeps the two equal)."""


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``evaluate``."""
    parser.add_argument(
        "checkpoints",
        nargs="*",
        metavar="CHECKPOINT",
        help="policy checkpoints to estimate with --ope (save_policy_checkpoint files of any "
        "algorithm, continuous or discrete, Atari checkpoints of the examples)",
    )
    parser.add_argument(
        "--ope",
        metavar="LIST",
        help="comma-separated estimators: fqe (fitted Q evaluation), is (per-decision "
        "importance sampling), wis (weighted per-decision IS), dr (doubly robust), wdr "
        "(weighted doubly robust); e.g. --ope fqe,wis,wdr",
    )
    parser.add_argument(
        "--fqe",
        nargs="+",
        metavar="CHECKPOINT",
        help="policy checkpoints (policy.pt of the examples, or any save_policy_checkpoint "
        "file of a continuous policy) to rank by fitted Q evaluation alone",
    )
    parser.add_argument("--data", required=True, metavar="FILE", help="the buffer file")
    parser.add_argument(
        "--steps", type=int, help="FQE gradient steps per checkpoint (default: the FQE config's)"
    )
    parser.add_argument(
        "--behavior",
        choices=("fit", "stored"),
        default="fit",
        help="--ope: the behaviour policy of the importance ratios: fit a behaviour-cloning "
        "model on the data (softmax or Gaussian; default), or read the data's info column "
        "behavior_prob",
    )
    parser.add_argument(
        "--behavior-steps", type=positive_int, default=3000,
        help="--ope: gradient steps of the fitted behaviour model (3000)",
    )  # fmt: skip
    parser.add_argument(
        "--target-std", type=float, default=0.1,
        help="--ope, continuous actions: std of the Gaussian smoothing of a deterministic "
        "policy, in [-1, 1] action units (0.1)",
    )  # fmt: skip
    parser.add_argument(
        "--max-weight", type=float, default=100.0,
        help="--ope: clip cumulative importance weights at this value; 0: no clip (100)",
    )  # fmt: skip
    parser.add_argument(
        "--resamples", type=positive_int, default=1000,
        help="--ope: bootstrap resamples of the 95%% intervals (1000)",
    )  # fmt: skip
    # FQE's settings default to None: the FQE config's (algorithms.FQEConfig and
    # DiscreteFQEConfig, the one place they live; not imported here, to keep --help light)
    parser.add_argument(
        "--batch-size", type=int,
        help="mini-batch size of the FQE and behaviour fits (default: the FQE config's)",
    )  # fmt: skip
    parser.add_argument("--gamma", type=float, help="discount (default: the FQE config's)")
    parser.add_argument(
        "--lr", type=float, help="FQE's Adam learning rate (default: the FQE config's)"
    )
    parser.add_argument(
        "--tau", type=float, help="FQE's target Polyak factor (default: the FQE config's)"
    )
    parser.add_argument(
        "--hidden-sizes", type=int, nargs="+",
        help="FQE's Q-network widths (default: the FQE config's)",
    )  # fmt: skip
    parser.add_argument(
        "--n-step",
        type=int,
        default=1,
        help="regression target horizon: 1 only (an n-step target would follow the data's "
        "actions, not the evaluated policy's)",
    )
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
    if args.ope is not None or args.checkpoints:
        return _cmd_ope(args)
    if not args.fqe:
        raise UsageError(
            "no checkpoints: expected --ope LIST CHECKPOINT... or --fqe CHECKPOINT..."
        )
    if args.n_step != 1:
        raise UsageError(
            f"--n-step {args.n_step}: expected 1 (FQE's target is one-step: an n-step target "
            "would follow the data's actions within the window, not the evaluated policy's)"
        )
    _check_fqe_flags(args)
    for c in args.fqe:
        check_input(c, what=f"{CHECKPOINTS} for --fqe")
    check_input(args.data, what="a buffer file (--data)")
    out = check_output(args.json, flag="--json", overwrite=args.overwrite) if args.json else None
    import torch

    from tianshou_offline.algorithms import FQEConfig
    from tianshou_offline.evaluation import fqe_rank

    torch.set_num_threads(args.threads)
    defaults = FQEConfig()
    gamma = defaults.gamma if args.gamma is None else args.gamma
    steps, batch_size = _steps_and_batch(args, defaults)
    results = fqe_rank(
        args.fqe,
        args.data,
        steps=steps,
        batch_size=batch_size,
        gamma=gamma,
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
        f"FQE: {steps} steps per checkpoint on {args.data}; estimates are discounted "
        f"returns (gamma {gamma}) from the data's initial states"
    )
    if out is not None:
        payload: dict[str, object] = {
            "data": str(args.data),
            "method": "fqe",
            "steps": steps,
            "gamma": gamma,
            "batch_size": batch_size,
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
        _write_json(out, payload, args.overwrite)
    return 0


def _check_fqe_flags(args: argparse.Namespace) -> None:
    """The FQE flags given (None: the FQE config's default) are in range."""
    for flag in ("steps", "batch_size"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UsageError(f"--{flag.replace('_', '-')} {value}: expected at least 1")
    if args.tau is not None and not 0.0 < args.tau <= 1.0:
        raise UsageError(f"--tau {args.tau}: expected 0 < tau <= 1")
    if args.gamma is not None and not 0.0 < args.gamma <= 1.0:
        raise UsageError(f"--gamma {args.gamma}: expected 0 < gamma <= 1")
    if args.lr is not None and not args.lr > 0:
        raise UsageError(f"--lr {args.lr}: expected a positive learning rate")


def _steps_and_batch(args: argparse.Namespace, defaults: FQEConfig) -> tuple[int, int]:
    """``--steps`` and ``--batch-size``, the FQE config's where not given."""
    steps = defaults.steps if args.steps is None else args.steps
    return steps, defaults.batch_size if args.batch_size is None else args.batch_size


def _estimators(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in OPE_NAMES]
    if unknown or not names:
        raise UsageError(
            f"--ope {text}: {', '.join(unknown) or 'no estimator'}; expected a "
            f"comma-separated list of {', '.join(OPE_NAMES)}"
        )
    return tuple(dict.fromkeys(names))


def _cmd_ope(args: argparse.Namespace) -> int:
    if args.fqe:
        raise UsageError("--fqe CHECKPOINT... and --ope: give the checkpoints once, after --ope")
    if args.ope is None:
        raise UsageError(f"checkpoints {' '.join(args.checkpoints)}: expected --ope LIST too")
    if not args.checkpoints:
        raise UsageError("--ope: no checkpoints; expected --ope LIST CHECKPOINT... --data FILE")
    names = _estimators(args.ope)
    _check_fqe_flags(args)
    if args.target_std <= 0 or args.max_weight < 0:
        bad = f"--target-std {args.target_std}" if args.target_std <= 0 else (
            f"--max-weight {args.max_weight}")  # fmt: skip
        raise UsageError(f"{bad}: expected a positive value")
    if args.n_step != 1:
        raise UsageError(f"--n-step {args.n_step}: --ope fits one-step FQE; expected 1")
    for c in args.checkpoints:
        check_input(c, what="a policy checkpoint (a save_policy_checkpoint file)")
    check_input(args.data, what="a buffer file (--data)")
    out = check_output(args.json, flag="--json", overwrite=args.overwrite) if args.json else None
    import torch

    from tianshou_offline.algorithms import FQEConfig
    from tianshou_offline.evaluation.ope import OPESettings, ope_rank
    from tianshou_offline.progress import progress

    torch.set_num_threads(args.threads)
    steps, batch_size = _steps_and_batch(args, FQEConfig())
    settings = OPESettings(
        estimators=names, fqe_steps=steps,
        **({} if args.gamma is None else {"gamma": args.gamma}),
        fqe_hidden=None if args.hidden_sizes is None else tuple(args.hidden_sizes),
        fqe_lr=args.lr, fqe_tau=args.tau, batch_size=batch_size, behavior=args.behavior,
        behavior_steps=args.behavior_steps, target_std=args.target_std,
        max_weight=args.max_weight or None, resamples=args.resamples, seed=args.seed,
        device=args.device,
    )  # fmt: skip
    with progress(total=len(args.checkpoints), desc="OPE", unit="checkpoint") as bar:
        results = ope_rank(args.checkpoints, args.data, settings,
                           on_result=lambda _r: bar.update(1))  # fmt: skip
    cells = {
        (r.checkpoint, n): f"{e.value:.3f} [{e.low:.3f}, {e.high:.3f}] #{r.ranks[n]}"
        for r in results
        for n, e in r.estimates.items()
    }
    width = max(len("checkpoint"), *(len(r.checkpoint) for r in results))
    widths = {n: max(len(n), *(len(cells[r.checkpoint, n]) for r in results)) for n in names}
    print(f"{'checkpoint':<{width}}  " + "  ".join(f"{n:<{widths[n]}}" for n in names))
    for r in results:
        print(f"{r.checkpoint:<{width}}  "
              + "  ".join(f"{cells[r.checkpoint, n]:<{widths[n]}}" for n in names))  # fmt: skip
    for n in names:
        order = sorted(results, key=lambda r: r.ranks[n])
        print(f"ranking by {n}: " + " > ".join(r.checkpoint for r in order))
    for r in results:
        outside = r.implausible()
        if outside and r.value_bounds is not None:
            lo, hi = r.value_bounds
            print(f"warning: {r.checkpoint}: {', '.join(outside)} outside the values the data's "
                  f"rewards allow [{lo:.3g}, {hi:.3g}]: a diverged fit; refit (more --steps, "
                  "another --seed) before trusting it")  # fmt: skip
    clip = f"clipped at {settings.max_weight:g}" if settings.max_weight else "not clipped"
    print(
        f"estimates: discounted returns (gamma {settings.gamma}) from the data's initial states, "
        f"value [95% bootstrap interval over episodes] #rank; FQE {steps} steps; "
        f"behaviour policy {'fitted' if args.behavior == 'fit' else 'stored'}; importance "
        f"weights {clip}"
    )
    if out is not None:
        _write_json(out, {"data": str(args.data), "method": "ope",
                          "settings": {**settings.__dict__, "estimators": list(names)},
                          "checkpoints": [r.to_json() for r in results]},
                    args.overwrite)  # fmt: skip
    return 0


def _write_json(out: Path, payload: dict[str, object], overwrite: bool) -> None:
    from tianshou_offline.data.atomic import atomic_output

    with atomic_output(out, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(payload, indent=2) + "\n")


def register(sub: Subparsers) -> None:
    """Add ``evaluate`` to the ``tianshou-offline`` command."""
    p = sub.add_parser(
        "evaluate",
        help="estimate and rank policy checkpoints on a dataset (off-policy evaluation)",
        description="Off-policy evaluation: --ope estimates the value of each checkpoint's "
        "policy from the data alone with fitted Q evaluation (Le et al. 2019), per-decision "
        "and weighted importance sampling (Precup et al. 2000), doubly robust (Jiang & Li "
        "2016) and weighted doubly robust (Thomas & Brunskill 2016) estimators, each with a "
        "bootstrap interval, and ranks them; --fqe ranks continuous checkpoints by FQE alone. "
        "No environment is run.",
    )
    add_evaluate_arguments(p)
    p.set_defaults(func=cmd_evaluate)
