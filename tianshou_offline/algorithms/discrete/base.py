"""The base of the discrete-action algorithms: the shared core
(:mod:`tianshou_offline.algorithms.core`) on a frame-indexed :class:`FrameDataset` (or, for a
buffer whose observations stay on disk, a
:class:`~tianshou_offline.algorithms.discrete.streaming.StreamingFrameDataset`).

:meth:`DiscreteOfflineAlgorithm.process_buffer` (called once by Tianshou's
``OfflineTrainer``) indexes the buffer's transitions on the algorithm's device, each stored
observation row held once in its storage dtype; statistics are generic exactly as for the
continuous algorithms: ``class MyCQL(DiscreteCQL[MyStats])`` adds a field and fills it in
``_extend_stats`` without copying the update.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from tianshou.data import ReplayBuffer
from tianshou.data.types import RolloutBatchProtocol
from typing_extensions import TypeVar

from tianshou_offline.algorithms.core import OfflineAlgorithmCore, OfflineDataset, TStats
from tianshou_offline.algorithms.discrete.dataset import DiscreteTransitions, FrameDataset
from tianshou_offline.algorithms.discrete.policies import DiscretePolicy
from tianshou_offline.algorithms.discrete.streaming import StreamingFrameDataset, disk_columns

TDiscretePolicy = TypeVar("TDiscretePolicy", bound=DiscretePolicy)

__all__ = ["DiscreteOfflineAlgorithm"]


class DiscreteOfflineAlgorithm(
    OfflineAlgorithmCore[
        TDiscretePolicy, OfflineDataset[DiscreteTransitions], DiscreteTransitions, TStats
    ],
    ABC,
):
    """Base of the discrete offline algorithms: :class:`FrameDataset` sampling on the shared
    core (typed statistics, target networks — copied every N steps by the discrete
    algorithms — and gradient steps).

    Subclasses implement ``_update_with_batch(batch) -> TStats`` (the whole update, in the
    order of the paper) and set :attr:`gamma` / :attr:`n_step` for the dataset's targets.
    Training goes through Tianshou: ``algorithm.run_training(OfflineTrainerParams(...))``.

    :param policy: the acting policy.
    """

    @property
    def device(self) -> torch.device:
        """The device of the policy (and of the prepared dataset)."""
        return self.policy.device

    def _build_dataset(self, buffer: ReplayBuffer) -> OfflineDataset[DiscreteTransitions]:
        """A :class:`FrameDataset` on the device; for a disk-backed buffer (one whose
        observations stay in its files, see
        :func:`~tianshou_offline.algorithms.discrete.streaming.disk_columns`) a
        :class:`~tianshou_offline.algorithms.discrete.streaming.StreamingFrameDataset` that
        gathers each mini-batch from disk with a prefetch thread instead — the same batches
        for a seed (both draw from :attr:`sample_stream`)."""
        from_buffer: Callable[..., OfflineDataset[DiscreteTransitions]] = (
            FrameDataset.from_buffer
            if disk_columns(buffer) is None
            else StreamingFrameDataset.from_buffer
        )
        return from_buffer(
            buffer,
            device=self.device,
            gamma=self.gamma,
            n_step=self.n_step,
            num_actions=self.policy.num_actions,
            stream=self.sample_stream,
        )

    def _as_transitions(
        self, batch: RolloutBatchProtocol | DiscreteTransitions
    ) -> DiscreteTransitions:
        """Convert a Tianshou numpy ``Batch`` into :class:`DiscreteTransitions` on the device;
        :class:`DiscreteTransitions` pass through.

        The batch's n-step targets come from ``_preprocess_batch``; without them only
        ``n_step == 1`` is accepted (see ``_batch_targets``)."""
        if isinstance(batch, DiscreteTransitions):
            return batch
        dev = self.device
        rew, obs_next, discount, terminated = self._batch_targets(batch)

        def f32(x: Any) -> torch.Tensor:
            return torch.as_tensor(np.asarray(x, dtype=np.float32).reshape(-1), device=dev)

        def obs(x: Any) -> torch.Tensor:
            t = torch.as_tensor(np.asarray(x))
            return (t if t.dtype == torch.uint8 else t.to(torch.float32)).to(dev)

        return DiscreteTransitions(
            obs=obs(batch.obs),
            act=torch.as_tensor(np.asarray(batch.act).reshape(-1), dtype=torch.long, device=dev),
            rew=f32(rew),
            obs_next=obs(obs_next),
            discount=f32(discount),
            terminated=f32(terminated),
        )
