#!/usr/bin/env python3
"""BCQ (Fujimoto et al. 2019) on a D4RL / Minari dataset or any buffer file.

python examples/mujoco/d4rl_bcq.py --expert-data-task halfcheetah-expert-v2
python examples/mujoco/d4rl_bcq.py --task Pendulum-v1 --expert-data-task expert.hdf5 --epoch 5
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import _without_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
from d4rl_common import make_env, setup, spaces, train_and_evaluate
from tianshou.algorithm.optim import AdamOptimizerFactory

from tianshou_offline.algorithms import BCQ, VAE, BCQPolicy, CriticEnsemble, Perturbation
from tianshou_offline.cli.example_args import MujocoConfig, parse_config, run_example


@dataclass(kw_only=True)
class BCQConfig(MujocoConfig):
    """The flags of this script: the common ones and BCQ's hyperparameters."""

    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    hidden_sizes: list[int] = field(default_factory=lambda: [400, 300])
    vae_hidden_sizes: list[int] = field(default_factory=lambda: [750, 750])
    """widths of the VAE's encoder and decoder layers"""
    vae_lr: float = 1e-3
    """learning rate of the VAE"""
    latent_dim: int | None = None
    """VAE latent size (default: 2 × action size)"""
    lmbda: float = 0.75
    """weight of the min in the soft clipped double Q"""
    phi: float = 0.05
    """largest perturbation"""
    num_sampled_action: int = 10
    """actions sampled per state for the target"""
    num_candidate_actions: int = 100
    """candidates when acting"""


def get_args(argv: Sequence[str] | None = None) -> BCQConfig:
    return parse_config(BCQConfig, argv, prog="d4rl_bcq.py", description=__doc__ or "")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = get_args(argv)
    dataset = setup(config)
    env = make_env(config, dataset)
    obs_dim, act_dim = spaces(env)
    policy = BCQPolicy(
        vae=VAE(obs_dim, act_dim, config.vae_hidden_sizes, latent_dim=config.latent_dim),
        perturbation=Perturbation(obs_dim, act_dim, config.hidden_sizes, phi=config.phi),
        critics=CriticEnsemble(obs_dim, act_dim, config.hidden_sizes, num_critics=2),
        action_space=env.action_space,
        observation_space=env.observation_space,
        num_candidate_actions=config.num_candidate_actions,
        normalize_obs=bool(config.norm_obs),
    ).to(config.device)
    algorithm: BCQ = BCQ(
        policy=policy,
        vae_optim=AdamOptimizerFactory(lr=config.vae_lr),
        actor_perturbation_optim=AdamOptimizerFactory(lr=config.actor_lr),
        critic_optim=AdamOptimizerFactory(lr=config.critic_lr),
        gamma=config.gamma,
        tau=config.tau,
        lmbda=config.lmbda,
        num_sampled_action=config.num_sampled_action,
        n_step_return_horizon=config.n_step,
    )
    return train_and_evaluate(config, "bcq", dataset, algorithm, env)


if __name__ == "__main__":
    run_example(main)
