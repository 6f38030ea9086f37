"""The typed training statistics every algorithm returns: detached tensors read as floats
once per step (:func:`to_floats`), and the ``TrainingStats`` class an algorithm's generic
parameter names (:func:`resolve_stats_type`); re-exported by :mod:`tianshou_offline.algorithms.core`.
"""

from __future__ import annotations

import logging
import typing
from typing import Any

import torch
from tianshou.algorithm.algorithm_base import TrainingStats

log = logging.getLogger(__name__)


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
