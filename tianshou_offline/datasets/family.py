"""D4RL-style dataset families for any gymnasium environment (:func:`make_datasets`).

A family is made in four phases, each resumable:

1. **online**: an agent (SAC for ``Box`` actions, DQN for ``Discrete``) trains for ``budget``
   environment steps; every ``checkpoint_every`` steps its deterministic policy is evaluated
   and saved (:mod:`~tianshou_offline.datasets.online`);
2. **policies**: ``expert`` is the final checkpoint (or the best, ``expert="best"``);
   ``medium`` the first checkpoint whose evaluation return reaches ``medium_fraction`` of the
   way from the random policy's return to the expert's (D4RL's "about one third of the
   expert"; with a random return near 0, as in MuJoCo, that is one third of the expert's
   return);
3. **reference scores**: the mean returns of a uniformly random policy and of the expert's
   deterministic policy over ``reference_episodes`` episodes (D4RL's ``ref_min_score`` and
   ``ref_max_score``), stored in every file, so that
   :func:`~tianshou_offline.converters.d4rl_scores.normalized_score` and the examples report
   normalised scores for any environment;
4. **files** (this package's HDF5 format, written atomically by
   :class:`~tianshou_offline.data.writer.BufferWriter`): ``random`` (uniform actions),
   ``medium`` and ``expert`` (``dataset_steps`` transitions, whole episodes, of the
   checkpoint's behaviour policy: SAC samples its Gaussian as D4RL's SAC data did, DQN acts
   ε-greedily with ``data_eps``), ``medium-replay`` (every transition the online agent
   collected up to the medium checkpoint, the random start included) and ``medium-expert``
   (the medium file's episodes followed by the expert file's).

``family.json`` in the output directory records the settings, the checkpoints with their
evaluation returns and SHA-256s, the reference scores and every file's size and SHA-256. A
rerun with the same settings continues where the last one stopped and skips files that are
complete (their SHA-256 verified); other settings in a non-empty directory are refused unless
``overwrite``. The same seed gives the same files. Every file (``family.json``, the level
files, the online run's ``state.pt`` and policy checkpoints) is written to a temporary beside
it and moved into place (:mod:`tianshou_offline.data.atomic`): a new file never replaces one
that appeared meanwhile unless ``overwrite``, and temporaries of killed runs are removed by
the next run.

Deliberate differences from D4RL: the dataset sizes and the online budget are parameters
(D4RL: 1M transitions per file, SAC trained for 1M+ steps; :func:`d4rl_scale` gives those);
the medium threshold is measured from the random return (D4RL's "one third of the expert"
assumes a random return near 0); the episode running at an online checkpoint is cut there
(truncated) so that a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch

from tianshou_offline.data.atomic import (
    atomic_output,
    file_sha256,
    output_lock,
    remove_stale_temps,
    write_errors,
)
from tianshou_offline.data.buffer import load_buffer
from tianshou_offline.data.format import Provenance
from tianshou_offline.data.writer import BufferWriter, Compression
from tianshou_offline.datasets.agents import (
    DQNParams,
    SACParams,
    default_algorithm,
    make_agent,
)
from tianshou_offline.datasets.envs import EnvSource, resolve_env
from tianshou_offline.datasets.online import STATE_FILE, Checkpoint, evaluate, run_online
from tianshou_offline.errors import DataValidationError, OutputExistsError
from tianshou_offline.progress import progress

log = logging.getLogger(__name__)

LEVELS = ("random", "medium", "expert", "medium-replay", "medium-expert")
"""The files of a family, in the order they are written."""
MANIFEST = "family.json"
MANIFEST_FORMAT = "tianshou-offline-family"
STATE_DIR = "online"
"""The online run's checkpoints and resumable state, inside the output directory."""

DEFAULT_BUDGET = {"sac": 300_000, "dqn": 100_000}
"""Online environment steps when none is given (D4RL trained SAC for 1M+; see
:func:`d4rl_scale`)."""
DEFAULT_DATASET_STEPS = 100_000
"""Transitions of each recorded file (``random``, ``medium``, ``expert``) when none is given."""


