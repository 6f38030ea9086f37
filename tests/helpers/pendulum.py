"""Pendulum-v1 pieces shared by the algorithms' learning tests: its spaces, the return
threshold a learned policy must reach, the ensemble and AWAC algorithms that the learning
and fine-tuning tests train, and a short-episode Pendulum for the example runs."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from tianshou.algorithm.optim import AdamOptimizerFactory as Adam
from tianshou.data import Collector, CollectStats, ReplayBuffer
from tianshou.env import DummyVectorEnv
from tianshou.trainer import OfflineTrainerParams

from tianshou_offline.algorithms import (
    AWAC,
    EDAC,
    LBSAC,
    SACN,
    CriticEnsemble,
    GaussianActor,
    GaussianPolicy,
    OfflineAlgorithmBase,
)

SHORT_TASK = "PendulumShort-v1"
"""Pendulum with 20-step episodes (registered when this module is imported): the example runs
that pass ``--task SHORT_TASK`` with Pendulum-v1 data test and evaluate in a tenth of the
steps."""
if SHORT_TASK not in gym.registry:
    gym.register(SHORT_TASK, entry_point="gymnasium.envs.classic_control.pendulum:PendulumEnv",
                 max_episode_steps=20)  # fmt: skip

PENDULUM_OBS = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
PENDULUM_ACT = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
THRESHOLD = -400.0
EVAL_EPISODES = 20


def pendulum_algorithm(name: str) -> OfflineAlgorithmBase[Any, Any]:
    hidden = (64, 64)
    kw: dict[str, Any] = dict(
        action_space=PENDULUM_ACT, observation_space=PENDULUM_OBS, normalize_obs=True
    )
    if name == "awac":
        return AWAC(
            policy=GaussianPolicy(actor=GaussianActor(3, 1, hidden), squash=False, **kw),
            policy_optim=Adam(lr=1e-3),
            critics=CriticEnsemble(3, 1, hidden),
            critic_optim=Adam(lr=1e-3),
        )
    policy = GaussianPolicy(actor=GaussianActor(3, 1, hidden), **kw)
    critics = CriticEnsemble(3, 1, hidden, num_critics=5)
    if name == "edac":
        return EDAC(policy=policy, policy_optim=Adam(lr=1e-3), critics=critics,
                    critic_optim=Adam(lr=1e-3), alpha_optim=Adam(lr=1e-3))  # fmt: skip
    if name == "lbsac":  # batch 512: lr 1e-3 · sqrt(512 / 256) by the square-root rule
        return LBSAC(policy=policy, critics=critics, batch_size=LBSAC_BATCH, base_lr=1e-3)
    return SACN(policy=policy, policy_optim=Adam(lr=1e-3), critics=critics,
                critic_optim=Adam(lr=1e-3), alpha_optim=Adam(lr=1e-3))  # fmt: skip


LBSAC_BATCH = 512
"""LB-SAC's batch in the learning test: 2,000 steps of 512 reach −331 (seed 0; −658 after
1,500, −1537 after 500), where the untrained policy scores about −1200."""


def train_and_evaluate(algo: OfflineAlgorithmBase[Any, Any], buffer: ReplayBuffer) -> float:
    """Train with Tianshou's OfflineTrainer (no per-epoch tests), then the mean return of
    EVAL_EPISODES fresh Pendulum-v1 episodes of the final policy."""
    algo.run_training(
        OfflineTrainerParams(
            buffer=buffer,
            test_collector=None,
            max_epochs=3,
            epoch_num_steps=500,
            batch_size=256,
            show_progress=False,
            verbose=False,
        )
    )
    envs = DummyVectorEnv([lambda: gym.make("Pendulum-v1") for _ in range(10)])
    envs.seed(5000)
    stats = Collector[CollectStats](algo, envs).collect(
        n_episode=EVAL_EPISODES, reset_before_collect=True
    )
    assert stats.returns_stat is not None
    return float(stats.returns_stat.mean)
