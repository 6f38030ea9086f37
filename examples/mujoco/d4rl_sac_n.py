#!/usr/bin/env python3
"""SAC-N (An et al. 2021) on a D4RL / Minari dataset or any buffer file: SAC with N critics,
the minimum over all of them.

python examples/mujoco/d4rl_sac_n.py --expert-data-task halfcheetah-medium-v2 --num-critics 10
python examples/mujoco/d4rl_sac_n.py --task Pendulum-v1 --expert-data-task expert.hdf5 --epoch 5

The flags are the fields of ``tianshou_offline.algorithms.SACNConfig``, defaults those of the
``mujoco`` preset (CORL's configuration, the paper's networks): three hidden layers of 256,
N = 10 critics, Adam 3e-4 for the actor, the critics and the temperature, a learned
temperature (target entropy −A), τ = 0.005, batch 256; the paper's N is 10 for HalfCheetah,
20–50 for Walker2d and up to 500 for Hopper. The flags of earlier releases still parse
(``--auto-alpha`` for ``--learn-alpha``, ``--alpha`` for ``--init-alpha``, ``--norm-obs``,
``--n-step``). :mod:`d4rl_edac` and :mod:`d4rl_lb_sac` take the same flags.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import _without_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
from d4rl_common import build_algorithm, make_env, setup, train_and_evaluate

from tianshou_offline.cli.example_args import MujocoConfig, parse_config, run_example


@dataclass(kw_only=True)
class SACNFlags(MujocoConfig):
    """The flags of this script: the common ones and SAC-N's hyperparameters (the fields of
    ``tianshou_offline.algorithms.SACNConfig``, defaults of the ``mujoco`` preset)."""

    algorithm: ClassVar[str | None] = "sacn"

    def check(self) -> None:
        super().check()
        if getattr(self.algorithm_config(), "num_critics", 2) < 2:
            raise ValueError("--num-critics must be at least 2")


def get_args(argv: Sequence[str] | None = None) -> SACNFlags:
    return parse_config(SACNFlags, argv, prog="d4rl_sac_n.py", description=__doc__ or "")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = get_args(argv)
    dataset = setup(config)
    env = make_env(config, dataset)
    return train_and_evaluate(config, "sac_n", dataset, build_algorithm(config, env), env)


if __name__ == "__main__":
    run_example(main)
