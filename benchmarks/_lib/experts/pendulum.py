"""Expert data for the continuous-control tests and benchmarks (Pendulum-v1).

Gathered the way Tianshou's own offline tests do (``test/offline/gather_pendulum_data.py``):
train SAC online on Pendulum-v1 until the mean test return is >= -250, then collect 20k
steps with the stochastic (exploring) SAC policy. The buffer is saved in the
tianshou-offline format with actions in the environment's units (``[-2, 2]``).

Used by ``tests/algorithms/test_continuous.py`` (cached per test session) and by
``benchmarks/parity_continuous.py``. Set ``TIANSHOU_OFFLINE_EXPERT_CACHE=<dir>`` to reuse the
file across sessions. As a script: ``python -m benchmarks._lib.experts.pendulum OUT.hdf5``.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
from tianshou.algorithm.modelfree.sac import SAC, AutoAlpha, SACPolicy, SACTrainingStats
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import Collector, CollectStats, VectorReplayBuffer
from tianshou.trainer import OffPolicyTrainerParams
from tianshou.utils.net.common import Net
from tianshou.utils.net.continuous import ContinuousActorProbabilistic, ContinuousCritic
from tianshou.utils.torch_utils import policy_within_training_step

from benchmarks._lib.experts import (
    cached_getter,
    check_expert,
    save_expert,
    script_main,
    seeded_envs,
)

log = logging.getLogger(__name__)

TASK = "Pendulum-v1"
EXPERT_RETURN = -250.0
NUM_STEPS = 20_000
FILE_NAME = f"expert_SAC_{TASK}_{NUM_STEPS}.hdf5"


def gather(path: str | os.PathLike[str], *, seed: int = 0, num_steps: int = NUM_STEPS) -> Path:
    """Train SAC to a test return >= -250 and write ``num_steps`` exploring transitions.

    :returns: ``path`` (written atomically by :func:`tianshou_offline.save_buffer`).
    :raises RuntimeError: SAC did not reach the expert return within its budget.
    """
    t0 = time.perf_counter()
    env = gym.make(TASK)
    assert isinstance(env.action_space, gym.spaces.Box)
    obs_shape = env.observation_space.shape or (3,)
    act_shape = env.action_space.shape or (1,)
    train_envs, test_envs = seeded_envs(TASK, seed)

    hidden = [128, 128]
    actor = ContinuousActorProbabilistic(
        preprocess_net=Net(state_shape=obs_shape, hidden_sizes=hidden),
        action_shape=act_shape,
        unbounded=True,
        conditioned_sigma=True,
    )
    critic1 = ContinuousCritic(
        preprocess_net=Net(
            state_shape=obs_shape, action_shape=act_shape, hidden_sizes=hidden, concat=True
        )
    )
    critic2 = ContinuousCritic(
        preprocess_net=Net(
            state_shape=obs_shape, action_shape=act_shape, hidden_sizes=hidden, concat=True
        )
    )
    policy = SACPolicy(actor=actor, action_space=env.action_space)
    algorithm: SAC[SACTrainingStats] = SAC(
        policy=policy,
        policy_optim=AdamOptimizerFactory(lr=1e-3),
        critic=critic1,
        critic_optim=AdamOptimizerFactory(lr=1e-3),
        critic2=critic2,
        critic2_optim=AdamOptimizerFactory(lr=1e-3),
        tau=0.005,
        gamma=0.99,
        alpha=AutoAlpha(
            target_entropy=-float(np.prod(act_shape)),
            log_alpha=0.0,
            optim=AdamOptimizerFactory(lr=3e-4),
        ),
        n_step_return_horizon=3,
    )
    train_buffer = VectorReplayBuffer(20_000, len(train_envs))
    train_collector = Collector[CollectStats](algorithm, train_envs, train_buffer)
    test_collector = Collector[CollectStats](algorithm, test_envs)
    train_collector.reset()
    train_collector.collect(n_step=1_000, random=True)
    result = algorithm.run_training(
        OffPolicyTrainerParams(
            training_collector=train_collector,
            test_collector=test_collector,
            max_epochs=20,
            epoch_num_steps=2_000,
            collection_step_num_env_steps=10,
            test_step_num_episodes=10,
            batch_size=256,
            update_step_num_gradient_steps_per_sample=0.5,
            stop_fn=lambda mean_return: mean_return >= EXPERT_RETURN,
            verbose=False,
            show_progress=False,
        )
    )
    check_expert("SAC", result.best_reward, EXPERT_RETURN)

    buffer = VectorReplayBuffer(num_steps, len(train_envs))
    collector = Collector[CollectStats](algorithm, train_envs, buffer, exploration_noise=True)
    collector.reset()
    with policy_within_training_step(policy):  # SAC samples (explores) within training steps
        stats = collector.collect(n_step=num_steps)
    # the collector stores the policy's [-1, 1] actions; the format holds environment units
    buffer.act[:] = policy.map_action(buffer.act)
    out = save_expert(
        buffer,
        path,
        env,
        TASK,
        dataset_id=f"{TASK}-sac-expert",
        converter="benchmarks/_lib/experts/pendulum.py",
        extra={
            "seed": seed,
            "sac_best_test_return": float(result.best_reward),
        },
        stats=stats,
    )
    log.info(
        "gathered %d expert steps (SAC test return %.1f) in %.0f s",
        num_steps,
        result.best_reward,
        time.perf_counter() - t0,
    )
    return out


cached_expert_file = cached_getter(FILE_NAME, gather)


if __name__ == "__main__":
    script_main(FILE_NAME, gather)
