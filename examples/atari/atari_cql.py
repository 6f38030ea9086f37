#!/usr/bin/env python3
"""Offline discrete CQL (QR-DQN based) on an Atari buffer.

    python3 atari_cql.py --task PongNoFrameskip-v4 --load-buffer-name expert.hdf5 --epoch 5

The flags are those of Tianshou's ``examples/offline/atari_cql.py`` (both ``--a-b`` and
``--a_b`` spellings; unknown flags are an error). Gather ``expert.hdf5`` with
``tianshou-offline record`` (see docs/ATARI.md). Logs, ``policy.pth`` (best, weights only;
``--resume-path``) and ``policy_actor.pt`` (for ``tianshou-offline record --policy``) go to
``--logdir``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import _no_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
from _common import make_setup, run
from tianshou.algorithm.optim import AdamOptimizerFactory

from tianshou_offline.algorithms import AtariTrunk, DiscreteCQL, QuantileQNet, QValuePolicy
from tianshou_offline.cli.example_args import AtariConfig, parse_config, run_example
from tianshou_offline.recording.policies import save_atari_checkpoint


@dataclass(kw_only=True)
class CQLConfig(AtariConfig):
    """Discrete CQL (QR-DQN) on offline Atari data."""

    num_quantiles: int = 200
    """quantiles of the QR-DQN head"""
    n_step: int = 1
    """n-step return horizon"""
    target_update_freq: int = 500
    """gradient steps between target-network copies"""
    min_q_weight: float = 10.0
    """α, weight of the CQL regulariser"""


def main(argv: Sequence[str] | None = None) -> None:
    config = parse_config(CQLConfig, argv, prog="atari_cql.py", description=__doc__ or "")
    setup = make_setup(config)
    c, h, w = setup.state_shape

    # QR-DQN network: Nature-DQN trunk, head with A × N quantile outputs
    model = QuantileQNet(
        AtariTrunk(c, h, w, scale_obs=bool(config.scale_obs)),
        setup.num_actions,
        config.num_quantiles,
        config.hidden_sizes,
    )
    policy = QValuePolicy(
        model=model,
        action_space=setup.env.action_space,
        observation_space=setup.env.observation_space,
        eps_inference=config.eps_test,
    )
    algorithm: DiscreteCQL = DiscreteCQL(
        policy=policy,
        optim=AdamOptimizerFactory(lr=config.lr),
        min_q_weight=config.min_q_weight,
        gamma=config.gamma,
        n_step_return_horizon=config.n_step,
        target_update_freq=config.target_update_freq,
    )

    def save_actor(path: str) -> None:
        save_atari_checkpoint(
            path,
            model,
            head="quantiles",
            num_actions=setup.num_actions,
            frame_stack=c,
            frame_shape=(h, w),
            hidden_sizes=config.hidden_sizes,
            num_quantiles=config.num_quantiles,
            scale_obs=bool(config.scale_obs),
        )

    run(config, "cql", setup, algorithm, save_actor)


if __name__ == "__main__":
    run_example(main)
