#!/usr/bin/env python3
"""Offline → online fine-tuning of AWAC (Nair et al. 2020) with Tianshou's OffPolicyTrainer: start from an
offline checkpoint of ``d4rl_awac.py`` (``--resume-path``) and continue online, every mini-batch
mixing ``--offline-ratio`` offline data with the online buffer. The flags are those of
``d4rl_awac.py`` plus the fine-tuning ones (see ``finetune_common.py``).

python examples/mujoco/d4rl_awac.py --task Pendulum-v1 --expert-data-task data.hdf5 --epoch 5
python examples/mujoco/finetune_awac.py --task Pendulum-v1 --expert-data-task data.hdf5 \
    --resume-path log/Pendulum-v1/awac/0/TIME/last.pt --online-steps 20000
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import _without_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
from d4rl_awac import AWACFlags
from d4rl_common import build_algorithm, make_env, setup
from finetune_common import FinetuneFlags, finetune, require_data

from tianshou_offline.algorithms import OfflineAlgorithmBase
from tianshou_offline.cli.example_args import parse_config, run_example


@dataclass(kw_only=True)
class FinetuneAWACConfig(AWACFlags, FinetuneFlags):
    """The flags of d4rl_awac.py and the fine-tuning ones."""

    step_per_epoch: int = 5000
    """environment steps per epoch (between evaluations)"""

    def check(self) -> None:
        super().check()
        self.check_finetune()


def get_args(argv: Sequence[str] | None = None) -> FinetuneAWACConfig:
    return parse_config(
        FinetuneAWACConfig, argv, prog="finetune_awac.py", description=__doc__ or ""
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = get_args(argv)
    dataset = require_data(setup(config))
    env = make_env(config, dataset)
    algorithm = build_algorithm(config, env)
    assert isinstance(algorithm, OfflineAlgorithmBase)
    return finetune(config, config, "awac", dataset, algorithm, env)


if __name__ == "__main__":
    run_example(main)
