"""The typed-stats base of the discrete offline algorithms.

Statistics are generic exactly as for the continuous algorithms
(:mod:`tianshou_offline.algorithms.continuous.base`): ``class MyCQL(DiscreteCQL[MyStats])``
adds a field and fills it in ``_extend_stats`` without copying the update.
"""

from __future__ import annotations

import copy
import logging
import time
import typing
from abc import ABC, abstractmethod
from typing import Any, Generic, cast

import numpy as np
import torch
from tianshou.algorithm.algorithm_base import OfflineAlgorithm, TrainingStats
from tianshou.data import ReplayBuffer
from tianshou.data.buffer.buffer_base import TBuffer
from tianshou.data.types import RolloutBatchProtocol
from tianshou.utils.torch_utils import torch_train_mode
from torch import nn
from typing_extensions import TypeVar

from tianshou_offline.algorithms._optim import FastStep, prefer_fused, zero_grad
from tianshou_offline.algorithms.core import resolve_stats_type
from tianshou_offline.algorithms.discrete.dataset import DiscreteTransitions, FrameDataset
from tianshou_offline.algorithms.discrete.policies import DiscretePolicy

log = logging.getLogger(__name__)

TStats = TypeVar("TStats", bound=TrainingStats)
TDiscretePolicy = TypeVar("TDiscretePolicy", bound=DiscretePolicy)

__all__ = ["DiscreteOfflineAlgorithm"]


class _FastOptimizer(OfflineAlgorithm.Optimizer):
    """Tianshou's optimizer wrapper (``step(loss)``: zero the gradients, backpropagate, clip,
    step) with the short paths of :mod:`~tianshou_offline.algorithms._optim` — the same
    update with less fixed cost per call. Tianshou's ``_create_optimizer`` builds it through
    the algorithm's ``Optimizer`` attribute."""

    def __init__(
        self, optim: torch.optim.Optimizer, module: nn.Module, max_grad_norm: float | None = None
    ) -> None:
        super().__init__(optim, module, max_grad_norm=max_grad_norm)
        self._params = list(module.parameters())
        prefer_fused(optim, self._params)
        self._fast_step = FastStep(optim)

    def step(
        self, loss: torch.Tensor, retain_graph: bool | None = None, create_graph: bool = False
    ) -> None:
        zero_grad(self._params)
        torch.autograd.backward(loss, retain_graph=retain_graph, create_graph=create_graph)
        if self._max_grad_norm is not None:
            nn.utils.clip_grad_norm_(self._params, max_norm=self._max_grad_norm)
        self._fast_step()


