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
from finetune_common import FinetuneOnline, finetune_example

from tianshou_offline.cli.example_args import parse_config, run_example


@dataclass(kw_only=True)
class FinetuneAWACConfig(FinetuneOnline, AWACFlags):
    """The flags of d4rl_awac.py and the fine-tuning ones."""


def get_args(argv: Sequence[str] | None = None) -> FinetuneAWACConfig:
    return parse_config(FinetuneAWACConfig, argv, prog="finetune_awac.py", description=__doc__ or "")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return finetune_example(get_args(argv), "awac")


if __name__ == "__main__":
    run_example(main)
