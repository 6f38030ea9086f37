"""Offline → online fine-tuning: continue an offline algorithm online with Tianshou's
``OffPolicyTrainer`` and ``Collector``, every mini-batch mixing offline and online data.

:class:`OnlineFineTuning` is a Tianshou ``OffPolicyAlgorithm`` that wraps a trained (or
checkpoint-loaded) offline algorithm — :class:`~tianshou_offline.algorithms.CQL` (with
``calibrated=True``: Cal-QL, Nakamoto et al. 2023), :class:`~tianshou_offline.algorithms.TD3BC`,
or any continuous algorithm of this package — and reuses its networks, losses, optimizers and
gradient steps unchanged. Only where the mini-batch comes from changes::

    batch = [ round(ρ·B) transitions drawn uniformly from the offline data  (device-resident)
            | B − round(ρ·B) transitions drawn uniformly from the online replay buffer ]

with ρ = ``offline_ratio``: the "symmetric sampling" of RLPD (Ball, Smith, Kostrikov &
Levine 2023, arXiv:2302.02948; ρ = 0.5) and of Cal-QL's fine-tuning phase (Nakamoto et al.
2023, which mixes offline and online data in each batch). ρ = 1 keeps training on the offline
data only (online data is only collected), ρ = 0 trains on the online data only (the offline
data is then the initialisation only). While the online buffer is empty the whole batch is
offline. The offline data stays where the offline algorithm put it (its device-resident
:class:`~tianshou_offline.algorithms.TransitionDataset`); the online buffer is Tianshou's own
``ReplayBuffer``, filled by the training ``Collector``.

Exploration: a deterministic actor (TD3+BC) explores with the noise set on its policy
(``policy.exploration_noise``, e.g. Tianshou's ``GaussianNoise(sigma=0.1)``; the wrapper sets
it from ``exploration_noise``) when the training collector is made with
``exploration_noise=True``; a Gaussian policy (CQL) samples within training steps.

Deliberate differences from the fine-tuning phases of the papers: the offline algorithm's
hyperparameters are kept as they were offline (the conservative weight of CQL, the BC weight
of TD3+BC) — change them on the wrapped algorithm before training if wanted; no separate
warm-up of the online buffer (the trainer's first collection step plays that role).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Generic, TypeVar

import torch
from tianshou.algorithm.algorithm_base import OffPolicyAlgorithm, TrainingStats
from tianshou.data import ReplayBuffer
from tianshou.data.types import RolloutBatchProtocol
from tianshou.exploration import GaussianNoise

from tianshou_offline.algorithms.continuous.base import OfflineAlgorithmBase
from tianshou_offline.algorithms.continuous.dataset import Transitions
from tianshou_offline.algorithms.continuous.policies import ContinuousPolicy
from tianshou_offline.algorithms.core import OfflineDataset

__all__ = ["OnlineFineTuning", "cat_batches"]

TPolicy = TypeVar("TPolicy", bound=ContinuousPolicy)
TStats = TypeVar("TStats", bound=TrainingStats)
TTransitions = TypeVar("TTransitions", bound=Transitions)


def cat_batches(parts: list[TTransitions]) -> TTransitions:
    """Concatenate mini-batches of one kind along the batch dimension (every tensor field)."""
    if len(parts) == 1:
        return parts[0]
    kind = type(parts[0])
    if any(type(p) is not kind for p in parts):
        raise TypeError(f"cannot concatenate {sorted({type(p).__name__ for p in parts})}")
    return kind(
        **{
            f.name: torch.cat([getattr(p, f.name) for p in parts], dim=0)
            for f in dataclasses.fields(kind)
        }
    )


class OnlineFineTuning(OffPolicyAlgorithm[TPolicy], Generic[TPolicy, TStats]):
    """An offline algorithm continued online (see the module docstring).

    ``algorithm.run_training(OffPolicyTrainerParams(training_collector=Collector(algorithm,
    envs, ReplayBuffer(N), exploration_noise=True), ...))``; each gradient step is the
    offline algorithm's own (:meth:`~tianshou_offline.algorithms.core.OfflineAlgorithmCore.update_on`),
    so its statistics, step count and learning-rate schedules continue. Save the run with
    ``algorithm.offline.state_dict()``: a checkpoint of the offline algorithm, loadable
    by the offline examples' ``--resume-path``.

    :param offline: the offline algorithm (its policy acts and is trained).
    :param offline_buffer: the offline data (any Tianshou ``ReplayBuffer``, e.g. from
        ``tianshou_offline.load_buffer``).
    :param offline_ratio: ρ, the share of each mini-batch drawn from the offline data.
    :param exploration_noise: σ of Gaussian noise (in the policy's ``[−1, 1]`` range) on the
        policy's actions during collection; None leaves ``policy.exploration_noise`` as it is.
    """

    def __init__(
        self,
        *,
        offline: OfflineAlgorithmBase[TPolicy, TStats],
        offline_buffer: ReplayBuffer,
        offline_ratio: float = 0.5,
        exploration_noise: float | None = None,
    ) -> None:
        super().__init__(policy=offline.policy)
        if not 0.0 <= offline_ratio <= 1.0:
            raise ValueError(f"offline_ratio={offline_ratio}: expected 0 <= ratio <= 1")
        if len(offline_buffer) == 0 and offline_ratio > 0:
            raise ValueError("offline_buffer is empty; expected the offline data")
        self.offline = offline
        self.offline_ratio = float(offline_ratio)
        self._offline_buffer = offline_buffer
        if exploration_noise is not None:
            self.policy.exploration_noise = GaussianNoise(sigma=float(exploration_noise))
        self.last_offline_share = float("nan")
        """The share of offline transitions in the latest mini-batch."""

    @property
    def offline_dataset(self) -> OfflineDataset[Transitions]:
        """The offline data on the device (prepared once, as by ``process_buffer``)."""
        return self.offline.dataset_for(self._offline_buffer)

    def split(self, batch_size: int, online_size: int) -> tuple[int, int]:
        """``(offline, online)`` transitions of a mini-batch of ``batch_size`` when the online
        buffer holds ``online_size``: ``round(ρ·B)`` offline, all offline while it is empty."""
        if online_size == 0:
            return batch_size, 0
        n_off = round(self.offline_ratio * batch_size)
        return n_off, batch_size - n_off

    def sample(self, buffer: ReplayBuffer, batch_size: int) -> Transitions:
        """A mixed mini-batch: offline rows first, then online rows from ``buffer``."""
        n_off, n_on = self.split(batch_size, len(buffer))
        parts: list[Transitions] = []
        if n_off:
            parts.append(self.offline_dataset.sample(n_off))
        if n_on:
            parts.append(self.offline.online_transitions(buffer, buffer.sample_indices(n_on)))
        self.last_offline_share = n_off / batch_size
        return cat_batches(parts)

    def update(self, buffer: ReplayBuffer, sample_size: int | None) -> TStats:
        """One gradient step of the offline algorithm on a mixed mini-batch (Tianshou's
        ``OffPolicyTrainer`` calls it with the collector's buffer and its batch size).

        :raises ValueError: ``sample_size`` is None or 0 (a whole-buffer update has no
            defined mix).
        """
        if not sample_size:
            raise ValueError("OnlineFineTuning.update: expected a batch size >= 1")
        start = time.perf_counter()
        return self.offline.update_on(self.sample(buffer, sample_size), start=start)

    def _update_with_batch(self, batch: RolloutBatchProtocol) -> TStats:
        """Tianshou's batch path: the offline algorithm's update on an online batch."""
        stats: TStats = self.offline._update_with_batch(batch)
        return stats

    def get_extra_state(self) -> dict[str, Any]:
        return {"offline_ratio": self.offline_ratio}

    def set_extra_state(self, state: Any) -> None:
        if isinstance(state, dict) and "offline_ratio" in state:
            self.offline_ratio = float(state["offline_ratio"])
