"""The base of the continuous-action algorithms: the shared core
(:mod:`tianshou_offline.algorithms.core`) on a :class:`TransitionDataset`.

:meth:`OfflineAlgorithmBase.process_buffer` (called once by Tianshou's ``OfflineTrainer``)
copies the buffer's transitions into tensors on the algorithm's device: observations
normalised when the policy asks for it, actions mapped to the policy's ``[-1, 1]`` range,
n-step rewards and bootstrap discounts precomputed.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Callable

import numpy as np
import torch
from tianshou.data import ReplayBuffer
from tianshou.data.types import RolloutBatchProtocol
from typing_extensions import TypeVar

from tianshou_offline.algorithms.continuous.dataset import TransitionDataset, Transitions
from tianshou_offline.algorithms.continuous.policies import ContinuousPolicy
from tianshou_offline.algorithms.continuous.streaming import StreamingTransitionDataset
from tianshou_offline.algorithms.core import (
    OfflineAlgorithmCore,
    OfflineDataset,
    TStats,
)
from tianshou_offline.algorithms.streaming import disk_columns

TContinuousPolicy = TypeVar("TContinuousPolicy", bound=ContinuousPolicy)

__all__ = ["OfflineAlgorithmBase"]


class OfflineAlgorithmBase(
    OfflineAlgorithmCore[TContinuousPolicy, OfflineDataset[Transitions], Transitions, TStats], ABC
):
    """Base of the continuous offline algorithms: :class:`TransitionDataset` sampling on the
    shared core (typed statistics, target networks, gradient steps).

    Subclasses implement ``_update_with_batch(batch) -> TStats`` (the whole update, in the
    order of the paper) and may set :attr:`n_step` / :attr:`gamma` for the dataset's
    n-step targets. Training goes through Tianshou: ``algorithm.run_training(
    OfflineTrainerParams(buffer=..., ...))``.

    Mini-batch positions come from the core's
    :class:`~tianshou_offline.algorithms.core.SampleStream` (:attr:`sample_stream`, saved in
    the ``state_dict``, so that a resumed run draws the batches the uninterrupted run would),
    whether the dataset is in RAM or streamed from a disk-backed buffer.

    :param policy: the acting policy (holds the observation normaliser).
    """

    @property
    def device(self) -> torch.device:
        """The device of the policy (and of the prepared dataset)."""
        return self.policy.device

    def _build_dataset(self, buffer: ReplayBuffer) -> OfflineDataset[Transitions]:
        """:meth:`transition_dataset` of ``buffer``."""
        return self.transition_dataset(buffer)

    def transition_dataset(
        self, buffer: ReplayBuffer, *, fit_obs_normalizer: bool = True
    ) -> TransitionDataset | StreamingTransitionDataset:
        """A :class:`TransitionDataset` on the device with this algorithm's n-step targets;
        for a disk-backed buffer (one whose observations stay in its files, see
        :func:`~tianshou_offline.algorithms.streaming.disk_columns`) a
        :class:`~tianshou_offline.algorithms.continuous.streaming.StreamingTransitionDataset`
        that gathers each mini-batch from disk with a prefetch thread instead — the same
        batches for a seed. Either draws from :attr:`sample_stream`.

        :param fit_obs_normalizer: fit the policy's normaliser (if enabled) on the data.
        """
        from_buffer: Callable[..., TransitionDataset | StreamingTransitionDataset] = (
            TransitionDataset.from_buffer
            if disk_columns(buffer) is None
            else StreamingTransitionDataset.from_buffer
        )
        return from_buffer(
            buffer,
            policy=self.policy,
            gamma=self.gamma,
            n_step=self.n_step,
            fit_obs_normalizer=fit_obs_normalizer,
            stream=self.sample_stream,
        )

    def _as_transitions(self, batch: RolloutBatchProtocol | Transitions) -> Transitions:
        """Convert a Tianshou numpy ``Batch`` (as Tianshou's own update path passes) into
        :class:`Transitions` on the algorithm's device; :class:`Transitions` pass through.

        The batch's n-step targets come from ``_preprocess_batch``; without them only
        ``n_step == 1`` is accepted (see ``_batch_targets``)."""
        if isinstance(batch, Transitions):
            return batch
        rew, obs_next, discount, terminated = self._batch_targets(batch)
        return TransitionDataset.from_arrays(
            policy=self.policy,
            obs=batch.obs,
            act=batch.act,
            rew=rew,
            obs_next=obs_next,
            discount=discount,
            terminated=terminated,
        ).data

    action_keys: tuple[str, ...] = ("act",)
    """The keys of the Tianshou batch (after :meth:`_preprocess_batch`) that hold dataset
    actions in the environment's units — every action column the update reads (ReBRAC adds
    its next action). :meth:`online_transitions` maps each of them from the policy's range."""

    def online_transitions(self, buffer: ReplayBuffer, indices: np.ndarray) -> Transitions:
        """The transitions at storage rows ``indices`` of a buffer that Tianshou's
        ``Collector`` filled with this algorithm's policy, as a mini-batch on the device with
        this algorithm's n-step targets (online fine-tuning).

        Such a buffer holds the policy's actions in the policy's range (``[−1, 1]``: the
        collector stores the policy's output, the environment got ``map_action`` of it),
        whereas offline data holds actions in the environment's units. Every action column
        the algorithm reads (:attr:`action_keys`, after :meth:`_preprocess_batch` attached
        its own) is converted here with ``map_action`` — the action the environment executed,
        clipped to the bounds — so the usual mapping back gives an online batch in the units
        of an offline one.
        """
        rows = np.asarray(indices, dtype=np.int64)
        batch = self._preprocess_batch(buffer[rows], buffer, rows)
        for key in self.action_keys:
            batch[key] = self.policy.map_action(batch[key])
        return self._as_transitions(batch)
