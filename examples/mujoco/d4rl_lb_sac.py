#!/usr/bin/env python3
"""LB-SAC (Nikulin et al. 2022) on a D4RL / Minari dataset or any buffer file: SAC-N with a
large batch and the square-root learning-rate rule.

python examples/mujoco/d4rl_lb_sac.py --expert-data-task halfcheetah-medium-v2
python examples/mujoco/d4rl_lb_sac.py --task Pendulum-v1 --expert-data-task expert.hdf5 \
    --epoch 5 --batch-size 2048

The flags are the fields of ``tianshou_offline.algorithms.LBSACConfig``, defaults the
``mujoco`` preset's: the batch is the paper's 10,000 and the learning rate of the actor, the
critics and the temperature is ``--base-lr · sqrt(batch / 256)`` (1.875e-3 at 10,000); CORL's
configuration: N = 10 critics of three hidden layers of 256. ``--actor-lr``, ``--critic-lr``
and ``--alpha-lr`` (flags of earlier releases, never used by LB-SAC) still parse, with a
``DeprecationWarning``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import _without_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
from d4rl_common import build_algorithm, make_env, setup, train_and_evaluate

from tianshou_offline.cli.example_args import (
    MujocoConfig,
    parse_config,
    run_example,
    warn_unused_flags,
)


@dataclass(kw_only=True)
class LBSACFlags(MujocoConfig):
    """The flags of this script: the common ones and LB-SAC's hyperparameters (the fields of
    ``tianshou_offline.algorithms.LBSACConfig``, defaults of the ``mujoco`` preset)."""

    algorithm: ClassVar[str | None] = "lbsac"

    actor_lr: float | None = None
    """not used: LB-SAC scales --base-lr (accepted for one release)"""
    critic_lr: float | None = None
    """not used: LB-SAC scales --base-lr (accepted for one release)"""
    alpha_lr: float | None = None
    """not used: LB-SAC scales --base-lr (accepted for one release)"""

    def check(self) -> None:
        super().check()
        warn_unused_flags(
            self,
            ("actor_lr", "critic_lr", "alpha_lr"),
            "LB-SAC's learning rates are --base-lr scaled by sqrt(batch / 256)",
        )
        if getattr(self.algorithm_config(), "num_critics", 2) < 2:
            raise ValueError("--num-critics must be at least 2")


def get_args(argv: Sequence[str] | None = None) -> LBSACFlags:
    return parse_config(LBSACFlags, argv, prog="d4rl_lb_sac.py", description=__doc__ or "")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = get_args(argv)
    dataset = setup(config)
    env = make_env(config, dataset)
    return train_and_evaluate(config, "lb_sac", dataset, build_algorithm(config, env), env)


if __name__ == "__main__":
    run_example(main)
