"""The end-to-end quickstart: record → HDF5 buffer → load → offline training → evaluation.

``tianshou-offline quickstart`` (or ``python examples/quickstart.py``):

1. records episodes of CartPole-v1 driven by a noisy scripted expert with
   :class:`~tianshou_offline.recording.EpisodeRecorder`;
2. loads the file with :func:`~tianshou_offline.load_buffer`;
3. trains behaviour cloning with Tianshou's ``OfflineTrainer``;
4. evaluates the learned policy on the real environment and reports a table;
5. does the same for continuous control: a scripted Pendulum-v1 expert → HDF5 → TD3+BC
   (:mod:`tianshou_offline.algorithms`) → evaluation.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from tianshou_offline.recording import EpisodeRecorder
from tianshou_offline.recording.policies import ScriptedCartPoleExpert, save_policy_checkpoint

log = logging.getLogger(__name__)


@dataclass
class QuickstartRow:
    """One line of the results table: a dataset or a trained policy."""

    name: str
    episodes: int
    mean_return: float
    std_return: float
    seconds: float
    note: str = ""


@dataclass
class QuickstartResult:
    rows: list[QuickstartRow] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)

    def table(self) -> str:
        head = f"{'':<34}{'episodes':>9}{'mean return':>13}{'± std':>9}{'time (s)':>10}"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            lines.append(
                f"{r.name:<34}{r.episodes:>9}{r.mean_return:>13.1f}{r.std_return:>9.1f}"
                f"{r.seconds:>10.1f}" + (f"  {r.note}" if r.note else "")
            )
        return "\n".join(lines)


def record_cartpole_expert(path: Path, *, episodes: int, eps: float, seed: int) -> Path:
    """Record ``episodes`` episodes of the noisy scripted expert on CartPole-v1 to ``path``."""
    expert = ScriptedCartPoleExpert(eps=eps, seed=seed)
    env = EpisodeRecorder(
        gym.make("CartPole-v1"),
        path,
        if_exists="overwrite",
        episode_metadata=lambda ep: {"return": ep.episode_return, "is_expert": True},
        provenance_extra={"policy": f"scripted CartPole expert, eps={eps}", "seed": seed},
    )
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            done = False
            while not done:
                obs, _, terminated, truncated, _ = env.step(expert(obs))
                done = terminated or truncated
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
) -> tuple[np.ndarray, float]:
    """Behaviour cloning (Tianshou's ``OfflineImitationLearning``) on a CartPole buffer."""
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
    t0 = time.perf_counter()
    algorithm.run_training(
        OfflineTrainerParams(
            buffer=buffer,
            max_epochs=epochs,
            epoch_num_steps=steps_per_epoch,
            batch_size=batch_size,
            test_collector=None,
            show_progress=False,
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
) -> QuickstartResult:
    """Run the whole quickstart in ``workdir`` and return the results table.

    :param episodes: episodes recorded from the noisy expert.
    :param noise: the expert's ε (probability of a random action).
    :param epochs: training epochs of ``steps_per_epoch`` gradient steps each.
    :param threads: torch CPU threads (1 is fastest for these small networks).
    :param continuous: also run the continuous-control part (TD3+BC on Pendulum-v1).
    :param continuous_steps: its gradient steps.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    workdir.mkdir(parents=True, exist_ok=True)
    result = QuickstartResult()
    data_path = workdir / "cartpole_expert.hdf5"
    t0 = time.perf_counter()
    record_cartpole_expert(data_path, episodes=episodes, eps=noise, seed=seed)
    rec_seconds = time.perf_counter() - t0
    result.files["dataset"] = data_path
    table = episode_table(data_path)
    result.rows.append(
        QuickstartRow(
            name=f"dataset: scripted expert, ε={noise}",
            episodes=len(table.returns),
            mean_return=float(np.mean(table.returns)),
            std_return=float(np.std(table.returns)),
            seconds=rec_seconds,
            note=f"{int(np.sum(table.lengths))} transitions → {data_path.name}",
        )
    )
    ckpt = workdir / "bc_policy.pt"
    returns, seconds = train_bc(
        data_path,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        batch_size=batch_size,
        seed=seed,
        eval_episodes=eval_episodes,
        checkpoint=ckpt,
    )
    result.files["bc_policy"] = ckpt
    result.rows.append(
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
        result.rows += run_pendulum_td3bc(
            workdir, result, steps=continuous_steps, eval_episodes=eval_episodes, seed=seed
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
    workdir: Path, result: QuickstartResult, *, steps: int, eval_episodes: int, seed: int
) -> list[QuickstartRow]:
    """Record 50 noisy expert episodes of Pendulum-v1, train TD3+BC on them, evaluate."""
    from tianshou_offline.algorithms import (
        TD3BC,
        CriticEnsemble,
        DeterministicActor,
        DeterministicPolicy,
    )

    path = workdir / "pendulum_expert.hdf5"
    t0 = time.perf_counter()
    expert = ScriptedPendulumExpert(noise=0.5, seed=seed)
    env = EpisodeRecorder(gym.make("Pendulum-v1"), path, if_exists="overwrite")
    try:
        for i in range(50):
            obs, _ = env.reset(seed=seed + i)
            done = False
            while not done:
                obs, _, terminated, truncated, _ = env.step(expert(obs))
                done = terminated or truncated
    finally:
        env.close()
    table = episode_table(path)
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
    t0 = time.perf_counter()
    algorithm.run_training(
        OfflineTrainerParams(
            buffer=load_buffer(path),
            max_epochs=1,
            epoch_num_steps=steps,
            batch_size=256,
            test_collector=None,
            show_progress=False,
            verbose=False,
        )
    )
    seconds = time.perf_counter() - t0
    ckpt = workdir / "td3bc_pendulum_policy.pt"
    torch.save(policy.state_dict(), ckpt)  # load with torch.load(..., weights_only=True)
    result.files["pendulum_dataset"] = path
    result.files["td3bc_policy"] = ckpt
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
    return rows
