"""Trajectory segments for sequence models: fixed-length windows of consecutive steps of one
episode, with returns-to-go, timesteps, padding and an attention mask.

:class:`SegmentDataset` indexes every episode of a Tianshou buffer once
(:func:`episode_table`: each stored row's episode and its timestep, found by following the
buffer's ``prev``/``next`` links, so episode boundaries are the buffer's — terminated,
truncated, or cut by the end of the stored data) and samples segments of ``K`` steps::

    start j ~ uniform over all stored steps      (an episode is drawn ∝ its length)
    steps  j, j+1, …, min(j + K, end of j's episode) − 1         (never crossing an episode)
    a segment shorter than K (it reached the episode's end) is padded on the *left*

so that the last position of every segment is a real step, as in the original Decision
Transformer's sampler (Chen et al. 2021, the authors' ``gym/experiment.py``: start uniform in
the episode, left padding with mask 0). Per step the segment holds:

- ``obs``, ``act`` — gathered from a *row dataset*: any of this package's device-resident or
  disk-backed datasets (:class:`~tianshou_offline.algorithms.continuous.dataset.TransitionDataset`,
  :class:`~tianshou_offline.algorithms.discrete.dataset.FrameDataset`, or
  :class:`~tianshou_offline.algorithms.discrete.streaming.StreamingFrameDataset` for a buffer
  whose frames stay on disk), so observations are normalised, actions mapped, frames stacked
  exactly as the other algorithms see them;
- ``rtg`` — the return-to-go ``R̂_t = Σ_{t' ≥ t} r_{t'}`` (undiscounted, to the end of the
  stored episode: a truncated episode contributes the rewards it holds), divided by
  ``rtg_scale``;
- ``timesteps`` — ``t``, the step's index within its stored episode (0 at the episode's first
  stored row);
- ``mask`` — True for real steps, False for padding (padding holds zeros).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tianshou.data import ReplayBuffer

from tianshou_offline.algorithms.core import OfflineDataset, episode_starts, return_to_go

__all__ = ["SegmentDataset", "Segments", "episode_table"]


@dataclass(frozen=True, slots=True)
class Segments:
    """A mini-batch of B trajectory segments of K steps on the training device.

    :ivar obs: ``(B, K, *obs_shape)`` observations (as the row dataset gives them: normalised
        float32 vectors, or frame stacks in their storage dtype).
    :ivar act: ``(B, K, A)`` float32 actions in the policy's ``[−1, 1]`` range, or ``(B, K)``
        int64 discrete actions.
    :ivar rtg: ``(B, K)`` float32 returns-to-go divided by ``rtg_scale``.
    :ivar timesteps: ``(B, K)`` int64 step index within the episode.
    :ivar mask: ``(B, K)`` bool, True for real steps (padding is on the left).
    """

    obs: torch.Tensor
    act: torch.Tensor
    rtg: torch.Tensor
    timesteps: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return int(self.mask.shape[0])


def episode_table(buffer: ReplayBuffer, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The episode and timestep of each stored row, by the buffer's own episode links.

    One vectorised forward sweep along ``buffer.next`` from every episode start
    (:func:`~tianshou_offline.algorithms.core.episode_starts`): as many steps as the longest
    episode.

    :param rows: ``(N,)`` every stored row (``buffer.sample_indices(0)``).
    :returns: ``episode (N,)`` int64 (0, 1, … in the order of the episodes' first rows) and
        ``t (N,)`` int64, for ``rows`` in their given order.
    :raises ValueError: a row is not reached from an episode start (a corrupt buffer).
    """
    rows = np.asarray(rows, dtype=np.int64)
    size = int(rows.max()) + 1 if len(rows) else 0
    episode = np.full(size, -1, dtype=np.int64)
    t = np.zeros(size, dtype=np.int64)
    starts = np.sort(episode_starts(buffer))
    cur = starts
    ids = np.arange(len(starts), dtype=np.int64)
    step = 0
    while len(cur):
        episode[cur] = ids
        t[cur] = step
        nxt = np.asarray(buffer.next(cur), dtype=np.int64)
        alive = nxt != cur
        cur, ids = nxt[alive], ids[alive]
        step += 1
    out_ep, out_t = episode[rows], t[rows]
    if len(rows) and (out_ep < 0).any():
        raise ValueError(
            f"{int((out_ep < 0).sum())} stored rows are not reached from an episode start "
            "(buffer.prev/next disagree); expected a buffer with consistent episode links"
        )
    return out_ep, out_t


