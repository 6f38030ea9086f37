"""FQE model selection on Pendulum-v1: rank correlation between FQE estimates and true returns
over the checkpoints of one training run (Paine et al. 2020's protocol, at this machine's
scale).

1. Data: ``--episodes`` episodes of the quickstart's scripted Pendulum controller, each with
   its own torque-noise std drawn from ``[0, --max-noise]`` N·m (mixed quality).
2. One TD3+BC run on it (``--train-steps`` gradient steps); the policy is saved
   (``save_policy_checkpoint``) after the steps in ``--checkpoints`` (default: log-spaced,
   8 checkpoints, so early, poor policies and late ones are both present).
3. True value of every checkpoint: ``--rollouts`` fresh episodes in the environment,
   discounted return (γ = ``--gamma``, what FQE estimates) and undiscounted return.
4. FQE estimate of every checkpoint from the data alone (:func:`tianshou_offline.evaluation.fqe_rank`,
   ``--fqe-steps`` steps each) — what ``tianshou-offline evaluate --fqe`` runs.
5. Spearman rank correlation between estimates and true returns, with a percentile bootstrap
   confidence interval over checkpoints (``--bootstrap`` resamples), and the regret of
   selecting the top-ranked checkpoint (best true return − true return of FQE's pick).

Every run writes a result file under ``benchmarks/results/fqe_rank/``; ``--table-only`` /
``--readme`` print / write the documentation's table from the kept results.

    python -m benchmarks.fqe_rank
    python -m benchmarks.fqe_rank --fqe-steps 20000 --json fqe_rank.json
    python -m benchmarks.fqe_rank --table-only
"""

from __future__ import annotations

import tianshou_offline.cli._no_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)

# isort: split

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from scipy.stats import spearmanr
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.utils.torch_utils import policy_within_training_step

from benchmarks._lib import report, results
from benchmarks._lib.rollouts import episode_returns, write_pendulum_data
from tianshou_offline import load_buffer
from tianshou_offline.algorithms import (
    TD3BC,
    CriticEnsemble,
    DeterministicActor,
    DeterministicPolicy,
)
from tianshou_offline.evaluation import fqe_rank
from tianshou_offline.recording.policies import save_policy_checkpoint

TASK = "Pendulum-v1"


def rollouts(policy: DeterministicPolicy, n: int, gamma: float, seed: int) -> tuple[float, float]:
    """Mean discounted and undiscounted return of ``n`` fresh episodes."""
    disc, undisc = episode_returns(policy, TASK, n, gamma, seed)
    return float(np.mean(disc)), float(np.mean(undisc))


