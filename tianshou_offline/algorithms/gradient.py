"""Gradient steps: an optimizer of one network with its gradient clipping
(:class:`GradientStep`), several networks' steps from one loss (:func:`joint_step`), and a
Tianshou logger that counts steps on a progress bar (:func:`step_counter`); re-exported by
:mod:`tianshou_offline.algorithms.core`.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Sequence
from typing import Any

import torch
from tianshou.algorithm.algorithm_base import OfflineAlgorithm
from torch import nn

from tianshou_offline.algorithms._optim import FastStep, prefer_fused, zero_grad
from tianshou_offline.progress import Progress

if typing.TYPE_CHECKING:
    from tianshou.utils import BaseLogger

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- gradient step


class GradientStep(OfflineAlgorithm.Optimizer):
    """Tianshou's optimizer wrapper with the short paths of
    :mod:`~tianshou_offline.algorithms._optim` — the same update with less fixed cost per call.

    Tianshou's ``_create_optimizer`` builds it through the algorithm's ``Optimizer``
    attribute (and registers it for ``state_dict``). :meth:`step` keeps Tianshou's contract:
    zero the gradients, backpropagate ``loss``, clip the gradient norm (when
    ``max_grad_norm`` is set), step. A module with its own ``clip_grad_norm_`` (a
    :class:`~tianshou_offline.algorithms.continuous.nets.CriticEnsemble` clips each member
    separately) is clipped with it. Several optimizers after one backward pass:
    :func:`joint_step`.

    :param optim: the torch optimizer (an Adam/AdamW left to defaults is switched to the fused
        kernel, see :func:`~tianshou_offline.algorithms._optim.prefer_fused`).
    :param module: the module whose parameters ``optim`` updates.
    :param max_grad_norm: clip the gradient norm to this value (None: no clipping).
    """

    def __init__(
        self, optim: torch.optim.Optimizer, module: nn.Module, max_grad_norm: float | None = None
    ) -> None:
        super().__init__(optim, module, max_grad_norm=max_grad_norm)
        self.params = list(module.parameters())
        prefer_fused(optim, self.params)
        self._clip = getattr(module, "clip_grad_norm_", None)
        self._fast_step = FastStep(optim)

    @property
    def optim(self) -> torch.optim.Optimizer:
        """The wrapped torch optimizer."""
        return self._optim

    def step(
        self, loss: torch.Tensor, retain_graph: bool | None = None, create_graph: bool = False
    ) -> None:
        """Zero the gradients, backpropagate ``loss``, clip and step (Tianshou's contract)."""
        self.zero_grad()
        torch.autograd.backward(loss, retain_graph=retain_graph, create_graph=create_graph)
        self.apply_gradients()

    def zero_grad(self) -> None:
        """Drop the gradients of the optimized parameters."""
        zero_grad(self.params)

    def apply_gradients(self) -> None:
        """Clip (when ``max_grad_norm`` is set) and step on the gradients already computed."""
        if self._max_grad_norm is not None:
            if callable(self._clip):
                self._clip(self._max_grad_norm)
            else:
                nn.utils.clip_grad_norm_(self.params, max_norm=self._max_grad_norm)
        self._fast_step()


def joint_step(
    loss: torch.Tensor,
    optimizers: Sequence[GradientStep],
    optional: Sequence[tuple[torch.Tensor | None, GradientStep | None]] = (),
) -> None:
    """One backward pass of ``loss`` (a sum of losses over disjoint parameters), then every
    optimizer clips and steps, in order. Each ``(loss, optimizer)`` of ``optional`` (a learned
    temperature's or multiplier's, ``None`` when it is fixed) is added to the sum, and its
    optimizer to the steps, where both are present."""
    for term, step in optional:
        if term is not None and step is not None:
            loss = loss + term
            optimizers = [*optimizers, step]
    for optim in optimizers:
        optim.zero_grad()
    torch.autograd.backward(loss)
    for optim in optimizers:
        optim.apply_gradients()


def step_counter(bar: Progress) -> BaseLogger:
    """A Tianshou logger that logs nothing and counts every gradient step on ``bar`` (the
    trainer reports each update to its logger)."""
    from tianshou.utils import LazyLogger

    class StepCounter(LazyLogger):
        def log_update_data(self, log_data: dict[str, Any], step: int) -> None:
            bar.update(1)

    return StepCounter()
