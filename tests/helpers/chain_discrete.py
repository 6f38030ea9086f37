"""The discrete chain of the FQE and OPE tests: H states (one-hot or frames), reward ±1 for action
1/0, closed-form values for a policy that takes action 1 with probability p."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from tianshou_offline.algorithms import (
    DiscreteActorPolicy,
    MLPTrunk,
    QNet,
    QValuePolicy,
)

H, GAMMA = 4, 0.9
ACT_SPACE = gym.spaces.Discrete(2)
OBS_SPACE = gym.spaces.Box(0.0, 1.0, shape=(H,), dtype=np.float32)


def chain_columns(episodes: int, seed: int = 0, image: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.tile(np.arange(H), episodes)
    table: np.ndarray
    if image:  # a 36×36 frame per step, brightness 50 t
        frames = np.zeros((H + 1, 36, 36), dtype=np.uint8)
        for k in range(H + 1):
            frames[k] = 50 * k
        table = frames
    else:
        table = np.eye(H + 1, H, dtype=np.float32)
    act = rng.integers(0, 2, size=len(t))
    return {
        "obs": table[t],
        "obs_next": table[t + 1],
        "act": act,
        "rew": np.where(act == 1, 1.0, -1.0),
        "terminated": t == H - 1,
        "truncated": np.zeros(len(t), dtype=bool),
    }


def constant_q_policy(greedy: int, eps: float = 0.0) -> QValuePolicy:
    """A Q-value policy whose network prefers ``greedy`` everywhere."""
    model = QNet(MLPTrunk(H, (8,)), 2)
    last = model.head[-1]
    assert isinstance(last, torch.nn.Linear)
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([1.0, 0.0] if greedy == 0 else [0.0, 1.0]))
    return QValuePolicy(model=model, action_space=ACT_SPACE, eps_inference=eps)


def sampling_policy(p: float) -> DiscreteActorPolicy:
    """A categorical policy that samples action 1 with probability ``p`` everywhere."""
    model = QNet(MLPTrunk(H, (8,)), 2)
    last = model.head[-1]
    assert isinstance(last, torch.nn.Linear)
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.0, float(np.log(p / (1 - p)))]))
    return DiscreteActorPolicy(actor=model, action_space=ACT_SPACE, deterministic_eval=False)


def q_closed_form(p: float, t: int, a: int) -> float:
    r = 1.0 if a == 1 else -1.0
    return r + GAMMA * (2 * p - 1) * (1 - GAMMA ** (H - t - 1)) / (1 - GAMMA)


def value_closed_form(p: float) -> float:
    return (2 * p - 1) * (1 - GAMMA**H) / (1 - GAMMA)
