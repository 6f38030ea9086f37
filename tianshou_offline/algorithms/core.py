"""The core shared by the continuous and the discrete offline algorithms.

:class:`OfflineAlgorithmCore` holds everything that does not depend on the kind of action:
dataset preparation and caching, :meth:`~OfflineAlgorithmCore.update`, the typed statistics,
the gradient-step count, target networks and the gradient step. The continuous
(:class:`~tianshou_offline.algorithms.continuous.base.OfflineAlgorithmBase`) and the discrete
(:class:`~tianshou_offline.algorithms.discrete.base.DiscreteOfflineAlgorithm`) bases only
supply their dataset kind (how a buffer becomes a device-resident dataset, how a Tianshou
``Batch`` becomes a mini-batch) and the policy's device.

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

**Statistics stay on the device.** A step builds its statistics with :meth:`~OfflineAlgorithmCore._make_stats`
(:mod:`~tianshou_offline.algorithms.deferred`): their values stay device tensors until a field
is read, so no step waits for the device (a GPU keeps running ahead of the host), and
``run_training`` reads them once per interval (:class:`~tianshou_offline.algorithms.deferred.OfflineStatsTrainer`:
the logger gets the same values at the same steps). An ``_extend_stats`` that calls ``.item()``
(as above) makes each step wait for the device again.

**Device-resident sampling.** :meth:`OfflineAlgorithmCore.process_buffer` (called once by
Tianshou's ``OfflineTrainer``) turns the buffer into a dataset on the algorithm's device
(:class:`OfflineDataset`: n-step rewards and bootstrap discounts precomputed, see
:func:`n_step_targets`); :meth:`OfflineAlgorithmCore.update` then samples mini-batches with
``torch.randint`` and indexing — no ``Batch``, no numpy, no per-step conversion.

**One gradient step.** Tianshou's ``_create_optimizer`` builds a :class:`GradientStep` (the
core's ``Optimizer`` attribute), so Tianshou's optimizer factories, learning-rate schedulers
and the algorithm's ``state_dict`` work unchanged. ``optim.step(loss)`` is Tianshou's
contract (zero the gradients, backpropagate, clip, step) with the short paths of
:mod:`~tianshou_offline.algorithms._optim` (PyTorch's fused Adam kernel called directly:
the same update, less fixed cost per step); :func:`joint_step` is the same for several
optimizers after one backward pass of a summed loss (CQL, CRR).

**Saved state.** Besides parameters and optimizer moments (Tianshou's ``state_dict``), an
algorithm's ``state_dict`` holds what changes its behaviour by step count: the gradient-step
count :attr:`~OfflineAlgorithmCore.num_updates` (TD3+BC's policy delay, CRR's target
interval, the discrete algorithms' target copies) and the learning-rate schedulers' state
(``get_extra_state``). A run resumed from a checkpoint continues as the uninterrupted run
would: it neither re-copies the targets nor restarts the actor-update phase.

**Target networks** (:func:`make_target`) are frozen copies that stay in eval mode, also when
the algorithm is switched to training mode (:meth:`OfflineAlgorithmCore.train`), as
Tianshou's lagged networks: they are only ever evaluated.

**n-step targets everywhere.** :meth:`~OfflineAlgorithmCore.update` reads the dataset's
n-step targets; on Tianshou's own path (``_preprocess_batch(batch, buffer, indices)`` then
``_update_with_batch(batch)``) the same targets are attached to the numpy batch. A numpy
batch without them is accepted only for ``n_step == 1``: an algorithm with ``n_step > 1``
raises instead of silently learning one-step targets.

**Uniform sampling only.** A ``PrioritizedReplayBuffer`` is rejected (``TypeError``): the
dataset samples uniformly, and priorities and importance weights would be silently ignored.
"""

from __future__ import annotations

import copy
import logging
import time
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Generic, Self, cast

import numpy as np
import torch
from tianshou.algorithm.algorithm_base import OfflineAlgorithm, Policy, TrainingStats
from tianshou.algorithm.optim import OptimizerFactory
from tianshou.data import PrioritizedReplayBuffer, ReplayBuffer
from tianshou.data.buffer.buffer_base import TBuffer
from tianshou.data.types import RolloutBatchProtocol
from tianshou.utils.torch_utils import torch_train_mode
from torch import nn
from typing_extensions import TypeVar

