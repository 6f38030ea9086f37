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
from dataclasses import dataclass
from typing import Any, Generic, cast

import gymnasium as gym
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
from tianshou_offline.algorithms.policies import ContinuousPolicy

log = logging.getLogger(__name__)

TStats = TypeVar("TStats", bound=TrainingStats)
TContinuousPolicy = TypeVar("TContinuousPolicy", bound=ContinuousPolicy)

__all__ = [
    "OfflineAlgorithmBase",
    "TrainingStats",
    "TransitionDataset",
    "Transitions",
    "n_step_targets",
    "polyak_update",
    "resolve_stats_type",
    "to_floats",
]


# --------------------------------------------------------------------------- statistics


def to_floats(*values: torch.Tensor | float | None) -> list[float]:
    """Convert scalar tensors to Python floats with a single device synchronisation.

    :param values: 0-d tensors (any device) or plain numbers; ``None`` becomes ``nan``.
    :returns: one float per value, in order.
    """
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    stacked: list[float] = (
        torch.stack([t.detach().float().reshape(()) for t in tensors]).tolist() if tensors else []
    )
    out: list[float] = []
    it = iter(stacked)
    for v in values:
        if isinstance(v, torch.Tensor):
            out.append(next(it))
        else:
            out.append(float("nan") if v is None else float(v))
    return out


def resolve_stats_type(cls: type, bound: type[TrainingStats] = TrainingStats) -> type[Any]:
    """The ``TrainingStats`` subclass an algorithm class was parameterised with.

    Walks ``cls.__mro__`` (most derived first) and returns the first type argument of a
    generic base that is a subclass of ``bound``; a TypeVar argument contributes its default
    (or its bound). ``class MyCQL(CQL[MyStats])`` → ``MyStats``; ``CQL`` → ``CQLTrainingStats``.

    :raises TypeError: no such argument exists.
    """
    for klass in cls.__mro__:
        for base in klass.__dict__.get("__orig_bases__", ()):
            for arg in typing.get_args(base):
                found = _stats_from_type_arg(arg, bound)
                if found is not None:
                    return found
    raise TypeError(f"{cls.__name__}: cannot determine its TrainingStats type argument")


def _stats_from_type_arg(arg: Any, bound: type[TrainingStats]) -> type[Any] | None:
    if isinstance(arg, type) and issubclass(arg, bound):
        return arg
    if isinstance(arg, typing.TypeVar):
        for candidate in (getattr(arg, "__default__", None), arg.__bound__):
            if isinstance(candidate, type) and issubclass(candidate, bound):
                return candidate
    return None


# --------------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class Transitions:
    """A mini-batch of transitions as tensors on the training device.

    All tensors are float32 and share the batch size B.

    :ivar obs: ``(B, D)`` observations, normalised when the policy normalises observations.
    :ivar act: ``(B, A)`` dataset actions in the policy's range (``[-1, 1]`` with action
        scaling).
    :ivar rew: ``(B,)`` reward — the discounted n-step sum ``Σ_{k<n} γ^k r_{t+k}`` when the
        algorithm uses n-step returns.
    :ivar obs_next: ``(B, D)`` the observation to bootstrap from (``s_{t+1}``, or ``s_{t+n}``).
    :ivar discount: ``(B,)`` the bootstrap factor ``γ^n · (1 − terminated)``: 0 after a true
        termination; a time-limit truncation still bootstraps.
    :ivar terminated: ``(B,)`` 1.0 where the episode terminated within the n steps.
    """

    obs: torch.Tensor
    act: torch.Tensor
    rew: torch.Tensor
    obs_next: torch.Tensor
    discount: torch.Tensor
    terminated: torch.Tensor

    def __len__(self) -> int:
        return int(self.obs.shape[0])


