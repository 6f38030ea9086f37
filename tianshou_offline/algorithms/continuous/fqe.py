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
from tianshou_offline.algorithms.continuous.dataset import TransitionDataset, Transitions
from tianshou_offline.algorithms.continuous.nets import CriticEnsemble
from tianshou_offline.algorithms.continuous.policies import ContinuousPolicy
from tianshou_offline.algorithms.continuous.streaming import StreamingTransitionDataset
from tianshou_offline.algorithms.core import OfflineDataset, episode_starts
from tianshou_offline.algorithms.deferred import OfflineTrainingStats
from tianshou_offline.algorithms.streaming import disk_columns
from tianshou_offline.progress import Progress

__all__ = [
    "FQE",
    "FQEConfig",
    "FQEDataset",
    "FQEStep",
    "FQETrainingStats",
    "FQETransitions",
    "episode_starts",
]


@dataclass(frozen=True, kw_only=True)
class FQEConfig:
    """FQE's hyperparameters, the one place their defaults live (``evaluate --fqe``/``--ope``,
    :func:`~tianshou_offline.evaluation.fqe_rank` and
    :class:`~tianshou_offline.evaluation.ope.OPESettings` read them): a Q-network of 256 ×
    256 fitted with Adam 3e-4 and Polyak averaging (Paine et al. 2020's soft version).

    Not a registered :class:`~tianshou_offline.algorithms.config.AlgorithmConfig`: FQE
    evaluates a given policy, so :meth:`build` takes the policy instead of spaces.
    """

    hidden_sizes: tuple[int, ...] = param_default(CriticEnsemble, "hidden_sizes")
    """widths of the Q-network's hidden layers"""
    lr: float = 3e-4
    """Adam learning rate of the Q-network"""
    tau: float = 0.005
    """Polyak factor of the target network (1.0: hard copies)"""
    target_update_freq: int = 1
    """gradient steps between target updates (with ``tau=1``: K of the iterated regression)"""
    gamma: float = 0.99
    """discount of the estimated value"""
    max_grad_norm: float | None = None
    """clip the gradient's norm to this (None: no clipping)"""
    steps: int = 20_000
    """gradient steps of a fit (per evaluated policy)"""
    batch_size: int = 256
    """transitions per gradient step"""

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))

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
class FQETrainingStats(OfflineTrainingStats):
    """Statistics of one FQE step."""

    loss: float
    """``Σ_j MSE(Q_j(s, a), y)`` over the ensemble."""
    q_data: float
    """Mean ``Q(s, a)`` of the dataset actions."""
    q_target: float
    """Mean regression target ``y = r + γ (1 − d) Q'(s', π(s'))``."""


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
class FQEDataset(TransitionDataset):
    """A :class:`TransitionDataset` whose packed rows end with ``π(s')`` (``A`` more columns)."""

    def _unpack(self, rows: torch.Tensor) -> FQETransitions:
        base, act_next = torch.split(rows, [rows.shape[1] - self.act_dim, self.act_dim], dim=1)
        b = TransitionDataset._unpack(self, base)
        return FQETransitions(
            obs=b.obs,
            act=b.act,
            rew=b.rew,
            obs_next=b.obs_next,
            discount=b.discount,
            terminated=b.terminated,
            act_next=act_next,
        )

    def gather(self, pos: torch.Tensor) -> FQETransitions:
        return self._unpack(torch.index_select(self.packed, 0, pos))


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


