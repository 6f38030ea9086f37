"""SAC-N: soft actor-critic with a large critic ensemble, clipped by the minimum over all N.

Reference: An, Moon, Kim & Song (2021), "Uncertainty-Based Offline Reinforcement Learning
with Diversified Q-Ensemble", NeurIPS, arXiv:2110.01548 — Sec. 3 (SAC-N) and Sec. 4 (EDAC,
:mod:`~tianshou_offline.algorithms.continuous.edac`); SAC from Haarnoja et al. (2018a),
arXiv:1801.01290, and its learned temperature from Haarnoja et al. (2018b), arXiv:1812.05905.

SAC-N is SAC with N critics instead of two and no other change: the minimum over N
independently initialised critics is a lower confidence bound whose penalty grows with the
ensemble's spread, which is large exactly where the data has no actions (the paper's
Sec. 3.2: clipped Q-learning as an uncertainty penalty). One gradient step:

1. **Critic** — SAC's soft Q loss (Haarnoja et al. 2018a, Eq. 5) with the clipped target
   taken over all N members (An et al. 2021, Sec. 3.1)::

       y   = r + γ (1 − d) ( min_{j=1..N} Q'_j(s', a') − α log π(a'|s') ),   a' ~ π(·|s')
       L_Q = Σ_{j=1..N} E_{(s,a,r,s')~D} (Q_j(s, a) − y)²

   ``d`` is termination only (a time-limit truncation bootstraps); with n-step returns ``r``
   is the discounted n-step sum and ``γ`` becomes ``γ^n``.
2. **Actor** — SAC's reparameterised policy loss (Haarnoja et al. 2018a, Eq. 12, with the
   tanh correction of its Eq. 21) with the minimum over N::

       L_π = E_{s~D, ã~π(·|s)} [ α log π(ã|s) − min_{j=1..N} Q_j(s, ã) ]

   the critics' parameters are not differentiated.
3. **Temperature** (Haarnoja et al. 2018b, Eq. 18): ``L_α = −E[log α · (log π(ã|s) + H̄)]``
   with ``H̄ = −A`` (``alpha="auto"``).
4. **Targets**: Polyak averaging of the critic ensemble.

All losses are computed from the same parameters and applied after one backward pass (the
losses touch disjoint parameters), as the authors' code does (it computes every loss of a
step before any optimizer steps).

The ensemble is one :class:`~tianshou_offline.algorithms.continuous.nets.CriticEnsemble`:
all N members in one batched call, so N = 10 or 50 costs a few batched matrix products.

**Differences from CORL and OfflineRL-Kit**, deliberate:

- CORL (``sac_n.py``, ``edac.py``) steps α, then the actor with the new α, then the critics
  with targets from the updated actor ("the reverse order, which EDAC uses"); here every loss
  sees the parameters the step started with, as in the authors' code;
- the actor is this package's :class:`~tianshou_offline.algorithms.continuous.nets.GaussianActor`
  (one head for mean and log-std, log-std clamped to ``[−20, 2]`` by default); CORL has
  separate heads, clamps to ``[−5, 2]`` and initialises the last layers near zero ("EDAC
  init") — pass ``log_std_bounds=(-5, 2)`` to the actor for CORL's clamp;
- the critic loss sums the per-member MSEs (the authors' code, CORL's SAC-N/EDAC);
  :class:`~tianshou_offline.algorithms.continuous.lb_sac.LBSAC` averages them as CORL's
  LB-SAC does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import gymnasium as gym
import torch
from tianshou.algorithm.optim import AdamOptimizerFactory, OptimizerFactory
from tianshou.data.types import RolloutBatchProtocol
from torch import nn
from typing_extensions import TypeVar

from tianshou_offline.algorithms.config import ContinuousTDConfig, adam, box_dims
from tianshou_offline.algorithms.continuous.base import OfflineAlgorithmBase
from tianshou_offline.algorithms.continuous.dataset import Transitions
from tianshou_offline.algorithms.continuous.nets import CriticEnsemble, GaussianActor
from tianshou_offline.algorithms.continuous.policies import GaussianPolicy, gaussian_sample
from tianshou_offline.algorithms.core import GradientStep, joint_step
from tianshou_offline.algorithms.deferred import OfflineTrainingStats

__all__ = [
    "SACN",
    "SACNConfig",
    "SACNStep",
    "SACNTrainingStats",
    "soft_actor_losses",
    "squashed_gaussian_policy",
]


def soft_actor_losses(
    alpha: torch.Tensor,
    log_alpha: torch.Tensor,
    logp_pi: torch.Tensor,
    q_pi: torch.Tensor,
    target_entropy: float | None,
    *,
    per_seed: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """SAC's actor loss ``E[α log π(ã|s) − Q(s, ã)]`` and, for a learned temperature
    (``target_entropy`` given), its loss ``−E[log α (log π(ã|s) + H̄)]`` (Haarnoja et al.
    2018, Eqs. 7 and 18) over the batch of ``logp_pi (B,)`` and ``q_pi (B,)``; ``alpha`` is
    the detached temperature (SAC-N, EDAC, LB-SAC, CQL). ``per_seed``: a seed batch's
    ``alpha``, ``log_alpha`` ``(K,)`` and ``logp_pi``, ``q_pi`` ``(K, B)``, losses ``(K,)``."""
    if per_seed:
        alpha, log_alpha = alpha.unsqueeze(1), log_alpha.unsqueeze(1)

    def mean(x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1) if per_seed else x.mean()

    actor_loss = mean(alpha * logp_pi - q_pi)
    if target_entropy is None:
        return actor_loss, None
    return actor_loss, -mean(log_alpha * (logp_pi.detach() + target_entropy))


def squashed_gaussian_policy(
    observation_space: gym.Space[Any],
    action_space: gym.Space[Any],
    hidden_sizes: tuple[int, ...],
    *,
    normalize_obs: bool,
) -> tuple[GaussianPolicy, int, int]:
    """SAC's actor for these spaces: a tanh-squashed :class:`GaussianPolicy` on a
    :class:`GaussianActor` with a state-dependent std; also the observation and action
    sizes."""
    d, a = box_dims(observation_space, action_space)
    policy = GaussianPolicy(
        actor=GaussianActor(d, a, hidden_sizes),
        action_space=action_space,
        observation_space=observation_space,
        normalize_obs=normalize_obs,
    )
    return policy, d, a


@dataclass(frozen=True, kw_only=True)
class SACNConfig(ContinuousTDConfig):
    """SAC-N's hyperparameters (An et al. 2021; CORL's MuJoCo configuration): N = 10
    critics, Adam 3e-4 for actor, critics and the learned temperature, soft backup."""

    name: ClassVar[str] = "sacn"

    num_critics: int = 10
    """N, members of the critic ensemble (the minimum over all of them is used)"""
    init_alpha: float = 1.0
    """the entropy temperature: its initial value when learned, else the fixed value"""
    learn_alpha: bool = True
    """learn the temperature towards the target entropy −A (SAC's Eq. 18)"""
    alpha_lr: float = 3e-4
    """Adam learning rate of the temperature"""
    backup_entropy: bool = True
    """subtract α log π(a'|s') in the TD target (SAC's soft backup)"""

    def _common(self) -> dict[str, Any]:
        return {
            "tau": self.tau,
            "gamma": self.gamma,
            "alpha": "auto" if self.learn_alpha else self.init_alpha,
            "init_alpha": self.init_alpha,
            "backup_entropy": self.backup_entropy,
            "n_step_return_horizon": self.n_step_return_horizon,
            "max_grad_norm": self.max_grad_norm,
        }

    def build(
        self,
        observation_space: gym.Space[Any],
        action_space: gym.Space[Any],
        *,
        device: str | torch.device = "cpu",
    ) -> SACN:
        """A :class:`SACN` with a squashed Gaussian actor and N critics."""
        policy, d, a = squashed_gaussian_policy(
            observation_space, action_space, self.hidden_sizes, normalize_obs=self.normalize_obs
        )
        algorithm: SACN = SACN(
            policy=policy,
            policy_optim=adam(self.actor_lr),
            critics=CriticEnsemble(d, a, self.hidden_sizes, num_critics=self.num_critics),
            critic_optim=adam(self.critic_lr),
            alpha_optim=adam(self.alpha_lr),
            **self._common(),
        )
        return self.place(algorithm, device)


@dataclass(kw_only=True)
class SACNTrainingStats(OfflineTrainingStats):
    """Statistics of one SAC-N / EDAC / LB-SAC step."""

    actor_loss: float
    """``E[α log π(ã|s) − min_j Q_j(s, ã)]``."""
    critic_loss: float
    """The critics' total loss (TD term, plus EDAC's weighted diversity term)."""
    td_loss: float
    """``Σ_j MSE(Q_j(s, a), y)`` (LB-SAC: the mean over members)."""
    alpha: float
    """The entropy temperature α used in this step."""
    alpha_loss: float | None = None
    """The temperature loss (``alpha="auto"`` only)."""
    diversity_loss: float | None = None
    """EDAC's ensemble-similarity term before its weight η (None for SAC-N and LB-SAC)."""
    q_data: float
    """Mean ``Q(s, a)`` of the dataset actions (over members and batch)."""
    q_policy: float
    """Mean ``min_j Q_j(s, ã)`` of the actor's samples."""
    q_policy_std: float
    """Mean over the batch of the members' standard deviation of ``Q_j(s, ã)`` — the
    uncertainty the minimum penalises."""
    q_target: float
    """Mean TD target ``y``."""
    log_prob: float
    """Mean ``log π(ã|s)`` of the actor's samples (−entropy)."""


TSACNStats = TypeVar("TSACNStats", bound=SACNTrainingStats, default=SACNTrainingStats)


@dataclass(frozen=True, slots=True)
class SACNStep:
    """Tensors of one step, detached, for :meth:`SACN._extend_stats`.

    :ivar batch: the mini-batch.
    :ivar q_data: ``(N, B)`` Q-values of the dataset actions.
    :ivar q_policy: ``(N, B)`` Q-values of the actor's samples ã.
    :ivar target: ``(B,)`` TD targets.
    :ivar log_prob: ``(B,)`` ``log π(ã|s)``.
    """

    batch: Transitions
    q_data: torch.Tensor
    q_policy: torch.Tensor
    target: torch.Tensor
    log_prob: torch.Tensor


class SACN(OfflineAlgorithmBase[GaussianPolicy, TSACNStats]):
    """SAC-N (An et al. 2021); see the module docstring for the equations.

    Defaults are the paper's MuJoCo settings (CORL's configuration): Adam 3e-4 for the actor,
    the critics and α, τ = 0.005, learned α with target entropy −A, soft (entropy) backup.
    The paper uses N = 10 (HalfCheetah) to 500 (Hopper) critics of 3 × 256 units, batch 256.

    :param policy: a ``tanh``-squashed :class:`GaussianPolicy` (``squash=True``).
    :param policy_optim: optimizer factory for the actor.
    :param critics: the critic ensemble (N ≥ 2 members).
    :param critic_optim: optimizer factory for the critics.
    :param tau: Polyak factor of the target critics.
    :param gamma: discount factor.
    :param alpha: a fixed entropy temperature, or ``"auto"`` to learn it.
    :param alpha_optim: optimizer factory for ``log α`` (default Adam, lr 3e-4).
    :param init_alpha: the initial α when learned (1: CORL's ``log α = 0``).
    :param target_entropy: H̄; ``None`` → ``−A``.
    :param backup_entropy: subtract ``α log π(a'|s')`` in the TD target (SAC's soft backup,
        as in the paper; False: the "deterministic backup").
    :param n_step_return_horizon: n of the n-step TD target (1 in the paper).
    :param max_grad_norm: clip the critics' gradient norm (None: no clipping, as in the paper).
    """

    _member_reduction: Literal["sum", "mean"] = "sum"
    """How the per-member MSEs are combined (LB-SAC: ``"mean"``)."""

    def __init__(
        self,
        *,
        policy: GaussianPolicy,
        policy_optim: OptimizerFactory,
        critics: CriticEnsemble,
        critic_optim: OptimizerFactory,
        tau: float = SACNConfig.tau,
        gamma: float = SACNConfig.gamma,
        alpha: float | Literal["auto"] = "auto",
        alpha_optim: OptimizerFactory | None = None,
        init_alpha: float = SACNConfig.init_alpha,
        target_entropy: float | None = None,
        backup_entropy: bool = SACNConfig.backup_entropy,
        n_step_return_horizon: int = SACNConfig.n_step_return_horizon,
        max_grad_norm: float | None = SACNConfig.max_grad_norm,
    ) -> None:
        super().__init__(policy=policy)
        name = type(self).__name__
        if not policy.squash:
            raise ValueError(f"{name} needs a tanh-squashed GaussianPolicy (squash=True)")
        if critics.num_critics < 2:
            raise ValueError(
                f"{name}: critics has {critics.num_critics} member; expected N >= 2 "
                "(the minimum over the ensemble is the method)"
            )
        if not 0.0 < tau <= 1.0:
            raise ValueError(f"{name}: tau={tau}; expected 0 < tau <= 1")
        if alpha != "auto" and not float(alpha) >= 0.0:
            raise ValueError(f"{name}: alpha={alpha!r}; expected 'auto' or a number >= 0")
        if not init_alpha > 0.0:
            raise ValueError(f"{name}: init_alpha={init_alpha}; expected > 0")
        self.critics = critics
        self.critics_target = self._add_target(critics)
        self.actor_optim = self._make_optimizer(policy.actor, policy_optim)
        self.critic_optim = self._make_optimizer(critics, critic_optim, max_grad_norm)
        self.tau = tau
        self.gamma = gamma
        self.n_step = n_step_return_horizon
        self.backup_entropy = backup_entropy
        self.target_entropy = (
            float(target_entropy) if target_entropy is not None else -float(policy.act_dim)
        )
        self.auto_alpha = alpha == "auto"
        start = init_alpha if alpha == "auto" else float(alpha)
        self.log_alpha = nn.Parameter(
            torch.tensor(math.log(start) if start > 0 else -math.inf, device=policy.device),
            requires_grad=self.auto_alpha,
        )
        self.alpha_optim: GradientStep | None = None
        if self.auto_alpha:
            self.alpha_optim = self._make_optimizer(
                [self.log_alpha], alpha_optim or AdamOptimizerFactory(lr=3e-4)
            )

    def _critic_regularizer(self, b: Transitions) -> tuple[torch.Tensor, torch.Tensor] | None:
        """An extra critic loss term: ``(weighted term, unweighted term)`` or None (SAC-N).
        EDAC adds its ensemble-gradient diversity term here."""
        return None

    def _update_with_batch(self, batch: RolloutBatchProtocol | Transitions) -> TSACNStats:
        b = self._as_transitions(batch)
        actor = self.policy.actor
        alpha = self.log_alpha.detach().exp()

        # 2. actor: reparameterised sample, min over all N critics (parameters not differentiated)
        mean, log_std = actor(b.obs)
        act_pi, logp_pi = gaussian_sample(mean, log_std, squash=True)
        q_pi = self.critics(b.obs, act_pi, detach_params=True)  # (N, B)
        q_pi_min = q_pi.min(dim=0).values
        # 3. temperature (and the actor's loss of step 2)
        entropy = self.target_entropy if self.auto_alpha else None  # None: α fixed
        actor_loss, alpha_loss = soft_actor_losses(
            alpha, self.log_alpha, logp_pi, q_pi_min, entropy
        )

        # 1. critics: the clipped soft target over all N members
        with torch.no_grad():
            mean_n, log_std_n = actor(b.obs_next)
            act_next, logp_next = gaussian_sample(mean_n, log_std_n, squash=True)
            q_next = self.critics_target(b.obs_next, act_next).min(dim=0).values  # (B,)
            if self.backup_entropy:
                q_next = q_next - alpha * logp_next
            target = b.rew + b.discount * q_next
        q_data = self.critics(b.obs, b.act)  # (N, B)
        per_member = (q_data - target).pow(2).mean(dim=1)
        td_loss = per_member.sum() if self._member_reduction == "sum" else per_member.mean()
        critic_loss = td_loss
        regularizer = self._critic_regularizer(b)
        if regularizer is not None:
            critic_loss = critic_loss + regularizer[0]

        joint_step(
            critic_loss + actor_loss,
            [self.critic_optim, self.actor_optim],
            [(alpha_loss, self.alpha_optim)],
        )
        # 4. targets
        self._update_targets(self.tau)

        q_pi = q_pi.detach()
        stats = self._make_stats(
            actor_loss=actor_loss,
            critic_loss=critic_loss,
            td_loss=td_loss,
            alpha=alpha,
            alpha_loss=alpha_loss,
            diversity_loss=None if regularizer is None else regularizer[1],
            q_data=q_data.mean(),
            q_policy=q_pi_min.mean(),
            q_policy_std=q_pi.std(dim=0).mean(),
            q_target=target.mean(),
            log_prob=logp_pi.mean(),
        )
        self._extend_stats(
            stats,
            SACNStep(
                batch=b,
                q_data=q_data.detach(),
                q_policy=q_pi,
                target=target,
                log_prob=logp_pi.detach(),
            ),
        )
        return stats

    def _extend_stats(self, stats: TSACNStats, step: SACNStep) -> None:
        """Override to fill in extra fields of a stats subclass (see ``examples/extend_stats.py``)."""