class DiscreteOfflineAlgorithm(
    OfflineAlgorithm[TDiscretePolicy], Generic[TDiscretePolicy, TStats], ABC
):
    """Base of the discrete offline algorithms: device-resident frame-indexed sampling,
    periodic hard target updates and typed statistics.

    Subclasses implement ``_update_with_batch(batch) -> TStats`` (the whole update, in the
    order of the paper) and set :attr:`gamma` / :attr:`n_step` for the dataset's targets.
    Training goes through Tianshou: ``algorithm.run_training(OfflineTrainerParams(...))``;
    ``process_buffer`` (called once by Tianshou's ``OfflineTrainer``) builds the
    :class:`FrameDataset`.

    :param policy: the acting policy.
    """

    gamma: float = 0.99
    n_step: int = 1
    Optimizer = _FastOptimizer
    """The wrapper Tianshou's ``_create_optimizer`` builds (fused Adam, short step path)."""

    def __init__(self, *, policy: TDiscretePolicy) -> None:
        super().__init__(policy=policy)
        self._dataset: FrameDataset | None = None
        self._dataset_key: int | None = None
        self._stats_type: type[TStats] | None = None
        self._num_updates = 0
        self._modules_cache: list[nn.Module] | None = None

    @property
    def device(self) -> torch.device:
        return self.policy.device

    @property
    def num_updates(self) -> int:
        """Gradient steps taken so far."""
        return self._num_updates

    @property
    def stats_type(self) -> type[TStats]:
        """The ``TrainingStats`` class this algorithm returns (the type argument of its class,
        see :func:`~tianshou_offline.algorithms.core.resolve_stats_type`)."""
        if self._stats_type is None:
            found: type[Any] | None = None
            for arg in typing.get_args(getattr(self, "__orig_class__", None)):
                if found is None and isinstance(arg, type) and issubclass(arg, TrainingStats):
                    found = arg
            self._stats_type = cast(type[TStats], found or resolve_stats_type(type(self)))
        return self._stats_type

    @staticmethod
    def _make_target(module: nn.Module) -> nn.Module:
        """A frozen copy of ``module`` (the lagged target network)."""
        target = copy.deepcopy(module)
        target.requires_grad_(False)
        target.eval()
        return target

    def process_buffer(self, buffer: TBuffer) -> TBuffer:
        """Build the device-resident dataset (called once by Tianshou's ``OfflineTrainer``)."""
        assert isinstance(buffer, ReplayBuffer)
        self._prepare(buffer)
        return buffer

    def _prepare(self, buffer: ReplayBuffer) -> FrameDataset:
        dataset = FrameDataset.from_buffer(
            buffer,
            device=self.device,
            gamma=self.gamma,
            n_step=self.n_step,
            num_actions=self.policy.num_actions,
        )
        self._dataset, self._dataset_key = dataset, id(buffer)
        log.info(
            "%s: %d transitions, %.1f MB on %s (n_step=%d)",
            type(self).__name__,
            len(dataset),
            dataset.nbytes / 1e6,
            dataset.device,
            self.n_step,
        )
        return dataset

    def dataset_for(self, buffer: ReplayBuffer) -> FrameDataset:
        """The prepared dataset of ``buffer`` (built now if ``process_buffer`` was not called)."""
        if self._dataset is None or self._dataset_key != id(buffer):
            return self._prepare(buffer)
        return self._dataset

    def update(self, buffer: ReplayBuffer, sample_size: int | None) -> TStats:
        """One gradient step on ``sample_size`` transitions sampled from ``buffer``'s dataset.

        Same contract as Tianshou's ``OfflineAlgorithm.update`` (must run within a training
        step; ``sample_size`` None or 0 uses the whole buffer, shuffled).
        """
        if not self.policy.is_within_training_step:
            raise RuntimeError(
                "update() was called outside of a training step; use Tianshou's trainer or "
                "tianshou.utils.torch_utils.policy_within_training_step(algorithm.policy)"
            )
        start = time.perf_counter()
        dataset = self.dataset_for(buffer)
        batch = dataset.sample(sample_size) if sample_size else dataset.all()
        if self._all_in_train_mode():
            stats = self._update_with_batch(batch)
        else:
            with torch_train_mode(self):
                stats = self._update_with_batch(batch)
        self._num_updates += 1
        for scheduler in self.lr_schedulers:
            scheduler.step()
        stats.train_time = time.perf_counter() - start
        return stats

    def _all_in_train_mode(self) -> bool:
        """Whether every submodule is already in training mode (the usual case between
        updates), so that switching modes — a recursive walk with costly attribute sets —
        can be skipped."""
        if self._modules_cache is None:
            self._modules_cache = list(self.modules())
        return all(m.training for m in self._modules_cache)

    def _as_transitions(
        self, batch: RolloutBatchProtocol | DiscreteTransitions
    ) -> DiscreteTransitions:
        """Convert a Tianshou numpy ``Batch`` (one-step targets) into
        :class:`DiscreteTransitions` on the device; :class:`DiscreteTransitions` pass through."""
        if isinstance(batch, DiscreteTransitions):
            return batch
        dev = self.device
        terminated = np.asarray(batch.terminated, dtype=np.float32)

        def obs(x: Any) -> torch.Tensor:
            t = torch.as_tensor(np.asarray(x))
            return (t if t.dtype == torch.uint8 else t.to(torch.float32)).to(dev)

        return DiscreteTransitions(
            obs=obs(batch.obs),
            act=torch.as_tensor(np.asarray(batch.act).reshape(-1), dtype=torch.long, device=dev),
            rew=torch.as_tensor(np.asarray(batch.rew, dtype=np.float32), device=dev),
            obs_next=obs(batch.obs_next),
            discount=torch.as_tensor(self.gamma * (1.0 - terminated), device=dev),
            terminated=torch.as_tensor(terminated, device=dev),
        )

    @abstractmethod
    def _update_with_batch(self, batch: RolloutBatchProtocol | DiscreteTransitions) -> TStats:
        """The algorithm's update on one mini-batch; returns its typed statistics.

        :param batch: device-resident :class:`DiscreteTransitions` (or a Tianshou numpy
            ``Batch``, converted with :meth:`_as_transitions`).
        """

    def _extend_stats(self, stats: TStats, step: Any) -> None:
        """Hook for subclasses: fill in extra statistics fields from the step's tensors."""
