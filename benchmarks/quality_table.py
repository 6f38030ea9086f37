#!/usr/bin/env python3
"""Learning quality: tianshou-offline vs d3rlpy 2.8.1, trained on the same files.

Rows (the data):

- **Hopper-v5, HalfCheetah-v5**: ``medium``, ``medium-replay`` and ``expert`` of a family made
  by :func:`tianshou_offline.datasets.make_datasets` (SAC online, then recorded);
- **CartPole-v1**: ``medium`` of a family made the same way (DQN online);
- **MountainCar-v0**: episodes of a scripted energy-pumping controller with ε-random actions,
  recorded with :class:`~tianshou_offline.recording.EpisodeRecorder` as a user would, with
  the random and the noise-free scripted policy's mean returns stored as reference scores.

Lines (:data:`LINES`): ours — IL (behaviour cloning), BCQ, CQL, CRR (evaluated with both
acting rules), TD3+BC, IQL, ReBRAC, AWAC, the Decision Transformer (continuous) and
DiscreteImitationLearning, DiscreteBCQ, DiscreteCQL (two forms), DiscreteCRR — against
d3rlpy's same algorithms (BC, BCQ, CQL, CRR, TD3PlusBC, IQL, ReBRAC, AWAC,
DecisionTransformer; DiscreteBC, DiscreteBCQ, DiscreteCQL; d3rlpy has no discrete CRR). **Settings**: our side is built by the registry
(:func:`tianshou_offline.algorithms.registry.make_algorithm`) from the scale's preset
(``small``: :data:`tianshou_offline.algorithms.PRESETS`, also ``tianshou-offline grid``'s
defaults; ``d4rl``: the same with 256 × 256 networks), with the preset's batch size; d3rlpy's
side gets the same settings through the benchmarks' one field map
(:func:`benchmarks._lib.field_map.d3rlpy_params`; :func:`~benchmarks._lib.field_map.check_expressible`
refuses a setting d3rlpy cannot
express), the same networks (:mod:`benchmarks._lib.d3rlpy_side`), the same batch size and
number of gradient steps, and the same data: our side loads the HDF5 file with
``load_buffer``; d3rlpy's gets the same arrays (``obs``, ``act``, ``rew``, ``terminated``,
episode ends) in an ``MDPDataset``. Every run is a process of its own (d3rlpy in its own
virtual environment, :func:`benchmarks._lib.peers.d3rlpy_python`), one torch thread each, at
most ``--jobs`` at a time. A gradient step is ``algorithm.update(buffer, batch_size)`` for ours
(as Tianshou's ``OfflineTrainer`` calls it) and
``algo.update(dataset.sample_transition_batch(batch_size))`` for d3rlpy (its ``fit`` loop's
step; the Decision Transformer's: ``sample_trajectory_batch(batch_size, length=K)``).

**Acting rules** (:data:`ACTING`): both sides' final policies are evaluated by the same code in
this environment, on the same evaluation seeds, each side acting by the same rule. d3rlpy's
policy is exported as TorchScript: with its ``save_policy`` (a trace of
``predict_best_action``: random draws inside it are traced, so they are redrawn on every
call), or, for CRR's actor-mean rule, a trace of its actor's mean ``tanh(μ)``. CRR is trained
once per seed and side and evaluated twice: with the actor's mean (ours: ``GaussianPolicy``'s
mode) and critic-weighted (ours: ``CriticWeightedPolicy`` on the trained actor and critics;
d3rlpy: ``save_policy``, its ``inner_predict_best_action``: 4 Gaussian samples, one drawn with
probability ``softmax(Q)``, redrawn every call). The Decision Transformer acts on the episode
so far, conditioned on the file's best episode return on both sides (as ``tianshou-offline
grid``'s cells: :data:`CONDITIONED`): ours through
:class:`~tianshou_offline.recording.dt_policies.ReturnConditionedActFn`, d3rlpy's through a
TorchScript trace of its masked acting step driven by its ``StatefulTransformerWrapper``'s rule
(:class:`benchmarks._lib.d3rlpy_side.DTContext`, checked against the wrapper in d3rlpy's
process).

Reported per cell: the normalised score ``100 · (R − R_random) / (R_expert − R_random)`` with
the reference returns stored in the file — the family's own random and expert policies, far
below D4RL's (printed beside them), so these are *not* D4RL-normalised scores — mean ± standard
error over seeds; the paired difference ours − d3rlpy (same seed index: same evaluation
episodes), mean ± standard error; training wall time per run. A difference is marked when a
Student-t test over the seeds' paired differences puts it beyond noise after Holm's
correction over all the table's differences (family-wise 5%). Every cell has the scale's
pre-registered seeds (:attr:`Scale.seeds`: 5 at the small scale); ``--seeds N`` runs the first
N of them, never more.

Every run is kept as a result file under ``benchmarks/results/quality_table/`` (its key holds
the code fingerprint: a run of older code is rerun, not reused), so an interrupted table
continues; ``--table-only`` prints and ``--readme`` writes the table from the kept results
alone (no data files needed). The families are made once and reused (``--data-dir``); their
generating policies are committed under ``benchmarks/results/quality_table/families/``.
``--scale d4rl`` is the D4RL budget (1M-transition files, SAC trained 1M steps, 1M gradient
steps, 5 seeds) for a GPU or a cluster; ``--device cuda`` runs both sides there; ``--ray
[ADDRESS]`` runs every job as a Ray task (one CPU, and a GPU with ``--device cuda``; retried if
its worker dies) on a cluster, or on a local Ray instance without an address, connected as the
experiment grids are. A job is not a grid cell (:func:`~tianshou_offline.scale.run_cell`):
both sides of the table must be trained by the same loop of gradient steps and evaluated by
the same code, and d3rlpy's side runs in its own interpreter.

Usage::

    python -m benchmarks.quality_table                       # the small scale, 2 processes
    python -m benchmarks.quality_table --rows mountaincar --seeds 3
    python -m benchmarks.quality_table --rows hopper-medium --sides d3rlpy --jobs 1
    python -m benchmarks.quality_table --scale d4rl --device cuda --jobs 8
    python -m benchmarks.quality_table --scale d4rl --ray auto   # on a node of a Ray cluster
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from benchmarks._lib import diagnostics, readme, results, stats
from benchmarks._lib.field_map import (
    check_expressible,
    d3rlpy_algo,
    d3rlpy_differences,
    d3rlpy_params,
)
from benchmarks._lib.peers import D3RLPY_VERSION, child_env, d3rlpy_python

if TYPE_CHECKING:
    from tianshou_offline.algorithms.config import AlgorithmConfig

BENCHMARK = "quality_table"
_T = TypeVar("_T")
COMMON_CODE = (
    "benchmarks/quality_table.py",
    "tianshou_offline/datasets",
    "tianshou_offline/converters/d4rl_scores.py",
)
CODE = {
    "ours": (*COMMON_CODE, "tianshou_offline/algorithms", "tianshou_offline/data"),
    "d3rlpy": COMMON_CODE,
}  # fmt: skip
"""The code each side's run depends on: a job's kept result is reused only while the
fingerprint of these files is the same (:mod:`benchmarks._lib.results`)."""

DEFAULT_DATA_DIR = Path.home() / ".cache" / "tianshou-offline" / "quality"
FAMILIES_DIR = results.RESULTS_DIR / BENCHMARK / "families"
"""The families' generating policies and settings (committed, small): see
:func:`keep_family_policies`."""


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Scale:
    """The budgets of one scale of the table."""

    name: str
    preset: str
    """The preset of both sides' algorithm settings (:data:`tianshou_offline.algorithms.PRESETS`)."""
    online_budget: dict[str, int]
    """Online environment steps of each family's agent."""
    dataset_steps: int
    """Transitions of each recorded family file (``medium``, ``expert``)."""
    gradient_steps: dict[str, int]
    """Per suite (``continuous``, ``discrete``): gradient steps of every run."""
    seeds: int
    """Seeds of every cell, fixed here before any run (``--seeds`` may run fewer, never
    more: no cell gets seeds because of its result)."""
    eval_episodes: int
    """Evaluation episodes of each trained policy."""
    family_eval_episodes: int
    """Evaluation episodes of each online checkpoint of a family."""
    reference_episodes: int
    mountaincar_episodes: int


SCALES: dict[str, Scale] = {
    "small": Scale(
        name="small",
        preset="small",
        online_budget={"Hopper-v5": 60_000, "HalfCheetah-v5": 60_000, "CartPole-v1": 50_000},
        dataset_steps=20_000,
        gradient_steps={"continuous": 5_000, "discrete": 10_000},
        seeds=5,
        eval_episodes=10,
        family_eval_episodes=5,
        reference_episodes=100,
        mountaincar_episodes=100,
    ),
    "d4rl": Scale(
        name="d4rl",
        preset="d4rl",
        online_budget={"Hopper-v5": 1_000_000, "HalfCheetah-v5": 1_000_000, "CartPole-v1": 100_000},
        dataset_steps=1_000_000,
        gradient_steps={"continuous": 1_000_000, "discrete": 100_000},
        seeds=5,
        eval_episodes=10,
        family_eval_episodes=10,
        reference_episodes=100,
        mountaincar_episodes=1_000,
    ),
}


