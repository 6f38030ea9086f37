#!/usr/bin/env python3
"""CQL (Kumar et al. 2020) on a D4RL / Minari dataset or any buffer file.

python examples/mujoco/d4rl_cql.py --expert-data-task halfcheetah-expert-v2
python examples/mujoco/d4rl_cql.py --task Pendulum-v1 --expert-data-task expert.hdf5 --epoch 5
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from d4rl_common import make_env, make_parser, setup, spaces, train_and_evaluate
from tianshou.algorithm.optim import AdamOptimizerFactory

from tianshou_offline.algorithms import CQL, CriticEnsemble, GaussianActor, GaussianPolicy


def get_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = make_parser(__doc__ or "", task="HalfCheetah-v5", expert_data_task="halfcheetah-expert-v2")
    p.set_defaults(actor_lr=1e-4, critic_lr=3e-4)
    p.add_argument(
        "--alpha", type=float, default=0.2, help="entropy temperature (with --auto-alpha 0)"
    )
    p.add_argument("--auto-alpha", type=int, default=1)
    p.add_argument("--alpha-lr", type=float, default=1e-4)
    p.add_argument("--cql-alpha-lr", type=float, default=3e-4)
    p.add_argument("--cql-weight", type=float, default=5.0)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--num-sampled-actions", type=int, default=10)
    p.add_argument("--with-lagrange", type=int, default=0)
    p.add_argument("--lagrange-threshold", type=float, default=10.0)
    p.add_argument("--backup-entropy", type=int, default=0)
    p.add_argument("--max-grad-norm", type=float, default=None)
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
        normalize_obs=bool(args.norm_obs),
    ).to(args.device)
    algorithm: CQL = CQL(
        policy=policy,
        policy_optim=AdamOptimizerFactory(lr=args.actor_lr),
        critics=CriticEnsemble(obs_dim, act_dim, args.hidden_sizes, num_critics=2).to(args.device),
        critic_optim=AdamOptimizerFactory(lr=args.critic_lr),
        tau=args.tau,
        gamma=args.gamma,
        alpha="auto" if args.auto_alpha else args.alpha,
        alpha_optim=AdamOptimizerFactory(lr=args.alpha_lr),
        cql_weight=args.cql_weight,
        temperature=args.temperature,
        num_sampled_actions=args.num_sampled_actions,
        with_lagrange=bool(args.with_lagrange),
        lagrange_threshold=args.lagrange_threshold,
        cql_alpha_optim=AdamOptimizerFactory(lr=args.cql_alpha_lr),
        backup_entropy=bool(args.backup_entropy),
        n_step_return_horizon=args.n_step,
        max_grad_norm=args.max_grad_norm,
    )
    return train_and_evaluate(args, "cql", dataset, algorithm, env)


if __name__ == "__main__":
    main(sys.argv[1:])
