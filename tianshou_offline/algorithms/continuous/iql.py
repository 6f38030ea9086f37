"""IQL: implicit Q-learning — in-sample value learning with expectile regression and
advantage-weighted policy extraction.

Reference: Kostrikov, Nair & Levine (2022), "Offline Reinforcement Learning with Implicit
Q-Learning", ICLR, arXiv:2110.06169 — Sec. 4 and Algorithm 1.

The update, in the order of Algorithm 1 and of the authors' code (every network is
evaluated only on dataset actions: no out-of-distribution action is ever queried):

1. **Value** — expectile regression of ``V_ψ`` on the target critics (Eq. 5), with the
   asymmetric squared loss ``L₂^τ(u) = |τ − 1(u < 0)| u²`` (Sec. 4.1, applied to ``u = Q − V``)::

       L_V(ψ) = E_{(s,a)~D} [ L₂^τ( min_j Q̂_j(s, a) − V_ψ(s) ) ]

   ``τ`` is the expectile (0.7 for the MuJoCo tasks); ``τ = 0.5`` is mean regression (SARSA).
2. **Actor** — advantage-weighted regression (Eq. 7; Peng et al. 2019, Nair et al. 2020)
   with the updated ``V_ψ``::

       L_π(φ) = −E_{(s,a)~D} [ min(exp(β (min_j Q̂_j(s, a) − V_ψ(s))), w_max) · log π_φ(a|s) ]

   ``β`` is the inverse temperature (3.0 for MuJoCo), ``w_max = 100`` the weight clip of the
   authors' code. With a deterministic actor ``log π_φ(a|s)`` is replaced by
   ``−‖π_φ(s) − a‖²`` (the squared error summed over action dimensions; CORL's
   ``iql_deterministic``).
3. **Critic** — TD regression towards the updated value (Eq. 6), each member::

       L_Q(θ) = Σ_j E_{(s,a,r,s')~D} [ (r + γ (1 − d) V_ψ(s') − Q_θj(s, a))² ]

   ``d`` is *termination* only: a time-limit truncation still bootstraps. With n-step returns
   ``r`` is the discounted n-step sum and ``γ`` becomes ``γ^n``.
4. **Targets**: ``θ̂ ← τ_p θ + (1 − τ_p) θ̂`` (Polyak factor ``tau``, 0.005) for the critics.

**Acting.** A :class:`~tianshou_offline.algorithms.continuous.policies.GaussianPolicy`
(``squash=False``; the authors' actor is
``GaussianActor(conditioned_std=False, tanh_mean=True)``: a tanh-bounded mean and a
state-independent std) acts with its mean at evaluation; a
:class:`~tianshou_offline.algorithms.continuous.policies.DeterministicPolicy` with π(s).

**Schedules.** The authors (and CORL) anneal the actor's learning rate with a cosine schedule
over the whole run; here it is off by default (the length of the run is not known to the
algorithm), in this class and in ``examples/mujoco/d4rl_iql.py`` alike. To reproduce the
authors' schedule pass ``policy_optim=AdamOptimizerFactory(lr=3e-4)
.with_lr_scheduler_factory(CosineLRSchedulerFactory(num_steps))`` (the example's
``--actor-cosine-lr 1``; stepped after every update by the core; saved in the
``state_dict``).

**Squashing.** A tanh-squashed :class:`GaussianPolicy` (``squash=True``) is refused: its
weighted likelihood would be that of ``tanh(u)``, a different actor from the paper's
(a Gaussian with a tanh-bounded mean, unsquashed) and from CORL's.

**Differences from the paper, the authors' code, CORL and d3rlpy 2.8**, deliberate:

- the order is the authors' (V, then the actor and Q with the updated V). CORL computes
  ``V(s')`` and the advantage with the V *before* its step; d3rlpy steps V and Q together on
  one summed loss (also with the pre-step V). They differ by one gradient step of V;
- the critic loss is the *sum* over members of the per-member MSE (the authors' code and
  d3rlpy); CORL averages over the two members (half the critic's gradient);
- the V passes after the V step (``V(s)`` for the advantage, ``V(s')`` for the TD target)
  are one call on the concatenated batch;
- rewards are used as stored: the authors rescale MuJoCo rewards by ``1000 / (max episode
  return − min episode return)`` of the dataset (and AntMaze's by ``r − 1``); scale the
  buffer's rewards before training to reproduce that;
- dropout in the actor (the authors' Adroit setting) is not offered.

There is no discrete-action IQL here: the paper defines and evaluates IQL for continuous
actions only. Its nearest discrete relative, ILQL (Snell et al. 2022, arXiv:2206.11871), is a
different algorithm (a conservative term on the Q-values, and the policy is a behaviour
model's logits shifted by ``β (Q − V)`` instead of an advantage-weighted regression).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from tianshou.algorithm.optim import LRSchedulerFactory, OptimizerFactory
from tianshou.data.types import RolloutBatchProtocol
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler
from typing_extensions import TypeVar

from tianshou_offline.algorithms.config import ContinuousTDConfig, adam, box_dims
from tianshou_offline.algorithms.continuous.base import OfflineAlgorithmBase
from tianshou_offline.algorithms.continuous.dataset import Transitions
from tianshou_offline.algorithms.continuous.nets import (
    CriticEnsemble,
    DeterministicActor,
    GaussianActor,
    ValueFunction,
)
from tianshou_offline.algorithms.continuous.policies import (
    DeterministicPolicy,
    GaussianPolicy,
    gaussian_log_prob,
)
from tianshou_offline.algorithms.deferred import OfflineTrainingStats

if TYPE_CHECKING:
    import gymnasium as gym

__all__ = [
    "IQL",
    "CosineLRSchedulerFactory",
    "IQLConfig",
    "IQLStep",
    "IQLTrainingStats",
    "expectile_loss",
]


def expectile_loss(u: torch.Tensor, expectile: float) -> torch.Tensor:
    """``L₂^τ(u) = |τ − 1(u < 0)| u²`` elementwise (Kostrikov et al. 2022, Sec. 4.1), τ = ``expectile``."""
    weight = torch.where(u < 0, 1.0 - expectile, expectile)
    return weight * u.pow(2)


class CosineLRSchedulerFactory(LRSchedulerFactory):
    """A Tianshou ``LRSchedulerFactory`` for PyTorch's ``CosineAnnealingLR``: the learning
    rate follows ``lr · (1 + cos(π t / num_steps)) / 2`` over ``num_steps`` gradient steps
    (IQL's actor schedule in the authors' code and CORL).

    :param num_steps: the length of the schedule in gradient steps (the run's total; the core
        steps every scheduler once per update).
    """

    def __init__(self, num_steps: int) -> None:
        if num_steps < 1:
            raise ValueError(f"num_steps={num_steps}: expected >= 1")
        self.num_steps = int(num_steps)

    def create_scheduler(self, optim: torch.optim.Optimizer) -> LRScheduler:
        return CosineAnnealingLR(optim, T_max=self.num_steps)


@dataclass(frozen=True, kw_only=True)
class IQLConfig(ContinuousTDConfig):
    """IQL's hyperparameters (Kostrikov et al. 2022, Appendix B, MuJoCo; CORL's
    configuration): τ = 0.7, β = 3, weight clip 100, Adam 3e-4, normalised observations, a
    Gaussian actor with a tanh mean and a state-independent std."""

    name: ClassVar[str] = "iql"
    conv_encoder: ClassVar[bool] = True
    renamed: ClassVar[Mapping[str, str | tuple[str, ...]]] = {
        **ContinuousTDConfig.renamed,
        "lr": ("actor_lr", "critic_lr", "value_lr"),
    }

    normalize_obs: bool = True
    """normalise observations with the data's mean and std (CORL)"""
    value_lr: float = 3e-4
    """Adam learning rate of V"""
    expectile: float = 0.7
    """τ of the expectile regression of V, in (0, 1)"""
    beta: float = 3.0
    """β, the inverse temperature of the advantage weights ``exp(β (Q − V))``"""
    max_weight: float = 100.0
    """w_max, the clip of the advantage weights"""
    deterministic_actor: bool = False
    """a deterministic actor (weighted regression) instead of the Gaussian"""
    actor_cosine_steps: int | None = None
    """anneal the actor's learning rate with a cosine schedule over this many gradient
    steps, the run's length (the paper's schedule; None: constant)"""

    def build(
        self,
        observation_space: gym.Space[Any],
        action_space: gym.Space[Any],
        *,
        device: str | torch.device = "cpu",
    ) -> IQL:
        """An :class:`IQL` of the actor, critics and a :class:`ValueFunction`."""
        _, a = box_dims(observation_space, action_space)
        d, encoder = self.network_input(observation_space)
        h = self.hidden_sizes
        policy: GaussianPolicy | DeterministicPolicy
        if self.deterministic_actor:
            policy = DeterministicPolicy(
                actor=DeterministicActor(d, a, h, encoder=encoder()),
                action_space=action_space,
                observation_space=observation_space,
                normalize_obs=self.normalize_obs,
            )
        else:
            policy = GaussianPolicy(
                actor=GaussianActor(
                    d, a, h, conditioned_std=False, tanh_mean=True, encoder=encoder()
                ),
                action_space=action_space,
                observation_space=observation_space,
                squash=False,
                normalize_obs=self.normalize_obs,
            )
        policy_optim = adam(self.actor_lr)
        if self.actor_cosine_steps is not None:
            policy_optim = policy_optim.with_lr_scheduler_factory(
                CosineLRSchedulerFactory(self.actor_cosine_steps)
            )
        algorithm: IQL = IQL(
            policy=policy,
            policy_optim=policy_optim,
            critics=CriticEnsemble(d, a, h, num_critics=self.num_critics, encoder=encoder()),
            critic_optim=adam(self.critic_lr),
            value=ValueFunction(d, h, encoder=encoder()),
            value_optim=adam(self.value_lr),
            expectile=self.expectile,
            beta=self.beta,
            max_weight=self.max_weight,
            tau=self.tau,
            gamma=self.gamma,
            n_step_return_horizon=self.n_step_return_horizon,
            max_grad_norm=self.max_grad_norm,
        )
        return self.place(algorithm, device)