@dataclass(frozen=True)
class RowSpec:
    key: str
    env: str
    level: str
    """A family level, or ``scripted`` (the MountainCar recording)."""
    suite: str
    """``continuous`` or ``discrete``."""
    d4rl: str | None = None
    """D4RL's dataset of the same task (its reference returns are printed beside the
    family's); None: D4RL has no such task."""

    @property
    def label(self) -> str:
        return f"{self.env} {self.level}"


ROWS: dict[str, RowSpec] = {
    r.key: r
    for r in (
        RowSpec("hopper-medium", "Hopper-v5", "medium", "continuous", "hopper-medium-v2"),
        RowSpec("hopper-medium-replay", "Hopper-v5", "medium-replay", "continuous",
                "hopper-medium-replay-v2"),
        RowSpec("hopper-expert", "Hopper-v5", "expert", "continuous", "hopper-expert-v2"),
        RowSpec("halfcheetah-medium", "HalfCheetah-v5", "medium", "continuous",
                "halfcheetah-medium-v2"),
        RowSpec("halfcheetah-medium-replay", "HalfCheetah-v5", "medium-replay", "continuous",
                "halfcheetah-medium-replay-v2"),
        RowSpec("halfcheetah-expert", "HalfCheetah-v5", "expert", "continuous",
                "halfcheetah-expert-v2"),
        RowSpec("cartpole-medium", "CartPole-v1", "medium", "discrete"),
        RowSpec("mountaincar", "MountainCar-v0", "scripted", "discrete"),
    )
}  # fmt: skip
ROW_GROUPS = {"hopper": [k for k in ROWS if k.startswith("hopper")],
              "halfcheetah": [k for k in ROWS if k.startswith("halfcheetah")]}  # fmt: skip
ROW_ORDER = ("hopper-medium", "halfcheetah-medium", "cartpole-medium", "mountaincar",
             "hopper-medium-replay", "hopper-expert", "halfcheetah-medium-replay",
             "halfcheetah-expert")  # fmt: skip
"""The order rows are run in when ``--rows all`` (decided before any run: when the table
cannot be finished, the first rows are complete)."""


@dataclass(frozen=True)
class Line:
    """One line of the table for each row of its suite."""

    label: str
    ours: str
    """The preset's algorithm (or variant) our side trains."""
    peer: str | None
    """The d3rlpy line it is compared with (None: d3rlpy has none)."""
    acting: str = "default"
    """The acting rule both sides are evaluated with (:data:`ACTING`)."""


LINES: dict[str, dict[str, Line]] = {
    "continuous": {
        "il": Line("IL (BC)", "il", "il"),
        "bcq": Line("BCQ", "bcq", "bcq"),
        "cql": Line("CQL", "cql", "cql"),
        "crr": Line("CRR, actor mean", "crr", "crr", "actor-mean"),
        "crr-cwp": Line("CRR, critic-weighted", "crr", "crr-cwp", "critic-weighted"),
        "td3bc": Line("TD3+BC", "td3bc", "td3bc"),
        "iql": Line("IQL", "iql", "iql"),
        "rebrac": Line("ReBRAC", "rebrac", "rebrac"),
        "awac": Line("AWAC (batch-softmax weights)", "awac-softmax", "awac"),
        "dt": Line("Decision Transformer", "dt", "dt"),
    },
    "discrete": {
        "il": Line("IL (BC)", "il", "il"),
        "bcq": Line("BCQ", "bcq", "bcq"),
        "cql": Line("CQL (QR-DQN)", "cql", "cql"),
        "cql-dqn": Line("CQL, d3rlpy's form", "cql-dqn", "cql"),
        "crr": Line("CRR", "crr", None),
    },
}
"""The table's lines: key (the result's name) → what each side runs."""

D3RLPY_JOBS: dict[str, dict[str, str]] = {
    "continuous": {"il": "il", "bcq": "bcq", "cql": "cql", "crr": "crr", "td3bc": "td3bc",
                   "iql": "iql", "rebrac": "rebrac", "awac": "awac-softmax", "dt": "dt"},
    "discrete": {"il": "il", "bcq": "bcq", "cql": "cql-dqn"},
}  # fmt: skip
"""d3rlpy's runs: its line key → the preset entry whose settings it is given (the field map).
d3rlpy's DiscreteCQL is double DQN with a mean Q per action, so it gets the settings of our
CQL in that form (``cql-dqn``), and both our CQL lines are compared with its runs; d3rlpy's
AWAC weights are a softmax over the batch, so it gets ``awac-softmax``'s."""

CONDITIONED = ("dt",)
"""Return-conditioned preset entries: both sides condition on the row's file's best episode
return (:func:`row_overrides`)."""

ACTING: dict[str, str] = {
    "default": "each algorithm's evaluation action (below)",
    "actor-mean": "the actor's mean",
    "critic-weighted": "critic-weighted: 4 actor samples, one drawn with probability "
    "softmax(Q), redrawn every call",
}

NOTES = [
    "Acting at evaluation, both sides: BC, TD3+BC, ReBRAC — the deterministic actor; CQL, "
    "IQL — the Gaussian's mean tanh(μ) (ours: the tanh-squashed Gaussian's mode; IQL's "
    "tanh-bounded mean); AWAC — the Gaussian's mean (d3rlpy: tanh(μ); ours: μ clipped to the "
    "bounds); CRR — both rules, two lines, the same trained networks; BCQ — samples on both "
    "sides: 10 VAE decodings (latents N(0, 1) clipped to ±0.5) perturbed, the one with the "
    "highest Q₁ (redrawn every call); discrete — argmax Q (BCQ: among the actions the "
    "imitator allows; BC: argmax of the logits)",
    "DiscreteCQL: ours is CQL(H) on QR-DQN (200 quantiles, the target network selects the next "
    "action), d3rlpy's on double DQN (one mean Q per action), each at its default conservative "
    "weight for its loss (ours 10 on the quantile loss, which sums over 200 target quantiles; "
    "d3rlpy's 1 on a scalar Huber loss)",
    "DiscreteCQL, d3rlpy's form: ours with one quantile, the double-DQN target and w = 0.5 — "
    "half of d3rlpy's loss at α = 1, the same Adam steps — against d3rlpy's DiscreteCQL runs",
    "DiscreteBCQ: the same network on both sides (d3rlpy's share_encoder layout: linear Q and "
    "imitation heads on one two-layer trunk)",
    "AWAC: ours with d3rlpy's weights B · softmax(A / λ) over the batch (the preset's "
    "`awac-softmax`; the `awac` default clips exp(A / λ) at 100, which d3rlpy cannot)",
    "d3rlpy has no discrete CRR",
    "Decision Transformer, both sides: batches of the preset's DT batch size of K-step "
    "segments; acting conditioned on the file's best episode return (the return-to-go lowered "
    "by each reward received), the last K steps as context, the predicted action (d3rlpy: its "
    "StatefulTransformerWrapper's rule on a trace of its masked step)",
    "d3rlpy builds the obs_next of an episode's last transition from zeros (its MDPDataset has "
    "no obs_next column); ours reads the stored one",
]
"""Printed under the table (the field map's differences are added to them)."""


def _kind(suite: str) -> Literal["continuous", "discrete"]:
    if suite == "continuous":
        return "continuous"
    if suite == "discrete":
        return "discrete"
    raise ValueError(f"suite {suite!r}: expected 'continuous' or 'discrete'")


def our_config(scale: Scale, suite: str, name: str, **overrides: Any) -> AlgorithmConfig:
    """Our config of ``name`` (an algorithm or a variant of the scale's preset), with a row's
    ``overrides`` (:func:`row_overrides`)."""
    from tianshou_offline.algorithms.registry import make_config

    return make_config(name, _kind(suite), preset=scale.preset, **overrides)


def row_overrides(name: str, path: Path) -> dict[str, Any]:
    """The settings of preset entry ``name`` that come from the row's file at ``path``: a
    return-conditioned entry (:data:`CONDITIONED`) conditions on the file's best episode
    return, as a ``tianshou-offline grid`` cell without a ``target_return``."""
    if name not in CONDITIONED:
        return {}
    from tianshou_offline.scale.cell_eval import best_episode_return

    return {"target_return": best_episode_return(path)}


def batch_size(scale: Scale, suite: str, name: str) -> int:
    """The preset's batch size of ``name``: both sides train with it."""
    from tianshou_offline.algorithms.presets import preset

    return preset(scale.preset).batch_size_of(
        type(our_config(scale, suite, name)).name, _kind(suite)
    )


