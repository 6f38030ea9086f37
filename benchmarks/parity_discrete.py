#!/usr/bin/env python3
"""Return parity of the discrete algorithms with Tianshou 2.0.1's own implementations.

Same data, budget, networks, hyperparameters and seeds for both sides:

- data: CartPole-v1 expert buffer gathered as Tianshou's offline tests do (QR-DQN trained
  online to a test return >= 190, then 20k steps at ε = 0.2; ``benchmarks/_lib/experts/cartpole.py``,
  cached);
- networks: the same modules on both sides (MLP trunk 64, heads 64; QR-DQN head with 200
  quantiles), see ``benchmarks/_lib/sides_discrete.py``;
- hyperparameters: those of Tianshou's CartPole offline tests (lr, n-step, target updates,
  BCQ threshold 0.6, CQL weight 10, batch sizes);
- budget: ``--epochs`` × ``--updates`` gradient steps with Tianshou's ``OfflineTrainer``,
  evaluated on ``--episodes`` seeded test episodes after every epoch;
- evaluation: greedy actions on both sides, on the same seeded test and final episodes
  (Tianshou's CRR policy, a ``DiscreteActorPolicy``, samples its actions at test time by
  default while ours takes the argmax: the benchmark sets Tianshou's
  ``deterministic_eval=True``);
- mini-batches (**paired**, the default): for a seed, both sides start from the same initial
  weights *and* train on the same sequence of mini-batches. Ours draws its indices with
  ``torch.randint`` from torch's global generator (``FrameDataset.sample``); the Tianshou
  buffer's private ``RandomState`` (seeded 42 at construction, untouched by
  ``np.random.seed``, and shared by every run in the process, so Tianshou's batches used to
  depend on which runs came before) is replaced during Tianshou's runs by the same draw from
  the same generator, re-seeded with the run's sampling seed. The difference between the two
  sides is then the implementations alone, not the luck of the draw: the final return's
  seed-to-seed spread (IL ~6, CQL ~30) otherwise swamps any real difference at 10 seeds.
  ``--unpaired``: each side samples with its own generator (ours torch, Tianshou its buffer's
  ``RandomState``), both seeded per run.

Reference: Tianshou 2.0.1 ``OfflineImitationLearning``, ``DiscreteBCQ``, ``DiscreteCQL``,
``DiscreteCRR``. Ours run with their library defaults where Tianshou has no counterpart
(CQL's target action from the target network, as QR-DQN's Algorithm 1; ``--cql-double-q``
selects it with the online network, as Tianshou). Reported: mean ± std over seeds of the final
policy's return (``--final-episodes`` episodes), of the mean of the last three epochs' tests
and of the best epoch's (Tianshou's tests use the best epoch), with the difference of the
means ± its standard error (paired over seeds when both sides ran the same seeds). Runs are
interleaved (seed-major), so machine load affects both alike. Paired, IL and BCQ match
Tianshou per seed to a fraction of a point (the same update, tested by
``test_paired_training_matches_tianshou``); what remains are the two algorithmic
differences: CQL's target-action rule and Tianshou's CRR actor loss (every sample weighted by
the batch-mean ``exp`` weight, with a gradient through it; see docs/ATARI.md).

Every run writes a result file under ``benchmarks/results/parity_discrete/`` (every run's
figures, the seeds, the data file's hash); ``--table-only`` / ``--readme`` print / write the
documentation's tables from the kept results.

Usage: ``python -m benchmarks.parity_discrete [--seeds 0 1 2] [--algorithms il cql] [--unpaired]``
"""

from __future__ import annotations

import argparse
import json
import operator
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tianshou.data import Collector, CollectStats
from tianshou.env import DummyVectorEnv
from tianshou.trainer import OfflineTrainerParams

from benchmarks._lib import parity, report, results
from benchmarks._lib.experts.cartpole import TASK, cached_expert_file
from benchmarks._lib.sides_discrete import ALGORITHMS, CARTPOLE, build_ours, build_tianshou
from tianshou_offline import load_buffer

BENCHMARK = "parity_discrete"
CODE = ("benchmarks/parity_discrete.py", "tianshou_offline/algorithms")
LABELS = {
    "il": ("DiscreteImitationLearning", "OfflineImitationLearning"),
    "bcq": ("DiscreteBCQ", "DiscreteBCQ"),
    "cql": ("DiscreteCQL", "DiscreteCQL"),
    "crr": ("DiscreteCRR", "DiscreteCRR"),
}

STREAM = operator.attrgetter("rng_check")
"""A draw of torch's generator after a run's training (both sides of a pair: the same)."""


SAMPLING_SEED_OFFSET = 10_000
"""The mini-batch stream of seed ``s`` is seeded with ``SAMPLING_SEED_OFFSET + s``: not the
seed of the initial weights, so the indices are not drawn from the very random numbers that
made the weights."""


