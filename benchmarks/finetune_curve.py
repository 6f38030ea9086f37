"""Offline → online fine-tuning curve on Pendulum-v1: an offline checkpoint vs scratch.

Data: ``--episodes`` episodes of the scripted Pendulum controller of the quickstart
(``ScriptedPendulumExpert``) with Gaussian torque noise of std ``--data-noise`` N·m — a
"medium" dataset (its mean return is printed). Both arms then run the same online phase with
Tianshou's ``OffPolicyTrainer`` and ``Collector`` through
:class:`~tianshou_offline.algorithms.OnlineFineTuning` (``--offline-ratio`` of every batch
from the data, one gradient step per environment step, batch ``--batch-size``):

- **offline → online**: the algorithm first trained offline for ``--offline-steps`` gradient
  steps (Tianshou's ``OfflineTrainer``) on the data;
- **scratch**: the same algorithm, freshly initialised (observation normaliser fitted on the
  same data), and the same online phase — the only difference is the offline pre-training.

Every ``--eval-every`` online environment steps both are evaluated on ``--eval-episodes``
fresh episodes (deterministic actions, seeds shared between arms); printed as a table of mean
returns per arm, averaged over ``--seeds``. Reference: a random/zero-torque policy scores about
−1280 on Pendulum-v1, the noiseless scripted controller about −140.

Every run writes a result file under ``benchmarks/results/finetune_curve/``; ``--table-only``
/ ``--readme`` print / write the documentation's table from the kept results.

    python -m benchmarks.finetune_curve                       # TD3+BC, defaults below
    python -m benchmarks.finetune_curve --algorithm calql --json curve.json
    python -m benchmarks.finetune_curve --table-only
"""

from __future__ import annotations

import tianshou_offline.cli._no_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)

# isort: split

import argparse
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import Collector, CollectStats, ReplayBuffer
from tianshou.env import DummyVectorEnv
from tianshou.trainer import OfflineTrainerParams, OffPolicyTrainerParams

from benchmarks._lib import report, results
from tianshou_offline.algorithms import (
    CQL,
    TD3BC,
    CriticEnsemble,
    DeterministicActor,
    DeterministicPolicy,
    GaussianActor,
    GaussianPolicy,
    OfflineAlgorithmBase,
    OnlineFineTuning,
)
from tianshou_offline.data.columns import buffer_from_columns
from tianshou_offline.quickstart import ScriptedPendulumExpert

BENCHMARK = "finetune_curve"
CODE = ("benchmarks/finetune_curve.py", "tianshou_offline/algorithms",
        "tianshou_offline/quickstart.py", "tianshou_offline/data/columns.py")  # fmt: skip
TASK = "Pendulum-v1"
ARMS = {"offline->online": "offline → online", "scratch": "scratch (same online phase, random init)"}


def scripted_data(episodes: int, noise: float, seed: int) -> tuple[ReplayBuffer, float]:
    """Episodes of the noisy scripted controller as a buffer, and their mean return."""
    env = gym.make(TASK)
    expert = ScriptedPendulumExpert(noise=noise, seed=seed)
    cols: dict[str, list[Any]] = {
        k: [] for k in ("obs", "act", "rew", "obs_next", "terminated", "truncated")
    }
    returns = []
    for e in range(episodes):
        obs, _ = env.reset(seed=seed * 10_000 + e)
        total, done = 0.0, False
        while not done:
            act = expert(obs)
            nxt, rew, term, trunc, _ = env.step(act)
            for k, v in zip(cols, (obs, act, rew, nxt, term, trunc), strict=True):
                cols[k].append(v)
            total += float(rew)
            obs, done = nxt, term or trunc
        returns.append(total)
    arrays = {k: np.asarray(v) for k, v in cols.items()}
    return buffer_from_columns(arrays), float(np.mean(returns))


def build(
    kind: str, env: gym.Env[Any, Any], hidden: tuple[int, ...]
) -> OfflineAlgorithmBase[Any, Any]:
    if kind == "td3_bc":
        return TD3BC(
            policy=DeterministicPolicy(
                actor=DeterministicActor(3, 1, hidden),
                action_space=env.action_space,
                observation_space=env.observation_space,
                normalize_obs=True,
            ),
            policy_optim=AdamOptimizerFactory(lr=3e-4),
            critics=CriticEnsemble(3, 1, hidden),
            critic_optim=AdamOptimizerFactory(lr=3e-4),
        )
    return CQL(
        policy=GaussianPolicy(
            actor=GaussianActor(3, 1, hidden),
            action_space=env.action_space,
            observation_space=env.observation_space,
        ),
        policy_optim=AdamOptimizerFactory(lr=1e-4),
        critics=CriticEnsemble(3, 1, hidden),
        critic_optim=AdamOptimizerFactory(lr=3e-4),
        cql_weight=5.0,
        calibrated=kind == "calql",
    )


def evaluate(algo: Any, episodes: int, seed: int) -> float:
    envs = DummyVectorEnv([lambda: gym.make(TASK) for _ in range(episodes)])
    envs.seed(seed)
    stats = Collector[CollectStats](algo, envs).collect(
        n_episode=episodes, reset_before_collect=True
    )
    assert stats.returns_stat is not None
    return float(stats.returns_stat.mean)