def d3rlpy_spec(
    scale: Scale, suite: str, key: str, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """d3rlpy's run of its line ``key``: from our preset's config (:data:`D3RLPY_JOBS`, with
    the row's ``overrides``), the builder's algorithm and params
    (:func:`~benchmarks._lib.field_map.d3rlpy_params`, refused when d3rlpy cannot express the
    config), the observation scaler (our ``normalize_obs``), the n-step picker (our
    ``n_step_return_horizon``) and the discount."""
    config = our_config(scale, suite, D3RLPY_JOBS[suite][key], **(overrides or {}))
    check_expressible(config)
    hp = config.hyperparameters()
    changes: dict[str, Any] = {}
    if suite == "discrete" and key == "cql":
        # our CQL in d3rlpy's form: its quantile Huber loss at τ̂ = ½ is half the Huber loss
        # of the mean Q, so d3rlpy's α is twice our min_q_weight
        changes["alpha"] = 2.0 * float(hp["min_q_weight"])
    return {
        "algo": d3rlpy_algo(config), "params": d3rlpy_params(config, **changes),
        "observation_scaler": bool(hp.get("normalize_obs", False)),
        "n_step": int(hp.get("n_step_return_horizon", 1)), "gamma": float(hp.get("gamma", 0.99)),
    }  # fmt: skip


# ----------------------------------------------------------------------------- data


def family_config(scale: Scale, env: str) -> Any:
    """The :class:`~tianshou_offline.datasets.FamilyConfig` of ``env``'s family at ``scale``
    (the same settings every time, so that a made family is reused)."""
    from tianshou_offline.datasets import FamilyConfig

    return FamilyConfig(
        budget=scale.online_budget[env],
        dataset_steps=scale.dataset_steps,
        eval_episodes=scale.family_eval_episodes,
        reference_episodes=scale.reference_episodes,
        seed=0,
    )


def scripted_mountain_car(obs: Any) -> int:
    """Energy pumping: push in the direction of the velocity (about −110 per episode)."""
    return 2 if float(obs[1]) >= 0.0 else 0


def record_mountain_car(
    path: Path, *, episodes: int, eps: float = 0.3, seed: int = 0, reference_episodes: int = 100
) -> Path:
    """Record ``episodes`` episodes of MountainCar-v0 driven by :func:`scripted_mountain_car`
    with ε-random actions into ``path`` with an ``EpisodeRecorder`` (what a user does with
    their own controller), storing the reference scores: the mean returns of uniformly random
    actions and of the noise-free controller over ``reference_episodes`` episodes."""
    import gymnasium as gym
    import numpy as np

    from tianshou_offline.datasets import EnvSource
    from tianshou_offline.datasets.online import evaluate
    from tianshou_offline.recording import EpisodeRecorder

    source = EnvSource("MountainCar-v0")
    space = gym.spaces.Discrete(3)
    space.seed(seed)
    lo, _, _ = evaluate(
        lambda _o: int(space.sample()), source, episodes=reference_episodes, seed=seed + 1
    )
    hi, _, _ = evaluate(scripted_mountain_car, source, episodes=reference_episodes, seed=seed + 2)
    rng = np.random.default_rng(seed)

    def behaviour(obs: Any) -> int:
        return int(rng.integers(3)) if rng.random() < eps else scripted_mountain_car(obs)

    env = EpisodeRecorder(
        gym.make("MountainCar-v0"),
        path,
        if_exists="overwrite",
        episode_metadata=lambda ep: {"return": ep.episode_return, "length": ep.length},
        provenance_extra={
            "policy": f"scripted energy pumping with eps={eps} random actions",
            "seed": seed,
            "ref_min_score": lo,
            "ref_max_score": hi,
            "reference": f"uniform random / noise-free scripted, {reference_episodes} episodes",
        },
    )
    try:
        obs, _ = env.reset(seed=seed)
        for _ in range(episodes):
            done = False
            while not done:
                obs, _, terminated, truncated, _ = env.step(behaviour(obs))
                done = bool(terminated or truncated)
            obs, _ = env.reset()
    finally:
        env.close()
    return path


def _when_free(make: Callable[[], _T], where: Path, poll_s: float = 5.0) -> _T:
    """``make()``, retried while another process holds ``where``'s lock: the table's two
    sides (``--sides ours`` and ``--sides d3rlpy`` in two processes) read the same families,
    and the first to start makes or checks them while the other waits."""
    from tianshou_offline.errors import OutputBusyError

    said = False
    while True:
        try:
            return make()
        except OutputBusyError:
            if not said:
                print(f"{where}: another process is making or checking it; waiting",
                      file=sys.stderr, flush=True)  # fmt: skip
                said = True
            time.sleep(poll_s)


def prepare_data(rows: Sequence[RowSpec], scale_name: str, data_dir: Path) -> dict[str, Path]:
    """The file of every row: families made (or continued, or reused) with
    :func:`~tianshou_offline.datasets.make_datasets`, the MountainCar file recorded once."""
    from tianshou_offline.datasets import make_datasets

    scale = SCALES[scale_name]
    root = data_dir / scale_name
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for env in dict.fromkeys(r.env for r in rows if r.level != "scripted"):
        levels = tuple(sorted({r.level for r in rows if r.env == env}))
        print(f"family {env} in {root / env} ...", file=sys.stderr, flush=True)
        config = dataclasses.replace(family_config(scale, env), levels=levels)
        result = _when_free(
            functools.partial(make_datasets, env, root / env, config=config), root / env
        )
        for r in rows:
            if r.env == env:
                files[r.key] = result.levels[r.level].path
    for r in rows:
        if r.level == "scripted":
            path = root / f"mountaincar-scripted-{scale.mountaincar_episodes}.hdf5"
            if not path.exists():
                record_mountain_car(
                    path, episodes=scale.mountaincar_episodes,
                    reference_episodes=scale.reference_episodes,
                )  # fmt: skip
            files[r.key] = path
    return files


def keep_family_policies(
    rows: Sequence[RowSpec], scale_name: str, data_dir: Path, dest: Path = FAMILIES_DIR
) -> list[Path]:
    """Copy each made family's manifest (``family.json``: settings, seed, every checkpoint's
    return and SHA-256, the files' SHA-256) and its two generating policies (the ``medium``
    and ``expert`` checkpoints) to ``dest/SCALE/ENV`` — small files that are committed, so
    that a reader can check the families (``tianshou-offline make-datasets`` with the
    manifest's settings makes them again, "same seed, same data") and record with the same
    policies (``tianshou-offline record``). Returns the files copied (none when kept)."""
    import shutil

    copied = []
    for env in dict.fromkeys(r.env for r in rows if r.level != "scripted"):
        src = data_dir / scale_name / env
        manifest = json.loads((src / "family.json").read_text())
        out = dest / scale_name / env
        refs = manifest["reference_scores"]
        names = ["family.json"] + [
            f"online/{refs[c]['policy']}" for c in ("medium_checkpoint", "expert_checkpoint")
        ]
        for name in names:
            target = out / name
            if target.exists() and target.read_bytes() == (src / name).read_bytes():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / name, target)
            copied.append(target)
    return copied


def arrays_path(path: Path) -> Path:
    """Where :func:`export_arrays` keeps ``path``'s arrays (named by its content)."""
    return path.with_suffix(f".{_sha256(path)[:12]}.npz")


def export_arrays(path: Path, out: Path) -> Path:
    """The file's transitions as plain arrays for d3rlpy's process (``.npz``: observations,
    actions, rewards, terminals, timeouts — an episode ends at every ``done``)."""
    import numpy as np

    from tianshou_offline import load_buffer

    if out.exists():
        return out
    buf = load_buffer(path)
    batch = buf[np.arange(len(buf))]
    terminated = np.asarray(batch.terminated, dtype=bool)
    done = np.asarray(batch.done, dtype=bool)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.npz")
    np.savez(
        tmp,
        observations=np.asarray(batch.obs, dtype=np.float32),
        actions=np.asarray(batch.act),
        rewards=np.asarray(batch.rew, dtype=np.float32),
        terminals=terminated.astype(np.float32),
        timeouts=(done & ~terminated).astype(np.float32),
    )
    os.replace(tmp, out)
    return out


