#!/usr/bin/env python3
"""AWAC (Nair et al. 2020) on a D4RL / Minari dataset or any buffer file.

python examples/mujoco/d4rl_awac.py --expert-data-task halfcheetah-medium-v2
python examples/mujoco/d4rl_awac.py --task Pendulum-v1 --expert-data-task expert.hdf5 --epoch 5

Defaults are CORL's and d3rlpy's: λ = 1, Adam 3e-4 for actor and critics, two critics,
batch 256, weights exp(A/λ) clipped at 100 (``--normalize-weights 1``: d3rlpy's batch
softmax), one actor sample for V(s), a Gaussian actor with a state-independent std
(``--conditioned-std 1``: a learned head). d3rlpy uses four hidden layers of 256 and batch
1024 (``--hidden-sizes 256 256 256 256 --batch-size 1024``), CORL three.
Continue online with ``finetune_awac.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import _without_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
import gymnasium as gym
from d4rl_common import make_env, setup, spaces, train_and_evaluate
from tianshou.algorithm.optim import AdamOptimizerFactory

from tianshou_offline.algorithms import AWAC, CriticEnsemble, GaussianActor, GaussianPolicy
from tianshou_offline.cli.example_args import ManualMujocoConfig, parse_config, run_example


@dataclass(kw_only=True)
class AWACConfig(ManualMujocoConfig):
    """The flags of this script: the common ones and AWAC's hyperparameters."""

    lam: float = 1.0
    """λ, temperature of the advantage weights exp(A / λ)"""
    max_weight: float = 100.0
    """clip of the advantage weights"""
    normalize_weights: Literal[0, 1] = 0
    """1: d3rlpy's weights, batch size × softmax(A / λ) over the batch (no clip)"""
    num_action_samples: int = 1
    """actor samples per state for V(s)"""
    conditioned_std: Literal[0, 1] = 0
    """1: the actor's std is a head of the network (0: a state-independent parameter)"""
    num_critics: int = 2
    """critics in the ensemble (the minimum is used)"""


def get_args(argv: Sequence[str] | None = None) -> AWACConfig:
    return parse_config(AWACConfig, argv, prog="d4rl_awac.py", description=__doc__ or "")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = get_args(argv)
    dataset = setup(config)
    env = make_env(config, dataset)
    return train_and_evaluate(config, "awac", dataset, build_algorithm(config, env), env)


def build_algorithm(config: AWACConfig, env: gym.Env[Any, Any]) -> AWAC:
    """The algorithm of these flags for ``env`` (also used by the fine-tuning example)."""
    obs_dim, act_dim = spaces(env)
    policy = GaussianPolicy(
        actor=GaussianActor(
            obs_dim, act_dim, config.hidden_sizes, conditioned_std=bool(config.conditioned_std)
        ),
        action_space=env.action_space,
        observation_space=env.observation_space,
        squash=False,
        normalize_obs=bool(config.norm_obs),
    ).to(config.device)
    algorithm: AWAC = AWAC(
        policy=policy,
        policy_optim=AdamOptimizerFactory(lr=config.actor_lr),
        critics=CriticEnsemble(
            obs_dim, act_dim, config.hidden_sizes, num_critics=config.num_critics
        ).to(config.device),
        critic_optim=AdamOptimizerFactory(lr=config.critic_lr),
        lam=config.lam,
        max_weight=config.max_weight,
        normalize_weights=bool(config.normalize_weights),
        num_sampled_actions=config.num_action_samples,
        tau=config.tau,
        gamma=config.gamma,
        n_step_return_horizon=config.n_step,
    )
    return algorithm


if __name__ == "__main__":
    run_example(main)
