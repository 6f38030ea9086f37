#!/usr/bin/env python3
"""The Decision Transformer (Chen et al. 2021) on an Atari buffer.

    python3 atari_dt.py --task BreakoutNoFrameskip-v4 --load-buffer-name breakout.hdf5 \
        --target-return 90 --epoch 5

The flags are those of the other ``atari_*.py`` examples (both ``--a-b`` and ``--a_b``
spellings; unknown flags are an error; ``--memory disk`` streams the frames of a large
buffer from its files) plus the fields of ``tianshou_offline.algorithms.DiscreteDTConfig``,
defaults the ``atari`` preset's: the paper's Atari settings (the authors'
``atari/run_dt_atari.py``): context K = 30 steps of 4 stacked frames, 6 blocks of 128 units
with 8 heads, dropout 0.1, AdamW (lr 6e-4, weight decay 0.1) with a linear warm-up,
gradient-norm clip 1.0, batch 128, returns-to-go unscaled, actions sampled from the
predicted distribution at evaluation (``--sample-actions 0``: the most likely one),
conditioned on ``--target-return`` (the authors: Breakout 90, Qbert 2500, Pong 20, Seaquest
1450, in the data's reward units). Evaluation episodes get their rewards through
``RewardInInfo``. Outputs as ``atari_cql.py``; ``policy_actor.pt`` / ``last_actor.pt`` hold
the network's weights (not a ``tianshou-offline record`` checkpoint). ``--greedy`` (for
``--sample-actions 0``), ``--hidden-sizes`` and ``--scale-obs`` (flags of earlier releases,
never used by the Decision Transformer) still parse, with a ``DeprecationWarning``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import _no_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
from _common import make_setup, run
from tianshou.env import DummyVectorEnv

from tianshou_offline.algorithms import DiscreteDTPolicy, RewardInInfo
from tianshou_offline.cli.example_args import (
    AtariConfig,
    parse_config,
    run_example,
    warn_unused_flags,
)
from tianshou_offline.recording.atari import make_atari_env
from tianshou_offline.training import save_state


@dataclass(kw_only=True)
class DTFlags(AtariConfig):
    """The Decision Transformer on offline Atari data: the common flags and the fields of
    ``tianshou_offline.algorithms.DiscreteDTConfig`` (defaults of the ``atari`` preset)."""

    algorithm: ClassVar[str | None] = "dt"

    greedy: bool = False
    """--sample-actions 0 (accepted for one release)"""
    hidden_sizes: list[int] | None = None
    """not used: the network is --embed-dim wide (accepted for one release)"""
    scale_obs: Literal[0, 1] | None = None
    """not used: the frames are always scaled to [0, 1] (accepted for one release)"""

    def check(self) -> None:
        super().check()
        warn_unused_flags(self, ("hidden_sizes", "scale_obs"),
                          "the Decision Transformer has no such setting")  # fmt: skip
        if self.greedy:
            warnings.warn("--greedy is deprecated: use --sample-actions 0 (it will be removed "
                          "in the next release)", DeprecationWarning, stacklevel=2)  # fmt: skip
            self.algo = self.algorithm_config().replace(sample_actions=False)


def get_args(argv: Sequence[str] | None = None) -> DTFlags:
    return parse_config(DTFlags, argv, prog="atari_dt.py", description=__doc__ or "")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = get_args(argv)
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

    algorithm = config.build_algorithm(setup.env.observation_space, setup.env.action_space)
    policy = algorithm.policy
    assert isinstance(policy, DiscreteDTPolicy)
    model = policy.model

    def save_actor(path: str) -> None:
        save_state(path, {"sizes": model.sizes, "state_dict": model.state_dict()})  # atomically

    return run(config, "dt", setup, algorithm, save_actor)


if __name__ == "__main__":
    run_example(main)
