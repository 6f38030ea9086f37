"""Discrete FQE: fitted Q evaluation of a fixed discrete-action policy from a dataset alone.

References: Le, Voloshin & Yue (2019), "Batch Policy Learning under Constraints", ICML,
arXiv:1903.08738 (FQE, Algorithm 3, and Eq. 4 for the value); Paine et al. (2020),
"Hyperparameter Selection for Offline Reinforcement Learning", arXiv:2007.09055 (FQE for
offline model selection). The continuous version is
:class:`~tianshou_offline.algorithms.continuous.fqe.FQE`; this one shares the discrete
algorithms' core (frame-indexed sampling, Atari frames held once, n-step targets).

With a finite action set the expectation over the evaluated policy's action at ``s'`` is a
sum, so no action has to be drawn — Le et al. 2019, Algorithm 3, line 4, with
``Q(s', π) = Σ_{a'} π(a' | s') Q(s', a')``::

    Q_k = argmin_Q  E_{(s,a,r,s')~D} ( Q(s, a) − [ r + γ (1 − d) Σ_{a'} π(a'|s') Q_{k−1}(s', a') ] )²

``d`` is termination only (a time-limit truncation still bootstraps). The target is one-step
only, as :class:`~tianshou_offline.algorithms.continuous.fqe.FQE`'s: an n-step target would
follow the data's actions within the window, not π's (``n_step_return_horizon`` other than 1
is refused). ``Q_{k−1}`` is the target
network: ``tau=1, target_update_freq=K`` is the paper's iteration exactly (K regression
steps per iteration, then ``Q_{k−1} ← Q_k``); the default Polyak averaging is Paine et al.'s
soft version. ``π(· | s)`` is :meth:`~tianshou_offline.algorithms.discrete.policies.DiscretePolicy.action_probs`:
the policy as it acts when evaluated — a one-hot on the greedy action of a Q-value, BCQ, CQL
(quantile networks: the quantiles' mean) or deterministic CRR policy, the softmax of a
sampling categorical policy, either mixed with its ``eps_inference``.

The value (Le et al. 2019, Eq. 4) is ``V̂(π) = E_{s_0~d_0}[ Σ_a π(a|s_0) Q̂(s_0, a) ]`` over
the first observation of every episode in the buffer (frame-stacked as the buffer stacks):
a *discounted* return in the data's reward units.

Deliberate choices: ``π(· | s')`` is computed per mini-batch (no copy of ``π`` for every
stored frame: an Atari buffer would need one per transition); the evaluated policy is never
updated and its networks are used as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm.optim import OptimizerFactory
from tianshou.data import ReplayBuffer
from tianshou.data.types import RolloutBatchProtocol
from torch import nn
from typing_extensions import TypeVar

from tianshou_offline.algorithms.config import adam
from tianshou_offline.algorithms.core import OfflineDataset, episode_starts
from tianshou_offline.algorithms.discrete.base import DiscreteOfflineAlgorithm
from tianshou_offline.algorithms.discrete.dataset import DiscreteTransitions
from tianshou_offline.algorithms.discrete.nets import AtariTrunk, QNet, make_trunk
from tianshou_offline.algorithms.discrete.policies import DiscretePolicy
from tianshou_offline.algorithms.fqe_core import FittedQEvaluation, FQESettings, FQEStats

__all__ = ["DiscreteFQE", "DiscreteFQEConfig", "DiscreteFQEStep", "DiscreteFQETrainingStats"]


@dataclass(frozen=True, kw_only=True)
class DiscreteFQEConfig(FQESettings):
    """Discrete FQE's hyperparameters (``evaluate --ope`` and
    :class:`~tianshou_offline.evaluation.ope.OPESettings` read them; the defaults are
    :class:`~tianshou_offline.algorithms.fqe_core.FQESettings`'): a Q-network on an MLP
    trunk of 256 × 256 (image observations: the Nature-DQN convolutions and one head layer
    of the last width), Adam 3e-4, Polyak averaging.

    Not a registered :class:`~tianshou_offline.algorithms.config.AlgorithmConfig`: FQE
    evaluates a given policy, so :meth:`build` takes the policy instead of an action space.
    """

    hidden_sizes: tuple[int, ...] = FQESettings.hidden_sizes
    """widths of the MLP trunk of flat observations; of image observations, the last is the
    width of the head layer on the convolutions"""

    def build(
        self,
        policy: DiscretePolicy,
        observation_space: gym.Space[Any],
        *,
        device: str | torch.device = "cpu",
    ) -> DiscreteFQE:
        """A :class:`DiscreteFQE` of ``policy`` on data with these observations, on
        ``device``: a :class:`QNet` on :func:`make_trunk`'s trunk."""
        trunk = make_trunk(observation_space, self.hidden_sizes)
        head = self.hidden_sizes[-1:] if isinstance(trunk, AtariTrunk) else ()
        fqe: DiscreteFQE = DiscreteFQE(
            policy=policy,
            model=QNet(trunk, policy.num_actions, head),
            optim=adam(self.lr),
            tau=self.tau,
            target_update_freq=self.target_update_freq,
            gamma=self.gamma,
            max_grad_norm=self.max_grad_norm,
        )
        return fqe.to(device)


