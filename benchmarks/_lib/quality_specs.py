"""The quality table's settings (:mod:`benchmarks.quality_table`): its scales (budgets and
pre-registered seeds), rows (the data), lines (what each side trains and how it acts), the
notes printed under it, and each side's algorithm settings (ours from the scale's preset,
d3rlpy's through the field map)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from benchmarks._lib import results
from benchmarks._lib.field_map import check_expressible, d3rlpy_algo, d3rlpy_params

if TYPE_CHECKING:
    from tianshou_offline.algorithms.config import AlgorithmConfig

BENCHMARK = "quality_table"
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
    """Gradient steps of every run: per suite (``continuous``, ``discrete``), or per preset
    algorithm (``dt``: a step there trains on a batch of segments, not of transitions) or
    ``suite/algorithm``, which take precedence (:meth:`steps`)."""
    seeds: int
    """Seeds of every cell, fixed here before any run (``--seeds`` may run fewer, never
    more: no cell gets seeds because of its result)."""
    eval_episodes: int
    """Evaluation episodes of each trained policy."""
    family_eval_episodes: int
    """Evaluation episodes of each online checkpoint of a family."""
    reference_episodes: int
    mountaincar_episodes: int

    def steps(self, suite: str, algo: str) -> int:
        """The gradient steps of a run of preset algorithm ``algo`` (or d3rlpy's line key of
        the same name) on a row of ``suite``: both sides train with them."""
        for key in (f"{suite}/{algo}", algo, suite):
            if key in self.gradient_steps:
                return self.gradient_steps[key]
        raise KeyError(f"scale {self.name}: no gradient steps for {suite}/{algo}")

    @property
    def step_overrides(self) -> dict[str, int]:
        """The budgets set per algorithm (not per suite)."""
        return {k: v for k, v in self.gradient_steps.items()
                if k not in ("continuous", "discrete")}  # fmt: skip


SCALES: dict[str, Scale] = {
    "small": Scale(
        name="small",
        preset="small",
        online_budget={"Hopper-v5": 60_000, "HalfCheetah-v5": 60_000, "CartPole-v1": 50_000},
        dataset_steps=20_000,
        # dt: 5,000 steps in both suites, each on 64 segments of 20 steps (fixed before any
        # run of its cells: a discrete DT step costs ~8 times a discrete CQL step on a core)
        gradient_steps={"continuous": 5_000, "discrete": 10_000, "dt": 5_000},
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
        "dt": Line("Decision Transformer", "dt", "dt"),
    },
}
"""The table's lines: key (the result's name) → what each side runs."""

D3RLPY_JOBS: dict[str, dict[str, str]] = {
    "continuous": {"il": "il", "bcq": "bcq", "cql": "cql", "crr": "crr", "td3bc": "td3bc",
                   "iql": "iql", "rebrac": "rebrac", "awac": "awac-softmax", "dt": "dt"},
    "discrete": {"il": "il", "bcq": "bcq", "cql": "cql-dqn", "dt": "dt"},
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
    "by each reward received), the last K steps as context, the predicted action (discrete: "
    "drawn from the softmax of the logits; d3rlpy: its StatefulTransformerWrapper's rule on a "
    "trace of its masked step)",
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
