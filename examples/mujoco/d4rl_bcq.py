#!/usr/bin/env python3
"""BCQ (Fujimoto et al. 2019) on a D4RL / Minari dataset or any buffer file.

python examples/mujoco/d4rl_bcq.py --expert-data-task halfcheetah-expert-v2
python examples/mujoco/d4rl_bcq.py --task Pendulum-v1 --expert-data-task expert.hdf5 --epoch 5
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from d4rl_common import make_env, make_parser, setup, spaces, train_and_evaluate
from tianshou.algorithm.optim import AdamOptimizerFactory

from tianshou_offline.algorithms import BCQ, VAE, BCQPolicy, CriticEnsemble, Perturbation


def get_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = make_parser(__doc__ or "", task="HalfCheetah-v5", expert_data_task="halfcheetah-expert-v2")
    p.set_defaults(actor_lr=1e-3, critic_lr=1e-3, hidden_sizes=[400, 300])
    p.add_argument("--vae-hidden-sizes", type=int, nargs="*", default=[750, 750])
    p.add_argument("--vae-lr", type=float, default=1e-3)
    p.add_argument("--latent-dim", type=int, default=None, help="default: 2 × action size")
    p.add_argument(
        "--lmbda", type=float, default=0.75, help="weight of the min in the soft clipped double Q"
    )
    p.add_argument("--phi", type=float, default=0.05, help="largest perturbation")
    p.add_argument("--num-sampled-action", type=int, default=10)
    p.add_argument("--num-candidate-actions", type=int, default=100, help="candidates when acting")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = get_args(argv)
    dataset = setup(args)
    env = make_env(args, dataset)
    obs_dim, act_dim = spaces(env)
    policy = BCQPolicy(
        vae=VAE(obs_dim, act_dim, args.vae_hidden_sizes, latent_dim=args.latent_dim),
        perturbation=Perturbation(obs_dim, act_dim, args.hidden_sizes, phi=args.phi),
        critics=CriticEnsemble(obs_dim, act_dim, args.hidden_sizes, num_critics=2),
        action_space=env.action_space,
        observation_space=env.observation_space,
        num_candidate_actions=args.num_candidate_actions,
        normalize_obs=bool(args.norm_obs),
    ).to(args.device)
    algorithm: BCQ = BCQ(
        policy=policy,
        vae_optim=AdamOptimizerFactory(lr=args.vae_lr),
        actor_perturbation_optim=AdamOptimizerFactory(lr=args.actor_lr),
        critic_optim=AdamOptimizerFactory(lr=args.critic_lr),
        gamma=args.gamma,
        tau=args.tau,
        lmbda=args.lmbda,
        num_sampled_action=args.num_sampled_action,
        n_step_return_horizon=args.n_step,
    )
    return train_and_evaluate(args, "bcq", dataset, algorithm, env)


if __name__ == "__main__":
    main(sys.argv[1:])
