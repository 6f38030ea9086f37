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

:func:`run_training` runs Tianshou's trainer and writes the checkpoint at the end of each
epoch, once the epoch's test, best-policy save and logging are done (Tianshou's own
``save_checkpoint_fn`` runs before that test, whose episodes may draw from the global
generators), with the trainer's own state (:func:`trainer_state`: best test, moving averages
of the logged statistics, collector and logger counters, the test returns so far). A run
resumed from such a checkpoint starts after its epoch without the trainer's first test and
with the generators as they were: it trains, tests, saves and logs what the uninterrupted
run did after that epoch — when the tests do not depend on the tests before them
(:func:`reseeding_tests`).

Used by the example scripts (``examples/``); the grid (``scale/grid.py``) shares
:func:`rng_state`.
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import numpy as np

from tianshou_offline.data.atomic import atomic_output, output_lock, torch_save, write_errors

FORMAT = "tianshou_offline.training/1"
"""The ``format`` of a training checkpoint."""


def _pack_numpy(state: Any) -> list[Any]:
    """A numpy ``RandomState``'s legacy state tuple as tensors and plain values."""
    import torch

    kind, keys, pos, has_gauss, cached = state
    keys64 = torch.from_numpy(np.asarray(keys).astype(np.int64))
    return [str(kind), keys64, int(pos), int(has_gauss), float(cached)]


def _unpack_numpy(packed: Sequence[Any]) -> tuple[Any, ...]:
    kind, keys, pos, has_gauss, cached = packed
    return kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached


