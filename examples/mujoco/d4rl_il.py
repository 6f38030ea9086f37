#!/usr/bin/env python3
"""Imitation learning (behaviour cloning) on a D4RL / Minari dataset or any buffer file.

python examples/mujoco/d4rl_il.py --expert-data-task halfcheetah-expert-v2
python examples/mujoco/d4rl_il.py --actor gaussian --task Pendulum-v1 --expert-data-task expert.hdf5
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import _without_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
from d4rl_common import make_env, setup, spaces, train_and_evaluate
from tianshou.algorithm.optim import AdamOptimizerFactory

from tianshou_offline.algorithms import (
    DeterministicActor,
    DeterministicPolicy,
    GaussianActor,
    GaussianPolicy,
    ImitationLearning,
)
from tianshou_offline.cli.example_args import MujocoConfig, arg, parse_config, run_example


@dataclass(kw_only=True)
class ILConfig(MujocoConfig):
    """The flags of this script: the common ones and IL's hyperparameters."""

    actor_lr: float = arg(1e-3, aliases=("lr",))
    """learning rate (--lr as in Tianshou's imitation examples)"""
    actor: Literal["deterministic", "gaussian"] = "deterministic"
    """MSE regression or maximum likelihood of a Gaussian"""


def get_args(argv: Sequence[str] | None = None) -> ILConfig:
    return parse_config(ILConfig, argv, prog="d4rl_il.py", description=__doc__ or "")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = get_args(argv)
    dataset = setup(config)
    env = make_env(config, dataset)
    obs_dim, act_dim = spaces(env)
    common: dict[str, Any] = dict(
        action_space=env.action_space,
        observation_space=env.observation_space,
        normalize_obs=bool(config.norm_obs),
    )
    policy: DeterministicPolicy | GaussianPolicy
    if config.actor == "gaussian":
        policy = GaussianPolicy(
            actor=GaussianActor(obs_dim, act_dim, config.hidden_sizes), squash=False, **common
        )
    else:
        policy = DeterministicPolicy(
            actor=DeterministicActor(obs_dim, act_dim, config.hidden_sizes), **common
        )
    policy.to(config.device)
    algorithm: ImitationLearning = ImitationLearning(
        policy=policy, optim=AdamOptimizerFactory(lr=config.actor_lr)
    )
    return train_and_evaluate(config, "il", dataset, algorithm, env)


if __name__ == "__main__":
    run_example(main)
