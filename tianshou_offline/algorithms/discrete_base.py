"""Shared pieces of the discrete-action algorithms: frame-indexed device-resident sampling,
discrete policies (ε-greedy acting) and the typed-stats algorithm base.

The continuous algorithms' :class:`~tianshou_offline.algorithms.base.TransitionDataset`
flattens every observation to ``float32``; for Atari that would hold each 84×84 frame 8
times (4 stacked frames in ``obs`` and 4 in ``obs_next``) at 4 bytes per pixel. The
discrete algorithms use :class:`FrameDataset` instead, which keeps **one copy of each stored
observation row in its storage dtype** (one ``uint8`` frame per step for a compact Atari
buffer) and two small index tables: row ``i``'s observation is ``frames[obs_index[i]]``, the
observation it bootstraps from is ``frames[next_index[i]]``. A sampled mini-batch gathers
``B × S`` frames; stacking happens at sample time, exactly as Tianshou's ``stack_num``
(repeating the first frame of an episode), and exact stacks stored by a converter
("stack patches", :class:`~tianshou_offline.data.framestack.FrameStackReplayBuffer`)
are honoured.

Statistics are generic exactly as for the continuous algorithms
(:mod:`tianshou_offline.algorithms.base`): ``class MyCQL(DiscreteCQL[MyStats])`` adds a
field and fills it in ``_extend_stats`` without copying the update.
"""

from __future__ import annotations

import copy
import logging
import time
import typing
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Generic, cast

import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm.algorithm_base import (
    OfflineAlgorithm,
    Policy,
    TArrOrActBatch,
    TrainingStats,
)
from tianshou.data import Batch, ReplayBuffer
from tianshou.data.batch import BatchProtocol
from tianshou.data.buffer.buffer_base import TBuffer
from tianshou.data.types import ActStateBatchProtocol, ObsBatchProtocol, RolloutBatchProtocol
from tianshou.utils.torch_utils import torch_train_mode
from torch import nn
from typing_extensions import TypeVar

from tianshou_offline.algorithms._optim import FastStep, prefer_fused, zero_grad
from tianshou_offline.algorithms.base import n_step_targets, resolve_stats_type

log = logging.getLogger(__name__)

TStats = TypeVar("TStats", bound=TrainingStats)

__all__ = [
    "DiscreteActorPolicy",
    "DiscreteOfflineAlgorithm",
    "DiscretePolicy",
    "DiscreteTransitions",
    "FrameDataset",
    "QValuePolicy",
    "hard_update",
]


# --------------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class DiscreteTransitions:
    """A mini-batch of discrete-action transitions on the training device.

    :ivar obs: ``(B, *obs_shape)`` observations in their storage dtype (``uint8`` frames stay
        ``uint8``; the networks' trunks convert).
    :ivar act: ``(B,)`` int64 dataset actions in ``[0, A)``.
    :ivar rew: ``(B,)`` float32 reward — the discounted n-step sum ``Σ_{k<m} γ^k r_{t+k}``.
    :ivar obs_next: ``(B, *obs_shape)`` the observation to bootstrap from (``s_{t+m}``).
    :ivar discount: ``(B,)`` float32 bootstrap factor ``γ^m (1 − terminated)``: 0 after a true
        termination; a time-limit truncation still bootstraps.
    :ivar terminated: ``(B,)`` float32, 1.0 where the episode terminated within the m steps.
    """

    obs: torch.Tensor
    act: torch.Tensor
    rew: torch.Tensor
    obs_next: torch.Tensor
    discount: torch.Tensor
    terminated: torch.Tensor

    def __len__(self) -> int:
        return int(self.act.shape[0])


def _stack_rows(buffer: ReplayBuffer, rows: np.ndarray, stack_num: int) -> np.ndarray:
    """``(len(rows), stack_num)`` storage rows ``[p^(S-1)(i), …, p(i), i]`` (``p`` =
    ``buffer.prev``, which stops at an episode's first row) — Tianshou's frame stacking."""
    out = np.empty((len(rows), stack_num), dtype=np.int64)
    cur = rows
    for k in range(stack_num - 1, -1, -1):
        out[:, k] = cur
        if k:
            cur = np.asarray(buffer.prev(cur))
    return out