@dataclass(kw_only=True)
class DiscreteFQETrainingStats(FQEStats):
    """Statistics of one discrete FQE step (``q_target``: the mean of
    ``y = r + γ (1 − d) Σ_a' π(a'|s') Q'(s', a')``)."""


TDiscreteFQEStats = TypeVar(
    "TDiscreteFQEStats", bound=DiscreteFQETrainingStats, default=DiscreteFQETrainingStats
)


@dataclass(frozen=True, slots=True)
class DiscreteFQEStep:
    """Tensors of one step, detached, for :meth:`DiscreteFQE._extend_stats`.

    :ivar batch: the mini-batch.
    :ivar q_data: ``(B,)`` Q of the dataset actions.
    :ivar target: ``(B,)`` regression targets.
    """

    batch: DiscreteTransitions
    q_data: torch.Tensor
    target: torch.Tensor


class DiscreteFQE(
    FittedQEvaluation[DiscretePolicy, OfflineDataset[DiscreteTransitions], DiscreteTransitions,
                      TDiscreteFQEStats],
    DiscreteOfflineAlgorithm[DiscretePolicy, TDiscreteFQEStats],
):  # fmt: skip
    """Fitted Q evaluation of a discrete policy (see the module docstring).

    Train it as any offline algorithm (``run_training(OfflineTrainerParams(buffer=...))``, or
    :meth:`fit`), then read :meth:`estimate`. The evaluated policy is never updated.

    :param policy: the policy to evaluate (any :class:`DiscretePolicy`: Q-value, BCQ, CQL,
        CRR, imitation; MLP or Atari networks).
    :param model: the Q-network to fit, ``obs → (B, A)`` (e.g. a
        :class:`~tianshou_offline.algorithms.discrete.nets.QNet` on
        :func:`~tianshou_offline.algorithms.discrete.nets.make_trunk`).
    :param optim: optimizer factory (Paine et al.: Adam).
    :param tau: Polyak factor of the target network (1.0: hard copies).
    :param target_update_freq: update the target every this many steps.
    :param gamma: discount factor of the estimated value.
    :param n_step_return_horizon: 1 (the only value accepted: see the module docstring).
    :param max_grad_norm: clip the gradient norm (None: no clipping).
    """

    def __init__(
        self,
        *,
        policy: DiscretePolicy,
        model: nn.Module,
        optim: OptimizerFactory,
        tau: float = DiscreteFQEConfig.tau,
        target_update_freq: int = DiscreteFQEConfig.target_update_freq,
        gamma: float = DiscreteFQEConfig.gamma,
        n_step_return_horizon: int = 1,
        max_grad_norm: float | None = DiscreteFQEConfig.max_grad_norm,
    ) -> None:
        super().__init__(policy=policy)
        self._fqe_settings(tau, target_update_freq, gamma, n_step_return_horizon)
        self.model = model
        self.model_target = self._add_target(model)
        self.optim = self._make_optimizer(model, optim, max_grad_norm)

    def _update_with_batch(
        self, batch: RolloutBatchProtocol | DiscreteTransitions
    ) -> TDiscreteFQEStats:
        b = self._as_transitions(batch)
        # Le et al. 2019, Alg. 3: regress Q(s, a) on r + γ (1 − d) Σ_a' π(a'|s') Q_{k−1}(s', a')
        with torch.no_grad():
            probs_next = self.policy.action_probs(b.obs_next)  # (B, A)
            q_next = (self.model_target(b.obs_next) * probs_next).sum(dim=1)
            target = b.rew + b.discount * q_next
        rows = torch.arange(len(b), device=b.act.device)
        q_data = self.model(b.obs)[rows, b.act]
        loss = (q_data - target).pow(2).mean()
        stats = self._regression_step(self.optim, loss, q_data, target)
        self._extend_stats(stats, DiscreteFQEStep(batch=b, q_data=q_data.detach(), target=target))
        return stats

    # ------------------------------------------------------------------ the estimate

    @torch.no_grad()
    def q_values(self, obs: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """``Q̂(s, ·)`` for ``obs (N, *obs_shape)`` in chunks: ``(N, A)`` float32."""
        parts = [self.model(obs[i : i + chunk]) for i in range(0, obs.shape[0], chunk)]
        return torch.cat(parts).to(torch.float32)

    @torch.no_grad()
    def state_values(self, obs: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """``V̂(s) = Σ_a π(a|s) Q̂(s, a)`` for ``obs (N, *obs_shape)``: ``(N,)`` float32."""
        parts = [
            (self.model(o) * self.policy.action_probs(o)).sum(dim=1)
            for o in (obs[i : i + chunk] for i in range(0, obs.shape[0], chunk))
        ]
        return torch.cat(parts).to(torch.float32)

    def initial_observations(self, buffer: ReplayBuffer) -> torch.Tensor:
        """The first observation of every episode of ``buffer``, frame-stacked as the buffer
        stacks."""
        return self.policy.obs_to_tensor(np.asarray(buffer[episode_starts(buffer)].obs))

    def value_of(self, obs: torch.Tensor) -> float:
        """``mean_s Σ_a π(a|s) Q̂(s, a)`` over ``obs`` (the Q-network in eval mode)."""
        was_training = self.model.training
        self.model.eval()
        try:
            return float(self.state_values(obs).mean().item())
        finally:
            self.model.train(was_training)
