"""Continuous-action data that stays on disk: mini-batches gathered from a disk-backed buffer.

For a buffer whose observations stay in its files (one with ``disk_columns()``, see
:mod:`~tianshou_offline.algorithms.streaming`; ``load_buffer(path, memory="disk")``) the
continuous algorithms build a :class:`StreamingTransitionDataset` instead of a
:class:`~tianshou_offline.algorithms.continuous.dataset.TransitionDataset`: no observation is
copied to device tables; the shared prefetch thread
(:class:`~tianshou_offline.algorithms.streaming.Prefetcher`) gathers each mini-batch's
``obs`` and bootstrap ``obs_next`` rows from the mapped files (flat vectors or images, in
their stored dtype), maps its actions to the policy's range, and the main thread converts
the batch to float32 on the device and normalises it.

**The same batches as in RAM.** Positions come from the algorithm's
:class:`~tianshou_offline.algorithms.core.SampleStream`, as the in-RAM dataset's do; every
value is computed as that dataset computes it (the observation normaliser is fitted by the
same chunked passes, actions mapped element by element, n-step targets from
:func:`~tianshou_offline.algorithms.core.n_step_targets`), so for a seed an algorithm sees
identical mini-batches and computes identical losses from RAM and from disk
(``tests/data/test_out_of_core.py``).

**Resident memory** per transition, besides the buffer's own in-RAM columns (``act``,
``rew``, the flags): ``rew`` and ``discount`` (2 × 4 B float32, the n-step targets),
``terminated`` (1 B) and ``last`` (1 B: the offset of the n-step bootstrap transition) —
**10 B**. Actions are read from the buffer and mapped per batch, not copied. An algorithm's
extra batch fields are further tables (:meth:`StreamingTransitionDataset.with_columns`):
Cal-QL's return-to-go (4 B), FQE's ``π(s')`` (4·A B), ReBRAC's ``next_known`` (1 B; its
next action is read from the buffer's actions per batch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Self, cast

import numpy as np
import torch
from tianshou.data import ReplayBuffer

from tianshou_offline.algorithms.continuous.dataset import (
    Transitions,
    outside_rows,
    warn_if_outside,
)
from tianshou_offline.algorithms.continuous.policies import ContinuousPolicy
from tianshou_offline.algorithms.core import SampleStream, n_step_targets
from tianshou_offline.algorithms.streaming import (
    Prefetcher,
    RowSource,
    StreamingDataset,
    check_streaming_buffer,
    stored_obs_next,
)

__all__ = ["CHUNK", "StreamingTransitionDataset"]

CHUNK = 1 << 16
"""Transitions per step of the precomputation (bounds its temporaries to about 10 MB)."""

_FIELDS = frozenset(("pos", "obs", "obs_next", "act", "rew", "discount", "terminated"))
"""The keys of :meth:`StreamingTransitionDataset.gather_numpy` that are :class:`Transitions`'
fields (or its position); the others are an algorithm's extra fields."""