@dataclass(frozen=True, kw_only=True)
class FamilyConfig:
    """What :func:`make_datasets` makes. ``None`` means the per-action-space default."""

    algorithm: str | None = None
    """``"sac"`` (``Box`` actions) or ``"dqn"`` (``Discrete``); default: by the action space."""
    budget: int | None = None
    """Online environment steps (default :data:`DEFAULT_BUDGET`)."""
    seed: int = 0
    """Seeds everything: networks, exploration, environments, recordings."""
    dataset_steps: int | None = None
    """Transitions per recorded file, whole episodes (default :data:`DEFAULT_DATASET_STEPS`)."""
    levels: tuple[str, ...] = LEVELS
    """The files to write (``medium-expert`` also writes ``medium`` and ``expert``)."""
    medium_fraction: float = 1.0 / 3.0
    """Where ``medium`` is taken, from the random return (0) to the expert's (1)."""
    expert: Literal["final", "best"] = "final"
    """The expert checkpoint: the last one (D4RL) or the one with the best evaluation."""
    reference_episodes: int = 100
    """Episodes of the random and the expert policy that give the reference scores."""
    eval_episodes: int = 10
    """Evaluation episodes of each online checkpoint."""
    checkpoint_every: int | None = None
    """Online steps between checkpoints (default: a twentieth of the budget)."""
    data_eps: float = 0.05
    """ε of the discrete behaviour policies of ``medium`` and ``expert`` (DQN only)."""
    sac: SACParams = field(default_factory=SACParams)
    dqn: DQNParams = field(default_factory=DQNParams)
    compression: Compression = None


def d4rl_scale(config: FamilyConfig | None = None) -> FamilyConfig:
    """``config`` at D4RL's sizes: 1M online steps and 1M transitions per recorded file."""
    return replace(config or FamilyConfig(), budget=1_000_000, dataset_steps=1_000_000)


@dataclass(frozen=True)
class LevelResult:
    """One file of a family."""

    level: str
    path: Path
    num_transitions: int
    num_episodes: int
    mean_return: float
    """Mean undiscounted return of its episodes."""
    normalized_score: float
    """``100 · (mean_return − random) / (expert − random)`` with the family's reference scores."""
    skipped: bool = False
    """It was complete already (SHA-256 verified) and was not written again."""


@dataclass(frozen=True)
class FamilyResult:
    """What :func:`make_datasets` made."""

    output: Path
    env_id: str
    algorithm: str
    budget: int
    levels: dict[str, LevelResult]
    reference_scores: tuple[float, float]
    """``(random, expert)`` mean returns (D4RL's ``ref_min_score``, ``ref_max_score``)."""
    checkpoints: list[Checkpoint]
    medium: Checkpoint
    expert: Checkpoint
    seconds: float
    resumed_from: int
    """Online steps restored from an earlier run (0: trained from the start)."""

    @property
    def files(self) -> dict[str, Path]:
        return {name: r.path for name, r in self.levels.items()}


def _settings(
    source: EnvSource, config: FamilyConfig, algorithm: str, budget: int, steps: int, every: int
) -> dict[str, Any]:
    """Everything that decides the family's content (``levels`` only selects files)."""
    hp = asdict(config.sac) if algorithm == "sac" else asdict(config.dqn)
    return {
        "env": source.spec,
        "env_kwargs": json.loads(json.dumps(dict(source.kwargs), default=str)),
        "max_episode_steps": source.env_spec().max_episode_steps,
        "algorithm": algorithm,
        "params": json.loads(json.dumps(hp)),
        "budget": budget,
        "seed": config.seed,
        "dataset_steps": steps,
        "medium_fraction": config.medium_fraction,
        "expert": config.expert,
        "reference_episodes": config.reference_episodes,
        "eval_episodes": config.eval_episodes,
        "checkpoint_every": every,
        "data_eps": config.data_eps if algorithm == "dqn" else None,
        "compression": config.compression,
    }


def _our_paths(out: Path) -> list[Path]:
    return [out / MANIFEST, out / STATE_DIR, *(out / f"{level}.hdf5" for level in LEVELS)]


