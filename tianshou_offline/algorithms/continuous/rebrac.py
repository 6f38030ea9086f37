"""ReBRAC: TD3+BC revisited — decoupled actor and critic behaviour-cloning penalties,
LayerNorm critics, deeper networks and large batches.

Reference: Tarasov, Kurenkov, Nikulin & Kolesnikov (2023), "Revisiting the Minimalist
Approach to Offline Reinforcement Learning", NeurIPS, arXiv:2305.09836 — the method section
(ReBRAC's actor objective with β₁ and critic objective with β₂, on top of TD3+BC, Fujimoto &
Gu 2021, arXiv:2106.06860, and TD3, Fujimoto et al. 2018, arXiv:1802.09477).

The update, in the order of the authors' code (critic, then — every ``update_actor_freq``
steps — the actor with the updated critic and the targets):

1. **Critic** — TD3's clipped double Q-learning with target-policy smoothing, with the
   critic penalty β₂ on the distance between the smoothed target action and the dataset's
   next action ``a'``::

       ã' = clip(π'(s') + clip(ε, −c, c), −1, 1),   ε ~ N(0, σ²)
       y  = r + γ (1 − d) [ min_j Q'_j(s', ã') − β₂ ‖ã' − a'‖² ]
       L_Q = Σ_j E_{(s,a,r,s',a')~D} (Q_j(s, a) − y)²

   ``d`` is *termination* only (a time-limit truncation still bootstraps). With n-step
   returns ``r`` is the discounted n-step sum, ``s'``/``a'`` are ``s_{t+n}``/``a_{t+n}`` and
   ``γ`` becomes ``γ^n``.
2. **Actor**, every ``update_actor_freq`` steps (the 0-based steps that are multiples of
   it, as :class:`~tianshou_offline.algorithms.TD3BC`) — the actor penalty β₁::

       π = argmax_π E_{(s,a)~D} [ λ min_j Q_j(s, π(s)) − β₁ ‖π(s) − a‖² ],
       λ = 1 / ((1/N) Σ_i |min_j Q_j(s_i, π(s_i))|)     (not differentiated)

   ``‖·‖²`` is summed over action dimensions (TD3+BC averages it); ``normalize_q=False``
   sets λ = 1.
3. **Targets**: Polyak averaging of critics and actor on actor steps.

The other design choices of the paper are network and batch settings: critics with
LayerNorm after every hidden layer (``CriticEnsemble(..., layer_norm=True)``), three hidden
layers of 256 for actor and critics, batch 1024, Adam 1e-3 — the defaults of
``examples/mujoco/d4rl_rebrac.py``. β₁/β₂ are tuned per dataset in the paper (CORL's D4RL
configurations: β₁ from 0.001 to 1, β₂ from 0 to 0.5; e.g. halfcheetah-medium 0.001/0.01,
hopper-medium 0.01/0.01, walker2d-medium 0.05/0.1); the defaults here are d3rlpy's
(0.001/0.01; CORL's script defaults are 1.0/1.0).

**The next dataset action** ``a'`` is part of every mini-batch
(:class:`NextActionTransitions`, prepared once by :class:`NextActionDataset`, or gathered per
batch from a disk-backed buffer by :class:`StreamingNextActionDataset`). Where the
buffer has no next action — the last step of a truncated or cut episode, whose ``s'`` is
never an observation of the buffer — the critic penalty of that row is 0 (``next_known``).

**Differences from the paper, CORL and d3rlpy 2.8**, deliberate:

- rows without a next action keep their transition and drop the critic penalty; CORL's
  ``qlearning_dataset`` drops every time-limit transition (and so also its TD target), d3rlpy
  pairs such a row with a zero next action;
- initialisation: PyTorch's defaults (as d3rlpy); CORL's JAX networks use bias 0.1 on the
  hidden layers and small uniform output layers (±1e-3 actor, ±3e-3 critic);
- the actor's Q is the minimum over the critics (CORL and d3rlpy) — TD3+BC uses Q_1;
- state normalisation is off by default, as in the paper's configurations
  (``DeterministicPolicy(normalize_obs=True)`` enables it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from tianshou.algorithm.optim import OptimizerFactory
from tianshou.data import ReplayBuffer
from tianshou.data.types import RolloutBatchProtocol
from typing_extensions import TypeVar

from tianshou_offline.algorithms.config import adam, box_dims
from tianshou_offline.algorithms.continuous.dataset import (
    TransitionDataset,
    Transitions,
    extended,
    preprocessed,
)
from tianshou_offline.algorithms.continuous.nets import CriticEnsemble, DeterministicActor
from tianshou_offline.algorithms.continuous.policies import ContinuousPolicy, DeterministicPolicy
from tianshou_offline.algorithms.continuous.streaming import CHUNK, StreamingTransitionDataset
from tianshou_offline.algorithms.continuous.td3_bc import TD3Base, TD3Config, TD3Tensors
from tianshou_offline.algorithms.core import OfflineDataset, SampleStream, n_step_targets
from tianshou_offline.algorithms.deferred import OfflineTrainingStats
from tianshou_offline.algorithms.streaming import disk_columns

if TYPE_CHECKING:
    import gymnasium as gym

__all__ = [
    "NextActionDataset",
    "NextActionTransitions",
    "ReBRAC",
    "ReBRACConfig",
    "ReBRACStep",
    "ReBRACTrainingStats",
    "StreamingNextActionDataset",
    "next_actions",
]


@dataclass(frozen=True, kw_only=True)
class ReBRACConfig(TD3Config):
    """ReBRAC's hyperparameters (Tarasov et al. 2023, Appendix; d3rlpy's default penalties):
    3 × 256 MLPs, LayerNorm critics, Adam 1e-3, β₁ = 0.001, β₂ = 0.01 (the paper tunes β₁/β₂
    per dataset and trains with batches of 1024)."""

    name: ClassVar[str] = "rebrac"

    hidden_sizes: tuple[int, ...] = (256, 256, 256)
    """widths of the hidden layers of the actor and the critics"""
    actor_lr: float = 1e-3
    """Adam learning rate of the actor"""
    critic_lr: float = 1e-3
    """Adam learning rate of the critics"""
    actor_bc_coef: float = 0.001
    """β₁, the weight of the actor's penalty ``‖π(s) − a‖²``"""
    critic_bc_coef: float = 0.01
    """β₂, the weight of the critic's penalty ``‖ã' − a'‖²`` in the TD target"""
    critic_layer_norm: bool = True
    """LayerNorm after every hidden layer of the critics"""
    normalize_q: bool = True
    """scale the actor's Q term by λ = 1 / mean|Q|"""

    def build(
        self,
        observation_space: gym.Space[Any],
        action_space: gym.Space[Any],
        *,
        device: str | torch.device = "cpu",
    ) -> ReBRAC:
        """A :class:`ReBRAC` of a :class:`DeterministicActor` and (LayerNorm) critics."""
        d, a = box_dims(observation_space, action_space)
        h = self.hidden_sizes
        policy = DeterministicPolicy(
            actor=DeterministicActor(d, a, h),
            action_space=action_space,
            observation_space=observation_space,
            normalize_obs=self.normalize_obs,
        )
        critics = CriticEnsemble(
            d, a, h, num_critics=self.num_critics, layer_norm=self.critic_layer_norm
        )
        algorithm: ReBRAC = ReBRAC(
            policy=policy,
            policy_optim=adam(self.actor_lr),
            critics=critics,
            critic_optim=adam(self.critic_lr),
            actor_bc_coef=self.actor_bc_coef,
            critic_bc_coef=self.critic_bc_coef,
            tau=self.tau,
            gamma=self.gamma,
            policy_noise=self.policy_noise,
            noise_clip=self.noise_clip,
            update_actor_freq=self.update_actor_freq,
            normalize_q=self.normalize_q,
            n_step_return_horizon=self.n_step_return_horizon,
            max_grad_norm=self.max_grad_norm,
        )
        return self.place(algorithm, device)


