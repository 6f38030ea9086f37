"""Return parity: tianshou-offline's continuous algorithms vs Tianshou 2.0.1's own.

Same data, same budget, same seeds, same networks and hyperparameters on both sides:

- data: 20k transitions of a SAC expert on Pendulum-v1, gathered the way Tianshou's offline
  tests do (``benchmarks/_lib/experts/pendulum.py``: SAC to a test return >= -250, then exploring
  steps). Tianshou's algorithms train on actions in their policies' ``[-1, 1]`` range (what
  Tianshou's collectors store); ours on the file's environment units — the same transitions.
- budget: ``--epochs`` × ``--steps`` gradient steps, batch 256, a 10-episode test after every
  epoch; then the final policy is evaluated on ``--eval-episodes`` episodes.
- pairs: ImitationLearning (deterministic, MSE), BCQ, CQL (weight 5, automatic α, no
  Lagrange multiplier, no calibration, no gradient clipping) and TD3+BC (observation
  normalisation on both sides; Tianshou's via its example's recipe: normalised buffer +
  ``VectorEnvNormObs``). CRR has no Tianshou counterpart and is reported alone.

- initial weights: every Tianshou network starts from our network's initial weights for the
  seed, copied layer by layer (exact: the same function class and input order on both
  sides). Our ``MLP`` is Tianshou's ``Net`` + output ``MLP``; our ``GaussianActor``'s output
  layer is the row-concatenation of Tianshou's ``mu`` and ``sigma`` heads; member ``e`` of our
  ``CriticEnsemble`` is Tianshou's ``critic``/``critic2`` (``weights[l][e]`` is the transposed
  ``Linear.weight``); our VAE's ``mean_and_log_std`` is Tianshou's ``mean`` and ``log_std``.
  The copy is made before Tianshou's algorithm is constructed, so its target networks are
  copies of the same weights.
- mini-batches (**paired**, the default): for a seed, both sides train on the same sequence
  of mini-batches. The batch stream is a dedicated ``torch.Generator`` seeded
  ``SAMPLING_SEED_OFFSET + seed``, separate from the weights' seed and from the generator the
  algorithms draw their noise from (the continuous algorithms draw different amounts of noise
  per update on the two sides, so one shared generator would not stay aligned). Ours: during
  the run ``TransitionDataset.sample`` makes its usual draw, ``torch.randint(len, (n,))``,
  from that generator. Tianshou: the buffer's private ``RandomState`` (whose only use is
  ``choice(size, n)`` in ``ReplayBuffer.sample_indices``) is replaced by the same draw from a
  generator seeded alike, mapped through ``buffer.sample_indices(0)`` (the order of our
  dataset's rows), so index ``k`` of a draw is the same transition on both sides. Each side
  hashes the buffer indices it trained on; the script prints in how many runs the two hashes
  matched. ``--unpaired``: the old behaviour, ours samples from torch's global generator and
  Tianshou from its buffer's ``RandomState``, both seeded per run.
- evaluation: the same seeded test and final episodes on both sides; deterministic actions
  (IL, TD3+BC: the actor; CQL: ``tanh`` of the Gaussian mean on both sides). BCQ acts by the
  argmax of Q over 10 perturbed VAE samples on both sides, stochastic by design.

Reports mean ± std over seeds of the final return (``--eval-episodes`` episodes), of the mean
of the last three epochs' tests and of the best epoch's test, and the difference ours −
Tianshou as mean ± standard error of the per-seed differences (Welch's when unpaired). Runs are
interleaved (seed-major), so machine load affects both sides alike.

Every run writes a result file under ``benchmarks/results/parity_continuous/`` (every run's
figures, the seeds, the data file's hash); ``--table-only`` / ``--readme`` print / write the
documentation's tables from the kept results.

Usage::

    python -m benchmarks.parity_continuous                      # 3 seeds, all algorithms
    python -m benchmarks.parity_continuous --seeds 0 1 2 3 4 --algorithms cql,td3bc
    python -m benchmarks.parity_continuous --unpaired           # each side its own batches
    python -m benchmarks.parity_continuous --table-only
"""

from __future__ import annotations

