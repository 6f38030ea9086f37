"""CRR: critic-regularised regression for continuous actions.

Reference: Wang, Novikov, Żołna, Springenberg, Reed, Shahriari, Siegel, Merel, Gulcehre,
Heess & de Freitas (2020), "Critic Regularized Regression", NeurIPS, arXiv:2006.15134 —
Sec. 3 and Algorithm 1.

The update (critic and actor losses are computed from the same parameters and applied
with one backward pass):

1. **Critic** — policy evaluation of π (Sec. 3, the TD objective)::

       y = r + γ (1 − d) min_j Q'_j(s', a'),   a' ~ π'(·|s')   (target policy)
       L_Q = Σ_j E_{(s,a)~D} (Q_j(s, a) − y)²

   The paper's critic is distributional; this one is scalar (as in Tianshou's discrete CRR
   and d3rlpy) with the minimum over an ensemble of E ≥ 1 members (E = 1: the paper's single
   critic).
2. **Advantage** from m actions ``a_k ~ π(·|s)`` (Sec. 3, the two estimators)::

       Â_mean(s, a) = Q(s, a) − (1/m) Σ_k Q(s, a_k)      Â_max(s, a) = Q(s, a) − max_k Q(s, a_k)

3. **Actor** — the critic-filtered regression objective (Sec. 3)::

       π = argmax_π E_{(s,a)~D} [ f(Q, π, s, a) · log π(a|s) ],
       f = 1[Â(s, a) > 0]  (binary)   or   f = min(exp(Â(s, a) / β), max_weight)  (exp)

4. **Targets**: ``θ' ← τ θ + (1 − τ) θ'`` for critics and actor every
   ``target_update_freq`` steps — soft updates every step by default; ``tau=1.0,
   target_update_freq=100`` gives the hard copies every 100 steps of d3rlpy's CRR.

**Acting.** A :class:`~tianshou_offline.algorithms.continuous.policies.GaussianPolicy`
acts with the Gaussian's mode (its mean, clipped to the bounds) at evaluation
(``deterministic_eval=True``) and samples within training steps. The critic-weighted
selection d3rlpy's CRR evaluates with (m samples of π, one re-sampled with probability
``softmax(Q)``) is :class:`~tianshou_offline.algorithms.continuous.policies.CriticWeightedPolicy`:
pass it as ``policy`` with the same ``critics``.

**Differences from the paper and d3rlpy 2.8**, deliberate:

- the critic is scalar, not distributional (as d3rlpy and Tianshou's discrete CRR);
- the advantage (step 2) is computed from the critic *before* this step's update, and the
  critic and actor losses are applied with one backward pass (one optimizer step each, from
  the same parameters). d3rlpy steps the critic first and computes the advantage with the
  updated critic; the two differ by one gradient step of the critic (the next step uses the
  updated one);
- targets: soft (Polyak) updates every step by default; d3rlpy's CRR defaults to hard copies
  every 100 steps (``tau=1.0, target_update_freq=100`` here, copying after the 0-based
  steps 99, 199, …; d3rlpy copies after its steps 0, 100, 200, …);
- acting: the Gaussian's mode by default (see above); d3rlpy's ``predict`` uses the
  critic-weighted selection.

Speed: one actor evaluation on ``s`` gives both the log-likelihood of the dataset actions
and the m advantage samples; the m Q-values are one ensemble call with observations
broadcast, not copied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
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
from tianshou_offline.algorithms.continuous.nets import CriticEnsemble, GaussianActor
from tianshou_offline.algorithms.continuous.policies import (
    CriticWeightedPolicy,
    GaussianPolicy,
    gaussian_actions,
    gaussian_log_prob,
)
from tianshou_offline.algorithms.core import joint_step
from tianshou_offline.algorithms.deferred import OfflineTrainingStats

if TYPE_CHECKING:
    import gymnasium as gym


def crr_weights(adv: torch.Tensor, mode: str, beta: float, max_weight: float) -> torch.Tensor:
    """CRR's regression weights ``f(Â)`` (Wang et al. 2020, Eq. 3): ``1[Â > 0]`` for
    ``"binary"``, ``min(exp(Â / β), max_weight)`` for ``"exp"``, 1 for ``"all"`` (plain
    behaviour cloning; the discrete form's third mode) — elementwise, any shape."""
    if mode == "binary":
        return (adv > 0).to(adv.dtype)
    if mode == "exp":
        return torch.exp(adv / beta).clamp(max=max_weight)
    return torch.ones_like(adv)


@dataclass(frozen=True, kw_only=True)
class CRRConfig(ContinuousTDConfig):
    """CRR's hyperparameters (Wang et al. 2020; d3rlpy's continuous CRR): an unsquashed
    Gaussian actor, exponential weights clipped at 20, the mean advantage over 4 samples."""

    name: ClassVar[str] = "crr"
    renamed: ClassVar[Mapping[str, str | tuple[str, ...]]] = {
        **ContinuousTDConfig.renamed,
        "num_action_samples": "num_sampled_actions",
        "target_update_interval": "target_update_freq",
    }

    weight: Literal["exp", "binary"] = "exp"
    """the advantage weight f: ``exp(Â/β)`` clipped, or ``1[Â > 0]``"""
    beta: float = 1.0
    """β of the exponential weight"""
    max_weight: float = 20.0
    """clip of the exponential weight"""
    advantage: Literal["mean", "max"] = "mean"
    """the advantage's baseline over the sampled actions' Q-values"""
    num_sampled_actions: int = param_default(CriticWeightedPolicy, "num_sampled_actions")
    """m, actions sampled per state for the advantage"""
    target_update_freq: int = 1
    """update the target networks every this many steps (``tau=1``: hard copies)"""
    critic_weighted_policy: bool = False
    """act with the critic-weighted selection among sampled actions
    (:class:`CriticWeightedPolicy`) instead of the Gaussian's mode"""

    def build(
        self,
        observation_space: gym.Space[Any],
        action_space: gym.Space[Any],
        *,
        device: str | torch.device = "cpu",
    ) -> CRR:
        """A :class:`CRR` of an unsquashed :class:`GaussianActor` and critics."""
        d, a = box_dims(observation_space, action_space)
        actor = GaussianActor(d, a, self.hidden_sizes)
        critics = CriticEnsemble(d, a, self.hidden_sizes, num_critics=self.num_critics)
        policy: GaussianPolicy
        if self.critic_weighted_policy:
            policy = CriticWeightedPolicy(
                actor=actor,
                critics=critics,
                action_space=action_space,
                observation_space=observation_space,
                num_sampled_actions=self.num_sampled_actions,
                normalize_obs=self.normalize_obs,
            )
        else:
            policy = GaussianPolicy(
                actor=actor,
                action_space=action_space,
                observation_space=observation_space,
                squash=False,
                normalize_obs=self.normalize_obs,
            )
        algorithm: CRR = CRR(
            policy=policy,
            policy_optim=adam(self.actor_lr),
            critics=critics,
            critic_optim=adam(self.critic_lr),
            gamma=self.gamma,
            tau=self.tau,
            weight=self.weight,
            beta=self.beta,
            max_weight=self.max_weight,
            advantage=self.advantage,
            num_sampled_actions=self.num_sampled_actions,
            n_step_return_horizon=self.n_step_return_horizon,
            max_grad_norm=self.max_grad_norm,
            target_update_freq=self.target_update_freq,
        )
        return self.place(algorithm, device)


@dataclass(kw_only=True)
class CRRTrainingStats(OfflineTrainingStats):
    """Statistics of one CRR step."""

    actor_loss: float
    """``−mean f(Â) log π(a|s)``."""
    critic_loss: float
    """``Σ_j MSE(Q_j(s, a), y)``."""
    advantage: float
    """Mean advantage estimate Â(s, a)."""
    weight: float
    """Mean regression weight f(Â)."""
    positive_advantage: float
    """Fraction of the batch with Â > 0."""
    log_prob: float
    """Mean log π(a|s) of the dataset actions."""
    q_data: float
    """Mean Q of dataset actions."""
    q_target: float
    """Mean TD target."""


TCRRStats = TypeVar("TCRRStats", bound=CRRTrainingStats, default=CRRTrainingStats)


@dataclass(frozen=True, slots=True)
class CRRStep:
    """Tensors of one step, detached, for :meth:`CRR._extend_stats`.

    :ivar batch: the mini-batch.
    :ivar q_data: ``(E, B)`` Q of the dataset actions.
    :ivar q_sampled: ``(B, m)`` ensemble-reduced Q of the m policy samples.
    :ivar advantage: ``(B,)`` Â(s, a).
    :ivar weight: ``(B,)`` f(Â).
    :ivar log_prob: ``(B,)`` log π(a|s).
    :ivar target: ``(B,)`` TD targets.
    """

    batch: Transitions
    q_data: torch.Tensor
    q_sampled: torch.Tensor
    advantage: torch.Tensor
    weight: torch.Tensor
    log_prob: torch.Tensor
    target: torch.Tensor


class CRR(OfflineAlgorithmBase[GaussianPolicy, TCRRStats]):
    """CRR (Wang et al. 2020); see the module docstring for the equations.

    :param policy: a :class:`GaussianPolicy` (``squash=False`` recommended: dataset actions
        on the bounds have a finite likelihood), or a :class:`CriticWeightedPolicy` over the
        same ``critics`` to act with the critic-weighted selection.
    :param policy_optim: optimizer factory for the actor.
    :param critics: the critic ensemble (E ≥ 1; the minimum over members is used).
    :param critic_optim: optimizer factory for the critics.

    The other settings default to :class:`CRRConfig`'s fields of the same names (documented
    there); the old names ``num_action_samples`` and ``target_update_interval`` are accepted
    with a ``DeprecationWarning`` until the next release.
    """

    @renamed_kwargs(
        {
            "num_action_samples": "num_sampled_actions",
            "target_update_interval": "target_update_freq",
        }
    )
    def __init__(
        self,
        *,
        policy: GaussianPolicy,
        policy_optim: OptimizerFactory,
        critics: CriticEnsemble,
        critic_optim: OptimizerFactory,
        gamma: float = CRRConfig.gamma,
        tau: float = CRRConfig.tau,
        weight: Literal["exp", "binary"] = CRRConfig.weight,
        beta: float = CRRConfig.beta,
        max_weight: float = CRRConfig.max_weight,
        advantage: Literal["mean", "max"] = CRRConfig.advantage,
        num_sampled_actions: int = CRRConfig.num_sampled_actions,
        n_step_return_horizon: int = CRRConfig.n_step_return_horizon,
        max_grad_norm: float | None = CRRConfig.max_grad_norm,
        target_update_freq: int = CRRConfig.target_update_freq,
    ) -> None:
        super().__init__(policy=policy)
        if target_update_freq < 1:
            raise ValueError(f"target_update_freq={target_update_freq}: expected >= 1")
        if not 0.0 < tau <= 1.0:
            raise ValueError(f"tau={tau}: expected 0 < tau <= 1")
        if weight not in ("exp", "binary"):
            raise ValueError(f"weight={weight!r}: expected 'exp' or 'binary'")
        if advantage not in ("mean", "max"):
            raise ValueError(f"advantage={advantage!r}: expected 'mean' or 'max'")
        if isinstance(policy, CriticWeightedPolicy) and policy.critics is not critics:
            raise ValueError(
                "CRR: the CriticWeightedPolicy acts with other critics than the ones CRR "
                "trains; pass the same CriticEnsemble to both"
            )
        self.critics = critics
        self.critics_target = self._add_target(critics)
        self.actor_target = self._add_target(policy.actor)
        self.actor_optim = self._make_optimizer(policy.actor, policy_optim, max_grad_norm)
        self.critic_optim = self._make_optimizer(critics, critic_optim, max_grad_norm)
        self.gamma = gamma
        self.tau = tau
        self.weight = weight
        self.beta = beta
        self.max_weight = max_weight
        self.advantage = advantage
        self.num_sampled_actions = num_sampled_actions
        self.n_step = n_step_return_horizon
        self.target_update_freq = target_update_freq

    num_action_samples = renamed_attribute("num_sampled_actions")
    """Deprecated: :attr:`num_sampled_actions` (the name of the previous release)."""

    target_update_interval = renamed_attribute("target_update_freq")
    """Deprecated: :attr:`target_update_freq` (the name of the previous release)."""

    def _update_with_batch(self, batch: RolloutBatchProtocol | Transitions) -> TCRRStats:
        b = self._as_transitions(batch)
        actor = self.policy.actor
        squash = self.policy.squash

        # 1. critic: evaluate the (target) policy
        with torch.no_grad():
            mean_next, log_std_next = self.actor_target(b.obs_next)
            act_next = gaussian_actions(mean_next, log_std_next, squash=squash)
            q_next = self.critics_target(b.obs_next, act_next).min(dim=0).values
            target = b.rew + b.discount * q_next  # (B,)
        q_data = self.critics(b.obs, b.act)  # (E, B)
        critic_loss = (q_data - target).pow(2).mean(dim=1).sum()

        # 2. advantage from m policy samples
        mean, log_std = actor(b.obs)
        with torch.no_grad():
            act_k = gaussian_actions(
                mean.detach(), log_std.detach(), squash=squash, num_samples=self.num_sampled_actions
            )
            q_k = self.critics(b.obs, act_k).min(dim=0).values  # (B, m)
            baseline = q_k.mean(dim=1) if self.advantage == "mean" else q_k.max(dim=1).values
            adv = q_data.detach().min(dim=0).values - baseline  # (B,)
            w = crr_weights(adv, self.weight, self.beta, self.max_weight)

        # 3. actor: advantage-filtered regression
        log_prob = gaussian_log_prob(mean, log_std, b.act, squash=squash)
        actor_loss = -(w * log_prob).mean()

        # one backward for both losses (disjoint parameters), then both optimizers step
        joint_step(critic_loss + actor_loss, [self.critic_optim, self.actor_optim])
        # 4. targets
        if (self.num_updates + 1) % self.target_update_freq == 0:
            self._update_targets(self.tau)

        stats = self._make_stats(
            actor_loss=actor_loss,
            critic_loss=critic_loss,
            advantage=adv.mean(),
            weight=w.mean(),
            positive_advantage=(adv > 0).float().mean(),
            log_prob=log_prob.mean(),
            q_data=q_data.mean(),
            q_target=target.mean(),
        )
        self._extend_stats(
            stats,
            CRRStep(
                batch=b,
                q_data=q_data.detach(),
                q_sampled=q_k,
                advantage=adv,
                weight=w,
                log_prob=log_prob.detach(),
                target=target,
            ),
        )
        return stats

    def _extend_stats(self, stats: TCRRStats, step: CRRStep) -> None:
        """Override to fill in extra fields of a stats subclass (see ``examples/extend_stats.py``)."""
