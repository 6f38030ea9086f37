"""The discrete sides of the speed benchmark (``benchmarks/train_speed.py``): ours and
Tianshou 2.0.1's with *our network modules* (behind a thin adapter giving its
``(obs, state, info) -> (out, state)`` interface; shared trunks shared as in its examples),
and the spec of d3rlpy's (:mod:`benchmarks._lib.d3rlpy_side`: an encoder with our layers
under its own last ``Linear``), so the ratios measure the algorithm implementations
(sampling, targets, losses, number of network passes), not the networks.

Two settings (:data:`CARTPOLE`, :data:`ATARI`): CartPole MLPs as in Tianshou's CartPole
offline tests (trunk 64, heads 64; QR-DQN with 200 quantiles), batch 64 (CQL: 32), 3-step
targets, on a 20k-transition buffer; the Nature-DQN conv net on 4×84×84 uint8 frames, head
512, batch 32, on a compact 10k-step buffer (one frame per step, ``stack_num=4``).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm.algorithm_base import OfflineAlgorithm
from tianshou.algorithm.optim import AdamOptimizerFactory, OptimizerFactory, TorchOptimizerFactory
from tianshou.data import Batch, ReplayBuffer
from torch import nn

from tianshou_offline.algorithms import (
    AtariTrunk,
    DiscreteActorPolicy,
    DiscreteBCQ,
    DiscreteBCQPolicy,
    DiscreteCQL,
    DiscreteCRR,
    DiscreteImitationLearning,
    DualHeadNet,
    MLPTrunk,
    QNet,
    QuantileQNet,
    QValuePolicy,
)

ALGORITHMS = ("il", "bcq", "cql", "crr")


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Setting:
    """One benchmark setting (network shapes, batch sizes, hyperparameters)."""

    name: str
    obs_space: gym.spaces.Box
    num_actions: int
    hidden: tuple[int, ...]  # head hidden widths
    batch_size: dict[str, int]
    n_step: int
    num_quantiles: int
    target_update_freq: dict[str, int]
    lr: dict[str, float]
    bcq_threshold: float = 0.3

    def trunk(self) -> AtariTrunk | MLPTrunk:
        shape = self.obs_space.shape
        if len(shape) == 3:
            return AtariTrunk(*shape)
        return MLPTrunk(int(np.prod(shape)), [64])


CARTPOLE = Setting(
    name="cartpole",
    obs_space=gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
    num_actions=2,
    hidden=(64,),
    batch_size={"il": 64, "bcq": 64, "cql": 32, "crr": 64},
    n_step=3,
    num_quantiles=200,
    target_update_freq={"il": 0, "bcq": 320, "cql": 500, "crr": 320},
    lr={"il": 1e-3, "bcq": 3e-4, "cql": 3e-3, "crr": 7e-4},
    bcq_threshold=0.6,
)
"""As Tianshou's CartPole offline tests (``test/offline/test_discrete_*.py``)."""
ATARI = Setting(
    name="atari",
    obs_space=gym.spaces.Box(0, 255, (4, 84, 84), np.uint8),
    num_actions=6,
    hidden=(512,),
    batch_size=dict.fromkeys(ALGORITHMS, 32),
    n_step=1,
    num_quantiles=200,
    target_update_freq={"il": 0, "bcq": 8000, "cql": 500, "crr": 500},
    lr={"il": 1e-4, "bcq": 6.25e-5, "cql": 1e-4, "crr": 1e-4},
    bcq_threshold=0.3,
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


def build_ours(
    name: str, s: Setting, seed: int = 0, *, double_q: bool = True
) -> OfflineAlgorithm[Any]:
    """Our algorithm with the setting's network and hyperparameters.

    :param double_q: CQL selects the target action with the online network, as Tianshou's
        QR-DQN (our default is QR-DQN's Algorithm 1: the target network, one pass fewer).
    """
    torch.manual_seed(seed)
    space = gym.spaces.Discrete(s.num_actions)
    optim = AdamOptimizerFactory(lr=s.lr[name])
    if name == "il":
        return DiscreteImitationLearning(
            policy=DiscreteActorPolicy(
                actor=QNet(s.trunk(), s.num_actions, s.hidden), action_space=space
            ),
            optim=optim,
        )
    if name == "bcq":
        return DiscreteBCQ(
            policy=DiscreteBCQPolicy(
                model=DualHeadNet(s.trunk(), s.num_actions, s.hidden),
                action_space=space,
                unlikely_action_threshold=s.bcq_threshold,
            ),
            optim=optim,
            n_step_return_horizon=s.n_step,
            target_update_freq=s.target_update_freq[name],
        )
    if name == "cql":
        return DiscreteCQL(
            policy=QValuePolicy(
                model=QuantileQNet(s.trunk(), s.num_actions, s.num_quantiles, s.hidden),
                action_space=space,
            ),
            optim=optim,
            min_q_weight=10.0,
            n_step_return_horizon=s.n_step,
            target_update_freq=s.target_update_freq[name],
            double_q=double_q,
        )
    if name == "crr":
        return DiscreteCRR(
            policy=DiscreteActorPolicy(
                actor=DualHeadNet(s.trunk(), s.num_actions, s.hidden),
                action_space=space,
                logits_index=0,
            ),
            optim=optim,
            n_step_return_horizon=1,
            target_update_freq=s.target_update_freq[name],
        )
    raise ValueError(name)


def _head(in_dim: int, out_dim: int, hidden_sizes: Sequence[int] = ()) -> nn.Sequential:
    """``Linear``/``ReLU`` layers ``in_dim → hidden… → out_dim``: the layers of our networks'
    heads (``QNet``, ``QuantileQNet``, ``DualHeadNet``), for Tianshou's side."""
    sizes = [int(in_dim), *(int(h) for h in hidden_sizes)]
    layers: list[nn.Module] = []
    for h_in, h_out in itertools.pairwise(sizes):
        layers += [nn.Linear(h_in, h_out), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(sizes[-1], int(out_dim)))
    return nn.Sequential(*layers)


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
    name: str, s: Setting, seed: int = 0, *, tianshou_nets: bool = False, adam: str = "default"
) -> OfflineAlgorithm[Any]:
    """Tianshou 2.0.1's algorithm with the same network modules (``tianshou_nets``: its own
    Atari ``DQNet`` instead).

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

    torch.manual_seed(seed)
    space = gym.spaces.Discrete(s.num_actions)
    optim: OptimizerFactory = (
        TorchOptimizerFactory(torch.optim.Adam, lr=s.lr[name], fused=True)
        if adam == "fused"
        else AdamOptimizerFactory(lr=s.lr[name])
    )
    ts_trunk: nn.Module
    if tianshou_nets:
        from tianshou.env.atari.atari_network import DQNet

        c, h, w = s.obs_space.shape
        ts_trunk = _TianshouTrunk(DQNet(c, h, w, s.num_actions, features_only=True))
        width = ts_trunk.output_dim
    else:
        trunk = s.trunk()
        ts_trunk, width = trunk, trunk.output_dim
    if name == "il":
        actor = TianshouAPI(ts_trunk, _head(width, s.num_actions, s.hidden))
        return TsIL(policy=ImitationPolicy(actor=actor, action_space=space), optim=optim)
    if name == "bcq":
        q = TianshouAPI(ts_trunk, _head(width, s.num_actions, s.hidden))
        imitator = TianshouAPI(ts_trunk, _head(width, s.num_actions, s.hidden))
        return TsBCQ(
            policy=TsBCQPolicy(
                model=q,
                imitator=imitator,
                action_space=space,
                target_update_freq=s.target_update_freq[name],
                unlikely_action_threshold=s.bcq_threshold,
            ),
            optim=optim,
            n_step_return_horizon=s.n_step,
            target_update_freq=s.target_update_freq[name],
        )
    if name == "cql":
        qr = _QuantileAPI(
            ts_trunk, _head(width, s.num_actions * s.num_quantiles, s.hidden), s.num_actions
        )
        return TsCQL(
            policy=QRDQNPolicy(model=qr, action_space=space),
            optim=optim,
            min_q_weight=10.0,
            num_quantiles=s.num_quantiles,
            n_step_return_horizon=s.n_step,
            target_update_freq=s.target_update_freq[name],
        )
    if name == "crr":
        actor = TianshouAPI(ts_trunk, _head(width, s.num_actions, s.hidden))
        critic = TianshouAPI(ts_trunk, _head(width, s.num_actions, s.hidden), tuple_out=False)
        return TsCRR(
            policy=TsActorPolicy(actor=cast(Any, actor), action_space=space),
            critic=critic,
            optim=optim,
            target_update_freq=s.target_update_freq[name],
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


def _buffer_shape(setting: Setting) -> tuple[int, int]:
    """(transitions, episode length) of the synthetic buffer."""
    return (20_000, 200) if setting.name == "cartpole" else (10_000, 1000)


def d3rlpy_spec(name: str, s: Setting, seed: int = 0, adam: str = "fused") -> dict[str, Any] | None:
    """What :mod:`benchmarks._lib.d3rlpy_side` builds: d3rlpy's config fields from this setting (d3rlpy's
    defaults differ: e.g. its BC's logit penalty β = 0.5). None: d3rlpy has no such algorithm
    (discrete CRR)."""
    params: dict[str, Any] = {"lr": s.lr[name]}
    if name == "il":
        params["beta"] = 0.0  # ours: plain cross-entropy
    elif name == "bcq":
        params.update(
            action_flexibility=s.bcq_threshold,
            beta=1e-2,  # ours: imitation_logits_penalty
            target_update_interval=s.target_update_freq[name],
        )
    elif name == "cql":
        params.update(alpha=10.0, target_update_interval=s.target_update_freq[name])  # min_q_weight
    else:
        return None
    size, episode_len = _buffer_shape(s)
    shape = s.obs_space.shape
    return {
        "suite": "discrete",
        "algo": name,
        "params": params,
        "obs_shape": list(shape),
        "num_actions": s.num_actions,
        "trunk_hidden": [] if len(shape) == 3 else [64],
        "head_hidden": list(s.hidden),
        "channels_last": True,
        "scale_obs": True,
        "batch_size": s.batch_size[name],
        "buffer_size": size,
        "episode_len": episode_len,
        "n_step": s.n_step if name != "il" else 1,
        "gamma": 0.99,
        "seed": seed,
        "adam": adam,
    }


@functools.cache
def _buffer(name: str) -> ReplayBuffer:
    setting = SETTINGS[name]
    return synthetic_buffer(setting, *_buffer_shape(setting))


def build(spec: dict[str, Any]) -> tuple[OfflineAlgorithm[Any], ReplayBuffer, int, str]:
    """Ours or Tianshou's algorithm for a spec (``impl``, ``setting``, ``algo``,
    ``num_quantiles``, ``adam``): the algorithm, its buffer, its batch size and the
    library's name."""
    s = replace(SETTINGS[spec["setting"]], num_quantiles=spec["num_quantiles"])
    name = spec["algo"]
    if spec["impl"] == "ours":
        alg = build_ours(name, s, spec["seed"], double_q=spec.get("double_q", True))
        library = "tianshou-offline"
    else:
        alg = build_tianshou(name, s, spec["seed"], adam=spec["adam"])
        library = "tianshou 2.0.1"
    return alg, _buffer(s.name), s.batch_size[name], library
