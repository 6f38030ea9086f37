#!/usr/bin/env python3
"""LB-SAC (Nikulin et al. 2022) on a D4RL / Minari dataset or any buffer file: SAC-N with a
large batch and the square-root learning-rate rule.

python examples/mujoco/d4rl_lb_sac.py --expert-data-task halfcheetah-medium-v2
python examples/mujoco/d4rl_lb_sac.py --task Pendulum-v1 --expert-data-task expert.hdf5 \
    --epoch 5 --batch-size 2048

The flags of ``d4rl_sac_n.py``; the batch defaults to the paper's 10,000 and the learning
rate of the actor, the critics and the temperature is ``--base-lr · sqrt(batch / 256)``
(1.875e-3 at 10,000; ``--actor-lr``/``--critic-lr``/``--alpha-lr`` are not used). CORL's
configuration: N = 10 critics of three hidden layers of 256.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import _without_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
import gymnasium as gym
from d4rl_common import make_env, setup, train_and_evaluate
from d4rl_sac_n import SACNConfig, networks

from tianshou_offline.algorithms import LBSAC
from tianshou_offline.cli.example_args import parse_config, run_example


@dataclass(kw_only=True)
class LBSACConfig(SACNConfig):
    """The flags of this script: SAC-N's, a large batch and the base learning rate."""

    batch_size: int = 10_000
    base_lr: float = 3e-4
    """learning rate at batch 256, scaled by sqrt(batch / 256) for every optimizer"""


def get_args(argv: Sequence[str] | None = None) -> LBSACConfig:
    return parse_config(LBSACConfig, argv, prog="d4rl_lb_sac.py", description=__doc__ or "")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = get_args(argv)
    dataset = setup(config)
    env = make_env(config, dataset)
    return train_and_evaluate(config, "lb_sac", dataset, build_algorithm(config, env), env)


def build_algorithm(config: LBSACConfig, env: gym.Env[Any, Any]) -> LBSAC:
    """The algorithm of these flags for ``env`` (also used by the fine-tuning example)."""
    policy, critics = networks(config, env)
    algorithm: LBSAC = LBSAC(
        policy=policy,
        critics=critics,
        batch_size=config.batch_size,
        base_lr=config.base_lr,
        tau=config.tau,
        gamma=config.gamma,
        alpha="auto" if config.auto_alpha else config.alpha,
        backup_entropy=bool(config.backup_entropy),
        n_step_return_horizon=config.n_step,
    )
    return algorithm


if __name__ == "__main__":
    run_example(main)
