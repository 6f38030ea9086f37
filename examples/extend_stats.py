#!/usr/bin/env python3
"""Add your own training statistics to an algorithm without copying its update.

Every algorithm in :mod:`tianshou_offline.algorithms` is generic in its ``TrainingStats``
dataclass. Subclass the stats with the new field (it needs a default), subclass the
algorithm parameterised with it, and fill the field in ``_extend_stats`` from the step's
tensors (``CQLStep``: Q-values of dataset, random and policy actions, the log-sum-exp, the
TD targets, …). ``update()`` then returns your class, Tianshou's loggers record the new
field like any other, and ``mypy --strict`` checks all of it (CI type-checks this file).

    python examples/extend_stats.py            # a few hundred CQL steps on Pendulum-like data
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import Batch, ReplayBuffer
from tianshou.utils.torch_utils import policy_within_training_step

from tianshou_offline.algorithms import (
    CQL,
    TD3BC,
    CQLStep,
    CQLTrainingStats,
    CriticEnsemble,
    DeterministicActor,
    DeterministicPolicy,
    GaussianActor,
    GaussianPolicy,
    TD3BCStep,
    TD3BCTrainingStats,
)


@dataclass(kw_only=True)
class MyCQLStats(CQLTrainingStats):
    q_gap: float = 0.0
    """How much lower the critic rates policy actions than dataset actions."""
    q_data_std: float = 0.0
    """Spread of the dataset actions' Q-values."""


class MyCQL(CQL[MyCQLStats]):
    def _extend_stats(self, stats: MyCQLStats, step: CQLStep) -> None:
        stats.q_gap = float((step.q_data.mean() - step.q_policy.mean()).item())
        stats.q_data_std = float(step.q_data.std().item())


@dataclass(kw_only=True)
class MyTD3BCStats(TD3BCTrainingStats):
    td_error_max: float = 0.0
    """Largest absolute TD error of the batch."""


class MyTD3BC(TD3BC[MyTD3BCStats]):
    def _extend_stats(self, stats: MyTD3BCStats, step: TD3BCStep) -> None:
        stats.td_error_max = float((step.q_data - step.target).abs().max().item())


def random_buffer(size: int = 5_000, seed: int = 0) -> ReplayBuffer:
    """Random Pendulum-shaped transitions (3-d observations, 1-d actions in [-2, 2])."""
    rng = np.random.default_rng(seed)
    obs = rng.uniform(-1, 1, (size + 1, 3)).astype(np.float32)
    truncated = np.zeros(size, dtype=bool)
    truncated[199::200] = True
    buffer = ReplayBuffer(size)
    for i in range(size):
        buffer.add(
            Batch(
                obs=obs[i],
                act=rng.uniform(-2, 2, (1,)).astype(np.float32),
                rew=float(-np.abs(obs[i]).sum()),
                terminated=False,
                truncated=bool(truncated[i]),
                obs_next=obs[i + 1],
                info={},
            )
        )
    return buffer


def main(steps: int = 200) -> tuple[MyCQLStats, MyTD3BCStats]:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    env = gym.make("Pendulum-v1")
    buffer = random_buffer()
    cql = MyCQL(
        policy=GaussianPolicy(
            actor=GaussianActor(3, 1, (64, 64)),
            action_space=env.action_space,
            observation_space=env.observation_space,
        ),
        policy_optim=AdamOptimizerFactory(lr=1e-4),
        critics=CriticEnsemble(3, 1, (64, 64)),
        critic_optim=AdamOptimizerFactory(lr=3e-4),
    )
    td3bc = MyTD3BC(
        policy=DeterministicPolicy(
            actor=DeterministicActor(3, 1, (64, 64)),
            action_space=env.action_space,
            observation_space=env.observation_space,
            normalize_obs=True,
        ),
        policy_optim=AdamOptimizerFactory(lr=3e-4),
        critics=CriticEnsemble(3, 1, (64, 64)),
        critic_optim=AdamOptimizerFactory(lr=3e-4),
    )
    cql.process_buffer(buffer)
    td3bc.process_buffer(buffer)
    with policy_within_training_step(cql.policy), policy_within_training_step(td3bc.policy):
        for _ in range(steps):
            cql_stats: MyCQLStats = cql.update(buffer, 256)
            td3bc_stats: MyTD3BCStats = td3bc.update(buffer, 256)
    print(f"CQL:    q_gap={cql_stats.q_gap:.3f}  q_data_std={cql_stats.q_data_std:.3f}")
    print(f"TD3+BC: td_error_max={td3bc_stats.td_error_max:.3f}")
    print("logged fields:", sorted(cql_stats.get_loss_stats_dict()))
    return cql_stats, td3bc_stats


if __name__ == "__main__":
    main()
