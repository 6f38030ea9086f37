#!/usr/bin/env python3
"""The Decision Transformer (Chen et al. 2021) on a D4RL / Minari dataset or any buffer file.

python examples/mujoco/d4rl_dt.py --expert-data-task hopper-medium-v2 --target-return 3600
python examples/mujoco/d4rl_dt.py --task Pendulum-v1 --expert-data-task expert.hdf5 \
    --target-return -150 --rtg-scale 100 --epoch 5

Defaults are the paper's MuJoCo settings (the authors' ``gym/experiment.py`` and CORL):
context K = 20, 3 blocks of 128 units with 1 head, dropout 0.1, AdamW (lr 1e-4, weight decay
1e-4) with a 10,000-step linear warm-up, gradient-norm clip 0.25, batch 64, returns-to-go
divided by 1000, normalised observations, evaluation conditioned on ``--target-return``
(the authors: 3600 Hopper, 6000 HalfCheetah, 5000 Walker2d). ``--step-per-epoch`` counts
gradient steps; each samples ``--batch-size`` segments of K steps. ``policy.pt`` holds the
policy's weights (resume or ``--watch`` with ``--resume-path``; it is not a
``tianshou-offline record`` checkpoint).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import _without_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
import gymnasium as gym
import torch
from d4rl_common import make_env, setup, train_and_evaluate

from tianshou_offline.algorithms import ContinuousDTConfig, DecisionTransformer, RewardInInfo
from tianshou_offline.cli.example_args import ManualMujocoConfig, arg, parse_config, run_example


@dataclass(kw_only=True)
class DTConfig(ManualMujocoConfig):
    """The flags of this script: the common ones and the Decision Transformer's."""

    batch_size: int = 64
    actor_lr: float = arg(1e-4, aliases=("lr",))
    """learning rate of the transformer (AdamW)"""
    weight_decay: float = 1e-4
    """AdamW's weight decay"""
    warmup_steps: int = 10_000
    """linear learning-rate warm-up (gradient steps)"""
    max_grad_norm: float = 0.25
    """clip the gradient norm"""
    norm_obs: Literal[0, 1] = 1
    context: int = 20
    """K, steps per segment (and the policy's context)"""
    embed_dim: int = 128
    """width of the token embeddings"""
    n_layers: int = 3
    """transformer blocks"""
    n_heads: int = 1
    """attention heads"""
    dropout: float = 0.1
    """dropout of embeddings, attention and feed-forward layers"""
    max_timestep: int = 1000
    """timesteps are embedded up to this value (longer episodes reuse the last embedding)"""
    target_return: float = 3600.0
    """the return the policy conditions on at each episode's start"""
    rtg_scale: float = 1000.0
    """returns-to-go are divided by this in the network's input"""

    def check(self) -> None:
        super().check()
        if self.context < 1 or self.n_layers < 1 or self.n_heads < 1:
            raise ValueError("--context, --n-layers and --n-heads must be at least 1")
        if self.embed_dim % self.n_heads:
            raise ValueError("--embed-dim must be a multiple of --n-heads")
        if self.rtg_scale <= 0 or self.warmup_steps < 1:
            raise ValueError("--rtg-scale must be > 0 and --warmup-steps at least 1")


def get_args(argv: Sequence[str] | None = None) -> DTConfig:
    return parse_config(DTConfig, argv, prog="d4rl_dt.py", description=__doc__ or "")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = get_args(argv)
    dataset = setup(config)
    env = make_env(config, dataset)
    return train_and_evaluate(
        config,
        "dt",
        dataset,
        build_algorithm(config, env),
        env,
        wrap_env=RewardInInfo,
        save_policy=save_weights,
    )


def save_weights(path: Path, policy: Any) -> None:
    """``policy.pt``: the policy's ``state_dict`` (network and observation statistics)."""
    torch.save(policy.state_dict(), path)


def build_algorithm(config: DTConfig, env: gym.Env[Any, Any]) -> DecisionTransformer:
    """The algorithm of these flags for ``env`` (the library's :class:`ContinuousDTConfig`)."""
    return ContinuousDTConfig(
        lr=config.actor_lr,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_steps,
        max_grad_norm=config.max_grad_norm,
        context=config.context,
        embed_dim=config.embed_dim,
        n_layers=config.n_layers,
        n_heads=config.n_heads,
        dropout=config.dropout,
        max_timestep=config.max_timestep,
        target_return=config.target_return,
        rtg_scale=config.rtg_scale,
        normalize_obs=bool(config.norm_obs),
    ).build(env.observation_space, env.action_space, device=config.device)


if __name__ == "__main__":
    run_example(main)