import argparse
import hashlib
import json
import operator
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm.algorithm_base import Algorithm
from tianshou.data import Collector, CollectStats, ReplayBuffer
from tianshou.env import BaseVectorEnv, DummyVectorEnv, VectorEnvNormObs
from tianshou.trainer import OfflineTrainerParams
from tianshou.utils import RunningMeanStd

from benchmarks._lib import parity, report, results
from benchmarks._lib.experts.pendulum import cached_expert_file
from benchmarks._lib.parity_continuous_sides import (
    TASK,
    build_ours,
    build_tianshou,
    expert_buffers,
    normalized_obs_copy,
)
from tianshou_offline.algorithms import TransitionDataset

BENCHMARK = "parity_continuous"
CODE = (
    "benchmarks/parity_continuous.py",
    "benchmarks/_lib/parity_continuous_sides.py",
    "tianshou_offline/algorithms",
)
SAMPLING_SEED_OFFSET = 10_000
"""The mini-batch stream of seed ``s`` is seeded ``SAMPLING_SEED_OFFSET + s``."""
NOISE_SEED_OFFSET = 20_000
"""torch's global generator (the algorithms' noise) is seeded ``NOISE_SEED_OFFSET + s`` after
the networks are built, so both sides' noise streams start alike."""


# ------------------------------------------------------------------- running


class BatchStream:
    """The mini-batch indices of one run: ``torch.randint(size, (n,))`` from a dedicated
    generator (what ``TransitionDataset.sample`` draws), mapped to buffer indices through
    ``order`` (``buffer.sample_indices(0)``, the order of our dataset's rows), with a running
    hash of every index drawn."""

    def __init__(self, seed: int, order: np.ndarray) -> None:
        self.generator = torch.Generator().manual_seed(seed)
        self.order = order
        self.hash = hashlib.blake2b(digest_size=8)
        self.draws = 0

    def positions(self, size: int, n: int, device: torch.device | None = None) -> torch.Tensor:
        if size != len(self.order):
            raise RuntimeError(f"sampling from {size} transitions, expected {len(self.order)}")
        idx = torch.randint(size, (n,), generator=self.generator).to(device)
        self.hash.update(self.order[idx.cpu().numpy()].astype(np.int64).tobytes())
        self.draws += 1
        return idx

    def choice(self, a: Any, size: int) -> np.ndarray:
        """Stands in for a Tianshou buffer's ``RandomState.choice(self._size, batch_size)``."""
        if not isinstance(a, int | np.integer):
            raise TypeError("paired sampling supports buffers without frame stacking only")
        indices: np.ndarray = self.order[self.positions(int(a), int(size)).numpy()]
        return indices

    def digest(self) -> str:
        return f"{self.draws}:{self.hash.hexdigest()}"


@contextmanager
def batches_from(stream: BatchStream | None) -> Iterator[None]:
    """During the block, our ``TransitionDataset.sample`` draws from ``stream``'s generator."""
    if stream is None:
        yield
        return
    original = TransitionDataset.sample

    def sample(self: TransitionDataset, batch_size: int) -> Any:
        idx = stream.positions(len(self), batch_size, self.device)
        return self._unpack(torch.index_select(self.packed, 0, idx))

    cast(Any, TransitionDataset).sample = sample
    try:
        yield
    finally:
        cast(Any, TransitionDataset).sample = original


@contextmanager
def buffer_sampling(buffer: ReplayBuffer, sampler: Any) -> Iterator[None]:
    """During the block, ``buffer.sample_indices`` draws its indices from ``sampler``."""
    saved = buffer._random_state
    buffer._random_state = sampler
    try:
        yield
    finally:
        buffer._random_state = saved


@dataclass
class Run:
    algorithm: str
    implementation: str
    seed: int
    final_return: float
    last3_return: float
    best_return: float
    epoch_returns: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    sampling: str = "unpaired"
    batch_digest: str | None = None
    """``draws:hash`` of the buffer indices trained on (paired runs)."""


