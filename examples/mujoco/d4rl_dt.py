#!/usr/bin/env python3
"""The Decision Transformer (Chen et al. 2021) on a D4RL / Minari dataset or any buffer file.

python examples/mujoco/d4rl_dt.py --expert-data-task hopper-medium-v2 --target-return 3600
python examples/mujoco/d4rl_dt.py --task Pendulum-v1 --expert-data-task expert.hdf5 \
    --target-return -150 --rtg-scale 100 --epoch 5

The flags are the fields of ``tianshou_offline.algorithms.ContinuousDTConfig``, defaults the
``mujoco`` preset's: the paper's MuJoCo settings (the authors' ``gym/experiment.py`` and
CORL): context K = 20, 3 blocks of 128 units with 1 head, dropout 0.1, AdamW (``--lr``, also
``--actor-lr``: 1e-4, weight decay 1e-4) with a 10,000-step linear warm-up, gradient-norm clip
0.25, batch 64, returns-to-go divided by 1000, normalised observations, evaluation
conditioned on ``--target-return`` (the authors: 3600 Hopper, 6000 HalfCheetah, 5000
Walker2d). ``--step-per-epoch`` counts gradient steps; each samples ``--batch-size`` segments
of K steps. ``policy.pt`` holds the policy's weights (resume or ``--watch`` with
``--resume-path``; it is not a ``tianshou-offline record`` checkpoint). ``--hidden-sizes``,
``--gamma``, ``--critic-lr``, ``--n-step`` and ``--tau`` (flags of earlier releases, never
used by the Decision Transformer) still parse, with a ``DeprecationWarning``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import _without_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
from d4rl_common import build_algorithm, make_env, setup, train_and_evaluate

from tianshou_offline.algorithms import RewardInInfo
from tianshou_offline.cli.example_args import (
    MujocoConfig,
    parse_config,
    run_example,
    warn_unused_flags,
)
from tianshou_offline.training import save_state


@dataclass(kw_only=True)
class DTFlags(MujocoConfig):
    """The flags of this script: the common ones and the Decision Transformer's (the fields
    of ``tianshou_offline.algorithms.ContinuousDTConfig``, defaults of the ``mujoco``
    preset)."""

    algorithm: ClassVar[str | None] = "dt"

    hidden_sizes: list[int] | None = None
    """not used: the network is --embed-dim wide (accepted for one release)"""
    gamma: float | None = None
    """not used: returns-to-go are undiscounted (accepted for one release)"""
    critic_lr: float | None = None
    """not used: the Decision Transformer has no critic (accepted for one release)"""
    n_step: int | None = None
    """not used: returns-to-go sum the whole episode (accepted for one release)"""
    tau: float | None = None
    """not used: the Decision Transformer has no target network (accepted for one release)"""

    def check(self) -> None:
        super().check()
        warn_unused_flags(self, ("hidden_sizes", "gamma", "critic_lr", "n_step", "tau"),
                          "the Decision Transformer has no such setting")  # fmt: skip


def get_args(argv: Sequence[str] | None = None) -> DTFlags:
    return parse_config(DTFlags, argv, prog="d4rl_dt.py", description=__doc__ or "")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = get_args(argv)
    dataset = setup(config)
    env = make_env(config, dataset)
    return train_and_evaluate(
        config,
        "dt",
        dataset,
        build_algorithm(config, env),
        env,
        wrap_env=RewardInInfo,
        save_policy=save_weights,
    )


def save_weights(path: Path, policy: Any) -> None:
    """``policy.pt``: the policy's ``state_dict`` (network and observation statistics),
    written atomically (a kill or a full disk leaves the previous file)."""
    save_state(path, policy.state_dict())


if __name__ == "__main__":
    run_example(main)
