#!/usr/bin/env python3
"""CRR (Wang et al. 2020) on a D4RL / Minari dataset or any buffer file.

python examples/mujoco/d4rl_crr.py --expert-data-task halfcheetah-expert-v2
python examples/mujoco/d4rl_crr.py --weight binary --task Pendulum-v1 --expert-data-task expert.hdf5
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from d4rl_common import make_env, make_parser, setup, spaces, train_and_evaluate
from tianshou.algorithm.optim import AdamOptimizerFactory

from tianshou_offline.algorithms import CRR, CriticEnsemble, GaussianActor, GaussianPolicy


def get_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = make_parser(__doc__ or "", task="HalfCheetah-v5", expert_data_task="halfcheetah-expert-v2")
    p.add_argument(
        "--weight", choices=["exp", "binary"], default="exp", help="advantage weighting f"
    )
    p.add_argument("--advantage", choices=["mean", "max"], default="mean")
    p.add_argument("--beta", type=float, default=1.0, help="temperature of the exp weight")
    p.add_argument("--max-weight", type=float, default=20.0)
    p.add_argument("--num-action-samples", type=int, default=4, help="m, samples for the advantage")
    p.add_argument("--num-critics", type=int, default=2)
    p.add_argument(
        "--target-update-interval",
        type=int,
        default=1,
        help="update targets every N steps (with --tau 1: d3rlpy's hard copies, N=100)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = get_args(argv)
    dataset = setup(args)
    env = make_env(args, dataset)
    obs_dim, act_dim = spaces(env)
    policy = GaussianPolicy(
        actor=GaussianActor(obs_dim, act_dim, args.hidden_sizes),
        action_space=env.action_space,
        observation_space=env.observation_space,
        squash=False,
        normalize_obs=bool(args.norm_obs),
    ).to(args.device)
    algorithm: CRR = CRR(
        policy=policy,
        policy_optim=AdamOptimizerFactory(lr=args.actor_lr),
        critics=CriticEnsemble(
            obs_dim, act_dim, args.hidden_sizes, num_critics=args.num_critics
        ).to(args.device),
        critic_optim=AdamOptimizerFactory(lr=args.critic_lr),
        gamma=args.gamma,
        tau=args.tau,
        target_update_interval=args.target_update_interval,
        weight=args.weight,
        beta=args.beta,
        max_weight=args.max_weight,
        advantage=args.advantage,
        num_action_samples=args.num_action_samples,
        n_step_return_horizon=args.n_step,
    )
    return train_and_evaluate(args, "crr", dataset, algorithm, env)


if __name__ == "__main__":
    main(sys.argv[1:])
