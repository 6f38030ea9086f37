"""The end-to-end quickstart: record → HDF5 buffer → load → offline training → evaluation.

``tianshou-offline quickstart`` (or ``python examples/quickstart.py``):

1. records episodes of CartPole-v1 driven by a noisy scripted expert with
   :class:`~tianshou_offline.recording.EpisodeRecorder`;
2. loads the file with :func:`~tianshou_offline.load_buffer`;
3. trains behaviour cloning with Tianshou's ``OfflineTrainer``;
4. evaluates the learned policy on the real environment and reports a table;
5. does the same for continuous control: a scripted Pendulum-v1 expert → HDF5 → TD3+BC
   (:mod:`tianshou_offline.algorithms`) → evaluation.

Each trained policy is saved with
:func:`~tianshou_offline.recording.policies.save_policy_checkpoint`, so
``tianshou-offline record --policy FILE`` replays it. The caller chooses how training
progress is shown (``progress``: the CLI passes its one progress policy, tqdm on a terminal
and plain lines otherwise) and sees each row of the table as soon as it is measured
(``on_row``); this module prints nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm.imitation.imitation_base import ImitationPolicy, OfflineImitationLearning
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import Collector
from tianshou.env import DummyVectorEnv
from tianshou.trainer import OfflineTrainerParams
from tianshou.utils.net.common import Net

from tianshou_offline.data.buffer import load_buffer
from tianshou_offline.data.stats import episode_table
from tianshou_offline.errors import OutputExistsError
from tianshou_offline.recording import EpisodeRecorder
from tianshou_offline.recording.dt_policies import play_episode
from tianshou_offline.recording.policies import ScriptedCartPoleExpert, save_policy_checkpoint

if TYPE_CHECKING:
    from tianshou.utils import BaseLogger

log = logging.getLogger(__name__)

TrainingProgress = Callable[[str, int], "tuple[BaseLogger | None, bool]"]
"""How a training run shows progress: ``(description, total gradient steps)`` → the logger
and ``show_progress`` setting to hand Tianshou's trainer (e.g.
``tianshou_offline.cli.example_args.training_progress``)."""

CARTPOLE_FILES = ("cartpole_expert.hdf5", "bc_policy.pt")
PENDULUM_FILES = ("pendulum_expert.hdf5", "td3bc_pendulum_policy.pt")


def _no_progress(desc: str, total_steps: int) -> tuple[BaseLogger | None, bool]:
    return None, False


@dataclass
class QuickstartRow:
    """One line of the results table: a dataset or a trained policy."""

    name: str
    episodes: int
    mean_return: float
    std_return: float
    seconds: float
    note: str = ""

    def line(self) -> str:
        """The row as the table prints it."""
        return (
            f"{self.name:<34}{self.episodes:>9}{self.mean_return:>13.1f}{self.std_return:>9.1f}"
            f"{self.seconds:>10.1f}" + (f"  {self.note}" if self.note else "")
        )


TABLE_HEADER = f"{'':<34}{'episodes':>9}{'mean return':>13}{'± std':>9}{'time (s)':>10}"
"""The table's header; its rule is ``"-" * len(TABLE_HEADER)``."""


@dataclass
class QuickstartFile:
    """A file the quickstart wrote."""

    path: Path
    env_id: str
    """the environment of its data, or that its policy acts in"""
    kind: Literal["data", "policy"]


@dataclass
class QuickstartResult:
    rows: list[QuickstartRow] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    """the written files by role: ``dataset``, ``bc_policy``, ``pendulum_dataset``,
    ``td3bc_policy``"""
    outputs: list[QuickstartFile] = field(default_factory=list)
    """the same files with their environment and kind, in the order written"""

    def add_file(self, role: str, path: Path, env_id: str, kind: Literal["data", "policy"]) -> None:
        self.files[role] = path
        self.outputs.append(QuickstartFile(path, env_id, kind))

    def table(self) -> str:
        lines = [TABLE_HEADER, "-" * len(TABLE_HEADER)]
        lines += [r.line() for r in self.rows]
        return "\n".join(lines)