# ----------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Job:
    """One training run (a side, a row, an algorithm, its seeds) and its evaluations: one
    kept result per seed and line of :attr:`outputs` (CRR: two acting rules of the same
    networks). Our side trains a cell's seeds as one seed batch where the algorithm has one
    (:func:`~tianshou_offline.algorithms.make_seed_batch`: seed k's trajectory is a single
    run's with ``torch.manual_seed(k)``), else one seed per job."""

    row: str
    algo: str
    """Ours: the preset entry trained (``crr``, ``cql-dqn``); d3rlpy: its line key."""
    side: str
    """``ours`` or ``d3rlpy``."""
    seeds: tuple[int, ...]
    spec: dict[str, Any]

    @property
    def name(self) -> str:
        """scale.row.algorithm.side.seeds (the run's name in progress lines)."""
        seeds = (
            "-".join(map(str, (self.seeds[0], self.seeds[-1])))
            if len(self.seeds) > 1
            else self.seeds[0]
        )
        return f"{self.spec['scale']}.{self.row}.{self.algo}.{self.side}.{seeds}"

    @property
    def outputs(self) -> dict[str, str]:
        """The lines this run's evaluations are kept as → their acting rule."""
        out: dict[str, str] = self.spec["outputs"]
        return out

    def result_name(self, line: str, seed: int) -> str:
        """The kept result's name of ``line`` and ``seed``: scale, row, line, side, seed."""
        return f"{self.spec['scale']}.{self.row}.{line}.{self.side}.{seed}"

    def settings(self, line: str, seed: int) -> dict[str, Any]:
        """The settings of ``line``'s result of ``seed``: the spec without this machine's
        paths (the data is in it by its hash), the other outputs and seeds, with the seed,
        the line and its rule (a seed trained in a batch has a single run's settings)."""
        drop = ("file", "arrays", "outputs", "seeds")
        return {**{k: v for k, v in self.spec.items() if k not in drop},
                "seed": seed, "line": line, "acting": self.outputs[line]}  # fmt: skip

    @property
    def code(self) -> tuple[str, ...]:
        return CODE[self.side]

    def key(self, line: str, seed: int) -> str:
        return results.result_key(self.result_name(line, seed), self.settings(line, seed),
                                  _fingerprint(self.code))  # fmt: skip


@functools.cache
def _fingerprint(code: tuple[str, ...]) -> str:
    return results.code_fingerprint(code)


def row_info(row: RowSpec, path: Path) -> dict[str, Any]:
    """What a job needs of a row's file: its action size, and the data as the results
    record it (name, size, the reference returns stored in it)."""
    from tianshou_offline import read_metadata
    from tianshou_offline.converters.d4rl_scores import reference_scores

    md = read_metadata(path)  # the action space stored in the file (no environment is made)
    space: Any = md.action_space
    lo, hi = reference_scores(path)
    return {
        "action_size": int(space.shape[0]) if row.suite == "continuous" else int(space.n),
        "data": {"name": path.name, "transitions": md.num_transitions,
                 "episodes": md.num_episodes, "ref_min": lo, "ref_max": hi},
    }  # fmt: skip


def make_jobs(
    rows: Sequence[RowSpec], files: dict[str, Path], arrays: dict[str, Path], *, scale: Scale,
    seeds: int, algorithms: Sequence[str] | None, sides: Sequence[str], device: str,
) -> list[Job]:  # fmt: skip
    """Every run of ``rows`` × lines (``algorithms``: only these line keys) × ``sides`` ×
    the first ``seeds`` seeds, row-major in the given order (a row's runs, every seed, before
    the next row's: a table cut short has complete rows)."""
    jobs: list[Job] = []
    for row in rows:
        info = row_info(row, files[row.key])
        lines = {k: ln for k, ln in LINES[row.suite].items() if not algorithms or k in algorithms}
        runs: list[tuple[str, str, dict[str, str]]] = []  # side, algo, outputs
        for side in sides:
            if side == "ours":
                for name in dict.fromkeys(ln.ours for ln in lines.values()):
                    outs = {k: ln.acting for k, ln in lines.items() if ln.ours == name}
                    runs.append((side, name, outs))
            else:
                for key in D3RLPY_JOBS[row.suite]:
                    outs = {ln.peer: ln.acting for ln in lines.values()
                            if ln.peer is not None and ln.peer.split("-")[0] == key}  # fmt: skip
                    if outs:
                        runs.append((side, key, outs))
        common = {
            "scale": scale.name, "preset": scale.preset, "row": row.key, "env": row.env,
            "suite": row.suite, "file": str(files[row.key]),
            "file_sha256": _sha256(files[row.key]),
            "arrays": str(arrays.get(row.key, arrays_path(files[row.key]))), **info,
            "gradient_steps": scale.gradient_steps[row.suite],
            "eval_episodes": scale.eval_episodes, "device": device,
        }  # fmt: skip
        for side, algo, outs in runs:
            batches = [[s] for s in range(seeds)]
            if side == "ours":
                overrides = row_overrides(algo, files[row.key])
                config = our_config(scale, row.suite, algo, **overrides)
                hp = {"hp": config.hyperparameters()}
                if overrides:
                    hp["overrides"] = overrides
                name = algo
                if seeds > 1 and seed_batchable(config, files[row.key]):
                    batches = [list(range(seeds))]
            else:
                name = D3RLPY_JOBS[row.suite][algo]
                overrides = row_overrides(name, files[row.key])
                ours = our_config(scale, row.suite, name, **overrides).hyperparameters()
                hp = {"d3rlpy": d3rlpy_spec(scale, row.suite, algo, overrides),
                      "nets": {k: ours[k] for k in ("hidden_sizes", "trunk_sizes") if k in ours}}  # fmt: skip
            for batch in batches:
                spec = {**common, "algo": algo, "side": side, "seed": batch[0], "seeds": batch,
                        "batch_size": batch_size(scale, row.suite, name), **hp,
                        "outputs": outs}  # fmt: skip
                jobs.append(Job(row.key, algo, side, tuple(batch), spec))
    return jobs


def seed_batchable(config: AlgorithmConfig, path: Path) -> bool:
    """Whether our algorithm of ``config`` has a seed-batched form (for the spaces stored in
    the file at ``path``)."""
    from tianshou_offline import read_metadata
    from tianshou_offline.algorithms.seeds import SEED_BATCHES

    md = read_metadata(path)
    if md.observation_space is None or md.action_space is None:
        return False
    return type(config.build(md.observation_space, md.action_space)) in SEED_BATCHES


@functools.cache
def _sha256(path: Path) -> str:
    return results.file_sha256(path)


def _kept(job: Job, results_dir: Path) -> list[dict[str, Any]] | None:
    """The kept results of every seed and output of ``job`` at this code (None: one is
    missing)."""
    out = []
    for seed in job.seeds:
        for line in job.outputs:
            record = results.find_result(BENCHMARK, job.result_name(line, seed),
                                         job.settings(line, seed), job.code, results_dir)  # fmt: skip
            if record is None:
                return None
            out.append(_as_run(record))
    return out


def _as_run(record: dict[str, Any]) -> dict[str, Any]:
    s = record["settings"]
    return {**record["figures"], "row": s["row"], "line": s["line"], "side": s["side"],
            "seed": s["seed"]}  # fmt: skip


def run_job(job: Job, results_dir: Path, d3rlpy: str | None) -> list[dict[str, Any]]:
    """Run one job in its own process(es), unless its results at this code are kept; each
    seed's and output's result is kept in ``results_dir``
    (:func:`benchmarks._lib.results.write_result`).

    :returns: the runs (one per seed and line) as the table reads them.
    """
    kept = _kept(job, results_dir)
    if kept is not None:
        return kept
    module = ["-m", "benchmarks.quality_table", "--worker"]
    with results.LoadMonitor() as load, tempfile.TemporaryDirectory(prefix="quality_") as tmp:
        job_path = Path(tmp) / "job.json"
        job_path.write_text(json.dumps({**job.spec, "workdir": tmp}))
        log = Path(tmp) / "log.txt"
        steps: list[list[str]]
        if job.side == "ours":
            steps = [[sys.executable, *module, "ours", str(job_path)]]
        else:
            if d3rlpy is None:
                raise RuntimeError("no d3rlpy interpreter")
            steps = [
                [d3rlpy, *module, "d3rlpy", str(job_path)],
                [sys.executable, *module, "evaluate", str(job_path)],
            ]
        for argv in steps:
            with open(log, "a") as f:
                proc = subprocess.run(
                    argv, stdout=f, stderr=subprocess.STDOUT, env=child_env(1), cwd=tmp
                )
            if proc.returncode != 0:
                raise RuntimeError(
                    f"{job.name}: {' '.join(argv[-3:])} failed:\n{log.read_text()[-3000:]}"
                )
        figures: dict[str, dict[str, dict[str, Any]]] = json.loads(
            (Path(tmp) / "result.json").read_text()
        )
    out = []
    for seed in job.seeds:
        for line in job.outputs:
            path = results.write_result(
                BENCHMARK, job.result_name(line, seed), settings=job.settings(line, seed),
                figures=figures[str(seed)][line], code=job.code, seeds=[seed],
                data={job.row: job.spec["file_sha256"]}, load=load,
                d3rlpy=D3RLPY_VERSION if job.side == "d3rlpy" else None, results_dir=results_dir,
            )  # fmt: skip
            out.append(_as_run(json.loads(path.read_text())))
    return out


def _ray_job(
    job: Job, results_dir: str, d3rlpy: str | None, torch_version: str
) -> list[dict[str, Any]]:
    """One job as a Ray task: on the node that runs it, d3rlpy's interpreter is the one given
    (``--d3rlpy-python``, at the same path on every node) or the default venv, made there if
    missing."""
    if job.side == "d3rlpy":
        d3rlpy = d3rlpy_python(d3rlpy, create=True, torch_version=torch_version)
    return run_job(job, Path(results_dir), d3rlpy)


