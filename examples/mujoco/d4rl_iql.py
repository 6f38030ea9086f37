#!/usr/bin/env python3
"""IQL (Kostrikov et al. 2022) on a D4RL / Minari dataset or any buffer file.

python examples/mujoco/d4rl_iql.py --expert-data-task hopper-medium-v2
python examples/mujoco/d4rl_iql.py --task Pendulum-v1 --expert-data-task expert.hdf5 --epoch 5

Defaults are the paper's MuJoCo settings (CORL's configuration): expectile 0.7, β = 3,
weight clip 100, Adam 3e-4 for actor, critics and V, batch 256, normalised observations, a
Gaussian actor with a tanh-bounded mean and a state-independent std (``--deterministic 1``:
CORL's deterministic actor). The authors anneal the actor's learning rate with a cosine
schedule over the whole run: ``--actor-cosine-lr 1``; off by default, as in the IQL class
(and in the README's quality table). The paper also rescales MuJoCo rewards
by 1000 / (max − min episode return); this script trains on the stored rewards.
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
    IQL,
    CosineLRSchedulerFactory,
    CriticEnsemble,
    DeterministicActor,
    DeterministicPolicy,
    GaussianActor,
    GaussianPolicy,
    ValueFunction,
)
from tianshou_offline.cli.example_args import MujocoConfig, parse_config, run_example


@dataclass(kw_only=True)
class IQLConfig(MujocoConfig):
    """The flags of this script: the common ones and IQL's hyperparameters."""

    norm_obs: Literal[0, 1] = 1
    expectile: float = 0.7
    """τ of the expectile regression of V (0.5: mean regression)"""
    beta: float = 3.0
    """β, inverse temperature of the advantage weights exp(β (Q − V))"""
    max_weight: float = 100.0
    """clip of the advantage weights"""
    value_lr: float = 3e-4
    """learning rate of V"""
    deterministic: Literal[0, 1] = 0
    """1: a deterministic actor (weighted regression) instead of the Gaussian"""
    actor_cosine_lr: Literal[0, 1] = 0
    """1: anneal the actor's learning rate with a cosine schedule over epoch × step-per-epoch
    (the authors' and CORL's setting; off by default, as in the IQL class)"""
    num_critics: int = 2
    """critics in the ensemble (the minimum is used)"""


def get_args(argv: Sequence[str] | None = None) -> IQLConfig:
    return parse_config(IQLConfig, argv, prog="d4rl_iql.py", description=__doc__ or "")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = get_args(argv)
    dataset = setup(config)
    env = make_env(config, dataset)
    return train_and_evaluate(config, "iql", dataset, build_algorithm(config, env), env)


def build_algorithm(config: IQLConfig, env: gym.Env[Any, Any]) -> IQL:
    """The algorithm of these flags for ``env`` (also used by the fine-tuning example)."""
    obs_dim, act_dim = spaces(env)
    policy: GaussianPolicy | DeterministicPolicy
    if config.deterministic:
        policy = DeterministicPolicy(
            actor=DeterministicActor(obs_dim, act_dim, config.hidden_sizes),
            action_space=env.action_space,
            observation_space=env.observation_space,
            normalize_obs=bool(config.norm_obs),
        )
    else:
        policy = GaussianPolicy(
            actor=GaussianActor(
                obs_dim, act_dim, config.hidden_sizes, conditioned_std=False, tanh_mean=True
            ),
            action_space=env.action_space,
            observation_space=env.observation_space,
            squash=False,
            normalize_obs=bool(config.norm_obs),
        )
    policy = policy.to(config.device)
    policy_optim = AdamOptimizerFactory(lr=config.actor_lr)
    if config.actor_cosine_lr:
        policy_optim = policy_optim.with_lr_scheduler_factory(
            CosineLRSchedulerFactory(config.epoch * config.step_per_epoch)
        )
    algorithm: IQL = IQL(
        policy=policy,
        policy_optim=policy_optim,
        critics=CriticEnsemble(
            obs_dim, act_dim, config.hidden_sizes, num_critics=config.num_critics
        ).to(config.device),
        critic_optim=AdamOptimizerFactory(lr=config.critic_lr),
        value=ValueFunction(obs_dim, config.hidden_sizes).to(config.device),
        value_optim=AdamOptimizerFactory(lr=config.value_lr),
        expectile=config.expectile,
        beta=config.beta,
        max_weight=config.max_weight,
        tau=config.tau,
        gamma=config.gamma,
        n_step_return_horizon=config.n_step,
    )
    return algorithm


if __name__ == "__main__":
    run_example(main)
