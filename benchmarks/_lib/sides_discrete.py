"""The discrete sides of the speed benchmark (``benchmarks/train_speed.py``): ours and
Tianshou 2.0.1's with *our network modules* (behind a thin adapter giving its
``(obs, state, info) -> (out, state)`` interface; shared trunks shared as in its examples),
and the spec of d3rlpy's (:mod:`benchmarks._lib.d3rlpy_side`: an encoder with our layers
under its own last ``Linear``), so the ratios measure the algorithm implementations
(sampling, targets, losses, number of network passes), not the networks.

Two settings (:data:`CARTPOLE`, :data:`ATARI`; their algorithm settings are the presets
``speed-cartpole`` and ``speed-atari``): CartPole MLPs as in Tianshou's CartPole
offline tests (trunk 64, heads 64; QR-DQN with 200 quantiles), batch 64 (CQL: 32), 3-step
targets, on a 20k-transition buffer; the Nature-DQN conv net on 4×84×84 uint8 frames, head
512, batch 32, on a compact 10k-step buffer (one frame per step, ``stack_num=4``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm.algorithm_base import OfflineAlgorithm
from tianshou.algorithm.optim import AdamOptimizerFactory, OptimizerFactory, TorchOptimizerFactory
from tianshou.data import Batch, ReplayBuffer
from torch import nn

from benchmarks._lib.field_map import d3rlpy_algo, d3rlpy_has, d3rlpy_params
from tianshou_offline.algorithms import (
    DiscreteBCQConfig,
    DiscreteCQLConfig,
    DiscreteCRRConfig,
    DiscreteImitationConfig,
)
from tianshou_offline.algorithms.config import DiscreteConfig, DiscreteTDConfig
from tianshou_offline.algorithms.discrete.nets import make_head
from tianshou_offline.algorithms.presets import preset
from tianshou_offline.algorithms.registry import make_config

ALGORITHMS = ("il", "bcq", "cql", "crr")


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Setting:
    """One benchmark setting: the observations, the actions, the synthetic buffer's shape
    and the preset the algorithms' settings come from (``speed-<name>``)."""

    name: str
    obs_space: gym.spaces.Box
    num_actions: int
    buffer_size: int
    """transitions of the synthetic buffer"""
    episode_len: int
    """steps per episode of the synthetic buffer"""

    @property
    def preset(self) -> str:
        return f"speed-{self.name}"

    @property
    def action_space(self) -> gym.spaces.Discrete:
        return gym.spaces.Discrete(self.num_actions)

    def config(self, name: str, **overrides: Any) -> DiscreteConfig:
        """The preset's config of ``name``, with ``overrides``."""
        c = make_config(name, "discrete", preset=self.preset, **overrides)
        assert isinstance(c, DiscreteConfig)
        return c

    def batch_size(self, name: str) -> int:
        """The preset's batch size of ``name``."""
        return preset(self.preset).batch_size_of(name, "discrete")


CARTPOLE = Setting(
    name="cartpole",
    obs_space=gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
    num_actions=2,
    buffer_size=20_000,
    episode_len=200,
)
"""As Tianshou's CartPole offline tests (``test/offline/test_discrete_*.py``)."""
ATARI = Setting(
    name="atari",
    obs_space=gym.spaces.Box(0, 255, (4, 84, 84), np.uint8),
    num_actions=6,
    buffer_size=10_000,
    episode_len=1000,
)
"""As Tianshou's Atari offline examples (``examples/offline/atari_*.py``)."""


def synthetic_buffer(setting: Setting, size: int, episode_len: int, seed: int = 0) -> ReplayBuffer:
    """Random transitions with the setting's shapes in a full Tianshou ``ReplayBuffer``:
    CartPole-like rows with a stored ``obs_next``; Atari as a compact buffer (one frame per
    step, ``stack_num=4``, ``obs_next`` derived from the next row)."""
    rng = np.random.default_rng(seed)
    term = np.zeros(size, bool)
    term[episode_len - 1 :: episode_len] = True
    data: dict[str, Any] = {
        "act": rng.integers(0, setting.num_actions, size=size),
        "rew": rng.normal(size=size).astype(np.float32),
        "terminated": term,
        "truncated": np.zeros(size, bool),
        "done": term,
    }
    shape = setting.obs_space.shape
    image = len(shape) == 3
    if image:
        data["obs"] = rng.integers(0, 255, size=(size, *shape[1:]), dtype=np.uint8)
    else:
        data["obs"] = rng.normal(size=(size, *shape)).astype(np.float32)
        data["obs_next"] = rng.normal(size=(size, *shape)).astype(np.float32)
    buf = ReplayBuffer(
        size,
        stack_num=shape[0] if image else 1,
        ignore_obs_next=image,
        save_only_last_obs=image,
    )
    buf.set_batch(Batch(data))
    buf._size = size
    buf._insertion_idx = 0
    buf.last_index = np.array([size - 1])
    return buf


