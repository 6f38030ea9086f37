#!/usr/bin/env python3
"""ReBRAC (Tarasov et al. 2023) on a D4RL / Minari dataset or any buffer file.

python examples/mujoco/d4rl_rebrac.py --expert-data-task halfcheetah-medium-v2
python examples/mujoco/d4rl_rebrac.py --expert-data-task hopper-medium-v2 \\
    --actor-bc-coef 0.01 --critic-bc-coef 0.01

Defaults are the paper's design choices (CORL's and d3rlpy's configuration): 3 hidden layers
of 256 for actor and critics, LayerNorm critics, batch 1024, Adam 1e-3, λ = 1/mean|Q|, no
observation normalisation, and d3rlpy's penalties β₁ = 0.001 / β₂ = 0.01 (CORL's
halfcheetah-medium values). The paper tunes β₁ and β₂ per dataset (CORL's D4RL configs:
hopper-medium 0.01/0.01, walker2d-medium 0.05/0.1, hopper-medium-expert 0.1/0.01, …).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import _without_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
from d4rl_common import build_algorithm, make_env, setup, train_and_evaluate

from tianshou_offline.cli.example_args import MujocoConfig, parse_config, run_example


@dataclass(kw_only=True)
class ReBRACFlags(MujocoConfig):
    """The flags of this script: the common ones and ReBRAC's hyperparameters (the fields of
    ``tianshou_offline.algorithms.ReBRACConfig``, defaults of the ``mujoco`` preset)."""

    algorithm: ClassVar[str | None] = "rebrac"


def get_args(argv: Sequence[str] | None = None) -> ReBRACFlags:
    return parse_config(ReBRACFlags, argv, prog="d4rl_rebrac.py", description=__doc__ or "")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = get_args(argv)
    dataset = setup(config)
    env = make_env(config, dataset)
    return train_and_evaluate(config, "rebrac", dataset, build_algorithm(config, env), env)


if __name__ == "__main__":
    run_example(main)
