"""LB-SAC: SAC-N with a large batch and its learning-rate rule — fewer critics and far
fewer gradient steps for the same scores.

Reference: Nikulin, Kurenkov, Tarasov, Akimov & Kolesnikov (2022), "Q-Ensemble for Offline
RL: Don't Scale the Ensemble, Scale the Batch Size", arXiv:2211.11092 — Sec. 4.

LB-SAC is SAC-N (:mod:`~tianshou_offline.algorithms.continuous.sac_n`: the same losses, the
minimum over N critics) trained with a mini-batch of ``B`` transitions instead of the usual
256, the learning rates raised by the **square-root scaling rule** (Krizhevsky 2014; Hoffer,
Hubara & Soudry 2017) — the one the paper adopts::

    lr(B) = lr_0 · sqrt(B / B_0),     lr_0 = 3·10⁻⁴ at B_0 = 256

(B = 10,000 gives 1.875·10⁻³; CORL's configuration rounds it to 1.8·10⁻³) for the actor,
the critics and the temperature, with N = 10 critics. The large batch reduces the
variance of the ensemble's gradient, so the minimum's penalty reaches out-of-distribution
actions within far fewer gradient steps.

The per-member MSEs are averaged instead of summed, as in the LB-SAC authors' code (CORL's
``lb_sac.py``); under Adam that rescaling leaves the step unchanged (up to Adam's ε).
The batch size itself is the trainer's (``OfflineTrainerParams(batch_size=...)``):
:class:`LBSAC` takes it only to set the learning rates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import gymnasium as gym
import torch
from tianshou.algorithm.optim import AdamOptimizerFactory

from tianshou_offline.algorithms.config import ContinuousConfig
from tianshou_offline.algorithms.continuous.nets import CriticEnsemble
from tianshou_offline.algorithms.continuous.policies import GaussianPolicy
from tianshou_offline.algorithms.continuous.sac_n import (
    SACN,
    TSACNStats,
    squashed_gaussian_policy,
)

__all__ = ["LBSAC", "LBSACConfig", "sqrt_scaled_lr"]


@dataclass(frozen=True, kw_only=True)
class LBSACConfig(ContinuousConfig):
    """LB-SAC's hyperparameters (Nikulin et al. 2022; CORL's configuration): batch 10,000,
    every learning rate 3e-4 · sqrt(batch / 256), N = 10 critics. Train with
    ``batch_size`` transitions per gradient step."""

    name: ClassVar[str] = "lbsac"

    batch_size: int = 10_000
    """B, the mini-batch the trainer uses (sets the learning rates)"""
    base_lr: float = 3e-4
    """lr_0, the learning rate at base_batch_size"""
    base_batch_size: int = 256
    """B_0 of the square-root rule"""
    gamma: float = 0.99
    """discount factor"""
    tau: float = 0.005
    """Polyak factor of the target critics"""
    n_step_return_horizon: int = 1
    """n of the n-step TD target"""
    num_critics: int = 10
    """N, members of the critic ensemble"""
    init_alpha: float = 1.0
    """the entropy temperature: its initial value when learned, else the fixed value"""
    learn_alpha: bool = True
    """learn the temperature towards the target entropy −A"""
    backup_entropy: bool = True
    """subtract α log π(a'|s') in the TD target (SAC's soft backup)"""

    def build(
        self,
        observation_space: gym.Space[Any],
        action_space: gym.Space[Any],
        *,
        device: str | torch.device = "cpu",
    ) -> LBSAC:
        """An :class:`LBSAC` with a squashed Gaussian actor and N critics."""
        policy, d, a = squashed_gaussian_policy(
            observation_space, action_space, self.hidden_sizes, normalize_obs=self.normalize_obs
        )
        algorithm: LBSAC = LBSAC(
            policy=policy,
            critics=CriticEnsemble(d, a, self.hidden_sizes, num_critics=self.num_critics),
            batch_size=self.batch_size,
            base_lr=self.base_lr,
            base_batch_size=self.base_batch_size,
            tau=self.tau,
            gamma=self.gamma,
            alpha="auto" if self.learn_alpha else self.init_alpha,
            init_alpha=self.init_alpha,
            backup_entropy=self.backup_entropy,
            n_step_return_horizon=self.n_step_return_horizon,
            max_grad_norm=self.max_grad_norm,
        )
        return self.place(algorithm, device)


def sqrt_scaled_lr(batch_size: int, base_lr: float = 3e-4, base_batch_size: int = 256) -> float:
    """The square-root scaling rule: ``base_lr · sqrt(batch_size / base_batch_size)``.

    :raises ValueError: a batch size < 1 or a learning rate <= 0.
    """
    if batch_size < 1 or base_batch_size < 1:
        raise ValueError(
            f"batch_size={batch_size}, base_batch_size={base_batch_size}: expected >= 1"
        )
    if not base_lr > 0.0:
        raise ValueError(f"base_lr={base_lr}: expected > 0")
    return base_lr * math.sqrt(batch_size / base_batch_size)


class LBSAC(SACN[TSACNStats]):
    """LB-SAC (Nikulin et al. 2022): SAC-N with Adam at the square-root-scaled learning rate
    of ``batch_size`` for the actor, the critics and the temperature; see the module docstring.

    Train it with the same ``batch_size`` in ``OfflineTrainerParams``.

    :param batch_size: B, the mini-batch size the trainer uses (10,000 in the paper).
    :param base_lr: lr_0, the learning rate at ``base_batch_size`` (3e-4).
    :param base_batch_size: B_0 (256).
    See :class:`~tianshou_offline.algorithms.continuous.sac_n.SACN` for the other parameters.
    """

    _member_reduction: Literal["sum", "mean"] = "mean"

    def __init__(
        self,
        *,
        policy: GaussianPolicy,
        critics: CriticEnsemble,
        batch_size: int = LBSACConfig.batch_size,
        base_lr: float = LBSACConfig.base_lr,
        base_batch_size: int = LBSACConfig.base_batch_size,
        tau: float = LBSACConfig.tau,
        gamma: float = LBSACConfig.gamma,
        alpha: float | Literal["auto"] = "auto",
        init_alpha: float = LBSACConfig.init_alpha,
        target_entropy: float | None = None,
        backup_entropy: bool = LBSACConfig.backup_entropy,
        n_step_return_horizon: int = LBSACConfig.n_step_return_horizon,
        max_grad_norm: float | None = LBSACConfig.max_grad_norm,
    ) -> None:
        lr = sqrt_scaled_lr(batch_size, base_lr, base_batch_size)
        super().__init__(
            policy=policy,
            policy_optim=AdamOptimizerFactory(lr=lr),
            critics=critics,
            critic_optim=AdamOptimizerFactory(lr=lr),
            tau=tau,
            gamma=gamma,
            alpha=alpha,
            alpha_optim=AdamOptimizerFactory(lr=lr),
            init_alpha=init_alpha,
            target_entropy=target_entropy,
            backup_entropy=backup_entropy,
            n_step_return_horizon=n_step_return_horizon,
            max_grad_norm=max_grad_norm,
        )
        self.batch_size = int(batch_size)
        self.learning_rate = lr
        """The scaled learning rate of every optimizer."""
