#!/usr/bin/env python3
"""TD3+BC (Fujimoto & Gu 2021) on a D4RL / Minari dataset or any buffer file.

python examples/mujoco/d4rl_td3_bc.py --expert-data-task halfcheetah-expert-v2
python examples/mujoco/d4rl_td3_bc.py --task Pendulum-v1 --expert-data-task expert.hdf5 --epoch 5
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import _without_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
import gymnasium as gym
from d4rl_common import make_env, setup, spaces, train_and_evaluate
from tianshou.algorithm.optim import AdamOptimizerFactory

from tianshou_offline.algorithms import (
    TD3BC,
    CriticEnsemble,
    DeterministicActor,
    DeterministicPolicy,
)
from tianshou_offline.cli.example_args import MujocoConfig, parse_config, run_example


@dataclass(kw_only=True)
class TD3BCConfig(MujocoConfig):
    """The flags of this script: the common ones and TD3BC's hyperparameters."""

    norm_obs: Literal[0, 1] = 1
    alpha: float = 2.5
    """α: the actor maximises λQ − (π(s) − a)² with λ = α / mean|Q|"""
    policy_noise: float = 0.2
    """std of the target policy smoothing noise"""
    noise_clip: float = 0.5
    """clip of the target policy smoothing noise"""
    update_actor_freq: int = 2
    """critic updates per actor update"""


def get_args(argv: Sequence[str] | None = None) -> TD3BCConfig:
    return parse_config(TD3BCConfig, argv, prog="d4rl_td3_bc.py", description=__doc__ or "")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = get_args(argv)
    dataset = setup(config)
    env = make_env(config, dataset)
    return train_and_evaluate(config, "td3_bc", dataset, build_algorithm(config, env), env)


def build_algorithm(config: TD3BCConfig, env: gym.Env[Any, Any]) -> TD3BC:
    """The algorithm of these flags for ``env`` (also used by the fine-tuning example)."""
    obs_dim, act_dim = spaces(env)
    policy = DeterministicPolicy(
        actor=DeterministicActor(obs_dim, act_dim, config.hidden_sizes),
        action_space=env.action_space,
        observation_space=env.observation_space,
        normalize_obs=bool(config.norm_obs),
    ).to(config.device)
    algorithm: TD3BC = TD3BC(
        policy=policy,
        policy_optim=AdamOptimizerFactory(lr=config.actor_lr),
        critics=CriticEnsemble(obs_dim, act_dim, config.hidden_sizes, num_critics=2).to(
            config.device
        ),
        critic_optim=AdamOptimizerFactory(lr=config.critic_lr),
        tau=config.tau,
        gamma=config.gamma,
        policy_noise=config.policy_noise,
        noise_clip=config.noise_clip,
        update_actor_freq=config.update_actor_freq,
        alpha=config.alpha,
        n_step_return_horizon=config.n_step,
    )
    return algorithm


if __name__ == "__main__":
    run_example(main)
