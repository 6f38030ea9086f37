#!/usr/bin/env python3
"""Offline discrete BCQ on an Atari buffer.

    python3 atari_bcq.py --task PongNoFrameskip-v4 --load-buffer-name expert.hdf5 --epoch 5

The flags are those of Tianshou's ``examples/offline/atari_bcq.py`` (both ``--a-b`` and
``--a_b`` spellings; unknown flags are an error). The Q-value head and the imitation head
share one Nature-DQN trunk, as in Tianshou's example. Outputs as ``atari_cql.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import _no_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
from _common import make_setup, run
from tianshou.algorithm.optim import AdamOptimizerFactory

from tianshou_offline.algorithms import AtariTrunk, DiscreteBCQ, DiscreteBCQPolicy, DualHeadNet
from tianshou_offline.cli.example_args import AtariConfig, parse_config, run_example
from tianshou_offline.recording.policies import save_atari_checkpoint


@dataclass(kw_only=True)
class BCQConfig(AtariConfig):
    """Discrete BCQ on offline Atari data."""

    lr: float = 6.25e-5
    n_step: int = 1
    """n-step return horizon"""
    target_update_freq: int = 8000
    """gradient steps between target-network copies"""
    unlikely_action_threshold: float = 0.3
    """τ: actions whose imitation probability, relative to the most likely one, is below
    this are never chosen"""
    imitation_logits_penalty: float = 0.01
    """weight of the L2 penalty on the imitation logits"""


def main(argv: Sequence[str] | None = None) -> None:
    config = parse_config(BCQConfig, argv, prog="atari_bcq.py", description=__doc__ or "")
    setup = make_setup(config)
    c, h, w = setup.state_shape

    # one trunk, two heads: Q-values and the imitation (behaviour) logits
    model = DualHeadNet(
        AtariTrunk(c, h, w, scale_obs=bool(config.scale_obs)),
        setup.num_actions,
        config.hidden_sizes,
    )
    policy = DiscreteBCQPolicy(
        model=model,
        action_space=setup.env.action_space,
        observation_space=setup.env.observation_space,
        unlikely_action_threshold=config.unlikely_action_threshold,
        eps_inference=config.eps_test,
    )
    algorithm: DiscreteBCQ = DiscreteBCQ(
        policy=policy,
        optim=AdamOptimizerFactory(lr=config.lr),
        gamma=config.gamma,
        n_step_return_horizon=config.n_step,
        target_update_freq=config.target_update_freq,
        imitation_logits_penalty=config.imitation_logits_penalty,
    )

    def save_actor(path: str) -> None:
        save_atari_checkpoint(
            path,
            model,
            head="bcq",
            num_actions=setup.num_actions,
            frame_stack=c,
            frame_shape=(h, w),
            hidden_sizes=config.hidden_sizes,
            scale_obs=bool(config.scale_obs),
            unlikely_action_threshold=config.unlikely_action_threshold,
        )

    run(config, "bcq", setup, algorithm, save_actor)


if __name__ == "__main__":
    run_example(main)
