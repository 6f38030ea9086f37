"""Shared pieces of the offline algorithms: typed-stats generics, device-resident sampling,
one-sync statistics, Polyak averaging and optimizer plumbing.

**Typed, generic statistics.** Every algorithm is generic in its ``TrainingStats``
dataclass: ``CQL[TStats]`` returns ``TStats`` from ``_update_with_batch``. A user extends the
statistics by subclassing both::

    @dataclass(kw_only=True)
    class MyCQLStats(CQLTrainingStats):
        q_gap: float = 0.0

    class MyCQL(CQL[MyCQLStats]):
        def _extend_stats(self, stats: MyCQLStats, step: CQLStep) -> None:
            stats.q_gap = float((step.q_random.mean() - step.q_data.mean()).item())

No update code is copied and ``mypy --strict`` accepts it: the stats class is resolved at
run time from the type argument (:func:`resolve_stats_type`), and each algorithm's TypeVar
defaults to its own stats class, so a plain ``CQL(...)`` is ``CQL[CQLTrainingStats]``.
Extra fields need a default (they are filled in by ``_extend_stats`` after construction).

**Device-resident sampling.** :meth:`OfflineAlgorithmBase.process_buffer` (called once by
Tianshou's ``OfflineTrainer``) copies the buffer's transitions into tensors on the
algorithm's device (:class:`TransitionDataset`): observations normalised when the policy
asks for it, actions mapped to the policy's ``[-1, 1]`` range, n-step rewards and bootstrap
discounts precomputed. :meth:`OfflineAlgorithmBase.update` then samples mini-batches with
``torch.randint`` and fancy indexing — no ``Batch``, no numpy, no per-step conversion.
"""

from __future__ import annotations

import logging
import time
import typing
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Generic, cast

import numpy as np
import torch
from tianshou.algorithm.algorithm_base import OfflineAlgorithm, TrainingStats
from tianshou.algorithm.optim import OptimizerFactory
from tianshou.data import ReplayBuffer
from tianshou.data.buffer.buffer_base import TBuffer
from tianshou.data.types import RolloutBatchProtocol
from tianshou.utils.torch_utils import torch_train_mode
from torch import nn
from typing_extensions import TypeVar

from tianshou_offline.algorithms._optim import FastStep, prefer_fused, zero_grad
from tianshou_offline.algorithms.continuous.dataset import TransitionDataset, Transitions
from tianshou_offline.algorithms.continuous.policies import ContinuousPolicy
from tianshou_offline.algorithms.core import (
    _stats_from_type_arg,
    make_target,
    resolve_stats_type,
)

log = logging.getLogger(__name__)

TStats = TypeVar("TStats", bound=TrainingStats)
TContinuousPolicy = TypeVar("TContinuousPolicy", bound=ContinuousPolicy)

__all__ = ["GradientStep", "OfflineAlgorithmBase"]


class GradientStep:
    """An optimizer that is stepped after a shared ``backward()``.

    Wraps a Tianshou ``Algorithm.Optimizer`` (so the algorithm's ``state_dict`` saves it and
    learning-rate schedulers work) and exposes ``zero_grad`` / ``step`` separately, with
    optional gradient-norm clipping. A module with its own ``clip_grad_norm_`` (a
    :class:`~tianshou_offline.algorithms.continuous.nets.CriticEnsemble` clips each member separately)
    is clipped with it.
    """

    def __init__(
        self,
        optim: torch.optim.Optimizer,
        params: Sequence[nn.Parameter],
        max_grad_norm: float | None,
        module: nn.Module | None = None,
    ) -> None:
        self.optim = optim
        self.params = list(params)
        self.max_grad_norm = max_grad_norm
        self._clip = getattr(module, "clip_grad_norm_", None)
        self._step = FastStep(optim)

    def zero_grad(self) -> None:
        zero_grad(self.params)

    def step(self) -> None:
        if self.max_grad_norm is not None:
            if callable(self._clip):
                self._clip(self.max_grad_norm)
            else:
                nn.utils.clip_grad_norm_(self.params, max_norm=self.max_grad_norm)
        self._step()


