#!/usr/bin/env python3
"""CRR (Wang et al. 2020) on a D4RL / Minari dataset or any buffer file.

python examples/mujoco/d4rl_crr.py --expert-data-task halfcheetah-expert-v2
python examples/mujoco/d4rl_crr.py --weight binary --task Pendulum-v1 --expert-data-task expert.hdf5
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import _without_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
from d4rl_common import build_algorithm, make_env, setup, train_and_evaluate

from tianshou_offline.cli.example_args import MujocoConfig, parse_config, run_example


@dataclass(kw_only=True)
class CRRFlags(MujocoConfig):
    """The flags of this script: the common ones and CRR's hyperparameters (the fields of
    ``tianshou_offline.algorithms.CRRConfig``, defaults of the ``mujoco`` preset)."""

    algorithm: ClassVar[str | None] = "crr"


def get_args(argv: Sequence[str] | None = None) -> CRRFlags:
    return parse_config(CRRFlags, argv, prog="d4rl_crr.py", description=__doc__ or "")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = get_args(argv)
    dataset = setup(config)
    env = make_env(config, dataset)
    return train_and_evaluate(config, "crr", dataset, build_algorithm(config, env), env)


if __name__ == "__main__":
    run_example(main)