from tianshou_offline.algorithms.deferred import OfflineStatsTrainer, deferred_stats
from tianshou_offline.algorithms.episodes import (
    episode_ends,
    episode_starts,
    n_step_targets,
    return_to_go,
)
from tianshou_offline.algorithms.gradient import (
    GradientStep,
    joint_step,
    step_counter,
)
from tianshou_offline.algorithms.sampling import (
    OfflineDataset,
    SampleStream,
    TBatch,
    TransitionBatch,
    to_device_positions,
)
from tianshou_offline.algorithms.targets import (
    hard_update,
    make_target,
    polyak_update,
)
from tianshou_offline.algorithms.typed_stats import (
    _stats_from_type_arg,
    resolve_stats_type,
    to_floats,
)
from tianshou_offline.progress import Progress

if typing.TYPE_CHECKING:
    from tianshou.trainer import OfflineTrainerParams

log = logging.getLogger(__name__)

__all__ = [
    "GradientStep",
    "OfflineAlgorithmCore",
    "OfflineDataset",
    "SampleStream",
    "TransitionBatch",
    "episode_ends",
    "episode_starts",
    "hard_update",
    "joint_step",
    "make_target",
    "n_step_targets",
    "polyak_update",
    "resolve_stats_type",
    "return_to_go",
    "step_counter",
    "to_device_positions",
    "to_floats",
]

TDataset = TypeVar("TDataset", bound="OfflineDataset[Any]")
"""The dataset kind (``TransitionDataset``, ``FrameDataset``)."""
TPolicy = TypeVar("TPolicy", bound=Policy)
TStats = TypeVar("TStats", bound=TrainingStats)


