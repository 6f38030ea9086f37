"""The continuous chain of the FQE and OPE tests: H one-hot states, reward = the action, a known
value ``c (1 − γ^H) / (1 − γ)`` for the policy that always acts ``c``."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch

from tianshou_offline.algorithms import (
    DeterministicActor,
    DeterministicPolicy,
)

H, GAMMA = 5, 0.9
OBS_SPACE = gym.spaces.Box(0.0, 1.0, shape=(H,), dtype=np.float32)
ACT_SPACE = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)


def chain_columns(episodes: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``episodes`` episodes of the chain with uniform random actions."""
    rng = np.random.default_rng(seed)
    eye = np.eye(H + 1, H, dtype=np.float32)  # row H: the (all-zero) state after the end
    t = np.tile(np.arange(H), episodes)
    act = rng.uniform(-1.0, 1.0, size=(len(t), 1)).astype(np.float32)
    terminated = t == H - 1
    return {
        "obs": eye[t],
        "obs_next": eye[t + 1],
        "act": act,
        "rew": act[:, 0].astype(np.float64),
        "terminated": terminated,
        "truncated": np.zeros(len(t), dtype=bool),
    }


def constant_policy(c: float) -> DeterministicPolicy:
    """A policy whose actor outputs ``c`` everywhere (zero output weights, bias atanh(c))."""
    actor = DeterministicActor(H, 1, (16,))
    last = actor.net.rest[-1]
    assert isinstance(last, torch.nn.Linear)
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(math.atanh(c))
    return DeterministicPolicy(actor=actor, action_space=ACT_SPACE, observation_space=OBS_SPACE)


def true_value(c: float) -> float:
    return c * (1.0 - GAMMA**H) / (1.0 - GAMMA)