def rng_state() -> dict[str, Any]:
    """The global random generators of torch, numpy and Python, as tensors and plain values
    (loadable with ``torch.load(weights_only=True)``)."""
    import torch

    return {
        "torch": torch.get_rng_state(),
        "numpy": _pack_numpy(np.random.get_state(legacy=True)),
        "python": [int(x) for x in random.getstate()[1]],
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Put back what :func:`rng_state` returned."""
    import torch

    torch.set_rng_state(state["torch"])
    np.random.set_state(_unpack_numpy(state["numpy"]))
    random.setstate((3, tuple(state["python"]), None))


_BUFFER_COUNTERS = ("_insertion_idx", "_size", "_ep_return", "_ep_len", "_ep_start_idx")


def replay_buffer_state(buffer: Any) -> dict[str, Any]:
    """A Tianshou ``ReplayBuffer``'s whole state as tensors and plain values (for a training
    checkpoint's ``extra``): its stored rows (every column, nested ones such as ``info``
    included), where the next row goes, the running episode's return, length and start, and
    its sampling generator.

    :raises TypeError: a column of Python objects (it cannot be stored without pickling).
    """
    import torch

    def columns(batch: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in batch.get_keys():
            value = batch[key]
            if hasattr(value, "get_keys"):  # a nested Batch (info, policy)
                out[key] = columns(value)
                continue
            array = np.asarray(value)[: buffer._size]
            if array.dtype == object:
                raise TypeError(f"replay buffer column {key!r} holds Python objects")
            out[key] = torch.from_numpy(np.ascontiguousarray(array))
        return out

    return {
        "maxsize": int(buffer.maxsize),
        "columns": columns(buffer._meta),
        "counters": [float(getattr(buffer, k)) for k in _BUFFER_COUNTERS],
        "last_index": [int(i) for i in buffer.last_index],
        "sampler": _pack_numpy(buffer._random_state.get_state(legacy=True)),
    }


def restore_replay_buffer(buffer: Any, state: Mapping[str, Any]) -> None:
    """Put back what :func:`replay_buffer_state` returned into ``buffer`` (a
    ``ReplayBuffer`` of the same capacity): afterwards it adds and samples as the saved one
    would have.

    :raises ValueError: ``buffer``'s capacity differs from the saved one's.
    """
    from tianshou.data import Batch

    if int(state["maxsize"]) != buffer.maxsize:
        raise ValueError(
            f"the checkpoint's online buffer holds {state['maxsize']} rows; this run's "
            f"{buffer.maxsize} (--online-buffer-size)"
        )

    def batch(columns: Mapping[str, Any]) -> Any:
        out = Batch()
        for key, value in columns.items():
            if isinstance(value, Mapping):
                out[key] = batch(value)
                continue
            rows = value.numpy()
            full = np.zeros((buffer.maxsize, *rows.shape[1:]), dtype=rows.dtype)
            full[: len(rows)] = rows
            out[key] = full
        return out

    buffer._meta = batch(state["columns"])
    for key, value in zip(_BUFFER_COUNTERS, state["counters"], strict=True):
        setattr(buffer, key, value if key == "_ep_return" else int(value))
    buffer.last_index = np.array(state["last_index"])
    buffer._random_state.set_state(_unpack_numpy(state["sampler"]))


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


_P = ParamSpec("_P")
_R = TypeVar("_R")


def holding(fn: Callable[Concatenate[ExitStack, _P], _R]) -> Callable[_P, _R]:
    """``fn`` called with an ``ExitStack`` as its first argument, closed when ``fn`` returns
    or raises: for a run that takes its directory's lock midway (:func:`lock_run_directory`,
    once it knows the directory) and holds it to its end."""

    @functools.wraps(fn)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with ExitStack() as held:
            return fn(held, *args, **kwargs)

    return run


def lock_run_directory(held: ExitStack, log_path: str | os.PathLike[str]) -> Path:
    """Make a run's directory ``log_path`` and hold its lock (an ``flock``,
    :func:`~tianshou_offline.data.atomic.output_lock`) until ``held`` closes: a second run
    writing the same directory at the same time (a second ``--resume`` of a run that goes
    on, two runs started in the same second) fails at once, before it writes anything there,
    instead of the two replacing each other's checkpoints, best policies and logs.

    :raises OutputBusyError: another process holds the lock.
    :raises OutputWriteError: the directory cannot be made (read-only, vanished).
    """
    p = Path(log_path)
    with write_errors(p, kept="nothing was written"):
        p.mkdir(parents=True, exist_ok=True)
    held.enter_context(output_lock(p))
    return p


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
    return save_state(path, payload)


def save_state(path: str | os.PathLike[str], state: Any) -> Path:
    """``torch.save(state, path)`` atomically, replacing ``path``: the file is written to a
    temporary beside it and renamed into place, so a kill or a failing write (a full disk,
    an I/O error) leaves the previous file and no temporary. For the weights a run saves
    again and again (best policies, training checkpoints).

    :raises OutputWriteError: it cannot be written (naming ``path`` and the cause).
    """
    p = Path(path)
    with atomic_output(p, overwrite=True, tag="ckpt") as tmp:
        torch_save(state, tmp)
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


def end_running_episode(buffer: Any) -> None:
    """Mark the episode ``buffer`` (a ``ReplayBuffer``) is in the middle of as ended
    (truncated) at its latest row: the next row added starts a new episode. An online run
    that resumes exactly starts each epoch's collection from fresh episodes (the
    environments' states are not checkpointed, their seeds are)."""
    if len(buffer) == 0:
        return
    last = int(buffer.last_index[0])
    if not bool(buffer.done[last]):
        buffer.truncated[last] = True
        buffer.done[last] = True
    buffer._ep_return, buffer._ep_len, buffer._ep_start_idx = 0.0, 0, buffer._insertion_idx


def latest_checkpoint(runs: str | os.PathLike[str], name: str) -> Path | None:
    """The newest run's training checkpoint ``runs/TIME/name`` (the examples name each run's
    directory by its start time, ``%y%m%d-%H%M%S``, which sorts in time order), or None.
    A file that is not a training checkpoint is passed over."""
    for found in sorted(Path(runs).glob(f"*/{name}"), reverse=True):
        if found.is_file() and read_training_checkpoint(found) is not None:
            return found
    return None


def reseeding_tests(collector: Any, envs: Any, seed: int) -> Callable[[int, int | None], None]:
    """A trainer's ``test_fn`` that starts every test from the same initial states: ``envs``
    (``collector``'s vector env) seeded with ``seed``, then ``collector`` reset. The tests
    of a run then do not depend on how many tests ran before — which a resumed run cannot
    repeat (an environment's state is not checkpointed, its seed is)."""

    def test_fn(epoch: int, env_step: int | None) -> None:
        envs.seed(seed)
        collector.reset(reset_stats=False)

    return test_fn


