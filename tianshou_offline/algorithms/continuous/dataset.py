"""Continuous-action data: :class:`Transitions` (a device-resident mini-batch) and
:class:`TransitionDataset` (every transition of a buffer, packed row-wise on the device).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic

import gymnasium as gym
import numpy as np
import torch
from tianshou.data import ReplayBuffer
from tianshou.data.types import RolloutBatchProtocol
from typing_extensions import TypeVar

from tianshou_offline.algorithms.continuous.policies import ContinuousPolicy
from tianshou_offline.algorithms.core import (
    OfflineDataset,
    SampleStream,
    TransitionBatch,
    n_step_targets,
    to_device_positions,
)

log = logging.getLogger(__name__)

__all__ = ["ColumnsDataset", "TransitionDataset", "Transitions", "extended", "preprocessed"]


@dataclass(frozen=True, slots=True)
class Transitions(TransitionBatch):
    """A mini-batch of transitions as tensors on the training device.

    All tensors are float32 and share the batch size B.

    :ivar obs: ``(B, D)`` observations, normalised when the policy normalises observations.
    :ivar act: ``(B, A)`` dataset actions in the policy's range (``[-1, 1]`` with action
        scaling).
    :ivar rew: ``(B,)`` reward — the discounted n-step sum ``Σ_{k<n} γ^k r_{t+k}`` when the
        algorithm uses n-step returns.
    :ivar obs_next: ``(B, D)`` the observation to bootstrap from (``s_{t+1}``, or ``s_{t+n}``).
    :ivar discount: ``(B,)`` the bootstrap factor ``γ^n · (1 − terminated)``: 0 after a true
        termination; a time-limit truncation still bootstraps.
    :ivar terminated: ``(B,)`` 1.0 where the episode terminated within the n steps.
    """


TExtended = TypeVar("TExtended", bound=Transitions)
"""A :class:`Transitions` with an algorithm's extra fields (Cal-QL's return-to-go, FQE's
``π(s')``, ReBRAC's next action)."""


def extended(
    b: Transitions, batch_type: Callable[..., TExtended], **extra: torch.Tensor
) -> TExtended:
    """The mini-batch ``b`` as a ``batch_type`` with the ``extra`` fields (the same tensors)."""
    return batch_type(
        obs=b.obs,
        act=b.act,
        rew=b.rew,
        obs_next=b.obs_next,
        discount=b.discount,
        terminated=b.terminated,
        **extra,
    )


def preprocessed(
    batch: RolloutBatchProtocol | Transitions, key: str, missing: str
) -> RolloutBatchProtocol:
    """``batch``, a Tianshou numpy batch that holds ``key`` (a field the algorithm's
    ``_preprocess_batch`` attaches).

    :param missing: the error's start: who needs ``key`` and what it holds.
    :raises ValueError: ``batch`` is a :class:`Transitions` or has no ``key``.
    """
    if isinstance(batch, Transitions) or key not in batch.get_keys():
        raise ValueError(
            f"{missing}; train with algorithm.update(buffer, batch_size) / OfflineTrainer, or "
            f"attach {key} with algorithm._preprocess_batch(batch, buffer, indices)"
        )
    return batch


@dataclass(frozen=True, slots=True)
class TransitionDataset(OfflineDataset[Transitions]):
    """Every transition of a buffer as one device-resident tensor, packed row-wise as
    ``[obs | act | rew | obs_next | discount | terminated]`` (``(N, 2D + A + 3)`` float32) so
    that a mini-batch is a single gather. Built once by :meth:`from_buffer`; :meth:`sample`
    draws uniform mini-batches from :attr:`stream` (the algorithm's
    :class:`~tianshou_offline.algorithms.core.SampleStream`: the same batches as the
    disk-backed :class:`~tianshou_offline.algorithms.continuous.streaming.StreamingTransitionDataset`
    for a seed)."""

    packed: torch.Tensor
    obs_dim: int
    act_dim: int
    stream: SampleStream = field(default_factory=SampleStream, compare=False, kw_only=True)
    """Where mini-batch positions come from (drawn on the CPU, copied to the device)."""

    def __len__(self) -> int:
        return int(self.packed.shape[0])

    @property
    def device(self) -> torch.device:
        return self.packed.device

    @property
    def nbytes(self) -> int:
        """Bytes held by the dataset (its packed tensor)."""
        return self.packed.element_size() * self.packed.numel()

    @property
    def data(self) -> Transitions:
        """All transitions, in buffer order (views of :attr:`packed`)."""
        return self._unpack(self.packed)

    def _unpack(self, rows: torch.Tensor) -> Transitions:
        d, a = self.obs_dim, self.act_dim
        obs, act, rew, obs_next, discount, terminated = torch.split(rows, [d, a, 1, d, 1, 1], dim=1)
        return Transitions(
            obs=obs,
            act=act,
            rew=rew.squeeze(1),
            obs_next=obs_next,
            discount=discount.squeeze(1),
            terminated=terminated.squeeze(1),
        )

    def gather(self, pos: torch.Tensor) -> Transitions:
        """The transitions at positions ``pos`` (``(B,)`` int64 on :attr:`device`): one
        ``index_select`` of the packed rows."""
        return self._unpack(torch.index_select(self.packed, 0, pos))

    def sample(self, batch_size: int) -> Transitions:
        """The next uniform mini-batch of :attr:`stream` (with replacement)."""
        pos = self.stream.next(len(self), batch_size)
        return self.gather(to_device_positions(pos, self.device))

    def with_columns(
        self, batch_type: Callable[..., TExtended], **columns: torch.Tensor
    ) -> ColumnsDataset[TExtended]:
        """This dataset with per-transition ``columns`` (first dimension :func:`len`, in
        buffer order; ``(N,)`` or ``(N, k)``) appended to the packed rows: batches become
        ``batch_type(**fields, **columns)`` (as
        :meth:`~tianshou_offline.algorithms.continuous.streaming.StreamingTransitionDataset.with_columns`
        from disk)."""
        n = len(self)
        widths = tuple(
            (name, 0 if c.dim() == 1 else int(c.shape[1])) for name, c in columns.items()
        )
        packed = torch.cat(
            [self.packed, *(c.to(self.device).reshape(n, -1) for c in columns.values())], dim=1
        )
        return ColumnsDataset(
            packed,
            self.obs_dim,
            self.act_dim,
            stream=self.stream,
            batch_type=batch_type,
            columns=widths,
        )

    @classmethod
    def from_buffer(
        cls,
        buffer: ReplayBuffer,
        *,
        policy: ContinuousPolicy,
        gamma: float = 0.99,
        n_step: int = 1,
        fit_obs_normalizer: bool = True,
        stream: SampleStream | None = None,
    ) -> TransitionDataset:
        """Copy a buffer's transitions to ``policy``'s device.

        :param buffer: any Tianshou ``ReplayBuffer`` (vector buffers included). Its actions
            are in the environment's units; they are mapped to the policy's range with
            ``policy.map_action_inverse``.
        :param policy: provides the device, the observation normaliser and the action mapping.
        :param gamma: discount for the n-step sums and the bootstrap factor.
        :param n_step: n of the n-step return (1 = one-step TD).
        :param fit_obs_normalizer: fit the policy's normaliser (if enabled) on ``buffer.obs``.
        :param stream: where mini-batch positions come from (default: a new stream).
        :raises ValueError: the buffer is empty or its shapes do not match the policy.
        """
        if n_step < 1:
            raise ValueError(f"n_step={n_step}: expected >= 1")
        indices = buffer.sample_indices(0)
        if len(indices) == 0:
            raise ValueError("the replay buffer is empty")
        batch = buffer[indices]
        rew, last, discount, terminated = n_step_targets(buffer, indices, gamma, n_step)
        position = np.empty(int(indices.max()) + 1, dtype=np.int64)
        position[indices] = np.arange(len(indices))
        obs_next = np.asarray(batch.obs_next).reshape(len(indices), -1)[position[last]]
        return cls.from_arrays(
            policy=policy,
            obs=batch.obs,
            act=batch.act,
            rew=rew,
            obs_next=obs_next,
            discount=discount,
            terminated=terminated,
            fit_obs_normalizer=fit_obs_normalizer,
            stream=stream,
        )

    @classmethod
    def from_arrays(
        cls,
        *,
        policy: ContinuousPolicy,
        obs: Any,
        act: Any,
        rew: Any,
        obs_next: Any,
        discount: Any,
        terminated: Any,
        fit_obs_normalizer: bool = False,
        stream: SampleStream | None = None,
    ) -> TransitionDataset:
        """Build a dataset from columns (numpy or tensors, first dimension N).

        ``obs``/``obs_next`` are raw observations (normalised here), ``act`` is in the
        environment's units (mapped here), the others as in :class:`Transitions`.
        """

        def numpy(x: Any) -> np.ndarray:
            return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)

        n = len(numpy(rew).reshape(-1))
        obs_np = numpy(obs).astype(np.float32).reshape(n, -1)
        act_np = numpy(act).astype(np.float32).reshape(n, -1)
        if obs_np.shape[1] != policy.obs_dim or act_np.shape[1] != policy.act_dim:
            raise ValueError(
                f"dataset obs/act sizes {obs_np.shape[1]}/{act_np.shape[1]} do not match the "
                f"policy's observation/action spaces ({policy.obs_dim}/{policy.act_dim})"
            )
        _warn_if_outside(act_np, policy.action_space)
        act_np = np.asarray(policy.map_action_inverse(act_np), dtype=np.float32)
        if fit_obs_normalizer:
            policy.obs_normalizer.fit(obs_np)
        device = policy.device
        norm = policy.obs_normalizer

        def column(x: Any) -> torch.Tensor:
            return torch.as_tensor(numpy(x).astype(np.float32).reshape(n)).to(device)

        obs_next_np = numpy(obs_next).astype(np.float32).reshape(n, -1)

        with torch.no_grad():
            packed = torch.cat(
                [
                    norm(torch.as_tensor(obs_np).to(device)),
                    torch.as_tensor(act_np).to(device),
                    column(rew).unsqueeze(1),
                    norm(torch.as_tensor(obs_next_np).to(device)),
                    column(discount).unsqueeze(1),
                    column(terminated).unsqueeze(1),
                ],
                dim=1,
            )
        return cls(packed, policy.obs_dim, policy.act_dim, stream=stream or SampleStream())


@dataclass(frozen=True, slots=True)
class ColumnsDataset(TransitionDataset, Generic[TExtended]):
    """A :class:`TransitionDataset` whose packed rows end with an algorithm's extra columns
    (:meth:`TransitionDataset.with_columns`); mini-batches are :attr:`batch_type`.

    :ivar batch_type: the mini-batch class (a :class:`Transitions` with the extra fields).
    :ivar columns: each extra field's name and width (0: a ``(B,)`` field).
    """

    batch_type: Callable[..., TExtended] = field(kw_only=True)
    columns: tuple[tuple[str, int], ...] = field(kw_only=True)

    def _unpack(self, rows: torch.Tensor) -> TExtended:
        widths = [max(w, 1) for _, w in self.columns]
        base, *parts = torch.split(rows, [rows.shape[1] - sum(widths), *widths], dim=1)
        extra = {
            name: part.squeeze(1) if w == 0 else part
            for (name, w), part in zip(self.columns, parts, strict=True)
        }
        return extended(TransitionDataset._unpack(self, base), self.batch_type, **extra)

    def gather(self, pos: torch.Tensor) -> TExtended:
        return self._unpack(torch.index_select(self.packed, 0, pos))


def outside_rows(act: np.ndarray, space: gym.Space[Any]) -> int:
    """How many rows of ``act`` (``(N, A)``) lie outside a ``Box`` space (beyond a 1e-4
    relative tolerance); 0 for other spaces."""
    if not isinstance(space, gym.spaces.Box):
        return 0
    low = np.asarray(space.low, dtype=np.float64).reshape(-1)
    high = np.asarray(space.high, dtype=np.float64).reshape(-1)
    tol = 1e-4 * np.maximum(1.0, high - low)
    outside = (act < low - tol) | (act > high + tol)
    return int(outside.any(axis=1).sum())


def warn_if_outside(outside: int, total: int, space: gym.Space[Any]) -> None:
    """Warn once that ``outside`` of ``total`` dataset actions lie outside ``space``."""
    if outside and isinstance(space, gym.spaces.Box):
        log.warning(
            "%.1f%% of the dataset's actions lie outside the action space [%s, %s]; the "
            "algorithms expect actions in the environment's units",
            100 * outside / total,
            np.min(space.low),
            np.max(space.high),
        )


def _warn_if_outside(act: np.ndarray, space: gym.Space[Any]) -> None:
    warn_if_outside(outside_rows(act, space), len(act), space)