@dataclass
class Run:
    algorithm: str
    implementation: str
    seed: int
    final_return: float
    best_return: float
    epoch_returns: list[float]
    train_seconds: float
    sampling: str = "unpaired"
    """``paired`` (both sides drew the same mini-batches) or ``unpaired``."""
    rng_check: int | None = None
    """A draw from torch's generator right after training: equal on both sides of a paired
    seed exactly when both consumed the same random numbers (the same mini-batches)."""


class _TorchIndexSampler:
    """Stands in for a Tianshou buffer's private ``RandomState``, whose only use is
    ``choice(size, n)`` in ``ReplayBuffer.sample_indices``: draws exactly what our
    ``FrameDataset.sample`` draws — a :class:`~tianshou_offline.algorithms.sampling.SampleStream`
    seeded from torch's global generator at the first draw (our dataset positions are the
    buffer's indices, checked in :func:`main`). One sampler per run: its stream starts fresh."""

    def __init__(self) -> None:
        from tianshou_offline.algorithms.sampling import SampleStream

        self.stream = SampleStream()

    def choice(self, a: Any, size: int) -> np.ndarray:
        if not isinstance(a, int | np.integer):
            raise TypeError("paired sampling supports buffers without frame stacking only")
        indices: np.ndarray = self.stream.next(int(a), int(size)).numpy()
        return indices


def _evaluate(algorithm: Any, episodes: int, seed: int) -> float:
    envs = DummyVectorEnv([lambda: gym.make(TASK) for _ in range(episodes)])
    envs.seed(seed)
    collector = Collector[CollectStats](algorithm, envs)
    collector.reset()
    stats = collector.collect(n_episode=episodes)
    envs.close()
    assert stats.returns_stat is not None
    return float(stats.returns_stat.mean)


def train_one(
    name: str,
    impl: str,
    seed: int,
    buffer: Any,
    *,
    epochs: int,
    updates: int,
    episodes: int,
    final_episodes: int,
    cql_double_q: bool = False,
    paired: bool = True,
) -> Run:
    """Train one algorithm for ``epochs × updates`` steps; evaluate after every epoch.

    :param paired: Tianshou's side samples its mini-batches as ours does (see the module
        docstring), so both sides of a seed train on the same batches.
    """
    np.random.seed(seed)
    algorithm = (
        build_ours(name, CARTPOLE, seed, **({"double_q": cql_double_q} if name == "cql" else {}))
        if impl == "ours"
        else build_tianshou(name, CARTPOLE, seed)
    )
    if impl == "tianshou" and name == "crr":
        # Tianshou's DiscreteActorPolicy samples at test time by default; ours is greedy
        algorithm.policy.deterministic_eval = True
    sampling_seed = SAMPLING_SEED_OFFSET + seed
    torch.manual_seed(sampling_seed)  # ours: the SampleStream is seeded from this generator
    buffer_rng = buffer._random_state  # Tianshou: ReplayBuffer.sample_indices draws from this
    buffer._random_state = _TorchIndexSampler() if paired else np.random.RandomState(sampling_seed)
    test_envs = DummyVectorEnv([lambda: gym.make(TASK) for _ in range(episodes)])
    epoch_returns: list[float] = []

    def test_fn(epoch: int, step: int | None) -> None:
        test_envs.seed(1000 + seed)  # the same test episodes after every epoch, both sides

    class _Record:
        def __call__(self, stats: CollectStats) -> float:
            assert stats.returns_stat is not None
            epoch_returns.append(float(stats.returns_stat.mean))
            return float(stats.returns_stat.mean)

    start = time.perf_counter()
    try:
        result = algorithm.run_training(
            OfflineTrainerParams(
                buffer=buffer,
                test_collector=Collector[CollectStats](algorithm, test_envs),
                max_epochs=epochs,
                epoch_num_steps=updates,
                batch_size=CARTPOLE.batch_size(name),
                test_step_num_episodes=episodes,
                test_fn=test_fn,
                compute_score_fn=_Record(),
                show_progress=False,
                verbose=False,
            )
        )
    finally:
        buffer._random_state = buffer_rng
    seconds = time.perf_counter() - start
    rng_check = int(torch.randint(2**62, (1,)))
    test_envs.close()
    final = _evaluate(algorithm, final_episodes, 2000 + seed)
    # epoch_returns[0] is the initial (untrained) test
    return Run(
        algorithm=name,
        implementation=impl,
        seed=seed,
        final_return=final,
        best_return=float(result.best_reward),
        epoch_returns=epoch_returns[1:],
        train_seconds=seconds,
        sampling="paired" if paired else "unpaired",
        rng_check=rng_check,
    )


def _last3(r: Run) -> float:
    return statistics.mean(r.epoch_returns[-3:])


def format_table(runs: Sequence[Run]) -> str:
    """Three views of the same runs: the final policy (``--final-episodes`` episodes), the
    mean of the last three epochs' evaluations (less sensitive to where the last update
    happened to leave the weights), and the best epoch (as Tianshou's tests). Differences are
    paired over seeds when both sides ran the same seeds."""
    labels = {name: f"{LABELS[name][0]} vs {LABELS[name][1]}" for name in ALGORITHMS}
    return parity.format_table(runs, labels, COLUMNS, both_sides=True)


