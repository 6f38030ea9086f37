#!/usr/bin/env python3
"""EDAC (An et al. 2021) on a D4RL / Minari dataset or any buffer file: SAC-N plus the
ensemble-gradient diversity term, which needs far fewer critics.

python examples/mujoco/d4rl_edac.py --expert-data-task halfcheetah-medium-v2
python examples/mujoco/d4rl_edac.py --task Pendulum-v1 --expert-data-task expert.hdf5 --epoch 5

The flags of ``d4rl_sac_n.py`` plus ``--eta`` (the fields of
``tianshou_offline.algorithms.EDACConfig``); defaults are the ``mujoco`` preset's, CORL's
MuJoCo configuration: three hidden layers of 256 (as the paper), N = 10 critics, η = 1,
Adam 3e-4, batch 256.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import _without_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
from d4rl_common import build_algorithm, make_env, setup, train_and_evaluate

from tianshou_offline.cli.example_args import MujocoConfig, parse_config, run_example


@dataclass(kw_only=True)
class EDACFlags(MujocoConfig):
    """The flags of this script: the common ones and EDAC's hyperparameters (the fields of
    ``tianshou_offline.algorithms.EDACConfig``, defaults of the ``mujoco`` preset)."""

    algorithm: ClassVar[str | None] = "edac"

    def check(self) -> None:
        super().check()
        if getattr(self.algorithm_config(), "num_critics", 2) < 2:
            raise ValueError("--num-critics must be at least 2")


def get_args(argv: Sequence[str] | None = None) -> EDACFlags:
    return parse_config(EDACFlags, argv, prog="d4rl_edac.py", description=__doc__ or "")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = get_args(argv)
    dataset = setup(config)
    env = make_env(config, dataset)
    return train_and_evaluate(config, "edac", dataset, build_algorithm(config, env), env)


if __name__ == "__main__":
    run_example(main)
