#!/usr/bin/env python3
"""Offline discrete BCQ on an Atari buffer.

    python3 atari_bcq.py --task PongNoFrameskip-v4 --load-buffer-name expert.hdf5 --epoch 5

The flags are those of Tianshou's ``examples/offline/atari_bcq.py`` (both ``--a-b`` and
``--a_b`` spellings; unknown flags are an error). The Q-value head and the imitation head
share one Nature-DQN trunk, as in Tianshou's example. Outputs as ``atari_cql.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import _no_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
from _common import main_guard, make_parser, make_setup, parse_args, run
from tianshou.algorithm.optim import AdamOptimizerFactory

from tianshou_offline.algorithms import AtariTrunk, DiscreteBCQ, DiscreteBCQPolicy, DualHeadNet
from tianshou_offline.policies import save_atari_checkpoint


def main(argv: Sequence[str] | None = None) -> None:
    parser = make_parser("bcq", "Discrete BCQ on offline Atari data", lr=6.25e-5)
    parser.add_argument("--n-step", "--n_step", dest="n_step", type=int, default=1)
    parser.add_argument(
        "--target-update-freq",
        "--target_update_freq",
        dest="target_update_freq",
        type=int,
        default=8000,
    )
    parser.add_argument(
        "--unlikely-action-threshold",
        "--unlikely_action_threshold",
        dest="unlikely_action_threshold",
        type=float,
        default=0.3,
    )
    parser.add_argument(
        "--imitation-logits-penalty",
        "--imitation_logits_penalty",
        dest="imitation_logits_penalty",
        type=float,
        default=0.01,
    )
    args = parse_args(parser, argv)
    setup = make_setup(args)
    c, h, w = setup.state_shape

    # one trunk, two heads: Q-values and the imitation (behaviour) logits
    model = DualHeadNet(
        AtariTrunk(c, h, w, scale_obs=bool(args.scale_obs)), setup.num_actions, args.hidden_sizes
    )
    policy = DiscreteBCQPolicy(
        model=model,
        action_space=setup.env.action_space,
        observation_space=setup.env.observation_space,
        unlikely_action_threshold=args.unlikely_action_threshold,
        eps_inference=args.eps_test,
    )
    algorithm: DiscreteBCQ = DiscreteBCQ(
        policy=policy,
        optim=AdamOptimizerFactory(lr=args.lr),
        gamma=args.gamma,
        n_step_return_horizon=args.n_step,
        target_update_freq=args.target_update_freq,
        imitation_logits_penalty=args.imitation_logits_penalty,
    )

    def save_actor(path: str) -> None:
        save_atari_checkpoint(
            path,
            model,
            head="bcq",
            num_actions=setup.num_actions,
            frame_stack=c,
            frame_shape=(h, w),
            hidden_sizes=args.hidden_sizes,
            scale_obs=bool(args.scale_obs),
            unlikely_action_threshold=args.unlikely_action_threshold,
        )

    run(args, "bcq", setup, algorithm, save_actor)


if __name__ == "__main__":
    main_guard(main)