def run_jobs(
    jobs: Sequence[Job], results_dir: Path, d3rlpy: str | None, *, parallel: int,
    ray_address: str | None = None, use_ray: bool = False, device: str = "cpu",
    max_retries: int = 2, torch_version: str = "",
) -> Iterator[tuple[Job, list[dict[str, Any]] | BaseException]]:  # fmt: skip
    """Run ``jobs`` (kept results of this code are read, not rerun) and yield each with its
    result or its error as it finishes.

    Locally, ``parallel`` processes at a time. With ``use_ray``, every job is a Ray task on
    the cluster at ``ray_address`` (None: a Ray instance this process runs, else a new local
    one), connected as the experiment grids are (:func:`tianshou_offline.scale._ray.ray_session`):
    one CPU each (and one GPU with ``device`` ``cuda``), rerun up to ``max_retries`` times if
    its worker dies; ``results_dir`` and the data files must be at the same path on every
    node (shared storage), as for ``tianshou-offline grid``.
    """
    if not use_ray:
        with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
            futures = {pool.submit(run_job, job, results_dir, d3rlpy): job for job in jobs}
            for fut in concurrent.futures.as_completed(futures):
                exc = fut.exception()
                yield futures[fut], exc if exc is not None else fut.result()
        return
    from tianshou_offline.scale._ray import as_completed, ray_session, task_error

    todo = []
    for job in jobs:
        kept = _kept(job, results_dir)
        if kept is not None:
            yield job, kept
        else:
            todo.append(job)
    if not todo:
        return
    with ray_session(ray_address) as ray:
        task: Any = ray.remote(_ray_job)
        refs = {
            task.options(num_cpus=1, num_gpus=1 if device.startswith("cuda") else 0,
                         max_retries=max_retries, name=f"quality {job.name}")
            .remote(job, str(results_dir), d3rlpy, torch_version): job
            for job in todo
        }  # fmt: skip
        with closing(as_completed(refs)) as finished:
            for job, value, error in finished:
                yield job, value if error is None else task_error(error)


# ----------------------------------------------------------------------------- workers


def _worker_setup(spec: dict[str, Any]) -> None:
    import torch

    import tianshou_offline.cli._no_tensorflow  # noqa: F401  (before Tianshou: no TensorFlow)

    torch.set_num_threads(1)
    torch.manual_seed(int(spec["seed"]))


def build_ours(spec: dict[str, Any], env: Any) -> Any:
    """Our algorithm for ``spec`` (its preset entry), for ``env``'s spaces:
    :func:`~tianshou_offline.algorithms.registry.make_algorithm`, the registry's builder, at
    the job's preset; the settings must be the ones the job was keyed with."""
    from tianshou_offline.algorithms.registry import make_algorithm, make_config

    overrides = spec.get("overrides", {})
    config = make_config(spec["algo"], env.action_space, preset=spec["preset"], **overrides)
    if config.hyperparameters() != spec["hp"]:
        raise RuntimeError(
            f"{spec['algo']}: the preset {spec['preset']!r} now gives other settings than the "
            f"job's: {config.hyperparameters()} != {spec['hp']}"
        )
    return make_algorithm(spec["algo"], env.observation_space, env.action_space,
                          preset=spec["preset"], device=spec.get("device", "cpu"),
                          **overrides)  # fmt: skip


def _policy_for(algorithm: Any, acting: str) -> Any:
    """The policy our trained ``algorithm`` is evaluated with under the rule ``acting``."""
    from tianshou_offline.algorithms.continuous.policies import (
        CriticWeightedPolicy,
        GaussianPolicy,
    )

    policy = algorithm.policy
    if acting == "default":
        return policy
    if not isinstance(policy, GaussianPolicy) or isinstance(policy, CriticWeightedPolicy):
        raise ValueError(f"acting rule {acting!r}: expected an algorithm with a GaussianPolicy")
    if acting == "actor-mean":
        if not policy.deterministic_eval:
            raise ValueError("actor-mean: the GaussianPolicy samples at evaluation")
        return policy
    if acting == "critic-weighted":  # the trained actor and critics, CRR's m samples, T = 1
        if policy.observation_space is None:
            raise ValueError("critic-weighted: the policy has no observation space")
        cwp = CriticWeightedPolicy(
            actor=policy.actor, critics=algorithm.critics, action_space=policy.action_space,
            observation_space=policy.observation_space,
            num_sampled_actions=algorithm.num_sampled_actions,
            squash=policy.squash, normalize_obs=policy.obs_normalizer.enabled,
        )  # fmt: skip
        cwp.obs_normalizer.load_state_dict(policy.obs_normalizer.state_dict())
        return cwp.to(policy.device)
    raise ValueError(f"acting rule {acting!r}: expected one of {', '.join(ACTING)}")


def train_ours(
    spec: dict[str, Any],
) -> tuple[dict[int, dict[str, Callable[[Any], Any]]], float]:
    """Train our algorithm on the file for ``gradient_steps``, every seed of the job (several:
    as one seed batch); returns each seed's policy under each of the job's acting rules
    (seed → line → obs → env action) and the training wall time in seconds (of all seeds)."""
    import numpy as np
    import torch
    from tianshou.data import Batch
    from tianshou.utils.torch_utils import policy_within_training_step

    from tianshou_offline import load_buffer
    from tianshou_offline.datasets import EnvSource
    from tianshou_offline.recording.dt_policies import ReturnConditionedActFn, is_dt_policy

    env = EnvSource(spec["env"]).make()
    seeds = [int(s) for s in spec.get("seeds", [spec.get("seed", 0)])]
    algorithm = build_ours(spec, env)  # seed 0's, or the only seed's (checks the settings)
    members = [algorithm]
    if len(seeds) > 1:
        from tianshou_offline.algorithms.seeds import make_seed_batch

        algorithm = make_seed_batch(spec["algo"], env.observation_space, env.action_space,
                                    seeds=seeds, preset=spec["preset"],
                                    device=spec.get("device", "cpu"))  # fmt: skip
        members = list(algorithm.members)
    env.close()
    buffer = algorithm.process_buffer(load_buffer(spec["file"]))
    start = time.perf_counter()  # the gradient steps only (as d3rlpy's side)
    with policy_within_training_step(algorithm.policy):
        for _ in range(int(spec["gradient_steps"])):
            algorithm.update(buffer=buffer, sample_size=int(spec["batch_size"]))
    seconds = time.perf_counter() - start

    def acting(policy: Any) -> Callable[[Any], Any]:
        if is_dt_policy(policy):  # acts on the episode so far (evaluate tells it the rewards)
            return ReturnConditionedActFn(policy, seed=int(spec["seed"]))
        policy.eval()

        def act(obs: Any) -> Any:
            with torch.no_grad():
                out = policy(Batch(obs=np.asarray(obs, dtype=np.float32)[None], info=Batch()))
            a = policy.map_action(out.act)
            return a[0] if spec["suite"] == "continuous" else int(np.asarray(a).reshape(-1)[0])

        return act

    rules = spec["outputs"].items()
    policies = {
        seed: {line: acting(_policy_for(member, rule)) for line, rule in rules}
        for seed, member in zip(seeds, members, strict=True)
    }
    return policies, seconds


