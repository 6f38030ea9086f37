"""Networks for the discrete-action algorithms: observation trunks (MLP, the Atari conv net)
and the heads built on them.

Every module maps plain tensors to plain tensors (no Tianshou ``Batch``, no numpy), so the
algorithms call them on device-resident mini-batches. Observations may arrive in their
storage dtype (``uint8`` Atari frames): the trunk converts them to ``float32`` (and scales
them) itself, so frames stay one byte per pixel in memory until a batch is used.

Shapes: ``B`` batch, ``A`` number of actions, ``N`` quantiles, ``F`` trunk features.

- :class:`MLPTrunk` — flat observations ``(B, *obs_shape) -> (B, F)``.
- :class:`AtariTrunk` — the convolutional torso of Mnih et al. (2015), "Human-level control
  through deep reinforcement learning", Nature 518 (Methods, "Model architecture"):
  ``(B, C, 84, 84) -> (B, 3136)``; the same layers as Tianshou's ``DQNet(features_only=True)``.
- :class:`QNet` — ``Q(s, ·)``: ``(B, A)``.
- :class:`QuantileQNet` — QR-DQN's quantiles ``θ_i(s, ·)``: ``(B, A, N)`` (Dabney et al. 2018).
- :class:`DualHeadNet` — two heads on one shared trunk, ``(B, A), (B, A)``: BCQ's Q-values
  and imitation logits, or CRR's policy logits and Q-values (as Tianshou's examples share one
  feature net between the two ``Actor``/``Critic`` heads).

:func:`make_trunk` picks the trunk from the observation space.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

__all__ = [
    "AtariTrunk",
    "DualHeadNet",
    "MLPTrunk",
    "QNet",
    "QuantileQNet",
    "Trunk",
    "make_head",
    "make_trunk",
]


class Trunk(nn.Module):
    """Base of the observation trunks: ``forward(obs (B, *obs_shape)) -> (B, output_dim)``.

    :ivar output_dim: F, the number of features.
    """

    output_dim: int

    def forward(self, obs: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class MLPTrunk(Trunk):
    """A ReLU MLP on flattened observations.

    :param obs_dim: D, the flattened observation size.
    :param hidden_sizes: widths of the hidden layers (each followed by ReLU); empty → identity
        on the flattened input (F = D).
    """

    def __init__(self, obs_dim: int, hidden_sizes: Sequence[int] = (64, 64)) -> None:
        super().__init__()
        sizes = [int(obs_dim), *(int(h) for h in hidden_sizes)]
        layers: list[nn.Module] = []
        for h_in, h_out in itertools.pairwise(sizes):
            layers += [nn.Linear(h_in, h_out), nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*layers)
        self.obs_dim = int(obs_dim)
        self.output_dim = sizes[-1]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.reshape(obs.shape[0], -1).to(torch.float32)
        out: torch.Tensor = self.net(x)
        return out


class AtariTrunk(Trunk):
    """The Nature-DQN convolutional torso (Mnih et al. 2015): three convolutions with ReLU,
    flattened (3136 features for 84×84 inputs).

    :param in_channels: C, the stacked frames (4).
    :param height: input height (84).
    :param width: input width (84).
    :param scale_obs: multiply inputs by 1/255 (``uint8`` pixels → [0, 1]). Tianshou's Atari
        examples default to unscaled inputs (``--scale-obs 0``); both work, scaled inputs are
        the better-conditioned choice and our examples' default.
    :param channels_last: run the convolutions in ``channels_last`` memory format (the same
        function; a faster forward and backward with oneDNN on CPU).
    """

    def __init__(
        self,
        in_channels: int = 4,
        height: int = 84,
        width: int = 84,
        *,
        scale_obs: bool = True,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, 32, kernel_size=8, stride=4),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, kernel_size=4, stride=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, kernel_size=3, stride=1),
            nn.ReLU(inplace=True),
            nn.Flatten(),
        )
        self.in_shape = (int(in_channels), int(height), int(width))
        self.scale_obs = scale_obs
        self.channels_last = channels_last
        if channels_last:
            for conv in self.net.modules():
                if isinstance(conv, nn.Conv2d):
                    conv.weight.data = conv.weight.data.contiguous(
                        memory_format=torch.channels_last
                    )
        with torch.no_grad():
            self.output_dim = int(self.net(torch.zeros(1, *self.in_shape)).shape[1])

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.channels_last:  # reorder the (uint8) input before converting it
            obs = obs.contiguous(memory_format=torch.channels_last)
        x = obs.to(torch.float32)
        if self.scale_obs:
            x = x.mul(1.0 / 255.0)
        out: torch.Tensor = self.net(x)
        return out


def make_head(in_dim: int, out_dim: int, hidden_sizes: Sequence[int] = ()) -> nn.Sequential:
    """``Linear``/``ReLU`` layers ``in_dim → hidden… → out_dim`` (no activation at the end)."""
    sizes = [int(in_dim), *(int(h) for h in hidden_sizes)]
    layers: list[nn.Module] = []
    for h_in, h_out in itertools.pairwise(sizes):
        layers += [nn.Linear(h_in, h_out), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(sizes[-1], int(out_dim)))
    return nn.Sequential(*layers)


class QNet(nn.Module):
    """``Q(s, ·)``: a trunk and a head with A outputs. ``forward(obs) -> (B, A)``.

    :param trunk: the observation trunk.
    :param num_actions: A.
    :param hidden_sizes: hidden widths of the head.
    """

    def __init__(self, trunk: Trunk, num_actions: int, hidden_sizes: Sequence[int] = ()) -> None:
        super().__init__()
        self.trunk = trunk
        self.num_actions = int(num_actions)
        self.head = make_head(trunk.output_dim, self.num_actions, hidden_sizes)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.trunk(obs))
        return out


class QuantileQNet(nn.Module):
    """QR-DQN's network (Dabney et al. 2018, arXiv:1710.10044, Sec. 4): N quantile estimates
    ``θ_i(s, a)`` per action, at the quantile midpoints ``τ̂_i = (2i − 1) / 2N``.

    ``forward(obs) -> (B, A, N)``; ``Q(s, a) = mean_i θ_i(s, a)``.

    :param trunk: the observation trunk.
    :param num_actions: A.
    :param num_quantiles: N (200 in the paper). N = 1 (τ̂ = ½) regresses one value per action
        with half the Huber loss: DQN's loss, halved.
    :param hidden_sizes: hidden widths of the head.
    """

    def __init__(
        self,
        trunk: Trunk,
        num_actions: int,
        num_quantiles: int = 200,
        hidden_sizes: Sequence[int] = (),
    ) -> None:
        super().__init__()
        if num_quantiles < 1:
            raise ValueError(f"num_quantiles={num_quantiles}: expected >= 1")
        self.trunk = trunk
        self.num_actions = int(num_actions)
        self.num_quantiles = int(num_quantiles)
        self.head = make_head(trunk.output_dim, self.num_actions * self.num_quantiles, hidden_sizes)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.trunk(obs))
        return out.view(-1, self.num_actions, self.num_quantiles)


class DualHeadNet(nn.Module):
    """Two heads with A outputs each on one shared trunk: ``forward(obs) -> (first, second)``,
    each ``(B, A)``.

    Discrete BCQ uses ``(Q-values, imitation logits)``; discrete CRR uses ``(policy logits,
    Q-values)``. One trunk evaluation serves both heads (Tianshou's examples share the feature
    net between the two heads too, but evaluate it once per head).

    :param trunk: the shared observation trunk.
    :param num_actions: A.
    :param hidden_sizes: hidden widths of each head.
    """

    def __init__(self, trunk: Trunk, num_actions: int, hidden_sizes: Sequence[int] = ()) -> None:
        super().__init__()
        self.trunk = trunk
        self.num_actions = int(num_actions)
        self.first = make_head(trunk.output_dim, self.num_actions, hidden_sizes)
        self.second = make_head(trunk.output_dim, self.num_actions, hidden_sizes)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.trunk(obs)
        return self.first(features), self.second(features)


def is_image_space(space: gym.Space[Any]) -> bool:
    """A ``Box`` of shape ``(C, H, W)`` (stacked frames) or ``(H, W)`` (one frame)."""
    return (
        isinstance(space, gym.spaces.Box)
        and len(space.shape) in (2, 3)
        and min(space.shape[-2:]) >= 32
    )


def make_trunk(
    observation_space: gym.Space[Any],
    hidden_sizes: Sequence[int] = (64, 64),
    *,
    scale_obs: bool = True,
    channels_last: bool = True,
) -> Trunk:
    """The trunk for an observation space: :class:`AtariTrunk` for images ``(C, H, W)``
    (``(H, W)`` counts as one channel), :class:`MLPTrunk` (with ``hidden_sizes``) otherwise.

    :raises TypeError: not a ``Box`` space.
    """
    if not isinstance(observation_space, gym.spaces.Box):
        raise TypeError(
            f"observation_space={observation_space}: the discrete algorithms need a Box "
            "observation space (flat vectors or stacked frames)"
        )
    shape = tuple(int(s) for s in observation_space.shape)
    if is_image_space(observation_space):
        c, h, w = (1, *shape) if len(shape) == 2 else shape
        return AtariTrunk(c, h, w, scale_obs=scale_obs, channels_last=channels_last)
    return MLPTrunk(int(np.prod(shape)), hidden_sizes)


def init_orthogonal_(module: nn.Module, gain: float = math.sqrt(2)) -> nn.Module:
    """Orthogonal weights and zero biases for every ``Linear``/``Conv2d`` in ``module``."""
    for m in module.modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            nn.init.orthogonal_(m.weight, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module