@dataclass(frozen=True, slots=True)
class NextActionTransitions(Transitions):
    """:class:`Transitions` with the dataset's action at the bootstrap state.

    :ivar act_next: ``(B, A)`` the dataset action taken at ``obs_next`` (``a_{t+n}``), in the
        policy's range; zeros where unknown.
    :ivar next_known: ``(B,)`` 1.0 where ``act_next`` is a dataset action, 0.0 where the
        buffer has none (after a termination, a truncation or a cut episode).
    """

    act_next: torch.Tensor
    next_known: torch.Tensor


def next_actions(
    buffer: ReplayBuffer, indices: np.ndarray, gamma: float, n_step: int
) -> tuple[np.ndarray, np.ndarray]:
    """The storage row of the action taken at each transition's bootstrap state.

    :param indices: storage rows of the transitions.
    :returns: ``rows`` (N,) the row whose ``act`` was taken at ``s_{t+n}`` (the transition's
        own row where unknown) and ``known`` (N,) bool — False where the n-step window ended
        the episode (terminated, truncated, cut or the last stored step).
    """
    _, last, _, _ = n_step_targets(buffer, indices, gamma, n_step)
    done = np.asarray(buffer.done, dtype=bool)
    nxt = np.asarray(buffer.next(last))
    known = ~done[last] & (nxt != last)
    return np.where(known, nxt, last), known