def _storage_column(buffer: ReplayBuffer, key: str) -> np.ndarray:
    value = buffer._meta[key] if key in buffer._meta.get_keys() else None
    if value is None or isinstance(value, Batch):
        raise TypeError(
            f"the replay buffer's '{key}' column is {type(value).__name__}; the discrete "
            "algorithms need array observations (Dict/Tuple observations are not supported)"
        )
    return np.asarray(value)


def _frames_dtype(arr: np.ndarray) -> np.dtype[Any]:
    if arr.dtype == np.uint8 or arr.dtype == np.float32:
        return arr.dtype
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
        return np.dtype(np.float32) if arr.dtype.itemsize > 1 else np.dtype(np.uint8)
    return np.dtype(np.float32)


@dataclass(frozen=True, slots=True)
class FrameDataset:
    """All transitions of a replay buffer as device-resident tensors, observations held once.

    :ivar frames: ``(F, *row_shape)`` the buffer's stored observation rows (its ``obs``
        column; plus its ``obs_next`` column when the buffer stores one; plus the frames of
        any exact stacks the buffer patches in), in their storage dtype (``uint8`` stays
        ``uint8``; other dtypes become ``float32``).
    :ivar obs_index: ``(N, S)`` rows of ``frames`` forming each observation (S =
        ``stack_num``; ``(N,)`` without stacking); int32 (int64 beyond 2³¹ rows).
    :ivar next_index: like ``obs_index``, the observation to bootstrap from (n-step).
    :ivar act: ``(N,)`` int64.
    :ivar rew: ``(N,)`` float32 n-step reward sums.
    :ivar discount: ``(N,)`` float32 ``γ^m (1 − terminated)``.
    :ivar terminated: ``(N,)`` float32.

    On CPU the ``obs`` column is shared with the buffer, not copied, when possible.
    """

    frames: torch.Tensor
    obs_index: torch.Tensor
    next_index: torch.Tensor
    act: torch.Tensor
    rew: torch.Tensor
    discount: torch.Tensor
    terminated: torch.Tensor

    def __len__(self) -> int:
        return int(self.act.shape[0])

    @property
    def device(self) -> torch.device:
        return self.act.device

    @property
    def nbytes(self) -> int:
        """Bytes held by the dataset's tensors (frames shared with the buffer included)."""
        return sum(
            t.element_size() * t.numel()
            for t in (
                self.frames,
                self.obs_index,
                self.next_index,
                self.act,
                self.rew,
                self.discount,
                self.terminated,
            )
        )

    def _frames_at(self, index: torch.Tensor) -> torch.Tensor:
        """``frames`` rows for an index tensor ``(B,)`` or ``(B, S)``: one ``index_select``
        (a row copy, ~10× faster than advanced indexing for image rows)."""
        rows = self.frames.index_select(0, index.reshape(-1))
        return rows.view(*index.shape, *self.frames.shape[1:])

    def gather(self, pos: torch.Tensor) -> DiscreteTransitions:
        """The transitions at positions ``pos`` (``(B,)`` int64 on :attr:`device`)."""
        return DiscreteTransitions(
            obs=self._frames_at(self.obs_index[pos]),
            act=self.act[pos],
            rew=self.rew[pos],
            obs_next=self._frames_at(self.next_index[pos]),
            discount=self.discount[pos],
            terminated=self.terminated[pos],
        )

    def sample(self, batch_size: int) -> DiscreteTransitions:
        """Uniformly sample ``batch_size`` transitions (with replacement)."""
        return self.gather(torch.randint(len(self), (batch_size,), device=self.device))

    def all(self, shuffle: bool = True) -> DiscreteTransitions:
        """All transitions as one batch (in random order when ``shuffle``)."""
        pos = (
            torch.randperm(len(self), device=self.device)
            if shuffle
            else torch.arange(len(self), device=self.device)
        )
        return self.gather(pos)

    @classmethod
    def from_buffer(
        cls,
        buffer: ReplayBuffer,
        *,
        device: torch.device | str = "cpu",
        gamma: float = 0.99,
        n_step: int = 1,
        num_actions: int | None = None,
    ) -> FrameDataset:
        """Index every transition of ``buffer`` (any Tianshou ``ReplayBuffer``, vector
        buffers and frame-stacked compact buffers included).

        ``dataset.gather(i)`` returns what ``buffer[indices[i]]`` returns for ``obs`` and
        ``obs_next`` (stacked with ``buffer.stack_num``), with n-step targets added.

        :param device: where the tensors live (frames are copied there once).
        :param gamma: discount of the n-step sums and the bootstrap factor.
        :param n_step: n of the n-step return (1 = one-step TD).
        :param num_actions: A; actions outside ``[0, A)`` raise ``ValueError``.
        :raises ValueError: empty buffer, bad actions, ``n_step < 1``.
        :raises TypeError: Dict/Tuple observations.
        """
        if n_step < 1:
            raise ValueError(f"n_step={n_step}: expected >= 1")
        indices = np.asarray(buffer.sample_indices(0), dtype=np.int64)
        if len(indices) == 0:
            raise ValueError("the replay buffer is empty")
        indices.sort()
        dev = torch.device(device)
        stack_num = int(buffer.stack_num)
        raw_obs = _storage_column(buffer, "obs")
        has_obs_next = bool(getattr(buffer, "_save_obs_next", False)) and (
            "obs_next" in buffer._meta.get_keys()
        )

        act_np = np.asarray(buffer.act)[indices]
        if act_np.ndim != 1 and not (act_np.ndim == 2 and act_np.shape[1] == 1):
            raise ValueError(
                f"dataset actions have shape {act_np.shape[1:]} per step; the discrete "
                "algorithms expect one integer action per step"
            )
        act_np = act_np.reshape(-1)
        if not np.all(np.equal(np.mod(act_np, 1), 0)):
            raise ValueError("dataset actions are not integers; expected discrete actions")
        act_i = act_np.astype(np.int64)
        if num_actions is not None and (act_i.min() < 0 or act_i.max() >= num_actions):
            raise ValueError(
                f"dataset actions span {act_i.min()}..{act_i.max()}; expected 0..{num_actions - 1} "
                f"(the action space has {num_actions} actions)"
            )

        # observation rows: [obs column | obs_next column | frames of exact-stack patches]
        parts: list[np.ndarray] = [raw_obs]
        maxsize = raw_obs.shape[0]
        position = np.full(maxsize, -1, dtype=np.int64)
        position[indices] = np.arange(len(indices))
        obs_rows = _stack_rows(buffer, indices, stack_num) if stack_num > 1 else indices.copy()
        next_rows_all: np.ndarray | None = None
        if has_obs_next:
            parts.append(_storage_column(buffer, "obs_next"))
            next_rows_all = obs_rows + maxsize  # the obs_next column, stacked like obs
        offset = sum(p.shape[0] for p in parts)

        def add_patches(table: tuple[np.ndarray, np.ndarray] | None, target: np.ndarray) -> None:
            nonlocal offset
            if table is None:
                return
            if stack_num < 2:
                raise ValueError("stack patches need a frame-stacked buffer (stack_num > 1)")
            rows, stacks = table
            keep = (rows < maxsize) & (position[np.minimum(rows, maxsize - 1)] >= 0)
            rows, stacks = rows[keep], stacks[keep]
            if len(rows) == 0:
                return
            frames = stacks.reshape(-1, *stacks.shape[2:])
            parts.append(frames)
            target[position[rows]] = offset + np.arange(frames.shape[0]).reshape(
                len(rows), stack_num
            )
            offset += frames.shape[0]

        add_patches(_patch_table(buffer, "_obs_patch_index", "_obs_patch_stacks"), obs_rows)
        if next_rows_all is None:
            # obs_next(i) = obs(next(i)), with obs patches applied (as the buffer does)
            nxt = np.asarray(buffer.next(indices), dtype=np.int64)
            pos_next = position[nxt]
            if np.all(pos_next >= 0):
                next_rows_all = obs_rows[pos_next]
            else:  # pragma: no cover - next() left the valid rows
                next_rows_all = _stack_rows(buffer, nxt, stack_num) if stack_num > 1 else nxt.copy()
            del nxt, pos_next
        add_patches(
            _patch_table(buffer, "_obs_next_patch_index", "_obs_next_patch_stacks"),
            next_rows_all,
        )

        rew, last, discount, terminated = n_step_targets(buffer, indices, gamma, n_step)
        next_rows = next_rows_all if n_step == 1 else next_rows_all[position[last]]
        del next_rows_all

        dtype = _frames_dtype(raw_obs)
        row_shape = raw_obs.shape[1:]
        for p in parts[1:]:
            if p.shape[1:] != row_shape:
                raise ValueError(
                    f"observation rows have shape {p.shape[1:]} in one column and {row_shape} "
                    "in another"
                )
        if len(parts) == 1 and raw_obs.dtype == dtype and raw_obs.flags.c_contiguous:
            frames_t = torch.from_numpy(raw_obs)  # shared with the buffer on CPU
        else:
            frames_t = torch.from_numpy(
                np.concatenate([np.asarray(p, dtype=dtype) for p in parts], axis=0)
            )

        def long(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64)).to(dev)

        index_dtype = np.int32 if frames_t.shape[0] < 2**31 else np.int64

        def index(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(x, dtype=index_dtype)).to(dev)

        def f32(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(dev)

        return cls(
            frames=frames_t.to(dev),
            obs_index=index(obs_rows),
            next_index=index(next_rows),
            act=long(act_i),
            rew=f32(rew),
            discount=f32(discount),
            terminated=f32(terminated),
        )


def _patch_table(
    buffer: ReplayBuffer, index_attr: str, stacks_attr: str
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(rows, stacks)`` of a buffer's exact-stack patches (duck-typed: any buffer with a
    per-row patch index table and a stack array, as ``FrameStackReplayBuffer``)."""
    index = getattr(buffer, index_attr, None)
    stacks = getattr(buffer, stacks_attr, None)
    if index is None or stacks is None:
        return None
    index = np.asarray(index)
    rows = np.flatnonzero(index >= 0)
    if len(rows) == 0:
        return None
    return rows.astype(np.int64), np.asarray(stacks)[index[rows]]


# --------------------------------------------------------------------------- policies


class DiscretePolicy(Policy):
    """Base of the discrete policies: observation conversion and ε-greedy noise.

    Subclasses implement :meth:`select_action` on a tensor batch. Tianshou's ``Collector``
    adds the ε-greedy noise (:meth:`add_exploration_noise`) when created with
    ``exploration_noise=True``; ε is ``eps_inference`` outside training steps.

    :param action_space: the environment's ``Discrete`` action space (``start`` 0).
    :param observation_space: the environment's observation space.
    :param eps_inference: probability of a uniformly random action when evaluating.
    :param eps_training: the same within training steps (offline: unused by the trainer).
    """

    def __init__(
        self,
        *,
        action_space: gym.Space[Any],
        observation_space: gym.Space[Any] | None = None,
        eps_inference: float = 0.0,
        eps_training: float = 0.0,
    ) -> None:
        if not isinstance(action_space, gym.spaces.Discrete):
            raise TypeError(f"action_space={action_space}: expected a gymnasium Discrete space")
        if int(action_space.start) != 0:
            raise ValueError(f"action_space={action_space}: expected start=0")
        super().__init__(
            action_space=action_space,
            observation_space=observation_space,
            action_scaling=False,
            action_bound_method=None,
        )
        self.num_actions = int(action_space.n)
        self.eps_inference = float(eps_inference)
        self.eps_training = float(eps_training)

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def set_eps_inference(self, eps: float) -> None:
        """Set ε for evaluation."""
        self.eps_inference = float(eps)

    def set_eps_training(self, eps: float) -> None:
        """Set ε within training steps."""
        self.eps_training = float(eps)

    def obs_to_tensor(self, obs: Any) -> torch.Tensor:
        """Observations (numpy or tensor, ``(B, *obs_shape)``) as a tensor on the policy's
        device; ``uint8`` stays ``uint8``, other dtypes become ``float32``."""
        x = obs if isinstance(obs, torch.Tensor) else torch.as_tensor(np.asarray(obs))
        if x.dtype != torch.uint8:
            x = x.to(torch.float32)
        return x.to(self.device)

    @abstractmethod
    def select_action(self, obs: torch.Tensor) -> torch.Tensor:
        """``obs (B, *obs_shape)`` → greedy (or sampled) actions ``(B,)`` int64."""

    def forward(
        self,
        batch: ObsBatchProtocol,
        state: dict[str, Any] | BatchProtocol | np.ndarray | None = None,
        **kwargs: Any,
    ) -> ActStateBatchProtocol:
        with torch.no_grad():
            act = self.select_action(self.obs_to_tensor(batch.obs))
        return cast(ActStateBatchProtocol, Batch(act=act.cpu().numpy(), state=state))

    def add_exploration_noise(self, act: TArrOrActBatch, batch: ObsBatchProtocol) -> TArrOrActBatch:
        """ε-greedy: replace each action by a uniform one with probability ε."""
        eps = self.eps_training if self.is_within_training_step else self.eps_inference
        if eps <= 0.0:
            return act
        if not isinstance(act, np.ndarray):
            raise NotImplementedError("ε-greedy noise needs numpy actions")
        # numpy's global generator, as Tianshou's policies (seeded by np.random.seed)
        noisy = act.copy()
        mask = np.random.random(len(noisy)) < eps
        noisy[mask] = np.random.randint(self.num_actions, size=int(mask.sum()))
        return cast(TArrOrActBatch, noisy)


class QValuePolicy(DiscretePolicy):
    """Acts greedily on ``Q(s, ·)``: ``argmax_a Q(s, a)``.

    :param model: ``obs → (B, A)`` Q-values, or ``(B, A, N)`` quantiles (``Q`` = their mean).
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        action_space: gym.Space[Any],
        observation_space: gym.Space[Any] | None = None,
        eps_inference: float = 0.0,
    ) -> None:
        super().__init__(
            action_space=action_space,
            observation_space=observation_space,
            eps_inference=eps_inference,
        )
        self.model = model

    def q_values(self, obs: torch.Tensor) -> torch.Tensor:
        """``(B, A)`` action values (the mean over quantiles for a quantile network)."""
        out = cast(torch.Tensor, self.model(obs))
        return out.mean(dim=2) if out.dim() == 3 else out

    def select_action(self, obs: torch.Tensor) -> torch.Tensor:
        return self.q_values(obs).argmax(dim=1)