def run_arm(args: argparse.Namespace, data: ReplayBuffer, seed: int, pretrain: bool) -> list[float]:
    torch.manual_seed(seed)
    np.random.seed(seed)
    env = gym.make(TASK)
    algo = build(args.algorithm, env, tuple(args.hidden))
    if pretrain:
        algo.run_training(
            OfflineTrainerParams(
                buffer=data,
                max_epochs=1,
                epoch_num_steps=args.offline_steps,
                batch_size=args.batch_size,
                show_progress=False,
                verbose=False,
            )
        )
    else:
        algo.dataset_for(data)  # the same data, the normaliser fitted on it: only weights differ
    finetune: OnlineFineTuning[Any, Any] = OnlineFineTuning(
        offline=algo,
        offline_buffer=data,
        offline_ratio=args.offline_ratio,
        exploration_noise=args.exploration_noise if args.algorithm == "td3_bc" else None,
    )
    train_envs = DummyVectorEnv([lambda: gym.make(TASK)])
    train_envs.seed(seed + 1)
    collector = Collector[CollectStats](
        finetune, train_envs, ReplayBuffer(args.online_steps), exploration_noise=True
    )
    curve = [evaluate(finetune, args.eval_episodes, 10_000 + seed)]
    for _ in range(args.online_steps // args.eval_every):
        finetune.run_training(
            OffPolicyTrainerParams(
                training_collector=collector,
                max_epochs=1,
                epoch_num_steps=args.eval_every,
                collection_step_num_env_steps=1,
                update_step_num_gradient_steps_per_sample=1.0,
                batch_size=args.batch_size,
                test_collector=None,
                show_progress=False,
                verbose=False,
            )
        )
        curve.append(evaluate(finetune, args.eval_episodes, 10_000 + seed))
    return curve


def _block(record: Mapping[str, Any]) -> str:
    """One kept result's curve (mean over seeds per evaluation point) and what it ran."""
    f, st = record["figures"], record["settings"]
    steps = f["steps"]
    lines = ["| online env steps | " + " | ".join(map(str, steps)) + " |",
             "|---|" + "---:|" * len(steps)]  # fmt: skip
    for key, label in ARMS.items():
        means = np.mean(np.asarray(f["curves"][key]), axis=0)
        lines.append(f"| {label} | " + " | ".join(f"{m:.0f}" for m in means) + " |")
    lines += ["", f"_Pendulum-v1, {st['episodes']} episodes of the quickstart's scripted "
              f"controller with torque noise {st['data_noise']} as data (mean return "
              f"{f['data_return']:.0f}); {st['algorithm']} {st['hidden']}, batch "
              f"{st['batch_size']}, {st['offline_steps']:,} offline gradient steps, then "
              f"{st['online_steps']:,} online environment steps with one gradient step each, "
              f"offline ratio {st['offline_ratio']}, exploration noise "
              f"{st['exploration_noise']}; mean return over {st['eval_episodes']} evaluation "
              f"episodes, averaged over {st['seeds']} seeds (a random policy scores about "
              f"−1280); {f['seconds'] / 60:.0f} min, {results.conditions(record)}._"]  # fmt: skip
    return "\n".join(lines)


def readme_section() -> str:
    """The documentation's section: one :func:`_block` per kept result."""
    return report.kept_section(BENCHMARK, _block)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--algorithm", choices=("td3_bc", "cql", "calql"), default="td3_bc")
    parser.add_argument("--episodes", type=int, default=20, help="episodes of data (200 steps)")
    parser.add_argument(
        "--data-noise", type=float, default=1.5, help="torque noise std of the data"
    )
    parser.add_argument("--offline-steps", type=int, default=3000)
    parser.add_argument("--online-steps", type=int, default=3000)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--offline-ratio", type=float, default=0.5)
    parser.add_argument("--exploration-noise", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    report.add_arguments(parser, table=True)
    args = parser.parse_args(argv)
    if args.table_only or args.readme:
        return report.show_blocks(args, BENCHMARK, _block)
    load = report.start_run(args.threads)
    start = time.perf_counter()
    data, data_return = scripted_data(args.episodes, args.data_noise, seed=0)
    print(
        f"data: {len(data)} transitions of the scripted controller with torque noise "
        f"{args.data_noise} (mean return {data_return:.1f}); {args.algorithm}, hidden "
        f"{args.hidden}, batch {args.batch_size}, offline ratio {args.offline_ratio}, "
        f"{args.offline_steps} offline steps, {args.online_steps} online env steps "
        f"(1 gradient step each), {args.seeds} seeds, {args.eval_episodes} eval episodes"
    )
    curves: dict[str, list[list[float]]] = {"offline->online": [], "scratch": []}
    for seed in range(args.seeds):
        curves["offline->online"].append(run_arm(args, data, seed, pretrain=True))
        curves["scratch"].append(run_arm(args, data, seed, pretrain=False))
    steps = [i * args.eval_every for i in range(len(curves["scratch"][0]))]
    print(f"{'online env steps':>16}  {'offline->online':>16}  {'scratch':>10}  difference")
    means = {k: np.mean(np.asarray(v), axis=0) for k, v in curves.items()}
    for i, s in enumerate(steps):
        a, b = means["offline->online"][i], means["scratch"][i]
        print(f"{s:>16}  {a:>16.1f}  {b:>10.1f}  {a - b:>+10.1f}")
    auc = {k: float(np.mean(v)) for k, v in means.items()}
    print(
        f"mean over the curve: offline->online {auc['offline->online']:.1f}, scratch "
        f"{auc['scratch']:.1f} (random policy about -1280); {time.perf_counter() - start:.0f} s"
    )
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "steps": steps,
                    "data_return": data_return,
                    "curves": curves,
                },
                indent=2,
            )
        )
    load.stop()
    settings = {k: v for k, v in vars(args).items() if k not in ("json", "table_only", "readme")}
    figures = {"steps": steps, "data_return": data_return, "curves": curves,
               "seconds": time.perf_counter() - start}  # fmt: skip
    return report.keep(BENCHMARK, args.algorithm, settings=settings, figures=figures, code=CODE,
                       load=load, missed=[], check=False, seeds=list(range(args.seeds)))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