def bootstrap_spearman(
    x: np.ndarray, y: np.ndarray, resamples: int, seed: int
) -> tuple[float, float]:
    """95% percentile interval of Spearman's ρ over checkpoints resampled with replacement
    (resamples with fewer than 3 distinct checkpoints are skipped)."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        idx = rng.integers(0, len(x), len(x))
        if len(set(idx.tolist())) < 3:
            continue
        rho = spearmanr(x[idx], y[idx]).statistic
        if np.isfinite(rho):
            values.append(float(rho))
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


BENCHMARK = "fqe_rank"
CODE = ("benchmarks/fqe_rank.py", "tianshou_offline/evaluation", "tianshou_offline/algorithms",
        "tianshou_offline/quickstart.py", "tianshou_offline/recording/policies.py")  # fmt: skip


def _block(record: Mapping[str, Any]) -> str:
    """One kept result's table (estimate, truth and FQE's rank per checkpoint), its rank
    correlations and what it ran."""
    f, st = record["figures"], record["settings"]
    marks = sorted(set(st["checkpoints"]))
    lines = ["| checkpoint (steps) | " + " | ".join(map(str, marks)) + " |",
             "|---|" + "---:|" * len(marks),
             "| FQE estimate | " + " | ".join(f"{v:.0f}" for v in f["fqe"]) + " |",
             "| true discounted return | " + " | ".join(f"{v:.0f}" for v in f["true_discounted"]) + " |",
             "| FQE rank | " + " | ".join(str(f["ranks"][n]) for n in f["checkpoints"]) + " |",
             ""]  # fmt: skip
    rho = {k: f[f"spearman_{k}"] for k in ("discounted", "undiscounted")}
    lines.append(
        f"Spearman ρ between FQE estimates and true discounted returns "
        f"**{rho['discounted']['rho']:+.2f}, 95% bootstrap CI "
        f"[{rho['discounted']['ci95'][0]:+.2f}, {rho['discounted']['ci95'][1]:+.2f}]** "
        f"(undiscounted: {rho['undiscounted']['rho']:+.2f}, "
        f"[{rho['undiscounted']['ci95'][0]:+.2f}, {rho['undiscounted']['ci95'][1]:+.2f}]); "
        f"regret of FQE's top pick {f['regret']:.0f}."
    )
    lines += ["", f"_Pendulum-v1: {st['episodes']} episodes of the scripted controller with "
              f"per-episode torque noise U(0, {st['max_noise']:g}) (mean return "
              f"{f['data_return']:.0f}); one TD3+BC {st['hidden']} run, {len(marks)} checkpoints; "
              f"true values from {st['rollouts']} rollouts each (γ {st['gamma']}); FQE "
              f"{st['fqe_steps']:,} steps per checkpoint, Q-net {st['fqe_hidden']}; "
              f"{st['bootstrap']:,} bootstrap resamples; seed {st['seed']}; "
              f"{results.conditions(record)}._"]  # fmt: skip
    return "\n".join(lines)


def readme_section() -> str:
    """The documentation's section: one :func:`_block` per kept result."""
    return report.kept_section(BENCHMARK, _block)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--max-noise", type=float, default=4.0)
    parser.add_argument(
        "--checkpoints", type=int, nargs="+", default=[10, 30, 60, 120, 250, 500, 1000, 2000]
    )
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rollouts", type=int, default=10)
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument("--fqe-steps", type=int, default=5000)
    parser.add_argument("--fqe-hidden", type=int, nargs="+", default=[128, 128])
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    report.add_arguments(parser, table=True)
    args = parser.parse_args(argv)
    if args.table_only or args.readme:
        return report.show_blocks(args, BENCHMARK, _block)
    load = report.start_run(args.threads)
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "pendulum_mixed.hdf5"
        data_return = write_pendulum_data(data, args.episodes, args.max_noise, args.seed)
        data_hash = {data.name: results.file_sha256(data)}
        buffer = load_buffer(data)
        env = gym.make(TASK)
        hidden = tuple(args.hidden)
        policy = DeterministicPolicy(
            actor=DeterministicActor(3, 1, hidden),
            action_space=env.action_space,
            observation_space=env.observation_space,
            normalize_obs=True,
        )
        algo = TD3BC(
            policy=policy,
            policy_optim=AdamOptimizerFactory(lr=3e-4),
            critics=CriticEnsemble(3, 1, hidden),
            critic_optim=AdamOptimizerFactory(lr=3e-4),
            gamma=args.gamma,
        )
        marks = sorted(set(args.checkpoints))
        paths: list[Path] = []
        with policy_within_training_step(policy):
            for step in range(1, marks[-1] + 1):
                algo.update(buffer, args.batch_size)
                if step in marks:
                    paths.append(save_policy_checkpoint(work / f"step{step:06d}.pt", policy))
        train_s = time.perf_counter() - start
        truth: dict[str, tuple[float, float]] = {}
        from tianshou_offline.recording.policies import load_continuous_policy

        for p in paths:
            loaded = load_continuous_policy(p)
            assert isinstance(loaded, DeterministicPolicy)
            truth[p.name] = rollouts(loaded, args.rollouts, args.gamma, seed=50_000)
        t0 = time.perf_counter()
        estimates = fqe_rank(
            paths,
            data,
            steps=args.fqe_steps,
            batch_size=args.batch_size,
            gamma=args.gamma,
            hidden_sizes=tuple(args.fqe_hidden),
            seed=args.seed,
        )
        fqe_s = time.perf_counter() - t0
    names = [p.name for p in paths]
    est = {r.checkpoint.name: r.estimate for r in estimates}
    x = np.array([est[n] for n in names])
    y_disc = np.array([truth[n][0] for n in names])
    y_und = np.array([truth[n][1] for n in names])
    print(
        f"data: {args.episodes} episodes ({args.episodes * 200} transitions) of the scripted "
        f"controller, torque noise U(0, {args.max_noise}) per episode, mean return "
        f"{data_return:.1f}; TD3+BC {hidden}, batch {args.batch_size}, checkpoints after "
        f"{marks} steps ({train_s:.0f} s); FQE {args.fqe_steps} steps, Q-net {args.fqe_hidden} "
        f"({fqe_s:.0f} s, {fqe_s / len(paths):.1f} s per checkpoint); truth: {args.rollouts} "
        f"rollouts each"
    )
    print(
        f"{'checkpoint':<16}{'FQE estimate':>14}{'true disc.':>12}{'true return':>13}{'FQE rank':>10}"
    )
    ranks = {r.checkpoint.name: r.rank for r in estimates}
    for i, n in enumerate(names):
        print(f"{n:<16}{x[i]:>14.1f}{y_disc[i]:>12.1f}{y_und[i]:>13.1f}{ranks[n]:>10}")
    out: dict[str, Any] = {
        "checkpoints": names,
        "fqe": x.tolist(),
        "true_discounted": y_disc.tolist(),
        "true_return": y_und.tolist(),
    }
    for label, y in (("discounted", y_disc), ("undiscounted", y_und)):
        rho = float(spearmanr(x, y).statistic)
        lo, hi = bootstrap_spearman(x, y, args.bootstrap, args.seed)
        out[f"spearman_{label}"] = {"rho": rho, "ci95": [lo, hi]}
        print(
            f"Spearman rho (FQE vs true {label} return) over {len(names)} checkpoints: "
            f"{rho:+.3f}, 95% bootstrap CI [{lo:+.3f}, {hi:+.3f}] ({args.bootstrap} resamples)"
        )
    pick = int(np.argmax(x))
    regret = float(y_und.max() - y_und[pick])
    out["regret"] = regret
    print(
        f"FQE's pick {names[pick]}: true return {y_und[pick]:.1f}; best {y_und.max():.1f} "
        f"(regret {regret:.1f}); the last checkpoint {y_und[-1]:.1f}; "
        f"{time.perf_counter() - start:.0f} s in all"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    load.stop()
    out.update(ranks=ranks, data_return=data_return, train_s=train_s, fqe_s=fqe_s,
               seconds=time.perf_counter() - start)  # fmt: skip
    settings = {k: v for k, v in vars(args).items() if k not in ("json", "table_only", "readme")}
    return report.keep(BENCHMARK, f"{args.fqe_steps}-fqe-steps", settings=settings, figures=out,
                       code=CODE, load=load, missed=[], check=False, seeds=[args.seed],
                       data=data_hash)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