class DiscreteActorPolicy(DiscretePolicy):
    """Acts with a categorical policy given by logits.

    :param actor: ``obs → (B, A)`` logits, or a module returning a tuple whose element
        ``logits_index`` holds them (e.g. a :class:`~.discrete_nets.DualHeadNet`).
    :param deterministic_eval: take ``argmax`` outside training steps (otherwise sample).
    :param logits_index: which output of a tuple-valued ``actor`` are the logits.
    """

    def __init__(
        self,
        *,
        actor: nn.Module,
        action_space: gym.Space[Any],
        observation_space: gym.Space[Any] | None = None,
        deterministic_eval: bool = True,
        eps_inference: float = 0.0,
        logits_index: int | None = None,
    ) -> None:
        super().__init__(
            action_space=action_space,
            observation_space=observation_space,
            eps_inference=eps_inference,
        )
        self.actor = actor
        self.deterministic_eval = deterministic_eval
        self.logits_index = logits_index

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        """``(B, A)`` policy logits."""
        out = self.actor(obs)
        if self.logits_index is not None:
            out = out[self.logits_index]
        return cast(torch.Tensor, out)

    def select_action(self, obs: torch.Tensor) -> torch.Tensor:
        logits = self.logits(obs)
        if self.deterministic_eval and not self.is_within_training_step:
            return logits.argmax(dim=1)
        # Gumbel-max sampling from the categorical distribution
        gumbel = -torch.empty_like(logits).exponential_().log()
        return (logits + gumbel).argmax(dim=1)


