#!/usr/bin/env python3
"""ReBRAC (Tarasov et al. 2023) on a D4RL / Minari dataset or any buffer file.

python examples/mujoco/d4rl_rebrac.py --expert-data-task halfcheetah-medium-v2
python examples/mujoco/d4rl_rebrac.py --expert-data-task hopper-medium-v2 \\
    --actor-bc-coef 0.01 --critic-bc-coef 0.01

Defaults are the paper's design choices (CORL's and d3rlpy's configuration): 3 hidden layers
of 256 for actor and critics, LayerNorm critics, batch 1024, Adam 1e-3, λ = 1/mean|Q|, no
observation normalisation, and d3rlpy's penalties β₁ = 0.001 / β₂ = 0.01 (CORL's
halfcheetah-medium values). The paper tunes β₁ and β₂ per dataset (CORL's D4RL configs:
hopper-medium 0.01/0.01, walker2d-medium 0.05/0.1, hopper-medium-expert 0.1/0.01, …).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import _without_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
from d4rl_common import make_env, setup, spaces, train_and_evaluate
from tianshou.algorithm.optim import AdamOptimizerFactory

from tianshou_offline.algorithms import (
    CriticEnsemble,
    DeterministicActor,
    DeterministicPolicy,
    ReBRAC,
)
from tianshou_offline.cli.example_args import MujocoConfig, parse_config, run_example


@dataclass(kw_only=True)
class ReBRACConfig(MujocoConfig):
    """The flags of this script: the common ones and ReBRAC's hyperparameters."""

    batch_size: int = 1024
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256, 256])
    actor_lr: float = 1e-3
    """learning rate of the actor"""
    critic_lr: float = 1e-3
    """learning rate of the critics"""
    actor_bc_coef: float = 0.001
    """β₁: weight of the actor's penalty ‖π(s) − a‖²"""
    critic_bc_coef: float = 0.01
    """β₂: weight of the critic's penalty ‖ã' − a'‖² in the TD target"""
    critic_ln: Literal[0, 1] = 1
    """1: LayerNorm after every hidden layer of the critics"""
    normalize_q: Literal[0, 1] = 1
    """1: scale the actor's Q term by 1 / mean|Q|"""
    policy_noise: float = 0.2
    """std of the target policy smoothing noise"""
    noise_clip: float = 0.5
    """clip of the target policy smoothing noise"""
    update_actor_freq: int = 2
    """critic updates per actor update"""


def get_args(argv: Sequence[str] | None = None) -> ReBRACConfig:
    return parse_config(ReBRACConfig, argv, prog="d4rl_rebrac.py", description=__doc__ or "")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = get_args(argv)
    dataset = setup(config)
    env = make_env(config, dataset)
    obs_dim, act_dim = spaces(env)
    policy = DeterministicPolicy(
        actor=DeterministicActor(obs_dim, act_dim, config.hidden_sizes),
        action_space=env.action_space,
        observation_space=env.observation_space,
        normalize_obs=bool(config.norm_obs),
    ).to(config.device)
    critics = CriticEnsemble(
        obs_dim, act_dim, config.hidden_sizes, num_critics=2, layer_norm=bool(config.critic_ln)
    ).to(config.device)
    algorithm: ReBRAC = ReBRAC(
        policy=policy,
        policy_optim=AdamOptimizerFactory(lr=config.actor_lr),
        critics=critics,
        critic_optim=AdamOptimizerFactory(lr=config.critic_lr),
        actor_bc_coef=config.actor_bc_coef,
        critic_bc_coef=config.critic_bc_coef,
        tau=config.tau,
        gamma=config.gamma,
        policy_noise=config.policy_noise,
        noise_clip=config.noise_clip,
        update_actor_freq=config.update_actor_freq,
        normalize_q=bool(config.normalize_q),
        n_step_return_horizon=config.n_step,
    )
    return train_and_evaluate(config, "rebrac", dataset, algorithm, env)


if __name__ == "__main__":
    run_example(main)
