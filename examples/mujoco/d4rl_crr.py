#!/usr/bin/env python3
"""CRR (Wang et al. 2020) on a D4RL / Minari dataset or any buffer file.

python examples/mujoco/d4rl_crr.py --expert-data-task halfcheetah-expert-v2
python examples/mujoco/d4rl_crr.py --weight binary --task Pendulum-v1 --expert-data-task expert.hdf5
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import _without_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
from d4rl_common import make_env, setup, spaces, train_and_evaluate
from tianshou.algorithm.optim import AdamOptimizerFactory

from tianshou_offline.algorithms import CRR, CriticEnsemble, GaussianActor, GaussianPolicy
from tianshou_offline.cli.example_args import MujocoConfig, parse_config, run_example


@dataclass(kw_only=True)
class CRRConfig(MujocoConfig):
    """The flags of this script: the common ones and CRR's hyperparameters."""

    weight: Literal["exp", "binary"] = "exp"
    """advantage weighting f"""
    advantage: Literal["mean", "max"] = "mean"
    """advantage baseline over the sampled actions"""
    beta: float = 1.0
    """temperature of the exp weight"""
    max_weight: float = 20.0
    """clip of the exp weight"""
    num_action_samples: int = 4
    """m, samples for the advantage"""
    num_critics: int = 2
    """critics in the ensemble"""
    target_update_interval: int = 1
    """update targets every N steps (with --tau 1: d3rlpy's hard copies, N=100)"""


def get_args(argv: Sequence[str] | None = None) -> CRRConfig:
    return parse_config(CRRConfig, argv, prog="d4rl_crr.py", description=__doc__ or "")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = get_args(argv)
    dataset = setup(config)
    env = make_env(config, dataset)
    obs_dim, act_dim = spaces(env)
    policy = GaussianPolicy(
        actor=GaussianActor(obs_dim, act_dim, config.hidden_sizes),
        action_space=env.action_space,
        observation_space=env.observation_space,
        squash=False,
        normalize_obs=bool(config.norm_obs),
    ).to(config.device)
    algorithm: CRR = CRR(
        policy=policy,
        policy_optim=AdamOptimizerFactory(lr=config.actor_lr),
        critics=CriticEnsemble(
            obs_dim, act_dim, config.hidden_sizes, num_critics=config.num_critics
        ).to(config.device),
        critic_optim=AdamOptimizerFactory(lr=config.critic_lr),
        gamma=config.gamma,
        tau=config.tau,
        target_update_interval=config.target_update_interval,
        weight=config.weight,
        beta=config.beta,
        max_weight=config.max_weight,
        advantage=config.advantage,
        num_action_samples=config.num_action_samples,
        n_step_return_horizon=config.n_step,
    )
    return train_and_evaluate(config, "crr", dataset, algorithm, env)


if __name__ == "__main__":
    run_example(main)