@dataclass(frozen=True, slots=True)
class TransitionDataset:
    """Every transition of a buffer as one device-resident tensor, packed row-wise as
    ``[obs | act | rew | obs_next | discount | terminated]`` (``(N, 2D + A + 3)`` float32) so
    that a mini-batch is a single gather. Built once by :meth:`from_buffer`; :meth:`sample`
    draws uniform mini-batches with ``torch.randint`` on the same device."""

    packed: torch.Tensor
    obs_dim: int
    act_dim: int

    def __len__(self) -> int:
        return int(self.packed.shape[0])

    @property
    def device(self) -> torch.device:
        return self.packed.device

    @property
    def data(self) -> Transitions:
        """All transitions, in buffer order (views of :attr:`packed`)."""
        return self._unpack(self.packed)

    def _unpack(self, rows: torch.Tensor) -> Transitions:
        d, a = self.obs_dim, self.act_dim
        obs, act, rew, obs_next, discount, terminated = torch.split(rows, [d, a, 1, d, 1, 1], dim=1)
        return Transitions(
            obs=obs,
            act=act,
            rew=rew.squeeze(1),
            obs_next=obs_next,
            discount=discount.squeeze(1),
            terminated=terminated.squeeze(1),
        )

    def sample(self, batch_size: int) -> Transitions:
        """Uniformly sample ``batch_size`` transitions (with replacement)."""
        idx = torch.randint(len(self), (batch_size,), device=self.device)
        return self._unpack(torch.index_select(self.packed, 0, idx))

    def all(self, shuffle: bool = True) -> Transitions:
        """All transitions as one batch (in random order when ``shuffle``)."""
        if not shuffle:
            return self.data
        return self._unpack(self.packed[torch.randperm(len(self), device=self.device)])

    @classmethod
    def from_buffer(
        cls,
        buffer: ReplayBuffer,
        *,
        policy: ContinuousPolicy,
        gamma: float = 0.99,
        n_step: int = 1,
        fit_obs_normalizer: bool = True,
    ) -> TransitionDataset:
        """Copy a buffer's transitions to ``policy``'s device.

        :param buffer: any Tianshou ``ReplayBuffer`` (vector buffers included). Its actions
            are in the environment's units; they are mapped to the policy's range with
            ``policy.map_action_inverse``.
        :param policy: provides the device, the observation normaliser and the action mapping.
        :param gamma: discount for the n-step sums and the bootstrap factor.
        :param n_step: n of the n-step return (1 = one-step TD).
        :param fit_obs_normalizer: fit the policy's normaliser (if enabled) on ``buffer.obs``.
        :raises ValueError: the buffer is empty or its shapes do not match the policy.
        """
        if n_step < 1:
            raise ValueError(f"n_step={n_step}: expected >= 1")
        indices = buffer.sample_indices(0)
        if len(indices) == 0:
            raise ValueError("the replay buffer is empty")
        batch = buffer[indices]
        rew, last, discount, terminated = n_step_targets(buffer, indices, gamma, n_step)
        position = np.empty(int(indices.max()) + 1, dtype=np.int64)
        position[indices] = np.arange(len(indices))
        obs_next = np.asarray(batch.obs_next).reshape(len(indices), -1)[position[last]]
        return cls.from_arrays(
            policy=policy,
            obs=batch.obs,
            act=batch.act,
            rew=rew,
            obs_next=obs_next,
            discount=discount,
            terminated=terminated,
            fit_obs_normalizer=fit_obs_normalizer,
        )

    @classmethod
    def from_arrays(
        cls,
        *,
        policy: ContinuousPolicy,
        obs: Any,
        act: Any,
        rew: Any,
        obs_next: Any,
        discount: Any,
        terminated: Any,
        fit_obs_normalizer: bool = False,
    ) -> TransitionDataset:
        """Build a dataset from columns (numpy or tensors, first dimension N).

        ``obs``/``obs_next`` are raw observations (normalised here), ``act`` is in the
        environment's units (mapped here), the others as in :class:`Transitions`.
        """

        def numpy(x: Any) -> np.ndarray:
            return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)

        n = len(numpy(rew).reshape(-1))
        obs_np = numpy(obs).astype(np.float32).reshape(n, -1)
        act_np = numpy(act).astype(np.float32).reshape(n, -1)
        if obs_np.shape[1] != policy.obs_dim or act_np.shape[1] != policy.act_dim:
            raise ValueError(
                f"dataset obs/act sizes {obs_np.shape[1]}/{act_np.shape[1]} do not match the "
                f"policy's observation/action spaces ({policy.obs_dim}/{policy.act_dim})"
            )
        _warn_if_outside(act_np, policy.action_space)
        act_np = np.asarray(policy.map_action_inverse(act_np), dtype=np.float32)
        if fit_obs_normalizer:
            policy.obs_normalizer.fit(obs_np)
        device = policy.device
        norm = policy.obs_normalizer

        def column(x: Any) -> torch.Tensor:
            return torch.as_tensor(numpy(x).astype(np.float32).reshape(n)).to(device)

        obs_next_np = numpy(obs_next).astype(np.float32).reshape(n, -1)

        with torch.no_grad():
            packed = torch.cat(
                [
                    norm(torch.as_tensor(obs_np).to(device)),
                    torch.as_tensor(act_np).to(device),
                    column(rew).unsqueeze(1),
                    norm(torch.as_tensor(obs_next_np).to(device)),
                    column(discount).unsqueeze(1),
                    column(terminated).unsqueeze(1),
                ],
                dim=1,
            )
        return cls(packed, policy.obs_dim, policy.act_dim)


