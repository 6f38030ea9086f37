"""``tianshou-offline record``: record episodes of a policy to an HDF5 buffer."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal

from tianshou_offline.cli._run import (
    Subparsers,
    UsageError,
    add_clean_argument,
    check_input,
    check_output,
    clean_outputs,
)


def cmd_record(args: argparse.Namespace) -> int:
    if args.clean:
        return clean_outputs([Path(args.output)])
    if args.episodes is None and args.steps is None:
        raise UsageError("record: give --episodes N or --steps N")
    if args.overwrite and args.append:
        raise UsageError("record: --overwrite and --append are mutually exclusive")
    out = check_output(
        args.output,
        flag="-o/--output",
        overwrite=None if args.append else args.overwrite,
        exists_hint="pass --overwrite to replace it or --append to add episodes to it",
    )
    if args.policy not in ("random", "scripted"):  # a checkpoint: missing before torch
        check_input(args.policy, what="--policy 'random', 'scripted' or a policy checkpoint")
    import gymnasium as gym
    import numpy as np

    from tianshou_offline.progress import progress
    from tianshou_offline.recording import EpisodeRecorder
    from tianshou_offline.recording.dt_policies import play_episode
    from tianshou_offline.recording.policies import make_policy

    atari = _is_atari(args.env)
    try:
        if atari:
            from tianshou_offline.recording.atari import make_atari_env

            env = make_atari_env(
                args.env,
                frame_stack=args.frames_stack,
                max_episode_steps=args.max_episode_steps,
            )
        else:
            env = gym.make(args.env, max_episode_steps=args.max_episode_steps)
    except gym.error.Error as e:
        raise UsageError(f"--env {args.env}: {e}") from e
    scale_obs = None if args.scale_obs is None else bool(args.scale_obs)
    if args.policy not in ("random", "scripted"):
        import torch

        # batch-1 inference: extra intra-op threads only add synchronisation (Atari steps
        # many times slower on a busy machine)
        torch.set_num_threads(args.threads)
    policy = make_policy(args.policy, env, eps=args.eps, seed=args.seed, scale_obs=scale_obs)
    if_exists: Literal["error", "append", "overwrite"] = (
        "overwrite" if args.overwrite else "append" if args.append else "error"
    )
    # Atari: one 84×84 frame per step, stacks rebuilt by the loaded buffer (stack_num)
    compact = atari and args.frames_stack > 1
    extra: dict[str, Any] = {}
    if atari:
        extra = {
            "preprocessing": "AtariPreprocessing+FrameStackObservation",
            "frames_stack": args.frames_stack,
        }
    rec = EpisodeRecorder(
        env,
        out,
        if_exists=if_exists,
        episode_metadata=lambda ep: {"return": ep.episode_return, "length": ep.length},
        compression=args.compression,
        store_obs_next=not compact,
        stack_num=args.frames_stack if compact else 1,
        save_only_last_obs=compact,
        provenance_extra={"policy": args.policy, "eps": args.eps, "seed": args.seed, **extra},
    )
    episodes = steps = 0
    total = args.episodes if args.episodes is not None else args.steps
    unit = "episode" if args.episodes is not None else "step"
    returns: list[float] = []
    try:
        with progress(total=total, unit=unit, desc=f"recording {args.env}") as bar:

            def count_step() -> None:
                nonlocal steps
                steps += 1
                if unit == "step" and steps <= total:  # the last episode may go past N
                    bar.update(1)

            seed = args.seed
            while True:
                if args.episodes is not None and episodes >= args.episodes:
                    break
                if args.steps is not None and steps >= args.steps:
                    break
                obs, _ = rec.reset(seed=seed)
                seed = None if seed is None else seed + 1
                returns.append(play_episode(rec, policy, obs, on_step=count_step))
                episodes += 1
                if unit == "episode":
                    bar.update(1)
    finally:
        rec.close()
    print(
        f"recorded {episodes} episodes, {steps} steps to {out} "
        f"(mean return {np.mean(returns):.2f}; file now holds {rec.num_episodes} episodes)"
    )
    return 0


def _is_atari(env_id: str) -> bool:
    try:
        from tianshou_offline.recording.atari import is_atari_env_id
    except ImportError:  # pragma: no cover
        return False
    return is_atari_env_id(env_id)


def register(sub: Subparsers) -> None:
    """Add ``record`` to the ``tianshou-offline`` command."""
    r = sub.add_parser("record", help="record episodes of a policy to an HDF5 buffer")
    r.add_argument("--env", required=True, help="gymnasium env id, e.g. CartPole-v1")
    r.add_argument(
        "--policy",
        default="random",
        help="'random', 'scripted' (built-in CartPole expert), a policy checkpoint (.pt) or a "
        "Tianshou Atari DQN/QR-DQN policy.pth (weights only)",
    )
    r.add_argument("--episodes", type=int, help="number of episodes to record")
    r.add_argument("--steps", type=int, help="record whole episodes until this many steps")
    r.add_argument("--eps", type=float, default=0.0, help="probability of a random action")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("-o", "--output", required=True, help="output .hdf5 file")
    r.add_argument("--overwrite", action="store_true", help="replace an existing output")
    r.add_argument("--append", action="store_true", help="append to an existing output")
    r.add_argument("--compression", choices=("gzip", "lzf"), default=None)
    add_clean_argument(r)
    r.add_argument(
        "--max-episode-steps",
        type=int,
        default=None,
        help="time limit per episode (agent steps; default: the env's own)",
    )
    atari = r.add_argument_group(
        "Atari",
        "ale-py ids (PongNoFrameskip-v4, ALE/Pong-v5) get AtariPreprocessing + "
        "FrameStackObservation and are written compactly: one 84x84 frame per step, "
        "stack_num=--frames-stack, save_only_last_obs (the loaded buffer rebuilds the stacks)",
    )
    atari.add_argument("--frames-stack", dest="frames_stack", type=int, default=4)
    r.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for a checkpoint policy (batch-1 inference: 1 is fastest)",
    )
    atari.add_argument(
        "--scale-obs",
        dest="scale_obs",
        type=int,
        choices=(0, 1),
        default=None,
        help="the checkpoint's net expects pixels / 255 (default: the checkpoint's setting; "
        "0 for Tianshou DQN/QR-DQN state dicts)",
    )
    r.set_defaults(func=cmd_record)
