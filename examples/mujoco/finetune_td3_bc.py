#!/usr/bin/env python3
"""Offline → online fine-tuning of TD3+BC (Fujimoto & Gu 2021) with Tianshou's OffPolicyTrainer: start from an
offline checkpoint of ``d4rl_td3_bc.py`` (``--resume-path``) and continue online, every mini-batch
mixing ``--offline-ratio`` offline data with the online buffer. The flags are those of
``d4rl_td3_bc.py`` plus the fine-tuning ones (see ``finetune_common.py``).

python examples/mujoco/d4rl_td3_bc.py --task Pendulum-v1 --expert-data-task data.hdf5 --epoch 5
python examples/mujoco/finetune_td3_bc.py --task Pendulum-v1 --expert-data-task data.hdf5 \
    --resume-path log/Pendulum-v1/td3_bc/0/TIME/last.pt --online-steps 20000
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import _without_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
from d4rl_common import build_algorithm, make_env, setup
from d4rl_td3_bc import TD3BCFlags
from finetune_common import FinetuneFlags, finetune, require_data

from tianshou_offline.algorithms import OfflineAlgorithmBase
from tianshou_offline.cli.example_args import parse_config, run_example


@dataclass(kw_only=True)
class FinetuneTD3BCConfig(TD3BCFlags, FinetuneFlags):
    """The flags of d4rl_td3_bc.py and the fine-tuning ones."""

    step_per_epoch: int = 5000
    """environment steps per epoch (between evaluations)"""

    def check(self) -> None:
        super().check()
        self.check_finetune()


def get_args(argv: Sequence[str] | None = None) -> FinetuneTD3BCConfig:
    return parse_config(
        FinetuneTD3BCConfig, argv, prog="finetune_td3_bc.py", description=__doc__ or ""
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = get_args(argv)
    dataset = require_data(setup(config))
    env = make_env(config, dataset)
    algorithm = build_algorithm(config, env)
    assert isinstance(algorithm, OfflineAlgorithmBase)
    return finetune(config, config, "td3_bc", dataset, algorithm, env)


if __name__ == "__main__":
    run_example(main)
