#!/usr/bin/env python3
"""TD3+BC (Fujimoto & Gu 2021) on a D4RL / Minari dataset or any buffer file.

python examples/mujoco/d4rl_td3_bc.py --expert-data-task halfcheetah-expert-v2
python examples/mujoco/d4rl_td3_bc.py --task Pendulum-v1 --expert-data-task expert.hdf5 --epoch 5
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from d4rl_common import make_env, make_parser, setup, spaces, train_and_evaluate
from tianshou.algorithm.optim import AdamOptimizerFactory

from tianshou_offline.algorithms import (
    TD3BC,
    CriticEnsemble,
    DeterministicActor,
    DeterministicPolicy,
)


def get_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = make_parser(__doc__ or "", task="HalfCheetah-v5", expert_data_task="halfcheetah-expert-v2")
    p.set_defaults(norm_obs=1)
    p.add_argument("--alpha", type=float, default=2.5)
    p.add_argument("--policy-noise", type=float, default=0.2)
    p.add_argument("--noise-clip", type=float, default=0.5)
    p.add_argument("--update-actor-freq", type=int, default=2)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = get_args(argv)
    dataset = setup(args)
    env = make_env(args, dataset)
    obs_dim, act_dim = spaces(env)
    policy = DeterministicPolicy(
        actor=DeterministicActor(obs_dim, act_dim, args.hidden_sizes),
        action_space=env.action_space,
        observation_space=env.observation_space,
        normalize_obs=bool(args.norm_obs),
    ).to(args.device)
    algorithm: TD3BC = TD3BC(
        policy=policy,
        policy_optim=AdamOptimizerFactory(lr=args.actor_lr),
        critics=CriticEnsemble(obs_dim, act_dim, args.hidden_sizes, num_critics=2).to(args.device),
        critic_optim=AdamOptimizerFactory(lr=args.critic_lr),
        tau=args.tau,
        gamma=args.gamma,
        policy_noise=args.policy_noise,
        noise_clip=args.noise_clip,
        update_actor_freq=args.update_actor_freq,
        alpha=args.alpha,
        n_step_return_horizon=args.n_step,
    )
    return train_and_evaluate(args, "td3_bc", dataset, algorithm, env)


if __name__ == "__main__":
    main(sys.argv[1:])
