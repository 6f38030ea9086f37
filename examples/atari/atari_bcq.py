#!/usr/bin/env python3
"""Offline discrete BCQ on an Atari buffer.

    python3 atari_bcq.py --task PongNoFrameskip-v4 --load-buffer-name expert.hdf5 --epoch 5

The flags are those of Tianshou's ``examples/offline/atari_bcq.py`` (both ``--a-b`` and
``--a_b`` spellings; unknown flags are an error). The Q-value head and the imitation head
share one Nature-DQN trunk, as in Tianshou's example. Outputs as ``atari_cql.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import _no_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
from _common import actor_saver, build_algorithm, make_setup, run

from tianshou_offline.algorithms import DiscreteBCQ, DiscreteBCQConfig
from tianshou_offline.cli.example_args import AtariConfig, parse_config, run_example


@dataclass(kw_only=True)
class BCQFlags(AtariConfig):
    """Discrete BCQ on offline Atari data: the common flags and the fields of
    ``tianshou_offline.algorithms.DiscreteBCQConfig`` (defaults of the ``atari`` preset)."""

    algorithm: ClassVar[str | None] = "bcq"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = parse_config(BCQFlags, argv, prog="atari_bcq.py", description=__doc__ or "")
    setup = make_setup(config)
    algorithm = build_algorithm(config, setup)
    assert isinstance(algorithm, DiscreteBCQ)
    settings = config.algorithm_config()
    assert isinstance(settings, DiscreteBCQConfig)
    save_actor = actor_saver(
        setup,
        settings,
        algorithm.policy.model,
        head="bcq",
        unlikely_action_threshold=settings.unlikely_action_threshold,
    )
    return run(config, "bcq", setup, algorithm, save_actor)


if __name__ == "__main__":
    run_example(main)