def run(
    algo: Algorithm[Any, Any],
    buffer: ReplayBuffer,
    *,
    seed: int,
    epochs: int,
    steps: int,
    eval_episodes: int,
    obs_rms: RunningMeanStd | None,
) -> tuple[float, list[float], float, float]:
    """Train, then evaluate the final policy.

    :returns: (final mean return over ``eval_episodes``, the per-epoch test returns, best
        per-epoch test return, seconds of training).
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
    info = algo.run_training(
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
    return float(final.returns_stat.mean), epoch_tests, float(info.best_reward), seconds


def train_one(
    name: str,
    side: str,
    seed: int,
    *,
    env: gym.Env[Any, Any],
    hidden: list[int],
    buffer: ReplayBuffer,
    order: np.ndarray,
    obs_rms: RunningMeanStd | None,
    paired: bool,
    epochs: int,
    steps: int,
    eval_episodes: int,
    bcq_net: bool = False,
) -> Run:
    """One run of ``side``'s ``name``: our initial weights for the seed (copied into
    Tianshou's networks), the seed's batch stream when ``paired``."""
    np.random.seed(seed)
    torch.manual_seed(seed)
    algo = build_ours(name, env, hidden)
    if side == "tianshou":
        algo = build_tianshou(name, env, hidden, init=algo, bcq_net=bcq_net)
    torch.manual_seed(NOISE_SEED_OFFSET + seed)
    sampling_seed = SAMPLING_SEED_OFFSET + seed
    stream = BatchStream(sampling_seed, order) if paired else None
    if side == "ours":
        context = batches_from(stream)
    else:
        sampler = stream if stream is not None else np.random.RandomState(sampling_seed)
        context = buffer_sampling(buffer, sampler)
    if not paired:
        torch.manual_seed(seed)  # the old behaviour: ours samples from the global generator
    with context:
        final, tests, best, seconds = run(
            algo,
            buffer,
            seed=seed,
            epochs=epochs,
            steps=steps,
            eval_episodes=eval_episodes,
            obs_rms=obs_rms,
        )
    return Run(
        algorithm=name,
        implementation=side,
        seed=seed,
        final_return=final,
        last3_return=float(np.mean(tests[-3:])),
        best_return=best,
        epoch_returns=tests,
        train_seconds=seconds,
        sampling="paired" if paired else "unpaired",
        batch_digest=stream.digest() if stream is not None else None,
    )


LABELS = {"il": "IL (BC)", "bcq": "BCQ", "cql": "CQL", "td3bc": "TD3+BC", "crr": "CRR"}

STREAM = operator.attrgetter("batch_digest")
"""The digest of the mini-batches a run trained on (both sides of a pair: the same)."""


def format_table(runs: Sequence[Run]) -> str:
    """The final policy, the mean of the last three epochs' returns and the best epoch, each
    side's and their difference (paired over seeds when both sides ran the same seeds)."""
    return parity.format_table(runs, LABELS, COLUMNS, both_sides=False)


COLUMNS: list[parity.Column] = [
    ("final", lambda r: r.final_return, True),
    ("last 3 epochs", lambda r: r.last3_return, True),
    ("best epoch", lambda r: r.best_return, True),
]


def _block(record: Mapping[str, Any]) -> str:
    """One kept result's table and what it ran."""
    runs = [Run(**r) for r in record["figures"]["runs"]]
    st = record["settings"]
    bcq = "; Tianshou's BCQ perturbation on a `Net`" if st["tianshou_bcq_net"] else ""
    return (
        f"{format_table(runs)}\n\n_Pendulum-v1 SAC expert, hidden {st['hidden']}, batch 256, "
        f"{st['epochs']} × {st['steps']} gradient steps, final return over "
        f"{st['eval_episodes']} episodes; seeds {', '.join(map(str, record['seeds']))}{bcq}; "
        f"{parity.pairing_summary(runs, STREAM)}; {results.conditions(record)}._"
    )


def readme_section() -> str:
    """The documentation's section: one :func:`_block` per kept result."""
    return report.kept_section(BENCHMARK, _block)


