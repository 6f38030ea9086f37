"""Device-resident sampling: the mini-batch every update reads, the dataset it is drawn
from and the stream of mini-batch positions.

:class:`OfflineDataset` holds every transition of a replay buffer as tensors on the training
device; a kind (``TransitionDataset``, ``FrameDataset``) implements :meth:`~OfflineDataset.gather`
and sampling is shared (``torch.randint`` and indexing: no ``Batch``, no numpy, no per-step
conversion). :class:`SampleStream` draws mini-batch positions that a prefetch thread can draw
ahead and a checkpoint can hold. Re-exported by :mod:`~tianshou_offline.algorithms.core`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence, Sized
from dataclasses import dataclass
from typing import Generic

import torch
from typing_extensions import TypeVar

__all__ = [
    "OfflineDataset",
    "SampleStream",
    "TBatch",
    "TransitionBatch",
    "to_device_positions",
]

TBatch = TypeVar("TBatch", bound=Sized)
"""The mini-batch kind (``Transitions``, ``DiscreteTransitions``; the Decision Transformer's
``Segments``): anything with a length, the batch size."""


@dataclass(frozen=True, slots=True)
class TransitionBatch:
    """A mini-batch of transitions on the training device, batch size B — the fields every
    update reads. The kinds (``Transitions``, ``DiscreteTransitions``) give the shapes and
    dtypes of ``obs`` and ``act``.

    :ivar obs: ``(B, …)`` observations.
    :ivar act: ``(B, …)`` dataset actions.
    :ivar rew: ``(B,)`` float32 reward — the discounted n-step sum ``Σ_{k<m} γ^k r_{t+k}``.
    :ivar obs_next: ``(B, …)`` the observation to bootstrap from (``s_{t+m}``).
    :ivar discount: ``(B,)`` float32 bootstrap factor ``γ^m (1 − terminated)``: 0 after a true
        termination; a time-limit truncation still bootstraps.
    :ivar terminated: ``(B,)`` float32, 1.0 where the episode terminated within the m steps.
    """

    obs: torch.Tensor
    act: torch.Tensor
    rew: torch.Tensor
    obs_next: torch.Tensor
    discount: torch.Tensor
    terminated: torch.Tensor

    def __len__(self) -> int:
        return int(self.rew.shape[0])


class OfflineDataset(ABC, Generic[TBatch]):
    """Every transition of a replay buffer as device-resident tensors (``TransitionDataset``,
    ``FrameDataset``). A kind implements :meth:`gather`; sampling is shared."""

    __slots__ = ()

    @abstractmethod
    def __len__(self) -> int: ...

    @property
    @abstractmethod
    def device(self) -> torch.device:
        """Where the tensors live."""

    @property
    @abstractmethod
    def nbytes(self) -> int:
        """Bytes held by the dataset's tensors."""

    @abstractmethod
    def gather(self, pos: torch.Tensor) -> TBatch:
        """The transitions at positions ``pos`` (``(B,)`` int64 on :attr:`device`)."""

    def sample(self, batch_size: int) -> TBatch:
        """Uniformly sample ``batch_size`` transitions (with replacement, ``torch.randint``)."""
        return self.gather(torch.randint(len(self), (batch_size,), device=self.device))

    def all(self, shuffle: bool = True) -> TBatch:
        """All transitions as one batch (in random order when ``shuffle``)."""
        pos = (
            torch.randperm(len(self), device=self.device)
            if shuffle
            else torch.arange(len(self), device=self.device)
        )
        return self.gather(pos)


_GOLDEN = 0x9E3779B97F4A7C15
"""Odd 64-bit constant (2⁶⁴/φ) spreading batch numbers over generator seeds."""


class SampleStream:
    """Mini-batch positions, uniform with replacement, that a prefetch thread can draw ahead
    and a checkpoint can hold: batch ``k`` is ``torch.randint(n, (B,))`` from a CPU generator
    seeded with ``seed + k·0x9E3779B97F4A7C15`` (mod 2⁶⁴), so any batch can be drawn without
    the ones before it, in any thread, and the stream is two integers (:meth:`state`).

    ``seed`` is drawn from torch's global generator when the first batch is drawn
    (``torch.manual_seed`` makes runs repeatable); after that the stream consumes nothing from
    the global generator, so what an update draws (noise, dropout, random actions) does not
    move the batches. Used by the continuous and the discrete datasets in RAM and on disk
    (:class:`~tianshou_offline.algorithms.continuous.dataset.TransitionDataset`,
    :class:`~tianshou_offline.algorithms.continuous.streaming.StreamingTransitionDataset`,
    :class:`~tianshou_offline.algorithms.discrete.dataset.FrameDataset`,
    :class:`~tianshou_offline.algorithms.discrete.streaming.StreamingFrameDataset`): in RAM
    and on disk they draw the same batches for a seed.
    """

    def __init__(self) -> None:
        self.seed: int | None = None
        self.count = 0
        """Batches drawn (the next batch's number)."""
        self._gen = torch.Generator()

    def start(self, generator: torch.Generator | None = None) -> int:
        """The seed, drawn now if not drawn yet: from torch's global (CPU) generator, or from
        ``generator`` (a seed batch's per-seed generator standing in for it)."""
        if self.seed is None:
            device = None if generator is None else generator.device
            self.seed = int(torch.randint(2**62, (1,), generator=generator, device=device).item())
        return self.seed

    def positions_at(
        self, k: int, n: int, batch_size: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Batch ``k``'s ``(batch_size,)`` int64 positions in ``0..n-1`` (CPU); a thread other
        than the caller of :meth:`next` passes its own ``generator``."""
        g = self._gen if generator is None else generator
        g.manual_seed((self.start() + k * _GOLDEN) % 2**64)
        return torch.randint(n, (batch_size,), generator=g)

    def next(self, n: int, batch_size: int) -> torch.Tensor:
        """The next batch's positions (CPU); counts it."""
        pos = self.positions_at(self.count, n, batch_size)
        self.count += 1
        return pos

    def state(self) -> list[int]:
        """``[seed, count]`` (seed −1 before the first draw), for checkpoints."""
        return [-1 if self.seed is None else self.seed, self.count]

    def load_state(self, state: Sequence[int]) -> None:
        """Continue from a :meth:`state` (in place: datasets holding the stream follow)."""
        seed, count = (int(x) for x in state)
        self.seed, self.count = (None if seed < 0 else seed), count


def to_device_positions(pos: torch.Tensor, device: torch.device) -> torch.Tensor:
    """CPU positions on ``device``: through pinned memory for CUDA, so that the copy does not
    wait for the device (a pageable host copy synchronises the stream)."""
    if device.type == "cpu":
        return pos
    if device.type == "cuda":
        pos = pos.pin_memory()
    return pos.to(device, non_blocking=True)