def _prepare_output(
    out: Path, settings: Mapping[str, Any], overwrite: bool
) -> tuple[dict[str, Any], bool]:
    """``(manifest, continued)``: the manifest to continue (``continued``), or a new one when
    starting; clears an earlier family when ``overwrite``. Temporaries of killed runs beside
    the family's files are removed first (they do not make the directory "not empty").

    :raises OutputExistsError: ``out`` is a file, or a non-empty directory holding something
        else than a family with these settings.
    """
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: exists and is not a directory; expected a directory")
    fresh: dict[str, Any] = {"format": MANIFEST_FORMAT, "version": 1, "settings": dict(settings)}
    if out.is_dir():  # temporaries of killed runs are not "something else"
        for p in (*_our_paths(out), out / STATE_DIR / STATE_FILE):
            remove_stale_temps(p)
    if not out.exists():
        out.mkdir(parents=True)
        return fresh, False
    manifest_path = out / MANIFEST
    manifest: dict[str, Any] | None = None
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            manifest = None
    if manifest is not None and manifest.get("settings") == json.loads(json.dumps(settings)):
        if overwrite:
            _clear(out)
            return fresh, False
        return manifest, True
    if overwrite:
        _clear(out)
        return fresh, False
    if manifest is not None:
        old = manifest.get("settings", {})
        diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        what = (
            f"{diff[0]}: found {old.get(diff[0])!r}, expected {settings.get(diff[0])!r}"
            if diff
            else "?"
        )
        raise OutputExistsError(
            f"{out}: holds a dataset family made with other settings ({what}); pass "
            "--overwrite (overwrite=True) to replace it, or choose another output directory"
        )
    if any(out.iterdir()):
        names = ", ".join(sorted(p.name for p in out.iterdir())[:5])
        raise OutputExistsError(
            f"{out}: exists and is not empty ({names}); expected a new or empty directory "
            "(--overwrite, overwrite=True, replaces a family's files)"
        )
    return fresh, False


def _clear(out: Path) -> None:
    """Remove a family's own files (and nothing else) from ``out``."""
    for p in _our_paths(out):
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _write_manifest(out: Path, manifest: Mapping[str, Any], *, overwrite: bool = True) -> None:
    """Write ``family.json`` atomically (:func:`~tianshou_offline.data.atomic.atomic_output`:
    temporaries of killed runs removed first). ``overwrite=False`` for a new family's first manifest: a
    ``family.json`` that appeared meanwhile (another run in the same directory) is left
    untouched and :class:`~tianshou_offline.errors.OutputExistsError` raised; later writes
    replace this run's own manifest."""
    with atomic_output(out / MANIFEST, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str) + "\n")


def _uniform(space: gym.Space[Any], seed: int) -> Callable[[Any], Any]:
    """Uniformly random actions of ``space`` (seeded with ``seed``)."""
    space.seed(seed)
    return lambda _obs: space.sample()


def _sub_seed(seed: int, *tags: int) -> int:
    return int(np.random.SeedSequence([seed, *tags]).generate_state(1)[0])


@dataclass
class _Episodes:
    """Whole episodes collected in memory, as columns."""

    columns: dict[str, np.ndarray]
    returns: list[float]
    lengths: list[int]

    @property
    def num_transitions(self) -> int:
        return int(sum(self.lengths))


def _rollouts(
    act: Callable[[Any], Any], source: EnvSource, *, steps: int, seed: int, desc: str,
    enabled: bool | None,
) -> _Episodes:  # fmt: skip
    """Whole episodes of ``act`` until at least ``steps`` transitions; the first reset is
    seeded with ``seed``."""
    env = source.make()
    rows: dict[str, list[Any]] = {
        k: [] for k in ("obs", "act", "rew", "terminated", "truncated", "obs_next")
    }
    returns: list[float] = []
    lengths: list[int] = []
    n = 0
    try:
        with progress(total=steps, desc=desc, unit="step", enabled=enabled) as bar:
            obs, _ = env.reset(seed=seed)
            while n < steps:
                total, length, done = 0.0, 0, False
                while not done:
                    action = act(obs)
                    obs_next, rew, terminated, truncated, _ = env.step(action)
                    done = bool(terminated or truncated)
                    rows["obs"].append(np.asarray(obs))
                    rows["act"].append(np.asarray(action))
                    rows["rew"].append(float(rew))
                    rows["terminated"].append(bool(terminated))
                    rows["truncated"].append(bool(truncated) and not terminated)
                    rows["obs_next"].append(np.asarray(obs_next))
                    total += float(rew)
                    length += 1
                    obs = obs_next
                    if n + length <= steps:
                        bar.update(1)
                returns.append(total)
                lengths.append(length)
                n += length
                obs, _ = env.reset()
    finally:
        env.close()
    columns = {
        "obs": np.stack(rows["obs"]),
        "act": np.stack(rows["act"]),
        "rew": np.asarray(rows["rew"], dtype=np.float64),
        "terminated": np.asarray(rows["terminated"], dtype=bool),
        "truncated": np.asarray(rows["truncated"], dtype=bool),
        "obs_next": np.stack(rows["obs_next"]),
    }
    return _Episodes(columns, returns, lengths)


