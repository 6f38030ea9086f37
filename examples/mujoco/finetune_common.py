"""Shared plumbing of the ``examples/mujoco/finetune_*.py`` scripts: offline → online
fine-tuning with Tianshou's ``OffPolicyTrainer`` and ``Collector``.

Each script takes the flags of its offline example (``d4rl_cql.py``, ``d4rl_td3_bc.py``: the
same networks and hyperparameters, so their checkpoints load) plus the flags of
:class:`FinetuneFlags`. ``--resume-path`` names the offline checkpoint to start from:
``last.pt`` (the algorithm, its optimizers and step count) or ``policy.pt`` (the policy's
weights only; critics start fresh). Without it the run starts from scratch — the baseline
the offline checkpoint is compared with.

The online phase: :class:`~tianshou_offline.algorithms.OnlineFineTuning` around the offline
algorithm; every mini-batch draws ``--offline-ratio`` of its transitions from
``--expert-data-task`` and the rest from the online replay buffer that the training collector
fills. ``--step-per-epoch`` counts environment steps here (Tianshou's online meaning);
``--epoch`` is derived from ``--online-steps``. Checkpoints, in
``--logdir/TASK/finetune_ALGO/SEED/TIME``: ``policy.pt`` (the best policy, as the offline
examples write it) and ``last.pt``, after each epoch's test: a training checkpoint
(:mod:`tianshou_offline.training`) of the offline algorithm (its weights load into the offline
example too) with the online replay buffer (every row, its episode bookkeeping and sampling
generator), the random generators, the trainer's counters and the test returns so far.

Resuming: ``--resume-path .../finetune_ALGO/SEED/TIME/last.pt`` (or ``--resume``: the newest
fine-tuning run's, for ``--task`` and ``--seed``) continues that run in its directory; a run
killed at any moment and resumed ends with the same weights and the same test returns as one
that was not interrupted (on CPU). What makes it repeatable: each epoch's collection starts
from fresh episodes of training environments seeded for that epoch (the episode running at an
epoch's end is cut there, as truncated: an environment's inner state is not checkpointed), and
every test starts from the same seeded initial states.
"""

from __future__ import annotations

import datetime
import logging
import math
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _without_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
import gymnasium as gym
from d4rl_common import (
    Dataset,
    _load_checkpoint,
    build_algorithm,
    make_env,
    normalized_score,
    resume_latest,
    setup,
)
from tianshou.data import Collector, CollectStats, ReplayBuffer
from tianshou.env import DummyVectorEnv, SubprocVectorEnv
from tianshou.trainer import OffPolicyTrainerParams

from tianshou_offline.algorithms import OfflineAlgorithmBase, OnlineFineTuning
from tianshou_offline.algorithms.config import param_default
from tianshou_offline.cli.example_args import (
    MujocoConfig,
    arg,
    example_logger,
    training_progress,
    write_args,
)
from tianshou_offline.errors import SourceNotFoundError
from tianshou_offline.loggers import log_summary
from tianshou_offline.recording.policies import save_policy_checkpoint
from tianshou_offline.training import (
    TrainingState,
    end_running_episode,
    holding,
    load_training_checkpoint,
    lock_run_directory,
    read_training_checkpoint,
    replay_buffer_state,
    reseeding_tests,
    restore_replay_buffer,
    run_training,
)

log = logging.getLogger("finetune_example")

ONLINE_BUFFER = "online_buffer"
"""The key of the online replay buffer in a fine-tuning run's checkpoint (``extra``)."""


