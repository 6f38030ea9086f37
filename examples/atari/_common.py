"""Shared plumbing of the offline Atari examples (``atari_{il,bcq,cql,crr}.py``).

Each example declares its hyperparameters as a dataclass extending
:class:`~tianshou_offline.cli.example_args.AtariConfig` (the flags users know from Tianshou's
offline Atari examples, in both spellings: ``--load-buffer-name`` and ``--load_buffer_name``;
unknown flags are an error) and builds its network, policy and algorithm in its own file.
This module checks the task, loads and checks the buffer against the environment (before any
network is built), builds the test environments and runs Tianshou's ``OfflineTrainer`` with
TensorBoard logging, a best weights-only checkpoint (``policy.pth``), a training checkpoint
at the end of each epoch (``last.pth``: :mod:`tianshou_offline.training`; ``--resume-path
.../last.pth``, or ``--resume``: the newest run's, continues the run in its directory exactly
where it stopped, so that a run killed at any moment and restarted so ends with the same
weights as one that was not interrupted and logs what it logged, on CPU; every test starts
from the same seeded initial states), resume and a final evaluation. The log directory is made only once
data and environment are known to fit.
"""

from __future__ import annotations

import datetime
import logging
import os
import pprint
from collections.abc import Callable
from contextlib import ExitStack
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
from tianshou.utils import BaseLogger

from tianshou_offline.algorithms import DiscreteConfig, DiscretePolicy
from tianshou_offline.cli.example_args import AtariConfig, example_logger, training_progress
from tianshou_offline.data.ondisk import Memory
from tianshou_offline.errors import (
    DataValidationError,
    SourceNotFoundError,
    StackNumMismatchError,
    TianshouOfflineError,
)
from tianshou_offline.loggers import log_summary
from tianshou_offline.recording.atari import is_atari_env_id, make_atari_env, make_atari_vector_env
from tianshou_offline.recording.policies import AtariHead, save_atari_checkpoint
from tianshou_offline.training import FORMAT as TRAINING_FORMAT
from tianshou_offline.training import (
    holding,
    latest_checkpoint,
    load_training_checkpoint,
    lock_run_directory,
    reseeding_tests,
    run_training,
    save_state,
)

log = logging.getLogger("atari_example")


@dataclass
class Setup:
    """What an example needs to build its networks, and the checked training data."""

    env: gym.Env[Any, Any]
    test_envs: BaseVectorEnv
    state_shape: tuple[int, ...]
    num_actions: int
    device: torch.device
    buffer: ReplayBuffer | None
    """None with ``--watch`` (no training)."""


