"""Discrete CRR: critic-regularised regression for discrete actions, with an optional CQL
regulariser on the critic.

References: Wang, Novikov, Żołna, Springenberg, Reed, Shahriari, Siegel, Merel, Gulcehre,
Heess & de Freitas (2020), "Critic Regularized Regression", NeurIPS, arXiv:2006.15134 —
Sec. 3 and Algorithm 1; the regulariser is CQL(H), Kumar et al. (2020), arXiv:2006.04779,
Eq. 4.

A network with two heads on one trunk gives the policy logits ``π(·|s)`` and ``Q(s, ·)``
(Tianshou's examples share the feature net between actor and critic the same way). One
gradient step, all losses from the same parameters and one backward pass:

1. **Critic** (policy evaluation of π, Sec. 3): ``y = R + γ^m (1 − d) Σ_a π'(a|s') Q'(s', a)``
   with the target network (actor and critic) ``π', Q'`` — the expectation over the
   discrete actions is exact; minimise ``½ E (Q(s, a) − y)²``. The paper's critic is
   distributional; this one is scalar (as Tianshou's discrete CRR).
2. **Advantage** (Sec. 3): ``Â(s, a) = Q(s, a) − Σ_a' π(a'|s) Q(s, a')`` (``advantage="mean"``,
   the paper's mean estimator with the exact expectation) or ``Q(s, a) − max_a' Q(s, a')``
   (``advantage="max"``). Â is a weight: no gradient flows through it.
3. **Actor** (Sec. 3, the filtered regression objective): minimise
   ``−E_{(s,a)~D}[ f(Â(s, a)) log π(a|s) ]`` with ``f = 1[Â > 0]`` (``"binary"``),
   ``f = min(exp(Â / β), ratio_upper_bound)`` (``"exp"``) or ``f = 1`` (``"all"``,
   behaviour cloning).
4. **CQL regulariser** (optional, ``min_q_weight > 0``): ``w · E_s[log Σ_a exp Q(s, a) −
   Q(s, a_D)]``.
5. The target network is copied every ``target_update_freq`` steps (0: no target network).

Differences to Tianshou 2.0.1's ``DiscreteCRR``: a time-limit truncation bootstraps (Tianshou
zeroes the target on every ``done``); no gradient through the ``exp`` weight; one trunk pass
for both heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from tianshou.algorithm.optim import OptimizerFactory
from tianshou.data.types import RolloutBatchProtocol
from typing_extensions import TypeVar

from tianshou_offline.algorithms.config import DiscreteTDConfig, adam, discrete_actions
from tianshou_offline.algorithms.continuous.crr import crr_weights
from tianshou_offline.algorithms.deferred import OfflineTrainingStats
from tianshou_offline.algorithms.discrete.base import DiscreteOfflineAlgorithm
from tianshou_offline.algorithms.discrete.dataset import DiscreteTransitions
from tianshou_offline.algorithms.discrete.nets import DualHeadNet
from tianshou_offline.algorithms.discrete.policies import DiscreteActorPolicy

if TYPE_CHECKING:
    import gymnasium as gym

__all__ = ["DiscreteCRR", "DiscreteCRRConfig", "DiscreteCRRStep", "DiscreteCRRTrainingStats"]


@dataclass(frozen=True, kw_only=True)
class DiscreteCRRConfig(DiscreteTDConfig):
    """Discrete CRR's settings (Wang et al. 2020; Tianshou's offline Atari example): one
    trunk with a policy head and a Q head, exponential weights clipped at 20, the CQL
    regulariser at w = 10, Adam 1e-4."""

    name: ClassVar[str] = "crr"

    policy_improvement_mode: Literal["exp", "binary", "all"] = "exp"
    """the advantage weight of the actor loss: ``exp(Â/β)``, ``1[Â > 0]`` or 1 (cloning)"""
    ratio_upper_bound: float = 20.0
    """the upper clip of ``exp(Â/β)``"""
    beta: float = 1.0
    """β, the temperature of ``exp(Â/β)``"""
    advantage: Literal["mean", "max"] = "mean"
    """the advantage's baseline: ``Q − E_π Q`` or ``Q − max Q``"""
    min_q_weight: float = 10.0
    """w of the CQL regulariser (0: off)"""

    def build(
        self,
        observation_space: gym.Space[Any],
        action_space: gym.Space[Any],
        *,
        device: str | torch.device = "cpu",
    ) -> DiscreteCRR:
        """A :class:`DiscreteCRR` of a :class:`DualHeadNet` (policy logits, Q-values)."""
        n = discrete_actions(action_space)
        policy = DiscreteActorPolicy(
            actor=DualHeadNet(self.trunk(observation_space), n, self.hidden_sizes),
            action_space=action_space,
            observation_space=observation_space,
            logits_index=0,
        )
        algorithm: DiscreteCRR = DiscreteCRR(
            policy=policy,
            optim=adam(self.lr),
            gamma=self.gamma,
            n_step_return_horizon=self.n_step_return_horizon,
            policy_improvement_mode=self.policy_improvement_mode,
            ratio_upper_bound=self.ratio_upper_bound,
            beta=self.beta,
            advantage=self.advantage,
            min_q_weight=self.min_q_weight,
            target_update_freq=self.target_update_freq,
            max_grad_norm=self.max_grad_norm,
        )
        return self.place(algorithm, device)


