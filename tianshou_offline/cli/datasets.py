"""``tianshou-offline make-datasets``: a D4RL-style dataset family for any gymnasium env;
``tianshou-offline reference-scores``: random and expert references for any dataset."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tianshou_offline.cli._run import Subparsers, UsageError, check_output, positive_int

LEVEL_NAMES = ("random", "medium", "expert", "medium-replay", "medium-expert")
"""``tianshou_offline.datasets.LEVELS`` (repeated so that ``--help`` imports nothing heavy;
tests/datasets/test_datasets.py checks that they agree)."""


def _levels(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [n for n in names if n not in LEVEL_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown level(s) {', '.join(unknown) or '(none)'}; expected a comma-separated "
            f"list of {', '.join(LEVEL_NAMES)}"
        )
    return names


def _check_env(env_id: str) -> None:
    """A registered id must exist (with gymnasium's message, e.g. "Did you mean: 'CartPole'?")
    before torch is imported, as ``datasets.envs`` checks it again; an entry point
    ``module:Class`` is checked there."""
    if ":" in env_id:
        return
    import gymnasium as gym

    try:
        gym.spec(env_id)
    except gym.error.Error as e:
        raise UsageError(
            f"--env {env_id}: not a registered gymnasium id ({' '.join(str(e).split())}); "
            "expected an id such as Hopper-v5 or an entry point module:Class"
        ) from None


def cmd_make_datasets(args: argparse.Namespace) -> int:
    env_kwargs: dict[str, Any] = {}
    if args.env_kwargs:
        try:
            env_kwargs = json.loads(args.env_kwargs)
        except ValueError as e:
            raise UsageError(f"--env-kwargs: not JSON ({e}); expected an object") from e
        if not isinstance(env_kwargs, dict):
            raise UsageError(f"--env-kwargs: found {type(env_kwargs).__name__}; expected an object")
    if not 0.0 < args.medium_fraction <= 1.0:
        raise UsageError(f"--medium-fraction {args.medium_fraction}: expected in (0, 1]")
    if not 0.0 <= args.data_eps <= 1.0:
        raise UsageError(f"--data-eps {args.data_eps}: expected in [0, 1]")
    check_output(args.output, flag="-o/--output", overwrite=None, directory=True, parents=True)
    _check_env(args.env)
    import dataclasses

    import torch

    from tianshou_offline.datasets import DQNParams, FamilyConfig, SACParams, make_datasets

    torch.set_num_threads(args.threads)
    d4rl = args.scale == "d4rl"
    sac, dqn = SACParams(), DQNParams()
    net: dict[str, Any] = {}
    if args.hidden_sizes:
        net["hidden_sizes"] = tuple(args.hidden_sizes)
    if args.batch_size:
        net["batch_size"] = args.batch_size
    if args.start_steps is not None:
        net["start_steps"] = args.start_steps
    sac, dqn = dataclasses.replace(sac, **net), dataclasses.replace(dqn, **net)
    config = FamilyConfig(
        algorithm=args.algorithm,
        budget=args.budget if args.budget is not None else (1_000_000 if d4rl else None),
        seed=args.seed,
        dataset_steps=(
            args.dataset_steps if args.dataset_steps is not None else (1_000_000 if d4rl else None)
        ),
        levels=args.levels,
        medium_fraction=args.medium_fraction,
        expert=args.expert,
        reference_episodes=args.reference_episodes,
        eval_episodes=args.eval_episodes,
        checkpoint_every=args.checkpoint_every,
        data_eps=args.data_eps,
        sac=sac,
        dqn=dqn,
        compression=args.compression,
    )
    result = make_datasets(
        args.env,
        args.output,
        config=config,
        env_kwargs=env_kwargs,
        max_episode_steps=args.max_episode_steps,
        overwrite=args.overwrite,
    )
    lo, hi = result.reference_scores
    print(
        f"{result.env_id}: {result.algorithm.upper()} for {result.budget:,} steps"
        + (f" (resumed at {result.resumed_from:,})" if result.resumed_from else "")
        + f"; reference scores: random {lo:.2f}, expert {hi:.2f}; medium = step "
        f"{result.medium.env_step:,} (eval {result.medium.eval_return:.2f}), expert = step "
        f"{result.expert.env_step:,} (eval {result.expert.eval_return:.2f})"
    )
    for r in result.levels.values():
        print(
            f"{r.path}: {r.num_transitions:,} transitions, {r.num_episodes:,} episodes, mean "
            f"return {r.mean_return:.2f} (normalised {r.normalized_score:.1f})"
            + (" — complete, verified" if r.skipped else "")
        )
    print(f"done in {result.seconds:.0f} s; settings and checkpoints: {result.output}/family.json")
    return 0


def _expert_episodes(text: str) -> int:
    """``best-K`` or ``K`` → K."""
    body = text[len("best-") :] if text.startswith("best-") else text
    try:
        k = int(body)
    except ValueError:
        k = 0
    if k < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected best-K (or K), K >= 1: the dataset's K best episodes"
        )
    return k


def cmd_reference_scores(args: argparse.Namespace) -> int:
    from tianshou_offline.data.reference import write_reference_scores
    from tianshou_offline.datasets.reference import compute_reference_scores

    scores = compute_reference_scores(
        args.file,
        args.env,
        expert=args.expert,
        expert_episodes=args.expert_episodes,
        episodes=args.episodes,
        seed=args.seed,
        confidence=args.confidence,
        max_episode_steps=args.max_episode_steps,
    )
    if not args.dry_run:
        where = write_reference_scores(args.file, scores, overwrite=args.overwrite)
    level = f"{100 * scores.confidence:g}%"
    for name, ref in (("random", scores.random), ("expert", scores.expert)):
        print(
            f"{name}: {ref.mean:.6g} ({level} CI [{ref.ci_low:.6g}, {ref.ci_high:.6g}], "
            f"std {ref.std:.4g}, {ref.episodes} episodes; {ref.source})"
        )
    if not args.dry_run:
        print(f"stored in {where}")
    return 0


def register(sub: Subparsers) -> None:
    """Add ``make-datasets`` and ``reference-scores`` to the ``tianshou-offline`` command."""
    r = sub.add_parser(
        "reference-scores",
        help="compute a dataset's random and expert reference scores (for normalised scores) "
        "and store them with it",
        description="Random-policy rollouts and an expert's (a checkpoint's rollouts, or the "
        "dataset's best K episodes) give D4RL's ref_min_score/ref_max_score, each with a "
        "bootstrap confidence interval, stored in the file (tianshou-offline files, converted "
        "ones included) or in a FILE.tianshou_offline.json sidecar (Tianshou and D4RL files, "
        "which are not modified). inspect, the examples and the grid read them.",
    )
    r.add_argument("file", metavar="FILE", help="dataset file (any layout inspect reads)")
    r.add_argument("--env", required=True,
                   help="the dataset's environment: a gymnasium id or module:Class")  # fmt: skip
    who = r.add_mutually_exclusive_group(required=True)
    who.add_argument("--expert", metavar="CKPT", default=None,
                     help="expert policy checkpoint (anything record --policy replays)")  # fmt: skip
    who.add_argument("--expert-episodes", metavar="best-K", type=_expert_episodes, default=None,
                     help="expert score = mean return of the dataset's K best episodes")  # fmt: skip
    r.add_argument("--episodes", type=positive_int, default=100,
                   help="rollouts of the random policy (and of --expert); default 100")  # fmt: skip
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--confidence", type=float, default=0.95,
                   help="level of the bootstrap intervals (default 0.95)")  # fmt: skip
    r.add_argument("--max-episode-steps", type=positive_int, default=None,
                   help="time limit of the rollouts (default: the env's)")  # fmt: skip
    r.add_argument("--overwrite", action="store_true",
                   help="replace reference scores the file already has")  # fmt: skip
    r.add_argument("--dry-run", action="store_true", help="print the scores, store nothing")
    r.set_defaults(func=cmd_reference_scores)

    p = sub.add_parser(
        "make-datasets",
        help="train an online agent and write a D4RL-style dataset family (random, medium, "
        "expert, medium-replay, medium-expert) with reference scores",
        description="Train SAC (Box actions) or DQN (Discrete) online with Tianshou, keep its "
        "checkpoints, and write the D4RL family as HDF5 buffer files with provenance and "
        "reference scores (random and expert mean returns). A rerun with the same settings "
        "resumes and skips complete files; same seed, same data.",
    )
    p.add_argument(
        "--env",
        required=True,
        help="a registered gymnasium id (Hopper-v5) or an entry point module:Class",
    )
    p.add_argument("-o", "--output", required=True, help="output directory (created)")
    p.add_argument("--algorithm", choices=("sac", "dqn"), default=None,
                   help="online agent (default: sac for Box actions, dqn for Discrete)")  # fmt: skip
    p.add_argument("--budget", type=positive_int, default=None,
                   help="online environment steps (default: 300k for SAC, 100k for DQN)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset-steps", type=positive_int, default=None,
                   help="transitions per recorded file, whole episodes (default 100k)")  # fmt: skip
    p.add_argument("--levels", type=_levels, default=LEVEL_NAMES,
                   help=f"comma-separated files to write (default: {','.join(LEVEL_NAMES)})")  # fmt: skip
    p.add_argument("--scale", choices=("default", "d4rl"), default="default",
                   help="d4rl: 1M online steps and 1M transitions per file unless given")  # fmt: skip
    p.add_argument("--medium-fraction", type=float, default=1.0 / 3.0,
                   help="medium = first checkpoint at this fraction from random to expert return "
                   "(default 1/3, D4RL's)")  # fmt: skip
    p.add_argument("--expert", choices=("final", "best"), default="final",
                   help="the expert checkpoint: the last (D4RL) or the best evaluated")  # fmt: skip
    p.add_argument("--reference-episodes", type=positive_int, default=100,
                   help="episodes of the random and expert policies for the reference scores")  # fmt: skip
    p.add_argument("--eval-episodes", type=positive_int, default=10,
                   help="evaluation episodes per online checkpoint")  # fmt: skip
    p.add_argument("--checkpoint-every", type=positive_int, default=None,
                   help="online steps between checkpoints (default: budget / 20)")  # fmt: skip
    p.add_argument("--data-eps", type=float, default=0.05,
                   help="ε of DQN's behaviour policy in medium/expert (SAC samples its policy)")  # fmt: skip
    p.add_argument("--hidden-sizes", type=positive_int, nargs="+", default=None,
                   help="agent MLP widths (default: 256 256 for SAC, 128 128 for DQN)")  # fmt: skip
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="agent batch size (default: 256 for SAC, 64 for DQN)")  # fmt: skip
    p.add_argument("--start-steps", type=int, default=None,
                   help="random actions first (default: 10k SAC, 1k DQN; at most budget / 10)")  # fmt: skip
    p.add_argument(
        "--env-kwargs", default=None, help="JSON object: the env's constructor arguments"
    )
    p.add_argument("--max-episode-steps", type=positive_int, default=None,
                   help="time limit (default: the registered one; 1000 for module:Class)")  # fmt: skip
    p.add_argument("--compression", choices=("gzip", "lzf"), default=None)
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads (default 1)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a family made with other settings, or other files in --output")  # fmt: skip
    p.set_defaults(func=cmd_make_datasets)
