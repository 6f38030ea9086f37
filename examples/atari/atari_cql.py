#!/usr/bin/env python3
"""Offline discrete CQL (QR-DQN based) on an Atari buffer.

    python3 atari_cql.py --task PongNoFrameskip-v4 --load-buffer-name expert.hdf5 --epoch 5

The flags are those of Tianshou's ``examples/offline/atari_cql.py`` (both ``--a-b`` and
``--a_b`` spellings; unknown flags are an error). Gather ``expert.hdf5`` with
``tianshou-offline record`` (see docs/ATARI.md). Logs, ``policy.pth`` (best, weights only;
``--resume-path``) and ``policy_actor.pt`` (for ``tianshou-offline record --policy``) go to
``--logdir``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import _no_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
from _common import actor_saver, build_algorithm, make_setup, run

from tianshou_offline.algorithms import DiscreteCQL, DiscreteCQLConfig
from tianshou_offline.cli.example_args import AtariConfig, parse_config, run_example


@dataclass(kw_only=True)
class CQLFlags(AtariConfig):
    """Discrete CQL (QR-DQN) on offline Atari data: the common flags and the fields of
    ``tianshou_offline.algorithms.DiscreteCQLConfig`` (defaults of the ``atari`` preset)."""

    algorithm: ClassVar[str | None] = "cql"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = parse_config(CQLFlags, argv, prog="atari_cql.py", description=__doc__ or "")
    setup = make_setup(config)
    algorithm = build_algorithm(config, setup)
    assert isinstance(algorithm, DiscreteCQL)
    settings = config.algorithm_config()
    assert isinstance(settings, DiscreteCQLConfig)
    save_actor = actor_saver(
        setup,
        settings,
        algorithm.policy.model,
        head="quantiles",
        num_quantiles=settings.num_quantiles,
    )
    return run(config, "cql", setup, algorithm, save_actor)


if __name__ == "__main__":
    run_example(main)
