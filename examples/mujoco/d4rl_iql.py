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
from typing import Any, ClassVar, Literal

import _without_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
import gymnasium as gym
from d4rl_common import make_env, setup, train_and_evaluate

from tianshou_offline.algorithms import IQL
from tianshou_offline.cli.example_args import MujocoConfig, parse_config, run_example


@dataclass(kw_only=True)
class IQLFlags(MujocoConfig):
    """The flags of this script: the common ones and IQL's hyperparameters (the fields of
    ``tianshou_offline.algorithms.IQLConfig``, defaults of the ``mujoco`` preset)."""

    algorithm: ClassVar[str | None] = "iql"

    actor_cosine_lr: Literal[0, 1] = 0
    """1: anneal the actor's learning rate with a cosine schedule over epoch × step-per-epoch
    (the authors' and CORL's setting; off by default, as in the IQL class)"""


def get_args(argv: Sequence[str] | None = None) -> IQLFlags:
    return parse_config(IQLFlags, argv, prog="d4rl_iql.py", description=__doc__ or "")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = get_args(argv)
    dataset = setup(config)
    env = make_env(config, dataset)
    return train_and_evaluate(config, "iql", dataset, build_algorithm(config, env), env)


def build_algorithm(config: IQLFlags, env: gym.Env[Any, Any]) -> IQL:
    """The algorithm of these flags for ``env``, the actor's cosine schedule over the run
    (also used by the fine-tuning example)."""
    if config.actor_cosine_lr:
        config.algo = config.algorithm_config().replace(
            actor_cosine_steps=config.epoch * config.step_per_epoch
        )
    algorithm = config.build_algorithm(env.observation_space, env.action_space)
    assert isinstance(algorithm, IQL)
    return algorithm


if __name__ == "__main__":
    run_example(main)
