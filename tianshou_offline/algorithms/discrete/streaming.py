"""Discrete-action data that stays on disk: mini-batches gathered from a disk-backed buffer.

For a disk-backed buffer (one with ``disk_columns()``, see
:mod:`~tianshou_offline.algorithms.streaming`) the discrete algorithms build a
:class:`StreamingFrameDataset` instead of a
:class:`~tianshou_offline.algorithms.discrete.dataset.FrameDataset`: no frame is copied to
device tables; each mini-batch's observation stacks are gathered from the mapped files by the
shared prefetch thread (:class:`~tianshou_offline.algorithms.streaming.Prefetcher`).

The batches equal what ``FrameDataset`` gathers for the same positions (frame stacks by
``buffer.prev``, exact-stack patches, n-step targets: see ``tests/data/test_out_of_core.py``).
What is held in RAM per transition: ``depth`` (1 B: how many earlier frames of its episode a
stack uses), ``last`` (1 B: offset of the n-step bootstrap transition), ``rew``, ``discount``,
``terminated`` (3 × 4 B float32) — 14 B, plus the buffer's own columns (``act`` is read from
the buffer, not copied).

Sampling is uniform with replacement over all transitions, positions drawn from the
algorithm's :class:`~tianshou_offline.algorithms.core.SampleStream` as ``FrameDataset`` draws
them: for a seed, the same mini-batches in RAM and from disk.
"""

from __future__ import annotations

import numpy as np
import torch
from tianshou.data import ReplayBuffer

from tianshou_offline.algorithms.core import SampleStream, n_step_targets
from tianshou_offline.algorithms.discrete.dataset import DiscreteTransitions
from tianshou_offline.algorithms.streaming import (
    Prefetcher,
    RowSource,
    StreamingDataset,
    check_streaming_buffer,
    disk_columns,
    stored_obs_next,
)

__all__ = ["RowSource", "StreamingFrameDataset", "disk_columns"]

_CHUNK = 1 << 20
"""Transitions per step of the precomputation (bounds its temporaries)."""