# --------------------------------------------------------------------------- builders


def build_ours(name: str, s: Setting, seed: int = 0, **overrides: Any) -> OfflineAlgorithm[Any]:
    """Our algorithm with the setting's preset (and ``overrides``, e.g. ``double_q=False``:
    QR-DQN's Algorithm 1, the target network selects the next action, one pass fewer than
    the preset's double-DQN rule, which is Tianshou's)."""
    torch.manual_seed(seed)
    return s.config(name, **overrides).build(s.obs_space, s.action_space)


class TianshouAPI(nn.Module):
    """One of our tensor → tensor modules (or a trunk and a head) behind Tianshou's net
    interface ``(obs, state, info) -> (out, state)``; numpy observations are converted as
    Tianshou's nets do."""

    def __init__(self, trunk: nn.Module, head: nn.Module | None = None, tuple_out: bool = True):
        super().__init__()
        self.trunk = trunk
        self.head = head if head is not None else nn.Identity()
        self.tuple_out = tuple_out

    def forward(self, obs: Any, state: Any = None, info: Any = None) -> Any:
        device = next(self.parameters()).device
        x = torch.as_tensor(obs, device=device)
        out = self.head(self.trunk(x))
        return (out, state) if self.tuple_out else out


def build_tianshou(
    name: str,
    s: Setting,
    seed: int = 0,
    *,
    tianshou_nets: bool = False,
    adam: str = "default",
    **overrides: Any,
) -> OfflineAlgorithm[Any]:
    """Tianshou 2.0.1's algorithm with the same network modules (``tianshou_nets``: its own
    Atari ``DQNet`` instead) and the settings of our config (the preset's, with
    ``overrides``).

    :param adam: ``default`` — Tianshou's ``AdamOptimizerFactory`` (for-loop kernel on CPU);
        ``fused`` — ``TorchOptimizerFactory(torch.optim.Adam, lr=…, fused=True)``.
    """
    from tianshou.algorithm.imitation.discrete_bcq import DiscreteBCQ as TsBCQ
    from tianshou.algorithm.imitation.discrete_bcq import DiscreteBCQPolicy as TsBCQPolicy
    from tianshou.algorithm.imitation.discrete_cql import DiscreteCQL as TsCQL
    from tianshou.algorithm.imitation.discrete_crr import DiscreteCRR as TsCRR
    from tianshou.algorithm.imitation.imitation_base import ImitationPolicy
    from tianshou.algorithm.imitation.imitation_base import (
        OfflineImitationLearning as TsIL,
    )
    from tianshou.algorithm.modelfree.qrdqn import QRDQNPolicy
    from tianshou.algorithm.modelfree.reinforce import DiscreteActorPolicy as TsActorPolicy

    c = s.config(name, **overrides)
    torch.manual_seed(seed)
    space, n, hidden = s.action_space, s.num_actions, c.hidden_sizes
    optim: OptimizerFactory = (
        TorchOptimizerFactory(torch.optim.Adam, lr=c.lr, fused=True)
        if adam == "fused"
        else AdamOptimizerFactory(lr=c.lr)
    )
    ts_trunk: nn.Module
    if tianshou_nets:
        from tianshou.env.atari.atari_network import DQNet

        ch, h, w = s.obs_space.shape
        ts_trunk = _TianshouTrunk(DQNet(ch, h, w, n, features_only=True))
        width = ts_trunk.output_dim
    else:
        trunk = c.trunk(s.obs_space)
        ts_trunk, width = trunk, trunk.output_dim
    if isinstance(c, DiscreteImitationConfig):
        actor = TianshouAPI(ts_trunk, make_head(width, n, hidden))
        return TsIL(policy=ImitationPolicy(actor=actor, action_space=space), optim=optim)
    if isinstance(c, DiscreteBCQConfig):
        q = TianshouAPI(ts_trunk, make_head(width, n, hidden))
        imitator = TianshouAPI(ts_trunk, make_head(width, n, hidden))
        return TsBCQ(
            policy=TsBCQPolicy(
                model=q,
                imitator=imitator,
                action_space=space,
                target_update_freq=c.target_update_freq,
                unlikely_action_threshold=c.unlikely_action_threshold,
            ),
            optim=optim,
            n_step_return_horizon=c.n_step_return_horizon,
            target_update_freq=c.target_update_freq,
            imitation_logits_penalty=c.imitation_logits_penalty,
        )
    if isinstance(c, DiscreteCQLConfig):
        qr = _QuantileAPI(ts_trunk, make_head(width, n * c.num_quantiles, hidden), n)
        return TsCQL(
            policy=QRDQNPolicy(model=qr, action_space=space),
            optim=optim,
            min_q_weight=c.min_q_weight,
            num_quantiles=c.num_quantiles,
            n_step_return_horizon=c.n_step_return_horizon,
            target_update_freq=c.target_update_freq,
        )
    if isinstance(c, DiscreteCRRConfig):
        actor = TianshouAPI(ts_trunk, make_head(width, n, hidden))
        critic = TianshouAPI(ts_trunk, make_head(width, n, hidden), tuple_out=False)
        return TsCRR(
            policy=TsActorPolicy(actor=cast(Any, actor), action_space=space),
            critic=critic,
            optim=optim,
            target_update_freq=c.target_update_freq,
        )
    raise ValueError(name)


