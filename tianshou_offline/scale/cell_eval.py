"""Evaluating a grid cell's policy: its environment (:func:`make_eval_env`), the mean return
over fresh episodes, the saved policy checkpoint and the normalised score; used by
:mod:`tianshou_offline.scale.grid` for single cells and seed groups alike."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tianshou_offline.errors import (
    DataValidationError,
    SourceNotFoundError,
)
from tianshou_offline.scale.grid_spec import (
    _write_atomic,
)

if TYPE_CHECKING:
    from tianshou.algorithm.algorithm_base import OfflineAlgorithm

log = logging.getLogger(__name__)


def make_eval_env(env_id: str) -> Any:
    """A test or evaluation environment of a cell: ``gym.make(env_id)`` wrapped in
    :class:`~tianshou_offline.algorithms.RewardInInfo` (each observation's ``info`` carries
    the reward of the step before it: a return-conditioned policy lowers its return-to-go by
    it; the other policies ignore it)."""
    import gymnasium as gym

    from tianshou_offline.algorithms import RewardInInfo

    return RewardInInfo(gym.make(env_id))


def best_episode_return(dataset: str | os.PathLike[str]) -> float:
    """The highest undiscounted episode return stored in ``dataset``: the return a
    return-conditioned cell (the Decision Transformer) conditions on when its overrides set
    no ``target_return``."""
    from tianshou_offline.data.stats import episode_table

    returns = episode_table(Path(dataset)).returns
    if len(returns) == 0:
        raise DataValidationError(f"{dataset}: holds no episode; expected at least one")
    return float(np.max(returns))


def _evaluate(
    algorithm: OfflineAlgorithm[Any], env_id: str, episodes: int, seed: int
) -> list[float]:
    from tianshou.data import Collector, CollectStats
    from tianshou.env import DummyVectorEnv

    envs = DummyVectorEnv([lambda: make_eval_env(env_id)] * min(episodes, 5))
    envs.seed(seed)
    try:
        algorithm.policy.eval()
        stats = Collector[CollectStats](algorithm.policy, envs).collect(
            n_episode=episodes, reset_before_collect=True
        )
    finally:
        envs.close()
    return [float(r) for r in stats.returns]


def _save_policy(algorithm: OfflineAlgorithm[Any], path: Path) -> None:
    """The final policy: a policy checkpoint (``record --policy`` replays it, ``evaluate
    --ope`` estimates it, ``export-policy`` exports it) for the package's continuous and
    discrete policies, else the policy's ``state_dict``."""
    import torch

    from tianshou_offline.algorithms import ContinuousPolicy, DiscretePolicy
    from tianshou_offline.recording.policies import save_policy_checkpoint

    if isinstance(algorithm.policy, ContinuousPolicy | DiscretePolicy):
        save_policy_checkpoint(path, algorithm.policy)
        return
    buf = io.BytesIO()
    torch.save(algorithm.policy.state_dict(), buf)
    _write_atomic(path, buf.getvalue())


def _score(dataset: Path, mean: float) -> float | None:
    from tianshou_offline.converters.d4rl_scores import normalized_score

    try:
        return normalized_score(dataset, mean)
    except SourceNotFoundError:
        return None
