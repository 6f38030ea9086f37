"""Expert data for the discrete-action tests and benchmarks (CartPole-v1).

Gathered the way Tianshou's own offline tests do (``test/offline/gather_cartpole_data.py``):
train QR-DQN online with Tianshou until the mean test return is >= 190, then collect 20k
steps with that policy at ε = 0.2 (ε-greedy). The buffer is saved in the tianshou-offline
format (``save_buffer``; one file, episodes of the 10 collection envs concatenated).

Used by ``tests/algorithms/test_discrete.py`` (cached per test session) and by
``benchmarks/parity_discrete.py``. Set
``TIANSHOU_OFFLINE_EXPERT_CACHE=<dir>`` to reuse the file across sessions. As a script:
``python -m benchmarks._lib.experts.cartpole OUT.hdf5``.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import gymnasium as gym
from tianshou.algorithm.modelfree.qrdqn import QRDQN, QRDQNPolicy
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import Collector, CollectStats, VectorReplayBuffer
from tianshou.trainer import OffPolicyTrainerParams
from tianshou.utils.net.common import Net

from benchmarks._lib.experts import (
    cached_getter,
    check_expert,
    save_expert,
    script_main,
    seeded_envs,
)

log = logging.getLogger(__name__)

TASK = "CartPole-v1"
EXPERT_RETURN = 190.0
EPS_COLLECT = 0.2
NUM_STEPS = 20_000
FILE_NAME = f"expert_QRDQN_{TASK}_{NUM_STEPS}_eps{EPS_COLLECT}.hdf5"


def gather(path: str | os.PathLike[str], *, seed: int = 1, num_steps: int = NUM_STEPS) -> Path:
    """Train QR-DQN (Tianshou) to a test return >= 190, then write ``num_steps`` transitions
    collected at ε = 0.2.

    Hyperparameters as Tianshou's ``gather_cartpole_data.py``: 4×128 MLP, 200 quantiles,
    lr 1e-3, γ = 0.9, 3-step targets, target update every 320 steps, ε 0.1 → 0.01 while
    training, 10 training envs, 10 env steps per collection with 0.1 gradient steps per step.

    :returns: ``path`` (written atomically by :func:`tianshou_offline.save_buffer`).
    :raises RuntimeError: QR-DQN did not reach the expert return within its budget.
    """
    t0 = time.perf_counter()
    env = gym.make(TASK)
    assert isinstance(env.action_space, gym.spaces.Discrete)
    train_envs, test_envs = seeded_envs(TASK, seed)

    num_quantiles = 200
    net = Net(
        state_shape=env.observation_space.shape or (4,),
        action_shape=int(env.action_space.n),
        hidden_sizes=[128, 128, 128, 128],
        num_atoms=num_quantiles,
        softmax=False,
    )
    policy = QRDQNPolicy(
        model=net, action_space=env.action_space, eps_training=0.1, eps_inference=0.05
    )
    algorithm: QRDQN[QRDQNPolicy] = QRDQN(
        policy=policy,
        optim=AdamOptimizerFactory(lr=1e-3),
        gamma=0.9,
        num_quantiles=num_quantiles,
        n_step_return_horizon=3,
        target_update_freq=320,
    )
    train_buffer = VectorReplayBuffer(20_000, len(train_envs))
    train_collector = Collector[CollectStats](
        algorithm, train_envs, train_buffer, exploration_noise=True
    )
    test_collector = Collector[CollectStats](algorithm, test_envs, exploration_noise=True)
    train_collector.reset()
    train_collector.collect(n_step=64 * len(train_envs))

    def training_fn(epoch: int, env_step: int) -> None:
        # ε annealing as in Tianshou's script: 0.1 for 10k steps, then down to 0.01 by 50k
        if env_step <= 10_000:
            policy.set_eps_training(0.1)
        elif env_step <= 50_000:
            policy.set_eps_training(0.1 - (env_step - 10_000) / 40_000 * 0.09)
        else:
            policy.set_eps_training(0.01)

    result = algorithm.run_training(
        OffPolicyTrainerParams(
            training_collector=train_collector,
            test_collector=test_collector,
            max_epochs=10,
            epoch_num_steps=10_000,
            collection_step_num_env_steps=10,
            test_step_num_episodes=20,
            batch_size=64,
            update_step_num_gradient_steps_per_sample=0.1,
            training_fn=training_fn,
            stop_fn=lambda mean_return: mean_return >= EXPERT_RETURN,
            verbose=False,
            show_progress=False,
        )
    )
    check_expert("QR-DQN", result.best_reward, EXPERT_RETURN)

    buffer = VectorReplayBuffer(num_steps, len(test_envs))
    policy.set_eps_inference(EPS_COLLECT)
    collector = Collector[CollectStats](algorithm, test_envs, buffer, exploration_noise=True)
    collector.reset()
    stats = collector.collect(n_step=num_steps)
    out = save_expert(
        buffer,
        path,
        env,
        TASK,
        dataset_id=f"{TASK}-qrdqn-expert-eps{EPS_COLLECT}",
        converter="benchmarks/_lib/experts/cartpole.py",
        extra={
            "seed": seed,
            "qrdqn_best_test_return": float(result.best_reward),
            "eps": EPS_COLLECT,
        },
        stats=stats,
    )
    log.info(
        "gathered %d expert steps (QR-DQN test return %.1f, collection return %.1f) in %.0f s",
        num_steps,
        result.best_reward,
        stats.returns_stat.mean if stats.returns_stat is not None else float("nan"),
        time.perf_counter() - t0,
    )
    return out


cached_expert_file = cached_getter(FILE_NAME, gather)


if __name__ == "__main__":
    script_main(FILE_NAME, gather)