def _episodes_of(columns: Mapping[str, np.ndarray]) -> _Episodes:
    """Episode returns and lengths of columns whose episodes end where terminated/truncated."""
    ends = np.flatnonzero(columns["terminated"] | columns["truncated"])
    if len(ends) == 0 or ends[-1] != len(columns["rew"]) - 1:
        raise DataValidationError("the transitions do not end with a finished episode")
    starts = np.concatenate([[0], ends[:-1] + 1])
    sums = np.add.reduceat(columns["rew"], starts) if len(starts) else np.zeros(0)
    return _Episodes(
        dict(columns),
        [float(x) for x in sums],
        [int(e - s + 1) for s, e in zip(starts, ends, strict=True)],
    )


def _read_episodes(path: Path) -> _Episodes:
    buf = load_buffer(path)
    n = len(buf)
    batch = buf[np.arange(n)]
    columns = {
        "obs": np.asarray(batch.obs),
        "act": np.asarray(batch.act),
        "rew": np.asarray(batch.rew, dtype=np.float64),
        "terminated": np.asarray(batch.terminated, dtype=bool),
        "truncated": np.asarray(batch.truncated, dtype=bool)
        | (np.asarray(batch.done, dtype=bool) & ~np.asarray(batch.terminated, dtype=bool)),
        "obs_next": np.asarray(batch.obs_next),
    }
    return _episodes_of(columns)


def _concat(parts: Sequence[_Episodes]) -> _Episodes:
    return _Episodes(
        {k: np.concatenate([p.columns[k] for p in parts]) for k in parts[0].columns},
        [r for p in parts for r in p.returns],
        [n for p in parts for n in p.lengths],
    )


def _write_level(
    path: Path,
    episodes: _Episodes,
    *,
    env: gym.Env[Any, Any],
    source: EnvSource,
    provenance_extra: Mapping[str, Any],
    refs: tuple[float, float],
    compression: Compression,
    episode_source: Sequence[str] | None = None,
    overwrite: bool,
) -> None:
    """Write one level's file with a :class:`BufferWriter` (a temporary beside ``path``,
    published at the end; stale temporaries of killed runs removed). ``overwrite=False``
    when ``path`` did not exist: a file that appears there meanwhile is left untouched
    (:class:`~tianshou_offline.errors.OutputExistsError`); a file already there is this
    family's own, incomplete or not in the manifest (a run killed between writing it and
    recording it), and is replaced."""
    spec = source.env_spec()
    try:
        env_spec_json: str | None = spec.to_json()
    except Exception:  # kwargs that JSON cannot hold
        env_spec_json = None
    lo, hi = refs
    level = str(provenance_extra["level"])
    extra = {
        **provenance_extra,
        "sizes": {"transitions": episodes.num_transitions, "episodes": len(episodes.lengths)},
        "ref_min_score": lo,
        "ref_max_score": hi,
    }
    meta: list[dict[str, Any]] = [
        {"return": r, "length": n} for r, n in zip(episodes.returns, episodes.lengths, strict=True)
    ]
    if episode_source is not None:
        meta = [{**m, "source_level": s} for m, s in zip(meta, episode_source, strict=True)]
    cols = episodes.columns
    with BufferWriter(
        path,
        observation_space=env.observation_space,
        action_space=env.action_space,
        env_id=spec.id,
        env_spec=env_spec_json,
        provenance=Provenance(
            source="recorded",
            dataset_id=f"{spec.id}/{level}",
            converter="tianshou_offline.datasets",
            extra=extra,
        ),
        compression=compression,
        overwrite=overwrite,
        extra_attrs={"ref_min_score": repr(lo), "ref_max_score": repr(hi), "family_level": level},
    ) as writer:
        writer.add_transitions(
            obs=cols["obs"],
            act=cols["act"],
            rew=cols["rew"],
            terminated=cols["terminated"],
            truncated=cols["truncated"],
            obs_next=cols["obs_next"],
            done=cols["terminated"] | cols["truncated"],
            episode_metadata=meta,
        )


