"""Off-policy evaluation against the truth: how well does each estimator rank and value the
checkpoints of offline training runs, on a discrete (CartPole-v1) and a continuous
(Pendulum-v1) dataset family whose true values are a rollout away?

Per family:

1. **Data**: the family's dataset family made by
   :func:`tianshou_offline.datasets.make_datasets` (what ``tianshou-offline make-datasets``
   runs) at a small budget — CartPole: DQN for ``--cartpole-budget`` environment steps, its
   medium and expert checkpoints recorded ε-greedily with ``--cartpole-data-eps``; Pendulum:
   SAC for ``--pendulum-budget`` steps, its medium and expert policies' Gaussian samples —
   ``--dataset-steps`` transitions per recorded level. The offline runs and the estimators use
   the level ``--level`` (default ``medium-expert``: the medium file's episodes then the
   expert's, so the data holds good and mediocre behaviour); the behaviour model is fitted on
   it. The result records the family's settings (``family.json``), its reference scores,
   every level's mean return and SHA-256. ``--source scripted`` uses the older data instead
   (the quickstart's scripted controllers with per-episode noise, CartPole also with the
   stored behaviour probabilities: ``is*``, ``wis*``).
2. **Checkpoints**: three algorithms of the grid (:func:`tianshou_offline.scale.algorithms.build_algorithm`,
   its small default networks) trained on the data, each policy saved after
   ``--marks`` gradient steps: ≥ 12 checkpoints of every quality, from near random to the
   algorithm's best (CartPole: BCQ, CQL, CRR; Pendulum: TD3+BC, IQL, behaviour cloning).
3. **Truth**: ``--rollouts`` fresh episodes per checkpoint in the environment (its own
   initial states, the same distribution as the data's): the mean discounted return
   (γ of the family) — what every estimator estimates — with its standard error.
4. **Estimates** from the data alone (:func:`tianshou_offline.evaluation.ope.evaluate_policy`,
   what ``tianshou-offline evaluate --ope`` runs): FQE, per-decision IS, weighted IS, DR and
   weighted DR, each with a 95% bootstrap interval over episodes; the behaviour model is
   fitted (softmax / Gaussian behaviour cloning).
5. **Scores** per estimator: Spearman's ρ between estimates and true values, regret@1 (best
   true value − true value of the top-ranked checkpoint, also as a fraction of the range of
   true values), the mean absolute error of the estimates, and the coverage of the
   intervals (the fraction of checkpoints whose true value lies inside).

The discount is chosen per family so that ``γ^T`` is small over the episodes' length ``T``
(CartPole 0.99 over up to 500 steps, Pendulum 0.97 over 200): the value the estimators see
in the data is then the environment's value.

Writes one result file per run under ``benchmarks/results/ope_validation/``; ``--readme``
rewrites the docs' section from the newest committed results (one table row group per family
and data source).

    nice -n 5 python -m benchmarks.ope_validation --seed 0
    python -m benchmarks.ope_validation --readme
"""

from __future__ import annotations

import tianshou_offline.cli._no_tensorflow  # noqa: F401  (first: keeps TensorFlow out of this process)

# isort: split

import argparse
import copy
import json
import logging
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from scipy.stats import spearmanr
from tianshou.utils.torch_utils import policy_within_training_step

from benchmarks._lib.results import LoadMonitor, file_sha256, read_results, write_result
from benchmarks._lib.rollouts import episode_returns, write_pendulum_data
from tianshou_offline import BufferWriter, load_buffer
from tianshou_offline.data.format import read_metadata
from tianshou_offline.datasets import LEVELS, FamilyConfig, make_datasets
from tianshou_offline.evaluation.ope import (
    OPESettings,
    evaluate_policy,
    fit_behavior,
)
from tianshou_offline.recording.policies import ScriptedCartPoleExpert
from tianshou_offline.scale.algorithms import build_algorithm

BENCHMARK = "ope_validation"
CODE = (
    "benchmarks/ope_validation.py",
    "benchmarks/fqe_rank.py",
    "tianshou_offline/evaluation",
    "tianshou_offline/algorithms",
    "tianshou_offline/scale/algorithms.py",
    "tianshou_offline/datasets",
)
FAMILIES: dict[str, dict[str, Any]] = {
    "cartpole": {"env": "CartPole-v1", "gamma": 0.99, "algorithms": ("bcq", "cql", "crr")},
    "pendulum": {"env": "Pendulum-v1", "gamma": 0.97, "algorithms": ("td3bc", "iql", "il")},
}
ESTIMATOR_NAMES = ("fqe", "is", "wis", "dr", "wdr")
log = logging.getLogger("ope_validation")


