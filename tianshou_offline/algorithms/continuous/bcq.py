"""BCQ: batch-constrained deep Q-learning for continuous actions.

Reference: Fujimoto, Meger & Precup (2019), "Off-Policy Deep Reinforcement Learning without
Exploration", ICML, arXiv:1812.02900 — Algorithm 1 and Sec. 4.

The update, in the order of Algorithm 1:

1. **Generative model** ``G_ω`` — a conditional VAE of the behaviour policy (Algorithm 1,
   the VAE step; Kingma & Welling 2014)::

       L_G = E (a − ã)² + ½ D_KL(N(μ, σ) ‖ N(0, 1)),   ã = D_ω(s, z),  z ~ N(μ, σ) = E_ω(s, a)

   (the ½ KL weight of the authors' code).
2. **Critic** — n actions per next state from ``G_ω``, perturbed by the *target* perturbation
   model, and the soft clipped double-Q backup of the best one (Eq. 13)::

       y = r + γ (1 − d) max_{a_i} [ λ min_{j=1,2} Q'_j(s', a_i) + (1 − λ) max_{j=1,2} Q'_j(s', a_i) ]
       L_Q = Σ_j E (Q_j(s, a) − y)²

3. **Perturbation model** ``ξ_φ`` (Eq. 12)::

       φ ← argmax_φ Σ Q_1(s, a + ξ_φ(s, a, Φ)),   a ~ G_ω(s)

4. **Targets**: Polyak averaging of the critics and of the perturbation model.

Acting (Eq. 11, :class:`~tianshou_offline.algorithms.continuous.policies.BCQPolicy`): the perturbed
VAE sample with the highest ``Q_1`` among ``num_sampled_actions``. Tianshou 2.0.1's BCQ
backs up *unperturbed* VAE samples; ``perturb_target_actions=False`` reproduces that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from tianshou.algorithm.optim import OptimizerFactory
from tianshou.data.types import RolloutBatchProtocol
from typing_extensions import TypeVar

from tianshou_offline.algorithms.config import (
    ContinuousTDConfig,
    adam,
    box_dims,
    param_default,
    renamed_attribute,
    renamed_kwargs,
)
from tianshou_offline.algorithms.continuous.base import OfflineAlgorithmBase
from tianshou_offline.algorithms.continuous.dataset import Transitions
from tianshou_offline.algorithms.continuous.nets import VAE, CriticEnsemble, Perturbation
from tianshou_offline.algorithms.continuous.policies import BCQPolicy
from tianshou_offline.algorithms.deferred import OfflineTrainingStats

if TYPE_CHECKING:
    import gymnasium as gym


@dataclass(frozen=True, kw_only=True)
class BCQConfig(ContinuousTDConfig):
    """BCQ's hyperparameters (Fujimoto et al. 2019, Appendix D): perturbation model and
    critics of 400 × 300, a VAE of 750 × 750, Adam 1e-3, λ = 0.75, Φ = 0.05, n = 10."""

    name: ClassVar[str] = "bcq"
    renamed: ClassVar[Mapping[str, str | tuple[str, ...]]] = {
        **ContinuousTDConfig.renamed,
        "num_sampled_action": "num_sampled_actions",
        "num_candidate_actions": "policy_num_sampled_actions",
        "lr": ("actor_lr", "critic_lr", "vae_lr"),
    }

    hidden_sizes: tuple[int, ...] = param_default(Perturbation, "hidden_sizes")
    """widths of the hidden layers of the perturbation model and the critics"""
    vae_hidden_sizes: tuple[int, ...] = param_default(VAE, "hidden_sizes")
    """widths of the VAE's encoder and decoder layers"""
    latent_dim: int | None = param_default(VAE, "latent_dim")
    """VAE latent size (None: 2 × action size)"""
    actor_lr: float = 1e-3
    """Adam learning rate of the perturbation model"""
    critic_lr: float = 1e-3
    """Adam learning rate of the critics"""
    vae_lr: float = 1e-3
    """Adam learning rate of the VAE"""
    lmbda: float = 0.75
    """λ, the weight of the minimum in the soft clipped double-Q target (Eq. 13)"""
    phi: float = param_default(Perturbation, "phi")
    """Φ, the largest perturbation (in ``[-1, 1]`` action units)"""
    num_sampled_actions: int = 10
    """VAE actions sampled per next state for the target"""
    policy_num_sampled_actions: int = param_default(BCQPolicy, "num_sampled_actions")
    """candidates the policy samples per state when acting"""
    kl_weight: float = 0.5
    """weight of the VAE's KL term"""
    perturb_target_actions: bool = True
    """perturb the target's sampled actions (False: Tianshou 2.0.1's unperturbed backup)"""

    def build(
        self,
        observation_space: gym.Space[Any],
        action_space: gym.Space[Any],
        *,
        device: str | torch.device = "cpu",
    ) -> BCQ:
        """A :class:`BCQ` of a :class:`VAE`, a :class:`Perturbation` and critics."""
        d, a = box_dims(observation_space, action_space)
        h = self.hidden_sizes
        policy = BCQPolicy(
            vae=VAE(d, a, self.vae_hidden_sizes, latent_dim=self.latent_dim),
            perturbation=Perturbation(d, a, h, phi=self.phi),
            critics=CriticEnsemble(d, a, h, num_critics=self.num_critics),
            action_space=action_space,
            observation_space=observation_space,
            num_sampled_actions=self.policy_num_sampled_actions,
            normalize_obs=self.normalize_obs,
        )
        algorithm: BCQ = BCQ(
            policy=policy,
            vae_optim=adam(self.vae_lr),
            actor_perturbation_optim=adam(self.actor_lr),
            critic_optim=adam(self.critic_lr),
            gamma=self.gamma,
            tau=self.tau,
            lmbda=self.lmbda,
            num_sampled_actions=self.num_sampled_actions,
            kl_weight=self.kl_weight,
            perturb_target_actions=self.perturb_target_actions,
            n_step_return_horizon=self.n_step_return_horizon,
            max_grad_norm=self.max_grad_norm,
        )
        return self.place(algorithm, device)