@dataclass(kw_only=True)
class DiscreteCRRTrainingStats(OfflineTrainingStats):
    """Statistics of one discrete CRR step."""

    loss: float
    """The minimised loss ``actor_loss + critic_loss + w · cql_loss``."""
    actor_loss: float
    """Weighted negative log-likelihood ``−E[f(Â) log π(a|s)]``."""
    critic_loss: float
    """``½ E (Q(s, a) − y)²``."""
    cql_loss: float
    """The conservative gap ``E[logsumexp_a Q(s, a) − Q(s, a_D)]`` (before the weight)."""
    advantage: float
    """Mean advantage ``Â(s, a)`` of the dataset actions."""
    weight: float
    """Mean regression weight ``f(Â)``."""
    q_data: float
    """Mean ``Q(s, a)`` of the dataset actions."""
    q_target: float
    """Mean TD target y."""
    entropy: float
    """Mean entropy of ``π(·|s)``."""


TDiscreteCRRStats = TypeVar(
    "TDiscreteCRRStats", bound=DiscreteCRRTrainingStats, default=DiscreteCRRTrainingStats
)


@dataclass(frozen=True, slots=True)
class DiscreteCRRStep:
    """Tensors of one step, detached, for :meth:`DiscreteCRR._extend_stats`.

    :ivar batch: the mini-batch.
    :ivar logits: ``(B, A)`` policy logits at ``s``.
    :ivar q: ``(B, A)`` Q-values at ``s``.
    :ivar advantage: ``(B,)`` Â of the dataset actions.
    :ivar weight: ``(B,)`` the regression weights f(Â).
    :ivar target: ``(B,)`` TD targets.
    """

    batch: DiscreteTransitions
    logits: torch.Tensor
    q: torch.Tensor
    advantage: torch.Tensor
    weight: torch.Tensor
    target: torch.Tensor


