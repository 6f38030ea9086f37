"""Shared pieces of the reference tests (``tests/algorithms/test_td3bc.py`` and the other
per-algorithm files, ``tests/evaluation/test_fqe*.py``): a fixed mini-batch, one update on
it through the trainers' entry point, target networks moved away from the online ones, and
the hand-written SGD and Polyak steps the references take."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from tianshou.algorithm.optim import TorchOptimizerFactory
from tianshou.data import ReplayBuffer
from tianshou.utils.torch_utils import policy_within_training_step
from torch import nn

from tianshou_offline.algorithms import CriticEnsemble, DiscreteTransitions, Transitions
from tianshou_offline.algorithms.core import OfflineAlgorithmCore

LR = 0.1
B, D, A = 8, 3, 2  # batch, observation size, action size
H = (16, 16)
OBS_SPACE = gym.spaces.Box(-np.inf, np.inf, (D,), np.float32)
ACT_SPACE = gym.spaces.Box(-1.0, 1.0, (A,), np.float32)
SGD = TorchOptimizerFactory(torch.optim.SGD, lr=LR)
LOG_2PI = math.log(2.0 * math.pi)


def fixed_batch(seed: int = 0, gamma: float = 0.99) -> Transitions:
    """B transitions; rows 2 and 5 terminate (discount 0)."""
    g = torch.Generator().manual_seed(seed)
    terminated = torch.zeros(B)
    terminated[[2, 5]] = 1.0
    return Transitions(
        obs=torch.randn(B, D, generator=g),
        act=torch.rand(B, A, generator=g) * 1.8 - 0.9,
        rew=torch.randn(B, generator=g),
        obs_next=torch.randn(B, D, generator=g),
        discount=gamma * (1.0 - terminated),
        terminated=terminated,
    )


class _FixedDataset:
    """Stands in for the dataset: every ``sample`` is the fixed batch."""

    def __init__(self, batch: Any) -> None:
        self.batch = batch

    def sample(self, batch_size: int) -> Any:
        return self.batch


def one_update(
    algo: OfflineAlgorithmCore[Any, Any, Any, Any],
    batch: Any,
    seed: int,
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    """``algo.update`` (the trainers' entry point: mode switch, step count, schedulers) on
    ``batch``, with the torch RNG seeded to ``seed``."""
    monkeypatch.setattr(algo, "dataset_for", lambda buffer: _FixedDataset(batch))
    torch.manual_seed(seed)
    with policy_within_training_step(algo.policy):
        return algo.update(ReplayBuffer(1), B)


def displace_targets(algo: OfflineAlgorithmCore[Any, Any, Any, Any], seed: int = 99) -> None:
    """Move every target network of ``algo`` away from its online network (Gaussian noise,
    std 0.3, on each parameter), so that a reference test sees which of the two an update
    evaluates — a fresh algorithm's targets are exact copies."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, target in algo._target_pairs:
            for p in target.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=g))


def last_linear(module: nn.Module) -> nn.Linear:
    """The output layer of an MLP."""
    layers = [m for m in module.modules() if isinstance(m, nn.Linear)]
    return layers[-1]


def saturate(actor: nn.Module) -> None:
    """Push a tanh actor's outputs towards ``±1`` (output biases ``+2`` and ``−2``), so that
    target-policy smoothing noise takes some actions beyond ``[−1, 1]``: the final clip
    binds."""
    with torch.no_grad():
        last_linear(actor).bias.add_(torch.tensor([2.0, -2.0]))


def assert_binds(before: torch.Tensor, after: torch.Tensor, what: str) -> None:
    """A clip changed some but not all of the values (it is exercised, not everything)."""
    changed = before != after
    assert bool(changed.any()) and not bool(changed.all()), f"{what} must bind for some values"


def sgd_step(params: Sequence[torch.Tensor], loss: torch.Tensor) -> None:
    """``p ← p − LR ∂loss/∂p`` for each parameter (unused ones unchanged)."""
    trained = [p for p in params if p.requires_grad]
    grads = torch.autograd.grad(loss, trained, allow_unused=True, retain_graph=True)
    with torch.no_grad():
        for p, grad in zip(trained, grads, strict=True):
            if grad is not None:
                p -= LR * grad