TRAINER = "trainer"
"""The key of the trainer's own state in a training checkpoint (:func:`run_training`)."""


@dataclass
class TrainingRun:
    """What :func:`run_training` returns."""

    info: Any
    """Tianshou's ``InfoStats`` of the run (a resumed run's: the whole run's counters and
    best test)."""
    test_returns: list[list[float]]
    """``[environment step, mean return]`` of every test of the run (those before a resume
    included), in order."""


def _innermost(logger: Any) -> Any:
    """The logger at the end of a chain of :class:`~tianshou_offline.loggers.DelegatingLogger`
    (the one whose interval counters decide what is written)."""
    from tianshou_offline.loggers import DelegatingLogger

    while isinstance(logger, DelegatingLogger):
        logger = logger.inner
    return logger


_LOGGER_COUNTERS = ("last_log_training_step", "last_log_test_step", "last_log_update_step",
                    "last_log_info_step", "last_save_step")  # fmt: skip
_COLLECTOR_COUNTERS = ("collect_step", "collect_episode", "collect_time")


def trainer_state(
    trainer: Any, logger: Any, test_returns: Sequence[Sequence[float]]
) -> dict[str, Any]:
    """What a Tianshou trainer (``Trainer`` of tianshou 2.x) and its logger carry from one
    epoch to the next besides the algorithm, as tensors and plain values: the best test so
    far (score, mean and std of its return, its epoch), the moving averages of the training
    statistics (their logged ``smoothed_loss``), the collectors' and the logger's counters
    (what the logger writes when, and the ``info/test_step``-style totals it writes), and
    the test returns so far."""
    import torch

    collectors = {}
    for name in ("test_collector", "training_collector"):
        collector = getattr(trainer.params, name, None)
        if collector is not None:
            collectors[name] = [float(getattr(collector, k)) for k in _COLLECTOR_COUNTERS]
    inner = _innermost(logger)
    best = [trainer._best_score, trainer._best_reward, trainer._best_reward_std]
    return {
        "best": [*(float(x) for x in best), int(trainer._best_epoch)],
        "moving_averages": {
            str(k): torch.from_numpy(np.asarray(v.cache)) for k, v in trainer._stat.items()
        },
        "collectors": collectors,
        "env_episode": int(getattr(trainer, "_env_episode", 0)),
        "update_time": float(trainer._policy_update_time),
        "logger": {k: int(getattr(inner, k)) for k in _LOGGER_COUNTERS if hasattr(inner, k)},
        "test_returns": [[float(step), float(mean)] for step, mean in test_returns],
    }


def restore_trainer_state(trainer: Any, logger: Any, state: Mapping[str, Any]) -> None:
    """Put back what :func:`trainer_state` returned (into a trainer whose ``reset`` ran)."""
    from tianshou.utils import MovAvg

    score, reward, reward_std, epoch = state["best"]
    trainer._best_score, trainer._best_reward = score, reward
    trainer._best_reward_std, trainer._best_epoch = reward_std, int(epoch)
    for key, cache in state["moving_averages"].items():
        average = MovAvg()
        average.cache = list(cache.numpy())  # numpy scalars of the logged dtype
        trainer._stat[key] = average
    for name, counters in state["collectors"].items():
        collector = getattr(trainer.params, name)
        step, episode, seconds = counters
        collector.collect_step, collector.collect_episode = int(step), int(episode)
        collector.collect_time = seconds
    if hasattr(trainer, "_env_episode"):
        trainer._env_episode = int(state["env_episode"])
    trainer._policy_update_time = float(state["update_time"])
    inner = _innermost(logger)
    for key, value in state["logger"].items():
        setattr(inner, key, int(value))