def _score(x: float, refs: tuple[float, float]) -> float:
    lo, hi = refs
    return 100.0 * (x - lo) / (hi - lo) if hi != lo else float("nan")


def select_checkpoints(
    checkpoints: Sequence[Checkpoint], random_return: float, *, fraction: float, expert: str
) -> tuple[Checkpoint, Checkpoint]:
    """``(medium, expert)``: the expert is the last checkpoint (``expert="final"``) or the
    best evaluated; medium is the first checkpoint whose evaluation return reaches
    ``random_return + fraction · (expert return − random_return)``."""
    if not checkpoints:
        raise DataValidationError("the online run has no checkpoints")
    best = max(checkpoints, key=lambda c: c.eval_return)
    chosen = checkpoints[-1] if expert == "final" else best
    threshold = random_return + fraction * (chosen.eval_return - random_return)
    medium = next((c for c in checkpoints if c.eval_return >= threshold), chosen)
    return medium, chosen


def make_datasets(
    env: str,
    output: str | os.PathLike[str],
    *,
    config: FamilyConfig | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    max_episode_steps: int | None = None,
    overwrite: bool = False,
    show_progress: bool | None = None,
) -> FamilyResult:
    """Make (or continue) the D4RL-style family of ``env`` in the directory ``output``
    (module docstring): ``random.hdf5``, ``medium.hdf5``, ``expert.hdf5``,
    ``medium-replay.hdf5``, ``medium-expert.hdf5`` (those in ``config.levels``), with
    ``family.json`` and the online run's checkpoints in ``online/``.

    :param env: a registered gymnasium id (``Hopper-v5``) or ``module:Class``.
    :param config: what to make (default :class:`FamilyConfig`).
    :param env_kwargs: the environment's constructor arguments.
    :param max_episode_steps: its time limit (default: the registered one; 1000 for an
        entry point).
    :param overwrite: replace a family made with other settings (or other files in ``output``).
    :param show_progress: the progress policy's ``enabled`` (None: bars on a terminal).
    :raises SourceNotFoundError: ``env`` is not a registered id or an importable entry point.
    :raises MissingDependencyError: the environment needs a package that is not installed.
    :raises DataValidationError: spaces the agents do not handle; bad settings.
    :raises OutputExistsError: ``output`` holds something else and ``overwrite`` is False.
    :raises OutputBusyError: another process is making a family in ``output`` right now.
    :raises OutputWriteError: a file cannot be written (a full disk, a write error, a
        read-only or vanished directory); the files finished before it are kept.
    """
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: exists and is not a directory; expected a directory")
    created = not out.exists()
    kept = "the family's finished files are kept (a rerun continues it)"
    with write_errors(out, kept=kept):  # a read-only or vanished output directory
        out.mkdir(parents=True, exist_ok=True)
    try:
        with output_lock(out), write_errors(out, kept=kept):  # one run per family at once
            return _make_datasets(
                env, out, config=config, env_kwargs=env_kwargs,
                max_episode_steps=max_episode_steps, overwrite=overwrite,
                show_progress=show_progress,
            )  # fmt: skip
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # nothing of this run stays
        raise


