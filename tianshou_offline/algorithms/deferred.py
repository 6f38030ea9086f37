"""Training statistics that stay on the device until they are read.

A gradient step that converts its statistics to Python floats waits for the device to finish
the step (``.item()``, ``.tolist()`` and ``.cpu()`` synchronise): on a GPU the host can then
no longer queue the next step while the current one runs. So a step of ours builds its typed
statistics with :func:`deferred_stats`: the values stay a device tensor, stacked once, and the
fields are filled in from it the first time anything reads one of them (one transfer for all
of them; :func:`resolve_stats` resolves many steps' statistics with one transfer).

Reading is transparent: ``stats.critic_loss``, ``dataclasses.asdict(stats)``, ``repr``,
pickling and Tianshou's ``get_loss_stats_dict`` all see the floats, equal to what converting
at the end of the step would have given. Only the raw instance dictionary (``vars(stats)``,
``stats.__dict__``) shows a pending object as it is stored: read fields, or ``asdict``. :class:`OfflineStatsTrainer` (the trainer
``run_training`` builds for our algorithms) keeps the step's statistics pending and hands them
to Tianshou's moving averages and logger every :attr:`~OfflineStatsTrainer.stats_interval`
steps and at the end of every epoch, each with its own gradient-step number: the logger writes
the same values at the same steps as Tianshou's ``OfflineTrainer``, one transfer per interval.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import torch
from tianshou.algorithm.algorithm_base import OfflineAlgorithm, TrainingStats
from tianshou.data.stats import EpochStats
from tianshou.trainer import OfflineTrainer, OfflineTrainerParams
from tianshou.utils.torch_utils import policy_within_training_step

__all__ = [
    "OfflineStatsTrainer",
    "OfflineTrainingStats",
    "deferred_build",
    "deferred_stats",
    "resolve_stats",
]

_PENDING = "_pending_on_device"


@dataclass(kw_only=True)
class OfflineTrainingStats(TrainingStats):
    """Base of our algorithms' statistics: a Tianshou ``TrainingStats`` whose float fields
    may still be pending on the device (built by :func:`deferred_stats`); reading any of
    them resolves them all (see the module docstring). Constructed directly, it is an
    ordinary dataclass."""

    if not typing.TYPE_CHECKING:  # unseen by mypy, which would accept any attribute name

        def __getattribute__(self, name: str) -> Any:
            # a pending field is not in the instance's __dict__ (a field with a default would
            # read the class's default): resolve them all on the first read of one
            pending = object.__getattribute__(self, "__dict__").get(_PENDING)
            if pending is not None and name in pending[0]:
                resolve_stats((self,))
            return object.__getattribute__(self, name)

    def _get_self_dict(self) -> dict[str, Any]:
        resolve_stats((self,))
        return {k: v for k, v in self.__dict__.items() if k != _PENDING}

    def __getstate__(self) -> dict[str, Any]:
        resolve_stats((self,))
        return {k: v for k, v in self.__dict__.items() if k != _PENDING}

    @property
    def pending(self) -> bool:
        """Whether some fields are still on the device (nothing has read them yet)."""
        return self.__dict__.get(_PENDING) is not None


TStats = TypeVar("TStats", bound=TrainingStats)


def deferred_stats(cls: type[TStats], values: Mapping[str, torch.Tensor | float | None]) -> TStats:
    """An instance of the stats dataclass ``cls`` (a subclass of
    :class:`OfflineTrainingStats`) with ``values``: tensors (0-d, any device) stay on their
    device, stacked into one tensor, until a field is read; floats and None are set as they
    are. Fields not in ``values`` take their defaults, as with the dataclass's constructor.

    :raises TypeError: ``cls`` is no :class:`OfflineTrainingStats`, a name is no field of
        it, or a field without a default is missing.
    """
    if not issubclass(cls, OfflineTrainingStats):
        raise TypeError(f"{cls.__name__}: expected a subclass of OfflineTrainingStats")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise TypeError(f"{cls.__name__}: no field {', '.join(unknown)}")
    stats = cls.__new__(cls)
    state = stats.__dict__
    names: list[str] = []
    tensors: list[torch.Tensor] = []
    for name, f in fields.items():
        if name in values:
            value = values[name]
            if isinstance(value, torch.Tensor):
                names.append(name)
                tensors.append(value.detach().float().reshape(()))
            else:
                state[name] = value
        elif f.default is not dataclasses.MISSING:
            state[name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            state[name] = f.default_factory()
        else:
            raise TypeError(f"{cls.__name__}: missing a value for the field {name!r}")
    state[_PENDING] = (tuple(names), torch.stack(tensors), None) if tensors else None
    return stats


def deferred_build(
    cls: type[TStats],
    names: Sequence[str],
    tensor: torch.Tensor,
    build: Callable[[list[float]], Mapping[str, Any]],
) -> TStats:
    """An instance of the stats dataclass ``cls`` (a subclass of
    :class:`OfflineTrainingStats`) whose fields ``names`` are ``build(values)``, ``values``
    being ``tensor``'s elements as Python floats, read the first time one of those fields is
    read (one transfer with the other pending statistics, as :func:`deferred_stats`); the
    other fields take their defaults. A seed batch's statistics are built this way: one
    ``(F, K)`` tensor per step, typed per-seed objects on the first read.

    :raises TypeError: ``cls`` is no :class:`OfflineTrainingStats` or a name is no field.
    """
    stats = deferred_stats(cls, {})
    unknown = sorted(set(names) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise TypeError(f"{cls.__name__}: no field {', '.join(unknown)}")
    state = stats.__dict__
    for name in names:
        state.pop(name, None)
    state[_PENDING] = (tuple(names), tensor.detach().float().reshape(-1), build)
    return stats


def resolve_stats(stats: Iterable[TrainingStats]) -> None:
    """Fill in the pending fields of every statistics object in ``stats`` with one transfer
    per device (a field set since, e.g. by ``_extend_stats``, keeps its value)."""
    groups: dict[torch.device, list[tuple[dict[str, Any], Any]]] = {}
    for s in stats:
        state = s.__dict__
        pending = state.get(_PENDING)
        if pending is not None:
            groups.setdefault(pending[1].device, []).append((state, pending))
    for group in groups.values():
        flat: list[float] = torch.cat([p[1] for _, p in group]).tolist()
        at = 0
        for state, (names, tensor, build) in group:
            values = flat[at : at + tensor.numel()]
            at += tensor.numel()
            filled = zip(names, values, strict=True) if build is None else build(values).items()
            for name, value in filled:
                state.setdefault(name, value)
            state[_PENDING] = None


class OfflineStatsTrainer(OfflineTrainer):
    """Tianshou's ``OfflineTrainer`` that reads the steps' statistics from the device every
    :attr:`stats_interval` steps (and at the end of every epoch) instead of after every
    step: the moving averages and the logger get every step's values, in order, with the
    step's own gradient-step number — the same writes as ``OfflineTrainer`` — while the
    device runs ahead of the host in between. ``run_training`` of our algorithms builds it.
    """

    stats_interval: int = 100
    """Gradient steps whose statistics are read with one transfer."""

    def __init__(self, algorithm: OfflineAlgorithm[Any], params: OfflineTrainerParams) -> None:
        super().__init__(algorithm, params)
        self._pending: list[tuple[int, TrainingStats]] = []
        self._epoch_steps = 0

    def execute_epoch(self) -> EpochStats:
        self._epoch_steps = 0
        return super().execute_epoch()

    def _training_step(self) -> OfflineTrainer._TrainingStepResult:
        with policy_within_training_step(self.algorithm.policy):
            stats = self.algorithm.update(sample_size=self.params.batch_size, buffer=self._buffer)
        self._pending.append((self._current_update_step, stats))
        self._epoch_steps += 1
        if (
            len(self._pending) >= self.stats_interval
            or self._epoch_steps >= self.params.epoch_num_steps
        ):
            self.flush_stats()
        self._policy_update_time += stats.train_time
        return self._TrainingStepResult(
            training_stats=stats, env_step_advancement=self.params.batch_size
        )

    def flush_stats(self) -> None:
        """Read the pending steps' statistics (one transfer) and pass each, in order, to the
        moving averages and the logger, as ``OfflineTrainer`` does after every step."""
        pending, self._pending = self._pending, []
        resolve_stats(s for _, s in pending)
        for step, stats in pending:
            stats.smoothed_loss = self._update_moving_avg_stats_and_get_averaged_data(
                stats.get_loss_stats_dict()
            )
            self._logger.log_update_data(asdict(stats), step)
