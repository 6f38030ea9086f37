"""TD3+BC: TD3 with a behaviour-cloning term and normalised observations.

Reference: Fujimoto & Gu (2021), "A Minimalist Approach to Offline Reinforcement Learning",
NeurIPS, arXiv:2106.06860; TD3 from Fujimoto, van Hoof & Meger (2018), arXiv:1802.09477.

The update, in the order of the paper (Sec. 5, on top of TD3's Algorithm 1):

1. **Critic** — TD3's clipped double Q-learning (Fujimoto et al. 2018, Sec. 4.2, Eq. 10) with
   target-policy smoothing (Sec. 5.3)::

       ã' = clip(π'(s') + clip(ε, −c, c), −1, 1),   ε ~ N(0, σ²)
       y  = r + γ (1 − d) min_{j=1,2} Q'_j(s', ã')
       L_Q = Σ_j E_{(s,a,r,s')~D} (Q_j(s, a) − y)²

   ``d`` is *termination* only: a time-limit truncation still bootstraps. With n-step
   returns ``r`` is the discounted n-step sum and ``γ`` becomes ``γ^n``.
2. **Actor**, every ``update_actor_freq`` steps (the steps whose 0-based count is a multiple
   of it: the first, third, … for 2 — as Tianshou's TD3; the authors' code counts from 1 and
   starts with the second step) — the TD3+BC objective (Fujimoto & Gu 2021,
   Sec. 5, Eq. 3) with the normaliser λ (Eq. 4)::

       π = argmax_π E_{(s,a)~D} [ λ Q_1(s, π(s)) − (π(s) − a)² ],   λ = α / ((1/N) Σ_i |Q_1(s_i, ·)|)

   λ is not differentiated; as in the authors' code it is evaluated at the policy's actions
   and the squared error is averaged over action dimensions.
3. **Targets**: Polyak averaging of critics and actor on actor steps.
4. **State normalisation** (Sec. 5, Eq. 5): ``s ← (s − μ) / (σ + 10⁻³)`` with the dataset's
   mean and standard deviation — enable it with ``DeterministicPolicy(normalize_obs=True)``;
   the statistics live in the policy (and its checkpoints), so evaluation in the raw
   environment needs no wrapper.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from tianshou.algorithm.optim import OptimizerFactory
from tianshou.data.types import RolloutBatchProtocol
from typing_extensions import TypeVar

from tianshou_offline.algorithms.config import ContinuousTDConfig, adam, box_dims
from tianshou_offline.algorithms.continuous.base import OfflineAlgorithmBase
from tianshou_offline.algorithms.continuous.dataset import Transitions
from tianshou_offline.algorithms.continuous.nets import CriticEnsemble, DeterministicActor
from tianshou_offline.algorithms.continuous.policies import DeterministicPolicy
from tianshou_offline.algorithms.core import TStats
from tianshou_offline.algorithms.deferred import OfflineTrainingStats

if TYPE_CHECKING:
    import gymnasium as gym


@dataclass(frozen=True, kw_only=True)
class TD3Config(ContinuousTDConfig):
    """TD3's target-policy smoothing and delayed actor (Fujimoto et al. 2018, Sec. 5), the
    settings TD3+BC and ReBRAC share."""

    policy_noise: float = 0.2
    """σ of the target-policy smoothing noise (in ``[-1, 1]`` action units)"""
    noise_clip: float = 0.5
    """c, the clip of that noise"""
    update_actor_freq: int = 2
    """the actor and the targets are updated every this many gradient steps"""


@dataclass(frozen=True, kw_only=True)
class TD3BCConfig(TD3Config):
    """TD3+BC's hyperparameters (Fujimoto & Gu 2021, Appendix C): 256 × 256 MLPs, Adam 3e-4,
    normalised observations, α = 2.5."""

    name: ClassVar[str] = "td3bc"
    conv_encoder: ClassVar[bool] = True

    normalize_obs: bool = True
    """normalise observations with the data's mean and std (the paper's Eq. 5)"""
    alpha: float = 2.5
    """α of the Q normalisation λ = α / mean|Q|"""

    def build(
        self,
        observation_space: gym.Space[Any],
        action_space: gym.Space[Any],
        *,
        device: str | torch.device = "cpu",
    ) -> TD3BC:
        """A :class:`TD3BC` with a :class:`DeterministicActor` and a :class:`CriticEnsemble`."""
        _, a = box_dims(observation_space, action_space)
        d, encoder = self.network_input(observation_space)
        policy = DeterministicPolicy(
            actor=DeterministicActor(d, a, self.hidden_sizes, encoder=encoder()),
            action_space=action_space,
            observation_space=observation_space,
            normalize_obs=self.normalize_obs,
        )
        algorithm: TD3BC = TD3BC(
            policy=policy,
            policy_optim=adam(self.actor_lr),
            critics=CriticEnsemble(
                d, a, self.hidden_sizes, num_critics=self.num_critics, encoder=encoder()
            ),
            critic_optim=adam(self.critic_lr),
            tau=self.tau,
            gamma=self.gamma,
            policy_noise=self.policy_noise,
            noise_clip=self.noise_clip,
            update_actor_freq=self.update_actor_freq,
            alpha=self.alpha,
            n_step_return_horizon=self.n_step_return_horizon,
            max_grad_norm=self.max_grad_norm,
        )
        return self.place(algorithm, device)


@dataclass(kw_only=True)
class TD3BCTrainingStats(OfflineTrainingStats):
    """Statistics of one TD3+BC step (actor fields hold the latest actor update's values)."""

    critic_loss: float
    """``Σ_j MSE(Q_j(s, a), y)`` over the ensemble."""
    actor_loss: float
    """``−λ mean Q_1(s, π(s)) + MSE(π(s), a)``."""
    bc_loss: float
    """``MSE(π(s), a)``."""
    lmbda: float
    """λ = α / mean |Q_1(s, π(s))|."""
    q_data: float
    """Mean ``Q(s, a)`` of the dataset actions (over members and batch)."""
    q_target: float
    """Mean TD target ``y``."""
    q_policy: float
    """Mean ``Q_1(s, π(s))``."""


TTD3BCStats = TypeVar("TTD3BCStats", bound=TD3BCTrainingStats, default=TD3BCTrainingStats)


@dataclass(frozen=True, slots=True)
class TD3BCStep:
    """Tensors of one step, detached, for :meth:`TD3BC._extend_stats`.

    :ivar batch: the mini-batch.
    :ivar q_data: ``(E, B)`` Q-values of the dataset actions.
    :ivar target: ``(B,)`` TD targets.
    :ivar act_policy: ``(B, A)`` π(s) on actor steps, else None.
    :ivar q_policy: ``(B,)`` Q_1(s, π(s)) on actor steps, else None.
    """

    batch: Transitions
    q_data: torch.Tensor
    target: torch.Tensor
    act_policy: torch.Tensor | None
    q_policy: torch.Tensor | None


@dataclass(frozen=True, slots=True)
class TD3Tensors:
    """Tensors of one step of :class:`TD3Base`, for the variant's :meth:`TD3Base._td3_stats`.

    :ivar batch: the mini-batch.
    :ivar critic_loss: the critics' loss (scalar).
    :ivar q_data: ``(E, B)`` Q-values of the dataset actions.
    :ivar target: ``(B,)`` TD targets (no gradient).
    :ivar penalty: ``(B,)`` the critic penalty the target subtracted, or None.
    :ivar act_policy: ``(B, A)`` π(s) on actor steps, else None.
    :ivar q_policy: ``(B,)`` the actor's Q of π(s) on actor steps, else None.
    :ivar last_actor: ``(4,)`` the latest actor step's loss, BC term, λ and mean Q.
    """

    batch: Transitions
    critic_loss: torch.Tensor
    q_data: torch.Tensor
    target: torch.Tensor
    penalty: torch.Tensor | None
    act_policy: torch.Tensor | None
    q_policy: torch.Tensor | None
    last_actor: torch.Tensor


def _detached(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach()


class TD3Base(OfflineAlgorithmBase[DeterministicPolicy, TStats], ABC):
    """What TD3+BC and ReBRAC share of TD3 (Fujimoto et al. 2018): a deterministic actor and
    a critic ensemble with target copies, target-policy smoothing (Sec. 5.3) and the delayed
    actor (Sec. 5.2), whose latest statistics are reported on the critic-only steps in
    between and kept in the saved state.

    :param policy: a :class:`DeterministicPolicy`.
    :param policy_optim: optimizer factory for the actor.
    :param critics: the critic ensemble (at least 2 members: clipped double Q).
    :param critic_optim: optimizer factory for the critics.
    :param tau: Polyak factor of the target networks.
    :param gamma: discount factor.
    :param policy_noise: σ of the target-policy smoothing noise (``[-1, 1]`` action units).
    :param noise_clip: c, the clip of that noise.
    :param update_actor_freq: the actor and the targets are updated every this many steps.
    :param n_step_return_horizon: n of the n-step TD target.
    :param max_grad_norm: clip gradient norms (None: no clipping).
    """

    def __init__(
        self,
        *,
        policy: DeterministicPolicy,
        policy_optim: OptimizerFactory,
        critics: CriticEnsemble,
        critic_optim: OptimizerFactory,
        tau: float,
        gamma: float,
        policy_noise: float,
        noise_clip: float,
        update_actor_freq: int,
        n_step_return_horizon: int,
        max_grad_norm: float | None,
    ) -> None:
        super().__init__(policy=policy)
        name = type(self).__name__
        if critics.num_critics < 2:
            raise ValueError(
                f"{name}: critics has {critics.num_critics} member(s); expected a "
                "CriticEnsemble with at least 2"
            )
        if update_actor_freq < 1:
            raise ValueError(f"{name}: update_actor_freq={update_actor_freq}; expected >= 1")
        self.critics = critics
        self.critics_target = self._add_target(critics)
        self.actor_target = self._add_target(policy.actor)
        self.actor_optim = self._make_optimizer(policy.actor, policy_optim, max_grad_norm)
        self.critic_optim = self._make_optimizer(critics, critic_optim, max_grad_norm)
        self.tau = tau
        self.gamma = gamma
        self.policy_noise = policy_noise
        self.noise_clip = noise_clip
        self.update_actor_freq = update_actor_freq
        self.n_step = n_step_return_horizon
        # the latest actor step's four statistics, on the device (a buffer: it follows .to())
        self.register_buffer("_last_actor", torch.zeros(4), persistent=False)

    def smoothed_target_action(self, obs_next: torch.Tensor) -> torch.Tensor:
        """``ã' = clip(π'(s') + clip(ε, −c, c), −1, 1)``, ε ~ N(0, σ²): the target actor's
        action with clipped Gaussian noise (TD3's target-policy smoothing), ``(B, A)``."""
        act_next: torch.Tensor = self.actor_target(obs_next)
        noise = (torch.randn_like(act_next) * self.policy_noise).clamp(
            -self.noise_clip, self.noise_clip
        )
        return (act_next + noise).clamp(-1.0, 1.0)

    def actor_step_due(self) -> bool:
        """Whether this step updates the actor and the targets: the steps whose 0-based count
        is a multiple of ``update_actor_freq`` (as Tianshou's TD3)."""
        return self.num_updates % self.update_actor_freq == 0

    _last_actor: torch.Tensor

    def _keep_last_actor(self, actor_values: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The four actor statistics this step reports: ``actor_values`` on an actor step
        (kept on the device for the critic-only steps that follow), else the latest kept;
        ``(4,)``, read it before the next actor step."""
        if actor_values:
            self._last_actor.copy_(torch.stack([v.detach().reshape(()) for v in actor_values]))
        return self._last_actor

    def _update_with_batch(self, batch: RolloutBatchProtocol | Transitions) -> TStats:
        """TD3's step (see the module docstring); the variant supplies the TD target
        (:meth:`_td_target`), the actor's objective (:meth:`_actor_objective`) and the
        statistics (:meth:`_td3_stats`)."""
        b = self._as_transitions(batch)

        # 1. critic: clipped double Q-learning with target-policy smoothing
        with torch.no_grad():
            act_next = self.smoothed_target_action(b.obs_next)
            q_next = self.critics_target(b.obs_next, act_next).min(dim=0).values  # (B,)
            target, penalty = self._td_target(b, act_next, q_next)
        q_data = self.critics(b.obs, b.act)  # (E, B)
        critic_loss = (q_data - target).pow(2).mean(dim=1).sum()
        self.critic_optim.step(critic_loss)

        # 2. actor (delayed): the variant's objective
        act_pi: torch.Tensor | None = None
        q_pi: torch.Tensor | None = None
        actor_values: tuple[torch.Tensor, ...] = ()
        if self.actor_step_due():
            act_pi = self.policy.actor(b.obs)
            actor_loss, q_pi, bc, lmbda = self._actor_objective(b, act_pi)
            self.actor_optim.step(actor_loss)
            # 3. targets
            self._update_targets(self.tau)
            actor_values = (actor_loss, bc, lmbda, q_pi.mean())

        return self._td3_stats(
            TD3Tensors(
                batch=b,
                critic_loss=critic_loss,
                q_data=q_data,
                target=target,
                penalty=penalty,
                act_policy=act_pi,
                q_policy=q_pi,
                last_actor=self._keep_last_actor(actor_values),
            )
        )

    @abstractmethod
    def _td_target(
        self, b: Transitions, act_next: torch.Tensor, q_next: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The TD target ``y`` ``(B,)`` from the smoothed target action ``ã'`` ``(B, A)`` and
        ``min_j Q'_j(s', ã')`` ``(B,)`` (no gradient), and the per-row critic penalty
        ``(B,)`` it subtracted (None: none)."""

    @abstractmethod
    def _actor_objective(
        self, b: Transitions, act_pi: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The actor's loss at π(s) = ``act_pi`` ``(B, A)``, the Q of π(s) ``(B,)`` it
        maximises, its behaviour-cloning term and λ (scalars, reported)."""

    @abstractmethod
    def _td3_stats(self, step: TD3Tensors) -> TStats:
        """This step's statistics (and the ``_extend_stats`` hook) from its tensors."""

    def get_extra_state(self) -> dict[str, Any]:
        """The core's saved state and the latest actor step's statistics (reported on the
        critic-only steps in between, also after a resume)."""
        return {**super().get_extra_state(), "last_actor": self._last_actor.tolist()}

    def set_extra_state(self, state: Any) -> None:
        super().set_extra_state(state)
        last = state.get("last_actor")
        if last is not None:
            self._last_actor.copy_(torch.tensor([float(v) for v in last]))


class TD3BC(TD3Base[TTD3BCStats]):
    """TD3+BC (Fujimoto & Gu 2021); see the module docstring for the equations.

    Every setting defaults to :class:`TD3BCConfig`'s field of the same name (documented
    there); :meth:`TD3BCConfig.build` makes the networks and optimizers as well.

    :param policy: a :class:`DeterministicPolicy` (``normalize_obs=True`` as in the paper).
    :param policy_optim: optimizer factory for the actor (paper: Adam, lr 3e-4).
    :param critics: the critic ensemble (2 members for clipped double Q).
    :param critic_optim: optimizer factory for the critics (paper: Adam, lr 3e-4).
    """

    def __init__(
        self,
        *,
        policy: DeterministicPolicy,
        policy_optim: OptimizerFactory,
        critics: CriticEnsemble,
        critic_optim: OptimizerFactory,
        tau: float = TD3BCConfig.tau,
        gamma: float = TD3BCConfig.gamma,
        policy_noise: float = TD3BCConfig.policy_noise,
        noise_clip: float = TD3BCConfig.noise_clip,
        update_actor_freq: int = TD3BCConfig.update_actor_freq,
        alpha: float = TD3BCConfig.alpha,
        n_step_return_horizon: int = TD3BCConfig.n_step_return_horizon,
        max_grad_norm: float | None = TD3BCConfig.max_grad_norm,
    ) -> None:
        super().__init__(
            policy=policy,
            policy_optim=policy_optim,
            critics=critics,
            critic_optim=critic_optim,
            tau=tau,
            gamma=gamma,
            policy_noise=policy_noise,
            noise_clip=noise_clip,
            update_actor_freq=update_actor_freq,
            n_step_return_horizon=n_step_return_horizon,
            max_grad_norm=max_grad_norm,
        )
        self.alpha = alpha

    def _td_target(
        self, b: Transitions, act_next: torch.Tensor, q_next: torch.Tensor
    ) -> tuple[torch.Tensor, None]:
        """``y = r + γ (1 − d) min_j Q'_j(s', ã')``."""
        return b.rew + b.discount * q_next, None

    def _actor_objective(
        self, b: Transitions, act_pi: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``−λ mean Q_1(s, π(s)) + MSE(π(s), a)``, λ = α / mean|Q_1(s, π(s))|."""
        q_pi = self.critics(b.obs, act_pi, member=0, detach_params=True)  # (B,)
        lmbda = self.alpha / q_pi.abs().mean().detach()
        bc_loss = F.mse_loss(act_pi, b.act)
        return -lmbda * q_pi.mean() + bc_loss, q_pi, bc_loss, lmbda

    def _td3_stats(self, step: TD3Tensors) -> TTD3BCStats:
        last = step.last_actor
        stats = self._make_stats(
            critic_loss=step.critic_loss,
            actor_loss=last[0],
            bc_loss=last[1],
            lmbda=last[2],
            q_data=step.q_data.mean(),
            q_target=step.target.mean(),
            q_policy=last[3],
        )
        self._extend_stats(
            stats,
            TD3BCStep(
                batch=step.batch,
                q_data=step.q_data.detach(),
                target=step.target,
                act_policy=_detached(step.act_policy),
                q_policy=_detached(step.q_policy),
            ),
        )
        return stats

    def _extend_stats(self, stats: TTD3BCStats, step: TD3BCStep) -> None:
        """Override to fill in extra fields of a stats subclass (see ``examples/extend_stats.py``)."""