TDiscretePolicy = TypeVar("TDiscretePolicy", bound=DiscretePolicy)


# --------------------------------------------------------------------------- training


@torch.no_grad()
def hard_update(target: nn.Module, source: nn.Module) -> None:
    """Copy every parameter and buffer of ``source`` into ``target`` (one fused call each)."""
    tgt = list(target.parameters()) + list(target.buffers())
    src = list(source.parameters()) + list(source.buffers())
    if len(tgt) != len(src):
        raise ValueError("target and source networks have different parameter lists")
    torch._foreach_copy_(tgt, src)


class _FastOptimizer(OfflineAlgorithm.Optimizer):
    """Tianshou's optimizer wrapper (``step(loss)``: zero the gradients, backpropagate, clip,
    step) with the short paths of :mod:`~tianshou_offline.algorithms._optim` — the same
    update with less fixed cost per call. Tianshou's ``_create_optimizer`` builds it through
    the algorithm's ``Optimizer`` attribute."""

    def __init__(
        self, optim: torch.optim.Optimizer, module: nn.Module, max_grad_norm: float | None = None
    ) -> None:
        super().__init__(optim, module, max_grad_norm=max_grad_norm)
        self._params = list(module.parameters())
        prefer_fused(optim, self._params)
        self._fast_step = FastStep(optim)

    def step(
        self, loss: torch.Tensor, retain_graph: bool | None = None, create_graph: bool = False
    ) -> None:
        zero_grad(self._params)
        torch.autograd.backward(loss, retain_graph=retain_graph, create_graph=create_graph)
        if self._max_grad_norm is not None:
            nn.utils.clip_grad_norm_(self._params, max_norm=self._max_grad_norm)
        self._fast_step()


