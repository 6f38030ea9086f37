#!/usr/bin/env python3
"""Learning quality: tianshou-offline vs d3rlpy 2.8.1, trained on the same files.

Rows (the data):

- **Hopper-v5, HalfCheetah-v5**: ``medium``, ``medium-replay`` and ``expert`` of a family made
  by :func:`tianshou_offline.datasets.make_datasets` (SAC online, then recorded);
- **CartPole-v1**: ``medium`` of a family made the same way (DQN online);
- **MountainCar-v0**: episodes of a scripted energy-pumping controller with ε-random actions,
  recorded with :class:`~tianshou_offline.recording.EpisodeRecorder` as a user would, with
  the random and the noise-free scripted policy's mean returns stored as reference scores.

Columns: ours — IL (behaviour cloning), BCQ, CQL, CRR, TD3+BC (continuous) and
DiscreteImitationLearning, DiscreteBCQ, DiscreteCQL, DiscreteCRR — and d3rlpy's same
algorithms (BC, BCQ, CQL, CRR, TD3PlusBC; DiscreteBC, DiscreteBCQ, DiscreteCQL; d3rlpy has no
discrete CRR). Both sides get the same networks (continuous: ReLU MLPs of the scale's widths
for every network — 64×64 at the small scale, where CQL's 30 critic evaluations per sample
would cost 0.2 s per step at 256×256 on this machine's CPU, D4RL's 256×256 at ``--scale d4rl``;
discrete: our trunk and head layers, :mod:`benchmarks._lib.d3rlpy_side`), batch size, number of
gradient steps and hyperparameters (:data:`CONTINUOUS_HP`, :data:`DISCRETE_HP`, mapped to
d3rlpy's config fields in :func:`d3rlpy_params`), and the same data: our side loads the HDF5
file with ``load_buffer``; d3rlpy's gets the same arrays (``obs``, ``act``, ``rew``,
``terminated``, episode ends) in an ``MDPDataset``. Every run is a process of its own (d3rlpy
in its own virtual environment, found or created as the speed benchmarks do:
:func:`benchmarks._lib.peers.d3rlpy_python`), one torch thread each, at most ``--jobs`` at a time. A gradient step
is ``algorithm.update(buffer, batch_size)`` for ours (as Tianshou's ``OfflineTrainer`` calls
it) and ``algo.update(dataset.sample_transition_batch(batch_size))`` for d3rlpy (its ``fit``
loop's step). Both sides' final policies are evaluated by the same code in this environment
(d3rlpy's exported with its ``save_policy`` as TorchScript), on the same evaluation seeds.

Reported per cell: the normalised score ``100 · (R − R_random) / (R_expert − R_random)`` with
the reference scores stored in the file (:func:`~tianshou_offline.converters.d4rl_scores.normalized_score`
reads them), mean ± standard error over seeds; the paired difference ours − d3rlpy (same
seed index: same evaluation episodes), mean ± standard error; training wall time per run.

Where the sides differ (written under the table): DiscreteCQL — ours is CQL(H) on QR-DQN (200
quantiles), d3rlpy's on double DQN (a mean Q per action); the row ``cql-dqn`` runs ours in
d3rlpy's form (one quantile, the double-DQN target, half the loss) against the same d3rlpy
runs; d3rlpy builds an episode's last ``obs_next`` from zeros where the file stores it.
DiscreteBCQ runs the same network on both sides (:data:`DISCRETE_NETS`). A difference is
marked when a Student-t test over the seeds' paired differences puts it beyond noise after
Holm's correction over all the table's differences (family-wise 5%). Every cell has the
scale's pre-registered seeds (:attr:`Scale.seeds`: 5 at the small scale).

Every run is kept as a result file under ``benchmarks/results/quality_table/`` (its key
holds the code fingerprint: a run of older code is rerun, not reused), so an interrupted
table continues; ``--table-only`` prints and ``--readme`` writes the table from the kept
results alone (no data files needed). The
families are made once and reused (``--data-dir``). ``--scale d4rl`` is the D4RL budget
(1M-transition files, SAC trained 1M steps, 1M gradient steps, 5 seeds) for a GPU or a
cluster; ``--device cuda`` runs both sides there; ``--ray [ADDRESS]`` runs every job as a Ray
task (one CPU, and a GPU with ``--device cuda``; retried if its worker dies) on a cluster, or
on a local Ray instance without an address, connected as the experiment grids are. Our side's
algorithms are built by the grids' builder (:func:`tianshou_offline.scale.build_algorithm`)
with this table's hyperparameters; a job is not a grid cell (:func:`~tianshou_offline.scale.run_cell`)
because both sides of the table must be trained by the same loop of gradient steps and
evaluated by the same code, and d3rlpy's side runs in its own interpreter.

Usage::

    python -m benchmarks.quality_table                       # the small scale, 2 processes
    python -m benchmarks.quality_table --rows mountaincar --seeds 3
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
from typing import Any

from benchmarks._lib import readme, results, stats
from benchmarks._lib.peers import D3RLPY_VERSION, child_env, d3rlpy_python

BENCHMARK = "quality_table"
COMMON_CODE = (
    "benchmarks/quality_table.py",
    "tianshou_offline/datasets",
    "tianshou_offline/converters/d4rl_scores.py",
)
CODE = {
    "ours": (*COMMON_CODE, "tianshou_offline/algorithms", "tianshou_offline/data",
             "tianshou_offline/scale/algorithms.py"),
    "d3rlpy": COMMON_CODE,
}  # fmt: skip
"""The code each side's run depends on: a job's kept result is reused only while the
fingerprint of these files is the same (:mod:`benchmarks._lib.results`)."""

DEFAULT_DATA_DIR = Path.home() / ".cache" / "tianshou-offline" / "quality"


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Scale:
    """The budgets of one scale of the table."""

    name: str
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
    hidden: tuple[int, ...]
    """Every continuous network's hidden layers (actor, critics, VAE encoder and decoder,
    perturbation), on both sides."""


SCALES: dict[str, Scale] = {
    "small": Scale(
        name="small",
        online_budget={"Hopper-v5": 60_000, "HalfCheetah-v5": 60_000, "CartPole-v1": 50_000},
        dataset_steps=20_000,
        gradient_steps={"continuous": 5_000, "discrete": 10_000},
        seeds=5,
        eval_episodes=10,
        family_eval_episodes=5,
        reference_episodes=100,
        mountaincar_episodes=100,
        hidden=(64, 64),
    ),
    "d4rl": Scale(
        name="d4rl",
        online_budget={"Hopper-v5": 1_000_000, "HalfCheetah-v5": 1_000_000, "CartPole-v1": 100_000},
        dataset_steps=1_000_000,
        gradient_steps={"continuous": 1_000_000, "discrete": 100_000},
        seeds=5,
        eval_episodes=10,
        family_eval_episodes=10,
        reference_episodes=100,
        mountaincar_episodes=1_000,
        hidden=(256, 256),
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

    @property
    def label(self) -> str:
        return f"{self.env} {self.level}"


ROWS: dict[str, RowSpec] = {
    r.key: r
    for r in (
        RowSpec("hopper-medium", "Hopper-v5", "medium", "continuous"),
        RowSpec("hopper-medium-replay", "Hopper-v5", "medium-replay", "continuous"),
        RowSpec("hopper-expert", "Hopper-v5", "expert", "continuous"),
        RowSpec("halfcheetah-medium", "HalfCheetah-v5", "medium", "continuous"),
        RowSpec("halfcheetah-medium-replay", "HalfCheetah-v5", "medium-replay", "continuous"),
        RowSpec("halfcheetah-expert", "HalfCheetah-v5", "expert", "continuous"),
        RowSpec("cartpole-medium", "CartPole-v1", "medium", "discrete"),
        RowSpec("mountaincar", "MountainCar-v0", "scripted", "discrete"),
    )
}
ROW_GROUPS = {"hopper": [k for k in ROWS if k.startswith("hopper")],
              "halfcheetah": [k for k in ROWS if k.startswith("halfcheetah")]}  # fmt: skip

ALGORITHMS = {
    "continuous": ("il", "bcq", "cql", "crr", "td3bc", "iql", "rebrac"),
    "discrete": ("il", "bcq", "cql", "cql-dqn", "crr"),
}
LABELS = {
    "continuous": {
        "il": "IL (BC)",
        "bcq": "BCQ",
        "cql": "CQL",
        "crr": "CRR",
        "td3bc": "TD3+BC",
        "iql": "IQL",
        "rebrac": "ReBRAC",
    },
    "discrete": {
        "il": "IL (BC)",
        "bcq": "BCQ",
        "cql": "CQL",
        "cql-dqn": "CQL, d3rlpy's form",
        "crr": "CRR",
    },
}
D3RLPY_HAS = {
    "continuous": {"il", "bcq", "cql", "crr", "td3bc", "iql", "rebrac"},
    "discrete": {"il", "bcq", "cql"},
}

CONTINUOUS_BATCH = 256
CONTINUOUS_HP: dict[str, dict[str, Any]] = {
    "il": {"lr": 1e-3},
    "bcq": {"lr": 1e-3, "gamma": 0.99, "tau": 0.005, "lmbda": 0.75, "num_sampled_action": 10,
            "phi": 0.05, "kl_weight": 0.5, "num_critics": 2},
    "cql": {"actor_lr": 1e-4, "critic_lr": 3e-4, "alpha_lr": 1e-4, "cql_weight": 5.0,
            "tau": 0.005, "gamma": 0.99, "num_sampled_actions": 10, "num_critics": 2},
    "td3bc": {"lr": 3e-4, "tau": 0.005, "gamma": 0.99, "policy_noise": 0.2, "noise_clip": 0.5,
              "update_actor_freq": 2, "alpha": 2.5, "num_critics": 2},
    "crr": {"lr": 3e-4, "gamma": 0.99, "tau": 0.005, "num_action_samples": 4, "beta": 1.0,
            "max_weight": 20.0, "num_critics": 1},
    "iql": {"lr": 3e-4, "tau": 0.005, "gamma": 0.99, "expectile": 0.7, "beta": 3.0,
            "max_weight": 100.0, "num_critics": 2},
    "rebrac": {"lr": 1e-3, "tau": 0.005, "gamma": 0.99, "policy_noise": 0.2, "noise_clip": 0.5,
               "update_actor_freq": 2, "actor_bc_coef": 0.001, "critic_bc_coef": 0.01,
               "num_critics": 2},
}  # fmt: skip
"""One set per algorithm, read by both sides. CQL: the fixed-weight variant (weight 5, no
Lagrange dual; d3rlpy's MuJoCo setting ``alpha_learning_rate=0``) with the automatic entropy
temperature and no entropy term in the backup; BCQ: 10 sampled actions for the target and for
acting (the paper's); TD3+BC: observations normalised with the data's statistics (the paper;
d3rlpy's ``StandardObservationScaler``); CRR: exponential weights, mean advantage, soft target
updates; IQL: the paper's MuJoCo settings (expectile 0.7, β 3, weight clip 100), a Gaussian
actor with a state-independent std, observations normalised on both sides (CORL), no cosine
schedule (d3rlpy has none); ReBRAC: LayerNorm critics on both sides, d3rlpy's default
penalties β₁ = 0.001, β₂ = 0.01 (the paper tunes them per D4RL dataset; these families are not
D4RL's), at this table's batch of 256 (the paper: 1024)."""

DISCRETE_TRUNK = (64,)
DISCRETE_HEAD = (64,)
DISCRETE_BATCH = 64
DISCRETE_HP: dict[str, dict[str, Any]] = {
    "il": {"lr": 1e-3},
    "bcq": {"lr": 1e-3, "gamma": 0.99, "n_step": 3, "target_update_freq": 100,
            "threshold": 0.3, "imitation_logits_penalty": 0.01},
    "cql": {"lr": 1e-3, "gamma": 0.99, "n_step": 3, "target_update_freq": 100,
            "min_q_weight": 10.0, "d3rlpy_alpha": 1.0, "num_quantiles": 200},
    "crr": {"lr": 1e-3, "gamma": 0.99, "n_step": 1, "target_update_freq": 100, "beta": 1.0},
    "cql-dqn": {"lr": 1e-3, "gamma": 0.99, "n_step": 3, "target_update_freq": 100,
                "min_q_weight": 0.5, "num_quantiles": 1, "double_q": True},
}  # fmt: skip
"""CartPole-sized networks (Tianshou's CartPole offline tests: trunk 64, head 64; BCQ: see
:data:`DISCRETE_NETS`). CQL: each
side's default conservative weight for its own TD loss — ours ``min_q_weight`` 10 (Tianshou's
default) on the quantile loss, d3rlpy's ``alpha`` 1 on its mean-Q Huber loss. The same number
would not be the same weight: the quantile Huber loss sums over the 200 target quantiles, so
it is about N/2 = 100 times a scalar Huber loss of the same error, and at w = 1 our
conservative term hardly acts (CartPole medium, seed 0, 10,000 steps: return 15, below
uniform random's 22, with the two actions' Q-values equal, CQL gap log 2; w = 10: return 167
after 2,500 steps). ``cql-dqn`` is our DiscreteCQL in d3rlpy's form, compared with d3rlpy's
DiscreteCQL runs: one quantile (the quantile Huber loss of one quantile at τ̂ = ½ is half the
Huber loss of the mean Q), the next action chosen by the online network (double DQN) and
w = ½: the loss is then exactly half of d3rlpy's ``huber + α · conservative`` at α = 1, which
Adam's steps do not see (they are invariant to the scale of the loss, up to its ε)."""

DISCRETE_NETS: dict[str, dict[str, list[int]]] = {
    "bcq": {"trunk_sizes": [64, 64], "head_sizes": []},
}
"""Our networks where they are not ``DISCRETE_TRUNK`` + ``DISCRETE_HEAD`` (part of our side's
job key). BCQ: d3rlpy's layout, which :mod:`benchmarks._lib.d3rlpy_side` builds for its side — its imitator is
a linear layer on the Q network's whole encoder (``share_encoder=True``; the encoder is the
trunk and the head's hidden layer) — so ours is a trunk of both hidden layers with linear
Q and imitation heads: the same network. (The table first gave our imitator its own hidden
layer: CartPole 84.8 ± 9.7 against d3rlpy's 107.9 ± 2.2.)"""

PEER_OF = {"cql-dqn": "cql"}
"""Our variants compared with another d3rlpy algorithm's runs (no d3rlpy job of their own)."""

NOTES = [
    "DiscreteCQL: ours is CQL(H) on QR-DQN (200 quantiles, the target network selects the next "
    "action), d3rlpy's on double DQN (one mean Q per action); each at its default conservative "
    "weight for its loss (ours 10 on the quantile loss, which sums over 200 target quantiles; "
    "d3rlpy's 1 on a scalar Huber loss): at 1, ours does not separate CartPole's actions "
    "(return 15 after 10,000 steps)",
    "DiscreteCQL, d3rlpy's form: ours with one quantile, the double-DQN target and w = 0.5 — "
    "half of d3rlpy's loss at α = 1, the same Adam steps — against d3rlpy's DiscreteCQL runs",
    "DiscreteBCQ: the same network on both sides (d3rlpy's share_encoder layout: linear Q and "
    "imitation heads on one two-layer trunk)",
    "d3rlpy has no discrete CRR",
    "CRR acts with its actor's deterministic action on both sides (d3rlpy's exported policy; "
    "its predict() would instead re-rank sampled actions with the critic)",
    "d3rlpy builds the obs_next of an episode's last transition from zeros (its MDPDataset has "
    "no obs_next column); ours reads the stored one",
]


def d3rlpy_params(suite: str, algo: str) -> dict[str, Any]:
    """The ``params`` of :mod:`benchmarks._lib.d3rlpy_side`'s config builders, from :data:`CONTINUOUS_HP` /
    :data:`DISCRETE_HP` (d3rlpy's own defaults differ: BCQ samples 100 actions, CQL learns
    its conservative weight, CRR copies its target every 100 steps, DiscreteBC penalises
    logits with β = 0.5)."""
    if suite == "continuous":
        hp = CONTINUOUS_HP[algo]
        if algo == "il":
            return {"lr": hp["lr"]}
        if algo == "bcq":
            return {"actor_lr": hp["lr"], "critic_lr": hp["lr"], "imitator_lr": hp["lr"],
                    "gamma": hp["gamma"], "tau": hp["tau"], "n_critics": hp["num_critics"],
                    "lam": hp["lmbda"], "n_action_samples": hp["num_sampled_action"],
                    "action_flexibility": hp["phi"], "beta": hp["kl_weight"]}  # fmt: skip
        if algo == "cql":
            return {"actor_lr": hp["actor_lr"], "critic_lr": hp["critic_lr"],
                    "temp_lr": hp["alpha_lr"], "alpha_lr": 0.0, "critic_clip_grad_norm": None,
                    "gamma": hp["gamma"], "tau": hp["tau"], "n_critics": hp["num_critics"],
                    "conservative_weight": hp["cql_weight"], "alpha_threshold": 10.0,
                    "n_action_samples": hp["num_sampled_actions"], "soft_q_backup": False}  # fmt: skip
        if algo == "td3bc":
            return {"actor_lr": hp["lr"], "critic_lr": hp["lr"], "gamma": hp["gamma"],
                    "tau": hp["tau"], "n_critics": hp["num_critics"],
                    "policy_noise": hp["policy_noise"], "noise_clip": hp["noise_clip"],
                    "alpha": hp["alpha"], "update_actor_interval": hp["update_actor_freq"]}  # fmt: skip
        if algo == "crr":
            return {"actor_lr": hp["lr"], "critic_lr": hp["lr"], "gamma": hp["gamma"],
                    "tau": hp["tau"], "n_critics": hp["num_critics"], "beta": hp["beta"],
                    "n_action_samples": hp["num_action_samples"], "advantage_type": "mean",
                    "weight_type": "exp", "max_weight": hp["max_weight"],
                    "target_update_type": "soft", "target_update_interval": 1}  # fmt: skip
        if algo == "iql":
            return {"actor_lr": hp["lr"], "critic_lr": hp["lr"], "gamma": hp["gamma"],
                    "tau": hp["tau"], "n_critics": hp["num_critics"],
                    "expectile": hp["expectile"], "weight_temp": hp["beta"],
                    "max_weight": hp["max_weight"]}  # fmt: skip
        if algo == "rebrac":
            return {"actor_lr": hp["lr"], "critic_lr": hp["lr"], "gamma": hp["gamma"],
                    "tau": hp["tau"], "n_critics": hp["num_critics"],
                    "policy_noise": hp["policy_noise"], "noise_clip": hp["noise_clip"],
                    "update_actor_interval": hp["update_actor_freq"],
                    "actor_beta": hp["actor_bc_coef"], "critic_beta": hp["critic_bc_coef"],
                    "critic_layer_norm": True}  # fmt: skip
    else:
        hp = DISCRETE_HP[algo]
        if algo == "il":
            return {"lr": hp["lr"], "beta": 0.0}  # ours: plain cross-entropy
        if algo == "bcq":
            return {"lr": hp["lr"], "action_flexibility": hp["threshold"],
                    "beta": hp["imitation_logits_penalty"],
                    "target_update_interval": hp["target_update_freq"]}  # fmt: skip
        if algo == "cql":
            return {"lr": hp["lr"], "alpha": hp["d3rlpy_alpha"],
                    "target_update_interval": hp["target_update_freq"]}  # fmt: skip
    raise ValueError(f"d3rlpy has no {suite} {algo}")


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
        result = make_datasets(env, root / env, config=dataclasses.replace(
            family_config(scale, env), levels=levels))  # fmt: skip
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
    row: str
    algo: str
    side: str
    """``ours`` or ``d3rlpy``."""
    seed: int
    spec: dict[str, Any]

    @property
    def name(self) -> str:
        """The result's name: scale, row, algorithm, side, seed."""
        return f"{self.spec['scale']}.{self.row}.{self.algo}.{self.side}.{self.seed}"

    @property
    def settings(self) -> dict[str, Any]:
        """The spec without this machine's paths (the data is in it by its hash)."""
        return {k: v for k, v in self.spec.items() if k not in ("file", "arrays")}

    @property
    def code(self) -> tuple[str, ...]:
        return CODE[self.side]

    @property
    def key(self) -> str:
        return results.result_key(self.name, self.settings, _fingerprint(self.code))


@functools.cache
def _fingerprint(code: tuple[str, ...]) -> str:
    return results.code_fingerprint(code)


def make_jobs(
    rows: Sequence[RowSpec], files: dict[str, Path], arrays: dict[str, Path], *, scale: Scale,
    seeds: int, algorithms: Sequence[str] | None, sides: Sequence[str], device: str,
) -> list[Job]:  # fmt: skip
    from tianshou_offline import read_metadata
    from tianshou_offline.converters.d4rl_scores import reference_scores

    info: dict[str, dict[str, Any]] = {}
    for row in rows:  # the action space stored in the file (no environment is made)
        md = read_metadata(files[row.key])
        space: Any = md.action_space
        lo, hi = reference_scores(files[row.key])
        info[row.key] = {
            "action_size": int(space.shape[0]) if row.suite == "continuous" else int(space.n),
            "data": {"name": files[row.key].name, "transitions": md.num_transitions,
                     "episodes": md.num_episodes, "ref_min": lo, "ref_max": hi},
        }  # fmt: skip
    jobs: list[Job] = []
    for seed in range(seeds):  # seed-major: a partial table has every cell at low seeds
        for row in rows:
            for algo in ALGORITHMS[row.suite]:
                if algorithms and algo not in algorithms:
                    continue
                for side in sides:
                    if side == "d3rlpy" and algo not in D3RLPY_HAS[row.suite]:
                        continue
                    spec = {
                        "scale": scale.name, "row": row.key, "env": row.env,
                        "suite": row.suite, "algo": algo, "side": side, "seed": seed,
                        "file": str(files[row.key]), "file_sha256": _sha256(files[row.key]),
                        "arrays": str(arrays.get(row.key, arrays_path(files[row.key]))),
                        **info[row.key],
                        "gradient_steps": scale.gradient_steps[row.suite],
                        "eval_episodes": scale.eval_episodes, "device": device,
                        "hidden": list(scale.hidden),
                        "hp": (CONTINUOUS_HP if row.suite == "continuous" else DISCRETE_HP)[algo],
                    }  # fmt: skip
                    if side == "ours" and row.suite == "discrete" and algo in DISCRETE_NETS:
                        spec["net"] = DISCRETE_NETS[algo]
                    jobs.append(Job(row.key, algo, side, seed, spec))
    return jobs


@functools.cache
def _sha256(path: Path) -> str:
    return results.file_sha256(path)


def _kept(job: Job, results_dir: Path) -> dict[str, Any] | None:
    """The kept result of ``job`` at this code, as :func:`run_job` returns it."""
    record = results.find_result(BENCHMARK, job.name, job.settings, job.code, results_dir)
    return None if record is None else _as_run(record)


def _as_run(record: dict[str, Any]) -> dict[str, Any]:
    s = record["settings"]
    return {**record["figures"], "row": s["row"], "algo": s["algo"], "side": s["side"],
            "seed": s["seed"]}  # fmt: skip


def run_job(job: Job, results_dir: Path, d3rlpy: str | None) -> dict[str, Any]:
    """Run one job in its own process(es), unless a result of it at this code is kept; the
    result is kept in ``results_dir`` (:func:`benchmarks._lib.results.write_result`)."""
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
        result: dict[str, Any] = json.loads((Path(tmp) / "result.json").read_text())
    path = results.write_result(
        BENCHMARK, job.name, settings=job.settings, figures=result, code=job.code,
        seeds=[job.seed], data={job.row: job.spec["file_sha256"]}, load=load,
        d3rlpy=D3RLPY_VERSION if job.side == "d3rlpy" else None, results_dir=results_dir,
    )  # fmt: skip
    return _as_run(json.loads(path.read_text()))


def _ray_job(job: Job, results_dir: str, d3rlpy: str | None, torch_version: str) -> dict[str, Any]:
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
) -> Iterator[tuple[Job, dict[str, Any] | BaseException]]:  # fmt: skip
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
    """Our algorithm for ``spec`` (its suite, algorithm and hyperparameters), for ``env``'s
    spaces: :func:`tianshou_offline.scale.build_algorithm`, the experiment grids' builder
    (``tianshou-offline grid``), with this table's hyperparameters and network sizes as its
    overrides."""
    from tianshou_offline.scale.algorithms import build_algorithm

    hp = dict(spec["hp"])
    if spec["suite"] == "continuous":
        overrides = {**hp, "hidden_sizes": [int(x) for x in spec["hidden"]]}
    else:
        hp.pop("d3rlpy_alpha", None)  # d3rlpy's own weight (see DISCRETE_HP)
        net = spec.get("net") or {"trunk_sizes": list(DISCRETE_TRUNK),
                                  "head_sizes": list(DISCRETE_HEAD)}  # fmt: skip
        overrides = {**hp, **net}
    name = spec["algo"].split("-")[0]  # cql-dqn: our CQL, configured by its hp
    return build_algorithm(name, env.observation_space, env.action_space, overrides)


def train_ours(spec: dict[str, Any]) -> tuple[Callable[[Any], Any], float]:
    """Train our algorithm on the file for ``gradient_steps``; returns its deterministic
    policy (obs → env action) and the training wall time in seconds."""
    import numpy as np
    import torch
    from tianshou.data import Batch
    from tianshou.utils.torch_utils import policy_within_training_step

    from tianshou_offline import load_buffer
    from tianshou_offline.datasets import EnvSource

    env = EnvSource(spec["env"]).make()
    algorithm = build_ours(spec, env)
    env.close()
    algorithm.to(spec.get("device", "cpu"))
    buffer = algorithm.process_buffer(load_buffer(spec["file"]))
    batch_size = CONTINUOUS_BATCH if spec["suite"] == "continuous" else DISCRETE_BATCH
    start = time.perf_counter()  # the gradient steps only (as d3rlpy's side)
    with policy_within_training_step(algorithm.policy):
        for _ in range(int(spec["gradient_steps"])):
            algorithm.update(buffer=buffer, sample_size=batch_size)
    seconds = time.perf_counter() - start
    policy = algorithm.policy
    policy.eval()

    def act(obs: Any) -> Any:
        with torch.no_grad():
            out = policy(Batch(obs=np.asarray(obs, dtype=np.float32)[None], info=Batch()))
        a = policy.map_action(out.act)
        return a[0] if spec["suite"] == "continuous" else int(np.asarray(a).reshape(-1)[0])

    return act, seconds


def evaluate_policy(spec: dict[str, Any], act: Callable[[Any], Any]) -> dict[str, Any]:
    """Return statistics and the normalised score (the file's reference scores)."""
    import numpy as np

    from tianshou_offline.converters.d4rl_scores import normalized_score
    from tianshou_offline.datasets import EnvSource
    from tianshou_offline.datasets.online import evaluate

    start = time.perf_counter()
    seed = 10_000 + int(spec["seed"])
    mean, std, returns = evaluate(
        act, EnvSource(spec["env"]), episodes=int(spec["eval_episodes"]), seed=seed
    )
    return {
        "return_mean": mean,
        "return_std": std,
        "returns": returns,
        "score": normalized_score(spec["file"], mean),  # D4RL's 0–100 scale
        "eval_seconds": time.perf_counter() - start,
        "eval_seed": seed,
        "final_return_min": float(np.min(returns)),
    }


def worker_ours(spec: dict[str, Any]) -> None:
    _worker_setup(spec)
    import torch

    import tianshou_offline

    act, seconds = train_ours(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(spec["seed"]) + 1)
        result = evaluate_policy(spec, act)
    result.update(train_seconds=seconds, library=f"tianshou-offline {tianshou_offline.__version__}")
    (Path(spec["workdir"]) / "result.json").write_text(json.dumps(result))


def worker_d3rlpy(spec: dict[str, Any]) -> None:
    """In d3rlpy's environment: train and export the policy (TorchScript)."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    import d3rlpy
    from d3rlpy.constants import ActionSpace
    from d3rlpy.dataset import MDPDataset, MultiStepTransitionPicker

    from benchmarks._lib.d3rlpy_side import continuous_config, discrete_config

    d3rlpy.seed(int(spec["seed"]))
    torch.manual_seed(int(spec["seed"]))
    data = np.load(spec["arrays"])
    suite, algo = spec["suite"], spec["algo"]
    continuous = suite == "continuous"
    picker = None
    hp = spec["hp"]
    if not continuous and hp.get("n_step", 1) > 1 and algo != "il":
        picker = MultiStepTransitionPicker(n_steps=int(hp["n_step"]), gamma=float(hp["gamma"]))
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
    params = d3rlpy_params(suite, algo)
    if continuous:
        runner_algo = {"il": "bc"}.get(algo, algo)
        config = continuous_config({"algo": runner_algo, "params": params, "adam": "fused",
                                   "hidden": list(spec["hidden"]), "batch_size": CONTINUOUS_BATCH})  # fmt: skip
        if algo in ("td3bc", "iql"):  # the papers' observation normalisation (ours: normalize_obs)
            config.observation_scaler = d3rlpy.preprocessing.StandardObservationScaler()
            config.observation_scaler.fit_with_transition_picker(
                dataset.episodes, dataset.transition_picker
            )
    else:
        config = discrete_config({
            "algo": algo, "params": params, "adam": "fused", "obs_shape": [obs_dim],
            "trunk_hidden": list(DISCRETE_TRUNK), "head_hidden": list(DISCRETE_HEAD),
            "channels_last": False, "scale_obs": False, "batch_size": DISCRETE_BATCH,
            "gamma": float(hp.get("gamma", 0.99)),
        })  # fmt: skip
    impl = config.create(
        device="cuda:0" if spec.get("device", "cpu").startswith("cuda") else "cpu:0"
    )
    impl.build_with_dataset(dataset)
    batch_size = CONTINUOUS_BATCH if continuous else DISCRETE_BATCH
    start = time.perf_counter()
    for _ in range(int(spec["gradient_steps"])):
        impl.update(dataset.sample_transition_batch(batch_size))
    seconds = time.perf_counter() - start
    policy_path = Path(spec["workdir"]) / "d3rlpy_policy.pt"
    impl.save_policy(str(policy_path))
    probe = data["observations"][:4]
    jit_load: Callable[[str], Any] = torch.jit.load  # untyped in torch
    scripted = jit_load(str(policy_path))(torch.as_tensor(probe)).numpy()
    if algo not in ("bcq", "crr"):  # their predict samples (CRR: critic-weighted): no check
        assert np.allclose(scripted, impl.predict(probe), atol=1e-5), "TorchScript ≠ predict"
    (Path(spec["workdir"]) / "train.json").write_text(json.dumps({
        "train_seconds": seconds, "library": f"d3rlpy {d3rlpy.__version__}",
        "policy": str(policy_path),
    }))  # fmt: skip


def worker_evaluate(spec: dict[str, Any]) -> None:
    """In this environment: evaluate d3rlpy's exported policy as ours is evaluated."""
    _worker_setup(spec)
    import numpy as np
    import torch

    train = json.loads((Path(spec["workdir"]) / "train.json").read_text())
    jit_load: Callable[[str], Any] = torch.jit.load  # untyped in torch
    module = jit_load(train["policy"])
    continuous = spec["suite"] == "continuous"

    def act(obs: Any) -> Any:
        with torch.no_grad():
            out = module(torch.as_tensor(np.asarray(obs, dtype=np.float32)[None])).numpy()
        return out[0] if continuous else int(out.reshape(-1)[0])

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(spec["seed"]) + 1)
        result = evaluate_policy(spec, act)
    result.update(train_seconds=train["train_seconds"], library=train["library"])
    (Path(spec["workdir"]) / "result.json").write_text(json.dumps(result))


# ----------------------------------------------------------------------------- table


def kept_runs(
    scale: Scale, seeds: int, rows: Sequence[RowSpec], results_dir: Path = results.RESULTS_DIR
) -> list[dict[str, Any]]:
    """The kept results of the table's cells at ``scale`` (its gradient steps, evaluation
    episodes and networks) for the seeds below ``seeds``, whatever code they came from
    (each result names its commit and code fingerprint)."""
    keys = {r.key: r for r in rows}
    out = []
    for record in results.read_results(BENCHMARK, results_dir):
        st = record["settings"]
        row = keys.get(st.get("row", ""))
        if (row is None or st.get("scale") != scale.name or st["seed"] >= seeds
                or st["gradient_steps"] != scale.gradient_steps[row.suite]
                or st["eval_episodes"] != scale.eval_episodes
                or st["hidden"] != list(scale.hidden)):  # fmt: skip
            continue
        out.append({**_as_run(record), "data": st["data"], "record": record})
    return out


def _scores(runs: Sequence[dict[str, Any]], row: str, algo: str, side: str) -> dict[int, float]:
    return {r["seed"]: r["score"] for r in runs
            if r["row"] == row and r["algo"] == algo and r["side"] == side}  # fmt: skip


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
        for algo in ALGORITHMS[row.suite]:
            peer_algo = PEER_OF.get(algo, algo)
            ours = _scores(runs, row.key, algo, "ours")
            peer = _scores(runs, row.key, peer_algo, "d3rlpy")
            if not ours and not peer:
                continue
            paired = [ours[k] - peer[k] for k in sorted(set(ours) & set(peer))]
            secs = [[r["train_seconds"] for r in runs if r["row"] == row.key and r["side"] == s
                     and r["algo"] == a] for s, a in (("ours", algo), ("d3rlpy", peer_algo))]  # fmt: skip
            lines.append([
                row.label, LABELS[row.suite][algo], _cell(list(ours.values())),
                _cell(list(peer.values())) if peer_algo in D3RLPY_HAS[row.suite] else "—",
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
        for algo in ALGORITHMS[row.suite][1:]:
            mine = _scores(runs, row.key, algo, "ours")
            d = [mine[k] - bc[k] for k in sorted(set(mine) & set(bc))]
            if d:
                found.append((f"{row.label}: {LABELS[row.suite][algo]}", d))
    beyond = stats.holm([stats.t_test(d) for _, d in found], alpha)
    return [f"{label} {stats.format_mean_se(*stats.mean_se(d), sign=True)} below BC"
            for (label, d), b in zip(found, beyond, strict=True)
            if b and statistics.fmean(d) < 0]  # fmt: skip


def describe_rows(runs: Sequence[dict[str, Any]], rows: Sequence[RowSpec]) -> list[str]:
    """Each row's data as its results recorded it: size and reference returns."""
    out = []
    for row in rows:
        data = next((r["data"] for r in runs if r["row"] == row.key), None)
        if data is None:
            continue
        out.append(
            f"- {row.label}: {data['transitions']:,} transitions, {data['episodes']:,} "
            f"episodes; reference returns random {data['ref_min']:.1f}, expert "
            f"{data['ref_max']:.1f} (`{data['name']}`)"
        )
    return out


def report(
    runs: Sequence[dict[str, Any]], rows: Sequence[RowSpec], scale: Scale, seeds: int
) -> str:
    """The table with its caption, data, below-BC check and the sides' differences (the
    README's section)."""
    n_cells = format_table(runs, rows).count("\n") - 1
    return "\n".join([
        f"Learning quality, scale `{scale.name}`: normalised score, mean ± s.e. over {seeds} "
        f"pre-registered seeds per cell (0–{seeds - 1}); bold: the paired difference is "
        f"nonzero by a Student-t test with Holm's correction over the table's {n_cells} "
        "differences (family-wise 5%). Budgets: "
        f"{scale.gradient_steps['continuous']:,} gradient steps (continuous, batch "
        f"{CONTINUOUS_BATCH}) / {scale.gradient_steps['discrete']:,} (discrete, batch "
        f"{DISCRETE_BATCH}) per run; continuous networks {'×'.join(map(str, scale.hidden))}; "
        f"{scale.eval_episodes} evaluation episodes per run; families: "
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
        "Where the sides differ:",
        *(f"- {n}" for n in NOTES),
        "",
        results.provenance_line([r["record"] for r in runs]),
    ])  # fmt: skip


def readme_section(results_dir: Path = results.RESULTS_DIR) -> str:
    """The README's section: the small scale's table over every row, from the kept results."""
    scale = SCALES["small"]
    rows = list(ROWS.values())
    return report(kept_runs(scale, scale.seeds, rows, results_dir), rows, scale, scale.seeds)


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=tuple(SCALES), default="small")
    parser.add_argument("--rows", default="all",
                        help=f"comma-separated rows or groups (hopper, halfcheetah): {', '.join(ROWS)}")  # fmt: skip
    parser.add_argument("--algorithms", default="", help="comma-separated (default: all)")
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
        keys += list(ROWS) if part == "all" else ROW_GROUPS.get(part, [part])
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
            print(f"[{i}/{len(jobs)}] {job.name}: score {r['score']:.1f} (return "
                  f"{r['return_mean']:.1f}), train {r['train_seconds']:.0f} s",
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