def _warn_if_outside(act: np.ndarray, space: gym.Space[Any]) -> None:
    if not isinstance(space, gym.spaces.Box):
        return
    low = np.asarray(space.low, dtype=np.float64).reshape(-1)
    high = np.asarray(space.high, dtype=np.float64).reshape(-1)
    tol = 1e-4 * np.maximum(1.0, high - low)
    below = act < low - tol
    above = act > high + tol
    if below.any() or above.any():
        frac = float((below | above).any(axis=1).mean())
        log.warning(
            "%.1f%% of the dataset's actions lie outside the action space [%s, %s]; the "
            "algorithms expect actions in the environment's units",
            100 * frac,
            low.min(),
            high.max(),
        )


def n_step_targets(
    buffer: ReplayBuffer, indices: np.ndarray, gamma: float, n_step: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """n-step reward sums for every transition at ``indices`` (storage rows).

    Follows ``buffer.next`` for up to ``n_step`` transitions, stopping at the end of an
    episode (terminated, truncated, cut, or the last stored step). Shared by the continuous
    and the discrete datasets.

    :returns: ``rew`` (N,) = Σ_{k<m} γ^k r_{t+k}; ``last`` (N,) the storage row of the last
        transition used (its ``obs_next`` is bootstrapped from); ``discount`` (N,) =
        γ^m (1 − terminated); ``terminated`` (N,) in {0, 1}.
    """
    n = len(indices)
    rew_all = np.asarray(buffer.rew, dtype=np.float64)
    term_all = np.asarray(buffer.terminated, dtype=bool)
    done_all = np.asarray(buffer.done, dtype=bool)
    cur = indices.copy()
    ret = np.zeros(n, dtype=np.float64)
    disc = np.ones(n, dtype=np.float64)
    alive = np.ones(n, dtype=bool)
    last = cur.copy()
    for k in range(n_step):
        ret[alive] += disc[alive] * rew_all[cur[alive]]
        disc[alive] *= gamma
        last[alive] = cur[alive]
        if k == n_step - 1:
            break
        nxt = np.asarray(buffer.next(cur))
        alive &= ~done_all[cur] & (nxt != cur)
        if not alive.any():
            break
        cur = np.where(alive, nxt, cur)
    terminated = term_all[last].astype(np.float64)
    return ret, last, disc * (1.0 - terminated), terminated


# --------------------------------------------------------------------------- training


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """``θ' ← τ θ + (1 − τ) θ'`` for all parameters, in one fused call."""
    tgt: list[torch.Tensor] = list(target.parameters())
    src: list[torch.Tensor] = list(source.parameters())
    if len(tgt) != len(src):
        raise ValueError("target and source networks have different parameter lists")
    torch._foreach_lerp_(tgt, src, tau)


def make_target(module: nn.Module) -> nn.Module:
    """A frozen deep copy of ``module`` to serve as its target network."""
    import copy

    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


class GradientStep:
    """An optimizer that is stepped after a shared ``backward()``.

    Wraps a Tianshou ``Algorithm.Optimizer`` (so the algorithm's ``state_dict`` saves it and
    learning-rate schedulers work) and exposes ``zero_grad`` / ``step`` separately, with
    optional gradient-norm clipping. A module with its own ``clip_grad_norm_`` (a
    :class:`~tianshou_offline.algorithms.nets.CriticEnsemble` clips each member separately)
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
