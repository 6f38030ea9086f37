"""Imitation learning (behaviour cloning) for continuous actions.

Reference: Pomerleau (1991), "Efficient Training of Artificial Neural Networks for
Autonomous Navigation"; in offline RL the standard baseline (e.g. Fu et al. 2020, D4RL).

Losses (``π`` the policy, ``(s, a)`` dataset pairs, actions in ``[-1, 1]``):

- deterministic actor (:class:`~tianshou_offline.algorithms.continuous.policies.DeterministicPolicy`):
  the regression loss ``L(θ) = E_{(s,a)~D} ‖π_θ(s) − a‖² / A`` (mean squared error);
- Gaussian actor (:class:`~tianshou_offline.algorithms.continuous.policies.GaussianPolicy`):
  maximum likelihood, ``L(θ) = −E_{(s,a)~D} log π_θ(a | s)`` (the negative log-likelihood;
  with ``squash=True`` it includes the tanh change of variables of Haarnoja et al. 2018,
  Eq. 21 — prefer ``squash=False`` when the data holds actions on the bounds).

A discrete variant (cross-entropy on logits) will live next to this one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from tianshou.algorithm.optim import OptimizerFactory
from tianshou.data.types import RolloutBatchProtocol
from typing_extensions import TypeVar

from tianshou_offline.algorithms.config import ContinuousConfig, adam, box_dims
from tianshou_offline.algorithms.continuous.base import OfflineAlgorithmBase
from tianshou_offline.algorithms.continuous.dataset import Transitions
from tianshou_offline.algorithms.continuous.nets import DeterministicActor, GaussianActor
from tianshou_offline.algorithms.continuous.policies import (
    DeterministicPolicy,
    GaussianPolicy,
    gaussian_log_prob,
)
from tianshou_offline.algorithms.deferred import OfflineTrainingStats

if TYPE_CHECKING:
    import gymnasium as gym


@dataclass(frozen=True, kw_only=True)
class ImitationConfig(ContinuousConfig):
    """Behaviour cloning's settings: an MLP actor, Adam."""

    name: ClassVar[str] = "il"
    conv_encoder: ClassVar[bool] = True

    lr: float = 1e-3
    """Adam learning rate of the actor"""
    actor: Literal["deterministic", "gaussian"] = "deterministic"
    """MSE regression of a deterministic actor, or maximum likelihood of a Gaussian"""

    def build(
        self,
        observation_space: gym.Space[Any],
        action_space: gym.Space[Any],
        *,
        device: str | torch.device = "cpu",
    ) -> ImitationLearning:
        """An :class:`ImitationLearning` of a :class:`DeterministicActor` (or an unsquashed
        :class:`GaussianActor`)."""
        _, a = box_dims(observation_space, action_space)
        d, encoder = self.network_input(observation_space)
        policy: DeterministicPolicy | GaussianPolicy
        if self.actor == "gaussian":
            policy = GaussianPolicy(
                actor=GaussianActor(d, a, self.hidden_sizes, encoder=encoder()),
                action_space=action_space,
                observation_space=observation_space,
                squash=False,
                normalize_obs=self.normalize_obs,
            )
        else:
            policy = DeterministicPolicy(
                actor=DeterministicActor(d, a, self.hidden_sizes, encoder=encoder()),
                action_space=action_space,
                observation_space=observation_space,
                normalize_obs=self.normalize_obs,
            )
        algorithm: ImitationLearning = ImitationLearning(
            policy=policy, optim=adam(self.lr), max_grad_norm=self.max_grad_norm
        )
        return self.place(algorithm, device)


@dataclass(kw_only=True)
class ImitationTrainingStats(OfflineTrainingStats):
    """Statistics of one behaviour-cloning step."""

    loss: float
    """The minimised loss (MSE, or NLL for a Gaussian actor)."""
    mse: float
    """Mean squared error between the (mode) action and the dataset action."""
    log_prob: float | None = None
    """Mean ``log π(a | s)`` of the dataset actions (Gaussian actor only)."""
    policy_std: float | None = None
    """Mean standard deviation of the Gaussian (Gaussian actor only)."""


TImitationStats = TypeVar(
    "TImitationStats", bound=ImitationTrainingStats, default=ImitationTrainingStats
)


@dataclass(frozen=True, slots=True)
class ImitationStep:
    """Tensors of one step, detached, for :meth:`ImitationLearning._extend_stats`.

    :ivar batch: the mini-batch.
    :ivar act_pred: ``(B, A)`` the predicted (mode) action.
    :ivar log_prob: ``(B,)`` ``log π(a | s)`` of the dataset actions (Gaussian actor), else None.
    """

    batch: Transitions
    act_pred: torch.Tensor
    log_prob: torch.Tensor | None


class ImitationLearning(
    OfflineAlgorithmBase[DeterministicPolicy | GaussianPolicy, TImitationStats]
):
    """Behaviour cloning with a deterministic or a Gaussian actor (see the module docstring).

    :param policy: a :class:`DeterministicPolicy` (MSE regression) or a :class:`GaussianPolicy`
        (maximum likelihood).
    :param optim: optimizer factory for the actor, e.g. ``AdamOptimizerFactory(lr=1e-3)``.
    :param max_grad_norm: clip the actor's gradient norm (None: no clipping).
    """

    def __init__(
        self,
        *,
        policy: DeterministicPolicy | GaussianPolicy,
        optim: OptimizerFactory,
        max_grad_norm: float | None = ImitationConfig.max_grad_norm,
    ) -> None:
        super().__init__(policy=policy)
        self.optim = self._make_optimizer(policy.actor, optim, max_grad_norm)

    def _update_with_batch(self, batch: RolloutBatchProtocol | Transitions) -> TImitationStats:
        b = self._as_transitions(batch)
        policy = self.policy
        log_prob: torch.Tensor | None = None
        std: torch.Tensor | None = None
        if isinstance(policy, GaussianPolicy):
            mean, log_std = policy.actor(b.obs)
            log_prob = gaussian_log_prob(mean, log_std, b.act, squash=policy.squash)
            loss = -log_prob.mean()  # negative log-likelihood
            act_pred = policy.mode(mean)
            std = log_std.exp().mean()
        else:
            act_pred = policy.actor(b.obs)
            loss = F.mse_loss(act_pred, b.act)  # regression
        self.optim.step(loss)

        act_pred = act_pred.detach()
        mse = F.mse_loss(act_pred, b.act)
        stats = self._make_stats(
            loss=loss,
            mse=mse,
            log_prob=None if log_prob is None else log_prob.mean(),
            policy_std=std,
        )
        self._extend_stats(
            stats,
            ImitationStep(
                batch=b,
                act_pred=act_pred,
                log_prob=None if log_prob is None else log_prob.detach(),
            ),
        )
        return stats

    def _extend_stats(self, stats: TImitationStats, step: ImitationStep) -> None:
        """Override to fill in extra fields of a stats subclass (see ``examples/extend_stats.py``)."""