class StreamingTransitionDataset(StreamingDataset[Transitions]):
    """Every transition of a disk-backed buffer, observations gathered per mini-batch.

    Build it with :meth:`from_buffer`. :meth:`sample` returns the stream's next batch, made by
    a background thread (``prefetch`` batches ahead); :meth:`gather` gathers positions in the
    caller's thread. :meth:`close` stops the thread (also when the dataset is
    garbage-collected).
    """

    def __init__(
        self,
        *,
        obs: RowSource,
        obs_next: RowSource | None,
        indices: np.ndarray | None,
        last_delta: np.ndarray,
        done: np.ndarray,
        act: np.ndarray,
        rew: np.ndarray,
        discount: np.ndarray,
        terminated: np.ndarray,
        policy: ContinuousPolicy,
        stream: SampleStream,
        prefetch: int = 4,
    ) -> None:
        self._obs = obs
        self._obs_next = obs_next
        self._indices = indices
        self._last_delta = last_delta
        self._done = done
        self._act = act
        self._rew = rew
        self._discount = discount
        self._terminated = terminated
        self._policy = policy
        self.stream = stream
        self._prefetch = max(1, int(prefetch))
        self._n = len(rew)
        self._rows_total = int(obs.shape[0])
        self._worker: Prefetcher | None = None
        self._columns: dict[str, np.ndarray] = {}
        self._batch_type: Callable[..., Transitions] = Transitions
        self.last_positions = None

    # ------------------------------------------------------------------ OfflineDataset

    @property
    def device(self) -> torch.device:
        return self._policy.device

    @property
    def nbytes(self) -> int:
        """Bytes held in RAM by the dataset's own tables (the observations stay on disk)."""
        tables = [self._last_delta, self._rew, self._discount, self._terminated]
        tables += [*self._columns.values(), *([] if self._indices is None else [self._indices])]
        return sum(a.nbytes for a in tables)

    def with_columns(self, batch_type: Callable[..., Transitions], **columns: np.ndarray) -> Self:
        """Add per-transition ``columns`` (numpy, first dimension :func:`len`, in position
        order: see :meth:`storage_rows`) held in RAM and gathered with every batch; batches
        become ``batch_type(**fields, **columns)`` with each column a float32 tensor (an
        algorithm's extra batch fields: Cal-QL's return-to-go, FQE's ``π(s')``). The prefetch
        thread must not have started. Returns ``self``."""
        for name, column in columns.items():
            if len(column) != self._n:
                raise ValueError(f"column {name!r} has {len(column)} rows; expected {self._n}")
        self._columns.update(columns)
        self._batch_type = batch_type
        return self

    def storage_rows(self, pos: np.ndarray | None = None) -> np.ndarray:
        """The buffer's storage rows of positions ``pos`` (default: every position, in
        order) — int64."""
        if pos is None:
            return np.arange(self._n, dtype=np.int64) if self._indices is None else self._indices
        rows: np.ndarray = pos if self._indices is None else self._indices[pos]
        return rows

    def bootstrap_rows(self, pos: np.ndarray) -> np.ndarray:
        """The storage row of the last transition of each position's n-step window (the one
        its ``obs_next`` is bootstrapped from) — int64."""
        last: np.ndarray = self.storage_rows(pos) + self._last_delta[pos].astype(np.int64)
        return last

    # ------------------------------------------------------------------ gathering

    def will_need(self, pos: np.ndarray) -> None:
        """Ask the columns to start reading what :meth:`gather_numpy` of ``pos`` reads."""
        rows = pos if self._indices is None else self._indices[pos]
        last = rows + self._last_delta[pos]
        for col, at in ((self._obs, rows), (self._obs_next or self._obs, last)):
            advise = getattr(col, "will_need", None)
            if callable(advise):
                advise(at, span=2 if self._obs_next is None else 1)

    def gather_numpy(self, pos: np.ndarray) -> dict[str, np.ndarray]:
        """The transitions at positions ``pos`` as numpy arrays (in any thread): observations
        in their stored dtype, actions mapped to the policy's range (float32)."""
        rows = self.storage_rows(pos)
        last = self.bootstrap_rows(pos)
        if self._obs_next is not None:
            obs_next = self._obs_next.take(last)
        else:
            obs_next = self._obs.take(self.bootstrap_next_rows(last))
        act = np.asarray(self._act[rows], dtype=np.float32).reshape(len(pos), -1)
        return {
            "pos": pos,
            "obs": self._obs.take(rows),
            "obs_next": obs_next,
            "act": np.asarray(self._policy.map_action_inverse(act), dtype=np.float32),
            "rew": self._rew[pos],
            "discount": self._discount[pos],
            "terminated": self._terminated[pos],
            **{name: column[pos] for name, column in self._columns.items()},
        }

    def _to_device(self, b: dict[str, np.ndarray]) -> Transitions:
        dev = self.device
        norm = self._policy.obs_normalizer
        n = len(b["pos"])

        def obs(x: np.ndarray) -> torch.Tensor:
            t = torch.from_numpy(np.ascontiguousarray(x)).reshape(n, -1)
            with torch.no_grad():
                return cast(torch.Tensor, norm(t.to(torch.float32).to(dev, non_blocking=True)))

        def f32(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(x).to(torch.float32).to(dev, non_blocking=True)

        extra = {k: f32(v) for k, v in b.items() if k not in _FIELDS}
        return self._batch_type(
            obs=obs(b["obs"]),
            act=f32(b["act"]),
            rew=f32(b["rew"]),
            obs_next=obs(b["obs_next"]),
            discount=f32(b["discount"]),
            terminated=f32(b["terminated"]),
            **extra,
        )

    # ------------------------------------------------------------------ building

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
        prefetch: int = 4,
    ) -> Self:
        """Index every transition of a disk-backed ``buffer`` (see
        :func:`~tianshou_offline.algorithms.streaming.disk_columns`); the precomputation runs
        in chunks of 2¹⁶ transitions (bounded temporaries), the normaliser's fit in chunks of
        1 MiB (see :meth:`ObsNormalizer.fit`).

        :param policy: provides the device, the observation normaliser and the action mapping.
        :param fit_obs_normalizer: fit the policy's normaliser (if enabled) on the observations.
        :param stream: where mini-batch positions come from (default: a new stream).
        :param prefetch: batches the background thread prepares ahead.
        :raises ValueError: not a disk-backed buffer, empty, frame-stacked, shapes that do not
            match the policy, ``n_step`` out of range.
        """
        cols = check_streaming_buffer(buffer, n_step, "StreamingTransitionDataset")
        if int(getattr(buffer, "stack_num", 1)) != 1:
            raise ValueError(
                f"stack_num={buffer.stack_num}: the continuous algorithms read one observation "
                "per transition (store stacked frames as the observation, or load with stack_num=1)"
            )
        obs = cols["obs"]
        dim = int(np.prod(obs.shape[1:], dtype=np.int64))
        act_all = np.asarray(buffer.act)
        act_dim = int(np.prod(act_all.shape[1:], dtype=np.int64))
        if dim != policy.obs_dim or act_dim != policy.act_dim:
            raise ValueError(
                f"dataset obs/act sizes {dim}/{act_dim} do not match the policy's "
                f"observation/action spaces ({policy.obs_dim}/{policy.act_dim})"
            )
        n_rows = int(obs.shape[0])
        full = len(buffer) == n_rows  # every row is a transition: no index table
        indices = None if full else np.sort(np.asarray(buffer.sample_indices(0), dtype=np.int64))
        m = n_rows if indices is None else len(indices)
        if m == 0:
            raise ValueError("the replay buffer is empty")
        last_delta = np.empty(m, dtype=np.uint8)
        rew = np.empty(m, dtype=np.float32)
        discount = np.empty(m, dtype=np.float32)
        terminated = np.empty(m, dtype=np.uint8)
        outside = 0
        for a in range(0, m, CHUNK):
            b = min(m, a + CHUNK)
            rows = np.arange(a, b, dtype=np.int64) if indices is None else indices[a:b]
            outside += outside_rows(
                np.asarray(act_all[rows], dtype=np.float32).reshape(len(rows), -1),
                policy.action_space,
            )
            r, last, disc, term = n_step_targets(buffer, rows, gamma, n_step)
            last_delta[a:b] = last - rows
            rew[a:b], discount[a:b], terminated[a:b] = r, disc, term
        warn_if_outside(outside, m, policy.action_space)
        if fit_obs_normalizer:
            policy.obs_normalizer.fit(obs if indices is None else _Rows(obs, indices))
        dataset = cls(
            obs=obs,
            obs_next=stored_obs_next(buffer, cols),
            indices=indices,
            last_delta=last_delta,
            done=np.asarray(buffer.done, dtype=bool),
            act=act_all,
            rew=rew,
            discount=discount,
            terminated=terminated,
            policy=policy,
            stream=stream or SampleStream(),
            prefetch=prefetch,
        )
        dataset._log_built(prefetch)
        return dataset


class _Rows:
    """The rows ``indices`` of a column, as a column (for the normaliser's fit)."""

    def __init__(self, column: RowSource, indices: np.ndarray) -> None:
        self._column = column
        self._indices = indices
        self.shape = (len(indices), *column.shape[1:])

    def take(self, rows: np.ndarray) -> np.ndarray:
        return self._column.take(self._indices[rows])
