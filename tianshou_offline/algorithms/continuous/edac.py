"""EDAC: SAC-N with an ensemble-gradient diversity term, which lets far fewer critics reach
SAC-N's conservatism.

Reference: An, Moon, Kim & Song (2021), "Uncertainty-Based Offline Reinforcement Learning
with Diversified Q-Ensemble", NeurIPS, arXiv:2110.01548 — Sec. 4 (ensemble gradient
diversification) and Algorithm 1.

The update is SAC-N's (:mod:`~tianshou_offline.algorithms.continuous.sac_n`: the clipped
soft target and actor loss over all N critics, the learned temperature, Polyak targets) with
one more term in the critics' loss. When the members' action gradients ``∇_a Q_j(s, a)`` at
the dataset's actions point the same way, a small step away from the data raises every
member alike and the minimum does not penalise it (the paper's Sec. 4.1: the variance of the
ensemble along such a direction is small). EDAC therefore minimises the similarity of the
members' action gradients, the ensemble-similarity term of Sec. 4.2::

    ES(s, a) = 1/(N − 1) · Σ_{1 ≤ i ≠ j ≤ N} ⟨ g_i(s, a), g_j(s, a) ⟩,
    g_j(s, a) = ∇_a Q_j(s, a) / ‖∇_a Q_j(s, a)‖,

    L_Q = Σ_j E_{(s,a,r,s')~D} (Q_j(s, a) − y)²  +  η · E_{(s,a)~D} ES(s, a)

with SAC-N's target ``y``. The gradients are normalised (the cosine similarity), as in the
authors' code (``lifelong_rl/trainers/q_learning/sac.py``) and CORL, with ``1e−10`` added to
the norm; η = 1 for the MuJoCo tasks (CORL), with N = 10 critics.

Each member's action gradient is taken at its own copy of the action
(:meth:`~tianshou_offline.algorithms.continuous.nets.CriticEnsemble.action_gradients`) and
the gradient graph is kept, so the term is differentiated with respect to the critics'
parameters (a second-order derivative). It is evaluated on the dataset actions only.

Differences from CORL: those of SAC-N (see its module docstring: one joint step instead of
α → actor → critic, no "EDAC init" of the last layers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import gymnasium as gym
import torch
from tianshou.algorithm.optim import OptimizerFactory

from tianshou_offline.algorithms.config import adam
from tianshou_offline.algorithms.continuous.dataset import Transitions
from tianshou_offline.algorithms.continuous.nets import CriticEnsemble
from tianshou_offline.algorithms.continuous.policies import GaussianPolicy
from tianshou_offline.algorithms.continuous.sac_n import (
    SACN,
    SACNConfig,
    TSACNStats,
    squashed_gaussian_policy,
)

__all__ = ["EDAC", "EDACConfig", "ensemble_similarity"]


@dataclass(frozen=True, kw_only=True)
class EDACConfig(SACNConfig):
    """EDAC's hyperparameters (CORL's MuJoCo configuration): SAC-N's with η = 1 and N = 10."""

    name: ClassVar[str] = "edac"

    eta: float = 1.0
    """η, the weight of the ensemble-gradient diversity term"""

    def build(
        self,
        observation_space: gym.Space[Any],
        action_space: gym.Space[Any],
        *,
        device: str | torch.device = "cpu",
    ) -> EDAC:
        """An :class:`EDAC` with a squashed Gaussian actor and N critics."""
        policy, d, a = squashed_gaussian_policy(
            observation_space, action_space, self.hidden_sizes, normalize_obs=self.normalize_obs
        )
        algorithm: EDAC = EDAC(
            policy=policy,
            policy_optim=adam(self.actor_lr),
            critics=CriticEnsemble(d, a, self.hidden_sizes, num_critics=self.num_critics),
            critic_optim=adam(self.critic_lr),
            alpha_optim=adam(self.alpha_lr),
            eta=self.eta,
            **self._common(),
        )
        return self.place(algorithm, device)


def ensemble_similarity(grads: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """EDAC's ensemble-similarity term for each state: ``1/(N−1) Σ_{i≠j} ⟨g_i, g_j⟩`` of the
    normalised action gradients ``g_j = ∇_a Q_j / (‖∇_a Q_j‖ + eps)``.

    Uses ``Σ_{i≠j} ⟨g_i, g_j⟩ = ‖Σ_j g_j‖² − Σ_j ‖g_j‖²`` (no N × N matrix per state).

    :param grads: ``(N, B, A)`` the members' action gradients (or ``(K, N, B, A)``, one
        ensemble per seed).
    :returns: ``(B,)`` (or ``(K, B)``).
    """
    n = grads.shape[-3]
    g = grads / (grads.norm(dim=-1, keepdim=True) + eps)
    pairs: torch.Tensor = g.sum(dim=-3).pow(2).sum(dim=-1) - g.pow(2).sum(dim=(-3, -1))
    return pairs / (n - 1)


class EDAC(SACN[TSACNStats]):
    """EDAC (An et al. 2021): SAC-N plus η × the ensemble-gradient similarity term; see the
    module docstring.

    :param eta: η, the weight of the diversity term (1.0 for MuJoCo; 0 gives SAC-N).
    See :class:`~tianshou_offline.algorithms.continuous.sac_n.SACN` for the other parameters.
    """

    def __init__(
        self,
        *,
        policy: GaussianPolicy,
        policy_optim: OptimizerFactory,
        critics: CriticEnsemble,
        critic_optim: OptimizerFactory,
        eta: float = EDACConfig.eta,
        tau: float = EDACConfig.tau,
        gamma: float = EDACConfig.gamma,
        alpha: float | Literal["auto"] = "auto",
        alpha_optim: OptimizerFactory | None = None,
        init_alpha: float = EDACConfig.init_alpha,
        target_entropy: float | None = None,
        backup_entropy: bool = EDACConfig.backup_entropy,
        n_step_return_horizon: int = EDACConfig.n_step_return_horizon,
        max_grad_norm: float | None = EDACConfig.max_grad_norm,
    ) -> None:
        super().__init__(
            policy=policy,
            policy_optim=policy_optim,
            critics=critics,
            critic_optim=critic_optim,
            tau=tau,
            gamma=gamma,
            alpha=alpha,
            alpha_optim=alpha_optim,
            init_alpha=init_alpha,
            target_entropy=target_entropy,
            backup_entropy=backup_entropy,
            n_step_return_horizon=n_step_return_horizon,
            max_grad_norm=max_grad_norm,
        )
        if not eta >= 0.0:
            raise ValueError(f"EDAC: eta={eta}; expected >= 0")
        self.eta = float(eta)

    def _critic_regularizer(self, b: Transitions) -> tuple[torch.Tensor, torch.Tensor]:
        """``(η · E[ES(s, a)], E[ES(s, a)])`` at the dataset's ``(s, a)``."""
        _, grads = self.critics.action_gradients(b.obs, b.act, create_graph=True)
        es = ensemble_similarity(grads).mean()
        return self.eta * es, es
