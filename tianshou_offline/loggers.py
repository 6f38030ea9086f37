"""The loggers of a training run (the example scripts, the grid's cells): TensorBoard, Weights
& Biases, or none, behind Tianshou's logger interface (``tianshou.utils.BaseLogger``), so that
Tianshou's trainers write to them unchanged.

:class:`WandbLogger` calls ``wandb.init`` / ``wandb.log`` directly (Tianshou's own
``WandbLogger`` syncs a TensorBoard directory, and TensorBoard brings TensorFlow along). Every
scope Tianshou logs keeps its own step axis, as in TensorBoard: ``update/*`` (the typed training
statistics) against ``update/update_step`` (gradient steps), ``test/*`` (the test returns) and
``training/*`` against ``*/env_step``, ``info/*`` against ``info/epoch``
(``wandb.define_metric``). The run's settings are its config; the final evaluation goes into
its summary (:meth:`WandbLogger.log_summary`). ``wandb`` is imported when such a logger is
made, never with this module (``pip install 'tianshou-offline[wandb]'``); ``WANDB_MODE=offline``
writes the run under ``dir/wandb/`` without a network.

Importing this module imports Tianshou (and through it TensorBoard): callers that must keep
TensorFlow out of their process set TensorBoard's marker first, as the examples and the grid do.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from numbers import Number
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tianshou.utils import BaseLogger

from tianshou_offline.errors import MissingDependencyError

log = logging.getLogger(__name__)

LoggerKind = Literal["tensorboard", "wandb", "none"]
"""Where a run's statistics go."""


@dataclass(frozen=True)
class WandbSettings:
    """Where a run goes in Weights & Biases."""

    project: str
    """The W&B project."""
    name: str | None = None
    """The run's name (default: W&B's)."""
    group: str | None = None
    """Runs shown together (the grid: the cell's group, every seed of one setting)."""
    entity: str | None = None
    """The W&B team or user (default: the logged-in user's)."""
    run_id: str | None = None
    """The run's id; a run started again with the same id continues it (``resume="allow"``).
    Default: derived from the run's directory (:func:`run_id_for`), so a resumed run
    continues its W&B run."""
    config: Mapping[str, Any] = field(default_factory=dict)
    """The run's settings (its flags, the grid cell's spec)."""


def run_id_for(directory: str | os.PathLike[str]) -> str:
    """A W&B run id (16 hex digits) that is the same for every run in ``directory``."""
    return hashlib.sha256(str(Path(directory).resolve()).encode()).hexdigest()[:16]


