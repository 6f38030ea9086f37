#!/usr/bin/env python3
"""Offline discrete CRR (with the CQL regulariser) on an Atari buffer.

    python3 atari_crr.py --task PongNoFrameskip-v4 --load-buffer-name expert.hdf5 --epoch 5

The flags are those of Tianshou's ``examples/offline/atari_crr.py`` (both ``--a-b`` and
``--a_b`` spellings; unknown flags are an error); ``--min-q-weight 0`` turns the CQL
regulariser off. The policy head and the critic head share one Nature-DQN trunk, as in
Tianshou's example. Outputs as ``atari_cql.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import _no_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
from _common import actor_saver, build_algorithm, make_setup, run

from tianshou_offline.algorithms import DiscreteCRR, DiscreteCRRConfig
from tianshou_offline.cli.example_args import AtariConfig, parse_config, run_example


@dataclass(kw_only=True)
class CRRFlags(AtariConfig):
    """Discrete CRR (with the CQL regulariser) on offline Atari data: the common flags and the fields of
    ``tianshou_offline.algorithms.DiscreteCRRConfig`` (defaults of the ``atari`` preset)."""

    algorithm: ClassVar[str | None] = "crr"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = parse_config(CRRFlags, argv, prog="atari_crr.py", description=__doc__ or "")
    setup = make_setup(config)
    algorithm = build_algorithm(config, setup)
    assert isinstance(algorithm, DiscreteCRR)
    settings = config.algorithm_config()
    assert isinstance(settings, DiscreteCRRConfig)
    save_actor = actor_saver(setup, settings, algorithm.policy.actor, head="logits")
    return run(config, "crr", setup, algorithm, save_actor)


if __name__ == "__main__":
    run_example(main)