def write_cartpole_data(path: Path, episodes: int, max_eps: float, seed: int) -> float:
    """Scripted-expert CartPole episodes with per-episode ε ~ U(0, max_eps) and the stored
    behaviour probability of each action; returns the mean return."""
    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(seed)
    greedy = ScriptedCartPoleExpert(eps=0.0)
    returns = []
    with BufferWriter(path, observation_space=env.observation_space,
                      action_space=env.action_space, env_id="CartPole-v1") as writer:  # fmt: skip
        for e in range(episodes):
            eps = float(rng.uniform(0.0, max_eps))
            expert = ScriptedCartPoleExpert(eps=eps, seed=seed * 1000 + e)
            cols: dict[str, list[Any]] = {k: [] for k in ("obs", "act", "rew", "obs_next",
                                                         "terminated", "truncated", "mu")}  # fmt: skip
            obs, _ = env.reset(seed=seed * 10_000 + e)
            done = False
            while not done:
                act = expert(obs)
                mu = (1.0 - eps) * float(act == greedy(obs)) + eps / 2.0
                nxt, rew, term, trunc, _ = env.step(act)
                for k, v in zip(cols, (obs, act, rew, nxt, term, trunc, mu), strict=True):
                    cols[k].append(v)
                obs, done = nxt, term or trunc
            returns.append(float(np.sum(cols["rew"])))
            a = {k: np.asarray(v) for k, v in cols.items()}
            writer.add_episode(obs=a["obs"], act=a["act"], rew=a["rew"],
                               terminated=a["terminated"], truncated=a["truncated"],
                               obs_next=a["obs_next"], info={"behavior_prob": a["mu"]})  # fmt: skip
    return float(np.mean(returns))


def make_family(name: str, args: argparse.Namespace, out: Path) -> tuple[Path, dict[str, Any]]:
    """The family of ``name`` made by :func:`make_datasets` in ``out`` at this benchmark's
    budget; returns the path of the ``--level`` file and what the result records of the
    family: the level, the make-datasets settings (``family.json``), the reference scores, the online checkpoints'
    evaluation returns and every level's transitions, mean return and SHA-256."""
    discrete = name == "cartpole"
    config = FamilyConfig(
        budget=args.cartpole_budget if discrete else args.pendulum_budget,
        seed=args.seed,
        dataset_steps=args.dataset_steps,
        levels=LEVELS,
        reference_episodes=args.reference_episodes,
        eval_episodes=args.family_eval_episodes,
        checkpoint_every=(args.cartpole_budget if discrete else args.pendulum_budget) // 10,
        data_eps=args.cartpole_data_eps,
    )
    result = make_datasets(FAMILIES[name]["env"], out, config=config, show_progress=False)
    manifest = json.loads((out / "family.json").read_text())
    if args.level not in result.levels:
        raise SystemExit(f"error: --level {args.level}: the family has {list(result.levels)}")
    log.warning("%s family: %s", name, " ".join(
        f"{lv} {r.mean_return:.1f}" for lv, r in result.levels.items()))  # fmt: skip
    return result.levels[args.level].path, {
        "level": args.level,
        "settings": manifest["settings"],
        "reference_scores": dict(zip(("random", "expert"), result.reference_scores, strict=True)),
        "online_checkpoints": [
            {"env_step": c.env_step, "eval_return": c.eval_return} for c in result.checkpoints
        ],
        "medium_step": result.medium.env_step,
        "expert_step": result.expert.env_step,
        "files": manifest["files"],
        "seconds": result.seconds,
    }