class DiscreteOfflineAlgorithm(
    OfflineAlgorithm[TDiscretePolicy], Generic[TDiscretePolicy, TStats], ABC
):
    """Base of the discrete offline algorithms: device-resident frame-indexed sampling,
    periodic hard target updates and typed statistics.

    Subclasses implement ``_update_with_batch(batch) -> TStats`` (the whole update, in the
    order of the paper) and set :attr:`gamma` / :attr:`n_step` for the dataset's targets.
    Training goes through Tianshou: ``algorithm.run_training(OfflineTrainerParams(...))``;
    ``process_buffer`` (called once by Tianshou's ``OfflineTrainer``) builds the
    :class:`FrameDataset`.

    :param policy: the acting policy.
    """

    gamma: float = 0.99
    n_step: int = 1
    Optimizer = _FastOptimizer
    """The wrapper Tianshou's ``_create_optimizer`` builds (fused Adam, short step path)."""

    def __init__(self, *, policy: TDiscretePolicy) -> None:
        super().__init__(policy=policy)
        self._dataset: FrameDataset | None = None
        self._dataset_key: int | None = None
        self._stats_type: type[TStats] | None = None
        self._num_updates = 0
        self._modules_cache: list[nn.Module] | None = None

    @property
    def device(self) -> torch.device:
        return self.policy.device

    @property
    def num_updates(self) -> int:
        """Gradient steps taken so far."""
        return self._num_updates

    @property
    def stats_type(self) -> type[TStats]:
        """The ``TrainingStats`` class this algorithm returns (the type argument of its class,
        see :func:`~tianshou_offline.algorithms.base.resolve_stats_type`)."""
        if self._stats_type is None:
            found: type[Any] | None = None
            for arg in typing.get_args(getattr(self, "__orig_class__", None)):
                if found is None and isinstance(arg, type) and issubclass(arg, TrainingStats):
                    found = arg
            self._stats_type = cast(type[TStats], found or resolve_stats_type(type(self)))
        return self._stats_type

    @staticmethod
    def _make_target(module: nn.Module) -> nn.Module:
        """A frozen copy of ``module`` (the lagged target network)."""
        target = copy.deepcopy(module)
        target.requires_grad_(False)
        target.eval()
        return target

    def process_buffer(self, buffer: TBuffer) -> TBuffer:
        """Build the device-resident dataset (called once by Tianshou's ``OfflineTrainer``)."""
        assert isinstance(buffer, ReplayBuffer)
        self._prepare(buffer)
        return buffer

    def _prepare(self, buffer: ReplayBuffer) -> FrameDataset:
        dataset = FrameDataset.from_buffer(
            buffer,
            device=self.device,
            gamma=self.gamma,
            n_step=self.n_step,
            num_actions=self.policy.num_actions,
        )
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

    def dataset_for(self, buffer: ReplayBuffer) -> FrameDataset:
        """The prepared dataset of ``buffer`` (built now if ``process_buffer`` was not called)."""
        if self._dataset is None or self._dataset_key != id(buffer):
            return self._prepare(buffer)
        return self._dataset

    def update(self, buffer: ReplayBuffer, sample_size: int | None) -> TStats:
        """One gradient step on ``sample_size`` transitions sampled from ``buffer``'s dataset.

        Same contract as Tianshou's ``OfflineAlgorithm.update`` (must run within a training
        step; ``sample_size`` None or 0 uses the whole buffer, shuffled).
        """
        if not self.policy.is_within_training_step:
            raise RuntimeError(
                "update() was called outside of a training step; use Tianshou's trainer or "
                "tianshou.utils.torch_utils.policy_within_training_step(algorithm.policy)"
            )
        start = time.perf_counter()
        dataset = self.dataset_for(buffer)
        batch = dataset.sample(sample_size) if sample_size else dataset.all()
        if self._all_in_train_mode():
            stats = self._update_with_batch(batch)
        else:
            with torch_train_mode(self):
                stats = self._update_with_batch(batch)
        self._num_updates += 1
        for scheduler in self.lr_schedulers:
            scheduler.step()
        stats.train_time = time.perf_counter() - start
        return stats

    def _all_in_train_mode(self) -> bool:
        """Whether every submodule is already in training mode (the usual case between
        updates), so that switching modes — a recursive walk with costly attribute sets —
        can be skipped."""
        if self._modules_cache is None:
            self._modules_cache = list(self.modules())
        return all(m.training for m in self._modules_cache)

    def _as_transitions(
        self, batch: RolloutBatchProtocol | DiscreteTransitions
    ) -> DiscreteTransitions:
        """Convert a Tianshou numpy ``Batch`` (one-step targets) into
        :class:`DiscreteTransitions` on the device; :class:`DiscreteTransitions` pass through."""
        if isinstance(batch, DiscreteTransitions):
            return batch
        dev = self.device
        terminated = np.asarray(batch.terminated, dtype=np.float32)

        def obs(x: Any) -> torch.Tensor:
            t = torch.as_tensor(np.asarray(x))
            return (t if t.dtype == torch.uint8 else t.to(torch.float32)).to(dev)

        return DiscreteTransitions(
            obs=obs(batch.obs),
            act=torch.as_tensor(np.asarray(batch.act).reshape(-1), dtype=torch.long, device=dev),
            rew=torch.as_tensor(np.asarray(batch.rew, dtype=np.float32), device=dev),
            obs_next=obs(batch.obs_next),
            discount=torch.as_tensor(self.gamma * (1.0 - terminated), device=dev),
            terminated=torch.as_tensor(terminated, device=dev),
        )

    @abstractmethod
    def _update_with_batch(self, batch: RolloutBatchProtocol | DiscreteTransitions) -> TStats:
        """The algorithm's update on one mini-batch; returns its typed statistics.

        :param batch: device-resident :class:`DiscreteTransitions` (or a Tianshou numpy
            ``Batch``, converted with :meth:`_as_transitions`).
        """

    def _extend_stats(self, stats: TStats, step: Any) -> None:
        """Hook for subclasses: fill in extra statistics fields from the step's tensors."""
