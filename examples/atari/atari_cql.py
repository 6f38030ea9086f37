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

import _no_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
from _common import main_guard, make_parser, make_setup, parse_args, run
from tianshou.algorithm.optim import AdamOptimizerFactory

from tianshou_offline.algorithms import AtariTrunk, DiscreteCQL, QuantileQNet, QValuePolicy
from tianshou_offline.policies import save_atari_checkpoint


def main(argv: Sequence[str] | None = None) -> None:
    parser = make_parser("cql", "Discrete CQL (QR-DQN) on offline Atari data", lr=1e-4)
    parser.add_argument(
        "--num-quantiles", "--num_quantiles", dest="num_quantiles", type=int, default=200
    )
    parser.add_argument("--n-step", "--n_step", dest="n_step", type=int, default=1)
    parser.add_argument(
        "--target-update-freq",
        "--target_update_freq",
        dest="target_update_freq",
        type=int,
        default=500,
    )
    parser.add_argument(
        "--min-q-weight", "--min_q_weight", dest="min_q_weight", type=float, default=10.0
    )
    args = parse_args(parser, argv)
    setup = make_setup(args)
    c, h, w = setup.state_shape

    # QR-DQN network: Nature-DQN trunk, head with A × N quantile outputs
    model = QuantileQNet(
        AtariTrunk(c, h, w, scale_obs=bool(args.scale_obs)),
        setup.num_actions,
        args.num_quantiles,
        args.hidden_sizes,
    )
    policy = QValuePolicy(
        model=model,
        action_space=setup.env.action_space,
        observation_space=setup.env.observation_space,
        eps_inference=args.eps_test,
    )
    algorithm: DiscreteCQL = DiscreteCQL(
        policy=policy,
        optim=AdamOptimizerFactory(lr=args.lr),
        min_q_weight=args.min_q_weight,
        gamma=args.gamma,
        n_step_return_horizon=args.n_step,
        target_update_freq=args.target_update_freq,
    )

    def save_actor(path: str) -> None:
        save_atari_checkpoint(
            path,
            model,
            head="quantiles",
            num_actions=setup.num_actions,
            frame_stack=c,
            frame_shape=(h, w),
            hidden_sizes=args.hidden_sizes,
            num_quantiles=args.num_quantiles,
            scale_obs=bool(args.scale_obs),
        )

    run(args, "cql", setup, algorithm, save_actor)


if __name__ == "__main__":
    main_guard(main)