def train_checkpoints(
    name: str, data: Path, marks: list[int], batch_size: int, seed: int
) -> list[tuple[str, Any]]:
    """The policy of algorithm ``name`` after each of ``marks`` gradient steps (copies)."""
    meta = read_metadata(data)
    assert meta.observation_space is not None and meta.action_space is not None
    torch.manual_seed(seed)
    np.random.seed(seed)
    algo: Any = build_algorithm(name, meta.observation_space, meta.action_space)
    buffer = load_buffer(data)
    out: list[tuple[str, Any]] = []
    with policy_within_training_step(algo.policy):
        for step in range(1, max(marks) + 1):
            algo.update(buffer, batch_size)
            if step in marks:
                policy = copy.deepcopy(algo.policy)
                policy.eval()
                out.append((f"{name}@{step}", policy))
    return out


def rollouts(policy: Any, env_id: str, n: int, gamma: float, seed: int) -> dict[str, float]:
    """Mean (and standard error of the) discounted return of ``n`` fresh episodes, and the
    mean undiscounted return."""
    disc, undisc = episode_returns(policy, env_id, n, gamma, seed)
    return {
        "value": float(np.mean(disc)),
        "value_se": float(np.std(disc, ddof=1) / math.sqrt(n)) if n > 1 else 0.0,
        "return": float(np.mean(undisc)),
    }


def score(estimates: list[dict[str, float]], truth: list[float]) -> dict[str, float]:
    """Spearman ρ, regret@1 (absolute and as a fraction of the truth's range), mean absolute
    error and interval coverage of one estimator over the checkpoints."""
    est = np.array([e["value"] for e in estimates])
    true = np.array(truth)
    finite = np.isfinite(est)
    rho = float(spearmanr(est[finite], true[finite]).statistic) if finite.sum() > 2 else math.nan
    pick = int(np.nanargmax(np.where(finite, est, -np.inf)))
    regret = float(true.max() - true[pick])
    span = float(true.max() - true.min())
    covered = [e["low"] <= t <= e["high"] for e, t in zip(estimates, truth, strict=True)]
    return {
        "spearman": rho,
        "regret_at_1": regret,
        "regret_at_1_fraction": regret / span if span > 0 else 0.0,
        "abs_error": float(np.mean(np.abs(est[finite] - true[finite]))),
        "coverage": float(np.mean(covered)),
    }