def quickstart_files(workdir: Path, *, continuous: bool = True) -> list[Path]:
    """The files :func:`run_quickstart` writes in ``workdir``."""
    names = CARTPOLE_FILES + (PENDULUM_FILES if continuous else ())
    return [workdir / name for name in names]


def check_workdir(workdir: Path, *, overwrite: bool = False, continuous: bool = True) -> None:
    """Refuse a ``workdir`` that holds files of an earlier run, unless ``overwrite``.

    :raises OutputExistsError: naming the files.
    """
    existing = [p.name for p in quickstart_files(workdir, continuous=continuous) if p.exists()]
    if existing and not overwrite:
        raise OutputExistsError(
            f"{workdir}: holds {', '.join(existing)} from an earlier run; expected a new or "
            "empty work directory (--overwrite, overwrite=True, replaces them)"
        )


def record_cartpole_expert(
    path: Path, *, episodes: int, eps: float, seed: int, overwrite: bool = True
) -> Path:
    """Record ``episodes`` episodes of the noisy scripted expert on CartPole-v1 to ``path``.

    :raises OutputExistsError: ``path`` exists and ``overwrite`` is False.
    """
    expert = ScriptedCartPoleExpert(eps=eps, seed=seed)
    env = EpisodeRecorder(
        gym.make("CartPole-v1"),
        path,
        if_exists="overwrite" if overwrite else "error",
        episode_metadata=lambda ep: {"return": ep.episode_return, "is_expert": True},
        provenance_extra={"policy": f"scripted CartPole expert, eps={eps}", "seed": seed},
    )
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            play_episode(env, expert, obs)
    finally:
        env.close()
    return path


def evaluate(policy: Any, env_id: str, episodes: int, seed: int) -> np.ndarray:
    """Returns of ``episodes`` evaluation episodes of a Tianshou policy (deterministic)."""
    envs = DummyVectorEnv([lambda: gym.make(env_id) for _ in range(min(episodes, 5))])
    envs.seed(seed)
    collector: Collector[Any] = Collector(policy, envs)
    policy.eval()
    stats = collector.collect(n_episode=episodes, reset_before_collect=True)
    envs.close()
    return np.asarray(stats.returns, dtype=np.float64)


