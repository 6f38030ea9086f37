"""The algorithm core shared by the continuous and the discrete offline algorithms:
one-sync statistics, typed-stats resolution, n-step targets and target-network updates.
"""

from __future__ import annotations

import copy
import typing
from typing import Any

import numpy as np
import torch
from tianshou.algorithm.algorithm_base import TrainingStats
from tianshou.data import ReplayBuffer
from torch import nn

__all__ = [
    "hard_update",
    "make_target",
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
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


@torch.no_grad()
def hard_update(target: nn.Module, source: nn.Module) -> None:
    """Copy every parameter and buffer of ``source`` into ``target`` (one fused call each)."""
    tgt = list(target.parameters()) + list(target.buffers())
    src = list(source.parameters()) + list(source.buffers())
    if len(tgt) != len(src):
        raise ValueError("target and source networks have different parameter lists")
    torch._foreach_copy_(tgt, src)
