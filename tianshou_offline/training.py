"""Training runs that resume exactly: the checkpoint a run writes at each epoch end, and the
state a restarted run continues from, so that a run killed at any moment and restarted from
its last checkpoint ends with the same weights as one that was never interrupted (bit for
bit on CPU).

A checkpoint (:func:`save_training_checkpoint`, written atomically: a kill or a full disk
leaves the previous one) holds the algorithm's ``state_dict`` (networks, target networks,
optimizers; the package's algorithms add their gradient-step count and learning-rate
schedulers), the random generators of torch, numpy and Python (:func:`rng_state`), the
trainer's counters (epoch, environment steps, gradient steps) and whatever else the run
needs (``extra``). :func:`load_training_checkpoint` puts all of it back.

:func:`checkpointing_logger` wraps a run's Tianshou logger: it writes the checkpoint once
the epoch's test is done (Tianshou's own ``save_checkpoint_fn`` runs before that test, whose
episodes may draw from the global generators), and for a resumed run makes the trainer
(``resume_from_log=True``) start after the checkpoint's epoch and puts the generators back
after the test the trainer runs before its first epoch (which the interrupted run did not
run at that point).

Used by the example scripts (``examples/``); the grid (``scale/grid.py``) shares
:func:`rng_state`.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tianshou_offline.data.atomic import atomic_output, torch_save

FORMAT = "tianshou_offline.training/1"
"""The ``format`` of a training checkpoint."""


def rng_state() -> dict[str, Any]:
    """The global random generators of torch, numpy and Python, as tensors and plain values
    (loadable with ``torch.load(weights_only=True)``)."""
    import torch

    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "torch": torch.get_rng_state(),
        "numpy": [
            str(kind),
            torch.from_numpy(np.asarray(keys).astype(np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ],
        "python": [int(x) for x in random.getstate()[1]],
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Put back what :func:`rng_state` returned."""
    import torch

    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate((3, tuple(state["python"]), None))


@dataclass
class TrainingState:
    """Where a checkpointed run stood: the trainer's counters after the epoch it finished,
    the random generators then, and the run's ``extra`` state."""

    epoch: int = 0
    env_step: int = 0
    gradient_step: int = 0
    rng: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def counters(self) -> tuple[int, int, int]:
        return self.epoch, self.env_step, self.gradient_step


def save_training_checkpoint(
    path: str | os.PathLike[str],
    algorithm: Any,
    *,
    epoch: int,
    env_step: int,
    gradient_step: int,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``path`` (atomically, replacing the previous checkpoint): ``algorithm``'s
    ``state_dict``, the random generators now, the counters and ``extra`` (tensors, arrays
    of numbers, plain values: what ``torch.load(weights_only=True)`` reads).

    :raises OutputWriteError: it cannot be written; the previous checkpoint is kept.
    """
    payload = {
        "format": FORMAT,
        "algorithm": algorithm.state_dict(),
        "rng": rng_state(),
        "epoch": int(epoch),
        "env_step": int(env_step),
        "gradient_step": int(gradient_step),
        "extra": dict(extra or {}),
    }
    p = Path(path)
    with atomic_output(p, overwrite=True, tag="ckpt") as tmp:
        torch_save(payload, tmp)
    return p


def read_training_checkpoint(path: str | os.PathLike[str], *, device: Any = "cpu") -> Any:
    """The payload of ``path`` when it is a training checkpoint, else None (a weights-only
    file, another format, or a file torch cannot read)."""
    import torch

    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception:
        return None
    return state if isinstance(state, dict) and state.get("format") == FORMAT else None


def load_training_checkpoint(
    path: str | os.PathLike[str], algorithm: Any, *, device: Any = "cpu"
) -> TrainingState | None:
    """Put a checkpoint back: ``algorithm``'s state and the random generators; returns the
    counters, generators and ``extra`` (None: ``path`` is not a training checkpoint; nothing
    changed)."""
    state = read_training_checkpoint(path, device=device)
    if state is None:
        return None
    algorithm.load_state_dict(state["algorithm"])
    set_rng_state(state["rng"])
    return TrainingState(
        int(state["epoch"]), int(state["env_step"]), int(state["gradient_step"]),
        dict(state["rng"]), dict(state.get("extra") or {}),
    )  # fmt: skip


def checkpointing_logger(
    logger: Any,
    path: str | os.PathLike[str],
    algorithm: Any,
    *,
    resumed: TrainingState | None = None,
    extra: Callable[[], Mapping[str, Any]] | None = None,
) -> Any:
    """``logger`` (a Tianshou logger, or None for none) that writes the training checkpoint
    ``path`` (:func:`save_training_checkpoint`) after each epoch's test, with the epoch's
    counters and ``extra()``; for a run ``resumed`` from a checkpoint, its ``restore_data``
    returns the checkpoint's counters and the generators are put back after the trainer's
    first test. Everything else is the logger's own."""
    from tianshou.utils import BaseLogger, LazyLogger

    inner: Any = logger if logger is not None else LazyLogger()
    epoch_end: list[tuple[int, int, int]] = []  # counters of the epoch whose test is next
    pending_rng = [resumed.rng] if resumed is not None else []

    class CheckpointingLogger(BaseLogger):
        def write(self, step_type: str, step: int, data: dict[str, Any]) -> None:
            inner.write(step_type, step, data)

        def prepare_dict_for_logging(self, log_data: dict[str, Any]) -> dict[str, Any]:
            out: dict[str, Any] = inner.prepare_dict_for_logging(log_data)
            return out

        def log_training_data(self, log_data: dict[str, Any], step: int) -> None:
            inner.log_training_data(log_data, step)

        def log_test_data(self, log_data: dict[str, Any], step: int) -> None:
            inner.log_test_data(log_data, step)
            if pending_rng:  # the test before the resumed run's first epoch
                set_rng_state(pending_rng.pop())
            if epoch_end:
                epoch, env_step, gradient_step = epoch_end.pop()
                save_training_checkpoint(
                    path, algorithm, epoch=epoch, env_step=env_step,
                    gradient_step=gradient_step, extra=extra() if extra else None,
                )  # fmt: skip

        def log_update_data(self, log_data: dict[str, Any], step: int) -> None:
            inner.log_update_data(log_data, step)

        def log_info_data(self, log_data: dict[str, Any], step: int) -> None:
            inner.log_info_data(log_data, step)

        def save_data(
            self,
            epoch: int,
            env_step: int,
            update_step: int,
            save_checkpoint_fn: Callable[[int, int, int], str] | None = None,
        ) -> None:
            inner.save_data(epoch, env_step, update_step, save_checkpoint_fn)
            epoch_end[:] = [(epoch, env_step, update_step)]

        def finalize(self) -> None:
            inner.finalize()

        def restore_data(self) -> tuple[int, int, int]:
            if resumed is None:  # a run resumed from its logger's own records
                restored: tuple[int, int, int] = inner.restore_data()
                return restored
            epoch, env_step, gradient_step = resumed.counters
            inner.last_save_step = inner.last_log_test_step = epoch
            inner.last_log_update_step = gradient_step
            inner.last_log_training_step = env_step
            return epoch, env_step, gradient_step

        @staticmethod
        def restore_logged_data(log_path: str) -> dict[str, Any]:
            return {}

    return CheckpointingLogger()