class _QuantileAPI(TianshouAPI):
    def __init__(self, trunk: nn.Module, head: nn.Module, num_actions: int):
        super().__init__(trunk, head)
        self.num_actions = num_actions

    def forward(self, obs: Any, state: Any = None, info: Any = None) -> Any:
        out, state = super().forward(obs, state, info)
        return out.view(out.shape[0], self.num_actions, -1), state


class _TianshouTrunk(nn.Module):
    """Tianshou's ``DQNet(features_only=True)`` as a tensor → tensor trunk."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.output_dim = int(getattr(net, "output_dim", 3136))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        out, _ = self.net(obs)
        features: torch.Tensor = out
        return features


# --------------------------------------------------------------------------- specs

SETTINGS = {s.name: s for s in (CARTPOLE, ATARI)}


def d3rlpy_spec(
    name: str, s: Setting, seed: int = 0, adam: str = "fused", **overrides: Any
) -> dict[str, Any] | None:
    """What :mod:`benchmarks._lib.d3rlpy_side` builds: d3rlpy's config fields from the
    setting's config (:func:`~benchmarks._lib.field_map.d3rlpy_params`). None: d3rlpy has no
    such algorithm (discrete CRR)."""
    c = s.config(name, **overrides)
    if not d3rlpy_has(c):
        return None
    shape = s.obs_space.shape
    return {
        "suite": "discrete",
        "algo": d3rlpy_algo(c),
        "params": d3rlpy_params(c),
        "obs_shape": list(shape),
        "num_actions": s.num_actions,
        "trunk_hidden": [] if len(shape) == 3 else list(c.trunk_sizes),
        "head_hidden": list(c.hidden_sizes),
        "channels_last": True,
        "scale_obs": c.scale_obs,
        "batch_size": s.batch_size(name),
        "buffer_size": s.buffer_size,
        "episode_len": s.episode_len,
        "n_step": c.n_step_return_horizon if isinstance(c, DiscreteTDConfig) else 1,
        "gamma": c.gamma if isinstance(c, DiscreteTDConfig) else 0.99,
        "seed": seed,
        "adam": adam,
    }


@functools.cache
def _buffer(name: str) -> ReplayBuffer:
    setting = SETTINGS[name]
    return synthetic_buffer(setting, setting.buffer_size, setting.episode_len)


def build(spec: dict[str, Any]) -> tuple[OfflineAlgorithm[Any], ReplayBuffer, int, str]:
    """Ours or Tianshou's algorithm for a spec (``impl``, ``setting``, ``algo``, config
    ``overrides``, ``adam``): the algorithm, its buffer, its batch size and the library's
    name."""
    s, name = SETTINGS[spec["setting"]], spec["algo"]
    overrides = spec.get("overrides", {})
    if spec["impl"] == "ours":
        alg = build_ours(name, s, spec["seed"], **overrides)
        library = "tianshou-offline"
    else:
        alg = build_tianshou(name, s, spec["seed"], adam=spec["adam"], **overrides)
        library = "tianshou 2.0.1"
    return alg, _buffer(s.name), s.batch_size(name), library