def _make_datasets(
    env: str,
    out: Path,
    *,
    config: FamilyConfig | None,
    env_kwargs: Mapping[str, Any] | None,
    max_episode_steps: int | None,
    overwrite: bool,
    show_progress: bool | None,
) -> FamilyResult:
    """:func:`make_datasets` once ``out`` exists and this process holds its lock."""
    start = time.perf_counter()
    cfg = config or FamilyConfig()
    unknown = [lv for lv in cfg.levels if lv not in LEVELS]
    if unknown or not cfg.levels:
        raise DataValidationError(f"levels {list(cfg.levels)}: expected some of {list(LEVELS)}")
    if not 0.0 < cfg.medium_fraction <= 1.0:
        raise DataValidationError(f"medium_fraction={cfg.medium_fraction}: expected in (0, 1]")
    if cfg.expert not in ("final", "best"):
        raise DataValidationError(f"expert={cfg.expert!r}: expected 'final' or 'best'")
    if cfg.reference_episodes < 1 or cfg.eval_episodes < 1:
        raise DataValidationError("reference_episodes and eval_episodes must be >= 1")
    source = resolve_env(env, kwargs=env_kwargs, max_episode_steps=max_episode_steps)
    probe = source.make()
    obs_space, act_space = probe.observation_space, probe.action_space
    algorithm = cfg.algorithm or default_algorithm(act_space)
    budget = cfg.budget if cfg.budget is not None else DEFAULT_BUDGET.get(algorithm, 100_000)
    steps = cfg.dataset_steps if cfg.dataset_steps is not None else DEFAULT_DATASET_STEPS
    every = cfg.checkpoint_every or max(1, budget // 20)
    if budget < 1 or steps < 1:
        raise DataValidationError(f"budget={budget}, dataset_steps={steps}: expected >= 1")
    with torch.random.fork_rng(devices=[]):  # the networks' initial weights, from the seed
        torch.manual_seed(_sub_seed(cfg.seed, 9))
        agent = make_agent(algorithm, obs_space, act_space, budget=budget, sac=cfg.sac, dqn=cfg.dqn)
    settings = _settings(source, cfg, algorithm, budget, steps, every)
    manifest, continued = _prepare_output(out, settings, overwrite)
    env_info = source.describe()
    manifest["env"] = env_info
    manifest.setdefault("files", {})
    _write_manifest(out, manifest, overwrite=overwrite or continued)

    # 1. online
    with progress(
        total=budget, desc=f"online {algorithm.upper()} on {source.spec}", unit="step",
        unit_scale=True, enabled=show_progress,
    ) as bar:  # fmt: skip
        run = run_online(
            agent, source, budget=budget, seed=cfg.seed, checkpoint_every=every,
            eval_episodes=cfg.eval_episodes, state_dir=out / STATE_DIR, settings=settings, bar=bar,
        )  # fmt: skip
    manifest["checkpoints"] = [asdict(c) for c in run.checkpoints]
    _write_manifest(out, manifest)

    # 2. + 3. reference scores and policies
    refs_doc = manifest.get("reference_scores")
    if refs_doc is None:
        with progress(
            total=2 * cfg.reference_episodes, desc="reference episodes", unit="episode",
            enabled=show_progress,
        ) as ref_bar:  # fmt: skip
            lo, lo_std, _ = evaluate(
                _uniform(probe.action_space, _sub_seed(cfg.seed, 5)), source,
                episodes=cfg.reference_episodes,
                seed=_sub_seed(cfg.seed, 6), bar=ref_bar,
            )  # fmt: skip
            medium, expert = select_checkpoints(
                run.checkpoints, lo, fraction=cfg.medium_fraction, expert=cfg.expert
            )
            hi, hi_std, _ = evaluate(
                agent.evaluator(run.policy_path(expert)), source,
                episodes=cfg.reference_episodes, seed=_sub_seed(cfg.seed, 7), bar=ref_bar,
            )  # fmt: skip
        refs_doc = {
            "random": {"mean": lo, "std": lo_std, "episodes": cfg.reference_episodes},
            "expert": {"mean": hi, "std": hi_std, "episodes": cfg.reference_episodes},
            "medium_checkpoint": asdict(medium),
            "expert_checkpoint": asdict(expert),
        }
        manifest["reference_scores"] = refs_doc
        _write_manifest(out, manifest)
        if hi <= lo:
            log.warning(
                "%s: the expert's mean return %.3f is not above the random policy's %.3f; "
                "normalised scores are not meaningful (a larger budget?)", source.spec, hi, lo,
            )  # fmt: skip
    refs = (float(refs_doc["random"]["mean"]), float(refs_doc["expert"]["mean"]))
    medium = Checkpoint(**refs_doc["medium_checkpoint"])
    expert = Checkpoint(**refs_doc["expert_checkpoint"])

    # 4. files
    wanted = set(cfg.levels)
    if "medium-expert" in wanted:
        wanted |= {"medium", "expert"}
    common = {
        "generator": "tianshou_offline.datasets.make_datasets",
        "env": env_info,
        "online": {
            "algorithm": algorithm,
            "budget": budget,
            "params": settings["params"],
            "checkpoint_every": every,
            "eval_episodes": cfg.eval_episodes,
        },
        "family_seed": cfg.seed,
        "reference_scores": {k: refs_doc[k] for k in ("random", "expert")},
    }

    def policy_doc(c: Checkpoint) -> dict[str, Any]:
        return {"checkpoint": f"{STATE_DIR}/{c.policy}", **asdict(c)}

    results: dict[str, LevelResult] = {}
    for index, level in enumerate(LEVELS):
        if level not in wanted:
            continue
        path = out / f"{level}.hdf5"
        done = manifest["files"].get(level)
        if done is not None and path.exists() and file_sha256(path) == done["sha256"]:
            results[level] = LevelResult(
                level, path, int(done["transitions"]), int(done["episodes"]),
                float(done["mean_return"]), _score(float(done["mean_return"]), refs), skipped=True,
            )  # fmt: skip
            continue
        level_seed = _sub_seed(cfg.seed, 8, index)
        extra: dict[str, Any] = {**common, "level": level, "level_seed": level_seed}
        source_tags: list[str] | None = None
        if level == "random":
            episodes = _rollouts(
                _uniform(probe.action_space, level_seed), source, steps=steps, seed=_sub_seed(level_seed, 1),
                desc="recording random", enabled=show_progress,
            )  # fmt: skip
            extra["policy"] = {"kind": "uniform random actions"}
        elif level in ("medium", "expert"):
            chosen = medium if level == "medium" else expert
            act = agent.behaviour(run.policy_path(chosen), seed=level_seed, eps=cfg.data_eps)
            episodes = _rollouts(
                act, source, steps=steps, seed=_sub_seed(level_seed, 1),
                desc=f"recording {level}", enabled=show_progress,
            )  # fmt: skip
            extra["policy"] = {
                **policy_doc(chosen),
                "behaviour": "samples of the SAC policy" if algorithm == "sac"
                else f"eps-greedy, eps={cfg.data_eps}",
            }  # fmt: skip
        elif level == "medium-replay":
            n = medium.env_step
            episodes = _episodes_of({k: v[:n] for k, v in run.columns.items()})
            extra["policy"] = {
                "kind": f"the online {algorithm.upper()} agent's replay data up to the medium "
                "checkpoint (its random start included)",
                "medium": policy_doc(medium),
            }
        else:
            parts = [_read_episodes(out / "medium.hdf5"), _read_episodes(out / "expert.hdf5")]
            episodes = _concat(parts)
            source_tags = ["medium"] * len(parts[0].lengths) + ["expert"] * len(parts[1].lengths)
            extra["policy"] = {"medium": policy_doc(medium), "expert": policy_doc(expert),
                               "kind": "the medium file's episodes, then the expert file's"}  # fmt: skip
            extra["parts"] = {
                name: manifest["files"][name]["sha256"] for name in ("medium", "expert")
            }
        _write_level(
            path, episodes, env=probe, source=source, provenance_extra=extra, refs=refs,
            compression=cfg.compression, episode_source=source_tags,
            overwrite=overwrite or path.exists(),
        )  # fmt: skip
        mean_return = float(np.mean(episodes.returns))
        manifest["files"][level] = {
            "path": path.name,
            "sha256": file_sha256(path),
            "transitions": episodes.num_transitions,
            "episodes": len(episodes.lengths),
            "mean_return": mean_return,
            "normalized_score": _score(mean_return, refs),
        }
        _write_manifest(out, manifest)
        results[level] = LevelResult(
            level, path, episodes.num_transitions, len(episodes.lengths), mean_return,
            _score(mean_return, refs),
        )  # fmt: skip
        log.info("%s: %d transitions, %d episodes, mean return %.2f", path,
                 episodes.num_transitions, len(episodes.lengths), mean_return)  # fmt: skip
    probe.close()
    return FamilyResult(
        output=out,
        env_id=str(env_info["env_id"]),
        algorithm=algorithm,
        budget=budget,
        levels={lv: results[lv] for lv in LEVELS if lv in results},
        reference_scores=refs,
        checkpoints=run.checkpoints,
        medium=medium,
        expert=expert,
        seconds=time.perf_counter() - start,
        resumed_from=run.resumed_from,
    )
