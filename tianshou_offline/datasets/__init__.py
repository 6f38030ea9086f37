"""D4RL-style dataset families for any gymnasium environment.

:func:`make_datasets` trains an online agent (Tianshou's SAC for ``Box`` actions, DQN for
``Discrete``), keeps its checkpoints and writes ``random``, ``medium``, ``expert``,
``medium-replay`` and ``medium-expert`` as this package's HDF5 files, each with its provenance
and the family's reference scores (``tianshou-offline make-datasets``). Modules:
:mod:`~tianshou_offline.datasets.envs` (registered ids and ``module:Class`` entry points),
:mod:`~tianshou_offline.datasets.agents` (the online agents),
:mod:`~tianshou_offline.datasets.online` (the resumable online phase),
:mod:`~tianshou_offline.datasets.family` (policies, reference scores, files).
"""

from __future__ import annotations

from tianshou_offline.datasets.agents import DQNParams, SACParams
from tianshou_offline.datasets.envs import EnvSource, resolve_env
from tianshou_offline.datasets.family import (
    DEFAULT_BUDGET,
    DEFAULT_DATASET_STEPS,
    LEVELS,
    FamilyConfig,
    FamilyResult,
    LevelResult,
    d4rl_scale,
    make_datasets,
    select_checkpoints,
)
from tianshou_offline.datasets.online import Checkpoint

__all__ = [
    "DEFAULT_BUDGET",
    "DEFAULT_DATASET_STEPS",
    "LEVELS",
    "Checkpoint",
    "DQNParams",
    "EnvSource",
    "FamilyConfig",
    "FamilyResult",
    "LevelResult",
    "SACParams",
    "d4rl_scale",
    "make_datasets",
    "resolve_env",
    "select_checkpoints",
]