def _with_next(b: Transitions) -> NextActionTransitions:
    """``b``, which :meth:`ReBRAC._as_transitions` made a :class:`NextActionTransitions`."""
    if not isinstance(b, NextActionTransitions):
        raise TypeError(f"ReBRAC: a {type(b).__name__} batch has no next dataset actions")
    return b


@dataclass(frozen=True, slots=True)
class NextActionDataset(TransitionDataset):
    """A :class:`TransitionDataset` with each transition's next dataset action: mini-batches
    are :class:`NextActionTransitions`.

    :ivar next_packed: ``(N, A + 1)`` float32 ``[act_next | next_known]`` on the device.
    """

    next_packed: torch.Tensor

    @property
    def nbytes(self) -> int:
        """Bytes held by the dataset's tensors."""
        return sum(t.element_size() * t.numel() for t in (self.packed, self.next_packed))

    def gather(self, pos: torch.Tensor) -> NextActionTransitions:
        """The transitions at positions ``pos`` with their next actions (two ``index_select``)."""
        base = self._unpack(torch.index_select(self.packed, 0, pos))
        act_next, known = torch.split(
            torch.index_select(self.next_packed, 0, pos), [self.act_dim, 1], dim=1
        )
        return extended(base, NextActionTransitions, act_next=act_next, next_known=known.squeeze(1))

    @classmethod
    def with_next_actions(
        cls,
        buffer: ReplayBuffer,
        *,
        policy: ContinuousPolicy,
        gamma: float = 0.99,
        n_step: int = 1,
        stream: SampleStream | None = None,
    ) -> NextActionDataset:
        """:meth:`TransitionDataset.from_buffer` plus the next dataset actions (mapped to the
        policy's range)."""
        base = TransitionDataset.from_buffer(
            buffer, policy=policy, gamma=gamma, n_step=n_step, stream=stream
        )
        indices = buffer.sample_indices(0)
        rows, known = next_actions(buffer, indices, gamma, n_step)
        act = np.asarray(buffer[rows].act, dtype=np.float32).reshape(len(rows), -1)
        act = np.asarray(policy.map_action_inverse(act), dtype=np.float32)
        act[~known] = 0.0
        next_packed = torch.cat(
            [torch.as_tensor(act), torch.as_tensor(known, dtype=torch.float32).unsqueeze(1)],
            dim=1,
        ).to(policy.device)
        return cls(base.packed, base.obs_dim, base.act_dim, next_packed, stream=base.stream)


