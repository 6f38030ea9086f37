#!/usr/bin/env python3
"""The Decision Transformer (Chen et al. 2021) on an Atari buffer.

    python3 atari_dt.py --task BreakoutNoFrameskip-v4 --load-buffer-name breakout.hdf5 \
        --target-return 90 --epoch 5

The flags are those of the other ``atari_*.py`` examples (both ``--a-b`` and ``--a_b``
spellings; unknown flags are an error; ``--memory disk`` streams the frames of a large
buffer from its files) plus the Decision Transformer's. Defaults are the paper's Atari
settings (the authors' ``atari/run_dt_atari.py``): context K = 30 steps of 4 stacked frames,
6 blocks of 128 units with 8 heads, dropout 0.1, AdamW (lr 6e-4, weight decay 0.1) with a
linear warm-up, gradient-norm clip 1.0, batch 128, returns-to-go unscaled, actions sampled
from the predicted distribution at evaluation, conditioned on ``--target-return`` (the
authors: Breakout 90, Qbert 2500, Pong 20, Seaquest 1450, in the data's reward units).
Evaluation episodes get their rewards through ``RewardInInfo``. Outputs as ``atari_cql.py``;
``policy_actor.pt`` / ``last_actor.pt`` hold the network's weights (not a
``tianshou-offline record`` checkpoint).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import _no_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
import torch
from _common import make_setup, run
from tianshou.env import DummyVectorEnv

from tianshou_offline.algorithms import DiscreteDTConfig, DiscreteDTPolicy, RewardInInfo
from tianshou_offline.cli.example_args import ManualAtariConfig, parse_config, run_example
from tianshou_offline.recording.atari import make_atari_env


@dataclass(kw_only=True)
class DTConfig(ManualAtariConfig):
    """The Decision Transformer on offline Atari data."""

    lr: float = 6e-4
    batch_size: int = 128
    weight_decay: float = 0.1
    """AdamW's weight decay"""
    warmup_steps: int = 1000
    """linear learning-rate warm-up (gradient steps)"""
    max_grad_norm: float = 1.0
    """clip the gradient norm"""
    context: int = 30
    """K, steps per segment (and the policy's context; 50 for Pong in the paper)"""
    embed_dim: int = 128
    """width of the token embeddings"""
    n_layers: int = 6
    """transformer blocks"""
    n_heads: int = 8
    """attention heads"""
    dropout: float = 0.1
    """dropout of embeddings, attention and feed-forward layers"""
    max_timestep: int = 10_000
    """timesteps are embedded up to this value (longer episodes reuse the last embedding)"""
    target_return: float = 20.0
    """the return the policy conditions on at each episode's start (in the data's units)"""
    rtg_scale: float = 1.0
    """returns-to-go are divided by this in the network's input"""
    greedy: bool = False
    """act with the most likely action instead of sampling from the predicted distribution"""

    def check(self) -> None:
        super().check()
        if self.context < 1 or self.n_layers < 1 or self.n_heads < 1:
            raise ValueError("--context, --n-layers and --n-heads must be at least 1")
        if self.embed_dim % self.n_heads:
            raise ValueError("--embed-dim must be a multiple of --n-heads")
        if self.rtg_scale <= 0 or self.warmup_steps < 1:
            raise ValueError("--rtg-scale must be > 0 and --warmup-steps at least 1")


def main(argv: Sequence[str] | None = None) -> None:
    config = parse_config(DTConfig, argv, prog="atari_dt.py", description=__doc__ or "")
    setup = make_setup(config)
    # evaluation environments that report each step's reward to the policy
    setup.test_envs.close()
    env_kwargs: dict[str, Any] = {
        "frame_stack": config.frames_stack,
        "max_episode_steps": config.max_episode_steps,
    }
    if config.render > 0:
        env_kwargs["render_mode"] = "human"
    setup.test_envs = DummyVectorEnv(
        [lambda: RewardInInfo(make_atari_env(config.task, **env_kwargs))] * config.test_num
    )
    setup.test_envs.seed([config.seed + i for i in range(config.test_num)])

    algorithm = DiscreteDTConfig(
        lr=config.lr,
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
        sample_actions=not config.greedy,
    ).build(setup.env.observation_space, setup.env.action_space, device=setup.device)
    policy = algorithm.policy
    assert isinstance(policy, DiscreteDTPolicy)
    model = policy.model

    def save_actor(path: str) -> None:
        torch.save({"sizes": model.sizes, "state_dict": model.state_dict()}, path)

    run(config, "dt", setup, algorithm, save_actor)


if __name__ == "__main__":
    run_example(main)