def train_bc(
    buffer_path: Path,
    *,
    epochs: int,
    steps_per_epoch: int,
    batch_size: int,
    seed: int,
    eval_episodes: int,
    checkpoint: Path | None,
    progress: TrainingProgress = _no_progress,
) -> tuple[np.ndarray, float]:
    """Behaviour cloning (Tianshou's ``OfflineImitationLearning``) on a CartPole buffer;
    ``checkpoint``: where the policy is saved (replayable with ``record --policy``)."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    buffer = load_buffer(buffer_path)
    env = gym.make("CartPole-v1")
    assert isinstance(env.action_space, gym.spaces.Discrete)
    hidden = (64, 64)
    state_shape = env.observation_space.shape or (4,)
    net = Net(state_shape=state_shape, action_shape=int(env.action_space.n), hidden_sizes=hidden)
    policy = ImitationPolicy(actor=net, action_space=env.action_space)
    algorithm = OfflineImitationLearning(policy=policy, optim=AdamOptimizerFactory(lr=1e-3))
    logger, show_progress = progress("behaviour cloning on CartPole-v1", epochs * steps_per_epoch)
    t0 = time.perf_counter()
    algorithm.run_training(
        OfflineTrainerParams(
            buffer=buffer,
            max_epochs=epochs,
            epoch_num_steps=steps_per_epoch,
            batch_size=batch_size,
            test_collector=None,
            logger=logger,
            show_progress=show_progress,
            verbose=False,
        )
    )
    seconds = time.perf_counter() - t0
    if checkpoint is not None:
        save_policy_checkpoint(
            checkpoint,
            net,
            state_shape=state_shape,
            action_space=env.action_space,
            hidden_sizes=hidden,
            observation_space=env.observation_space,
        )
    returns = evaluate(policy, "CartPole-v1", eval_episodes, seed + 10_000)
    return returns, seconds


def run_quickstart(
    workdir: Path,
    *,
    episodes: int = 20,
    noise: float = 0.25,
    epochs: int = 5,
    steps_per_epoch: int = 1000,
    batch_size: int = 64,
    eval_episodes: int = 10,
    seed: int = 0,
    threads: int | None = 1,
    continuous: bool = True,
    continuous_steps: int = 2000,
    overwrite: bool = False,
    progress: TrainingProgress = _no_progress,
    on_row: Callable[[QuickstartRow], None] | None = None,
) -> QuickstartResult:
    """Run the whole quickstart in ``workdir`` and return the results table.

    :param episodes: episodes recorded from the noisy expert.
    :param noise: the expert's ε (probability of a random action).
    :param epochs: training epochs of ``steps_per_epoch`` gradient steps each.
    :param threads: torch CPU threads (1 is fastest for these small networks).
    :param continuous: also run the continuous-control part (TD3+BC on Pendulum-v1).
    :param continuous_steps: its gradient steps.
    :param overwrite: replace the files of an earlier run in ``workdir``.
    :param progress: how training shows progress (default: not at all).
    :param on_row: called with each row of the table as soon as it is measured.
    :raises OutputExistsError: ``workdir`` holds files of an earlier run (checked before
        anything is written) and ``overwrite`` is False.
    """
    check_workdir(workdir, overwrite=overwrite, continuous=continuous)
    if threads is not None:
        torch.set_num_threads(threads)
    workdir.mkdir(parents=True, exist_ok=True)
    result = QuickstartResult()

    def add(row: QuickstartRow) -> None:
        result.rows.append(row)
        if on_row is not None:
            on_row(row)

    data_path = workdir / CARTPOLE_FILES[0]
    t0 = time.perf_counter()
    record_cartpole_expert(data_path, episodes=episodes, eps=noise, seed=seed, overwrite=True)
    rec_seconds = time.perf_counter() - t0
    result.add_file("dataset", data_path, "CartPole-v1", "data")
    table = episode_table(data_path)
    add(
        QuickstartRow(
            name=f"dataset: scripted expert, ε={noise}",
            episodes=len(table.returns),
            mean_return=float(np.mean(table.returns)),
            std_return=float(np.std(table.returns)),
            seconds=rec_seconds,
            note=f"{int(np.sum(table.lengths))} transitions → {data_path.name}",
        )
    )
    ckpt = workdir / CARTPOLE_FILES[1]
    returns, seconds = train_bc(
        data_path,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        batch_size=batch_size,
        seed=seed,
        eval_episodes=eval_episodes,
        checkpoint=ckpt,
        progress=progress,
    )
    result.add_file("bc_policy", ckpt, "CartPole-v1", "policy")
    add(
        QuickstartRow(
            name="behaviour cloning (OfflineTrainer)",
            episodes=len(returns),
            mean_return=float(np.mean(returns)),
            std_return=float(np.std(returns)),
            seconds=seconds,
            note=f"{epochs}×{steps_per_epoch} steps, batch {batch_size}",
        )
    )
    if continuous:
        run_pendulum_td3bc(
            workdir,
            result,
            steps=continuous_steps,
            eval_episodes=eval_episodes,
            seed=seed,
            progress=progress,
            on_row=add,
        )
    return result


# ---------------------------------------------------------------------------------------
# continuous control: a scripted Pendulum-v1 expert → TD3+BC (tianshou_offline.algorithms)
# ---------------------------------------------------------------------------------------


class ScriptedPendulumExpert:
    """Pendulum-v1 controller: energy pumping to swing up, PD control near the top (mean
    return ≈ −140 without noise), plus Gaussian action noise of std ``noise`` (N·m)."""

    def __init__(self, noise: float = 0.5, seed: int = 0) -> None:
        self.noise = noise
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        cos, sin, speed = (float(v) for v in obs)
        if cos > 0.8:  # near the top: balance
            torque = -(10.0 * float(np.arctan2(sin, cos)) + 2.0 * speed)
        else:  # pump energy towards the upright rest energy (5 in these units)
            energy = speed * speed / 6.0 + 5.0 * cos
            torque = 2.0 * float(np.sign(speed * (5.0 - energy) + 1e-6))
        torque += self.noise * float(self.rng.standard_normal())
        return np.clip(np.array([torque], dtype=np.float32), -2.0, 2.0)


def run_pendulum_td3bc(
    workdir: Path,
    result: QuickstartResult,
    *,
    steps: int,
    eval_episodes: int,
    seed: int,
    progress: TrainingProgress = _no_progress,
    on_row: Callable[[QuickstartRow], None] | None = None,
) -> list[QuickstartRow]:
    """Record 50 noisy expert episodes of Pendulum-v1, train TD3+BC on them, evaluate; the
    files go into ``result`` (overwritten if they exist), the rows are returned (and passed
    to ``on_row`` as soon as each is measured)."""
    from tianshou_offline.algorithms import (
        TD3BC,
        CriticEnsemble,
        DeterministicActor,
        DeterministicPolicy,
    )

    path = workdir / PENDULUM_FILES[0]
    t0 = time.perf_counter()
    expert = ScriptedPendulumExpert(noise=0.5, seed=seed)
    env = EpisodeRecorder(gym.make("Pendulum-v1"), path, if_exists="overwrite")
    try:
        for i in range(50):
            obs, _ = env.reset(seed=seed + i)
            play_episode(env, expert, obs)
    finally:
        env.close()
    table = episode_table(path)
    result.add_file("pendulum_dataset", path, "Pendulum-v1", "data")
    rows = [
        QuickstartRow(
            name="dataset: scripted Pendulum expert",
            episodes=len(table.returns),
            mean_return=float(np.mean(table.returns)),
            std_return=float(np.std(table.returns)),
            seconds=time.perf_counter() - t0,
            note=f"{int(np.sum(table.lengths))} transitions → {path.name}",
        )
    ]
    if on_row is not None:
        on_row(rows[0])
    torch.manual_seed(seed)
    spec = gym.make("Pendulum-v1")
    policy = DeterministicPolicy(
        actor=DeterministicActor(3, 1, (64, 64)),
        action_space=spec.action_space,
        observation_space=spec.observation_space,
        normalize_obs=True,
    )
    algorithm = TD3BC(
        policy=policy,
        policy_optim=AdamOptimizerFactory(lr=1e-3),
        critics=CriticEnsemble(3, 1, (64, 64)),
        critic_optim=AdamOptimizerFactory(lr=1e-3),
    )
    logger, show_progress = progress("TD3+BC on Pendulum-v1", steps)
    t0 = time.perf_counter()
    algorithm.run_training(
        OfflineTrainerParams(
            buffer=load_buffer(path),
            max_epochs=1,
            epoch_num_steps=steps,
            batch_size=256,
            test_collector=None,
            logger=logger,
            show_progress=show_progress,
            verbose=False,
        )
    )
    seconds = time.perf_counter() - t0
    ckpt = workdir / PENDULUM_FILES[1]
    save_policy_checkpoint(ckpt, policy)  # replays with `tianshou-offline record --policy`
    result.add_file("td3bc_policy", ckpt, "Pendulum-v1", "policy")
    returns = evaluate(policy, "Pendulum-v1", eval_episodes, seed + 10_000)
    rows.append(
        QuickstartRow(
            name="TD3+BC (tianshou_offline)",
            episodes=len(returns),
            mean_return=float(np.mean(returns)),
            std_return=float(np.std(returns)),
            seconds=seconds,
            note=f"{steps} steps, batch 256",
        )
    )
    if on_row is not None:
        on_row(rows[-1])
    return rows
