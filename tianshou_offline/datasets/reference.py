"""Reference scores for any dataset (``tianshou-offline reference-scores``): the random
policy's and an expert's mean undiscounted return in the dataset's environment, each with a
confidence interval, stored with the dataset (:mod:`tianshou_offline.data.reference` says
where: inside our files, in a sidecar beside foreign ones).

Normalised scores (D4RL's ``100 · (R − random) / (expert − random)``) need both, and datasets
often ship without them (Minari#323: ``mujoco/hopper/medium-v0`` has none). The references:

- **random**: ``episodes`` rollouts of uniformly random actions (the action space's own
  ``sample``, seeded) in a fresh environment ``env_id`` — D4RL's ``ref_min_score`` is the
  same thing;
- **expert**, one of
  - ``expert=CKPT``: ``episodes`` rollouts of a policy checkpoint (any file ``record
    --policy`` replays; its spaces are checked against the environment's first);
  - ``expert_episodes=k``: the mean return of the dataset's ``k`` best episodes — no
    environment needed for it, and the right choice when the data came from an expert that
    is not at hand (an expert dataset's best episodes are the expert's).

Intervals: a percentile bootstrap of the mean over episodes (:data:`BOOTSTRAP_RESAMPLES`
resamples, seeded), at ``confidence`` (0.95). The record names the source of each score.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from tianshou_offline.data.format import read_metadata, utc_now_iso
from tianshou_offline.data.reference import ReferenceScore, ReferenceScores
from tianshou_offline.errors import DataValidationError

log = logging.getLogger(__name__)

BOOTSTRAP_RESAMPLES = 2000


def bootstrap_interval(
    values: np.ndarray, *, confidence: float, seed: int | None
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (``(n,)``, n ≥ 1)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 1:
        return float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(BOOTSTRAP_RESAMPLES, v.size))].mean(axis=1)
    tail = 100.0 * (1.0 - confidence) / 2.0
    lo, hi = np.percentile(means, [tail, 100.0 - tail])
    return float(lo), float(hi)


def _score(returns: list[float] | np.ndarray, source: str, confidence: float, seed: int | None) -> ReferenceScore:  # fmt: skip
    v = np.asarray(returns, dtype=np.float64)
    lo, hi = bootstrap_interval(v, confidence=confidence, seed=seed)
    return ReferenceScore(
        mean=float(v.mean()), std=float(v.std()), episodes=int(v.size), ci_low=lo, ci_high=hi,
        source=source,
    )  # fmt: skip


def _check_spaces(path: Path, env_id: str, env: gym.Env[Any, Any]) -> None:
    """The dataset's spaces (or, for a foreign layout, its obs/act column shapes) against the
    environment's."""
    md = read_metadata(path)
    obs_space, act_space = env.observation_space, env.action_space
    if md.observation_space is not None and md.action_space is not None:
        found = (tuple(md.observation_space.shape or ()), type(md.action_space).__name__)
        want = (tuple(obs_space.shape or ()), type(act_space).__name__)
        if found != want:
            raise DataValidationError(
                f"{path}: observations {found[0]} with {found[1]} actions; --env {env_id} has "
                f"observations {want[0]} with {want[1]} actions: not this dataset's environment"
            )
        return
    cols = md.columns
    obs = cols.get("observations", cols.get("obs"))
    if obs is not None and isinstance(obs_space, gym.spaces.Box):
        shape = tuple(obs[0][1:])
        if md.stack_num == 1 and shape != tuple(obs_space.shape or ()):
            raise DataValidationError(
                f"{path}: observations of shape {shape}; --env {env_id} has "
                f"{tuple(obs_space.shape or ())}: not this dataset's environment"
            )


def compute_reference_scores(
    path: str | os.PathLike[str],
    env_id: str,
    *,
    expert: str | os.PathLike[str] | None = None,
    expert_episodes: int | None = None,
    episodes: int = 100,
    seed: int = 0,
    confidence: float = 0.95,
    max_episode_steps: int | None = None,
) -> ReferenceScores:
    """The random and expert references of the dataset at ``path`` in ``env_id`` (module doc).

    :param env_id: a gymnasium id or ``module:Class`` (as ``make-datasets``).
    :param expert: a policy checkpoint whose rollouts give the expert score.
    :param expert_episodes: k: the expert score is the mean of the dataset's k best episode
        returns. Exactly one of ``expert`` and ``expert_episodes``.
    :param episodes: rollouts of the random policy (and of ``expert``).
    :param seed: seeds the first reset of each rollout series, the random actions and the
        bootstrap.
    :param confidence: the intervals' level, in (0, 1).
    :param max_episode_steps: a time limit for the rollouts (default: the env's own).
    :raises SourceNotFoundError: no such dataset, environment or checkpoint.
    :raises DataValidationError: bad settings, or a dataset/checkpoint of another environment.
    """
    from tianshou_offline.data.stats import episode_table
    from tianshou_offline.datasets.envs import resolve_env
    from tianshou_offline.datasets.online import evaluate
    from tianshou_offline.recording.policies import make_policy

    p = Path(path)
    if (expert is None) == (expert_episodes is None):
        raise DataValidationError(
            "reference scores: give exactly one expert: a checkpoint (--expert CKPT) or the "
            "dataset's best episodes (--expert-episodes K)"
        )
    if episodes < 1:
        raise DataValidationError(f"episodes={episodes}: expected >= 1")
    if not 0.0 < confidence < 1.0:
        raise DataValidationError(f"confidence={confidence}: expected a value in (0, 1)")
    read_metadata(p)  # the dataset exists and is readable before any rollout
    table = episode_table(p) if expert_episodes is not None else None
    if table is not None and expert_episodes is not None:
        n = len(table.returns)
        if not 1 <= expert_episodes <= n:
            raise DataValidationError(
                f"--expert-episodes {expert_episodes}: {p} holds {n} episodes; expected 1..{n}"
            )
    source = resolve_env(env_id, max_episode_steps=max_episode_steps)
    env = source.make()
    try:
        _check_spaces(p, env_id, env)
        space = env.action_space
        act_fn = make_policy(str(expert), env) if expert is not None else None
    finally:
        env.close()
    space.seed(seed)
    _, _, rand = evaluate(lambda _obs: space.sample(), source, episodes=episodes, seed=seed)
    random_ref = _score(
        rand, f"uniform random actions, {episodes} rollouts of {env_id}", confidence, seed
    )
    if act_fn is not None:
        _, _, ret = evaluate(act_fn, source, episodes=episodes, seed=seed + 1)
        expert_ref = _score(
            ret, f"checkpoint {Path(str(expert)).name}, {episodes} rollouts of {env_id}",
            confidence, seed,
        )  # fmt: skip
    else:
        assert table is not None and expert_episodes is not None
        best = np.sort(table.returns)[::-1][:expert_episodes]
        expert_ref = _score(
            best, f"the dataset's best {expert_episodes} of {len(table.returns)} episodes",
            confidence, seed,
        )  # fmt: skip
    if expert_ref.mean <= random_ref.mean:
        log.warning(
            "%s: the expert reference %.3f is not above the random one %.3f: normalised "
            "scores will not be meaningful",
            p, expert_ref.mean, random_ref.mean,
        )  # fmt: skip
    from tianshou_offline.data.format import package_version

    return ReferenceScores(
        env_id=env_id, random=random_ref, expert=expert_ref, confidence=confidence,
        interval=f"percentile bootstrap of the mean over episodes ({BOOTSTRAP_RESAMPLES} resamples)",
        seed=seed, created=utc_now_iso(), package_version=package_version(),
    )  # fmt: skip