def run_family(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    fam = FAMILIES[name]
    env_id, gamma = fam["env"], float(fam["gamma"])
    t0 = time.perf_counter()
    family: dict[str, Any] | None = None
    if args.source == "make-datasets":
        data, family = make_family(name, args, work / f"{name}-family")
        data_return = float(family["files"][args.level]["mean_return"])
    else:
        data = work / f"{name}.hdf5"
        if name == "cartpole":
            data_return = write_cartpole_data(data, args.episodes, args.max_eps, args.seed)
        else:
            data_return = write_pendulum_data(data, args.episodes, args.max_noise, args.seed)
    data_s = time.perf_counter() - t0
    checkpoints: list[tuple[str, Any]] = []
    for algo in fam["algorithms"]:
        checkpoints += train_checkpoints(algo, data, args.marks, args.batch_size, args.seed)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    truth = {label: rollouts(p, env_id, args.rollouts, gamma, 50_000) for label, p in checkpoints}
    truth_s = time.perf_counter() - t0
    settings = OPESettings(
        gamma=gamma, fqe_steps=args.fqe_steps, fqe_hidden=tuple(args.fqe_hidden),
        fqe_lr=args.fqe_lr, fqe_tau=args.fqe_tau, batch_size=args.batch_size,
        behavior_steps=args.behavior_steps, behavior_hidden=tuple(args.behavior_hidden),
        target_std=args.target_std, max_weight=args.max_weight, resamples=args.resamples,
        seed=args.seed,
    )  # fmt: skip
    meta = read_metadata(data)
    assert meta.observation_space is not None and meta.action_space is not None
    buffer = load_buffer(data)
    t0 = time.perf_counter()
    behavior = fit_behavior(buffer, meta.observation_space, meta.action_space, settings)
    stored = None
    if name == "cartpole" and args.source == "scripted":
        stored = fit_behavior(buffer, meta.observation_space, meta.action_space,
                              OPESettings(**{**settings.__dict__, "behavior": "stored"}))  # fmt: skip
    rows: list[dict[str, Any]] = []
    for label, policy in checkpoints:
        r = evaluate_policy(policy, buffer, behavior=behavior, settings=settings,
                            observation_space=meta.observation_space, name=label)  # fmt: skip
        est = {k: {"value": v.value, "low": v.low, "high": v.high} for k, v in r.estimates.items()}
        if stored is not None:
            s = evaluate_policy(policy, buffer, behavior=stored,
                                settings=OPESettings(**{**settings.__dict__,
                                                        "estimators": ("is", "wis")}),
                                observation_space=meta.observation_space, name=label)  # fmt: skip
            for k, v in s.estimates.items():
                est[f"{k}*"] = {"value": v.value, "low": v.low, "high": v.high}
        rows.append({"checkpoint": label, "truth": truth[label], "estimates": est,
                     "fqe_loss": r.fqe_loss})  # fmt: skip
        log.warning("%s %s: true %.2f | %s", name, label, truth[label]["value"],
                    " ".join(f"{k} {v['value']:.2f}" for k, v in est.items()))  # fmt: skip
    ope_s = time.perf_counter() - t0
    true_values = [r["truth"]["value"] for r in rows]
    scores = {
        k: score([r["estimates"][k] for r in rows], true_values) for k in rows[0]["estimates"]
    }
    return {
        "env": env_id,
        "gamma": gamma,
        "source": args.source,
        "family": family,
        "algorithms": list(fam["algorithms"]),
        "data_sha256": file_sha256(data),
        "data_episodes": meta.num_episodes,
        "data_transitions": len(buffer),
        "data_mean_return": data_return,
        "behavior_fit_loss": behavior.final_loss,
        "checkpoints": rows,
        "scores": scores,
        "seconds": {"data": data_s, "data_and_training": train_s, "truth": truth_s, "ope": ope_s},
    }


# --------------------------------------------------------------------------- the README


def _data_label(res: dict[str, Any]) -> str:
    """Where a family's data came from, for the table: the make-datasets level and budget, or
    the scripted controllers (results without ``source`` are the scripted ones)."""
    family = res.get("family")
    if res.get("source", "scripted") == "scripted" or not family:
        return "scripted controllers"
    st = family["settings"]
    return f"make-datasets {family['level']}, {st['algorithm'].upper()} {st['budget']:,} steps"


def readme_section(records: list[dict[str, Any]] | None = None) -> str:
    """The README's table from ``records`` (default: the kept results) — per family and
    estimator, the mean over the runs (seeds) and, for Spearman's ρ, their range — and the
    best estimators by ranking and by value."""
    from benchmarks._lib.results import provenance_line

    if records is None:
        records = read_results(BENCHMARK)

    families: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        for fam, res in record["figures"]["families"].items():
            families.setdefault(f"{fam} ({_data_label(res)})", []).append(res)
    lines = [
        "| family | estimator | Spearman ρ (range) | regret@1, % of range | mean abs. error "
        "| CI coverage |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    best_rank, best_value = {}, {}
    # make-datasets families first, the scripted ones after
    for fam, runs in sorted(families.items(), key=lambda kv: "scripted" in kv[0]):
        values = [r["truth"]["value"] for res in runs for r in res["checkpoints"]]
        label = (f"{runs[0]['env']}, {_data_label(runs[0])} (γ {runs[0]['gamma']}; "
                 f"{len(runs)} seed(s) × "
                 f"{len(runs[0]['checkpoints'])} checkpoints; true values "
                 f"{min(values):.0f} … {max(values):.0f})")  # fmt: skip
        means: dict[str, dict[str, float]] = {}
        for k in runs[0]["scores"]:
            scores = [res["scores"][k] for res in runs]
            rho = [s["spearman"] for s in scores]
            means[k] = {m: float(np.mean([s[m] for s in scores])) for m in scores[0]}
            lines.append(
                f"| {label} | {k} | {means[k]['spearman']:+.2f} ({min(rho):+.2f} … "
                f"{max(rho):+.2f}) | {100 * means[k]['regret_at_1_fraction']:.0f}% | "
                f"{means[k]['abs_error']:.1f} | {100 * means[k]['coverage']:.0f}% |"
            )
            label = ""
        best_rank[fam] = max(means, key=lambda k: means[k]["spearman"])
        best_value[fam] = min(means, key=lambda k: means[k]["abs_error"])
    lines += [
        "",
        "Highest mean Spearman: " + ", ".join(f"{f} `{k}`" for f, k in best_rank.items())
        + "; smallest mean absolute error: "
        + ", ".join(f"{f} `{k}`" for f, k in best_value.items())
        + "."
        + (" `is*`, `wis*`: IS/WIS with the behaviour probabilities stored in the data instead "
           "of a fitted behaviour model." if any("is*" in res["scores"] for runs in
                                                 families.values() for res in runs) else ""),
        "",
        provenance_line(records),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--source", choices=("make-datasets", "scripted"),
                        default="make-datasets", help="where the data comes from")  # fmt: skip
    parser.add_argument("--level", default="medium-expert", choices=LEVELS,
                        help="the make-datasets level the checkpoints train and are evaluated on")  # fmt: skip
    parser.add_argument("--cartpole-budget", type=int, default=30_000, help="DQN online steps")
    parser.add_argument("--pendulum-budget", type=int, default=10_000, help="SAC online steps")
    parser.add_argument("--cartpole-data-eps", type=float, default=0.2,
                        help="ε of the recorded DQN policies (make-datasets' data_eps)")  # fmt: skip
    parser.add_argument("--dataset-steps", type=int, default=6000,
                        help="transitions per recorded level (make-datasets' dataset_steps)")  # fmt: skip
    parser.add_argument("--reference-episodes", type=int, default=20)
    parser.add_argument("--family-eval-episodes", type=int, default=5,
                        help="evaluation episodes per online checkpoint")  # fmt: skip
    parser.add_argument("--episodes", type=int, default=60, help="scripted data's episodes")
    parser.add_argument("--max-eps", type=float, default=0.6, help="CartPole data's ε range")
    parser.add_argument("--max-noise", type=float, default=3.0, help="Pendulum data's noise")
    parser.add_argument("--marks", type=int, nargs="+", default=[30, 150, 600, 2500])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rollouts", type=int, default=20)
    parser.add_argument("--fqe-steps", type=int, default=8000)
    parser.add_argument("--fqe-hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--fqe-lr", type=float, default=1e-3)
    parser.add_argument("--fqe-tau", type=float, default=0.05)
    parser.add_argument("--behavior-steps", type=int, default=2000)
    parser.add_argument("--behavior-hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--target-std", type=float, default=0.1)
    parser.add_argument("--max-weight", type=float, default=100.0)
    parser.add_argument("--resamples", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--readme", action="store_true",
                        help="rewrite the README section from the newest kept result; no run")  # fmt: skip
    args = parser.parse_args(argv)
    if args.readme:
        from benchmarks._lib.readme import write_sections

        records = read_results(BENCHMARK)
        if not records:
            print("no kept result under benchmarks/results/ope_validation/", file=sys.stderr)
            return 2
        changed = write_sections({BENCHMARK: readme_section()})
        print(f"README: {', '.join(changed) or 'unchanged'}")
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.set_num_threads(args.threads)
    settings = {k: v for k, v in vars(args).items() if k != "readme"}
    start = time.perf_counter()
    figures: dict[str, Any] = {}
    with LoadMonitor() as load, tempfile.TemporaryDirectory() as tmp:
        for fam in args.families:
            figures[fam] = run_family(fam, args, Path(tmp))
    elapsed = time.perf_counter() - start
    cpu = time.process_time()
    for res in figures.values():
        print(f"\n{res['env']} (γ {res['gamma']}): {len(res['checkpoints'])} checkpoints")
        print(f"{'estimator':<10}{'Spearman':>10}{'regret@1':>10}{'abs err':>10}{'coverage':>10}")
        for k, s in res["scores"].items():
            print(f"{k:<10}{s['spearman']:>+10.2f}{s['regret_at_1']:>10.2f}"
                  f"{s['abs_error']:>10.2f}{100 * s['coverage']:>9.0f}%")  # fmt: skip
    path = write_result(
        BENCHMARK, f"ope-{args.source}-{'-'.join(args.families)}-seed{args.seed}",
        settings=settings,
        figures={"families": figures, "wall_seconds": round(elapsed, 1),
                 "cpu_seconds": round(cpu, 1)},
        code=CODE, seeds=[args.seed], data={f: r["data_sha256"] for f, r in figures.items()},
        load=load,
    )  # fmt: skip
    print(f"\n{elapsed:.0f} s wall, {cpu:.0f} s CPU; result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
