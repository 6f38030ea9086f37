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
from typing import Any, ClassVar

import _without_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
from d4rl_common import build_algorithm, make_env, setup, train_and_evaluate

from tianshou_offline.cli.example_args import MujocoConfig, parse_config, run_example


@dataclass(kw_only=True)
class AWACFlags(MujocoConfig):
    """The flags of this script: the common ones and AWAC's hyperparameters (the fields of
    ``tianshou_offline.algorithms.AWACConfig``, defaults of the ``mujoco`` preset)."""

    algorithm: ClassVar[str | None] = "awac"


def get_args(argv: Sequence[str] | None = None) -> AWACFlags:
    return parse_config(AWACFlags, argv, prog="d4rl_awac.py", description=__doc__ or "")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = get_args(argv)
    dataset = setup(config)
    env = make_env(config, dataset)
    return train_and_evaluate(config, "awac", dataset, build_algorithm(config, env), env)


if __name__ == "__main__":
    run_example(main)
