#!/usr/bin/env python3
"""Offline imitation learning (behaviour cloning) on an Atari buffer.

    python3 atari_il.py --task PongNoFrameskip-v4 --load-buffer-name expert.hdf5 --epoch 5

The flags are those of Tianshou's ``examples/offline/atari_il.py`` (both ``--a-b`` and
``--a_b`` spellings; unknown flags are an error). Outputs as ``atari_cql.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import _no_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
from _common import make_setup, run
from tianshou.algorithm.optim import AdamOptimizerFactory

from tianshou_offline.algorithms import (
    AtariTrunk,
    DiscreteActorPolicy,
    DiscreteImitationLearning,
    QNet,
)
from tianshou_offline.cli.example_args import AtariConfig, parse_config, run_example
from tianshou_offline.recording.policies import save_atari_checkpoint


@dataclass(kw_only=True)
class ILConfig(AtariConfig):
    """Behaviour cloning on offline Atari data."""


def main(argv: Sequence[str] | None = None) -> None:
    config = parse_config(ILConfig, argv, prog="atari_il.py", description=__doc__ or "")
    setup = make_setup(config)
    c, h, w = setup.state_shape

    # Nature-DQN trunk with a head of action logits
    model = QNet(
        AtariTrunk(c, h, w, scale_obs=bool(config.scale_obs)),
        setup.num_actions,
        config.hidden_sizes,
    )
    policy = DiscreteActorPolicy(
        actor=model,
        action_space=setup.env.action_space,
        observation_space=setup.env.observation_space,
        eps_inference=config.eps_test,
    )
    algorithm: DiscreteImitationLearning = DiscreteImitationLearning(
        policy=policy, optim=AdamOptimizerFactory(lr=config.lr)
    )

    def save_actor(path: str) -> None:
        save_atari_checkpoint(
            path,
            model,
            head="logits",
            num_actions=setup.num_actions,
            frame_stack=c,
            frame_shape=(h, w),
            hidden_sizes=config.hidden_sizes,
            scale_obs=bool(config.scale_obs),
        )

    run(config, "il", setup, algorithm, save_actor)


if __name__ == "__main__":
    run_example(main)
