#!/usr/bin/env python3
"""SAC-N (An et al. 2021) on a D4RL / Minari dataset or any buffer file: SAC with N critics,
the minimum over all of them.

python examples/mujoco/d4rl_sac_n.py --expert-data-task halfcheetah-medium-v2 --num-critics 10
python examples/mujoco/d4rl_sac_n.py --task Pendulum-v1 --expert-data-task expert.hdf5 --epoch 5

Defaults are the paper's MuJoCo settings (CORL's configuration): Adam 3e-4 for the actor,
the critics and the temperature, a learned temperature (target entropy −A), τ = 0.005,
batch 256; the paper's N is 10 for HalfCheetah, 20–50 for Walker2d and up to 500 for
Hopper, with three hidden layers of 256 (``--hidden-sizes 256 256 256``).
:mod:`d4rl_edac` and :mod:`d4rl_lb_sac` share these flags.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import _without_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
import gymnasium as gym
from d4rl_common import make_env, setup, spaces, train_and_evaluate
from tianshou.algorithm.optim import AdamOptimizerFactory

from tianshou_offline.algorithms import SACN, CriticEnsemble, GaussianActor, GaussianPolicy
from tianshou_offline.cli.example_args import ManualMujocoConfig, parse_config, run_example


@dataclass(kw_only=True)
class SACNConfig(ManualMujocoConfig):
    """The flags of this script: the common ones and SAC-N's hyperparameters."""

    num_critics: int = 10
    """N, critics in the ensemble (the minimum over all of them is used)"""
    alpha: float = 0.2
    """entropy temperature (with --auto-alpha 0)"""
    auto_alpha: Literal[0, 1] = 1
    """1: tune the entropy temperature to the target entropy −A"""
    alpha_lr: float = 3e-4
    """learning rate of the entropy temperature"""
    backup_entropy: Literal[0, 1] = 1
    """1: subtract the entropy term in the TD target (SAC's soft backup)"""

    def check(self) -> None:
        super().check()
        if self.num_critics < 2:
            raise ValueError("--num-critics must be at least 2")


def get_args(argv: Sequence[str] | None = None) -> SACNConfig:
    return parse_config(SACNConfig, argv, prog="d4rl_sac_n.py", description=__doc__ or "")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = get_args(argv)
    dataset = setup(config)
    env = make_env(config, dataset)
    return train_and_evaluate(config, "sac_n", dataset, build_algorithm(config, env), env)


def networks(config: SACNConfig, env: gym.Env[Any, Any]) -> tuple[GaussianPolicy, CriticEnsemble]:
    """The squashed Gaussian policy and the N-critic ensemble of these flags."""
    obs_dim, act_dim = spaces(env)
    policy = GaussianPolicy(
        actor=GaussianActor(obs_dim, act_dim, config.hidden_sizes),
        action_space=env.action_space,
        observation_space=env.observation_space,
        normalize_obs=bool(config.norm_obs),
    ).to(config.device)
    critics = CriticEnsemble(
        obs_dim, act_dim, config.hidden_sizes, num_critics=config.num_critics
    ).to(config.device)
    return policy, critics


def build_algorithm(config: SACNConfig, env: gym.Env[Any, Any]) -> SACN:
    """The algorithm of these flags for ``env`` (also used by the fine-tuning example)."""
    policy, critics = networks(config, env)
    algorithm: SACN = SACN(
        policy=policy,
        policy_optim=AdamOptimizerFactory(lr=config.actor_lr),
        critics=critics,
        critic_optim=AdamOptimizerFactory(lr=config.critic_lr),
        tau=config.tau,
        gamma=config.gamma,
        alpha="auto" if config.auto_alpha else config.alpha,
        alpha_optim=AdamOptimizerFactory(lr=config.alpha_lr),
        backup_entropy=bool(config.backup_entropy),
        n_step_return_horizon=config.n_step,
    )
    return algorithm


if __name__ == "__main__":
    run_example(main)
