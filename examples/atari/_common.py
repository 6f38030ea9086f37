"""Shared plumbing of the offline Atari examples (``atari_{il,bcq,cql,crr}.py``).

Each example builds its network, policy and algorithm in its own file; this module parses
the flags users know from Tianshou's offline Atari examples (both spellings:
``--load-buffer-name`` and ``--load_buffer_name``; unknown flags are an error), loads the
buffer, builds the test environments and runs Tianshou's ``OfflineTrainer`` with TensorBoard
logging, best/last weights-only checkpoints, resume and a final evaluation.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import pprint
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _no_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm.algorithm_base import OfflineAlgorithm
from tianshou.data import Collector, CollectStats, ReplayBuffer
from tianshou.env import BaseVectorEnv
from tianshou.trainer import OfflineTrainerParams
from tianshou.utils import BaseLogger, TensorboardLogger
from torch.utils.tensorboard import SummaryWriter

from tianshou_offline.algorithms.discrete_base import DiscretePolicy
from tianshou_offline.atari import make_atari_env, make_atari_vector_env
from tianshou_offline.errors import TianshouOfflineError

log = logging.getLogger("atari_example")


def _flag(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, name: str, **kwargs: Any
) -> None:
    """Add ``--a-b`` with its ``--a_b`` spelling (Tianshou's examples use the dash form; some
    users' scripts the underscore form)."""
    names = [f"--{name}"]
    if "-" in name:
        names.append(f"--{name.replace('-', '_')}")
    parser.add_argument(*names, dest=name.replace("-", "_"), **kwargs)


def make_parser(algo_name: str, description: str, *, lr: float) -> argparse.ArgumentParser:
    """The flags shared by all Atari examples (defaults as Tianshou's examples).

    Each example adds its own algorithm flags to the returned parser.
    """
    p = argparse.ArgumentParser(
        prog=f"atari_{algo_name}.py",
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _flag(p, "task", type=str, default="PongNoFrameskip-v4", help="ale-py env id")
    _flag(p, "seed", type=int, default=1626)
    _flag(p, "eps-test", type=float, default=0.001, help="ε-greedy noise when evaluating")
    _flag(p, "lr", type=float, default=lr)
    _flag(p, "gamma", type=float, default=0.99)
    _flag(p, "epoch", type=int, default=100)
    _flag(p, "update-per-epoch", type=int, default=10000, help="gradient steps per epoch")
    _flag(p, "batch-size", type=int, default=32)
    _flag(p, "hidden-sizes", type=int, nargs="*", default=[512], help="head hidden widths")
    _flag(p, "test-num", type=int, default=10, help="evaluation episodes per test")
    _flag(p, "frames-stack", type=int, default=4)
    _flag(
        p,
        "scale-obs",
        type=int,
        choices=(0, 1),
        default=1,
        help="feed pixels / 255 to the net (Tianshou's examples default to 0: raw pixels)",
    )
    _flag(p, "logdir", type=str, default="log")
    _flag(p, "render", type=float, default=0.0, help="seconds between rendered frames (watch)")
    _flag(p, "resume-path", type=str, default=None, help="weights-only policy.pth to resume from")
    _flag(p, "resume-id", type=str, default=None, help="wandb run id to resume")
    _flag(p, "logger", type=str, default="tensorboard", choices=["tensorboard", "wandb"])
    _flag(p, "wandb-project", type=str, default="offline_atari.benchmark")
    _flag(p, "watch", action="store_true", help="only evaluate the policy (--resume-path)")
    _flag(p, "log-interval", type=int, default=100, help="gradient steps between update logs")
    _flag(
        p,
        "load-buffer-name",
        type=str,
        default="./expert_DQN_PongNoFrameskip-v4.hdf5",
        help="the offline data: a tianshou-offline HDF5 file, a Tianshou save_hdf5 file "
        "(read without unpickling), or RL Unplugged output (see --buffer-from-rl-unplugged)",
    )
    _flag(
        p,
        "buffer-from-rl-unplugged",
        action="store_true",
        help="--load-buffer-name is the RL Unplugged converter's output: a file, a directory "
        "of shard files, or a glob; shards are joined into one buffer with exact stacks",
    )
    _flag(
        p,
        "allow-pickle",
        action="store_true",
        help="allow unpickling (.pkl buffers, pickled columns of Tianshou files): runs code "
        "from the file, only for files you trust",
    )
    _flag(p, "device", type=str, default="cuda" if torch.cuda.is_available() else "cpu")
    # not in Tianshou's examples
    _flag(p, "threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    _flag(
        p,
        "max-episode-steps",
        type=int,
        default=None,
        help="time limit of evaluation episodes in agent steps (default: the game's own)",
    )
    return p


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse strictly: an unknown flag is an error (exit code 2), unlike Tianshou's
    ``parse_known_args``, which silently ignores typos."""
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


@dataclass
class Setup:
    """What an example needs to build its networks."""

    env: gym.Env[Any, Any]
    test_envs: BaseVectorEnv
    state_shape: tuple[int, ...]
    num_actions: int
    device: torch.device


def make_setup(args: argparse.Namespace) -> Setup:
    """Seed everything, build one env (for the spaces) and the test vector env."""
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    env_kwargs: dict[str, Any] = {
        "frame_stack": args.frames_stack,
        "max_episode_steps": args.max_episode_steps,
    }
    env = make_atari_env(args.task, seed=args.seed, **env_kwargs)
    assert isinstance(env.action_space, gym.spaces.Discrete)
    if args.render > 0:  # --render: show the test episodes in a window
        env_kwargs["render_mode"] = "human"
    test_envs = make_atari_vector_env(args.task, args.test_num, seed=args.seed, **env_kwargs)
    shape = tuple(int(x) for x in env.observation_space.shape or ())
    print("Observations shape:", shape)
    print("Actions:", int(env.action_space.n))
    return Setup(
        env=env,
        test_envs=test_envs,
        state_shape=shape,
        num_actions=int(env.action_space.n),
        device=torch.device(args.device),
    )


def load_training_buffer(args: argparse.Namespace, setup: Setup) -> ReplayBuffer:
    """Load ``--load-buffer-name`` and check it against the environment.

    :raises TianshouOfflineError: missing file, unsafe or unknown format, or data that does
        not fit the environment (observation shape, action count).
    """
    path = str(args.load_buffer_name)
    if args.buffer_from_rl_unplugged:
        buffer = _load_rl_unplugged(path)
    else:
        p = Path(path)
        if not p.exists():
            raise TianshouOfflineError(
                f"{p}: no such buffer file; record one with `tianshou-offline record --env "
                f"{args.task} --policy CHECKPOINT --eps 0.2 --steps N -o {p.name}` (see docs/ATARI.md)"
            )
        if p.suffix == ".pkl":
            if not args.allow_pickle:
                raise TianshouOfflineError(
                    f"{p}: a pickled buffer; unpickling runs code from the file. Pass "
                    "--allow-pickle if you trust it, or save it with Tianshou's "
                    "buffer.save_hdf5() and load that file"
                )
            import pickle

            with p.open("rb") as f:
                buffer = pickle.load(f)  # explicitly allowed by the user (--allow-pickle)
        else:  # exact stacks where the file stores patches (RL Unplugged, TFDS)
            from tianshou_offline import load_buffer

            buffer = load_buffer(p, allow_pickle=args.allow_pickle, include_info=False)
    _check_buffer(buffer, setup, path)
    print("Replay buffer size:", len(buffer), flush=True)
    return buffer


def _load_rl_unplugged(path: str) -> ReplayBuffer:
    try:
        from tianshou_offline.converters.rl_unplugged import load_rl_unplugged
    except ImportError as e:
        raise TianshouOfflineError(
            "--buffer-from-rl-unplugged needs tianshou_offline.converters.rl_unplugged "
            f"(pip install 'tianshou-offline[rlu]'): {e}"
        ) from e
    import glob

    matches = sorted(glob.glob(path)) if any(c in path for c in "*?[") else []
    if any(c in path for c in "*?[") and not matches:
        raise TianshouOfflineError(f"{path}: no files match")
    buffer: ReplayBuffer = load_rl_unplugged([Path(m) for m in matches] if matches else path)
    return buffer


def _check_buffer(buffer: ReplayBuffer, setup: Setup, path: str) -> None:
    if len(buffer) == 0:
        raise TianshouOfflineError(f"{path}: the buffer is empty")
    sample = buffer[np.array([0])]
    obs_shape = tuple(np.asarray(sample.obs).shape[1:])
    if obs_shape != setup.state_shape:
        raise TianshouOfflineError(
            f"{path}: observations have shape {obs_shape} (stack_num={buffer.stack_num}); the "
            f"environment's are {setup.state_shape} (--frames-stack, --task)"
        )
    act = np.asarray(buffer.act[: len(buffer)])
    if act.size and (act.min() < 0 or act.max() >= setup.num_actions):
        raise TianshouOfflineError(
            f"{path}: actions span {act.min()}..{act.max()}; {setup.env.spec.id if setup.env.spec else 'the env'} "
            f"has {setup.num_actions} actions (a different game or action set?)"
        )


def make_logger(args: argparse.Namespace, algo_name: str) -> tuple[BaseLogger, str]:
    """A TensorBoard (or wandb) logger under ``logdir/task/algo/seed/time``."""
    now = datetime.datetime.now().strftime("%y%m%d-%H%M%S")
    log_name = os.path.join(args.task.replace("/", "_"), algo_name, str(args.seed), now)
    log_path = os.path.join(args.logdir, log_name)
    os.makedirs(log_path, exist_ok=True)
    writer = SummaryWriter(log_path)
    writer.add_text("args", str(vars(args)))
    logger: BaseLogger
    if args.logger == "wandb":
        from tianshou.utils import WandbLogger

        wandb_logger = WandbLogger(
            update_interval=args.log_interval,
            name=log_name.replace(os.path.sep, "__"),
            run_id=args.resume_id,
            config=args,
            project=args.wandb_project,
        )
        wandb_logger.load(writer)
        logger = wandb_logger
    else:
        logger = TensorboardLogger(writer, update_interval=args.log_interval)
    return logger, log_path


def run(
    args: argparse.Namespace,
    algo_name: str,
    setup: Setup,
    algorithm: OfflineAlgorithm[Any],
    save_actor: Callable[[str], None],
) -> None:
    """Resume, watch or train, then evaluate — the flow of Tianshou's examples.

    :param save_actor: writes the acting network as a policy checkpoint (for
        ``tianshou-offline record --policy``) to the given path.
    """
    policy = algorithm.policy
    assert isinstance(policy, DiscretePolicy)
    algorithm.to(setup.device)
    if args.resume_path:
        state = torch.load(args.resume_path, map_location=setup.device, weights_only=True)
        algorithm.load_state_dict(state)
        print("Loaded agent from:", args.resume_path)
    test_collector = Collector[CollectStats](algorithm, setup.test_envs, exploration_noise=True)

    def watch() -> None:
        print("Testing agent ...")
        policy.set_eps_inference(args.eps_test)
        setup.test_envs.seed(args.seed)
        test_collector.reset()
        result = test_collector.collect(n_episode=args.test_num, render=args.render or None)
        assert result.returns_stat is not None
        print(
            f"Mean return over {result.n_collected_episodes} episodes: "
            f"{result.returns_stat.mean:.2f} ± {result.returns_stat.std:.2f} "
            f"(length {result.lens_stat.mean if result.lens_stat else float('nan'):.0f})"
        )

    if args.watch:
        watch()
        return

    buffer = load_training_buffer(args, setup)
    logger, log_path = make_logger(args, algo_name)
    print("Logging to", log_path)

    def save_best_fn(alg: Any) -> None:
        torch.save(alg.state_dict(), os.path.join(log_path, "policy.pth"))
        save_actor(os.path.join(log_path, "policy_actor.pt"))

    policy.set_eps_inference(args.eps_test)
    result = algorithm.run_training(
        OfflineTrainerParams(
            buffer=buffer,
            test_collector=test_collector,
            max_epochs=args.epoch,
            epoch_num_steps=args.update_per_epoch,
            test_step_num_episodes=args.test_num,
            batch_size=args.batch_size,
            save_best_fn=save_best_fn,
            logger=logger,
            show_progress=sys.stderr.isatty(),
        )
    )
    last: Any = algorithm  # Tianshou's Algorithm.state_dict (with optimizer states) is untyped
    torch.save(last.state_dict(), os.path.join(log_path, "last.pth"))
    save_actor(os.path.join(log_path, "last_actor.pt"))
    pprint.pprint(result)
    watch()


def main_guard(main: Callable[[Sequence[str] | None], None]) -> None:
    """Run ``main``; a package error prints one line and exits with code 2."""
    try:
        main(None)
    except TianshouOfflineError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