@dataclass(kw_only=True)
class IQLTrainingStats(OfflineTrainingStats):
    """Statistics of one IQL step."""

    value_loss: float
    """``mean L₂^τ(min_j Q̂_j(s, a) − V(s))`` (before the V step)."""
    critic_loss: float
    """``Σ_j MSE(Q_j(s, a), y)``."""
    actor_loss: float
    """``−mean w · log π(a|s)`` (Gaussian) or ``mean w · ‖π(s) − a‖²`` (deterministic)."""
    advantage: float
    """Mean advantage ``min_j Q̂_j(s, a) − V(s)`` (updated V)."""
    weight: float
    """Mean clipped weight ``w = min(exp(β A), w_max)``."""
    clipped_weight: float
    """Fraction of the batch whose weight was clipped at ``w_max``."""
    bc: float
    """Mean ``log π(a|s)`` of the dataset actions (Gaussian) or ``‖π(s) − a‖²`` (deterministic)."""
    v_data: float
    """Mean ``V(s)`` (updated V)."""
    q_data: float
    """Mean ``Q(s, a)`` of the dataset actions (over members and batch, before the Q step)."""
    q_target: float
    """Mean TD target ``y = r + γ (1 − d) V(s')``."""


TIQLStats = TypeVar("TIQLStats", bound=IQLTrainingStats, default=IQLTrainingStats)


