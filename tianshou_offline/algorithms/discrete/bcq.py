"""Discrete BCQ: batch-constrained deep Q-learning for discrete actions.

Reference: Fujimoto, Conti, Ghavamzadeh & Pineau (2019), "Benchmarking Batch Deep
Reinforcement Learning Algorithms", arXiv:1910.01708 — Sec. 4 ("Discrete BCQ") and its
Algorithm 1.

A network with two heads on one trunk gives ``Q_θ(s, ·)`` and the logits of a generative
model ``G_ω(·|s)`` of the behaviour policy (a classifier, trained by maximum likelihood).
Actions whose relative probability ``G_ω(a|s) / max_â G_ω(â|s)`` is at most the threshold
τ are excluded from the argmax, so Q-learning only bootstraps from actions the data
supports (τ = 0: DQN; τ → 1: behaviour cloning).

One gradient step (Algorithm 1):

1. **Target** (Algorithm 1, the argmax over the allowed actions): with
   ``A(s') = {a : G_ω(a|s') / max_â G_ω(â|s') > τ}``,
   ``a' = argmax_{a ∈ A(s')} Q_θ(s', a)`` (online network) and
   ``y = R + γ^m (1 − d) Q_θ'(s', a')`` (target network ``θ'``; ``R`` the n-step sum).
2. **Q loss** (Sec. 4): the Huber loss ``ℓ_κ(y − Q_θ(s, a))`` on the dataset action.
3. **Imitation loss**: ``−log G_ω(a|s)`` (cross-entropy on the logits), plus
   ``λ · mean(logits²)`` — the logit penalty of the authors' implementation
   (``imitation_logits_penalty``).
4. Minimise the sum; the target network is copied every ``target_update_freq`` steps.

Acting (:class:`DiscreteBCQPolicy`): ``argmax_{a ∈ A(s)} Q_θ(s, a)``.

Speed: the trunk is evaluated once per observation batch for both heads (Tianshou's
implementation evaluates the shared feature net once per head, and again for the next
state's action selection), i.e. three trunk passes per step (``s`` with gradients, ``s'``
online and ``s'`` target) instead of five.
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
    DiscreteTDConfig,
    adam,
    discrete_actions,
    param_default,
)
from tianshou_offline.algorithms.deferred import OfflineTrainingStats
from tianshou_offline.algorithms.discrete.base import DiscreteOfflineAlgorithm
from tianshou_offline.algorithms.discrete.dataset import DiscreteTransitions
from tianshou_offline.algorithms.discrete.nets import DualHeadNet
from tianshou_offline.algorithms.discrete.policies import (
    DiscreteBCQPolicy,
    allowed_actions,
    constrained_argmax,
)

if TYPE_CHECKING:
    import gymnasium as gym

__all__ = [
    "DiscreteBCQ",
    "DiscreteBCQStep",
    "DiscreteBCQTrainingStats",
]


@dataclass(frozen=True, kw_only=True)
class DiscreteBCQConfig(DiscreteTDConfig):
    """Discrete BCQ's settings (Fujimoto et al. 2019b; Tianshou's offline Atari example):
    one trunk with a Q head and an imitation head, Adam 6.25e-5, τ = 0.3, target copies every
    8000 steps."""

    name: ClassVar[str] = "bcq"
    renamed: ClassVar[Mapping[str, str | tuple[str, ...]]] = {
        **DiscreteTDConfig.renamed,
        "threshold": "unlikely_action_threshold",
    }

    lr: float = 6.25e-5
    """Adam learning rate"""
    target_update_freq: int = 8000
    """gradient steps between target-network copies (> 0)"""
    unlikely_action_threshold: float = param_default(DiscreteBCQPolicy, "unlikely_action_threshold")
    """τ: actions whose imitation probability, relative to the most likely one, is below
    this are never chosen"""
    imitation_logits_penalty: float = 1e-2
    """λ, the weight of the L2 penalty ``mean(logits²)`` on the imitation logits"""
    huber_delta: float = 1.0
    """κ of the Huber Q loss (1: ``smooth_l1_loss``)"""

    def build(
        self,
        observation_space: gym.Space[Any],
        action_space: gym.Space[Any],
        *,
        device: str | torch.device = "cpu",
    ) -> DiscreteBCQ:
        """A :class:`DiscreteBCQ` of a :class:`DualHeadNet` (Q-values, imitation logits)."""
        n = discrete_actions(action_space)
        policy = DiscreteBCQPolicy(
            model=DualHeadNet(self.trunk(observation_space), n, self.hidden_sizes),
            action_space=action_space,
            observation_space=observation_space,
            unlikely_action_threshold=self.unlikely_action_threshold,
        )
        algorithm: DiscreteBCQ = DiscreteBCQ(
            policy=policy,
            optim=adam(self.lr),
            gamma=self.gamma,
            n_step_return_horizon=self.n_step_return_horizon,
            target_update_freq=self.target_update_freq,
            imitation_logits_penalty=self.imitation_logits_penalty,
            huber_delta=self.huber_delta,
            max_grad_norm=self.max_grad_norm,
        )
        return self.place(algorithm, device)


@dataclass(kw_only=True)
class DiscreteBCQTrainingStats(OfflineTrainingStats):
    """Statistics of one discrete BCQ step."""

    loss: float
    """The minimised loss ``q_loss + i_loss + λ · reg_loss``."""
    q_loss: float
    """Huber loss of ``Q(s, a)`` against the TD target."""
    i_loss: float
    """Imitation (cross-entropy) loss of ``G_ω``."""
    reg_loss: float
    """Mean squared imitation logit."""
    q_data: float
    """Mean ``Q(s, a)`` of the dataset actions."""
    q_target: float
    """Mean TD target y."""
    allowed_fraction: float
    """Mean fraction of actions allowed at ``s'`` by the threshold."""
    imitation_accuracy: float
    """Fraction of dataset actions that are ``G_ω``'s most likely action."""


