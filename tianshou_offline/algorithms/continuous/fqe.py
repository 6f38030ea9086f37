"""FQE: fitted Q evaluation of a fixed policy from a dataset alone.

References: Le, Voloshin & Yue (2019), "Batch Policy Learning under Constraints", ICML,
arXiv:1903.08738 (FQE, Algorithm 3); Paine, Paduraru, Michi, Gulcehre, Zolna, Novikov, Wang
& de Freitas (2020), "Hyperparameter Selection for Offline Reinforcement Learning",
arXiv:2007.09055 (FQE for offline model selection: rank checkpoints by their estimate).

FQE fits ``Q^π`` of a given policy ``π`` by iterated regression on the dataset
``D = {(s, a, r, s', d)}`` — Le et al. 2019, Algorithm 3, line 4 (the FQE regression)::

    Q_k = argmin_Q  E_{(s,a,r,s')~D} ( Q(s, a) − [ r + γ (1 − d) Q_{k−1}(s', π(s')) ] )²

``d`` is *termination* only: a time-limit truncation still bootstraps. The target is
one-step only: an n-step target ``Σ_k γ^k r_{t+k} + γ^n Q(s_{t+n}, π(s_{t+n}))`` would
follow the data's actions ``a_{t+1} … a_{t+n−1}`` instead of π's — the value of a mixture of
the behaviour policy and π, not of π — unless corrected by importance weights (for which a
deterministic π has no density); ``n_step_return_horizon`` other than 1 is refused.
``Q_{k−1}`` is the target
network: ``tau=1, target_update_freq=K`` is the paper's iteration exactly (K gradient steps
of regression per iteration k, then ``Q_{k−1} ← Q_k``); the default Polyak averaging
(``tau=0.005`` every step) is the soft version Paine et al. 2020 use with deep networks.

The policy's value is then estimated on the dataset's initial states ``d_0`` (Le et al.
2019, Eq. 4: ``V̂(π) = E_{s_0~d_0}[ Q̂(s_0, π(s_0)) ]``) — :meth:`FQE.estimate`: the first
observation of every episode in the buffer. ``V̂`` is a *discounted* return
``E[Σ_t γ^t r_t]``, in the units of the data's rewards.

Deliberate choices, written next to the code: ``π`` is fixed, so ``π(s')`` is computed once
for every transition (deterministic: the action the policy takes outside training steps,
the mode of a Gaussian; one draw for a sampling policy such as BCQ's), clipped to ``[−1, 1]``
— the action the environment would execute; the policy's observation normaliser is *not*
refitted on the evaluation data (it is part of the evaluated policy); with an ensemble of
critics the estimate is the members' mean (no ``min``: this is evaluation, not
optimisation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tianshou.algorithm.optim import OptimizerFactory
from tianshou.data import ReplayBuffer
from tianshou.data.types import RolloutBatchProtocol
from tianshou.utils.torch_utils import policy_within_training_step
from typing_extensions import TypeVar

from tianshou_offline.algorithms.config import adam, param_default
from tianshou_offline.algorithms.continuous.base import OfflineAlgorithmBase
from tianshou_offline.algorithms.continuous.dataset import Transitions, extended
from tianshou_offline.algorithms.continuous.nets import CriticEnsemble
from tianshou_offline.algorithms.continuous.policies import ContinuousPolicy
from tianshou_offline.algorithms.continuous.streaming import StreamingTransitionDataset
from tianshou_offline.algorithms.core import OfflineDataset, episode_starts
from tianshou_offline.algorithms.fqe_core import FittedQEvaluation, FQESettings, FQEStats

__all__ = [
    "FQE",
    "FQEConfig",
    "FQEStep",
    "FQETrainingStats",
    "FQETransitions",
    "episode_starts",
]


@dataclass(frozen=True, kw_only=True)
class FQEConfig(FQESettings):
    """FQE's hyperparameters (``evaluate --fqe``/``--ope``,
    :func:`~tianshou_offline.evaluation.fqe_rank` and
    :class:`~tianshou_offline.evaluation.ope.OPESettings` read them; the defaults are
    :class:`~tianshou_offline.algorithms.fqe_core.FQESettings`'): a Q-network of 256 × 256
    fitted with Adam 3e-4 and Polyak averaging (Paine et al. 2020's soft version).

    Not a registered :class:`~tianshou_offline.algorithms.config.AlgorithmConfig`: FQE
    evaluates a given policy, so :meth:`build` takes the policy instead of spaces.
    """

    hidden_sizes: tuple[int, ...] = param_default(CriticEnsemble, "hidden_sizes")
    """widths of the Q-network's hidden layers"""

    def build(self, policy: ContinuousPolicy, *, device: str | torch.device = "cpu") -> FQE:
        """An :class:`FQE` of ``policy`` with a one-member :class:`CriticEnsemble`, both on
        ``device``."""
        critics = CriticEnsemble(policy.obs_dim, policy.act_dim, self.hidden_sizes,
                                 num_critics=1)  # fmt: skip
        fqe: FQE = FQE(
            policy=policy,
            critics=critics,
            critic_optim=adam(self.lr),
            tau=self.tau,
            target_update_freq=self.target_update_freq,
            gamma=self.gamma,
            max_grad_norm=self.max_grad_norm,
        )
        return fqe.to(device)


@dataclass(kw_only=True)
class FQETrainingStats(FQEStats):
    """Statistics of one FQE step (``loss``: ``Σ_j MSE(Q_j(s, a), y)`` over the ensemble;
    ``q_target``: the mean of ``y = r + γ (1 − d) Q'(s', π(s'))``)."""


_POLICY_CHUNK = 65536
"""Observations per call of the evaluated policy when ``π(s')`` is precomputed."""

TFQEStats = TypeVar("TFQEStats", bound=FQETrainingStats, default=FQETrainingStats)


@dataclass(frozen=True, slots=True)
class FQETransitions(Transitions):
    """:class:`Transitions` with the evaluated policy's action at the bootstrap state.

    :ivar act_next: ``(B, A)`` ``π(s')`` in ``[−1, 1]`` (computed once, see the module docstring).
    """

    act_next: torch.Tensor


@dataclass(frozen=True, slots=True)
class FQEStep:
    """Tensors of one step, detached, for :meth:`FQE._extend_stats`.

    :ivar batch: the mini-batch.
    :ivar q_data: ``(E, B)`` Q of the dataset actions.
    :ivar target: ``(B,)`` regression targets.
    """

    batch: FQETransitions
    q_data: torch.Tensor
    target: torch.Tensor


class FQE(
    FittedQEvaluation[ContinuousPolicy, OfflineDataset[Transitions], Transitions, TFQEStats],
    OfflineAlgorithmBase[ContinuousPolicy, TFQEStats],
):
    """Fitted Q evaluation (Le et al. 2019; Paine et al. 2020); see the module docstring.

    Train it as any offline algorithm (``run_training(OfflineTrainerParams(buffer=...))``, or
    :meth:`fit`), then read :meth:`estimate`. The evaluated policy is never updated.

    :param policy: the policy to evaluate (any :class:`ContinuousPolicy`, e.g. loaded from a
        checkpoint); its observation normaliser is used as it is.
    :param critics: the Q-network(s) to fit (1 member is enough; the estimate averages them).
    :param critic_optim: optimizer factory (Paine et al.: Adam).
    :param tau: Polyak factor of the target network (1.0: hard copies).
    :param target_update_freq: update the target every this many steps (with ``tau=1``: K of
        the iterated regression).
    :param gamma: discount factor of the estimated value.
    :param n_step_return_horizon: 1 (the only value accepted: see the module docstring; kept
        for the common signature).
    :param max_grad_norm: clip the gradient norm (None: no clipping).
    """

    def __init__(
        self,
        *,
        policy: ContinuousPolicy,
        critics: CriticEnsemble,
        critic_optim: OptimizerFactory,
        tau: float = FQEConfig.tau,
        target_update_freq: int = FQEConfig.target_update_freq,
        gamma: float = FQEConfig.gamma,
        n_step_return_horizon: int = 1,
        max_grad_norm: float | None = FQEConfig.max_grad_norm,
    ) -> None:
        super().__init__(policy=policy)
        self._fqe_settings(tau, target_update_freq, gamma, n_step_return_horizon)
        self.critics = critics
        self.critics_target = self._add_target(critics)
        self.critic_optim = self._make_optimizer(critics, critic_optim, max_grad_norm)

    # ------------------------------------------------------------------ data

    @torch.no_grad()
    def _policy_action(self, obs: torch.Tensor, chunk: int = _POLICY_CHUNK) -> torch.Tensor:
        """``π(obs)`` for normalised ``obs (N, D)``, as the policy acts outside training
        (deterministic), clipped to ``[−1, 1]``; in chunks of ``chunk`` rows."""
        parts: list[torch.Tensor] = []
        with policy_within_training_step(self.policy, enabled=False):
            for start in range(0, obs.shape[0], chunk):
                parts.append(self.policy.select_action(obs[start : start + chunk]))
        return torch.cat(parts).clamp(-1.0, 1.0)

    def _build_dataset(self, buffer: ReplayBuffer) -> OfflineDataset[Transitions]:
        """The transitions with ``π(s')`` (the policy's normaliser is not refitted on this
        data: it belongs to the evaluated policy): on the device in the packed rows; for a
        disk-backed buffer a table in RAM (``4·A`` B per transition) gathered with each
        batch, computed in chunks of :data:`_POLICY_CHUNK` transitions as here — the same
        batches for a seed."""
        self._initial_obs = self.initial_observations(buffer)
        dataset = self.transition_dataset(buffer, fit_obs_normalizer=False)
        if isinstance(dataset, StreamingTransitionDataset):
            table = np.empty((len(dataset), self.policy.act_dim), dtype=np.float32)
            for a in range(0, len(dataset), _POLICY_CHUNK):
                pos = torch.arange(a, min(len(dataset), a + _POLICY_CHUNK))
                obs_next = dataset.gather(pos).obs_next
                table[a : a + len(pos)] = self._policy_action(obs_next).cpu().numpy()
            return dataset.with_columns(FQETransitions, act_next=table)
        return dataset.with_columns(
            FQETransitions, act_next=self._policy_action(dataset.data.obs_next)
        )

    def _as_transitions(self, batch: RolloutBatchProtocol | Transitions) -> FQETransitions:
        """A Tianshou numpy batch gets its ``π(s')`` computed here; FQE batches pass through."""
        if isinstance(batch, FQETransitions):
            return batch
        b = super()._as_transitions(batch)
        return extended(b, FQETransitions, act_next=self._policy_action(b.obs_next))

    # ------------------------------------------------------------------ update

    def _update_with_batch(self, batch: RolloutBatchProtocol | Transitions) -> TFQEStats:
        b = self._as_transitions(batch)
        # Le et al. 2019, Alg. 3: regress Q(s, a) on r + γ (1 − d) Q_{k−1}(s', π(s'))
        with torch.no_grad():
            q_next = self.critics_target(b.obs_next, b.act_next).mean(dim=0)  # (B,)
            target = b.rew + b.discount * q_next
        q_data = self.critics(b.obs, b.act)  # (E, B)
        loss = (q_data - target).pow(2).mean(dim=1).sum()
        stats = self._regression_step(self.critic_optim, loss, q_data, target)
        self._extend_stats(stats, FQEStep(batch=b, q_data=q_data.detach(), target=target))
        return stats

    # ------------------------------------------------------------------ the estimate

    def initial_observations(self, buffer: ReplayBuffer) -> torch.Tensor:
        """The first observation of every episode of ``buffer``, normalised as the policy
        reads them."""
        return self.policy.obs_to_tensor(np.asarray(buffer.obs[episode_starts(buffer)]))

    @torch.no_grad()
    def value_of(self, obs: torch.Tensor) -> float:
        """``mean Q̂(s, π(s))`` over ``obs`` (and the ensemble's members)."""
        q0 = self.critics(obs, self._policy_action(obs))  # (E, S)
        return float(q0.mean().item())