class StreamingNextActionDataset(StreamingTransitionDataset):
    """A disk-backed buffer's :class:`StreamingTransitionDataset` with each transition's next
    dataset action: mini-batches are :class:`NextActionTransitions`, equal to
    :class:`NextActionDataset`'s for the same positions.

    Held in RAM besides the streaming dataset's tables: ``next_known`` (1 B per transition,
    uint8); ``a'`` is read from the buffer's action column at the row after the n-step
    window's last (the next row of a disk-backed buffer's episode) and mapped per batch.
    """

    @classmethod
    def with_next_actions(
        cls,
        buffer: ReplayBuffer,
        *,
        policy: ContinuousPolicy,
        gamma: float = 0.99,
        n_step: int = 1,
        stream: SampleStream | None = None,
    ) -> StreamingNextActionDataset:
        """:meth:`StreamingTransitionDataset.from_buffer` plus whether each transition has a
        next action (:func:`next_actions`, in chunks).

        :raises ValueError: as ``from_buffer``; a buffer whose next row within an episode
            is not the following storage row.
        """
        dataset = cls.from_buffer(buffer, policy=policy, gamma=gamma, n_step=n_step, stream=stream)
        known = np.empty(len(dataset), dtype=np.uint8)
        for a in range(0, len(dataset), CHUNK):
            pos = np.arange(a, min(len(dataset), a + CHUNK), dtype=np.int64)
            rows, ok = next_actions(buffer, dataset.storage_rows(pos), gamma, n_step)
            if np.any(rows[ok] != dataset.bootstrap_rows(pos)[ok] + 1):
                raise ValueError(
                    "ReBRAC: the disk-backed buffer's next transition within an episode is not "
                    "the following storage row; load it with memory='ram'"
                )
            known[a : a + len(pos)] = ok
        return dataset.with_columns(NextActionTransitions, next_known=known)

    def gather_numpy(self, pos: np.ndarray) -> dict[str, np.ndarray]:
        """The base's batch plus ``act_next``: the action of the row after the n-step window,
        mapped to the policy's range (zeros where ``next_known`` is 0)."""
        batch = super().gather_numpy(pos)
        known = batch["next_known"].astype(bool)
        rows = self.bootstrap_rows(pos) + known
        act = np.asarray(self._act[rows], dtype=np.float32).reshape(len(pos), -1)
        act = np.asarray(self._policy.map_action_inverse(act), dtype=np.float32)
        act[~known] = 0.0
        batch["act_next"] = act
        return batch


@dataclass(kw_only=True)
class ReBRACTrainingStats(OfflineTrainingStats):
    """Statistics of one ReBRAC step (actor fields hold the latest actor update's values)."""

    critic_loss: float
    """``Σ_j MSE(Q_j(s, a), y)`` over the ensemble."""
    critic_bc: float
    """Mean critic penalty ``‖ã' − a'‖²`` over the rows with a next action."""
    actor_loss: float
    """``mean(β₁ ‖π(s) − a‖² − λ min_j Q_j(s, π(s)))``."""
    actor_bc: float
    """Mean actor penalty ``‖π(s) − a‖²``."""
    lmbda: float
    """λ = 1 / mean |min_j Q_j(s, π(s))| (1 without ``normalize_q``)."""
    q_data: float
    """Mean ``Q(s, a)`` of the dataset actions (over members and batch)."""
    q_target: float
    """Mean TD target ``y``."""
    q_policy: float
    """Mean ``min_j Q_j(s, π(s))``."""


TReBRACStats = TypeVar("TReBRACStats", bound=ReBRACTrainingStats, default=ReBRACTrainingStats)