def main(argv: list[str] | None = None) -> list[Run]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--algorithms", default="il,bcq,cql,td3bc,crr")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--steps", type=int, default=500, help="gradient steps per epoch")
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--unpaired",
        action="store_true",
        help="each side samples its mini-batches with its own generator (seeded per run)",
    )
    parser.add_argument(
        "--tianshou-bcq-net",
        action="store_true",
        help="build Tianshou's BCQ perturbation on a Net instead of its example's MLP, whose "
        "output Tianshou's Perturbation indexes with [0] (the first state's perturbation "
        "for the whole batch)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the runs here")
    parser.add_argument("--table-from", type=Path, nargs="+", default=None)
    parser.add_argument(
        "--data-dir", type=Path, default=Path.home() / ".cache" / "tianshou_offline" / "bench"
    )
    report.add_arguments(parser, table=True)
    args = parser.parse_args(argv)
    if (shown := parity.shown(args, BENCHMARK, _block, Run, format_table, STREAM)) is not None:
        return shown
    torch.set_num_threads(args.threads)
    load = results.LoadMonitor().start()
    names = [n.strip() for n in args.algorithms.split(",") if n.strip()]
    ours_buf, ts_buf = expert_buffers(args.data_dir)
    ts_td3bc_buf, ts_rms = normalized_obs_copy(ts_buf)
    # index k of our dataset is buffer index order[k] in all three buffers (same transitions)
    order = ours_buf.sample_indices(0)
    high = float(np.asarray(cast(gym.spaces.Box, gym.make(TASK).action_space).high)[0])
    for theirs in (ts_buf, ts_td3bc_buf):
        if theirs.stack_num != 1 or len(theirs) != len(ours_buf):
            raise RuntimeError("paired sampling needs unstacked buffers of equal length")
        if not np.allclose(theirs.act[order] * high, ours_buf.act[order], atol=1e-5) or not (
            np.array_equal(theirs.rew[order], ours_buf.rew[order])
        ):
            raise RuntimeError("Tianshou's buffer holds different transitions at the same index")
    env = gym.make(TASK)
    paired = not args.unpaired
    print(
        f"Pendulum-v1 SAC expert ({len(ours_buf)} transitions), hidden {args.hidden}, batch 256, "
        f"{args.epochs}×{args.steps} steps, seeds {args.seeds}, {args.threads} thread(s), "
        f"mini-batches {'paired' if paired else 'unpaired'}",
        flush=True,
    )
    runs: list[Run] = []
    for seed in args.seeds:
        for name in names:
            sides: list[tuple[str, ReplayBuffer, RunningMeanStd | None]] = [
                ("ours", ours_buf, None)
            ]
            if name != "crr":
                buf, rms = (ts_td3bc_buf, ts_rms) if name == "td3bc" else (ts_buf, None)
                sides.append(("tianshou", buf, rms))
            for side, buffer, rms in sides:
                r = train_one(
                    name,
                    side,
                    seed,
                    env=env,
                    hidden=args.hidden,
                    buffer=buffer,
                    order=order,
                    obs_rms=rms,
                    paired=paired,
                    epochs=args.epochs,
                    steps=args.steps,
                    eval_episodes=args.eval_episodes,
                    bcq_net=args.tianshou_bcq_net,
                )
                runs.append(r)
                print(
                    f"  {name:6s} {side:8s} seed {seed}: final {r.final_return:8.1f}  "
                    f"last-3 {r.last3_return:8.1f}  best {r.best_return:8.1f}  "
                    f"({r.train_seconds:.0f} s)",
                    flush=True,
                )
                if args.json:
                    args.json.write_text(json.dumps([asdict(x) for x in runs], indent=2))
    print()
    print(parity.summary(runs, format_table, STREAM))
    load.stop()
    variants = ["bcq-net"] if args.tianshou_bcq_net else []
    settings = {k: v for k, v in vars(args).items() if k in SETTINGS}
    parity.keep_runs(
        BENCHMARK, parity.result_name(paired, variants, names, list(LABELS)), runs,
        settings=settings, code=CODE, load=load, data=cached_expert_file(args.data_dir),
    )  # fmt: skip
    return runs


SETTINGS = ("seeds", "algorithms", "epochs", "steps", "hidden", "eval_episodes", "threads", "unpaired",
            "tianshou_bcq_net")  # fmt: skip
"""The options kept as a result's settings."""


if __name__ == "__main__":
    main()