@dataclass(kw_only=True)
class BCQTrainingStats(OfflineTrainingStats):
    """Statistics of one BCQ step."""

    actor_loss: float
    """Perturbation loss ``−mean Q_1(s, ξ_φ(s, a))``."""
    critic_loss: float
    """``Σ_j MSE(Q_j(s, a), y)``."""
    vae_loss: float
    """``recon_loss + kl_weight · kl_loss``."""
    recon_loss: float
    """VAE reconstruction MSE."""
    kl_loss: float
    """``D_KL(N(μ, σ) ‖ N(0, 1))`` per latent dimension."""
    q_data: float
    """Mean Q of dataset actions."""
    q_target: float
    """Mean TD target."""
    q_policy: float
    """Mean ``Q_1`` of perturbed VAE actions."""


TBCQStats = TypeVar("TBCQStats", bound=BCQTrainingStats, default=BCQTrainingStats)


@dataclass(frozen=True, slots=True)
class BCQStep:
    """Tensors of one step, detached, for :meth:`BCQ._extend_stats`.

    :ivar batch: the mini-batch.
    :ivar recon: ``(B, A)`` VAE reconstructions of the dataset actions.
    :ivar q_data: ``(E, B)`` Q of the dataset actions.
    :ivar target: ``(B,)`` TD targets.
    :ivar act_policy: ``(B, A)`` perturbed VAE samples used by the actor loss.
    :ivar q_policy: ``(B,)`` their ``Q_1``.
    """

    batch: Transitions
    recon: torch.Tensor
    q_data: torch.Tensor
    target: torch.Tensor
    act_policy: torch.Tensor
    q_policy: torch.Tensor