@dataclass(frozen=True, slots=True)
class ReBRACStep:
    """Tensors of one step, detached, for :meth:`ReBRAC._extend_stats`.

    :ivar batch: the mini-batch (with the next dataset actions).
    :ivar q_data: ``(E, B)`` Q-values of the dataset actions.
    :ivar target: ``(B,)`` TD targets.
    :ivar critic_bc: ``(B,)`` ``‖ã' − a'‖²`` (0 where no next action is known).
    :ivar act_policy: ``(B, A)`` π(s) on actor steps, else None.
    :ivar q_policy: ``(B,)`` ``min_j Q_j(s, π(s))`` on actor steps, else None.
    """

    batch: NextActionTransitions
    q_data: torch.Tensor
    target: torch.Tensor
    critic_bc: torch.Tensor
    act_policy: torch.Tensor | None
    q_policy: torch.Tensor | None


class ReBRAC(TD3Base[TReBRACStats]):
    """ReBRAC (Tarasov et al. 2023); see the module docstring for the equations.

    :param policy: a :class:`DeterministicPolicy` (actor: 3 × 256 hidden in the paper).
    :param policy_optim: optimizer factory for the actor (paper: Adam, lr 1e-3).
    :param critics: the critic ensemble (≥ 2 members; ``layer_norm=True`` as in the paper).
    :param critic_optim: optimizer factory for the critics (paper: Adam, lr 1e-3).
    :param gamma: discount factor (0.99; the paper uses 0.999 on AntMaze).

    The other settings default to :class:`ReBRACConfig`'s fields of the same names
    (documented there).
    """

    def __init__(
        self,
        *,
        policy: DeterministicPolicy,
        policy_optim: OptimizerFactory,
        critics: CriticEnsemble,
        critic_optim: OptimizerFactory,
        actor_bc_coef: float = ReBRACConfig.actor_bc_coef,
        critic_bc_coef: float = ReBRACConfig.critic_bc_coef,
        tau: float = ReBRACConfig.tau,
        gamma: float = ReBRACConfig.gamma,
        policy_noise: float = ReBRACConfig.policy_noise,
        noise_clip: float = ReBRACConfig.noise_clip,
        update_actor_freq: int = ReBRACConfig.update_actor_freq,
        normalize_q: bool = ReBRACConfig.normalize_q,
        n_step_return_horizon: int = ReBRACConfig.n_step_return_horizon,
        max_grad_norm: float | None = ReBRACConfig.max_grad_norm,
    ) -> None:
        if actor_bc_coef < 0 or critic_bc_coef < 0:
            raise ValueError(
                f"ReBRAC: actor_bc_coef={actor_bc_coef}, critic_bc_coef={critic_bc_coef}; "
                "expected both >= 0"
            )
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
        self.actor_bc_coef = actor_bc_coef
        self.critic_bc_coef = critic_bc_coef
        self.normalize_q = normalize_q

    # ------------------------------------------------------------------ data with a'

    action_keys = ("act", "n_step_act_next")

    def _build_dataset(self, buffer: ReplayBuffer) -> OfflineDataset[Transitions]:
        """A :class:`NextActionDataset` on the device; for a disk-backed buffer a
        :class:`StreamingNextActionDataset` (the same batches for a seed)."""
        with_next_actions: Callable[..., OfflineDataset[Transitions]] = (
            NextActionDataset.with_next_actions
            if disk_columns(buffer) is None
            else StreamingNextActionDataset.with_next_actions
        )
        return with_next_actions(
            buffer,
            policy=self.policy,
            gamma=self.gamma,
            n_step=self.n_step,
            stream=self.sample_stream,
        )

    def _preprocess_batch(
        self, batch: RolloutBatchProtocol, buffer: ReplayBuffer, indices: np.ndarray
    ) -> RolloutBatchProtocol:
        """The core's n-step targets and the next dataset action (``n_step_act_next``, in
        the environment's units, and ``n_step_next_known``) for Tianshou's batch path."""
        batch = super()._preprocess_batch(batch, buffer, indices)
        rows, known = next_actions(
            buffer, np.asarray(indices, dtype=np.int64), self.gamma, self.n_step
        )
        batch.n_step_act_next = np.asarray(buffer[rows].act)
        batch.n_step_next_known = known.astype(np.float64)
        return batch

    def _as_transitions(self, batch: RolloutBatchProtocol | Transitions) -> NextActionTransitions:
        """A mini-batch with next actions passes through; a Tianshou numpy batch needs the
        next actions :meth:`_preprocess_batch` attaches.

        :raises ValueError: a numpy batch without ``n_step_act_next``, or a plain
            :class:`Transitions` (no next dataset action).
        """
        if isinstance(batch, NextActionTransitions):
            return batch
        batch = preprocessed(
            batch,
            "n_step_act_next",
            "ReBRAC: the batch holds no next dataset actions (its critic penalty needs a' at s')",
        )
        base = super()._as_transitions(batch)
        policy = self.policy
        act_next = np.asarray(
            policy.map_action_inverse(
                np.asarray(batch.n_step_act_next, dtype=np.float32).reshape(len(base), -1)
            ),
            dtype=np.float32,
        )
        known = np.asarray(batch.n_step_next_known, dtype=np.float32).reshape(-1)
        act_next[known == 0] = 0.0
        return extended(
            base,
            NextActionTransitions,
            act_next=torch.as_tensor(act_next, device=self.device),
            next_known=torch.as_tensor(known, device=self.device),
        )

    # ------------------------------------------------------------------ the update

    def _td_target(
        self, b: Transitions, act_next: torch.Tensor, q_next: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``y = r + γ (1 − d) [min_j Q'_j(s', ã') − β₂ ‖ã' − a'‖²]``; the penalty is 0 on
        rows without a next action."""
        b = _with_next(b)
        critic_bc = (act_next - b.act_next).pow(2).sum(dim=-1) * b.next_known  # (B,)
        return b.rew + b.discount * (q_next - self.critic_bc_coef * critic_bc), critic_bc

    def _actor_objective(
        self, b: Transitions, act_pi: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``mean(β₁ ‖π(s) − a‖² − λ min_j Q_j(s, π(s)))``, λ = 1 / mean|min_j Q_j| (or 1)."""
        q_pi = self.critics(b.obs, act_pi, detach_params=True).min(dim=0).values  # (B,)
        lmbda = (
            1.0 / q_pi.abs().mean().detach()
            if self.normalize_q
            else torch.ones((), device=q_pi.device)
        )
        actor_bc = (act_pi - b.act).pow(2).sum(dim=-1)  # (B,)
        actor_loss = (self.actor_bc_coef * actor_bc - lmbda * q_pi).mean()
        return actor_loss, q_pi, actor_bc.mean(), lmbda

    def _td3_stats(self, step: TD3Tensors) -> TReBRACStats:
        b = _with_next(step.batch)
        assert step.penalty is not None  # ReBRAC's _td_target always returns its penalty
        known = b.next_known.sum().clamp(min=1.0)
        last = step.last_actor
        stats = self._make_stats(
            critic_loss=step.critic_loss,
            critic_bc=step.penalty.sum() / known,
            actor_loss=last[0],
            actor_bc=last[1],
            lmbda=last[2],
            q_data=step.q_data.mean(),
            q_target=step.target.mean(),
            q_policy=last[3],
        )
        self._extend_stats(
            stats,
            ReBRACStep(
                batch=b,
                q_data=step.q_data.detach(),
                target=step.target,
                critic_bc=step.penalty,
                act_policy=None if step.act_policy is None else step.act_policy.detach(),
                q_policy=None if step.q_policy is None else step.q_policy.detach(),
            ),
        )
        return stats

    def _extend_stats(self, stats: TReBRACStats, step: ReBRACStep) -> None:
        """Override to fill in extra fields of a stats subclass (see ``examples/extend_stats.py``)."""
