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
from d4rl_td3_bc import TD3BCFlags
from finetune_common import FinetuneOnline, finetune_example

from tianshou_offline.cli.example_args import parse_config, run_example


@dataclass(kw_only=True)
class FinetuneTD3BCConfig(FinetuneOnline, TD3BCFlags):
    """The flags of d4rl_td3_bc.py and the fine-tuning ones."""


def get_args(argv: Sequence[str] | None = None) -> FinetuneTD3BCConfig:
    return parse_config(FinetuneTD3BCConfig, argv, prog="finetune_td3_bc.py", description=__doc__ or "")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return finetune_example(get_args(argv), "td3_bc")


if __name__ == "__main__":
    run_example(main)