def make_setup(config: AtariConfig) -> Setup:
    """Threads and seeds; the task checked, one env (for the spaces), the buffer loaded and
    checked against it (unless ``--watch``), then the test vector env.

    :raises TianshouOfflineError: unknown task, missing checkpoint or buffer, unsafe or
        unknown format, data that does not fit the environment.
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    _check_task(config.task)
    if config.resume_path and not Path(config.resume_path).is_file():
        raise SourceNotFoundError(f"{config.resume_path}: no such checkpoint (--resume-path)")
    env_kwargs: dict[str, Any] = {
        "frame_stack": config.frames_stack,
        "max_episode_steps": config.max_episode_steps,
    }
    env = make_atari_env(config.task, seed=config.seed, **env_kwargs)
    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise DataValidationError(
            f"--task {config.task}: actions are {env.action_space}; these examples need "
            "discrete actions"
        )
    shape = tuple(int(x) for x in env.observation_space.shape or ())
    num_actions = int(env.action_space.n)
    print("Observations shape:", shape)
    print("Actions:", num_actions)
    buffer = None
    if not config.watch:
        buffer = load_training_buffer(config)
        _check_buffer(buffer, config, shape, num_actions)
        print("Replay buffer size:", len(buffer), flush=True)
        disk = getattr(buffer, "disk_columns", None)
        if callable(disk):
            mapped = sum(int(np.prod(c.shape)) * c.dtype.itemsize for c in disk().values())
            print(
                f"Replay buffer memory: disk ({mapped / 1e9:.2f} GB of frames memory-mapped; "
                "mini-batches are gathered from the files)",
                flush=True,
            )
        else:
            print("Replay buffer memory: ram", flush=True)
    if config.render > 0:  # --render: show the test episodes in a window
        env_kwargs["render_mode"] = "human"
    test_envs = make_atari_vector_env(config.task, config.test_num, seed=config.seed, **env_kwargs)
    return Setup(
        env=env,
        test_envs=test_envs,
        state_shape=shape,
        num_actions=num_actions,
        device=torch.device(config.device),
        buffer=buffer,
    )


def _check_task(task: str) -> None:
    from tianshou_offline.recording.atari import register_atari_envs

    register_atari_envs()  # MissingDependencyError without ale-py
    if not is_atari_env_id(task) or task not in gym.registry:
        raise SourceNotFoundError(
            f"--task {task}: not an ale-py Atari environment id (e.g. PongNoFrameskip-v4 "
            "or ALE/Pong-v5)"
        )


def load_training_buffer(config: AtariConfig) -> ReplayBuffer:
    """Load ``--load-buffer-name``.

    :raises TianshouOfflineError: missing file, unsafe or unknown format.
    """
    paths = [str(x) for x in config.load_buffer_name]
    if config.buffer_from_rl_unplugged or len(paths) > 1 or Path(paths[0]).is_dir():
        return _load_rl_unplugged(paths, config.memory)
    path = paths[0]
    p = Path(path)
    if not p.exists():
        raise SourceNotFoundError(
            f"{p}: no such buffer file; record one with `tianshou-offline record --env "
            f"{config.task} --policy CHECKPOINT --eps 0.2 --steps N -o {p.name}` (see docs/ATARI.md)"
        )
    if p.suffix == ".pkl":
        if not config.allow_pickle:
            raise TianshouOfflineError(
                f"{p}: a pickled buffer; unpickling runs code from the file. Pass "
                "--allow-pickle if you trust it, or save it with Tianshou's "
                "buffer.save_hdf5() and load that file"
            )
        import pickle

        with p.open("rb") as f:
            buffer: ReplayBuffer = pickle.load(f)  # explicitly allowed (--allow-pickle)
        return buffer
    # exact stacks where the file stores patches (RL Unplugged, TFDS)
    from tianshou_offline import load_buffer

    loaded: ReplayBuffer = load_buffer(
        p, allow_pickle=config.allow_pickle, include_info=False, memory=config.memory
    )
    return loaded


def _load_rl_unplugged(paths: list[str], memory: Memory) -> ReplayBuffer:
    try:
        from tianshou_offline.converters.rl_unplugged import load_rl_unplugged
    except ImportError as e:
        raise TianshouOfflineError(
            "--buffer-from-rl-unplugged needs tianshou_offline.converters.rl_unplugged "
            f"(pip install 'tianshou-offline[rlu]'): {e}"
        ) from e
    import glob

    files: list[Path] = []
    for path in paths:
        matches = sorted(glob.glob(path)) if any(c in path for c in "*?[") else [path]
        if not matches:
            raise SourceNotFoundError(f"{path}: no files match")
        files += [Path(m) for m in matches]
    buffer: ReplayBuffer = load_rl_unplugged(files, memory=memory, include_info=False)
    return buffer


def _check_buffer(
    buffer: ReplayBuffer, config: AtariConfig, state_shape: tuple[int, ...], num_actions: int
) -> None:
    path = ", ".join(config.load_buffer_name)
    if len(buffer) == 0:
        raise DataValidationError(f"{path}: the buffer is empty")
    sample = buffer[np.array([0])]
    obs_shape = tuple(np.asarray(sample.obs).shape[1:])
    stored = int(buffer.stack_num)
    if obs_shape != state_shape and obs_shape[1:] == state_shape[1:] and stored == obs_shape[0]:
        raise StackNumMismatchError(
            f"{path}: stores frame stacks of stack_num={stored}; --frames-stack "
            f"{config.frames_stack} was requested (pass --frames-stack {stored})"
        )
    if obs_shape != state_shape:
        raise DataValidationError(
            f"{path}: observations have shape {obs_shape} (stack_num={buffer.stack_num}); the "
            f"environment's are {state_shape} (--frames-stack, --task)"
        )
    act = np.asarray(buffer.act[: len(buffer)])
    if act.dtype.kind not in "iu" or act.ndim != 1:
        raise DataValidationError(
            f"{path}: actions are {act.dtype} of shape {act.shape[1:]} per step; {config.task} "
            "takes one integer action per step (continuous data? see examples/mujoco)"
        )
    if act.size and (act.min() < 0 or act.max() >= num_actions):
        raise DataValidationError(
            f"{path}: actions span {act.min()}..{act.max()}; {config.task} "
            f"has {num_actions} actions (a different game or action set?)"
        )


def make_logger(
    held: ExitStack, config: AtariConfig, algo_name: str, log_path: str | None = None
) -> tuple[BaseLogger | None, str]:
    """The run's logger (``--logger``: TensorBoard, W&B or none) under
    ``logdir/task/algo/seed/time`` (or ``log_path``, a resumed run's directory), whose lock
    the run holds until ``held`` closes (a second run into it fails at once, writing
    nothing: :func:`~tianshou_offline.training.lock_run_directory`)."""
    now = datetime.datetime.now().strftime("%y%m%d-%H%M%S")
    log_name = os.path.join(config.task.replace("/", "_"), algo_name, str(config.seed), now)
    log_path = log_path or os.path.join(config.logdir, log_name)
    lock_run_directory(held, log_path)
    logger = example_logger(config, log_path, task=config.task, algo_name=algo_name)
    return logger, log_path


@holding  # the run directory's lock, held to the end
def run(
    held: ExitStack,
    config: AtariConfig,
    algo_name: str,
    setup: Setup,
    algorithm: OfflineAlgorithm[Any],
    save_actor: Callable[[str], None],
) -> dict[str, Any]:
    """Resume, watch or train, then evaluate — the flow of Tianshou's examples; returns the
    results (``test_returns``: ``[environment step, mean test return]`` of every test, those
    before a resume included; the final evaluation's mean and std).

    :param save_actor: writes the acting network as a policy checkpoint (for
        ``tianshou-offline record --policy``) to the given path.
    """
    policy = algorithm.policy
    assert isinstance(policy, DiscretePolicy)
    algorithm.to(setup.device)
    if config.resume:  # the newest run's last.pth for this task, algorithm and seed
        runs = Path(config.logdir) / config.task.replace("/", "_") / algo_name / str(config.seed)
        found = latest_checkpoint(runs, "last.pth")
        print(f"--resume: continuing {found}" if found else f"--resume: no run in {runs} yet")
        config.resume_path = str(found) if found else None
    resumed = None
    if config.resume_path and not config.watch:
        # a training checkpoint (last.pth): this run continues exactly where that one stopped
        resumed = load_training_checkpoint(config.resume_path, algorithm, device=setup.device)
    if config.resume_path and resumed is None:
        state = torch.load(config.resume_path, map_location=setup.device, weights_only=True)
        if isinstance(state, dict) and state.get("format") == TRAINING_FORMAT:
            state = state["algorithm"]
        algorithm.load_state_dict(state)
    if config.resume_path:
        print("Loaded agent from:", config.resume_path)
    test_collector = Collector[CollectStats](algorithm, setup.test_envs, exploration_noise=True)

    def watch() -> tuple[float, float]:
        print("Testing agent ...")
        policy.set_eps_inference(config.eps_test)
        setup.test_envs.seed(config.seed)
        test_collector.reset()
        result = test_collector.collect(n_episode=config.test_num, render=config.render or None)
        assert result.returns_stat is not None
        print(
            f"Mean return over {result.n_collected_episodes} episodes: "
            f"{result.returns_stat.mean:.2f} ± {result.returns_stat.std:.2f} "
            f"(length {result.lens_stat.mean if result.lens_stat else float('nan'):.0f})"
        )
        return float(result.returns_stat.mean), float(result.returns_stat.std)

    if config.watch or setup.buffer is None:
        mean, std = watch()
        return {"final_return_mean": mean, "final_return_std": std}

    resume_dir = os.path.dirname(config.resume_path or "") if resumed is not None else None
    logger, log_path = make_logger(held, config, algo_name, resume_dir)
    print("Logging to", log_path)
    last_path = os.path.join(log_path, "last.pth")

    def save_best_fn(alg: Any) -> None:
        save_state(os.path.join(log_path, "policy.pth"), alg.state_dict())  # atomically
        save_actor(os.path.join(log_path, "policy_actor.pt"))

    policy.set_eps_inference(config.eps_test)
    progress_logger, show_progress = training_progress(
        logger,
        enabled=bool(config.show_progress),
        total_steps=config.epoch * config.update_per_epoch,
        desc=f"{algo_name} on {config.task}",
    )
    run = run_training(  # last.pth at each epoch's end: everything a resumed run needs
        algorithm,
        OfflineTrainerParams(
            buffer=setup.buffer,
            test_collector=test_collector,
            max_epochs=config.epoch,
            epoch_num_steps=config.update_per_epoch,
            test_step_num_episodes=config.test_num,
            batch_size=config.batch_size,
            save_best_fn=save_best_fn,
            # every test on the same seeded initial states (a resumed run repeats them)
            test_fn=reseeding_tests(test_collector, setup.test_envs, config.seed),
            logger=progress_logger,
            show_progress=show_progress,
        ),
        last_path,
        resumed=resumed,
    )
    save_actor(os.path.join(log_path, "last_actor.pt"))
    pprint.pprint(run.info)
    mean, std = watch()
    log_summary(logger, {"eval/return_mean": mean, "eval/return_std": std,
                         "eval/episodes": config.test_num})  # fmt: skip
    return {"log_path": log_path, "best_reward": run.info.best_reward,
            "test_returns": run.test_returns, "final_return_mean": mean,
            "final_return_std": std}  # fmt: skip


def actor_saver(
    setup: Setup,
    settings: DiscreteConfig,
    model: torch.nn.Module,
    *,
    head: AtariHead,
    **extra: Any,
) -> Callable[[str], None]:
    """The ``save_actor`` of :func:`run`: writes ``model`` (the acting network) as an Atari
    policy checkpoint (``save_atari_checkpoint``) with the environment's frames and actions
    and the trunk's settings from ``settings``; ``extra``: the head's own settings
    (``num_quantiles``, ``unlikely_action_threshold``)."""
    c, h, w = setup.state_shape

    def save_actor(path: str) -> None:
        save_atari_checkpoint(
            path,
            model,
            head=head,
            num_actions=setup.num_actions,
            frame_stack=c,
            frame_shape=(h, w),
            hidden_sizes=settings.hidden_sizes,
            scale_obs=settings.scale_obs,
            **extra,
        )

    return save_actor


def build_algorithm(config: AtariConfig, setup: Setup) -> OfflineAlgorithm[Any]:
    """The algorithm of the script's flags (its ``*Config`` at the ``atari`` preset, with the
    flags applied) for the environment's spaces, acting ε-greedily with ``--eps-test``."""
    algorithm = config.build_algorithm(setup.env.observation_space, setup.env.action_space)
    algorithm.policy.eps_inference = config.eps_test
    return algorithm
