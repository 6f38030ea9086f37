#!/usr/bin/env python3
"""Gradient steps per second of the discrete algorithms vs Tianshou 2.0.1's own
implementations, with identical networks, buffers, batch sizes and hyperparameters.

Two settings; within each round every algorithm's implementations run in alternating blocks
of gradient steps (ours, Tianshou, ours, …) in one process with a fixed thread count, so
both see the same machine load; reported: the median speed over rounds and the median of
the per-round ratios:

- **CartPole**: MLPs as in Tianshou's CartPole offline tests (trunk 64, heads 64; QR-DQN with
  200 quantiles), batch 64 (CQL: 32), 3-step targets, on a 20k-transition buffer.
- **Atari**: the Nature-DQN conv net on 4×84×84 uint8 frames, head 512, batch 32, QR-DQN
  with 200 quantiles, on a compact 10k-step buffer (one frame per step, ``stack_num=4``).

Reference: Tianshou 2.0.1 ``OfflineImitationLearning``, ``DiscreteBCQ``, ``DiscreteCQL`` and
``DiscreteCRR``, trained with ``algorithm.update(buffer, batch_size)`` as its
``OfflineTrainer`` does. Both sides use the *same network modules* (ours, behind a thin
adapter giving Tianshou's ``(obs, state, info) -> (out, state)`` interface; shared trunks
shared as in Tianshou's examples), so the ratio measures the algorithm implementations
(sampling, target computation, loss, number of network passes), not the networks.
``--tianshou-nets`` adds a row with Tianshou's own ``DQNet``/``QRDQNet`` for the Atari
setting (what a Tianshou user runs).

Usage: ``python benchmarks/train_speed_discrete.py [--threads 1] [--rounds 5] [--only atari]``
(importable: :func:`main`, :func:`run_benchmark`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm.algorithm_base import OfflineAlgorithm
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import ReplayBuffer
from tianshou.utils.torch_utils import policy_within_training_step
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _floor import floor_available, floor_ms_per_step

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
from tianshou_offline.algorithms.discrete_nets import Trunk
from tianshou_offline.data.buffer import buffer_from_columns

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

    def trunk(self) -> Trunk:
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
    """Random transitions with the setting's shapes: CartPole-like rows with a stored
    ``obs_next``; Atari as a compact buffer (one frame per step, ``stack_num=4``)."""
    rng = np.random.default_rng(seed)
    term = np.zeros(size, bool)
    term[episode_len - 1 :: episode_len] = True
    cols: dict[str, Any] = {
        "act": rng.integers(0, setting.num_actions, size=size),
        "rew": rng.normal(size=size).astype(np.float32),
        "terminated": term,
        "truncated": np.zeros(size, bool),
    }
    shape = setting.obs_space.shape
    if len(shape) == 3:
        cols["obs"] = rng.integers(0, 255, size=(size, *shape[1:]), dtype=np.uint8)
        return buffer_from_columns(cols, stack_num=shape[0], save_only_last_obs=True)
    cols["obs"] = rng.normal(size=(size, *shape)).astype(np.float32)
    cols["obs_next"] = rng.normal(size=(size, *shape)).astype(np.float32)
    return buffer_from_columns(cols)


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
    name: str, s: Setting, seed: int = 0, *, tianshou_nets: bool = False
) -> OfflineAlgorithm[Any]:
    """Tianshou 2.0.1's algorithm with the same network modules (``tianshou_nets``: its own
    Atari ``DQNet``/``QRDQNet`` instead)."""
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
    optim = AdamOptimizerFactory(lr=s.lr[name])
    ts_trunk: nn.Module
    if tianshou_nets:
        from tianshou.env.atari.atari_network import DQNet

        c, h, w = s.obs_space.shape
        ts_trunk = _TianshouTrunk(DQNet(c, h, w, s.num_actions, features_only=True))
        width = ts_trunk.output_dim
    else:
        trunk = s.trunk()
        ts_trunk, width = trunk, trunk.output_dim
    from tianshou_offline.algorithms.discrete_nets import make_head

    if name == "il":
        actor = TianshouAPI(ts_trunk, make_head(width, s.num_actions, s.hidden))
        return TsIL(policy=ImitationPolicy(actor=actor, action_space=space), optim=optim)
    if name == "bcq":
        q = TianshouAPI(ts_trunk, make_head(width, s.num_actions, s.hidden))
        imitator = TianshouAPI(ts_trunk, make_head(width, s.num_actions, s.hidden))
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
            ts_trunk, make_head(width, s.num_actions * s.num_quantiles, s.hidden), s.num_actions
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
        actor = TianshouAPI(ts_trunk, make_head(width, s.num_actions, s.hidden))
        critic = TianshouAPI(ts_trunk, make_head(width, s.num_actions, s.hidden), tuple_out=False)
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


# --------------------------------------------------------------------------- timing


@dataclass
class Result:
    setting: str
    algorithm: str
    implementation: str
    steps_per_s: float
    rounds: list[float]
    prepare_s: float
    ratio_to_tianshou: float | None = None
    """Median over rounds of (this implementation's speed / Tianshou's), both measured in
    alternating blocks within the round (robust to machine load changing over time)."""
    floor_ms: float | None = None
    """Milliseconds per step spent in matrix products, convolutions, activations and the
    fused Adam kernel (``_floor.py``)."""


def _timed_block(alg: OfflineAlgorithm[Any], buffer: ReplayBuffer, batch: int, steps: int) -> float:
    """Seconds for ``steps`` gradient steps."""
    with policy_within_training_step(alg.policy):
        start = time.perf_counter()
        for _ in range(steps):
            alg.update(buffer=buffer, sample_size=batch)
        return time.perf_counter() - start


def _timed_steps(alg: OfflineAlgorithm[Any], buffer: ReplayBuffer, batch: int, steps: int) -> float:
    """Gradient steps per second over ``steps`` steps."""
    return steps / _timed_block(alg, buffer, batch, steps)


def run_benchmark(
    settings: Sequence[Setting],
    *,
    algorithms: Sequence[str] = ALGORITHMS,
    rounds: int = 5,
    steps: dict[str, int] | None = None,
    blocks: int = 5,
    warmup: int = 5,
    tianshou_nets: bool = False,
    floor: bool = True,
    log: Callable[[str], None] = print,
) -> list[Result]:
    """Time every (setting, algorithm, implementation).

    Each round times every algorithm's implementations in ``blocks`` alternating blocks of
    ``steps[setting] / blocks`` gradient steps (ours, Tianshou, ours, Tianshou, …), so both
    see the same machine load; the reported speed is the median over rounds and the ratio the
    median of the per-round ratios.

    :param steps: gradient steps per round per implementation (default CartPole 250,
        Atari 20).
    :param floor: afterwards, profile each implementation's floor time per step
        (:func:`_floor.floor_ms_per_step`, CPU only).
    """
    steps = steps or {"cartpole": 250, "atari": 20}
    results: list[Result] = []
    for s in settings:
        buffer = (
            synthetic_buffer(s, 20_000, 200)
            if s.name == "cartpole"
            else synthetic_buffer(s, 10_000, 1000)
        )
        block = max(1, steps[s.name] // blocks)
        for name in algorithms:
            impls: dict[str, Callable[[], OfflineAlgorithm[Any]]] = {
                "ours": partial(build_ours, name, s),
                "tianshou": partial(build_tianshou, name, s),
            }
            if name == "cql":  # our default target: QR-DQN's Algorithm 1 (one pass fewer)
                impls["ours-default"] = partial(build_ours, "cql", s, double_q=False)
            if tianshou_nets and s.name == "atari":
                impls["tianshou+DQNet"] = partial(build_tianshou, name, s, tianshou_nets=True)
            built: dict[str, OfflineAlgorithm[Any]] = {}
            prepare: dict[str, float] = {}
            for impl, make in impls.items():
                alg = make()
                t0 = time.perf_counter()
                alg.process_buffer(buffer)
                prepare[impl] = time.perf_counter() - t0
                _timed_steps(alg, buffer, s.batch_size[name], warmup)
                built[impl] = alg
            speeds: dict[str, list[float]] = {impl: [] for impl in built}
            for _ in range(rounds):
                seconds = dict.fromkeys(built, 0.0)
                for _ in range(blocks):
                    for impl, alg in built.items():
                        seconds[impl] += _timed_block(alg, buffer, s.batch_size[name], block)
                for impl in built:
                    speeds[impl].append(block * blocks / seconds[impl])
            floor_t: dict[str, float | None] = dict.fromkeys(built)
            for impl, alg in built.items():
                if floor and floor_available(next(alg.parameters()).device):
                    with policy_within_training_step(alg.policy):
                        floor_t[impl] = floor_ms_per_step(
                            partial(alg.update, buffer=buffer, sample_size=s.batch_size[name]),
                            max(3, steps[s.name] // 2),
                        )
            ref = speeds["tianshou"]
            for impl, values in speeds.items():
                ratio = (
                    None
                    if impl == "tianshou"
                    else statistics.median(v / t for v, t in zip(values, ref, strict=True))
                )
                if impl == "tianshou+DQNet":  # ratio of ours to this reference
                    ratio = statistics.median(
                        o / v for o, v in zip(speeds["ours"], values, strict=True)
                    )
                results.append(
                    Result(
                        setting=s.name,
                        algorithm=name,
                        implementation=impl,
                        steps_per_s=statistics.median(values),
                        rounds=values,
                        prepare_s=prepare[impl],
                        ratio_to_tianshou=ratio,
                        floor_ms=floor_t[impl],
                    )
                )
            log(f"  {s.name} {name} done")
    return results


LABELS = {
    "il": "DiscreteImitationLearning",
    "bcq": "DiscreteBCQ",
    "cql": "DiscreteCQL",
    "crr": "DiscreteCRR",
}


def format_table(results: Sequence[Result]) -> str:
    """Markdown table: ours vs Tianshou (same nets), and the variants when timed."""
    rows = [
        "| setting | algorithm | ours (steps/s) | Tianshou 2.0.1 (steps/s) | ratio "
        "| our floor ms | ceiling |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    by_key = {(r.setting, r.algorithm, r.implementation): r for r in results}
    pairs = [
        ("ours", "tianshou", "", "ours"),
        ("ours-default", "tianshou", " (ours: default target, 1 pass fewer)", "ours-default"),
        ("ours", "tianshou+DQNet", " (Tianshou with its own DQNet)", "tianshou+DQNet"),
    ]
    for setting in dict.fromkeys(r.setting for r in results):
        for name in LABELS:
            for mine, theirs, note, ratio_of in pairs:
                a = by_key.get((setting, name, mine))
                b = by_key.get((setting, name, theirs))
                r = by_key.get((setting, name, ratio_of))
                if a is None or b is None or r is None or r.ratio_to_tianshou is None:
                    continue
                floor = "n/a | n/a"
                if a.floor_ms:
                    floor = f"{a.floor_ms:.2f} | {1000.0 / b.steps_per_s / a.floor_ms:.2f}x"
                rows.append(
                    f"| {setting} | {LABELS[name]}{note} | {a.steps_per_s:.1f} | "
                    f"{b.steps_per_s:.1f} | {r.ratio_to_tianshou:.2f}x | {floor} |"
                )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> list[Result]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads (fixed for both sides)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--cartpole-steps", type=int, default=250)
    p.add_argument("--blocks", type=int, default=5, help="alternating blocks per round")
    p.add_argument("--atari-steps", type=int, default=20)
    p.add_argument("--only", choices=("cartpole", "atari"), default=None)
    p.add_argument("--algorithms", nargs="*", default=list(ALGORITHMS), choices=ALGORITHMS)
    p.add_argument(
        "--tianshou-nets", action="store_true", help="also time Tianshou's own DQNet (Atari)"
    )
    p.add_argument(
        "--no-floor", dest="floor", action="store_false", help="skip the floor-time profile"
    )
    p.add_argument("--json", type=str, default=None, help="write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = [s for s in (CARTPOLE, ATARI) if args.only in (None, s.name)]
    print(
        f"torch {torch.__version__}, {args.threads} thread(s); interleaved rounds: {args.rounds}; "
        f"steps/round: cartpole {args.cartpole_steps}, atari {args.atari_steps}",
        flush=True,
    )
    results = run_benchmark(
        settings,
        algorithms=args.algorithms,
        rounds=args.rounds,
        steps={"cartpole": args.cartpole_steps, "atari": args.atari_steps},
        blocks=args.blocks,
        tianshou_nets=args.tianshou_nets,
        floor=args.floor,
    )
    print()
    print("ratio = median over rounds of the per-round speed ratio (alternating blocks)")
    print(format_table(results))
    print(
        "our floor ms: time per step in matrix products, convolutions, activations and the "
        "fused Adam kernel (profiled, _floor.py); ceiling = Tianshou's ms/step ÷ our floor "
        "ms/step, the largest ratio this machine allows with our amount of that work even if "
        "everything else were free"
    )
    print()
    print("dataset preparation (process_buffer, once per training run):")
    for r in results:
        if r.implementation == "ours":
            print(f"  {r.setting:9s} {r.algorithm:4s} {r.prepare_s * 1000:.0f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in results], f, indent=2)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