def run_training(
    algorithm: Any,
    params: Any,
    path: str | os.PathLike[str],
    *,
    resumed: TrainingState | None = None,
    extra: Callable[[], Mapping[str, Any]] | None = None,
    checkpointed: Any = None,
) -> TrainingRun:
    """Train ``algorithm`` with its Tianshou trainer (``algorithm.create_trainer(params)``),
    writing the training checkpoint ``path`` (:func:`save_training_checkpoint`) at the end
    of each epoch — after its test, the best policy's ``save_best_fn`` and the epoch's
    logged statistics — with the epoch's counters, the trainer's state
    (:func:`trainer_state`) and ``extra()``.

    ``resumed`` (from :func:`load_training_checkpoint` of such a checkpoint): the run
    continues after the checkpoint's epoch as the interrupted run would have: the trainer's
    counters, best test, moving averages and the logger's counters come back, the test the
    trainer runs before its first epoch is skipped (the checkpoint's epoch was tested), and
    the random generators are put back just before the first training step. With test
    environments reseeded for each test (the examples' ``test_fn``), a resumed run logs
    what the uninterrupted run logs after that epoch, value for value (on CPU; times aside).

    ``params.logger`` is the run's logger (None: none); ``params.resume_from_log`` without
    ``resumed`` resumes from that logger's own records, as Tianshou does. ``checkpointed``:
    the module whose ``state_dict`` the checkpoint holds (default ``algorithm``; fine-tuning:
    the offline algorithm inside the online wrapper, so that its checkpoint loads into the
    offline example too).
    """
    import dataclasses

    from tianshou_offline.loggers import DelegatingLogger

    epoch_end: list[tuple[int, int, int]] = []  # counters of the epoch that is ending
    saved: dict[str, Any] = dict(resumed.extra.get(TRAINER) or {}) if resumed else {}
    returns: list[list[float]] = [list(r) for r in saved.get("test_returns", [])]
    held: list[Any] = []  # the trainer, once made
    weights = algorithm if checkpointed is None else checkpointed

    class CheckpointingLogger(DelegatingLogger):
        def log_test_data(self, log_data: dict[str, Any], step: int) -> None:
            mean = (log_data.get("returns_stat") or {}).get("mean")
            if mean is not None:
                returns.append([float(step), float(mean)])
            self.inner.log_test_data(log_data, step)

        def save_data(
            self,
            epoch: int,
            env_step: int,
            update_step: int,
            save_checkpoint_fn: Callable[[int, int, int], str] | None = None,
        ) -> None:
            self.inner.save_data(epoch, env_step, update_step, save_checkpoint_fn)
            epoch_end[:] = [(epoch, env_step, update_step)]

        def log_info_data(self, log_data: dict[str, Any], step: int) -> None:
            self.inner.log_info_data(log_data, step)  # the epoch's last write
            if epoch_end:
                epoch, env_step, gradient_step = epoch_end.pop()
                trainer = {TRAINER: trainer_state(held[0], self, returns)}
                save_training_checkpoint(
                    path, weights, epoch=epoch, env_step=env_step,
                    gradient_step=gradient_step, extra={**(extra() if extra else {}), **trainer},
                )  # fmt: skip

        def restore_data(self) -> tuple[int, int, int]:
            if resumed is None:  # a run resumed from its logger's own records
                return super().restore_data()
            return self.restore_counters(resumed.counters)

    logger = CheckpointingLogger(params.logger)
    params = dataclasses.replace(
        params, logger=logger, resume_from_log=resumed is not None or params.resume_from_log
    )
    trainer = algorithm.create_trainer(params)
    held.append(trainer)
    if resumed is None:
        return TrainingRun(trainer.run(), returns)
    # Tianshou's reset (counters from restore_data, collectors, ...) without its first test
    test_collector = params.test_collector
    params.test_collector = None
    try:
        trainer.reset()
    finally:
        params.test_collector = test_collector
    if test_collector is not None:
        test_collector.reset()
    if saved:
        restore_trainer_state(trainer, logger, saved)
    set_rng_state(resumed.rng)  # as they were when the checkpoint was written
    while trainer._epoch < params.max_epochs and not trainer._stop_fn_flag:
        trainer.execute_epoch()
    return TrainingRun(trainer._create_info_stats(), returns)