def _patches(buffer: ReplayBuffer, which: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    index = getattr(buffer, f"_{which}_patch_index", None)
    stacks = getattr(buffer, f"_{which}_patch_stacks", None)
    if index is None or stacks is None:
        return None, None
    return np.asarray(index), np.asarray(stacks)


class StreamingFrameDataset(StreamingDataset[DiscreteTransitions]):
    """Every transition of a disk-backed buffer, observations gathered per mini-batch.

    Build it with :meth:`from_buffer`. :meth:`sample` returns batches made by a background
    thread (``prefetch`` batches ahead); :meth:`gather` gathers positions in the caller's
    thread. :meth:`close` stops the thread (also when the dataset is garbage-collected).
    """

    def __init__(
        self,
        *,
        obs: RowSource,
        obs_next: RowSource | None,
        stack_num: int,
        indices: np.ndarray | None,
        depth: np.ndarray,
        last_delta: np.ndarray,
        done: np.ndarray,
        act: np.ndarray,
        rew: np.ndarray,
        discount: np.ndarray,
        terminated: np.ndarray,
        obs_patches: tuple[np.ndarray | None, np.ndarray | None],
        obs_next_patches: tuple[np.ndarray | None, np.ndarray | None],
        device: torch.device,
        stream: SampleStream,
        prefetch: int = 4,
    ) -> None:
        self._obs = obs
        self._obs_next = obs_next
        self._stack = int(stack_num)
        self._indices = indices
        self._depth = depth
        self._last_delta = last_delta
        self._done = done
        self._act = act
        self._rew = rew
        self._discount = discount
        self._terminated = terminated
        self._obs_patch_index, self._obs_patch_stacks = obs_patches
        self._next_patch_index, self._next_patch_stacks = obs_next_patches
        self._device = device
        self.stream = stream
        self._prefetch = max(1, int(prefetch))
        self._n = len(rew)
        self._rows_total = int(obs.shape[0])
        self._offsets = np.arange(self._stack - 1, -1, -1, dtype=np.int64)
        self._worker: Prefetcher | None = None
        self.last_positions = None  # storage rows where the buffer samples all rows
        self._float_obs = obs.dtype != np.uint8

    # ------------------------------------------------------------------ OfflineDataset

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def nbytes(self) -> int:
        """Bytes held in RAM by the dataset's own tables (the frames stay on disk)."""
        return sum(
            a.nbytes
            for a in (
                self._depth,
                self._last_delta,
                self._rew,
                self._discount,
                self._terminated,
                *([] if self._indices is None else [self._indices]),
            )
        )

    # ------------------------------------------------------------------ gathering

    def _stack_rows(self, rows: np.ndarray) -> np.ndarray:
        """``(B, S)`` storage rows of the stacks ending at ``rows`` (``(B,)`` when S = 1)."""
        if self._stack == 1:
            return rows
        back = np.minimum(self._offsets[None, :], self._depth[rows][:, None].astype(np.int64))
        out: np.ndarray = rows[:, None] - back
        return out

    @staticmethod
    def _apply(
        value: np.ndarray, rows: np.ndarray, index: np.ndarray | None, stacks: np.ndarray | None
    ) -> np.ndarray:
        if index is None or stacks is None:
            return value
        p = index[rows]
        mask = p >= 0
        if mask.any():
            value[mask] = stacks[p[mask]]
        return value

    def _obs_at(self, rows: np.ndarray) -> np.ndarray:
        value = self._obs.take(self._stack_rows(rows))
        if self._stack > 1:
            value = self._apply(value, rows, self._obs_patch_index, self._obs_patch_stacks)
        return value

    def source_rows(self, pos: np.ndarray) -> np.ndarray:
        """The storage rows a batch at ``pos`` reads (for read-ahead), flattened."""
        rows = pos if self._indices is None else self._indices[pos]
        last = rows + self._last_delta[pos]
        lo = rows - (self._depth[rows] if self._stack > 1 else 0)
        hi = np.minimum(last + 1, self._rows_total - 1)
        return np.concatenate([lo, hi - (self._depth[hi] if self._stack > 1 else 0)])

    def will_need(self, pos: np.ndarray) -> None:
        """Ask the source to start reading what :meth:`gather_numpy` of ``pos`` reads."""
        advise = getattr(self._obs, "will_need", None)
        if callable(advise):
            advise(self.source_rows(pos), span=self._stack + 1)

    def gather_numpy(self, pos: np.ndarray) -> dict[str, np.ndarray]:
        """The transitions at positions ``pos`` as numpy arrays (in any thread)."""
        rows = pos if self._indices is None else self._indices[pos]
        obs = self._obs_at(rows)
        last = rows + self._last_delta[pos].astype(np.int64)
        if self._obs_next is not None:
            obs_next = self._obs_next.take(self._stack_rows(last))
        else:
            obs_next = self._obs_at(self.bootstrap_next_rows(last))
            if self._stack > 1:
                obs_next = self._apply(
                    obs_next, last, self._next_patch_index, self._next_patch_stacks
                )
        return {
            "pos": pos,
            "obs": obs,
            "obs_next": obs_next,
            "act": np.asarray(self._act[rows]).reshape(-1).astype(np.int64),
            "rew": self._rew[pos],
            "discount": self._discount[pos],
            "terminated": self._terminated[pos],
        }

    def _to_device(self, b: dict[str, np.ndarray]) -> DiscreteTransitions:
        dev = self._device

        def obs(x: np.ndarray) -> torch.Tensor:
            t = torch.from_numpy(x)
            return (t.to(torch.float32) if self._float_obs else t).to(dev, non_blocking=True)

        def t(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(x).to(dev, non_blocking=True)

        return DiscreteTransitions(
            obs=obs(b["obs"]),
            act=t(b["act"]),
            rew=t(b["rew"]),
            obs_next=obs(b["obs_next"]),
            discount=t(b["discount"]),
            terminated=t(b["terminated"]),
        )

    # ------------------------------------------------------------------ building

    @classmethod
    def from_buffer(
        cls,
        buffer: ReplayBuffer,
        *,
        device: torch.device | str = "cpu",
        gamma: float = 0.99,
        n_step: int = 1,
        num_actions: int | None = None,
        stream: SampleStream | None = None,
        prefetch: int = 4,
    ) -> StreamingFrameDataset:
        """Index every transition of a disk-backed ``buffer`` (see :func:`disk_columns`);
        the precomputation runs in chunks of 2²⁰ transitions (bounded temporaries).

        :param stream: where mini-batch positions come from (default: a new stream).
        :param prefetch: batches the background thread prepares ahead.
        :raises ValueError: not a disk-backed buffer, empty, bad actions, ``n_step`` out of
            range.
        """
        cols = check_streaming_buffer(buffer, n_step, "StreamingFrameDataset")
        stack_num = int(buffer.stack_num)
        if stack_num > 256:
            raise ValueError(f"stack_num={stack_num}: expected at most 256")
        indices = np.asarray(buffer.sample_indices(0), dtype=np.int64)
        if len(indices) == 0:
            raise ValueError("the replay buffer is empty")
        indices.sort()
        n_rows = int(cols["obs"].shape[0])
        full = len(indices) == n_rows and bool(indices[0] == 0 and indices[-1] == n_rows - 1)
        # how many earlier frames each row's stack reaches back (Tianshou's prev chain)
        depth = np.zeros(n_rows, dtype=np.uint8)
        for a in range(0, n_rows, _CHUNK):
            cur = np.arange(a, min(n_rows, a + _CHUNK), dtype=np.int64)
            d = np.zeros(len(cur), dtype=np.uint8)
            for _ in range(stack_num - 1):
                p = np.asarray(buffer.prev(cur), dtype=np.int64)
                d += (p != cur).astype(np.uint8)
                cur = p
            depth[a : a + len(d)] = d
        m = len(indices)
        last_delta = np.empty(m, dtype=np.uint8)
        rew = np.empty(m, dtype=np.float32)
        discount = np.empty(m, dtype=np.float32)
        terminated = np.empty(m, dtype=np.float32)
        act_all = np.asarray(buffer.act)
        if act_all.ndim != 1 and not (act_all.ndim == 2 and act_all.shape[1] == 1):
            raise ValueError(
                f"dataset actions have shape {act_all.shape[1:]} per step; the discrete "
                "algorithms expect one integer action per step"
            )
        for a in range(0, m, _CHUNK):
            rows = indices[a : a + _CHUNK]
            acts = act_all[rows].reshape(-1)
            if not np.all(np.equal(np.mod(acts, 1), 0)):
                raise ValueError("dataset actions are not integers; expected discrete actions")
            if num_actions is not None and (acts.min() < 0 or acts.max() >= num_actions):
                raise ValueError(
                    f"dataset actions span {acts.min()}..{acts.max()}; expected "
                    f"0..{num_actions - 1} (the action space has {num_actions} actions)"
                )
            r, last, disc, term = n_step_targets(buffer, rows, gamma, n_step)
            b = a + len(rows)
            last_delta[a:b] = last - rows
            rew[a:b], discount[a:b], terminated[a:b] = r, disc, term
        dataset = cls(
            obs=cols["obs"],
            obs_next=stored_obs_next(buffer, cols),
            stack_num=stack_num,
            indices=None if full else indices,
            depth=depth,
            last_delta=last_delta,
            done=np.asarray(buffer.done, dtype=bool),
            act=act_all,
            rew=rew,
            discount=discount,
            terminated=terminated,
            obs_patches=_patches(buffer, "obs"),
            obs_next_patches=_patches(buffer, "obs_next"),
            device=torch.device(device),
            stream=stream or SampleStream(),
            prefetch=prefetch,
        )
        dataset._log_built(prefetch)
        return dataset