COLUMNS: list[parity.Column] = [
    ("final", lambda r: r.final_return, True),
    ("last 3 epochs", _last3, True),
    ("best epoch", lambda r: r.best_return, False),
]


def _block(record: Mapping[str, Any]) -> str:
    """One kept result's table and what it ran."""
    runs = [Run(**r) for r in record["figures"]["runs"]]
    st = record["settings"]
    target = (" (ours selecting CQL's target action with the online network, as Tianshou: "
              "`--cql-double-q`)" if st["cql_double_q"] else "")  # fmt: skip
    return (
        f"{format_table(runs)}\n\n_CartPole-v1 QR-DQN expert{target}; {st['epochs']} × "
        f"{st['updates']} gradient steps, {st['episodes']} test episodes per epoch, final "
        f"return over {st['final_episodes']} episodes; seeds "
        f"{', '.join(map(str, record['seeds']))}; {parity.pairing_summary(runs, STREAM)}; "
        f"{results.conditions(record)}._"
    )


def readme_section() -> str:
    """The documentation's section: one :func:`_block` per kept result."""
    return report.kept_section(BENCHMARK, _block)


SETTINGS = ("seeds", "epochs", "updates", "episodes", "final_episodes", "algorithms",
            "threads", "cql_double_q", "unpaired", "implementations")  # fmt: skip
"""The options kept as a result's settings."""


def main(argv: Sequence[str] | None = None) -> list[Run]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--updates", type=int, default=1000, help="gradient steps per epoch")
    p.add_argument("--episodes", type=int, default=20, help="test episodes per epoch")
    p.add_argument(
        "--final-episodes", type=int, default=100, help="episodes of the final policy's evaluation"
    )
    p.add_argument("--algorithms", nargs="*", default=list(ALGORITHMS), choices=ALGORITHMS)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--data-dir",
        type=str,
        default=str(Path.home() / ".cache" / "tianshou_offline" / "bench"),
        help="where the expert file is cached ($TIANSHOU_OFFLINE_EXPERT_CACHE wins)",
    )
    p.add_argument(
        "--cql-double-q",
        action="store_true",
        help="our CQL selects the target action with the online network, as Tianshou",
    )
    p.add_argument(
        "--unpaired",
        action="store_true",
        help="each side samples its mini-batches with its own generator (seeded per run) "
        "instead of both drawing the same ones",
    )
    p.add_argument(
        "--implementations", nargs="+", default=["ours", "tianshou"], choices=("ours", "tianshou")
    )
    p.add_argument("--json", type=str, default=None)
    p.add_argument(
        "--table-from",
        nargs="+",
        default=None,
        help="only print the table of earlier --json result files (combined)",
    )
    report.add_arguments(p, table=True)
    args = p.parse_args(argv)
    if (shown := parity.shown(args, BENCHMARK, _block, Run, format_table, STREAM)) is not None:
        return shown
    if len(args.seeds) < 3:
        p.error("use at least 3 seeds")
    torch.set_num_threads(args.threads)
    load = results.LoadMonitor().start()
    data = cached_expert_file(args.data_dir)
    buffer = load_buffer(data)
    # paired sampling relies on our dataset's position i being the buffer's index i
    if buffer.stack_num != 1 or not np.array_equal(
        np.sort(buffer.sample_indices(0)), np.arange(len(buffer))
    ):
        raise RuntimeError(f"{data}: expected a full, unstacked buffer for paired sampling")
    print(
        f"data: {data} ({len(buffer)} transitions); budget {args.epochs}×{args.updates} steps; "
        f"mini-batches {'unpaired' if args.unpaired else 'paired'}"
    )
    runs: list[Run] = []
    for seed in args.seeds:
        for name in args.algorithms:
            for impl in args.implementations:
                run = train_one(
                    name,
                    impl,
                    seed,
                    buffer,
                    epochs=args.epochs,
                    updates=args.updates,
                    episodes=args.episodes,
                    final_episodes=args.final_episodes,
                    cql_double_q=args.cql_double_q,
                    paired=not args.unpaired,
                )
                runs.append(run)
                print(
                    f"seed {seed} {name:4s} {impl:9s} final {run.final_return:6.1f} "
                    f"best {run.best_return:6.1f} epochs {[round(x) for x in run.epoch_returns]} "
                    f"({run.train_seconds:.0f} s)",
                    flush=True,
                )
    print()
    print(parity.summary(runs, format_table, STREAM))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in runs], f, indent=2)
    load.stop()
    variants = [*(["cql-double-q"] if args.cql_double_q else []),
                *([] if len(args.implementations) == 2 else args.implementations)]  # fmt: skip
    parity.keep_runs(
        BENCHMARK, parity.result_name(not args.unpaired, variants, args.algorithms,
        list(ALGORITHMS)), runs, settings={k: v for k, v in vars(args).items() if k in SETTINGS},
        code=CODE, load=load, data=data,
    )  # fmt: skip
    return runs


if __name__ == "__main__":
    main(sys.argv[1:])
