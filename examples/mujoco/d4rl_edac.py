#!/usr/bin/env python3
"""EDAC (An et al. 2021) on a D4RL / Minari dataset or any buffer file: SAC-N plus the
ensemble-gradient diversity term, which needs far fewer critics.

python examples/mujoco/d4rl_edac.py --expert-data-task halfcheetah-medium-v2
python examples/mujoco/d4rl_edac.py --task Pendulum-v1 --expert-data-task expert.hdf5 --epoch 5

The flags of ``d4rl_sac_n.py`` plus ``--eta``; defaults are CORL's MuJoCo configuration:
N = 10 critics, η = 1, Adam 3e-4, batch 256 (the paper: three hidden layers of 256,
``--hidden-sizes 256 256 256``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import _without_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
import gymnasium as gym
from d4rl_common import make_env, setup, train_and_evaluate
from d4rl_sac_n import SACNConfig, networks
from tianshou.algorithm.optim import AdamOptimizerFactory

from tianshou_offline.algorithms import EDAC
from tianshou_offline.cli.example_args import parse_config, run_example


@dataclass(kw_only=True)
class EDACConfig(SACNConfig):
    """The flags of this script: SAC-N's and the weight of the diversity term."""

    eta: float = 1.0
    """η, weight of the ensemble-gradient diversity term (0: SAC-N)"""


def get_args(argv: Sequence[str] | None = None) -> EDACConfig:
    return parse_config(EDACConfig, argv, prog="d4rl_edac.py", description=__doc__ or "")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = get_args(argv)
    dataset = setup(config)
    env = make_env(config, dataset)
    return train_and_evaluate(config, "edac", dataset, build_algorithm(config, env), env)


def build_algorithm(config: EDACConfig, env: gym.Env[Any, Any]) -> EDAC:
    """The algorithm of these flags for ``env`` (also used by the fine-tuning example)."""
    policy, critics = networks(config, env)
    algorithm: EDAC = EDAC(
        policy=policy,
        policy_optim=AdamOptimizerFactory(lr=config.actor_lr),
        critics=critics,
        critic_optim=AdamOptimizerFactory(lr=config.critic_lr),
        eta=config.eta,
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
