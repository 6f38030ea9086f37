"""Small continuous algorithms and data shared by the algorithm tests: Pendulum-shaped synthetic
transitions, every continuous algorithm with small networks, and the mean return of a policy
on fresh Pendulum-v1 episodes."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from tianshou.algorithm.optim import AdamOptimizerFactory as Adam
from tianshou.data import Batch, Collector, CollectStats, ReplayBuffer
from tianshou.env import DummyVectorEnv

from tianshou_offline.algorithms import (
    BCQ,
    CQL,
    CRR,
    TD3BC,
    VAE,
    BCQPolicy,
    CriticEnsemble,
    DeterministicActor,
    DeterministicPolicy,
    GaussianActor,
    GaussianPolicy,
    ImitationLearning,
    OfflineAlgorithmBase,
    Perturbation,
)

OBS_SPACE = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
ACT_SPACE = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)


def synthetic_buffer(n: int = 600, episode: int = 50, terminate_every: int = 3) -> ReplayBuffer:
    """Pendulum-shaped random transitions: episodes of ``episode`` steps; every
    ``terminate_every``-th episode terminates, the others are truncated."""
    rng = np.random.default_rng(0)
    buf = ReplayBuffer(n)
    for i in range(n):
        ep, t = divmod(i, episode)
        last = t == episode - 1
        buf.add(
            Batch(
                obs=rng.uniform(-1, 1, 3).astype(np.float32),
                act=rng.uniform(-2, 2, 1).astype(np.float32),
                rew=float(i),
                terminated=last and ep % terminate_every == 0,
                truncated=last and ep % terminate_every != 0,
                obs_next=rng.uniform(-1, 1, 3).astype(np.float32),
                info={},
            )
        )
    return buf


H = (32, 32)


def make(
    name: str, hidden: tuple[int, ...] = H, **overrides: Any
) -> OfflineAlgorithmBase[Any, Any]:
    """Every algorithm with small networks and the learning rates used by the slow tests."""
    kw: dict[str, Any] = dict(action_space=ACT_SPACE, observation_space=OBS_SPACE)
    if name == "il":
        return ImitationLearning(
            policy=DeterministicPolicy(actor=DeterministicActor(3, 1, hidden), **kw),
            optim=Adam(lr=1e-3),
        )
    if name == "il_gaussian":
        return ImitationLearning(
            policy=GaussianPolicy(actor=GaussianActor(3, 1, hidden), squash=False, **kw),
            optim=Adam(lr=1e-3),
        )
    if name == "td3bc":
        return TD3BC(
            policy=DeterministicPolicy(
                actor=DeterministicActor(3, 1, hidden), normalize_obs=True, **kw
            ),
            policy_optim=Adam(lr=1e-3),
            critics=CriticEnsemble(3, 1, hidden),
            critic_optim=Adam(lr=1e-3),
            **overrides,
        )
    if name in ("cql", "cql_lagrange"):
        return CQL(
            policy=GaussianPolicy(actor=GaussianActor(3, 1, hidden), **kw),
            policy_optim=Adam(lr=1e-3),
            critics=CriticEnsemble(3, 1, hidden),
            critic_optim=Adam(lr=1e-3),
            alpha_optim=Adam(lr=1e-3),
            with_lagrange=name == "cql_lagrange",
            cql_alpha_optim=Adam(lr=1e-3),
            **overrides,
        )
    if name in ("crr", "crr_binary"):
        # binary weights with a state-conditioned std collapse the std on the states whose
        # dataset actions are filtered in (the others' likelihood diverges): a state-independent
        # std for the binary filter
        actor = GaussianActor(3, 1, hidden, conditioned_std=name != "crr_binary")
        return CRR(
            policy=GaussianPolicy(actor=actor, squash=False, **kw),
            policy_optim=Adam(lr=1e-3),
            critics=CriticEnsemble(3, 1, hidden),
            critic_optim=Adam(lr=1e-3),
            weight="binary" if name == "crr_binary" else "exp",
            **overrides,
        )
    if name == "bcq":
        policy = BCQPolicy(
            vae=VAE(3, 1, hidden),
            perturbation=Perturbation(3, 1, hidden),
            critics=CriticEnsemble(3, 1, hidden),
            **kw,
        )
        return BCQ(
            policy=policy,
            vae_optim=Adam(lr=1e-3),
            actor_perturbation_optim=Adam(lr=1e-3),
            critic_optim=Adam(lr=1e-3),
            **overrides,
        )
    raise ValueError(name)


def evaluate(algo: OfflineAlgorithmBase[Any, Any], *, seed: int, episodes: int) -> float:
    """Mean return of ``episodes`` fresh Pendulum-v1 episodes of the algorithm's policy as it
    is now (seeds not used in training)."""
    envs = DummyVectorEnv([lambda: gym.make("Pendulum-v1") for _ in range(10)])
    envs.seed(seed)
    collector = Collector[CollectStats](algo, envs)
    stats = collector.collect(n_episode=episodes, reset_before_collect=True)
    assert stats.n_collected_episodes == episodes and stats.returns_stat is not None
    return float(stats.returns_stat.mean)