def flatten_log_data(log_data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Tianshou's nested statistics as ``{"a/b": number}``: nested dicts joined with ``/``,
    numbers kept, arrays and everything else dropped (as Tianshou's TensorBoard logger
    does)."""
    out: dict[str, Any] = {}
    for key, value in log_data.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten_log_data(value, name))
        elif isinstance(value, Number | np.number) and not isinstance(value, bool | np.bool_):
            out[name] = value.item() if isinstance(value, np.generic) else value
    return out


def _import_wandb() -> Any:
    try:
        import wandb
    except ImportError as e:
        raise MissingDependencyError(
            f"--logger wandb needs wandb (pip install 'tianshou-offline[wandb]'): {e}"
        ) from e
    return wandb


class WandbLogger(BaseLogger):
    """Tianshou's logger interface over one W&B run (see the module doc).

    :param settings: project, name, group, id and config of the run.
    :param directory: where W&B writes its files (``directory/wandb/``).
    :param update_interval: gradient steps between logged training statistics.
    :param save_interval: epochs between calls of the trainer's ``save_checkpoint_fn``.
    """

    def __init__(
        self,
        settings: WandbSettings,
        directory: str | os.PathLike[str],
        *,
        update_interval: int = 1000,
        save_interval: int | None = 1,
    ) -> None:
        super().__init__(update_interval=update_interval, save_interval=save_interval)
        wandb = _import_wandb()
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.run: Any = wandb.init(
            project=settings.project,
            entity=settings.entity,
            name=settings.name,
            group=settings.group,
            id=settings.run_id or run_id_for(directory),
            resume="allow",
            config=dict(settings.config),
            dir=str(directory),
            reinit="create_new",
        )
        self._axes: set[str] = set()
        self._last_save = -1

    def prepare_dict_for_logging(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return flatten_log_data(log_data)

    def write(self, step_type: str, step: int, data: dict[str, Any]) -> None:
        scope = step_type.split("/")[0]
        if step_type not in self._axes:  # each scope against its own step counter
            self._axes.add(step_type)
            self.run.define_metric(step_type)
            self.run.define_metric(f"{scope}/*", step_metric=step_type)
        self.run.log({step_type: step, **{f"{scope}/{k}": v for k, v in data.items()}})

    def save_data(
        self,
        epoch: int,
        env_step: int,
        update_step: int,
        save_checkpoint_fn: Callable[[int, int, int], str] | None = None,
    ) -> None:
        if (
            self.save_interval is not None
            and save_checkpoint_fn is not None
            and epoch - self._last_save >= self.save_interval
        ):
            self._last_save = epoch
            save_checkpoint_fn(epoch, env_step, update_step)

    def restore_data(self) -> tuple[int, int, int]:
        """Nothing to restore from W&B: a resumed run's counters come from its checkpoint
        (:func:`tianshou_offline.training.run_training`)."""
        return 0, 0, 0

    @staticmethod
    def restore_logged_data(log_path: str) -> dict[str, Any]:
        return {}

    def log_summary(self, values: Mapping[str, Any]) -> None:
        """Put ``values`` (the final evaluation) into the run's summary; None values are
        left out."""
        self.run.summary.update({k: v for k, v in values.items() if v is not None})

    def finalize(self) -> None:
        self.run.finish()


class DelegatingLogger(BaseLogger):
    """A logger that hands everything to ``inner`` (None: Tianshou's ``LazyLogger``); a
    subclass overrides what it adds (recording the test returns, checkpointing)."""

    def __init__(self, inner: BaseLogger | None) -> None:
        from tianshou.utils import LazyLogger

        self.inner: BaseLogger = inner if inner is not None else LazyLogger()
        wrapped = self.inner
        super().__init__(
            training_interval=wrapped.training_interval,
            test_interval=wrapped.test_interval,
            update_interval=wrapped.update_interval,
            info_interval=wrapped.info_interval,
            save_interval=wrapped.save_interval,
            exclude_arrays=wrapped.exclude_arrays,
        )

    def write(self, step_type: str, step: int, data: dict[str, Any]) -> None:
        self.inner.write(step_type, step, data)

    def prepare_dict_for_logging(self, log_data: dict[str, Any]) -> dict[str, Any]:
        prepared: dict[str, Any] = self.inner.prepare_dict_for_logging(log_data)
        return prepared

    def log_training_data(self, log_data: dict[str, Any], step: int) -> None:
        self.inner.log_training_data(log_data, step)

    def log_test_data(self, log_data: dict[str, Any], step: int) -> None:
        self.inner.log_test_data(log_data, step)

    def log_update_data(self, log_data: dict[str, Any], step: int) -> None:
        self.inner.log_update_data(log_data, step)

    def log_info_data(self, log_data: dict[str, Any], step: int) -> None:
        self.inner.log_info_data(log_data, step)

    def save_data(
        self,
        epoch: int,
        env_step: int,
        update_step: int,
        save_checkpoint_fn: Callable[[int, int, int], str] | None = None,
    ) -> None:
        self.inner.save_data(epoch, env_step, update_step, save_checkpoint_fn)

    def restore_data(self) -> tuple[int, int, int]:
        restored: tuple[int, int, int] = self.inner.restore_data()
        return restored

    def restore_counters(self, counters: tuple[int, int, int]) -> tuple[int, int, int]:
        """Tell the logger that writes (the innermost of a chain of delegating loggers) a run
        resumes at ``counters`` (epoch, env step, gradient step; from a checkpoint, not from
        its own records); returns them. The test counter is in environment steps, as the
        trainer logs tests: the resumed run's first test, a repeat of the checkpoint's, is
        not written again."""
        epoch, env_step, gradient_step = counters
        inner: Any = self.inner
        while isinstance(inner, DelegatingLogger):
            inner = inner.inner
        inner.last_save_step = epoch
        inner.last_log_update_step = gradient_step
        inner.last_log_training_step = inner.last_log_test_step = env_step
        return counters

    @staticmethod
    def restore_logged_data(log_path: str) -> dict[str, Any]:
        return {}

    def finalize(self) -> None:
        self.inner.finalize()


@contextmanager
def writer_thread_errors_not_printed() -> Iterator[None]:
    """While active, an ``OSError`` that ends TensorBoard's event-writing thread (a full
    disk, the file size limit, an I/O error) is not printed as a traceback: TensorBoard
    raises it again in the run's own thread at the writer's next call, where the caller's
    error boundary (``data.atomic.write_errors``) makes it one typed error. Other threads'
    exceptions go to the hook that was installed before."""
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if isinstance(args.exc_value, OSError) and type(args.thread).__module__.startswith(
            "tensorboard."
        ):
            log.debug("TensorBoard's writer thread stopped: %s", args.exc_value)
            return
        previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous


def make_logger(
    kind: LoggerKind,
    directory: str | os.PathLike[str],
    *,
    update_interval: int,
    wandb: WandbSettings | None = None,
    text: Mapping[str, str] | None = None,
    save_interval: int | None = 1,
) -> BaseLogger | None:
    """The run's logger writing into ``directory``: Tianshou's ``TensorboardLogger`` (with
    ``text``, e.g. the run's flags, as TensorBoard text), a :class:`WandbLogger` (``wandb``'s
    settings) or None (``none``).

    :raises MissingDependencyError: ``wandb`` without the wandb package.
    """
    if kind == "none":
        return None
    if kind == "wandb":
        if wandb is None:
            raise ValueError("make_logger('wandb', ...) needs its WandbSettings")
        return WandbLogger(
            wandb, directory, update_interval=update_interval, save_interval=save_interval
        )
    from tianshou.utils import TensorboardLogger
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(directory))
    for tag, value in (text or {}).items():
        writer.add_text(tag, value)
    return TensorboardLogger(writer, update_interval=update_interval, save_interval=save_interval)


def log_summary(logger: BaseLogger | None, values: Mapping[str, Any]) -> None:
    """The final evaluation into ``logger`` (a W&B run's summary, as ``eval/*`` scalars at
    step 0 in TensorBoard), then close it."""
    if logger is None:
        return
    if isinstance(logger, WandbLogger):
        logger.log_summary(values)
    else:
        numbers: dict[str, Any] = {k: v for k, v in values.items() if isinstance(v, int | float)}
        if numbers:
            logger.write("eval/final", 0, numbers)
    logger.finalize()
