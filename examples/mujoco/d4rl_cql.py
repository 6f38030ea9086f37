#!/usr/bin/env python3
"""CQL (Kumar et al. 2020) on a D4RL / Minari dataset or any buffer file.

python examples/mujoco/d4rl_cql.py --expert-data-task halfcheetah-expert-v2
python examples/mujoco/d4rl_cql.py --task Pendulum-v1 --expert-data-task expert.hdf5 --epoch 5
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import _without_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
import gymnasium as gym
from d4rl_common import make_env, setup, spaces, train_and_evaluate
from tianshou.algorithm.optim import AdamOptimizerFactory

from tianshou_offline.algorithms import CQL, CriticEnsemble, GaussianActor, GaussianPolicy
from tianshou_offline.cli.example_args import MujocoConfig, parse_config, run_example


@dataclass(kw_only=True)
class CQLConfig(MujocoConfig):
    """The flags of this script: the common ones and CQL's hyperparameters."""

    actor_lr: float = 1e-4
    alpha: float = 0.2
    """entropy temperature (with --auto-alpha 0)"""
    auto_alpha: Literal[0, 1] = 1
    """1: tune the entropy temperature to a target entropy"""
    alpha_lr: float = 1e-4
    """learning rate of the entropy temperature"""
    cql_alpha_lr: float = 3e-4
    """learning rate of the Lagrange multiplier (--with-lagrange 1)"""
    cql_weight: float = 5.0
    """weight of the conservative penalty"""
    temperature: float = 1.0
    """temperature of the penalty's log-sum-exp"""
    num_sampled_actions: int = 10
    """random and policy actions per state for the penalty"""
    with_lagrange: Literal[0, 1] = 0
    """1: tune the penalty's weight to keep it near --lagrange-threshold"""
    lagrange_threshold: float = 10.0
    """target of the penalty (--with-lagrange 1)"""
    lagrange_form: Literal["cql", "calql"] = "cql"
    """the Lagrange term: cql = α'(w·gap − τ) (Kumar et al.'s code: the gap settles near
    τ / w); calql = α'·w·(gap − τ) (the Cal-QL authors' code and CORL: near τ)"""
    backup_entropy: Literal[0, 1] = 0
    """1: subtract the entropy term in the TD target"""
    calibrated: Literal[0, 1] = 0
    """1: Cal-QL (Nakamoto et al. 2023): the penalty pushes Q of policy actions down only to
    the data's return-to-go, max(Q, V_ref); pre-train with it for online fine-tuning"""
    mc_failure_reward: float | None = None
    """Cal-QL with sparse rewards: the reward of a step that does not succeed; an episode with
    only such rewards gets V_ref = r / (1 − γ) (default: dense rewards)"""
    mc_truncated: Literal["partial", "last_reward"] = "partial"
    """Cal-QL: V_ref of a time-limit-truncated episode: partial = the rewards it holds;
    last_reward = plus its last reward repeated forever"""
    max_grad_norm: float | None = None
    """clip the critics' gradient norm (default: no clipping)"""


def get_args(argv: Sequence[str] | None = None) -> CQLConfig:
    return parse_config(CQLConfig, argv, prog="d4rl_cql.py", description=__doc__ or "")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = get_args(argv)
    dataset = setup(config)
    env = make_env(config, dataset)
    return train_and_evaluate(config, "cql", dataset, build_algorithm(config, env), env)


def build_algorithm(config: CQLConfig, env: gym.Env[Any, Any]) -> CQL:
    """The algorithm of these flags for ``env`` (also used by the fine-tuning example)."""
    obs_dim, act_dim = spaces(env)
    policy = GaussianPolicy(
        actor=GaussianActor(obs_dim, act_dim, config.hidden_sizes),
        action_space=env.action_space,
        observation_space=env.observation_space,
        normalize_obs=bool(config.norm_obs),
    ).to(config.device)
    algorithm: CQL = CQL(
        policy=policy,
        policy_optim=AdamOptimizerFactory(lr=config.actor_lr),
        critics=CriticEnsemble(obs_dim, act_dim, config.hidden_sizes, num_critics=2).to(
            config.device
        ),
        critic_optim=AdamOptimizerFactory(lr=config.critic_lr),
        tau=config.tau,
        gamma=config.gamma,
        alpha="auto" if config.auto_alpha else config.alpha,
        alpha_optim=AdamOptimizerFactory(lr=config.alpha_lr),
        cql_weight=config.cql_weight,
        temperature=config.temperature,
        num_sampled_actions=config.num_sampled_actions,
        with_lagrange=bool(config.with_lagrange),
        lagrange_threshold=config.lagrange_threshold,
        lagrange_form=config.lagrange_form,
        cql_alpha_optim=AdamOptimizerFactory(lr=config.cql_alpha_lr),
        backup_entropy=bool(config.backup_entropy),
        calibrated=bool(config.calibrated),
        mc_failure_reward=config.mc_failure_reward,
        mc_truncated=config.mc_truncated,
        n_step_return_horizon=config.n_step,
        max_grad_norm=config.max_grad_norm,
    )
    return algorithm


if __name__ == "__main__":
    run_example(main)