@dataclass(kw_only=True)
class FinetuneFlags:
    """The fine-tuning flags every ``finetune_*.py`` script adds to its offline example's."""

    online_steps: int = 50_000
    """environment steps of the online phase"""
    offline_ratio: float = param_default(OnlineFineTuning, "offline_ratio")
    """share of every mini-batch drawn from the offline data (0: online data only)"""
    exploration_noise: float = 0.1
    """std of the Gaussian noise on a deterministic actor's actions, in [-1, 1] units"""
    training_num: int = 1
    """training environments"""
    step_per_collect: int = 1
    """environment steps collected before each round of gradient steps"""
    updates_per_step: float = arg(1.0, aliases=("update-per-step",))
    """gradient steps per collected environment step (``--update-per-step``: Tianshou's
    examples' name)"""
    online_buffer_size: int = 1_000_000
    """capacity of the online replay buffer"""

    def check_finetune(self) -> None:
        if self.online_steps < 1:
            raise ValueError("--online-steps must be at least 1")
        if not 0.0 <= self.offline_ratio <= 1.0:
            raise ValueError("--offline-ratio must be within [0, 1]")
        if self.step_per_collect < 1 or self.training_num < 1:
            raise ValueError("--step-per-collect and --training-num must be at least 1")


@dataclass(kw_only=True)
class FinetuneOnline(FinetuneFlags, MujocoConfig):
    """A fine-tuning script's config: the fine-tuning flags, with the online meaning of
    ``--step-per-epoch``. List it first among the script's bases (``class C(FinetuneOnline,
    SACNFlags)``): its default and its :meth:`check` come before the offline example's."""

    step_per_epoch: int = 5000
    """environment steps per epoch (between evaluations)"""

    def check(self) -> None:
        super().check()
        self.check_finetune()


def finetune_example(config: FinetuneOnline, algo_name: str) -> dict[str, Any]:
    """A fine-tuning script's ``main`` for an algorithm that its offline example builds with
    ``d4rl_common.build_algorithm``."""
    dataset = require_data(setup(config))
    env = make_env(config, dataset)
    algorithm = build_algorithm(config, env)
    assert isinstance(algorithm, OfflineAlgorithmBase)
    return finetune(config, config, algo_name, dataset, algorithm, env)