class FQE(OfflineAlgorithmBase[ContinuousPolicy, TFQEStats]):
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
        if not 0.0 < tau <= 1.0:
            raise ValueError(f"tau={tau}: expected 0 < tau <= 1")
        if target_update_freq < 1:
            raise ValueError(f"target_update_freq={target_update_freq}: expected >= 1")
        if n_step_return_horizon != 1:
            raise ValueError(
                f"FQE: n_step_return_horizon={n_step_return_horizon}; expected 1 (an n-step "
                "target would follow the data's actions within the window, not the evaluated "
                "policy's: a biased estimate without an importance-weight correction)"
            )
        self.critics = critics
        self.critics_target = self._add_target(critics)
        self.critic_optim = self._make_optimizer(critics, critic_optim, max_grad_norm)
        self.tau = tau
        self.target_update_freq = target_update_freq
        self.gamma = gamma
        self.n_step = n_step_return_horizon
        self._initial_obs: torch.Tensor | None = None
        self._last_stats: FQETrainingStats | None = None

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
        """An :class:`FQEDataset` on the device; for a disk-backed buffer a
        :class:`~tianshou_offline.algorithms.continuous.streaming.StreamingTransitionDataset`
        with ``π(s')`` as a table in RAM (``4·A`` B per transition), computed in chunks of
        :data:`_POLICY_CHUNK` transitions as here — the same batches for a seed."""
        starts = episode_starts(buffer)
        self._initial_obs = self.policy.obs_to_tensor(np.asarray(buffer.obs[starts]))
        # the normaliser belongs to the evaluated policy: not refitted on this data
        if disk_columns(buffer) is not None:
            streaming = StreamingTransitionDataset.from_buffer(
                buffer,
                policy=self.policy,
                gamma=self.gamma,
                n_step=self.n_step,
                fit_obs_normalizer=False,
                stream=self.sample_stream,
            )
            table = np.empty((len(streaming), self.policy.act_dim), dtype=np.float32)
            for a in range(0, len(streaming), _POLICY_CHUNK):
                pos = torch.arange(a, min(len(streaming), a + _POLICY_CHUNK))
                obs_next = streaming.gather(pos).obs_next
                table[a : a + len(pos)] = self._policy_action(obs_next).cpu().numpy()
            return streaming.with_columns(FQETransitions, act_next=table)
        base = TransitionDataset.from_buffer(
            buffer,
            policy=self.policy,
            gamma=self.gamma,
            n_step=self.n_step,
            fit_obs_normalizer=False,
            stream=self.sample_stream,
        )
        act_next = self._policy_action(base.data.obs_next)
        packed = torch.cat([base.packed, act_next], dim=1)
        return FQEDataset(packed, base.obs_dim, base.act_dim, stream=self.sample_stream)

    def _as_transitions(self, batch: RolloutBatchProtocol | Transitions) -> FQETransitions:
        """A Tianshou numpy batch gets its ``π(s')`` computed here; FQE batches pass through."""
        if isinstance(batch, FQETransitions):
            return batch
        b = super()._as_transitions(batch)
        return FQETransitions(
            obs=b.obs,
            act=b.act,
            rew=b.rew,
            obs_next=b.obs_next,
            discount=b.discount,
            terminated=b.terminated,
            act_next=self._policy_action(b.obs_next),
        )

    # ------------------------------------------------------------------ update

    def _update_with_batch(self, batch: RolloutBatchProtocol | Transitions) -> TFQEStats:
        b = self._as_transitions(batch)
        # Le et al. 2019, Alg. 3: regress Q(s, a) on r + γ (1 − d) Q_{k−1}(s', π(s'))
        with torch.no_grad():
            q_next = self.critics_target(b.obs_next, b.act_next).mean(dim=0)  # (B,)
            target = b.rew + b.discount * q_next
        q_data = self.critics(b.obs, b.act)  # (E, B)
        loss = (q_data - target).pow(2).mean(dim=1).sum()
        self.critic_optim.step(loss)
        if (self.num_updates + 1) % self.target_update_freq == 0:
            self._update_targets(self.tau)
        stats = self._make_stats(loss=loss, q_data=q_data.mean(), q_target=target.mean())
        self._last_stats = stats
        self._extend_stats(stats, FQEStep(batch=b, q_data=q_data.detach(), target=target))
        return stats

    def _extend_stats(self, stats: TFQEStats, step: FQEStep) -> None:
        """Override to fill in extra fields of a stats subclass (see ``examples/extend_stats.py``)."""

    @property
    def last_loss(self) -> float:
        """The regression loss of the latest gradient step (nan before the first; reading it
        waits for the device)."""
        stats = self._last_stats
        return float("nan") if stats is None else float(stats.loss)

    # ------------------------------------------------------------------ the estimate

    @torch.no_grad()
    def estimate(self, buffer: ReplayBuffer | None = None) -> float:
        """``V̂(π) = E_{s_0~d_0}[ Q̂(s_0, π(s_0)) ]`` (Le et al. 2019, Eq. 4) over the first
        observation of every episode of ``buffer`` (default: the buffer trained on); a
        discounted return in the units of the data's rewards.

        :raises RuntimeError: no buffer given and none trained on yet.
        """
        if buffer is not None:
            starts = episode_starts(buffer)
            obs0 = self.policy.obs_to_tensor(np.asarray(buffer.obs[starts]))
        elif self._initial_obs is not None:
            obs0 = self._initial_obs
        else:
            raise RuntimeError("FQE.estimate: no buffer given and none trained on yet")
        q0 = self.critics(obs0, self._policy_action(obs0))  # (E, S)
        return float(q0.mean().item())

    def fit(
        self,
        buffer: ReplayBuffer,
        *,
        steps: int,
        batch_size: int = FQEConfig.batch_size,
        progress: Progress | None = None,
    ) -> float:
        """Fit ``Q^π`` on ``buffer`` with ``steps`` gradient steps of ``batch_size``
        transitions (Tianshou's ``OfflineTrainer``, one epoch, no test episodes) and return
        :meth:`estimate`.

        :param progress: counts the gradient steps (one ``update(1)`` each; e.g. a
            :func:`tianshou_offline.progress.progress` bar with ``total=steps``).
        """
        self.train_steps(buffer, steps=steps, batch_size=batch_size, progress=progress)
        return self.estimate()