class DiscreteCRR(DiscreteOfflineAlgorithm[DiscreteActorPolicy, TDiscreteCRRStats]):
    """Discrete CRR (Wang et al. 2020) with an optional CQL regulariser; see the module
    docstring for the losses.

    :param policy: a :class:`DiscreteActorPolicy` whose actor is a
        :class:`~tianshou_offline.algorithms.discrete.nets.DualHeadNet` with the policy
        logits as first head and Q-values as second head (``logits_index=0``).
    :param optim: optimizer factory for the network (actor and critic heads and the trunk).
    :param target_update_freq: copy the network into the target every this many steps;
        0 uses the online network (without gradient) for the target.

    The other settings default to :class:`DiscreteCRRConfig`'s fields of the same names
    (documented there).
    """

    def __init__(
        self,
        *,
        policy: DiscreteActorPolicy,
        optim: OptimizerFactory,
        gamma: float = DiscreteCRRConfig.gamma,
        n_step_return_horizon: int = DiscreteCRRConfig.n_step_return_horizon,
        policy_improvement_mode: Literal[
            "exp", "binary", "all"
        ] = DiscreteCRRConfig.policy_improvement_mode,
        ratio_upper_bound: float = DiscreteCRRConfig.ratio_upper_bound,
        beta: float = DiscreteCRRConfig.beta,
        advantage: Literal["mean", "max"] = DiscreteCRRConfig.advantage,
        min_q_weight: float = DiscreteCRRConfig.min_q_weight,
        target_update_freq: int = DiscreteCRRConfig.target_update_freq,
        max_grad_norm: float | None = DiscreteCRRConfig.max_grad_norm,
    ) -> None:
        super().__init__(policy=policy)
        net = policy.actor
        if not isinstance(net, DualHeadNet) or policy.logits_index != 0:
            raise TypeError(
                "DiscreteCRR needs a DiscreteActorPolicy over a DualHeadNet (policy logits, "
                "Q-values) with logits_index=0"
            )
        if policy_improvement_mode not in ("exp", "binary", "all"):
            raise ValueError(
                f"policy_improvement_mode={policy_improvement_mode!r}: expected 'exp', 'binary' or 'all'"
            )
        if advantage not in ("mean", "max"):
            raise ValueError(f"advantage={advantage!r}: expected 'mean' or 'max'")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma={gamma}: expected a value in [0, 1]")
        if target_update_freq < 0:
            raise ValueError(f"target_update_freq={target_update_freq}: expected >= 0")
        if beta <= 0:
            raise ValueError(f"beta={beta}: expected > 0")
        self.net = net
        self.net_target = self._add_target(net) if target_update_freq > 0 else None
        self.optim = self._make_optimizer(net, optim, max_grad_norm)
        self.gamma = gamma
        self.n_step = n_step_return_horizon
        self.policy_improvement_mode = policy_improvement_mode
        self.ratio_upper_bound = float(ratio_upper_bound)
        self.beta = float(beta)
        self.advantage = advantage
        self.min_q_weight = float(min_q_weight)
        self.target_update_freq = int(target_update_freq)

    def _update_with_batch(
        self, batch: RolloutBatchProtocol | DiscreteTransitions
    ) -> TDiscreteCRRStats:
        b = self._as_transitions(batch)
        target_net = self._target_for_step(self.net, self.net_target, self.target_update_freq)
        rows = torch.arange(len(b), device=b.act.device)

        # 1. critic target: expected Q' under the target policy at s'
        with torch.no_grad():
            logits_next, q_next = target_net(b.obs_next)
            v_next = (torch.softmax(logits_next, dim=1) * q_next).sum(dim=1)
            target = b.rew + b.discount * v_next

        logits, q = self.net(b.obs)
        q_data = q[rows, b.act]
        critic_loss = 0.5 * F.mse_loss(q_data, target)

        # 2. advantage of the dataset action (a weight: no gradient)
        log_probs = torch.log_softmax(logits, dim=1)
        with torch.no_grad():
            probs = log_probs.exp()
            q_d = q.detach()
            baseline = (
                (probs * q_d).sum(dim=1) if self.advantage == "mean" else q_d.max(dim=1).values
            )
            adv = q_d[rows, b.act] - baseline
            weight = crr_weights(
                adv, self.policy_improvement_mode, self.beta, self.ratio_upper_bound
            )

        # 3. actor: weighted log-likelihood of the dataset actions
        actor_loss = -(weight * log_probs[rows, b.act]).mean()

        # 4. optional CQL(H) regulariser on the critic head
        cql_loss = (torch.logsumexp(q, dim=1) - q_data).mean()
        loss = actor_loss + critic_loss
        if self.min_q_weight > 0:
            loss = loss + self.min_q_weight * cql_loss
        self.optim.step(loss)

        entropy = -(probs * log_probs.detach()).sum(dim=1).mean()
        stats = self._make_stats(
            loss=loss,
            actor_loss=actor_loss,
            critic_loss=critic_loss,
            cql_loss=cql_loss,
            advantage=adv.mean(),
            weight=weight.mean(),
            q_data=q_data.mean(),
            q_target=target.mean(),
            entropy=entropy,
        )
        self._extend_stats(
            stats,
            DiscreteCRRStep(
                batch=b,
                logits=logits.detach(),
                q=q_d,
                advantage=adv,
                weight=weight,
                target=target,
            ),
        )
        return stats

    def _extend_stats(self, stats: TDiscreteCRRStats, step: DiscreteCRRStep) -> None:
        """Override to fill in extra fields of a stats subclass (see ``examples/extend_stats.py``)."""
