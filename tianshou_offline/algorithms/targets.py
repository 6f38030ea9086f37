"""Target networks: a frozen copy of a network (:func:`make_target`) kept near it by Polyak
averaging or hard copies; re-exported by :mod:`tianshou_offline.algorithms.core`.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- target networks


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """``θ' ← τ θ + (1 − τ) θ'`` for all parameters, in one fused call."""
    tgt: list[torch.Tensor] = list(target.parameters())
    src: list[torch.Tensor] = list(source.parameters())
    if len(tgt) != len(src):
        raise ValueError("target and source networks have different parameter lists")
    torch._foreach_lerp_(tgt, src, tau)


def make_target(module: nn.Module) -> nn.Module:
    """A frozen deep copy of ``module`` to serve as its target network, in eval mode.

    A target network is only ever evaluated (to compute TD targets), never trained, so it
    stays in eval mode (dropout off, batch-norm statistics frozen) — as Tianshou's lagged
    networks (``EvalModeModuleWrapper``). :meth:`OfflineAlgorithmCore.train` keeps it there
    when the algorithm switches modes.
    """
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    target.eval()
    return target


@torch.no_grad()
def hard_update(target: nn.Module, source: nn.Module) -> None:
    """Copy every parameter and buffer of ``source`` into ``target`` (one fused call each)."""
    tgt = list(target.parameters()) + list(target.buffers())
    src = list(source.parameters()) + list(source.buffers())
    if len(tgt) != len(src):
        raise ValueError("target and source networks have different parameter lists")
    torch._foreach_copy_(tgt, src)
