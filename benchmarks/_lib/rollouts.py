"""Episodes of the off-policy evaluation benchmarks (:mod:`benchmarks.fqe_rank`,
:mod:`benchmarks.ope_validation`): the Pendulum data they estimate from, and a policy's true
value, its returns on fresh episodes of the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tianshou.utils.torch_utils import policy_within_training_step

from tianshou_offline import BufferWriter
from tianshou_offline.quickstart import ScriptedPendulumExpert


def write_pendulum_data(path: Path, episodes: int, max_noise: float, seed: int) -> float:
    """``episodes`` mixed-quality Pendulum-v1 episodes of the quickstart's scripted controller
    (each with its own torque noise, uniform in ``[0, max_noise]``) written to ``path``;
    returns their mean return."""
    env = gym.make("Pendulum-v1")
    rng = np.random.default_rng(seed)
    returns = []
    with BufferWriter(
        path,
        observation_space=env.observation_space,
        action_space=env.action_space,
        env_id="Pendulum-v1",
    ) as writer:
        for e in range(episodes):
            expert = ScriptedPendulumExpert(noise=float(rng.uniform(0, max_noise)), seed=seed + e)
            cols: dict[str, list[Any]] = {
                k: [] for k in ("obs", "act", "rew", "obs_next", "terminated", "truncated")
            }
            obs, _ = env.reset(seed=seed * 10_000 + e)
            done = False
            while not done:
                act = expert(obs)
                nxt, rew, term, trunc, _ = env.step(act)
                for k, v in zip(cols, (obs, act, rew, nxt, term, trunc), strict=True):
                    cols[k].append(v)
                obs, done = nxt, term or trunc
            returns.append(float(np.sum(cols["rew"])))
            a = {k: np.asarray(v) for k, v in cols.items()}
            writer.add_episode(
                obs=a["obs"],
                act=a["act"],
                rew=a["rew"],
                terminated=a["terminated"],
                truncated=a["truncated"],
                obs_next=a["obs_next"],
            )
    return float(np.mean(returns))


def episode_returns(
    policy: Any, env_id: str, n: int, gamma: float, seed: int
) -> tuple[list[float], list[float]]:
    """The discounted (``gamma``) and undiscounted returns of ``n`` fresh episodes of
    ``env_id`` (reset with seeds ``seed``, ``seed + 1``, …), acting with the policy's
    ``compute_action`` in evaluation mode, without gradients."""
    env = gym.make(env_id)
    disc, undisc = [], []
    policy.eval()
    for e in range(n):
        obs, _ = env.reset(seed=seed + e)
        g, total, t, done = 0.0, 0.0, 0, False
        while not done:
            with torch.no_grad(), policy_within_training_step(policy, enabled=False):
                act = policy.compute_action(np.asarray(obs, dtype=np.float32))
            if isinstance(env.action_space, gym.spaces.Discrete):
                act = int(np.asarray(act).reshape(-1)[0])
            else:
                act = np.asarray(act, dtype=np.float32).reshape(env.action_space.shape)
            obs, rew, term, trunc, _ = env.step(act)
            g += gamma**t * float(rew)
            total += float(rew)
            t += 1
            done = term or trunc
        disc.append(g)
        undisc.append(total)
    return disc, undisc