class OfflineAlgorithmBase(
    OfflineAlgorithm[TContinuousPolicy], Generic[TContinuousPolicy, TStats], ABC
):
    """Base of the offline algorithms: device-resident sampling and typed statistics.

    Subclasses implement ``_update_with_batch(batch) -> TStats`` (the whole update, in the
    order of the paper) and may set :attr:`n_step` / :attr:`gamma` for the dataset's
    n-step targets. Training goes through Tianshou: ``algorithm.run_training(
    OfflineTrainerParams(buffer=..., ...))``.

    :param policy: the acting policy (holds the observation normaliser).
    """

    gamma: float = 0.99
    n_step: int = 1

    def __init__(self, *, policy: TContinuousPolicy) -> None:
        super().__init__(policy=policy)
        self._dataset: TransitionDataset | None = None
        self._dataset_key: int | None = None
        self._stats_type: type[TStats] | None = None
        self._gradient_steps: list[GradientStep] = []
        self._target_pairs: list[tuple[nn.Module, nn.Module]] = []
        self._target_params: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None
        self._num_updates = 0

    # ------------------------------------------------------------------ plumbing

    @property
    def device(self) -> torch.device:
        """The device of the policy (and of the prepared dataset)."""
        return self.policy.device

    @property
    def num_updates(self) -> int:
        """Gradient steps completed so far (the current step reads the count before it)."""
        return self._num_updates

    @property
    def stats_type(self) -> type[TStats]:
        """The ``TrainingStats`` class this algorithm returns (see :func:`resolve_stats_type`)."""
        if self._stats_type is None:
            found = None
            for arg in typing.get_args(getattr(self, "__orig_class__", None)):
                found = found or _stats_from_type_arg(arg, TrainingStats)
            self._stats_type = cast(type[TStats], found or resolve_stats_type(type(self)))
        return self._stats_type

    def _make_optimizer(
        self,
        module: nn.Module | Sequence[nn.Parameter],
        factory: OptimizerFactory,
        max_grad_norm: float | None = None,
    ) -> GradientStep:
        """Create an optimizer from a Tianshou factory and register it with the algorithm
        (saved in ``state_dict``; its scheduler, if any, stepped after every update)."""
        if isinstance(module, nn.Module):
            holder = module
        else:
            holder = nn.Module()
            holder.params = nn.ParameterList(module)
        params = list(holder.parameters())
        wrapped = self._create_optimizer(holder, factory)
        inner = wrapped._optim
        prefer_fused(inner, params)
        step = GradientStep(inner, params, max_grad_norm, holder)
        self._gradient_steps.append(step)
        return step

    def _add_target(self, source: nn.Module) -> nn.Module:
        """Create a frozen copy of ``source`` that :meth:`_update_targets` keeps up to date.
        Assign the result to an attribute so that it is part of the ``state_dict``."""
        target = make_target(source)
        self._target_pairs.append((source, target))
        self._target_params = None
        return target

    @torch.no_grad()
    def _update_targets(self, tau: float) -> None:
        """Polyak-average every target network, ``θ' ← τ θ + (1 − τ) θ'``, in one fused call."""
        if self._target_params is None:
            src: list[torch.Tensor] = [p for s, _ in self._target_pairs for p in s.parameters()]
            tgt: list[torch.Tensor] = [p for _, t in self._target_pairs for p in t.parameters()]
            self._target_params = (tgt, src)
        targets, sources = self._target_params
        torch._foreach_lerp_(targets, sources, tau)

    def process_buffer(self, buffer: TBuffer) -> TBuffer:
        """Prepare the device-resident dataset (called once by Tianshou's ``OfflineTrainer``)."""
        assert isinstance(buffer, ReplayBuffer)
        self._prepare(buffer)
        return buffer

    def _prepare(self, buffer: ReplayBuffer) -> TransitionDataset:
        dataset = TransitionDataset.from_buffer(
            buffer, policy=self.policy, gamma=self.gamma, n_step=self.n_step
        )
        self._dataset, self._dataset_key = dataset, id(buffer)
        log.info(
            "%s: %d transitions on %s (n_step=%d)",
            type(self).__name__,
            len(dataset),
            dataset.device,
            self.n_step,
        )
        return dataset

    def dataset_for(self, buffer: ReplayBuffer) -> TransitionDataset:
        """The prepared dataset of ``buffer`` (prepared now if ``process_buffer`` was not called)."""
        if self._dataset is None or self._dataset_key != id(buffer):
            return self._prepare(buffer)
        return self._dataset

    def update(self, buffer: ReplayBuffer, sample_size: int | None) -> TStats:
        """One gradient step on a mini-batch of ``sample_size`` transitions from ``buffer``.

        Same contract as Tianshou's ``OfflineAlgorithm.update`` (must run within a training
        step; ``sample_size`` None or 0 uses the whole buffer), but the batch is drawn from
        the device-resident dataset.
        """
        if not self.policy.is_within_training_step:
            raise RuntimeError(
                "update() was called outside of a training step; use Tianshou's trainer or "
                "tianshou.utils.torch_utils.policy_within_training_step(algorithm.policy)"
            )
        start = time.perf_counter()
        dataset = self.dataset_for(buffer)
        batch = dataset.sample(sample_size) if sample_size else dataset.all()
        if self.training:
            stats = self._update_with_batch(batch)
        else:
            with torch_train_mode(self):
                stats = self._update_with_batch(batch)
        self._num_updates += 1
        for scheduler in self.lr_schedulers:
            scheduler.step()
        stats.train_time = time.perf_counter() - start
        return stats

    def _as_transitions(self, batch: RolloutBatchProtocol | Transitions) -> Transitions:
        """Convert a Tianshou numpy ``Batch`` (as Tianshou's own update path passes) into
        :class:`Transitions` on the algorithm's device; :class:`Transitions` pass through."""
        if isinstance(batch, Transitions):
            return batch
        terminated = np.asarray(batch.terminated, dtype=np.float64)
        return TransitionDataset.from_arrays(
            policy=self.policy,
            obs=batch.obs,
            act=batch.act,
            rew=batch.rew,
            obs_next=batch.obs_next,
            discount=self.gamma * (1.0 - terminated),
            terminated=terminated,
        ).data

    @abstractmethod
    def _update_with_batch(self, batch: RolloutBatchProtocol | Transitions) -> TStats:
        """The algorithm's update on one mini-batch; returns its typed statistics.

        :param batch: device-resident :class:`Transitions` (or a Tianshou numpy ``Batch``,
            converted with :meth:`_as_transitions`).
        """

    def _extend_stats(self, stats: TStats, step: Any) -> None:
        """Hook for subclasses: fill in extra statistics fields from the step's tensors."""