def polyak(target: nn.Module, source: nn.Module, tau: float) -> None:
    """``θ' ← τ θ + (1 − τ) θ'``."""
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters(), strict=True):
            t.copy_(tau * s + (1.0 - tau) * t)


def assert_same(ours: nn.Module, reference: nn.Module, what: str) -> None:
    for (name, a), b in zip(ours.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=f"{what}.{name}")


def moved(module: nn.Module, before: nn.Module) -> bool:
    return any(
        not torch.equal(a, b) for a, b in zip(module.parameters(), before.parameters(), strict=True)
    )


def params(*modules: nn.Module) -> list[torch.Tensor]:
    return [p for m in modules for p in m.parameters()]


def normal_log_density(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Σ over the last dimension of ``log N(x; mean, std²)``."""
    return (-0.5 * ((x - mean) / std) ** 2 - torch.log(std) - 0.5 * LOG_2PI).sum(-1)


def tanh_gaussian(
    mean: torch.Tensor, std: torch.Tensor, eps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reparameterised ``a = tanh(μ + σ ε)`` and ``log π(a|s) = log N(u) − Σ log(1 − tanh(u)²)``
    (Haarnoja et al. 2018, Eq. 21; the Jacobian in float64)."""
    u = mean + std * eps
    jacobian = torch.log(1.0 - torch.tanh(u.double()) ** 2).sum(-1).to(u.dtype)
    return torch.tanh(u), normal_log_density(u, mean, std) - jacobian


# --------------------------------------------------------------------------- discrete

NUM_ACTIONS, NUM_QUANTILES = 3, 5
DISCRETE = gym.spaces.Discrete(NUM_ACTIONS)


def discrete_batch(seed: int = 0, gamma: float = 0.9) -> DiscreteTransitions:
    g = torch.Generator().manual_seed(seed)
    terminated = torch.zeros(B)
    terminated[[1, 6]] = 1.0
    return DiscreteTransitions(
        obs=torch.randn(B, 4, generator=g),
        act=torch.randint(NUM_ACTIONS, (B,), generator=g),
        rew=torch.randn(B, generator=g),
        obs_next=torch.randn(B, 4, generator=g),
        discount=gamma * (1.0 - terminated),
        terminated=terminated,
    )


def quantile_huber(current: torch.Tensor, target: torch.Tensor, kappa: float) -> torch.Tensor:
    """Dabney et al. 2018, Eqs. 9–10: ``(1/N) Σ_i Σ_j ρ^κ_{τ̂_i}(T θ_j − θ_i)`` per sample,
    ``ρ^κ_τ(u) = |τ − 1{u < 0}| L_κ(u)``, ``τ̂_i = (2i − 1) / 2N``."""
    n = current.shape[1]
    tau_hat = (2 * torch.arange(1, n + 1, dtype=current.dtype) - 1) / (2 * n)
    u = target.unsqueeze(1) - current.unsqueeze(2)  # (B, N_i, N_j)
    huber = torch.where(u.abs() <= kappa, 0.5 * u**2, kappa * (u.abs() - 0.5 * kappa))
    rho = (tau_hat.view(1, -1, 1) - (u.detach() < 0).to(u.dtype)).abs() * huber
    return rho.sum(2).mean(1)


def perturb(module: nn.Module, scale: float = 0.2) -> None:
    """Move every parameter of a target network away from its online copy."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * scale)


def member_q(critics: nn.Module, j: int, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """Member ``j`` of the ensemble as a plain network: ``relu(x W_l + b_l)`` layer by layer on
    ``x = [s, a]``, then the linear output — independent of the ensemble's batched forward."""
    assert isinstance(critics, CriticEnsemble)
    x = torch.cat([obs, act], dim=-1)
    layers = len(critics.weights)
    for layer in range(layers):
        x = x @ critics.weights[layer][j] + critics.biases[layer][j]
        if layer < layers - 1:
            x = torch.relu(x)
    return x.squeeze(-1)


def min_over_members(qs: list[torch.Tensor]) -> torch.Tensor:
    return functools.reduce(torch.minimum, qs)