class SegmentDataset(OfflineDataset[Segments]):
    """Every stored step of a buffer as the start of a segment of ``context`` steps (see the
    module docstring). Build it with :meth:`from_buffer`.

    :param rows_dataset: gives ``obs`` and ``act`` of dataset positions (its ``gather``).
    :param position: ``(N,)`` the row dataset's position of each step, in episode order
        (the steps of an episode consecutive, in time order).
    :param remaining: ``(N,)`` steps left in the episode from each step (itself included).
    :param rtg: ``(N,)`` scaled return-to-go of each step.
    :param timesteps: ``(N,)`` timestep of each step.
    :param context: K.
    """

    __slots__ = ("_context", "_offsets", "_position", "_remaining", "_rows", "_rtg", "_t")

    def __init__(
        self,
        rows_dataset: OfflineDataset[Any],
        *,
        position: torch.Tensor,
        remaining: torch.Tensor,
        rtg: torch.Tensor,
        timesteps: torch.Tensor,
        context: int,
    ) -> None:
        if context < 1:
            raise ValueError(f"context={context}: expected >= 1")
        self._rows = rows_dataset
        self._position = position
        self._remaining = remaining
        self._rtg = rtg
        self._t = timesteps
        self._context = int(context)
        self._offsets = torch.arange(context, device=position.device)

    @property
    def context(self) -> int:
        """K, the segment length."""
        return self._context

    @property
    def rows(self) -> OfflineDataset[Any]:
        """The row dataset the observations and actions come from."""
        return self._rows

    def __len__(self) -> int:
        return int(self._position.shape[0])

    @property
    def device(self) -> torch.device:
        return self._position.device

    @property
    def nbytes(self) -> int:
        """Bytes of the segment tables and the row dataset."""
        own = sum(
            x.element_size() * x.numel()
            for x in (self._position, self._remaining, self._rtg, self._t)
        )
        return own + self._rows.nbytes

    def gather(self, pos: torch.Tensor) -> Segments:
        """The segments starting at steps ``pos`` (``(B,)`` int64, indices in episode order)."""
        k = self._context
        length = torch.clamp(self._remaining[pos], max=k)  # (B,)
        pad = k - length
        # slot i of a segment holds step pos + i − pad; slots i < pad are padding
        mask = self._offsets.unsqueeze(0) >= pad.unsqueeze(1)  # (B, K)
        steps = pos.unsqueeze(1) + self._offsets.unsqueeze(0) - pad.unsqueeze(1)
        steps = torch.where(mask, steps, pos.unsqueeze(1))  # padding reads a real row
        b = self._rows.gather(self._position[steps.reshape(-1)])
        obs = b.obs.reshape(*steps.shape, *b.obs.shape[1:])
        act = b.act.reshape(*steps.shape, *b.act.shape[1:])
        obs = obs * mask.view(*mask.shape, *([1] * (obs.dim() - 2))).to(obs.dtype)
        act = act * mask.view(*mask.shape, *([1] * (act.dim() - 2))).to(act.dtype)
        return Segments(
            obs=obs,
            act=act,
            rtg=torch.where(mask, self._rtg[steps], 0.0),
            timesteps=torch.where(mask, self._t[steps], 0),
            mask=mask,
        )

    @classmethod
    def from_buffer(
        cls,
        buffer: ReplayBuffer,
        rows_dataset: OfflineDataset[Any],
        dataset_rows: np.ndarray,
        *,
        context: int,
        rtg_scale: float = 1.0,
    ) -> SegmentDataset:
        """Index the episodes of ``buffer``.

        :param rows_dataset: the row dataset built from ``buffer``.
        :param dataset_rows: ``(N,)`` the storage row at each position of ``rows_dataset``.
        :param context: K, steps per segment.
        :param rtg_scale: returns-to-go are divided by it (the authors: 1000 for MuJoCo, 1
            for Atari).
        :raises ValueError: an empty buffer, ``context < 1``, ``rtg_scale <= 0``.
        """
        if not rtg_scale > 0:
            raise ValueError(f"rtg_scale={rtg_scale}: expected > 0")
        rows = np.asarray(dataset_rows, dtype=np.int64)
        if len(rows) == 0:
            raise ValueError("the replay buffer is empty")
        episode, t = episode_table(buffer, rows)
        order = np.lexsort((t, episode))  # positions in episode order
        ep_sorted = episode[order]
        lengths = np.bincount(ep_sorted)
        remaining = lengths[ep_sorted] - t[order]
        rtg = return_to_go(buffer, 1.0)[rows[order]] / rtg_scale
        dev = rows_dataset.device
        return cls(
            rows_dataset,
            position=torch.as_tensor(order, dtype=torch.int64, device=dev),
            remaining=torch.as_tensor(remaining, dtype=torch.int64, device=dev),
            rtg=torch.as_tensor(rtg, dtype=torch.float32, device=dev),
            timesteps=torch.as_tensor(t[order], dtype=torch.int64, device=dev),
            context=context,
        )
