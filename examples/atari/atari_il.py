#!/usr/bin/env python3
"""Offline imitation learning (behaviour cloning) on an Atari buffer.

    python3 atari_il.py --task PongNoFrameskip-v4 --load-buffer-name expert.hdf5 --epoch 5

The flags are those of Tianshou's ``examples/offline/atari_il.py`` (both ``--a-b`` and
``--a_b`` spellings; unknown flags are an error). Outputs as ``atari_cql.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import _no_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
from _common import main_guard, make_parser, make_setup, parse_args, run
from tianshou.algorithm.optim import AdamOptimizerFactory

from tianshou_offline.algorithms import (
    AtariTrunk,
    DiscreteActorPolicy,
    DiscreteImitationLearning,
    QNet,
)
from tianshou_offline.policies import save_atari_checkpoint


def main(argv: Sequence[str] | None = None) -> None:
    parser = make_parser("il", "Behaviour cloning on offline Atari data", lr=1e-4)
    args = parse_args(parser, argv)
    setup = make_setup(args)
    c, h, w = setup.state_shape

    # Nature-DQN trunk with a head of action logits
    model = QNet(
        AtariTrunk(c, h, w, scale_obs=bool(args.scale_obs)), setup.num_actions, args.hidden_sizes
    )
    policy = DiscreteActorPolicy(
        actor=model,
        action_space=setup.env.action_space,
        observation_space=setup.env.observation_space,
        eps_inference=args.eps_test,
    )
    algorithm: DiscreteImitationLearning = DiscreteImitationLearning(
        policy=policy, optim=AdamOptimizerFactory(lr=args.lr)
    )

    def save_actor(path: str) -> None:
        save_atari_checkpoint(
            path,
            model,
            head="logits",
            num_actions=setup.num_actions,
            frame_stack=c,
            frame_shape=(h, w),
            hidden_sizes=args.hidden_sizes,
            scale_obs=bool(args.scale_obs),
        )

    run(args, "il", setup, algorithm, save_actor)


if __name__ == "__main__":
    main_guard(main)
