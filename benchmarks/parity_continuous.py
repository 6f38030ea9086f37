"""Return parity: tianshou-offline's continuous algorithms vs Tianshou 2.0.1's own.

Same data, same budget, same seeds, same networks and hyperparameters on both sides:

- data: 20k transitions of a SAC expert on Pendulum-v1, gathered the way Tianshou's offline
  tests do (``tests/_pendulum_expert.py``: SAC to a test return >= -250, then exploring
  steps). Tianshou's algorithms train on actions in their policies' ``[-1, 1]`` range (what
  Tianshou's collectors store); ours on the file's environment units — the same transitions.
- budget: ``--epochs`` × ``--steps`` gradient steps, batch 256, a 10-episode test after every
  epoch; then the final policy is evaluated on ``--eval-episodes`` episodes.
- pairs: ImitationLearning (deterministic, MSE), BCQ, CQL (weight 5, automatic α, no
  Lagrange multiplier, no calibration, no gradient clipping) and TD3+BC (observation
  normalisation on both sides; Tianshou's via its example's recipe: normalised buffer +
  ``VectorEnvNormObs``). CRR has no Tianshou counterpart and is reported alone.

Reports mean ± std over seeds of the final return and of the best per-epoch test return.

Usage::

    python benchmarks/parity_continuous.py                      # 3 seeds, all algorithms
    python benchmarks/parity_continuous.py --seeds 0 1 2 3 4 --algorithms cql,td3bc
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
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
from tianshou.data import Collector, CollectStats, ReplayBuffer
from tianshou.env import BaseVectorEnv, DummyVectorEnv, VectorEnvNormObs
from tianshou.trainer import OfflineTrainerParams
from tianshou.utils import RunningMeanStd
from tianshou.utils.net.common import MLP as TsMLP
from tianshou.utils.net.common import Net
from tianshou.utils.net.continuous import VAE as TsVAE
from tianshou.utils.net.continuous import (
    ContinuousActorDeterministic,
    ContinuousActorProbabilistic,
    ContinuousCritic,
)
from tianshou.utils.net.continuous import Perturbation as TsPerturbation

from tianshou_offline import load_buffer
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

REPO = Path(__file__).resolve().parent.parent
TASK = "Pendulum-v1"
OBS_DIM, ACT_DIM = 3, 1
CQL_WEIGHT = 5.0
"""The CQL weight of Kumar et al.'s MuJoCo runs, without the Lagrange multiplier: with
Tianshou's defaults (Lagrange, τ = 10, gradient clipping at 1) the multiplier decays to ~0 on
this data and both implementations degrade to unregularised SAC and collapse after ~5k steps."""


# ------------------------------------------------------------------- data


def expert_buffers(data_dir: Path) -> tuple[ReplayBuffer, ReplayBuffer]:
    """(ours: actions in env units, Tianshou's: the same transitions, actions in [-1, 1])."""
    sys.path.insert(0, str(REPO / "tests"))
    from _pendulum_expert import cached_expert_file

    path = cached_expert_file(data_dir)
    ours = load_buffer(path)
    theirs = load_buffer(path)
    env = gym.make(TASK)
    assert isinstance(env.action_space, gym.spaces.Box)
    high = float(env.action_space.high[0])
    theirs.act[:] = theirs.act / high  # Tianshou stores policy-range actions in its buffers
    return ours, theirs


def normalized_obs_copy(buffer: ReplayBuffer) -> tuple[ReplayBuffer, RunningMeanStd]:
    """Tianshou's TD3+BC example recipe: normalise obs/obs_next of the buffer in place."""
    from tianshou_offline.data.buffer import buffer_from_columns

    batch = buffer[np.arange(len(buffer))]
    rms = RunningMeanStd()
    rms.update(batch.obs)
    eps = np.finfo(np.float32).eps.item()
    scale = np.sqrt(rms.var + eps)
    cols = {k: batch[k] for k in ("act", "rew", "terminated", "truncated")}
    cols["obs"] = ((batch.obs - rms.mean) / scale).astype(np.float32)
    cols["obs_next"] = ((batch.obs_next - rms.mean) / scale).astype(np.float32)
    cols["done"] = batch.done
    return buffer_from_columns(cols), rms


# ------------------------------------------------------------------- builders


def _ts_critic(h: list[int]) -> ContinuousCritic:
    return ContinuousCritic(
        preprocess_net=Net(
            state_shape=(OBS_DIM,), action_shape=(ACT_DIM,), hidden_sizes=h, concat=True
        )
    )


def build_tianshou(name: str, env: gym.Env[Any, Any], h: list[int]) -> Algorithm:
    space = env.action_space
    if name == "il":
        actor = ContinuousActorDeterministic(
            preprocess_net=Net(state_shape=(OBS_DIM,), hidden_sizes=h), action_shape=(ACT_DIM,)
        )
        policy = ImitationPolicy(actor=actor, action_space=space, action_scaling=True)
        return OfflineImitationLearning(policy=policy, optim=Adam(lr=1e-3))
    if name == "bcq":
        vae = TsVAE(
            encoder=TsMLP(input_dim=OBS_DIM + ACT_DIM, hidden_sizes=h),
            decoder=TsMLP(input_dim=OBS_DIM + 2 * ACT_DIM, output_dim=ACT_DIM, hidden_sizes=h),
            hidden_dim=h[-1],
            latent_dim=2 * ACT_DIM,
            max_action=1.0,
        )
        perturbation = TsPerturbation(
            preprocess_net=TsMLP(input_dim=OBS_DIM + ACT_DIM, output_dim=ACT_DIM, hidden_sizes=h),
            max_action=1.0,
            phi=0.05,
        )
        policy = TsBCQPolicy(
            actor_perturbation=perturbation,
            critic=_ts_critic(h),
            vae=vae,
            action_space=space,
            action_scaling=True,
        )
        return TsBCQ(
            policy=policy,
            actor_perturbation_optim=Adam(lr=1e-3),
            critic_optim=Adam(lr=1e-3),
            vae_optim=Adam(lr=1e-3),
            critic2=_ts_critic(h),
            gamma=0.99,
            tau=0.005,
            lmbda=0.75,
            num_sampled_action=10,
        )
    if name == "cql":
        actor = ContinuousActorProbabilistic(
            preprocess_net=Net(state_shape=(OBS_DIM,), hidden_sizes=h),
            action_shape=(ACT_DIM,),
            unbounded=True,
            conditioned_sigma=True,
        )
        return TsCQL(
            policy=SACPolicy(actor=actor, action_space=space),
            policy_optim=Adam(lr=1e-3),
            critic=_ts_critic(h),
            critic_optim=Adam(lr=1e-3),
            critic2=_ts_critic(h),
            critic2_optim=Adam(lr=1e-3),
            alpha=AutoAlpha(target_entropy=-float(ACT_DIM), log_alpha=0.0, optim=Adam(lr=1e-3)),
            cql_alpha_lr=1e-3,
            cql_weight=CQL_WEIGHT,
            tau=0.005,
            gamma=0.99,
            temperature=1.0,
            with_lagrange=False,
            num_repeat_actions=10,
            max_grad_norm=1e10,  # i.e. no clipping, as ours below
            calibrated=False,
        )
    if name == "td3bc":
        actor = ContinuousActorDeterministic(
            preprocess_net=Net(state_shape=(OBS_DIM,), hidden_sizes=h), action_shape=(ACT_DIM,)
        )
        return TsTD3BC(
            policy=ContinuousDeterministicPolicy(actor=actor, action_space=space),
            policy_optim=Adam(lr=3e-4),
            critic=_ts_critic(h),
            critic_optim=Adam(lr=3e-4),
            critic2=_ts_critic(h),
            critic2_optim=Adam(lr=3e-4),
            tau=0.005,
            gamma=0.99,
            policy_noise=0.2,
            noise_clip=0.5,
            update_actor_freq=2,
            alpha=2.5,
        )
    raise ValueError(name)


def build_ours(name: str, env: gym.Env[Any, Any], h: list[int]) -> Algorithm:
    kw: dict[str, Any] = dict(
        action_space=env.action_space, observation_space=env.observation_space
    )
    if name == "il":
        return ImitationLearning(
            policy=DeterministicPolicy(actor=DeterministicActor(OBS_DIM, ACT_DIM, h), **kw),
            optim=Adam(lr=1e-3),
        )
    if name == "bcq":
        policy = BCQPolicy(
            vae=VAE(OBS_DIM, ACT_DIM, h),
            perturbation=Perturbation(OBS_DIM, ACT_DIM, h, phi=0.05),
            critics=CriticEnsemble(OBS_DIM, ACT_DIM, h),
            **kw,
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
        )
    if name == "cql":
        return CQL(
            policy=GaussianPolicy(actor=GaussianActor(OBS_DIM, ACT_DIM, h), **kw),
            policy_optim=Adam(lr=1e-3),
            critics=CriticEnsemble(OBS_DIM, ACT_DIM, h),
            critic_optim=Adam(lr=1e-3),
            alpha="auto",
            alpha_optim=Adam(lr=1e-3),
            cql_weight=CQL_WEIGHT,
            tau=0.005,
            gamma=0.99,
            temperature=1.0,
            with_lagrange=False,
            num_sampled_actions=10,
            backup_entropy=True,  # Tianshou's CQL always backs up the entropy term
            max_grad_norm=None,
        )
    if name == "td3bc":
        return TD3BC(
            policy=DeterministicPolicy(
                actor=DeterministicActor(OBS_DIM, ACT_DIM, h), normalize_obs=True, **kw
            ),
            policy_optim=Adam(lr=3e-4),
            critics=CriticEnsemble(OBS_DIM, ACT_DIM, h),
            critic_optim=Adam(lr=3e-4),
            tau=0.005,
            gamma=0.99,
            policy_noise=0.2,
            noise_clip=0.5,
            update_actor_freq=2,
            alpha=2.5,
        )
    if name == "crr":
        return CRR(
            policy=GaussianPolicy(actor=GaussianActor(OBS_DIM, ACT_DIM, h), squash=False, **kw),
            policy_optim=Adam(lr=1e-3),
            critics=CriticEnsemble(OBS_DIM, ACT_DIM, h, num_critics=2),
            critic_optim=Adam(lr=1e-3),
        )
    raise ValueError(name)


# ------------------------------------------------------------------- running


def run(
    algo: Algorithm,
    buffer: ReplayBuffer,
    *,
    seed: int,
    epochs: int,
    steps: int,
    eval_episodes: int,
    obs_rms: RunningMeanStd | None,
) -> tuple[float, float, float, float]:
    """Train, then evaluate the final policy.

    :returns: (final mean return over ``eval_episodes``, mean of the last 3 per-epoch test
        returns, best per-epoch test return, seconds of training).
    """

    def envs(n: int, env_seed: int) -> BaseVectorEnv:
        venv: BaseVectorEnv = DummyVectorEnv([lambda: gym.make(TASK) for _ in range(n)])
        if obs_rms is not None:
            venv = VectorEnvNormObs(venv, update_obs_rms=False)
            venv.set_obs_rms(obs_rms)
        venv.seed(env_seed)
        return venv

    tests: list[float] = []

    def record_score(stats: CollectStats) -> float:
        assert stats.returns_stat is not None
        tests.append(float(stats.returns_stat.mean))
        return tests[-1]

    start = time.perf_counter()
    info = algo.run_training(  # type: ignore[attr-defined]
        OfflineTrainerParams(
            buffer=buffer,
            test_collector=Collector[CollectStats](algo, envs(10, 1_000 + seed)),
            max_epochs=epochs,
            epoch_num_steps=steps,
            test_step_num_episodes=10,
            batch_size=256,
            show_progress=False,
            verbose=False,
            compute_score_fn=record_score,
        )
    )
    seconds = time.perf_counter() - start
    epoch_tests = tests[1:]  # tests[0] is the initial test before training
    final = Collector[CollectStats](algo, envs(10, 10_000 + seed)).collect(
        n_episode=eval_episodes, reset_before_collect=True
    )
    assert final.returns_stat is not None
    last3 = float(np.mean(epoch_tests[-3:]))
    return float(final.returns_stat.mean), last3, float(info.best_reward), seconds


def fmt(xs: list[float]) -> str:
    if not xs:
        return "—"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):8.1f} ± {sd:6.1f}"


