#!/usr/bin/env python3
"""Offline discrete CRR (with the CQL regulariser) on an Atari buffer.

    python3 atari_crr.py --task PongNoFrameskip-v4 --load-buffer-name expert.hdf5 --epoch 5

The flags are those of Tianshou's ``examples/offline/atari_crr.py`` (both ``--a-b`` and
``--a_b`` spellings; unknown flags are an error); ``--min-q-weight 0`` turns the CQL
regulariser off. The policy head and the critic head share one Nature-DQN trunk, as in
Tianshou's example. Outputs as ``atari_cql.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import _no_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)
from _common import make_setup, run
from tianshou.algorithm.optim import AdamOptimizerFactory

from tianshou_offline.algorithms import AtariTrunk, DiscreteActorPolicy, DiscreteCRR, DualHeadNet
from tianshou_offline.cli.example_args import AtariConfig, parse_config, run_example
from tianshou_offline.recording.policies import save_atari_checkpoint


@dataclass(kw_only=True)
class CRRConfig(AtariConfig):
    """Discrete CRR on offline Atari data."""

    policy_improvement_mode: Literal["exp", "binary", "all"] = "exp"
    """advantage weighting of the actor loss: exp(A/β), 1[A > 0] or 1 (behaviour cloning)"""
    ratio_upper_bound: float = 20.0
    """clip of the exp weight"""
    beta: float = 1.0
    """β, temperature of the exp weight"""
    min_q_weight: float = 10.0
    """weight of the CQL regulariser (0: off)"""
    target_update_freq: int = 500
    """gradient steps between target-network copies"""
    n_step: int = 1
    """n-step return horizon"""


def main(argv: Sequence[str] | None = None) -> None:
    config = parse_config(CRRConfig, argv, prog="atari_crr.py", description=__doc__ or "")
    setup = make_setup(config)
    c, h, w = setup.state_shape

    # one trunk, two heads: policy logits (first) and Q-values (second)
    model = DualHeadNet(
        AtariTrunk(c, h, w, scale_obs=bool(config.scale_obs)),
        setup.num_actions,
        config.hidden_sizes,
    )
    policy = DiscreteActorPolicy(
        actor=model,
        action_space=setup.env.action_space,
        observation_space=setup.env.observation_space,
        logits_index=0,
        eps_inference=config.eps_test,
    )
    algorithm: DiscreteCRR = DiscreteCRR(
        policy=policy,
        optim=AdamOptimizerFactory(lr=config.lr),
        gamma=config.gamma,
        n_step_return_horizon=config.n_step,
        policy_improvement_mode=config.policy_improvement_mode,
        ratio_upper_bound=config.ratio_upper_bound,
        beta=config.beta,
        min_q_weight=config.min_q_weight,
        target_update_freq=config.target_update_freq,
    )

    def save_actor(path: str) -> None:
        save_atari_checkpoint(
            path,
            model,
            head="logits",
            num_actions=setup.num_actions,
            frame_stack=c,
            frame_shape=(h, w),
            hidden_sizes=config.hidden_sizes,
            scale_obs=bool(config.scale_obs),
        )

    run(config, "crr", setup, algorithm, save_actor)


if __name__ == "__main__":
    run_example(main)