def evaluate_policy(spec: dict[str, Any], act: Callable[[Any], Any]) -> dict[str, Any]:
    """Return statistics and the normalised score (the file's reference returns), on the
    seed's evaluation episodes; torch's generator seeded the same for every policy (the
    rules that sample draw from it)."""
    import numpy as np
    import torch

    from tianshou_offline.converters.d4rl_scores import normalized_score
    from tianshou_offline.datasets import EnvSource
    from tianshou_offline.datasets.online import evaluate

    start = time.perf_counter()
    seed = 10_000 + int(spec["seed"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(spec["seed"]) + 1)
        mean, std, returns = evaluate(
            act, EnvSource(spec["env"]), episodes=int(spec["eval_episodes"]), seed=seed
        )
    return {
        "return_mean": mean,
        "return_std": std,
        "returns": returns,
        "score": normalized_score(spec["file"], mean),  # the family's reference returns
        "eval_seconds": time.perf_counter() - start,
        "eval_seed": seed,
        "final_return_min": float(np.min(returns)),
    }


def worker_ours(spec: dict[str, Any]) -> None:
    _worker_setup(spec)
    import tianshou_offline

    policies, seconds = train_ours(spec)
    k = len(policies)
    out: dict[str, dict[str, Any]] = {}
    for seed, by_line in policies.items():
        out[str(seed)] = {}
        for line, act in by_line.items():
            figures = evaluate_policy({**spec, "seed": seed}, act)
            figures.update(train_seconds=seconds / k, seed_batch=k, batch_train_seconds=seconds,
                           library=f"tianshou-offline {tianshou_offline.__version__}")  # fmt: skip
            out[str(seed)][line] = figures
    (Path(spec["workdir"]) / "result.json").write_text(json.dumps(out))


def worker_d3rlpy(spec: dict[str, Any]) -> None:
    """In d3rlpy's environment: train, then export the policy of every acting rule of the
    job as TorchScript (``save_policy``; CRR's actor mean: a trace of ``tanh(μ)``; the
    Decision Transformer: its masked acting step, :func:`~benchmarks._lib.d3rlpy_side.export_dt_step`,
    checked against d3rlpy's ``StatefulTransformerWrapper`` on a stored episode)."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    import d3rlpy
    from d3rlpy.constants import ActionSpace
    from d3rlpy.dataset import MDPDataset, MultiStepTransitionPicker

    from benchmarks._lib.d3rlpy_side import (
        check_dt_context,
        continuous_config,
        discrete_config,
        export_dt_step,
    )

    d3rlpy.seed(int(spec["seed"]))
    torch.manual_seed(int(spec["seed"]))
    data = np.load(spec["arrays"])
    m = spec["d3rlpy"]
    continuous = spec["suite"] == "continuous"
    dt = m["algo"] == "dt"
    p = m["params"]
    picker = None
    if m["n_step"] > 1:
        picker = MultiStepTransitionPicker(n_steps=int(m["n_step"]), gamma=float(m["gamma"]))
    actions = data["actions"]
    dataset = MDPDataset(
        observations=data["observations"],
        actions=actions.astype(np.float32) if continuous else actions.astype(np.int64),
        rewards=data["rewards"],
        terminals=data["terminals"],
        timeouts=data["timeouts"],
        transition_picker=picker,
        action_space=ActionSpace.CONTINUOUS if continuous else ActionSpace.DISCRETE,
        action_size=int(spec["action_size"]),
    )
    obs_dim = int(data["observations"].shape[1])
    batch = int(spec["batch_size"])
    hp = spec["nets"]
    if continuous:
        config = continuous_config({"algo": m["algo"], "params": p, "adam": "fused",
                                    "hidden": hp.get("hidden_sizes", []), "batch_size": batch,
                                    "obs_dim": obs_dim})  # fmt: skip
    else:
        config = discrete_config({
            "algo": m["algo"], "params": p, "adam": "fused", "obs_shape": [obs_dim],
            "trunk_hidden": hp["trunk_sizes"], "head_hidden": hp["hidden_sizes"],
            "channels_last": False, "scale_obs": False, "batch_size": batch,
            "gamma": float(m["gamma"]),
        })  # fmt: skip
    if m["observation_scaler"]:  # our normalize_obs: the data's mean and std
        config.observation_scaler = d3rlpy.preprocessing.StandardObservationScaler()
        if dt:
            config.observation_scaler.fit_with_trajectory_slicer(
                dataset.episodes, dataset.trajectory_slicer
            )
        else:
            config.observation_scaler.fit_with_transition_picker(
                dataset.episodes, dataset.transition_picker
            )
    algo = config.create(
        device="cuda:0" if spec.get("device", "cpu").startswith("cuda") else "cpu:0"
    )
    algo.build_with_dataset(dataset)
    start = time.perf_counter()
    for _ in range(int(spec["gradient_steps"])):
        if dt:  # its fit loop's step: segments ending at uniformly drawn steps
            algo.update(dataset.sample_trajectory_batch(batch, length=config.context_size))
        else:
            algo.update(dataset.sample_transition_batch(batch))
    seconds = time.perf_counter() - start
    probe = torch.as_tensor(data["observations"][:64])
    jit_load: Callable[[str], Any] = torch.jit.load  # untyped in torch
    policies, redrawn = {}, {}
    extra: dict[str, Any] = {}
    if dt:
        (line,) = spec["outputs"]
        path = Path(spec["workdir"]) / f"d3rlpy_policy.{line}.pt"
        export_dt_step(algo, str(path))
        episode = dataset.episodes[0]  # longer than K: the context fills, then slides
        n = min(int(episode.size()), 3 * int(config.context_size))
        received = np.concatenate([[0.0], np.asarray(episode.rewards, np.float32)[: n - 1, 0]])
        worst = check_dt_context(algo, jit_load(str(path)), episode.observations[:n], received,
                                 float(p["target_return"]))  # fmt: skip
        assert worst < 1e-4, f"{line}: DTContext ≠ StatefulTransformerWrapper (max {worst})"
        policies[line], redrawn[line] = str(path), False
        extra["dt"] = {"context": int(config.context_size),
                       "max_timestep": int(config.max_timestep),
                       "action_size": int(spec["action_size"]),
                       "target_return": float(p["target_return"])}  # fmt: skip
    for line, rule in ({} if dt else spec["outputs"]).items():
        path = Path(spec["workdir"]) / f"d3rlpy_policy.{line}.pt"
        if rule == "actor-mean":
            _save_actor_mean(algo, path)
        else:
            algo.save_policy(str(path))
        module = jit_load(str(path))
        first, second = module(probe).numpy(), module(probe).numpy()
        redrawn[line] = not np.array_equal(first, second)
        samples = continuous and (m["algo"] == "bcq" or rule == "critic-weighted")
        if samples:  # BCQ's and CRR's critic-weighted rules draw on every call
            assert redrawn[line], f"{line}: the exported {rule} policy does not redraw its samples"
        else:
            assert not redrawn[line], f"{line}: the exported {rule} policy is not deterministic"
            if rule == "default":
                predicted = algo.predict(probe.numpy())
                assert np.allclose(first, predicted, atol=1e-5), "TorchScript ≠ predict"
        policies[line] = str(path)
    (Path(spec["workdir"]) / "train.json").write_text(json.dumps({
        "train_seconds": seconds, "library": f"d3rlpy {d3rlpy.__version__}",
        "policies": policies, "redrawn": redrawn, **extra,
    }))  # fmt: skip


def _save_actor_mean(algo: Any, path: Path) -> None:
    """TorchScript of d3rlpy's actor mean ``tanh(μ)`` (its ``squashed_mu``), after the
    observation scaler as ``save_policy`` applies it."""
    import torch

    impl = algo.impl
    scaler = algo.config.observation_scaler

    def actor_mean(x: torch.Tensor) -> torch.Tensor:
        if scaler is not None:
            x = scaler.transform(x)
        out: torch.Tensor = impl.modules.policy(x).squashed_mu
        return out

    impl.modules.freeze()
    try:
        dummy = torch.rand(1, *impl.observation_shape, device=impl.device)
        trace: Callable[..., Any] = torch.jit.trace  # untyped in torch
        trace(actor_mean, dummy, check_trace=False).save(str(path))
    finally:
        impl.modules.unfreeze()


def worker_evaluate(spec: dict[str, Any]) -> None:
    """In this environment: evaluate d3rlpy's exported policies as ours are evaluated."""
    _worker_setup(spec)
    import numpy as np
    import torch

    train = json.loads((Path(spec["workdir"]) / "train.json").read_text())
    jit_load: Callable[[str], Any] = torch.jit.load  # untyped in torch
    continuous = spec["suite"] == "continuous"
    out = {}
    for line, path in train["policies"].items():
        module = jit_load(path)

        def act(obs: Any, module: Any = module) -> Any:
            with torch.no_grad():
                a = module(torch.as_tensor(np.asarray(obs, dtype=np.float32)[None])).numpy()
            return a[0] if continuous else int(a.reshape(-1)[0])

        if "dt" in train:
            out[line] = evaluate_policy(spec, _d3rlpy_dt_act(module, train["dt"]))
        else:
            out[line] = evaluate_policy(spec, act)
        out[line].update(train_seconds=train["train_seconds"], library=train["library"],
                         redrawn_every_call=train["redrawn"][line])  # fmt: skip
    (Path(spec["workdir"]) / "result.json").write_text(json.dumps({str(spec["seed"]): out}))


def _d3rlpy_dt_act(step: Any, settings: dict[str, Any]) -> Callable[[Any], Any]:
    """d3rlpy's Decision Transformer acting by its rule
    (:class:`~benchmarks._lib.d3rlpy_side.DTContext` around its exported ``step``), as an act
    function that :func:`~tianshou_offline.datasets.online.evaluate` tells where each episode
    starts and which reward each step received (the protocol of
    :class:`~tianshou_offline.recording.dt_policies.ReturnConditionedActFn`)."""
    from benchmarks._lib.d3rlpy_side import DTContext
    from tianshou_offline.recording.dt_policies import ReturnConditionedActFn

    context = DTContext(step, **settings)

    class D3rlpyDTActFn(ReturnConditionedActFn):
        # ReturnConditionedActFn's protocol only: no Tianshou policy to set up
        def __init__(self) -> None:
            self.received = 0.0

        def start_episode(self) -> None:
            context.reset()
            self.received = 0.0

        def observe(self, reward: float) -> None:
            self.received = float(reward)

        def __call__(self, obs: Any) -> Any:
            return context(obs, self.received)

    return D3rlpyDTActFn()


# ----------------------------------------------------------------------------- table


def kept_runs(
    scale: Scale, seeds: int, rows: Sequence[RowSpec], results_dir: Path = results.RESULTS_DIR
) -> list[dict[str, Any]]:
    """The kept results of the table's cells at ``scale`` (its preset, gradient steps and
    evaluation episodes) for the seeds below ``seeds``, whatever code they came from (each
    result names its commit and code fingerprint)."""
    keys = {r.key: r for r in rows}
    out = []
    for record in results.read_results(BENCHMARK, results_dir):
        st = record["settings"]
        row = keys.get(st.get("row", ""))
        if (row is None or "line" not in st or st.get("preset") != scale.preset
                or st["seed"] >= seeds
                or st["gradient_steps"] != scale.gradient_steps[row.suite]
                or st["eval_episodes"] != scale.eval_episodes):  # fmt: skip
            continue
        out.append({**_as_run(record), "data": st["data"], "record": record})
    return out


def _scores(runs: Sequence[dict[str, Any]], row: str, line: str, side: str) -> dict[int, float]:
    return {r["seed"]: r["score"] for r in runs
            if r["row"] == row and r["line"] == line and r["side"] == side}  # fmt: skip


def _cell(xs: Sequence[float]) -> str:
    return stats.format_mean_se(*stats.mean_se(xs)) if xs else "n/a"


def format_table(
    runs: Sequence[dict[str, Any]], rows: Sequence[RowSpec], alpha: float = 0.05
) -> str:
    """Markdown: one line per (row, algorithm). A paired difference is bold when its t-test
    rejects "no difference" after Holm's correction over every difference of the table
    (family-wise error ``alpha``)."""
    head = ["data", "algorithm", "ours", "d3rlpy", "ours − d3rlpy (paired)", "seeds",
            "train s/run: ours", "d3rlpy"]  # fmt: skip
    lines: list[list[str]] = []
    diffs: list[list[float]] = []
    for row in rows:
        for key, line in LINES[row.suite].items():
            ours = _scores(runs, row.key, key, "ours")
            peer = _scores(runs, row.key, line.peer, "d3rlpy") if line.peer else {}
            if not ours and not peer:
                continue
            paired = [ours[k] - peer[k] for k in sorted(set(ours) & set(peer))]
            secs = [[r["train_seconds"] for r in runs if r["row"] == row.key and r["side"] == s
                     and r["line"] == n] for s, n in (("ours", key), ("d3rlpy", line.peer))]  # fmt: skip
            lines.append([
                row.label, line.label, _cell(list(ours.values())),
                _cell(list(peer.values())) if line.peer else "—",
                _cell(paired), str(max(len(ours), len(peer))),
                *(f"{statistics.fmean(x):.0f}" if x else "n/a" for x in secs),
            ])  # fmt: skip
            diffs.append(paired)
    beyond = stats.holm([stats.t_test(d) for d in diffs], alpha)
    for cells, bold in zip(lines, beyond, strict=True):
        if bold:
            cells[4] = f"**{cells[4]}**"
    out = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    return "\n".join(out + ["| " + " | ".join(c) + " |" for c in lines])


def bc_check(
    runs: Sequence[dict[str, Any]], rows: Sequence[RowSpec], alpha: float = 0.05
) -> list[str]:
    """Our algorithms below our behaviour cloning on ``medium``/``expert`` rows, beyond noise
    (t-tests of the per-seed differences, Holm-corrected over every comparison)."""
    found: list[tuple[str, list[float]]] = []
    for row in rows:
        if row.level not in ("medium", "expert"):
            continue
        bc = _scores(runs, row.key, "il", "ours")
        for key, line in LINES[row.suite].items():
            mine = _scores(runs, row.key, key, "ours") if key != "il" else {}
            d = [mine[k] - bc[k] for k in sorted(set(mine) & set(bc))]
            if d:
                found.append((f"{row.label}: {line.label}", d))
    beyond = stats.holm([stats.t_test(d) for _, d in found], alpha)
    return [f"{label} {stats.format_mean_se(*stats.mean_se(d), sign=True)} below BC"
            for (label, d), b in zip(found, beyond, strict=True)
            if b and statistics.fmean(d) < 0]  # fmt: skip


def describe_rows(runs: Sequence[dict[str, Any]], rows: Sequence[RowSpec]) -> list[str]:
    """Each row's data as its results recorded it: size, the family's reference returns and,
    for a task D4RL has, D4RL's beside them."""
    from tianshou_offline.converters.d4rl_scores import dataset_info

    out = []
    for row in rows:
        data = next((r["data"] for r in runs if r["row"] == row.key), None)
        if data is None:
            continue
        ref = f"reference returns random {data['ref_min']:.1f}, expert {data['ref_max']:.1f}"
        if row.d4rl is not None:
            d4rl = dataset_info(row.d4rl)
            share = 100 * data["ref_max"] / d4rl.ref_max_score
            ref += (f" — D4RL's `{row.d4rl}`: random {d4rl.ref_min_score:.1f}, expert "
                    f"{d4rl.ref_max_score:.1f} (this family's expert: {share:.0f}% of D4RL's)")  # fmt: skip
        else:
            ref += " (D4RL has no such task)"
        out.append(f"- {row.label}: {data['transitions']:,} transitions, "
                   f"{data['episodes']:,} episodes; {ref} (`{data['name']}`)")  # fmt: skip
    return out


def notes(scale: Scale) -> list[str]:
    """What the sides still do differently: :data:`NOTES` and the field map's differences."""
    found = [*NOTES]
    for suite, jobs in D3RLPY_JOBS.items():
        for key in jobs:
            config = our_config(scale, suite, jobs[key])
            found += [d for d in d3rlpy_differences(config) if d not in found]
    return found


def batched_note(runs: Sequence[dict[str, Any]]) -> list[str]:
    """Which of our lines were trained as seed batches (from the results)."""
    k = sorted({int(r.get("seed_batch", 1)) for r in runs if r["side"] == "ours"} - {1})
    lines = sorted({LINES[r["record"]["settings"]["suite"]][r["line"]].label for r in runs
                    if r["side"] == "ours" and r.get("seed_batch", 1) > 1})  # fmt: skip
    if not lines:
        return []
    return [
        f"- Ours, {', '.join(lines)}: a row's {'/'.join(map(str, k))} seeds trained as one seed "
        "batch in one process (make_seed_batch: seed k's trajectory is the single run's after "
        "torch.manual_seed(k)); their train s/run is the batch's wall time / its seeds"
    ]


def _caption_nets(scale: Scale) -> str:
    cont = our_config(scale, "continuous", "il").hyperparameters()
    disc = our_config(scale, "discrete", "il").hyperparameters()

    def x(sizes: Sequence[int]) -> str:
        return "×".join(map(str, sizes))

    return (f"continuous networks {x(cont['hidden_sizes'])}, discrete trunk "
            f"{x(disc['trunk_sizes'])} + head {x(disc['hidden_sizes'])}")  # fmt: skip


def report(
    runs: Sequence[dict[str, Any]], rows: Sequence[RowSpec], scale: Scale, seeds: int,
    measured: Sequence[str] = (),
) -> str:  # fmt: skip
    """The table with its caption, data, below-BC check, the sides' differences and
    ``measured`` (what :mod:`benchmarks.quality_diagnostics` found of them) (the README's
    section)."""
    n_cells = format_table(runs, rows).count("\n") - 1
    return "\n".join([
        f"Learning quality, scale `{scale.name}`: score 100 · (R − R_random) / (R_expert − "
        "R_random) with each family's own reference returns (listed under the table beside "
        "D4RL's: not D4RL-normalised scores), mean ± s.e. over "
        f"{seeds} pre-registered seeds per cell (0–{seeds - 1}); bold: the paired difference is "
        f"nonzero by a Student-t test with Holm's correction over the table's {n_cells} "
        "differences (family-wise 5%). Settings: the preset "
        f"`{scale.preset}` on both sides (d3rlpy's through the benchmarks' field map); budgets: "
        f"{scale.gradient_steps['continuous']:,} gradient steps (continuous, batch "
        f"{batch_size(scale, 'continuous', 'il')}) / {scale.gradient_steps['discrete']:,} "
        f"(discrete, batch {batch_size(scale, 'discrete', 'il')}) per run; {_caption_nets(scale)}; "
        f"{scale.eval_episodes} evaluation episodes per run; CRR evaluated with both acting "
        "rules on both sides (its two lines: the same trained networks); families: "
        + ", ".join(f"{e} {b:,} online steps" for e, b in scale.online_budget.items())
        + f", {scale.dataset_steps:,} transitions per recorded file (D4RL: 1M).",
        "",
        format_table(runs, rows),
        "",
        "Data:",
        *(describe_rows(runs, rows) or ["- (no kept results)"]),
        "",
        "Below behaviour cloning (medium/expert; t-tests, Holm-corrected): "
        + ("; ".join(bc_check(runs, rows)) or "none"),
        "",
        "Where the sides differ, and how each acts:",
        *(f"- {n}" for n in notes(scale)),
        *batched_note(runs),
        *(["", "Which difference explains a gap (d3rlpy with one removed):",
           *(f"- {n}" for n in measured)] if measured else []),
        "",
        results.provenance_line([r["record"] for r in runs]),
    ])  # fmt: skip


def gap_notes(results_dir: Path = results.RESULTS_DIR) -> list[str]:
    """The table's notes on its HalfCheetah-medium gaps, from the kept diagnostics: the
    bound-action shares and each variant's score beside the table's two cells (same seeds)."""
    records = results.read_results(diagnostics.BENCHMARK, results_dir)
    if not records:
        return []
    out = []
    bounds = next((r for r in records if r["name"] == "small.bounds"), None)
    if bounds is not None:
        f = bounds["figures"]
        share = {k: 100 * f[k][f"share_above_{diagnostics.BOUND}"] for k in f}
        out.append(
            f"Action elements within {1 - diagnostics.BOUND:.2f} of the bounds ±1 in the medium files: "
            f"HalfCheetah {share['halfcheetah-medium']:.1f}%, Hopper {share['hopper-medium']:.1f}% "
            "(`python -m benchmarks.quality_diagnostics --bounds`)"
        )
    scale = SCALES["small"]
    rows = sorted({v[0] for v in diagnostics.VARIANTS.values()})
    runs = kept_runs(scale, scale.seeds, [ROWS[k] for k in rows], results_dir)
    for variant, scores in sorted(diagnostics.kept(results_dir).items(),
                                  key=lambda kv: list(diagnostics.VARIANTS).index(kv[0])):  # fmt: skip
        row_key, _, line, removed = diagnostics.VARIANTS[variant]
        row = ROWS[row_key]
        seeds = sorted(scores)
        cells = []
        for side, name in (("d3rlpy", LINES["continuous"][line].peer), ("ours", line)):
            table = _scores(runs, row_key, str(name), side)
            cells.append(f"{side} {_cell([table[k] for k in seeds if k in table])}")
        out.append(
            f"{row.env.split('-')[0]} {row.level}, d3rlpy's {removed}: "
            f"{_cell([scores[k] for k in seeds])} "
            f"at seeds {', '.join(map(str, seeds))}, where the table's cells are "
            f"{', '.join(cells)} (`python -m benchmarks.quality_diagnostics --variants {variant}`)"
            + (f": {diagnostics.FINDINGS[variant]}" if variant in diagnostics.FINDINGS else "")
        )
    return out


def readme_section(results_dir: Path = results.RESULTS_DIR) -> str:
    """The README's section: the small scale's table over every row, from the kept results."""
    scale = SCALES["small"]
    rows = list(ROWS.values())
    runs = kept_runs(scale, scale.seeds, rows, results_dir)
    return report(runs, rows, scale, scale.seeds, gap_notes(results_dir))


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=tuple(SCALES), default="small")
    parser.add_argument("--rows", default="all",
                        help=f"comma-separated rows or groups (hopper, halfcheetah): {', '.join(ROWS)}")  # fmt: skip
    parser.add_argument("--algorithms", default="",
                        help="comma-separated line keys (default: all): "
                        + ", ".join(dict.fromkeys(k for s in LINES.values() for k in s)))  # fmt: skip
    parser.add_argument("--seeds", type=int, default=None,
                        help="run the first N of the scale's pre-registered seeds (default: all)")  # fmt: skip
    parser.add_argument("--gradient-steps", type=int, default=None,
                        help="per run, every suite (default: the scale's)")  # fmt: skip
    parser.add_argument("--eval-episodes", type=int, default=None, help="default: the scale's")
    parser.add_argument("--jobs", type=int, default=2, help="processes at a time (1 thread each)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (both sides)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--results", type=Path, default=results.RESULTS_DIR,
                        help="kept run results (default: benchmarks/results)")  # fmt: skip
    parser.add_argument("--d3rlpy-python", default=None,
                        help="d3rlpy 2.8.1's interpreter (default: ~/.cache/tianshou-offline/d3rlpy-venv)")  # fmt: skip
    parser.add_argument("--no-d3rlpy", action="store_true", help="ours only (--sides ours)")
    parser.add_argument("--sides", default="ours,d3rlpy",
                        help="comma-separated sides to run: ours, d3rlpy")  # fmt: skip
    parser.add_argument("--table-only", action="store_true", help="print the table of kept results")
    parser.add_argument("--readme", action="store_true", help="write it into README.md")
    parser.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                        help="run every job as a Ray task: on the cluster at ADDRESS (e.g. auto), "
                        "or a local Ray instance without one; data and results on shared storage")  # fmt: skip
    parser.add_argument("--max-retries", type=int, default=2,
                        help="with --ray: reruns of a job whose worker died")  # fmt: skip
    parser.add_argument("--worker", choices=("ours", "d3rlpy", "evaluate"), help=argparse.SUPPRESS)
    parser.add_argument("job", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(Path(args.job).read_text())
        {"ours": worker_ours, "d3rlpy": worker_d3rlpy, "evaluate": worker_evaluate}[args.worker](
            spec
        )
        return 0

    keys: list[str] = []
    for part in (p.strip() for p in args.rows.split(",") if p.strip()):
        keys += list(ROW_ORDER) if part == "all" else ROW_GROUPS.get(part, [part])
    unknown = [k for k in keys if k not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {list(ROWS)}")
    rows = [ROWS[k] for k in dict.fromkeys(keys)]
    algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    scale = SCALES[args.scale]
    if args.gradient_steps:
        scale = dataclasses.replace(
            scale, gradient_steps=dict.fromkeys(scale.gradient_steps, args.gradient_steps)
        )
    if args.eval_episodes:
        scale = dataclasses.replace(scale, eval_episodes=args.eval_episodes)
    if args.seeds is not None and not 1 <= args.seeds <= scale.seeds:
        parser.error(f"--seeds {args.seeds}: the {scale.name} scale's cells have {scale.seeds} "
                     f"pre-registered seeds; run 1 to {scale.seeds} of them")  # fmt: skip
    seeds = args.seeds or scale.seeds
    if args.readme:  # always the README's whole table (small scale, every row)
        readme.write_sections({BENCHMARK: readme_section(args.results)})
    if args.table_only or args.readme:  # the kept results: nothing is made or trained
        print(report(kept_runs(scale, seeds, rows, args.results), rows, scale, seeds))
        return 0
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if args.no_d3rlpy:
        sides = [s for s in sides if s != "d3rlpy"]
    if not sides or set(sides) - {"ours", "d3rlpy"}:
        parser.error(f"--sides {args.sides!r}: expected 'ours', 'd3rlpy' or both")
    import torch

    import tianshou_offline.cli._no_tensorflow  # noqa: F401  (before Tianshou: no TensorFlow)

    torch.set_num_threads(1)
    files = prepare_data(rows, args.scale, args.data_dir)
    for path in keep_family_policies(rows, args.scale, args.data_dir):
        print(f"kept {path.relative_to(results.REPO)}", file=sys.stderr)
    d3rlpy: str | None = None
    arrays: dict[str, Path] = {}
    if "d3rlpy" in sides:
        if args.ray is None:
            d3rlpy = d3rlpy_python(args.d3rlpy_python, create=True, torch_version=torch.__version__)
        else:  # each node finds (or makes) its own: see _ray_job
            d3rlpy = args.d3rlpy_python
        for row in rows:
            arrays[row.key] = export_arrays(files[row.key], arrays_path(files[row.key]))
    jobs = make_jobs(rows, files, arrays, scale=scale, seeds=seeds, algorithms=algorithms,
                     sides=sides, device=args.device)  # fmt: skip
    start = time.perf_counter()
    failed = 0
    with results.LoadMonitor() as load:
        done = run_jobs(jobs, args.results, d3rlpy, parallel=args.jobs, use_ray=args.ray is not None,
                        ray_address=args.ray or None, device=args.device,
                        max_retries=args.max_retries, torch_version=torch.__version__)  # fmt: skip
        for i, (job, r) in enumerate(done, 1):
            if isinstance(r, BaseException):  # a failed run is reported, the others go on
                failed += 1
                print(f"[{i}/{len(jobs)}] {job.name}: FAILED {r}", file=sys.stderr, flush=True)
                continue
            for run in r:
                print(f"[{i}/{len(jobs)}] {job.name} {run['line']} seed {run['seed']}: score "
                      f"{run['score']:.1f} (return "
                      f"{run['return_mean']:.1f}), train {run['train_seconds']:.0f} s",
                      file=sys.stderr, flush=True)  # fmt: skip
    lo = load.summary()
    print(f"\n{len(jobs) - failed}/{len(jobs)} runs in {time.perf_counter() - start:.0f} s; load "
          f"average {lo['before']} → {lo['after']} (max {lo['max']}) on {os.cpu_count()} CPUs, "
          f"{args.jobs} processes at a time\n", flush=True)  # fmt: skip
    print(report(kept_runs(scale, seeds, rows, args.results), rows, scale, seeds))
    print("\nTraining wall times are of processes sharing the machine with other work (one "
          "thread each): not a speed comparison — the speed benchmark is.")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
