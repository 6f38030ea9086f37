#!/usr/bin/env python3
"""Offline → online fine-tuning of IQL (Kostrikov et al. 2022) with Tianshou's OffPolicyTrainer: start from an
offline checkpoint of ``d4rl_iql.py`` (``--resume-path``) and continue online, every mini-batch
mixing ``--offline-ratio`` offline data with the online buffer. The flags are those of
``d4rl_iql.py`` plus the fine-tuning ones (see ``finetune_common.py``).

python examples/mujoco/d4rl_iql.py --task Pendulum-v1 --expert-data-task data.hdf5 --epoch 5
python examples/mujoco/finetune_iql.py --task Pendulum-v1 --expert-data-task data.hdf5 \
    --resume-path log/Pendulum-v1/iql/0/TIME/last.pt --online-steps 20000
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import _without_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
from d4rl_common import make_env, setup
from d4rl_iql import IQLFlags, build_algorithm
from finetune_common import FinetuneFlags, finetune, require_data

from tianshou_offline.cli.example_args import parse_config, run_example


@dataclass(kw_only=True)
class FinetuneIQLConfig(IQLFlags, FinetuneFlags):
    """The flags of d4rl_iql.py and the fine-tuning ones."""

    step_per_epoch: int = 5000
    """environment steps per epoch (between evaluations)"""

    def check(self) -> None:
        super().check()
        self.check_finetune()


def get_args(argv: Sequence[str] | None = None) -> FinetuneIQLConfig:
    return parse_config(FinetuneIQLConfig, argv, prog="finetune_iql.py", description=__doc__ or "")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = get_args(argv)
    dataset = require_data(setup(config))
    env = make_env(config, dataset)
    return finetune(config, config, "iql", dataset, build_algorithm(config, env), env)


if __name__ == "__main__":
    run_example(main)
