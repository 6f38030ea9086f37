"""Offline RL algorithms as Tianshou ``OfflineAlgorithm`` subclasses.

Continuous control: :class:`ImitationLearning` (behaviour cloning, deterministic or Gaussian
actor), :class:`BCQ`, :class:`CQL`, :class:`CRR` and :class:`TD3BC`. Each is trained with
``algorithm.run_training(OfflineTrainerParams(buffer=..., ...))``, evaluated with Tianshou's
``Collector`` and logged with Tianshou's loggers. Each is generic in its ``TrainingStats``
dataclass (``class MyCQL(CQL[MyCQLStats])``); see :mod:`tianshou_offline.algorithms.base`.

Networks (:mod:`~tianshou_offline.algorithms.nets`) and policies
(:mod:`~tianshou_offline.algorithms.policies`) are re-exported here.
"""

from __future__ import annotations

from tianshou_offline.algorithms.base import (
    OfflineAlgorithmBase,
    TransitionDataset,
    Transitions,
    polyak_update,
    resolve_stats_type,
    to_floats,
)
from tianshou_offline.algorithms.bcq import BCQ, BCQStep, BCQTrainingStats
from tianshou_offline.algorithms.cql import CQL, CQLStep, CQLTrainingStats
from tianshou_offline.algorithms.crr import CRR, CRRStep, CRRTrainingStats
from tianshou_offline.algorithms.il import ImitationLearning, ImitationStep, ImitationTrainingStats
from tianshou_offline.algorithms.nets import (
    MLP,
    VAE,
    CriticEnsemble,
    DeterministicActor,
    GaussianActor,
    Perturbation,
)
from tianshou_offline.algorithms.policies import (
    BCQPolicy,
    ContinuousPolicy,
    DeterministicPolicy,
    GaussianPolicy,
    ObsNormalizer,
)
from tianshou_offline.algorithms.td3_bc import TD3BC, TD3BCStep, TD3BCTrainingStats

__all__ = [
    "BCQ",
    "CQL",
    "CRR",
    "MLP",
    "TD3BC",
    "VAE",
    "BCQPolicy",
    "BCQStep",
    "BCQTrainingStats",
    "CQLStep",
    "CQLTrainingStats",
    "CRRStep",
    "CRRTrainingStats",
    "ContinuousPolicy",
    "CriticEnsemble",
    "DeterministicActor",
    "DeterministicPolicy",
    "GaussianActor",
    "GaussianPolicy",
    "ImitationLearning",
    "ImitationStep",
    "ImitationTrainingStats",
    "ObsNormalizer",
    "OfflineAlgorithmBase",
    "Perturbation",
    "TD3BCStep",
    "TD3BCTrainingStats",
    "TransitionDataset",
    "Transitions",
    "polyak_update",
    "resolve_stats_type",
    "to_floats",
]

# --- discrete actions: DiscreteImitationLearning, DiscreteBCQ, DiscreteCQL, DiscreteCRR ---
from tianshou_offline.algorithms.discrete_base import (
    DiscreteActorPolicy,
    DiscreteOfflineAlgorithm,
    DiscretePolicy,
    DiscreteTransitions,
    FrameDataset,
    QValuePolicy,
)
from tianshou_offline.algorithms.discrete_bcq import (
    DiscreteBCQ,
    DiscreteBCQPolicy,
    DiscreteBCQStep,
    DiscreteBCQTrainingStats,
)
from tianshou_offline.algorithms.discrete_cql import (
    DiscreteCQL,
    DiscreteCQLStep,
    DiscreteCQLTrainingStats,
    quantile_huber_loss,
)
from tianshou_offline.algorithms.discrete_crr import (
    DiscreteCRR,
    DiscreteCRRStep,
    DiscreteCRRTrainingStats,
)
from tianshou_offline.algorithms.discrete_il import (
    DiscreteImitationLearning,
    DiscreteImitationStep,
    DiscreteImitationTrainingStats,
)
from tianshou_offline.algorithms.discrete_nets import (
    AtariTrunk,
    DualHeadNet,
    MLPTrunk,
    QNet,
    QuantileQNet,
    make_trunk,
)

__all__ += [
    "AtariTrunk",
    "DiscreteActorPolicy",
    "DiscreteBCQ",
    "DiscreteBCQPolicy",
    "DiscreteBCQStep",
    "DiscreteBCQTrainingStats",
    "DiscreteCQL",
    "DiscreteCQLStep",
    "DiscreteCQLTrainingStats",
    "DiscreteCRR",
    "DiscreteCRRStep",
    "DiscreteCRRTrainingStats",
    "DiscreteImitationLearning",
    "DiscreteImitationStep",
    "DiscreteImitationTrainingStats",
    "DiscreteOfflineAlgorithm",
    "DiscretePolicy",
    "DiscreteTransitions",
    "DualHeadNet",
    "FrameDataset",
    "MLPTrunk",
    "QNet",
    "QValuePolicy",
    "QuantileQNet",
    "make_trunk",
    "quantile_huber_loss",
]
