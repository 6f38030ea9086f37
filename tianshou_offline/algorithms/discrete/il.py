"""Imitation learning (behaviour cloning) for discrete actions.

Reference: Pomerleau (1991), "Efficient Training of Artificial Neural Networks for
Autonomous Navigation"; the standard offline-RL baseline (e.g. Fujimoto et al. 2019,
arXiv:1910.01708, Sec. 5; Agarwal et al. 2020, arXiv:1907.04543).

Loss (maximum likelihood of the dataset actions under a categorical policy with logits
``f_θ(s)``): ``L(θ) = −E_{(s,a)~D} log softmax(f_θ(s))_a`` — the cross-entropy, as
Tianshou's ``OfflineImitationLearning`` for discrete actions. The policy acts with
``argmax_a f_θ(s)_a`` (:class:`~tianshou_offline.algorithms.discrete.policies.DiscreteActorPolicy`
with ``deterministic_eval=True``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from tianshou.algorithm.optim import OptimizerFactory
from tianshou.data.types import RolloutBatchProtocol
from typing_extensions import TypeVar

from tianshou_offline.algorithms.config import DiscreteConfig, adam, discrete_actions
from tianshou_offline.algorithms.deferred import OfflineTrainingStats
from tianshou_offline.algorithms.discrete.base import DiscreteOfflineAlgorithm
from tianshou_offline.algorithms.discrete.dataset import DiscreteTransitions
from tianshou_offline.algorithms.discrete.nets import QNet
from tianshou_offline.algorithms.discrete.policies import DiscreteActorPolicy

if TYPE_CHECKING:
    import gymnasium as gym

__all__ = [
    "DiscreteImitationLearning",
    "DiscreteImitationStep",
    "DiscreteImitationTrainingStats",
]


@dataclass(frozen=True, kw_only=True)
class DiscreteImitationConfig(DiscreteConfig):
    """Discrete behaviour cloning's settings (Tianshou's offline Atari example): a trunk and
    a head of action logits, Adam 1e-4."""

    name: ClassVar[str] = "il"

    def build(
        self,
        observation_space: gym.Space[Any],
        action_space: gym.Space[Any],
        *,
        device: str | torch.device = "cpu",
    ) -> DiscreteImitationLearning:
        """A :class:`DiscreteImitationLearning` of a :class:`QNet` of logits."""
        n = discrete_actions(action_space)
        policy = DiscreteActorPolicy(
            actor=QNet(self.trunk(observation_space), n, self.hidden_sizes),
            action_space=action_space,
            observation_space=observation_space,
        )
        algorithm: DiscreteImitationLearning = DiscreteImitationLearning(
            policy=policy, optim=adam(self.lr), max_grad_norm=self.max_grad_norm
        )
        return self.place(algorithm, device)


@dataclass(kw_only=True)
class DiscreteImitationTrainingStats(OfflineTrainingStats):
    """Statistics of one discrete behaviour-cloning step."""

    loss: float
    """Cross-entropy of the dataset actions."""
    accuracy: float
    """Fraction of dataset actions that are the policy's most likely action."""
    entropy: float
    """Mean entropy of the policy's action distribution."""


TDiscreteImitationStats = TypeVar(
    "TDiscreteImitationStats",
    bound=DiscreteImitationTrainingStats,
    default=DiscreteImitationTrainingStats,
)


@dataclass(frozen=True, slots=True)
class DiscreteImitationStep:
    """Tensors of one step, detached, for :meth:`DiscreteImitationLearning._extend_stats`.

    :ivar batch: the mini-batch.
    :ivar logits: ``(B, A)`` the policy logits.
    """

    batch: DiscreteTransitions
    logits: torch.Tensor


class DiscreteImitationLearning(
    DiscreteOfflineAlgorithm[DiscreteActorPolicy, TDiscreteImitationStats]
):
    """Behaviour cloning with a categorical policy (see the module docstring).

    :param policy: a :class:`DiscreteActorPolicy` whose actor outputs logits ``(B, A)``.
    :param optim: optimizer factory for the actor (Tianshou's Atari example: Adam, lr 1e-4).
    :param max_grad_norm: clip the gradient norm (None: no clipping).
    """

    def __init__(
        self,
        *,
        policy: DiscreteActorPolicy,
        optim: OptimizerFactory,
        max_grad_norm: float | None = DiscreteImitationConfig.max_grad_norm,
    ) -> None:
        super().__init__(policy=policy)
        self.optim = self._make_optimizer(policy.actor, optim, max_grad_norm)

    def _update_with_batch(
        self, batch: RolloutBatchProtocol | DiscreteTransitions
    ) -> TDiscreteImitationStats:
        b = self._as_transitions(batch)
        logits = self.policy.logits(b.obs)
        log_probs = torch.log_softmax(logits, dim=1)
        loss = F.nll_loss(log_probs, b.act)  # the cross-entropy
        self.optim.step(loss)

        logits_d, log_probs_d = logits.detach(), log_probs.detach()
        stats = self._make_stats(
            loss=loss,
            accuracy=(logits_d.argmax(dim=1) == b.act).float().mean(),
            entropy=-(log_probs_d.exp() * log_probs_d).sum(dim=1).mean(),
        )
        self._extend_stats(stats, DiscreteImitationStep(batch=b, logits=logits_d))
        return stats

    def _extend_stats(self, stats: TDiscreteImitationStats, step: DiscreteImitationStep) -> None:
        """Override to fill in extra fields of a stats subclass (see ``examples/extend_stats.py``)."""