LABELS = {"il": "IL (BC)", "bcq": "BCQ", "cql": "CQL", "td3bc": "TD3+BC", "crr": "CRR"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--algorithms", default="il,bcq,cql,td3bc,crr")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--steps", type=int, default=500, help="gradient steps per epoch")
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--data-dir", type=Path, default=Path.home() / ".cache" / "tianshou_offline" / "bench"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.algorithms.split(",") if n.strip()]
    ours_buf, ts_buf = expert_buffers(args.data_dir)
    ts_td3bc_buf, ts_rms = normalized_obs_copy(ts_buf)
    env = gym.make(TASK)
    print(
        f"Pendulum-v1 SAC expert (20k steps), hidden {args.hidden}, batch 256, "
        f"{args.epochs}×{args.steps} steps, seeds {args.seeds}, {args.threads} thread(s)",
        flush=True,
    )
    results: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for name in names:
        for seed in args.seeds:
            Builder = Callable[[str, gym.Env[Any, Any], list[int]], Algorithm]
            sides: list[tuple[str, Builder, ReplayBuffer, Any]] = [
                ("ours", build_ours, ours_buf, None)
            ]
            if name != "crr":
                buf, rms = (ts_td3bc_buf, ts_rms) if name == "td3bc" else (ts_buf, None)
                sides.append(("tianshou", build_tianshou, buf, rms))
            for side, build, buffer, rms in sides:
                torch.manual_seed(seed)
                np.random.seed(seed)
                out = run(
                    build(name, env, args.hidden),
                    buffer,
                    seed=seed,
                    epochs=args.epochs,
                    steps=args.steps,
                    eval_episodes=args.eval_episodes,
                    obs_rms=rms,
                )
                results.setdefault((name, side), []).append(out)
                print(
                    f"  {name:6s} {side:8s} seed {seed}: final {out[0]:8.1f}  last-3 {out[1]:8.1f}"
                    f"  best {out[2]:8.1f}  ({out[3]:.0f} s)",
                    flush=True,
                )
    print()
    print(
        "| algorithm | final, ours | final, Tianshou | last-3 tests, ours | last-3 tests, Tianshou "
        "| best test, ours | best test, Tianshou |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in names:
        ours = results.get((name, "ours"), [])
        ts = results.get((name, "tianshou"), [])
        cells = []
        for k in range(3):
            ours_k, ts_k = [r[k] for r in ours], [r[k] for r in ts]
            mark = ""
            if ts_k:
                mark = " ✓" if statistics.mean(ours_k) >= statistics.mean(ts_k) else " ✗"
            cells += [fmt(ours_k) + mark, fmt(ts_k)]
        print(f"| {LABELS[name]} | " + " | ".join(cells) + " |")
    print("\n✓/✗: our mean ≥ / < Tianshou's mean for that metric.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
