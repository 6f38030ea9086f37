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

import _no_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
from _common import main_guard, make_parser, make_setup, parse_args, run
from tianshou.algorithm.optim import AdamOptimizerFactory

from tianshou_offline.algorithms import AtariTrunk, DiscreteActorPolicy, DiscreteCRR, DualHeadNet
from tianshou_offline.policies import save_atari_checkpoint


def main(argv: Sequence[str] | None = None) -> None:
    parser = make_parser("crr", "Discrete CRR on offline Atari data", lr=1e-4)
    parser.add_argument(
        "--policy-improvement-mode",
        "--policy_improvement_mode",
        dest="policy_improvement_mode",
        type=str,
        default="exp",
        choices=["exp", "binary", "all"],
    )
    parser.add_argument(
        "--ratio-upper-bound",
        "--ratio_upper_bound",
        dest="ratio_upper_bound",
        type=float,
        default=20.0,
    )
    parser.add_argument("--beta", type=float, default=1.0)
    parser.add_argument(
        "--min-q-weight", "--min_q_weight", dest="min_q_weight", type=float, default=10.0
    )
    parser.add_argument(
        "--target-update-freq",
        "--target_update_freq",
        dest="target_update_freq",
        type=int,
        default=500,
    )
    parser.add_argument("--n-step", "--n_step", dest="n_step", type=int, default=1)
    args = parse_args(parser, argv)
    setup = make_setup(args)
    c, h, w = setup.state_shape

    # one trunk, two heads: policy logits (first) and Q-values (second)
    model = DualHeadNet(
        AtariTrunk(c, h, w, scale_obs=bool(args.scale_obs)), setup.num_actions, args.hidden_sizes
    )
    policy = DiscreteActorPolicy(
        actor=model,
        action_space=setup.env.action_space,
        observation_space=setup.env.observation_space,
        logits_index=0,
        eps_inference=args.eps_test,
    )
    algorithm: DiscreteCRR = DiscreteCRR(
        policy=policy,
        optim=AdamOptimizerFactory(lr=args.lr),
        gamma=args.gamma,
        n_step_return_horizon=args.n_step,
        policy_improvement_mode=args.policy_improvement_mode,
        ratio_upper_bound=args.ratio_upper_bound,
        beta=args.beta,
        min_q_weight=args.min_q_weight,
        target_update_freq=args.target_update_freq,
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

    run(args, "crr", setup, algorithm, save_actor)


if __name__ == "__main__":
    main_guard(main)