@dataclass(frozen=True, slots=True)
class IQLStep:
    """Tensors of one step, detached, for :meth:`IQL._extend_stats`.

    :ivar batch: the mini-batch.
    :ivar q_hat: ``(B,)`` ``min_j Q̂_j(s, a)`` of the target critics.
    :ivar v: ``(B,)`` ``V(s)`` after the V step.
    :ivar advantage: ``(B,)`` ``q_hat − v``.
    :ivar weight: ``(B,)`` the clipped weights.
    :ivar q_data: ``(E, B)`` Q-values of the dataset actions (before the Q step).
    :ivar target: ``(B,)`` TD targets.
    """

    batch: Transitions
    q_hat: torch.Tensor
    v: torch.Tensor
    advantage: torch.Tensor
    weight: torch.Tensor
    q_data: torch.Tensor
    target: torch.Tensor


class IQL(OfflineAlgorithmBase[GaussianPolicy | DeterministicPolicy, TIQLStats]):
    """IQL (Kostrikov et al. 2022); see the module docstring for the equations.

    Defaults are the paper's MuJoCo settings (Appendix B; the authors' and CORL's
    configuration): expectile 0.7, β = 3, weight clip 100, Adam 3e-4 for all networks,
    batch 256, τ = 0.005, two critics, 256×256 networks.

    :param policy: a :class:`GaussianPolicy` (``squash=False``, required; weighted maximum
        likelihood) or a :class:`DeterministicPolicy` (weighted regression).
    :param policy_optim: optimizer factory for the actor; no learning-rate schedule by default
        (the authors' cosine schedule: :class:`CosineLRSchedulerFactory`).
    :param critics: the critic ensemble ``Q_θ`` (E ≥ 1; the minimum over members is used,
        2 in the paper).
    :param critic_optim: optimizer factory for the critics.
    :param value: the state-value network ``V_ψ`` (:class:`ValueFunction`).
    :param value_optim: optimizer factory for ``V_ψ``.
    :param beta: β, the inverse temperature of the advantage weights (> 0; small → behaviour
        cloning, large → greedy on the advantage).

    The other settings default to :class:`IQLConfig`'s fields of the same names (documented
    there).
    """

    def __init__(
        self,
        *,
        policy: GaussianPolicy | DeterministicPolicy,
        policy_optim: OptimizerFactory,
        critics: CriticEnsemble,
        critic_optim: OptimizerFactory,
        value: ValueFunction,
        value_optim: OptimizerFactory,
        expectile: float = IQLConfig.expectile,
        beta: float = IQLConfig.beta,
        max_weight: float = IQLConfig.max_weight,
        tau: float = IQLConfig.tau,
        gamma: float = IQLConfig.gamma,
        n_step_return_horizon: int = IQLConfig.n_step_return_horizon,
        max_grad_norm: float | None = IQLConfig.max_grad_norm,
    ) -> None:
        super().__init__(policy=policy)
        if not 0.0 < expectile < 1.0:
            raise ValueError(f"IQL: expectile={expectile}; expected 0 < expectile < 1")
        if not beta > 0.0:
            raise ValueError(f"IQL: beta={beta}; expected > 0")
        if not max_weight > 0.0:
            raise ValueError(f"IQL: max_weight={max_weight}; expected > 0")
        if not 0.0 < tau <= 1.0:
            raise ValueError(f"IQL: tau={tau}; expected 0 < tau <= 1")
        if isinstance(policy, GaussianPolicy) and policy.squash:
            raise ValueError(
                "IQL: policy is a tanh-squashed GaussianPolicy (squash=True); expected "
                "GaussianPolicy(squash=False) — the paper's actor, a Gaussian with a "
                "tanh-bounded mean (GaussianActor(tanh_mean=True)) — or a DeterministicPolicy"
            )
        self.critics = critics
        self.critics_target = self._add_target(critics)
        self.value = value
        self.actor_optim = self._make_optimizer(policy.actor, policy_optim, max_grad_norm)
        self.critic_optim = self._make_optimizer(critics, critic_optim, max_grad_norm)
        self.value_optim = self._make_optimizer(value, value_optim, max_grad_norm)
        self.expectile = expectile
        self.beta = beta
        self.max_weight = max_weight
        self.tau = tau
        self.gamma = gamma
        self.n_step = n_step_return_horizon

    def _update_with_batch(self, batch: RolloutBatchProtocol | Transitions) -> TIQLStats:
        b = self._as_transitions(batch)
        policy = self.policy
        n = len(b)

        # 1. value: expectile regression on the target critics (Eq. 5)
        with torch.no_grad():
            q_hat = self.critics_target(b.obs, b.act).min(dim=0).values  # (B,)
        value_loss = expectile_loss(q_hat - self.value(b.obs), self.expectile).mean()
        self.value_optim.step(value_loss)

        # the updated V on s (advantage) and s' (TD target), one call
        with torch.no_grad():
            v_both = self.value(torch.cat([b.obs, b.obs_next], dim=0))
            v, v_next = v_both[:n], v_both[n:]
            adv = q_hat - v
            w = torch.exp(self.beta * adv).clamp(max=self.max_weight)
            target = b.rew + b.discount * v_next

        # 2. actor: advantage-weighted regression (Eq. 7)
        if isinstance(policy, GaussianPolicy):
            mean, log_std = policy.actor(b.obs)
            bc = gaussian_log_prob(mean, log_std, b.act, squash=policy.squash)  # (B,)
            actor_loss = -(w * bc).mean()
        else:
            bc = (policy.actor(b.obs) - b.act).pow(2).sum(dim=-1)  # (B,)
            actor_loss = (w * bc).mean()
        self.actor_optim.step(actor_loss)

        # 3. critic: TD regression towards r + γ V(s') (Eq. 6)
        q_data = self.critics(b.obs, b.act)  # (E, B)
        critic_loss = (q_data - target).pow(2).mean(dim=1).sum()
        self.critic_optim.step(critic_loss)

        # 4. targets
        self._update_targets(self.tau)

        stats = self._make_stats(
            value_loss=value_loss,
            critic_loss=critic_loss,
            actor_loss=actor_loss,
            advantage=adv.mean(),
            weight=w.mean(),
            clipped_weight=(w >= self.max_weight).float().mean(),
            bc=bc.mean(),
            v_data=v.mean(),
            q_data=q_data.mean(),
            q_target=target.mean(),
        )
        self._extend_stats(
            stats,
            IQLStep(
                batch=b,
                q_hat=q_hat,
                v=v,
                advantage=adv,
                weight=w,
                q_data=q_data.detach(),
                target=target,
            ),
        )
        return stats

    def _extend_stats(self, stats: TIQLStats, step: IQLStep) -> None:
        """Override to fill in extra fields of a stats subclass (see ``examples/extend_stats.py``)."""
