#!/usr/bin/env python3
"""Offline → online fine-tuning of CQL (Kumar et al. 2020), optionally Cal-QL (Nakamoto et al. 2023, --calibrated 1), with Tianshou's OffPolicyTrainer: start from an
offline checkpoint of ``d4rl_cql.py`` (``--resume-path``) and continue online, every mini-batch
mixing ``--offline-ratio`` offline data with the online buffer. The flags are those of
``d4rl_cql.py`` plus the fine-tuning ones (see ``finetune_common.py``).

Cal-QL's settings (Nakamoto et al. 2023; the authors' code and CORL) are written for the
Lagrange term α'·w·(gap − τ): on AntMaze ``--calibrated 1 --cql-weight 5 --with-lagrange 1
--lagrange-threshold 0.8 --lagrange-form calql --mc-failure-reward 0`` (with the rewards as
stored; the authors shift AntMaze's to −1/0 and then use ``--mc-failure-reward -1``). The
default ``--lagrange-form cql`` is Kumar et al.'s α'(w·gap − τ), under which the same
threshold targets a gap of τ / w = 0.16.

python examples/mujoco/d4rl_cql.py --task Pendulum-v1 --expert-data-task data.hdf5 --epoch 5
python examples/mujoco/finetune_cql.py --task Pendulum-v1 --expert-data-task data.hdf5 \
    --resume-path log/Pendulum-v1/cql/0/TIME/last.pt --online-steps 20000
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import _without_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
from d4rl_cql import CQLFlags
from finetune_common import FinetuneOnline, finetune_example

from tianshou_offline.cli.example_args import parse_config, run_example


@dataclass(kw_only=True)
class FinetuneCQLConfig(FinetuneOnline, CQLFlags):
    """The flags of d4rl_cql.py and the fine-tuning ones."""


def get_args(argv: Sequence[str] | None = None) -> FinetuneCQLConfig:
    return parse_config(FinetuneCQLConfig, argv, prog="finetune_cql.py", description=__doc__ or "")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return finetune_example(get_args(argv), "cql")


if __name__ == "__main__":
    run_example(main)
