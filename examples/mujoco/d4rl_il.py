#!/usr/bin/env python3
"""Imitation learning (behaviour cloning) on a D4RL / Minari dataset or any buffer file.

python examples/mujoco/d4rl_il.py --expert-data-task halfcheetah-expert-v2
python examples/mujoco/d4rl_il.py --actor gaussian --task Pendulum-v1 --expert-data-task expert.hdf5
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from d4rl_common import make_env, make_parser, setup, spaces, train_and_evaluate
from tianshou.algorithm.optim import AdamOptimizerFactory

from tianshou_offline.algorithms import (
    DeterministicActor,
    DeterministicPolicy,
    GaussianActor,
    GaussianPolicy,
    ImitationLearning,
)


def get_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = make_parser(__doc__ or "", task="HalfCheetah-v5", expert_data_task="halfcheetah-expert-v2")
    p.set_defaults(actor_lr=1e-3)
    p.add_argument(
        "--actor",
        choices=["deterministic", "gaussian"],
        default="deterministic",
        help="MSE regression or maximum likelihood of a Gaussian",
    )
    p.add_argument("--lr", type=float, default=None, help="alias of --actor-lr")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = get_args(argv)
    dataset = setup(args)
    env = make_env(args, dataset)
    obs_dim, act_dim = spaces(env)
    common: dict[str, Any] = dict(
        action_space=env.action_space,
        observation_space=env.observation_space,
        normalize_obs=bool(args.norm_obs),
    )
    policy: DeterministicPolicy | GaussianPolicy
    if args.actor == "gaussian":
        policy = GaussianPolicy(
            actor=GaussianActor(obs_dim, act_dim, args.hidden_sizes), squash=False, **common
        )
    else:
        policy = DeterministicPolicy(
            actor=DeterministicActor(obs_dim, act_dim, args.hidden_sizes), **common
        )
    policy.to(args.device)
    algorithm: ImitationLearning = ImitationLearning(
        policy=policy, optim=AdamOptimizerFactory(lr=args.lr or args.actor_lr)
    )
    return train_and_evaluate(args, "il", dataset, algorithm, env)


if __name__ == "__main__":
    main(sys.argv[1:])
