"""AWAC: advantage-weighted actor-critic — off-policy policy evaluation and an
advantage-weighted maximum-likelihood actor, the standard offline → online baseline.

Reference: Nair, Gupta, Dalal & Levine (2020), "AWAC: Accelerating Online Reinforcement
Learning with Offline Datasets", arXiv:2006.09359 — Sec. 4 (the AWAC update) and
Algorithm 1.

The update, in the order of Algorithm 1 (and of CORL and d3rlpy):

1. **Critic** — policy evaluation of the current actor by TD learning (Sec. 4.1, the
   bootstrapped objective with ``a' ~ π(·|s')``), every member::

       y   = r + γ (1 − d) min_j Q'_j(s', a'),   a' ~ π(·|s')
       L_Q = Σ_j E_{(s,a,r,s')~D} (Q_j(s, a) − y)²

   no entropy term; ``d`` is termination only (a time-limit truncation bootstraps).
2. **Actor** — the advantage-weighted maximum-likelihood update of Sec. 4.2 (the
   projection of the KL-constrained improvement step onto the policy class, with the
   Lagrange multiplier λ as temperature), on the dataset's actions only, with the updated
   critics::

       L_π = −E_{(s,a)~D} [ w(s, a) · log π(a|s) ],   w(s, a) = min(exp(A(s, a) / λ), w_max)
       A(s, a) = min_j Q_j(s, a) − V(s),               V(s) = 1/K Σ_k min_j Q_j(s, a_k),  a_k ~ π(·|s)

   The weights are not differentiated. ``w_max`` (100) is CORL's clip of the weights;
   ``normalize_weights=True`` uses d3rlpy's weights instead, the softmax over the batch
   ``w_i = B · softmax_i(A_i / λ)`` (no clip).
3. **Targets**: Polyak averaging of the critic ensemble.

**Differences from CORL and d3rlpy 2.8**, deliberate:

- the critic's target is the paper's ``min_j Q'_j(s', a')``; d3rlpy 2.8.1's AWAC reuses its
  SAC target: a tanh-squashed next action and ``− log π(a'|s')`` with the temperature fixed
  at 1 (its placeholder log-temperature 0);
- the clip ``w_max`` (CORL's ``exp_adv_max``) is on by default, d3rlpy's batch softmax is an
  option; d3rlpy's actor loss is the batch *sum* of ``−w log π`` (``B`` times ours — the same
  Adam step up to ε) and it has actor weight decay (1e-4; pass an ``AdamOptimizerFactory(
  weight_decay=...)``);
- V is the mean over K actor samples (``num_sampled_actions``; 1 in CORL and d3rlpy's
  default) of the minimum over the critics;
- unsquashed samples (``GaussianPolicy(squash=False)``, the paper's and CORL's Gaussian) are
  clipped to the action range before the critics see them (they are the actions the policy
  executes); CORL clamps them too, d3rlpy's non-squashed policy does not;
- the networks are the caller's: d3rlpy defaults to four hidden layers of 256, CORL to
  three; the examples use ``--hidden-sizes``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import torch
from tianshou.algorithm.optim import OptimizerFactory
from tianshou.data.types import RolloutBatchProtocol
from typing_extensions import TypeVar

from tianshou_offline.algorithms.config import (
    ContinuousTDConfig,
    adam,
    box_dims,
    renamed_attribute,
    renamed_kwargs,
)
from tianshou_offline.algorithms.continuous.base import OfflineAlgorithmBase
from tianshou_offline.algorithms.continuous.dataset import Transitions
from tianshou_offline.algorithms.continuous.nets import CriticEnsemble, GaussianActor
from tianshou_offline.algorithms.continuous.policies import (
    GaussianPolicy,
    gaussian_actions,
    gaussian_log_prob,
)
from tianshou_offline.algorithms.deferred import OfflineTrainingStats

__all__ = ["AWAC", "AWACConfig", "AWACStep", "AWACTrainingStats", "advantage_weights"]


@dataclass(frozen=True, kw_only=True)
class AWACConfig(ContinuousTDConfig):
    """AWAC's hyperparameters (CORL's and d3rlpy's defaults): λ = 1, weights clipped at 100,
    one actor sample for V, Adam 3e-4, two critics, a Gaussian actor with a
    state-independent std."""

    name: ClassVar[str] = "awac"
    renamed: ClassVar[Mapping[str, str | tuple[str, ...]]] = {
        **ContinuousTDConfig.renamed,
        "num_action_samples": "num_sampled_actions",
    }

    lam: float = 1.0
    """λ, the temperature of the advantage weights exp(A / λ)"""
    max_weight: float | None = 100.0
    """w_max, the clip of the weights (None: no clip)"""
    normalize_weights: bool = False
    """d3rlpy's weights B · softmax(A / λ) over the batch instead of the clipped exp"""
    num_sampled_actions: int = 1
    """K, actor samples per state for V(s)"""
    conditioned_std: bool = False
    """the actor's log-std is a head of the network (False: a state-independent parameter)"""

    def build(
        self,
        observation_space: gym.Space[Any],
        action_space: gym.Space[Any],
        *,
        device: str | torch.device = "cpu",
    ) -> AWAC:
        """An :class:`AWAC` with an unsquashed :class:`GaussianPolicy` and a
        :class:`CriticEnsemble`."""
        d, a = box_dims(observation_space, action_space)
        policy = GaussianPolicy(
            actor=GaussianActor(d, a, self.hidden_sizes, conditioned_std=self.conditioned_std),
            action_space=action_space,
            observation_space=observation_space,
            squash=False,
            normalize_obs=self.normalize_obs,
        )
        algorithm: AWAC = AWAC(
            policy=policy,
            policy_optim=adam(self.actor_lr),
            critics=CriticEnsemble(d, a, self.hidden_sizes, num_critics=self.num_critics),
            critic_optim=adam(self.critic_lr),
            lam=self.lam,
            max_weight=self.max_weight,
            normalize_weights=self.normalize_weights,
            num_sampled_actions=self.num_sampled_actions,
            tau=self.tau,
            gamma=self.gamma,
            n_step_return_horizon=self.n_step_return_horizon,
            max_grad_norm=self.max_grad_norm,
        )
        return self.place(algorithm, device)


