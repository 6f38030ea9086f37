"""Gradient steps per second: tianshou-offline's algorithms vs Tianshou 2.0.1's own.

Both sides get identical networks (hidden 256×256 everywhere unless ``--hidden``), batch
size 256 and hyperparameters, and train on the same buffer (synthetic, HalfCheetah-shaped by
default: 17-d observations, 6-d actions, 100k transitions in 1000-step episodes; the data's
values do not affect speed). Measurements are interleaved — for every round and algorithm,
Tianshou then ours (alternating the order each round), each for ``--seconds`` — with the
thread count fixed, and the table reports medians and the median of the per-round ratios.

Tianshou has no continuous CRR; CRR is compared with our TD3+BC instead (target: ≥ 1×).

After the rounds each side is profiled for the time its steps spend in the networks' and the
optimizer's own work — matrix products, activations, the fused Adam kernel (``_floor.py``):
the *ceiling* column, reference ms/step ÷ our floor ms/step, is the largest ratio this machine
allows for our amount of that work.

The discrete suite (CartPole MLPs and the Atari conv net vs Tianshou's discrete algorithms)
is ``train_speed_discrete.py``; this script runs it after the continuous table.

Usage::

    python benchmarks/train_speed.py                  # everything, 1 thread
    python benchmarks/train_speed.py --suite continuous --threads 2 --algorithms cql,bcq
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm import BCQ as TsBCQ
from tianshou.algorithm import CQL as TsCQL
from tianshou.algorithm import TD3BC as TsTD3BC
from tianshou.algorithm.algorithm_base import Algorithm
from tianshou.algorithm.imitation.bcq import BCQPolicy as TsBCQPolicy
from tianshou.algorithm.imitation.imitation_base import ImitationPolicy, OfflineImitationLearning
from tianshou.algorithm.modelfree.ddpg import ContinuousDeterministicPolicy
from tianshou.algorithm.modelfree.sac import AutoAlpha, SACPolicy
from tianshou.algorithm.optim import AdamOptimizerFactory as Adam
from tianshou.data import Batch, ReplayBuffer
from tianshou.utils.net.common import MLP as TsMLP
from tianshou.utils.net.common import Net
from tianshou.utils.net.continuous import (
    VAE as TsVAE,
)
from tianshou.utils.net.continuous import (
    ContinuousActorDeterministic,
    ContinuousActorProbabilistic,
    ContinuousCritic,
)
from tianshou.utils.net.continuous import (
    Perturbation as TsPerturbation,
)
from tianshou.utils.torch_utils import policy_within_training_step

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _floor import floor_ms_per_step

from tianshou_offline.algorithms import (
    BCQ,
    CQL,
    CRR,
    TD3BC,
    VAE,
    BCQPolicy,
    CriticEnsemble,
    DeterministicActor,
    DeterministicPolicy,
    GaussianActor,
    GaussianPolicy,
    ImitationLearning,
    Perturbation,
)


@dataclass
class Setup:
    obs_dim: int
    act_dim: int
    hidden: tuple[int, ...]
    obs_space: gym.spaces.Box
    act_space: gym.spaces.Box


def synthetic_buffer(obs_dim: int, act_dim: int, size: int, seed: int = 0) -> ReplayBuffer:
    """A full ReplayBuffer of random transitions in 1000-step (truncated) episodes."""
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((size + 1, obs_dim)).astype(np.float32)
    truncated = np.zeros(size, dtype=bool)
    truncated[999::1000] = True
    truncated[-1] = True
    terminated = np.zeros(size, dtype=bool)
    buf = ReplayBuffer(size)
    buf.set_batch(
        Batch(  # type: ignore[arg-type]
            obs=obs[:-1],
            act=rng.uniform(-1, 1, (size, act_dim)).astype(np.float32),
            rew=rng.standard_normal(size).astype(np.float32),
            terminated=terminated,
            truncated=truncated,
            done=terminated | truncated,
            obs_next=obs[1:],
            info=Batch(),
        )
    )
    buf._size = size
    buf.last_index = np.array([size - 1])
    return buf


# ------------------------------------------------------------------- Tianshou 2.0.1 side


def _ts_critic(s: Setup) -> ContinuousCritic:
    return ContinuousCritic(
        preprocess_net=Net(
            state_shape=(s.obs_dim,),
            action_shape=(s.act_dim,),
            hidden_sizes=list(s.hidden),
            concat=True,
        )
    )


def ts_il(s: Setup) -> Algorithm:
    actor = ContinuousActorDeterministic(
        preprocess_net=Net(state_shape=(s.obs_dim,), hidden_sizes=list(s.hidden)),
        action_shape=(s.act_dim,),
    )
    return OfflineImitationLearning(
        policy=ImitationPolicy(actor=actor, action_space=s.act_space), optim=Adam(lr=1e-3)
    )


def ts_td3bc(s: Setup) -> Algorithm:
    actor = ContinuousActorDeterministic(
        preprocess_net=Net(state_shape=(s.obs_dim,), hidden_sizes=list(s.hidden)),
        action_shape=(s.act_dim,),
    )
    return TsTD3BC(
        policy=ContinuousDeterministicPolicy(actor=actor, action_space=s.act_space),
        policy_optim=Adam(lr=3e-4),
        critic=_ts_critic(s),
        critic_optim=Adam(lr=3e-4),
        critic2=_ts_critic(s),
        critic2_optim=Adam(lr=3e-4),
        tau=0.005,
        gamma=0.99,
        policy_noise=0.2,
        noise_clip=0.5,
        update_actor_freq=2,
        alpha=2.5,
        n_step_return_horizon=1,
    )


def ts_cql(s: Setup) -> Algorithm:
    actor = ContinuousActorProbabilistic(
        preprocess_net=Net(state_shape=(s.obs_dim,), hidden_sizes=list(s.hidden)),
        action_shape=(s.act_dim,),
        unbounded=True,
        conditioned_sigma=True,
    )
    return TsCQL(
        policy=SACPolicy(actor=actor, action_space=s.act_space),
        policy_optim=Adam(lr=1e-4),
        critic=_ts_critic(s),
        critic_optim=Adam(lr=3e-4),
        critic2=_ts_critic(s),
        critic2_optim=Adam(lr=3e-4),
        alpha=AutoAlpha(target_entropy=-float(s.act_dim), log_alpha=0.0, optim=Adam(lr=1e-4)),
        cql_alpha_lr=1e-4,
        cql_weight=1.0,
        tau=0.005,
        gamma=0.99,
        temperature=1.0,
        with_lagrange=True,
        lagrange_threshold=10.0,
        num_repeat_actions=10,
        max_grad_norm=1.0,
        calibrated=False,
    )


def ts_bcq(s: Setup) -> Algorithm:
    d, a, h = s.obs_dim, s.act_dim, list(s.hidden)
    perturbation = TsPerturbation(
        preprocess_net=TsMLP(input_dim=d + a, output_dim=a, hidden_sizes=h),
        max_action=1.0,
        phi=0.05,
    )
    vae = TsVAE(
        encoder=TsMLP(input_dim=d + a, hidden_sizes=h),
        decoder=TsMLP(input_dim=d + 2 * a, output_dim=a, hidden_sizes=h),
        hidden_dim=h[-1],
        latent_dim=2 * a,
        max_action=1.0,
    )
    policy = TsBCQPolicy(
        actor_perturbation=perturbation, action_space=s.act_space, critic=_ts_critic(s), vae=vae
    )
    return TsBCQ(
        policy=policy,
        actor_perturbation_optim=Adam(lr=1e-3),
        critic_optim=Adam(lr=1e-3),
        vae_optim=Adam(lr=1e-3),
        critic2=_ts_critic(s),
        gamma=0.99,
        tau=0.005,
        lmbda=0.75,
        num_sampled_action=10,
    )


# ------------------------------------------------------------------- tianshou-offline side


def ours_il(s: Setup) -> Algorithm:
    policy = DeterministicPolicy(
        actor=DeterministicActor(s.obs_dim, s.act_dim, s.hidden),
        action_space=s.act_space,
        observation_space=s.obs_space,
    )
    return ImitationLearning(policy=policy, optim=Adam(lr=1e-3))


def ours_td3bc(s: Setup) -> Algorithm:
    policy = DeterministicPolicy(
        actor=DeterministicActor(s.obs_dim, s.act_dim, s.hidden),
        action_space=s.act_space,
        observation_space=s.obs_space,
    )
    return TD3BC(
        policy=policy,
        policy_optim=Adam(lr=3e-4),
        critics=CriticEnsemble(s.obs_dim, s.act_dim, s.hidden, num_critics=2),
        critic_optim=Adam(lr=3e-4),
        tau=0.005,
        gamma=0.99,
        policy_noise=0.2,
        noise_clip=0.5,
        update_actor_freq=2,
        alpha=2.5,
    )


def ours_cql(s: Setup) -> Algorithm:
    policy = GaussianPolicy(
        actor=GaussianActor(s.obs_dim, s.act_dim, s.hidden),
        action_space=s.act_space,
        observation_space=s.obs_space,
    )
    return CQL(
        policy=policy,
        policy_optim=Adam(lr=1e-4),
        critics=CriticEnsemble(s.obs_dim, s.act_dim, s.hidden, num_critics=2),
        critic_optim=Adam(lr=3e-4),
        alpha="auto",
        alpha_optim=Adam(lr=1e-4),
        cql_alpha_optim=Adam(lr=1e-4),
        cql_weight=1.0,
        tau=0.005,
        gamma=0.99,
        temperature=1.0,
        with_lagrange=True,
        lagrange_threshold=10.0,
        num_sampled_actions=10,
        backup_entropy=True,
        max_grad_norm=1.0,
    )


def _ours_bcq(s: Setup, perturb_target_actions: bool) -> Algorithm:
    policy = BCQPolicy(
        vae=VAE(s.obs_dim, s.act_dim, s.hidden),
        perturbation=Perturbation(s.obs_dim, s.act_dim, s.hidden, phi=0.05),
        critics=CriticEnsemble(s.obs_dim, s.act_dim, s.hidden, num_critics=2),
        action_space=s.act_space,
        observation_space=s.obs_space,
    )
    return BCQ(
        policy=policy,
        vae_optim=Adam(lr=1e-3),
        actor_perturbation_optim=Adam(lr=1e-3),
        critic_optim=Adam(lr=1e-3),
        gamma=0.99,
        tau=0.005,
        lmbda=0.75,
        num_sampled_action=10,
        perturb_target_actions=perturb_target_actions,
    )


def ours_bcq(s: Setup) -> Algorithm:
    return _ours_bcq(s, perturb_target_actions=True)


def ours_bcq_ts_target(s: Setup) -> Algorithm:
    return _ours_bcq(s, perturb_target_actions=False)


def ours_crr(s: Setup) -> Algorithm:
    policy = GaussianPolicy(
        actor=GaussianActor(s.obs_dim, s.act_dim, s.hidden),
        action_space=s.act_space,
        observation_space=s.obs_space,
        squash=False,
    )
    return CRR(
        policy=policy,
        policy_optim=Adam(lr=3e-4),
        critics=CriticEnsemble(s.obs_dim, s.act_dim, s.hidden, num_critics=1),
        critic_optim=Adam(lr=3e-4),
        num_action_samples=4,
    )


Factory = Callable[[Setup], Algorithm]
PAIRS: dict[str, tuple[str, Factory, Factory, str]] = {
    # key: (label, reference factory, our factory, reference name)
    "il": ("IL (deterministic BC)", ts_il, ours_il, "Tianshou"),
    "bcq": ("BCQ", ts_bcq, ours_bcq, "Tianshou"),
    "bcq-ts-target": ("BCQ, Tianshou's target¹", ts_bcq, ours_bcq_ts_target, "Tianshou"),
    "cql": ("CQL (Lagrange, auto α)", ts_cql, ours_cql, "Tianshou"),
    "td3bc": ("TD3+BC", ts_td3bc, ours_td3bc, "Tianshou"),
    "crr": ("CRR (1 critic)", ours_td3bc, ours_crr, "our TD3+BC"),
}


def measure(algo: Algorithm, buffer: ReplayBuffer, batch_size: int, seconds: float) -> float:
    """Gradient steps per second over about ``seconds`` (at least 3 steps)."""
    steps = 0
    with policy_within_training_step(algo.policy):
        start = time.perf_counter()
        while True:
            algo.update(buffer=buffer, sample_size=batch_size)  # type: ignore[attr-defined]
            steps += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds and steps >= 3:
                return steps / elapsed


def floor_ms(algo: Algorithm, buffer: ReplayBuffer, batch_size: int, steps: int) -> float:
    """Milliseconds per gradient step spent in the networks' and optimizer's own work
    (matrix products, activations, the fused Adam kernel; see ``_floor.py``)."""
    with policy_within_training_step(algo.policy):
        return floor_ms_per_step(
            lambda: algo.update(buffer=buffer, sample_size=batch_size),  # type: ignore[attr-defined]
            steps,
        )


def run_continuous(args: argparse.Namespace, keys: list[str]) -> None:
    """The continuous table: interleaved rates, then each side's floor time per step."""
    setup = Setup(
        obs_dim=args.obs_dim,
        act_dim=args.act_dim,
        hidden=tuple(args.hidden),
        obs_space=gym.spaces.Box(-np.inf, np.inf, (args.obs_dim,), np.float32),
        act_space=gym.spaces.Box(-1.0, 1.0, (args.act_dim,), np.float32),
    )
    buffer = synthetic_buffer(args.obs_dim, args.act_dim, args.buffer_size, args.seed)
    algos: dict[str, tuple[Algorithm, Algorithm]] = {}
    for key in keys:
        _, ref_factory, our_factory, _ = PAIRS[key]
        ref, ours = ref_factory(setup), our_factory(setup)
        for algo in (ref, ours):
            algo.process_buffer(buffer)  # type: ignore[attr-defined]
            measure(algo, buffer, args.batch_size, 0.0)  # warm-up
        algos[key] = (ref, ours)

    print(
        f"\n## Continuous control — torch {torch.__version__}, {torch.get_num_threads()} "
        f"thread(s), batch {args.batch_size}, hidden {args.hidden}, obs {args.obs_dim}, act "
        f"{args.act_dim}, {args.rounds} interleaved rounds × {args.seconds:.1f} s\n",
        flush=True,
    )
    rates: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in keys}
    for r in range(args.rounds):
        for key in keys:
            ref, ours = algos[key]
            order: list[tuple[int, Any]] = [(0, ref), (1, ours)]
            if r % 2:
                order.reverse()
            for side, algo in order:
                rates[key][side].append(measure(algo, buffer, args.batch_size, args.seconds))
        print(f"  round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    floor_t: dict[str, tuple[float, float]] = {}
    if args.floor:
        for key in keys:
            ref, ours = algos[key]
            steps = max(5, int(statistics.median(rates[key][1]) * 0.5))
            floor_t[key] = (
                floor_ms(ref, buffer, args.batch_size, steps),
                floor_ms(ours, buffer, args.batch_size, steps),
            )

    header = (
        f"| {'algorithm':<26} | {'reference':<11} | {'ref steps/s':>11} | {'ours steps/s':>12} "
        f"| {'ratio (median)':>14} | {'ratio range':>13} | {'ref floor ms':>11} "
        f"| {'our floor ms':>11} | {'ceiling':>7} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for key in keys:
        label, _, _, ref_name = PAIRS[key]
        ref_r, our_r = rates[key]
        ratios = [o / t for o, t in zip(our_r, ref_r, strict=True)]
        if key in floor_t:
            ref_ms = 1000.0 / statistics.median(ref_r)
            ref_floor, our_floor = floor_t[key]
            floor = f"{ref_floor:>12.2f} | {our_floor:>12.2f} | {ref_ms / our_floor:>6.2f}×"
        else:
            floor = f"{'n/a':>12} | {'n/a':>12} | {'n/a':>7}"
        print(
            f"| {label:<26} | {ref_name:<11} | {statistics.median(ref_r):>11.1f} | "
            f"{statistics.median(our_r):>12.1f} | {statistics.median(ratios):>13.2f}× | "
            f"{min(ratios):>5.2f}–{max(ratios):.2f}× | {floor} |"
        )
    if "bcq-ts-target" in keys:
        print(
            "\n¹ our BCQ with perturb_target_actions=False: the TD target uses unperturbed VAE "
            "samples, as Tianshou 2.0.1 does (the paper perturbs them with the target ξ_φ')."
        )
    if floor_t:
        print(
            "floor ms: time per step in matrix products, activations (forward and backward) "
            "and the fused Adam kernel, profiled (_floor.py); ceiling = reference ms/step ÷ "
            "our floor ms/step, the largest ratio reachable on this machine with our amount "
            "of that work even if everything else were free."
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--suite", choices=("all", "continuous", "discrete"), default="all")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--obs-dim", type=int, default=17)
    parser.add_argument("--act-dim", type=int, default=6)
    parser.add_argument("--buffer-size", type=int, default=100_000)
    parser.add_argument("--algorithms", default=",".join(PAIRS), help="continuous suite")
    parser.add_argument(
        "--no-floor", dest="floor", action="store_false", help="skip the floor-time profile"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    keys = [k.strip() for k in args.algorithms.split(",") if k.strip()]
    unknown = [k for k in keys if k not in PAIRS]
    if unknown:
        parser.error(f"unknown algorithms {unknown}; choose from {list(PAIRS)}")
    if args.suite in ("all", "continuous"):
        run_continuous(args, keys)
    if args.suite in ("all", "discrete"):
        import train_speed_discrete

        print(
            f"\n## Discrete actions — {torch.get_num_threads()} thread(s), CartPole MLPs and "
            "the Atari conv net (train_speed_discrete.py)\n",
            flush=True,
        )
        train_speed_discrete.main(
            ["--threads", str(args.threads), "--rounds", str(args.rounds)]
            + ([] if args.floor else ["--no-floor"])
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