@holding  # the run directory's lock, held to the end
def finetune(
    held: ExitStack,
    config: MujocoConfig,
    flags: FinetuneFlags,
    algo_name: str,
    dataset: Dataset,
    algorithm: OfflineAlgorithmBase[Any, Any],
    env: gym.Env[Any, Any],
) -> dict[str, Any]:
    """Load ``--resume-path`` (if given), fine-tune online, evaluate; returns the results
    (``test_returns``: ``[environment step, mean test return]`` of every test, those before a
    resume included)."""
    assert config.task is not None and dataset.buffer is not None
    task: str = config.task
    if config.resume:
        resume_latest(
            config, Path(config.logdir) / task / f"finetune_{algo_name}" / str(config.seed)
        )
    resume = Path(config.resume_path) if config.resume_path else None
    resumed: TrainingState | None = None
    state = read_training_checkpoint(resume, device=config.device) if resume else None
    if resume is not None and state is not None and ONLINE_BUFFER in state["extra"]:
        # a fine-tuning run's own last.pt: it continues exactly where it stopped
        resumed = load_training_checkpoint(resume, algorithm, device=config.device)
    elif resume is not None:  # an offline checkpoint to start from
        _load_checkpoint(algorithm, resume, config.device)
    else:
        log.warning("no --resume-path: fine-tuning starts from scratch (randomly initialised)")
    offline_steps = algorithm.num_updates
    tuned: OnlineFineTuning[Any, Any] = OnlineFineTuning(
        offline=algorithm,
        offline_buffer=dataset.buffer,
        offline_ratio=flags.offline_ratio,
        exploration_noise=flags.exploration_noise,
    )
    tuned.offline_dataset  # noqa: B018  (prepared now: normaliser statistics of the data)

    def vector(n: int) -> DummyVectorEnv | SubprocVectorEnv:
        fns: Sequence[Callable[[], gym.Env[Any, Any]]] = [lambda: gym.make(task)] * n
        return SubprocVectorEnv(fns) if config.subproc_envs else DummyVectorEnv(fns)

    train_envs, test_envs = vector(flags.training_num), vector(config.test_num)
    train_envs.seed(config.seed)
    test_envs.seed(config.seed + 1)
    online = ReplayBuffer(flags.online_buffer_size)
    if resumed is not None:
        restore_replay_buffer(online, resumed.extra[ONLINE_BUFFER])
    training_collector = Collector[CollectStats](tuned, train_envs, online, exploration_noise=True)
    test_collector = Collector[CollectStats](tuned, test_envs)
    if resumed is not None and resume is not None:
        log_path = resume.parent
    else:
        now = datetime.datetime.now().strftime("%y%m%d-%H%M%S")
        log_path = Path(config.logdir) / task / f"finetune_{algo_name}" / str(config.seed) / now
    best_path, last_path = log_path / "policy.pt", log_path / "last.pt"
    segment = [-1]

    def save_best_fn(algo: Any) -> None:
        save_policy_checkpoint(best_path, algo.policy)

    def start_epoch(epoch: int, env_step: int) -> None:
        """Each epoch collects from fresh episodes of environments seeded for it (the episode
        running at the epoch's end is cut, as truncated): what a resumed run can repeat."""
        if epoch == segment[0]:
            return
        segment[0] = epoch
        end_running_episode(online)
        train_envs.seed(config.seed + 1000 * epoch)
        training_collector.reset(reset_buffer=False, reset_stats=False)

    # every test on the same seeded initial states
    start_test = reseeding_tests(test_collector, test_envs, config.seed + 1)

    def checkpoint_extra() -> dict[str, Any]:
        return {ONLINE_BUFFER: replay_buffer_state(online)}

    lock_run_directory(held, log_path)  # a second run into it fails here, writing nothing
    if resumed is None:
        write_args(config, log_path)
    logger = example_logger(config, log_path, task=task, algo_name=f"finetune_{algo_name}")
    epoch_steps = min(config.step_per_epoch, flags.online_steps)
    epochs = math.ceil(flags.online_steps / epoch_steps)
    progress_logger, show_progress = training_progress(
        logger,
        enabled=bool(config.show_progress),
        total_steps=epochs * epoch_steps,
        desc=f"fine-tuning {algo_name} on {task}",
    )
    run = run_training(
        tuned,
        OffPolicyTrainerParams(
            training_collector=training_collector,
            test_collector=test_collector,
            max_epochs=epochs,
            epoch_num_steps=epoch_steps,
            collection_step_num_env_steps=flags.step_per_collect,
            update_step_num_gradient_steps_per_sample=flags.updates_per_step,
            test_step_num_episodes=config.test_num,
            batch_size=config.batch_size,
            save_best_fn=save_best_fn,
            training_fn=start_epoch,
            test_fn=start_test,
            logger=progress_logger,
            show_progress=show_progress,
            verbose=False,
        ),
        # last.pt at each epoch's end: the offline algorithm, the online buffer, the
        # generators, the trainer's counters and state (the test returns so far)
        last_path,
        resumed=resumed,
        extra=checkpoint_extra,
        checkpointed=algorithm,
    )
    info = run.info
    start_test(epochs, None)
    stats = test_collector.collect(n_episode=config.test_num)
    assert stats.returns_stat is not None
    mean, std = float(stats.returns_stat.mean), float(stats.returns_stat.std)
    score = normalized_score(mean, dataset.ref_scores)
    line = (
        f"Final reward after {flags.online_steps} online steps: {mean:.2f} ± {std:.2f} over "
        f"{config.test_num} episodes"
    )
    if score is not None:
        line += f", D4RL normalised score {score:.1f}"
    print(line, flush=True)
    log_summary(logger, {"eval/return_mean": mean, "eval/return_std": std,
                         "eval/normalized_score": score, "eval/episodes": config.test_num})  # fmt: skip
    print(f"checkpoints: {best_path} (best policy), {last_path} (algorithm)", flush=True)
    return {
        "log_path": str(log_path),
        "best_reward": info.best_reward,
        "offline_gradient_steps": offline_steps,
        "gradient_steps": algorithm.num_updates,
        "online_env_steps": len(training_collector.buffer),
        "test_returns": run.test_returns,
        "final_return_mean": mean,
        "final_return_std": std,
        "normalized_score": score,
    }


def require_data(dataset: Dataset | None) -> Dataset:
    """Fine-tuning needs the offline data (``--expert-data-task``)."""
    if dataset is None or dataset.buffer is None:
        raise SourceNotFoundError("no offline data to mix in (--expert-data-task)")
    return dataset