def advantage_weights(
    advantage: torch.Tensor, lam: float, *, max_weight: float | None, normalize: bool
) -> torch.Tensor:
    """AWAC's actor weights of the advantages ``(B,)`` (or ``(K, B)``: a batch per seed):
    ``min(exp(A / λ), w_max)``, or with ``normalize`` d3rlpy's ``B · softmax(A / λ)`` over the
    batch (``max_weight`` unused)."""
    if normalize:
        return torch.softmax(advantage / lam, dim=-1) * advantage.shape[-1]
    weight = torch.exp(advantage / lam)
    return weight if max_weight is None else weight.clamp(max=max_weight)


@dataclass(kw_only=True)
class AWACTrainingStats(OfflineTrainingStats):
    """Statistics of one AWAC step."""

    critic_loss: float
    """``Σ_j MSE(Q_j(s, a), y)``."""
    actor_loss: float
    """``−mean w · log π(a|s)``."""
    advantage: float
    """Mean advantage ``min_j Q_j(s, a) − V(s)`` (updated critics)."""
    weight: float
    """Mean weight ``w``."""
    clipped_weight: float
    """Fraction of the batch whose weight was clipped at ``w_max`` (0 with normalised weights)."""
    log_prob: float
    """Mean ``log π(a|s)`` of the dataset actions."""
    q_data: float
    """Mean ``Q(s, a)`` of the dataset actions (over members and batch, before the Q step)."""
    v: float
    """Mean ``V(s)`` (updated critics)."""
    q_target: float
    """Mean TD target ``y``."""


TAWACStats = TypeVar("TAWACStats", bound=AWACTrainingStats, default=AWACTrainingStats)


@dataclass(frozen=True, slots=True)
class AWACStep:
    """Tensors of one step, detached, for :meth:`AWAC._extend_stats`.

    :ivar batch: the mini-batch.
    :ivar q_data: ``(E, B)`` Q-values of the dataset actions (before the Q step).
    :ivar target: ``(B,)`` TD targets.
    :ivar advantage: ``(B,)`` ``A(s, a)`` (updated critics).
    :ivar weight: ``(B,)`` the actor's weights.
    :ivar log_prob: ``(B,)`` ``log π(a|s)`` of the dataset actions.
    """

    batch: Transitions
    q_data: torch.Tensor
    target: torch.Tensor
    advantage: torch.Tensor
    weight: torch.Tensor
    log_prob: torch.Tensor