class BCQ(OfflineAlgorithmBase[BCQPolicy, TBCQStats]):
    """BCQ (Fujimoto et al. 2019); see the module docstring for the equations.

    :param policy: a :class:`BCQPolicy` holding the VAE, the perturbation model and the critics.
    :param vae_optim: optimizer factory for the VAE (authors: Adam, default lr).
    :param actor_perturbation_optim: optimizer factory for ``ξ_φ`` (authors: Adam, lr 1e-3).
    :param critic_optim: optimizer factory for the critics (authors: Adam, lr 1e-3).

    The other settings default to :class:`BCQConfig`'s fields of the same names (documented
    there); ``num_sampled_action`` (the old name of ``num_sampled_actions``) is accepted with
    a ``DeprecationWarning`` until the next release.
    """

    @renamed_kwargs({"num_sampled_action": "num_sampled_actions"})
    def __init__(
        self,
        *,
        policy: BCQPolicy,
        vae_optim: OptimizerFactory,
        actor_perturbation_optim: OptimizerFactory,
        critic_optim: OptimizerFactory,
        gamma: float = BCQConfig.gamma,
        tau: float = BCQConfig.tau,
        lmbda: float = BCQConfig.lmbda,
        num_sampled_actions: int = BCQConfig.num_sampled_actions,
        kl_weight: float = BCQConfig.kl_weight,
        perturb_target_actions: bool = BCQConfig.perturb_target_actions,
        n_step_return_horizon: int = BCQConfig.n_step_return_horizon,
        max_grad_norm: float | None = BCQConfig.max_grad_norm,
    ) -> None:
        super().__init__(policy=policy)
        if policy.critics.num_critics < 2:
            raise ValueError("BCQ needs a CriticEnsemble with at least 2 members")
        self.critics_target = self._add_target(policy.critics)
        self.perturbation_target = self._add_target(policy.perturbation)
        self.vae_optim = self._make_optimizer(policy.vae, vae_optim, max_grad_norm)
        self.critic_optim = self._make_optimizer(policy.critics, critic_optim, max_grad_norm)
        self.actor_optim = self._make_optimizer(
            policy.perturbation, actor_perturbation_optim, max_grad_norm
        )
        self.gamma = gamma
        self.tau = tau
        self.lmbda = lmbda
        self.num_sampled_actions = num_sampled_actions
        self.kl_weight = kl_weight
        self.perturb_target_actions = perturb_target_actions
        self.n_step = n_step_return_horizon

    num_sampled_action = renamed_attribute("num_sampled_actions")
    """Deprecated: :attr:`num_sampled_actions` (the name of the previous release)."""

    def _update_with_batch(self, batch: RolloutBatchProtocol | Transitions) -> TBCQStats:
        b = self._as_transitions(batch)
        vae, perturbation, critics = self.policy.vae, self.policy.perturbation, self.policy.critics

        # 1. generative model
        recon, mean, log_std = vae(b.obs, b.act)
        recon_loss = F.mse_loss(recon, b.act)
        kl_loss = (-0.5 * (1.0 + 2.0 * log_std - mean.pow(2) - (2.0 * log_std).exp())).mean()
        vae_loss = recon_loss + self.kl_weight * kl_loss
        self.vae_optim.step(vae_loss)

        # 2. critic (Eq. 13)
        with torch.no_grad():
            act_next = vae.decode(b.obs_next, num_samples=self.num_sampled_actions)  # (B, n, A)
            if self.perturb_target_actions:
                act_next = self.perturbation_target(b.obs_next, act_next)
            q_next = self.critics_target(b.obs_next, act_next)  # (E, B, n)
            q_next = (
                self.lmbda * q_next.min(dim=0).values
                + (1.0 - self.lmbda) * q_next.max(dim=0).values
            )
            target = b.rew + b.discount * q_next.max(dim=1).values  # (B,)
        q_data = critics(b.obs, b.act)  # (E, B)
        critic_loss = (q_data - target).pow(2).mean(dim=1).sum()
        self.critic_optim.step(critic_loss)

        # 3. perturbation model (Eq. 11)
        with torch.no_grad():
            act_vae = vae.decode(b.obs)
        act_pi = perturbation(b.obs, act_vae)
        q_pi = critics(b.obs, act_pi, member=0, detach_params=True)  # (B,)
        actor_loss = -q_pi.mean()
        self.actor_optim.step(actor_loss)

        # 4. targets
        self._update_targets(self.tau)

        stats = self._make_stats(
            actor_loss=actor_loss,
            critic_loss=critic_loss,
            vae_loss=vae_loss,
            recon_loss=recon_loss,
            kl_loss=kl_loss,
            q_data=q_data.mean(),
            q_target=target.mean(),
            q_policy=q_pi.mean(),
        )
        self._extend_stats(
            stats,
            BCQStep(
                batch=b,
                recon=recon.detach(),
                q_data=q_data.detach(),
                target=target,
                act_policy=act_pi.detach(),
                q_policy=q_pi.detach(),
            ),
        )
        return stats

    def _extend_stats(self, stats: TBCQStats, step: BCQStep) -> None:
        """Override to fill in extra fields of a stats subclass (see ``examples/extend_stats.py``)."""