TDiscreteBCQStats = TypeVar(
    "TDiscreteBCQStats", bound=DiscreteBCQTrainingStats, default=DiscreteBCQTrainingStats
)


@dataclass(frozen=True, slots=True)
class DiscreteBCQStep:
    """Tensors of one step, detached, for :meth:`DiscreteBCQ._extend_stats`.

    :ivar batch: the mini-batch.
    :ivar q: ``(B, A)`` Q-values at ``s``.
    :ivar logits: ``(B, A)`` imitation logits at ``s``.
    :ivar target: ``(B,)`` TD targets.
    :ivar allowed_next: ``(B, A)`` bool, the allowed actions at ``s'``.
    """

    batch: DiscreteTransitions
    q: torch.Tensor
    logits: torch.Tensor
    target: torch.Tensor
    allowed_next: torch.Tensor


class DiscreteBCQ(DiscreteOfflineAlgorithm[DiscreteBCQPolicy, TDiscreteBCQStats]):
    """Discrete BCQ (Fujimoto et al. 2019); see the module docstring for the losses.

    :param policy: a :class:`DiscreteBCQPolicy` (it holds the network and τ).
    :param optim: optimizer factory for the network (Tianshou's Atari example: Adam, lr 6.25e-5).

    The other settings default to :class:`DiscreteBCQConfig`'s fields of the same names
    (documented there).
    """

    def __init__(
        self,
        *,
        policy: DiscreteBCQPolicy,
        optim: OptimizerFactory,
        gamma: float = DiscreteBCQConfig.gamma,
        n_step_return_horizon: int = DiscreteBCQConfig.n_step_return_horizon,
        target_update_freq: int = DiscreteBCQConfig.target_update_freq,
        imitation_logits_penalty: float = DiscreteBCQConfig.imitation_logits_penalty,
        huber_delta: float = DiscreteBCQConfig.huber_delta,
        max_grad_norm: float | None = DiscreteBCQConfig.max_grad_norm,
    ) -> None:
        super().__init__(policy=policy)
        if target_update_freq <= 0:
            raise ValueError(
                f"target_update_freq={target_update_freq}: BCQ needs a target network (> 0)"
            )
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma={gamma}: expected a value in [0, 1]")
        self.model = policy.model
        self.model_target = self._add_target(self.model)
        self.optim = self._make_optimizer(self.model, optim, max_grad_norm)
        self.gamma = gamma
        self.n_step = n_step_return_horizon
        self.target_update_freq = int(target_update_freq)
        self.imitation_logits_penalty = float(imitation_logits_penalty)
        self.huber_delta = float(huber_delta)

    def _update_with_batch(
        self, batch: RolloutBatchProtocol | DiscreteTransitions
    ) -> TDiscreteBCQStats:
        b = self._as_transitions(batch)
        if self.num_updates % self.target_update_freq == 0:
            self._copy_targets()
        rows = torch.arange(len(b), device=b.act.device)

        # 1. target: the best allowed action at s' (online), valued by the target network
        with torch.no_grad():
            q_next, logits_next = self.model(b.obs_next)
            allowed_next = allowed_actions(logits_next, self.policy.log_threshold)
            act_next = constrained_argmax(q_next, allowed_next)
            q_next_target, _ = self.model_target(b.obs_next)
            target = b.rew + b.discount * q_next_target[rows, act_next]

        # 2.-3. Q loss and imitation loss from one evaluation of the network at s
        q, logits = self.model(b.obs)
        q_data = q[rows, b.act]
        q_loss = F.huber_loss(q_data, target, delta=self.huber_delta)
        i_loss = F.cross_entropy(logits, b.act)
        reg_loss = logits.pow(2).mean()
        loss = q_loss + i_loss + self.imitation_logits_penalty * reg_loss
        self.optim.step(loss)

        logits_d = logits.detach()
        stats = self._make_stats(
            loss=loss,
            q_loss=q_loss,
            i_loss=i_loss,
            reg_loss=reg_loss,
            q_data=q_data.mean(),
            q_target=target.mean(),
            allowed_fraction=allowed_next.float().mean(),
            imitation_accuracy=(logits_d.argmax(dim=1) == b.act).float().mean(),
        )
        self._extend_stats(
            stats,
            DiscreteBCQStep(
                batch=b, q=q.detach(), logits=logits_d, target=target, allowed_next=allowed_next
            ),
        )
        return stats

    def _extend_stats(self, stats: TDiscreteBCQStats, step: DiscreteBCQStep) -> None:
        """Override to fill in extra fields of a stats subclass (see ``examples/extend_stats.py``)."""