class AWAC(OfflineAlgorithmBase[GaussianPolicy, TAWACStats]):
    """AWAC (Nair et al. 2020); see the module docstring for the equations.

    Defaults are CORL's and d3rlpy's: λ = 1, Adam 3e-4 for both networks (pass the
    factories), τ = 0.005, two critics, one action sample for V, weights clipped at 100.

    :param policy: a :class:`GaussianPolicy` (``squash=False`` as in the paper and CORL; a
        squashed one is accepted: its log-density then includes the tanh correction).
    :param policy_optim: optimizer factory for the actor.
    :param critics: the critic ensemble (E ≥ 1; the minimum over members is used).
    :param critic_optim: optimizer factory for the critics.
    :param lam: λ, the temperature of the advantage weights (> 0; small → greedy on the
        advantage, large → behaviour cloning).
    :param max_weight: w_max, the clip of ``exp(A / λ)`` (None: no clip).
    :param normalize_weights: d3rlpy's weights ``B · softmax(A / λ)`` over the batch.
    :param num_sampled_actions: K, actor samples per state for ``V(s)`` (the old name
        ``num_action_samples`` is accepted with a ``DeprecationWarning`` for one release).
    :param tau: Polyak factor of the target critics.
    :param gamma: discount factor.
    :param n_step_return_horizon: n of the n-step TD target (1 in the paper).
    :param max_grad_norm: clip gradient norms (None: no clipping, as in the paper).
    """

    @renamed_kwargs({"num_action_samples": "num_sampled_actions"})
    def __init__(
        self,
        *,
        policy: GaussianPolicy,
        policy_optim: OptimizerFactory,
        critics: CriticEnsemble,
        critic_optim: OptimizerFactory,
        lam: float = AWACConfig.lam,
        max_weight: float | None = AWACConfig.max_weight,
        normalize_weights: bool = AWACConfig.normalize_weights,
        num_sampled_actions: int = AWACConfig.num_sampled_actions,
        tau: float = AWACConfig.tau,
        gamma: float = AWACConfig.gamma,
        n_step_return_horizon: int = AWACConfig.n_step_return_horizon,
        max_grad_norm: float | None = AWACConfig.max_grad_norm,
    ) -> None:
        super().__init__(policy=policy)
        if not lam > 0.0:
            raise ValueError(f"AWAC: lam={lam}; expected > 0")
        if max_weight is not None and not max_weight > 0.0:
            raise ValueError(f"AWAC: max_weight={max_weight}; expected > 0 or None")
        if num_sampled_actions < 1:
            raise ValueError(f"AWAC: num_sampled_actions={num_sampled_actions}; expected >= 1")
        if not 0.0 < tau <= 1.0:
            raise ValueError(f"AWAC: tau={tau}; expected 0 < tau <= 1")
        self.critics = critics
        self.critics_target = self._add_target(critics)
        self.actor_optim = self._make_optimizer(policy.actor, policy_optim, max_grad_norm)
        self.critic_optim = self._make_optimizer(critics, critic_optim, max_grad_norm)
        self.lam = float(lam)
        self.max_weight = None if max_weight is None else float(max_weight)
        self.normalize_weights = normalize_weights
        self.num_sampled_actions = int(num_sampled_actions)
        self.tau = tau
        self.gamma = gamma
        self.n_step = n_step_return_horizon

    num_action_samples = renamed_attribute("num_sampled_actions")
    """Deprecated: :attr:`num_sampled_actions` (the name of the previous release)."""

    def _update_with_batch(self, batch: RolloutBatchProtocol | Transitions) -> TAWACStats:
        b = self._as_transitions(batch)
        policy = self.policy
        actor = policy.actor

        # 1. critic: evaluate the current actor, a' ~ π(·|s')
        with torch.no_grad():
            mean_n, log_std_n = actor(b.obs_next)
            act_next = gaussian_actions(mean_n, log_std_n, squash=policy.squash)
            q_next = self.critics_target(b.obs_next, act_next).min(dim=0).values  # (B,)
            target = b.rew + b.discount * q_next
        q_data = self.critics(b.obs, b.act)  # (E, B)
        critic_loss = (q_data - target).pow(2).mean(dim=1).sum()
        self.critic_optim.step(critic_loss)

        # 2. actor: advantage-weighted maximum likelihood with the updated critics
        mean, log_std = actor(b.obs)
        with torch.no_grad():
            act_k = gaussian_actions(
                mean, log_std, squash=policy.squash, num_samples=self.num_sampled_actions
            )  # (B, K, A)
            q_both = self.critics(b.obs, torch.cat([b.act.unsqueeze(1), act_k], dim=1))
            q_min = q_both.min(dim=0).values  # (B, 1 + K)
            v = q_min[:, 1:].mean(dim=1)
            adv = q_min[:, 0] - v
            w = advantage_weights(
                adv, self.lam, max_weight=self.max_weight, normalize=self.normalize_weights
            )
        log_prob = gaussian_log_prob(mean, log_std, b.act, squash=policy.squash)
        actor_loss = -(w * log_prob).mean()
        self.actor_optim.step(actor_loss)

        # 3. targets
        self._update_targets(self.tau)

        clipped = (
            (torch.exp(adv / self.lam) >= self.max_weight).float().mean()
            if self.max_weight is not None and not self.normalize_weights
            else torch.zeros(())
        )
        stats = self._make_stats(
            critic_loss=critic_loss,
            actor_loss=actor_loss,
            advantage=adv.mean(),
            weight=w.mean(),
            clipped_weight=clipped,
            log_prob=log_prob.mean(),
            q_data=q_data.mean(),
            v=v.mean(),
            q_target=target.mean(),
        )
        self._extend_stats(
            stats,
            AWACStep(
                batch=b,
                q_data=q_data.detach(),
                target=target,
                advantage=adv,
                weight=w,
                log_prob=log_prob.detach(),
            ),
        )
        return stats

    def _extend_stats(self, stats: TAWACStats, step: AWACStep) -> None:
        """Override to fill in extra fields of a stats subclass (see ``examples/extend_stats.py``)."""