# --------------------------------------------------------------------------- algorithm


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers (recursively through dicts, lists and
    tuples), so that ``torch.load(..., weights_only=True)`` reads it back — a scheduler whose
    lambda returns numpy floats (Tianshou's ``LRSchedulerFactoryLinear``) keeps them in its
    state."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    return value


class OfflineAlgorithmCore(
    OfflineAlgorithm[TPolicy], Generic[TPolicy, TDataset, TBatch, TStats], ABC
):
    """Base of every offline algorithm: device-resident sampling, typed statistics, target
    networks and the gradient step (see the module docstring).

    Algorithms implement ``_update_with_batch(batch) -> TStats`` (the whole update, in the
    order of the paper) and set :attr:`gamma` / :attr:`n_step` for the dataset's n-step
    targets. The continuous and the discrete bases implement :meth:`_build_dataset`,
    :meth:`_as_transitions` and :attr:`device`. Training goes through Tianshou:
    ``algorithm.run_training(OfflineTrainerParams(buffer=..., ...))``.

    :param policy: the acting policy.
    """

    gamma: float = 0.99
    _n_step: int = 1
    Optimizer = GradientStep
    """The wrapper Tianshou's ``_create_optimizer`` builds (fused Adam, short step path)."""

    def __init__(self, *, policy: TPolicy) -> None:
        super().__init__(policy=policy)
        self._dataset: TDataset | None = None
        self._dataset_key: int | None = None
        self._stats_type: type[TStats] | None = None
        self._num_updates = 0
        self._modules_cache: list[nn.Module] | None = None
        self._target_pairs: list[tuple[nn.Module, nn.Module]] = []
        self._polyak_tensors: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None
        self._compiled: dict[str, Any] | None = None
        self._compile_pending = False  # the first compiled step is guarded (see compile_step)
        self.sample_stream = SampleStream()
        """Where this algorithm's transition datasets (continuous and discrete, in RAM or
        streamed from disk) draw their mini-batch positions; saved in the ``state_dict``, so
        that a resumed run draws the batches the uninterrupted run would."""

    # ------------------------------------------------------------------ supplied per kind

    @property
    @abstractmethod
    def device(self) -> torch.device:
        """The device of the policy (and of the prepared dataset)."""

    @abstractmethod
    def _build_dataset(self, buffer: ReplayBuffer) -> TDataset:
        """The device-resident dataset of ``buffer`` with this algorithm's n-step targets."""

    @abstractmethod
    def _as_transitions(self, batch: RolloutBatchProtocol | TBatch) -> TBatch:
        """A Tianshou numpy ``Batch`` (as Tianshou's own update path passes, one-step
        targets) as a mini-batch on the device; a mini-batch passes through."""

    # ------------------------------------------------------------------ statistics

    @property
    def n_step(self) -> int:
        """n of the n-step TD targets (1 = one-step TD; the algorithms' ``n_step_return_horizon``)."""
        return self._n_step

    @n_step.setter
    def n_step(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(
                f"{type(self).__name__}: n_step_return_horizon={value!r}; expected an integer >= 1"
            )
        self._n_step = int(value)

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

    def _extend_stats(self, stats: TStats, step: Any) -> None:
        """Hook for subclasses: fill in extra statistics fields from the step's tensors."""

    def _make_stats(self, **values: torch.Tensor | float | None) -> TStats:
        """This step's statistics (:attr:`stats_type`) with ``values``: tensors stay on the
        device until a field is read (:func:`~tianshou_offline.algorithms.deferred.deferred_stats`),
        so the step never waits for the device."""
        return deferred_stats(self.stats_type, values)

    # ------------------------------------------------------------------ optimizers, targets

    def _make_optimizer(
        self,
        module: nn.Module | Sequence[nn.Parameter],
        factory: OptimizerFactory,
        max_grad_norm: float | None = None,
    ) -> GradientStep:
        """Create an optimizer from a Tianshou factory through ``_create_optimizer`` (saved in
        ``state_dict``; its scheduler, if any, stepped after every update). ``module`` may be
        a list of parameters (e.g. a learned temperature)."""
        if isinstance(module, nn.Module):
            holder = module
        else:
            holder = nn.Module()
            holder.params = nn.ParameterList(module)
        optim = self._create_optimizer(holder, factory, max_grad_norm)
        if not isinstance(optim, GradientStep):
            raise TypeError(
                f"{type(self).__name__}.Optimizer builds {type(optim).__name__}; expected a "
                "GradientStep subclass"
            )
        return optim

    def _add_target(self, source: nn.Module) -> nn.Module:
        """A frozen copy of ``source`` that :meth:`_update_targets` / :meth:`_copy_targets`
        keep up to date. Assign the result to an attribute so that it is part of the
        ``state_dict``."""
        target = make_target(source)
        self._target_pairs.append((source, target))
        self._polyak_tensors = None
        self._modules_cache = None
        return target

    @torch.no_grad()
    def _update_targets(self, tau: float) -> None:
        """Polyak-average every target network, ``θ' ← τ θ + (1 − τ) θ'``, in one fused call."""
        if self._polyak_tensors is None:
            src: list[torch.Tensor] = [p for s, _ in self._target_pairs for p in s.parameters()]
            tgt: list[torch.Tensor] = [p for _, t in self._target_pairs for p in t.parameters()]
            self._polyak_tensors = (tgt, src)
        targets, sources = self._polyak_tensors
        torch._foreach_lerp_(targets, sources, tau)

    def _copy_targets(self) -> None:
        """Copy every source network into its target (parameters and buffers)."""
        for source, target in self._target_pairs:
            hard_update(target, source)

    def _target_for_step(
        self, online: nn.Module, target: nn.Module | None, every: int
    ) -> nn.Module:
        """The network this step's TD target reads: ``target``, refreshed first with a copy
        of every source network (:meth:`_copy_targets`) on the steps whose 0-based count is
        a multiple of ``every``; ``online`` itself when there is no target network."""
        if target is None:
            return online
        if self.num_updates % every == 0:
            self._copy_targets()
        return target

    def train(self, mode: bool = True) -> Self:
        """Set training mode (``mode``) on every module except the target networks, which
        stay in eval mode (see :func:`make_target`)."""
        super().train(mode)
        for _, target in self._target_pairs:
            target.eval()
        return self

    # ------------------------------------------------------------------ saved state

    def get_extra_state(self) -> dict[str, Any]:
        """The state that is not a tensor of a module or an optimizer but changes what the next
        updates do: the gradient-step count, the learning-rate schedulers' state and the sample
        stream (``[seed, batches drawn]``). Saved by
        ``state_dict`` (key ``_extra_state``) and restored by ``load_state_dict``. Subclasses
        add their own entries (call ``super()``)."""
        return {
            "num_updates": self._num_updates,
            "lr_schedulers": [_plain(s.state_dict()) for s in self.lr_schedulers],
            "sample_stream": self.sample_stream.state(),
        }

    def set_extra_state(self, state: Any) -> None:
        """Restore what :meth:`get_extra_state` saved.

        :raises ValueError: ``state`` is not such a dict, or it holds a different number of
            learning-rate schedulers than this algorithm has.
        """
        if not isinstance(state, dict) or "num_updates" not in state:
            raise ValueError(
                f"{type(self).__name__}: the checkpoint's _extra_state is "
                f"{type(state).__name__}; expected a dict with 'num_updates'"
            )
        schedulers = state.get("lr_schedulers", [])
        if len(schedulers) != len(self.lr_schedulers):
            raise ValueError(
                f"{type(self).__name__}: the checkpoint holds {len(schedulers)} learning-rate "
                f"scheduler state(s); this algorithm has {len(self.lr_schedulers)}"
            )
        self._num_updates = int(state["num_updates"])
        for scheduler, scheduler_state in zip(self.lr_schedulers, schedulers, strict=True):
            scheduler.load_state_dict(scheduler_state)
        if "sample_stream" in state:  # a checkpoint without one keeps the current stream
            self.sample_stream.load_state(state["sample_stream"])

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        key = prefix + "_extra_state"
        if key not in state_dict:
            log.warning(
                "%s: the checkpoint holds no step count (_extra_state; written by an earlier "
                "version): the step count stays at %d, so step-count schedules (target copies, "
                "policy delay, learning-rate schedules) restart",
                type(self).__name__,
                self._num_updates,
            )
            state_dict[key] = self.get_extra_state()
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    # ------------------------------------------------------------------ training

    def create_trainer(self, params: OfflineTrainerParams) -> OfflineStatsTrainer:
        """Tianshou's ``OfflineTrainer`` reading the statistics once per interval
        (:class:`~tianshou_offline.algorithms.deferred.OfflineStatsTrainer`)."""
        return OfflineStatsTrainer(self, params)

    def process_buffer(self, buffer: TBuffer) -> TBuffer:
        """Prepare the device-resident dataset (called once by Tianshou's ``OfflineTrainer``)."""
        assert isinstance(buffer, ReplayBuffer)
        self._prepare(buffer)
        return buffer

    def _check_buffer(self, buffer: ReplayBuffer) -> None:
        if isinstance(buffer, PrioritizedReplayBuffer):
            raise TypeError(
                f"{type(self).__name__}: got a {type(buffer).__name__}; the offline algorithms "
                "sample uniformly and would ignore its priorities and importance weights. "
                "Expected a ReplayBuffer or VectorReplayBuffer (e.g. from "
                "tianshou_offline.load_buffer)"
            )

    def _prepare(self, buffer: ReplayBuffer) -> TDataset:
        self._check_buffer(buffer)
        dataset = self._build_dataset(buffer)
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

    def dataset_for(self, buffer: ReplayBuffer) -> TDataset:
        """The prepared dataset of ``buffer`` (prepared now if ``process_buffer`` was not called)."""
        if self._dataset is None or self._dataset_key != id(buffer):
            return self._prepare(buffer)
        return self._dataset

    def update(self, buffer: ReplayBuffer, sample_size: int | None) -> TStats:
        """One gradient step on a mini-batch of ``sample_size`` transitions from ``buffer``.

        Same contract as Tianshou's ``OfflineAlgorithm.update`` (must run within a training
        step; ``sample_size`` None or 0 uses the whole buffer, shuffled), but the batch is
        drawn from the device-resident dataset.
        """
        if not self.policy.is_within_training_step:
            raise RuntimeError(
                "update() was called outside of a training step; use Tianshou's trainer or "
                "tianshou.utils.torch_utils.policy_within_training_step(algorithm.policy)"
            )
        start = time.perf_counter()
        dataset = self.dataset_for(buffer)
        batch: TBatch = dataset.sample(sample_size) if sample_size else dataset.all()
        return self.update_on(batch, start=start)

    def train_steps(
        self,
        buffer: ReplayBuffer,
        *,
        steps: int,
        batch_size: int = 256,
        progress: Progress | None = None,
    ) -> None:
        """``steps`` gradient steps of ``batch_size`` transitions from ``buffer`` through
        Tianshou's ``OfflineTrainer`` (one epoch, no test episodes, no logging): how a
        fitted model that is not itself the goal is trained (FQE, a behaviour model).

        :param progress: counts the gradient steps (one ``update(1)`` each).
        """
        from tianshou.trainer import OfflineTrainerParams

        self.run_training(
            OfflineTrainerParams(
                buffer=buffer,
                max_epochs=1,
                epoch_num_steps=steps,
                batch_size=batch_size,
                test_collector=None,
                show_progress=False,
                verbose=False,
                logger=step_counter(progress) if progress is not None else None,
            )
        )

    def update_on(self, batch: TBatch, *, start: float | None = None) -> TStats:
        """One gradient step on a given device-resident mini-batch — what :meth:`update`
        does after sampling (training mode, step count, schedulers); for callers that build
        their own batches (online fine-tuning mixes offline and online transitions).

        :param start: ``time.perf_counter()`` when the step began (default: now), for
            ``train_time``.
        """
        if not self.policy.is_within_training_step:
            raise RuntimeError(
                "update_on() was called outside of a training step; use a Tianshou trainer "
                "or tianshou.utils.torch_utils.policy_within_training_step(algorithm.policy)"
            )
        start = time.perf_counter() if start is None else start
        if self._compile_pending:
            stats = self._first_compiled_step(batch)
        elif self._all_in_train_mode():
            stats = self._update_with_batch(batch)
        else:
            with torch_train_mode(self):
                stats = self._update_with_batch(batch)
        self._num_updates += 1
        for scheduler in self.lr_schedulers:
            scheduler.step()
            for group in scheduler.optimizer.param_groups:
                if isinstance(group["lr"], np.generic):
                    # a lambda returning numpy floats (Tianshou's LRSchedulerFactoryLinear)
                    # would put one in the optimizer's state_dict, which weights-only
                    # torch.load refuses: keep a Python float
                    group["lr"] = group["lr"].item()
        stats.train_time = time.perf_counter() - start
        return stats

    # ------------------------------------------------------------------ compiled step

    compile_unsupported: str | None = None
    """Why this algorithm's networks cannot be compiled (None: they can); :meth:`compile_step`
    then logs it and the step stays eager."""

    @property
    def compiled(self) -> bool:
        """Whether :meth:`compile_step` compiled the networks (and the step still uses them)."""
        return self._compiled is not None

    def networks(self) -> list[nn.Module]:
        """The networks the step evaluates: every submodule of the algorithm and of its
        policy that holds parameters (target copies included), each once."""
        found: dict[int, nn.Module] = {}
        stack: list[nn.Module] = [self]
        while stack:
            for child in stack.pop().children():
                if isinstance(child, Policy):
                    stack.append(child)
                elif id(child) not in found and next(child.parameters(), None) is not None:
                    found[id(child)] = child
        return list(found.values())

    def compile_step(
        self, *, backend: str | Callable[..., Any] = "inductor", mode: str | None = None
    ) -> bool:
        """Compile the forward (and so the backward) passes of every network with
        ``torch.compile`` (:meth:`networks`, each compiled in place: parameters, state dicts
        and checkpoints are unchanged). The optimizer steps (one fused kernel each), target
        updates and statistics stay eager: a whole update does not compile as one graph
        (backward passes and optimizer steps inside it break the graph, and the step count
        would recompile it every step).

        Compilation happens on the first step. That step is guarded: should compiling fail
        (no C++ compiler, an operator the backend lacks), the algorithm's state and random
        generators are put back, the networks are left eager, one line is logged and the step
        runs eagerly — training goes on as if ``compile`` had not been asked for.

        :param backend: ``torch.compile``'s backend (``"inductor"``; ``"aot_eager"`` traces
            and runs the same graphs without generating code; or a backend callable).
        :param mode: ``torch.compile``'s mode (``"reduce-overhead"``: CUDA graphs on a GPU).
        :returns: whether the networks were compiled (False: :attr:`compile_unsupported`).
        """
        name = type(self).__name__
        if self.compile_unsupported is not None:
            log.info("%s: compile=True ignored, the step stays eager: %s", name,
                     self.compile_unsupported)  # fmt: skip
            return False
        for module in self.networks():
            module.compile(backend=backend, mode=mode)
        self._compiled = {"backend": backend, "mode": mode}
        self._compile_pending = True
        return True

    def _uncompile(self) -> None:
        for module in self.networks():
            module._compiled_call_impl = None
        self._compiled = None

    def _first_compiled_step(self, batch: TBatch) -> TStats:
        """The first step with compiled networks (compilation happens here); on a compile
        error, restore the state and generators, drop the compilation and step eagerly."""
        saved = copy.deepcopy(cast(Any, self).state_dict())
        rng = torch.random.get_rng_state()
        device = self.device
        cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        try:
            with torch_train_mode(self):
                stats = self._update_with_batch(batch)
        except Exception as exc:
            if not type(exc).__module__.startswith(("torch._dynamo", "torch._inductor")):
                raise
            self.load_state_dict(saved)
            torch.random.set_rng_state(rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state(cuda_rng, device)
            self._uncompile()
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            log.warning("%s: torch.compile failed, training eagerly: %s: %s",
                        type(self).__name__, type(exc).__name__, first_line[:200])  # fmt: skip
            with torch_train_mode(self):
                stats = self._update_with_batch(batch)
        finally:
            self._compile_pending = False
        return stats

    def _all_in_train_mode(self) -> bool:
        """Whether every submodule is already in training mode (the usual case between
        updates), so that switching modes — a recursive walk with costly attribute sets —
        can be skipped."""
        if self._modules_cache is None:
            frozen = {id(m) for _, target in self._target_pairs for m in target.modules()}
            self._modules_cache = [m for m in self.modules() if id(m) not in frozen]
        return all(m.training for m in self._modules_cache)

    # ------------------------------------------------------------------ Tianshou's batch path

    def _preprocess_batch(
        self, batch: RolloutBatchProtocol, buffer: ReplayBuffer, indices: np.ndarray
    ) -> RolloutBatchProtocol:
        """Tianshou's hook between sampling and ``_update_with_batch`` (its own update path):
        attach this algorithm's n-step targets — the ones :meth:`update` reads from the
        dataset — to the numpy batch sampled at storage rows ``indices`` of ``buffer``.

        Adds ``n_step_rew`` (``Σ_{k<m} γ^k r_{t+k}``), ``n_step_obs_next`` (``s_{t+m}``),
        ``n_step_discount`` (``γ^m (1 − terminated)``) and ``n_step_terminated``.

        :raises TypeError: ``buffer`` is a ``PrioritizedReplayBuffer``.
        """
        self._check_buffer(buffer)
        rows = np.asarray(indices, dtype=np.int64)
        rew, last, discount, terminated = n_step_targets(buffer, rows, self.gamma, self.n_step)
        batch.n_step_rew = rew
        batch.n_step_obs_next = batch.obs_next if self.n_step == 1 else buffer[last].obs_next
        batch.n_step_discount = discount
        batch.n_step_terminated = terminated
        return batch

    def _batch_targets(self, batch: RolloutBatchProtocol) -> tuple[Any, Any, Any, Any]:
        """``(rew, obs_next, discount, terminated)`` of a Tianshou numpy batch: the n-step
        targets :meth:`_preprocess_batch` attached, else the batch's one-step fields.

        :raises ValueError: ``n_step > 1`` and the batch holds no n-step targets (its
            rewards are one-step: learning from them would silently be one-step TD).
        """
        if "n_step_rew" in batch.get_keys():
            return (
                batch.n_step_rew,
                batch.n_step_obs_next,
                batch.n_step_discount,
                batch.n_step_terminated,
            )
        if self.n_step > 1:
            raise ValueError(
                f"{type(self).__name__} (n_step={self.n_step}): this Tianshou batch holds "
                "one-step rewards and no n-step targets; attach them with "
                "algorithm._preprocess_batch(batch, buffer, indices) (as Tianshou's update "
                "does), or train with algorithm.update(buffer, batch_size) / OfflineTrainer"
            )
        terminated = np.asarray(batch.terminated, dtype=np.float64)
        return batch.rew, batch.obs_next, self.gamma * (1.0 - terminated), terminated

    @abstractmethod
    def _update_with_batch(self, batch: RolloutBatchProtocol | TBatch) -> TStats:
        """The algorithm's update on one mini-batch; returns its typed statistics.

        :param batch: a device-resident mini-batch (or a Tianshou numpy ``Batch``, converted
            with :meth:`_as_transitions`).
        """
