"""Offline RL algorithms as Tianshou ``OfflineAlgorithm`` subclasses.

Continuous control: :class:`ImitationLearning` (behaviour cloning, deterministic or Gaussian
actor), :class:`BCQ`, :class:`CQL`, :class:`CRR`, :class:`IQL`, :class:`ReBRAC`,
:class:`TD3BC`, the critic ensembles :class:`SACN`, :class:`EDAC` and :class:`LBSAC`, and
:class:`AWAC`. Each is
trained with ``algorithm.run_training(OfflineTrainerParams(buffer=..., ...))``, evaluated
with Tianshou's ``Collector`` and logged with Tianshou's loggers. Each is generic in its
``TrainingStats`` dataclass (``class MyCQL(CQL[MyCQLStats])``); see
:mod:`tianshou_offline.algorithms.core`.

Each algorithm has a frozen ``*Config`` dataclass beside it (:class:`TD3BCConfig`, …: the one
place its defaults live, ``build(observation_space, action_space, device=...)`` makes it);
:func:`make_algorithm` builds one by name from a named preset (:data:`PRESETS`) and keyword
overrides (:mod:`~tianshou_offline.algorithms.config`, ``registry``, ``presets``).
:func:`make_seed_batch` builds K seeds of one as a single batched program
(:mod:`~tianshou_offline.algorithms.seeds`: :class:`SeedBatch`, one policy per seed).

Layout: :mod:`~tianshou_offline.algorithms.core` (shared by both action kinds),
:mod:`~tianshou_offline.algorithms.continuous` and :mod:`~tianshou_offline.algorithms.discrete`
(each: ``dataset``, ``nets``, ``policies``, ``base`` and one module per algorithm).
Everything public is re-exported here.
"""

from __future__ import annotations

from tianshou_offline.algorithms.config import (
    AlgorithmConfig,
    ContinuousConfig,
    ContinuousTDConfig,
    DiscreteConfig,
    DiscreteTDConfig,
)
from tianshou_offline.algorithms.continuous.awac import (
    AWAC,
    AWACConfig,
    AWACStep,
    AWACTrainingStats,
    advantage_weights,
)
from tianshou_offline.algorithms.continuous.base import OfflineAlgorithmBase
from tianshou_offline.algorithms.continuous.bcq import BCQ, BCQConfig, BCQStep, BCQTrainingStats
from tianshou_offline.algorithms.continuous.cql import (
    CQL,
    CalQLTransitions,
    CQLConfig,
    CQLStep,
    CQLTrainingStats,
    calql_reference_values,
)
from tianshou_offline.algorithms.continuous.crr import CRR, CRRConfig, CRRStep, CRRTrainingStats
from tianshou_offline.algorithms.continuous.dataset import TransitionDataset, Transitions
from tianshou_offline.algorithms.continuous.edac import EDAC, EDACConfig, ensemble_similarity
from tianshou_offline.algorithms.continuous.finetune import OnlineFineTuning
from tianshou_offline.algorithms.continuous.fqe import (
    FQE,
    FQEConfig,
    FQEStep,
    FQETrainingStats,
)
from tianshou_offline.algorithms.continuous.il import (
    ImitationConfig,
    ImitationLearning,
    ImitationStep,
    ImitationTrainingStats,
)
from tianshou_offline.algorithms.continuous.iql import (
    IQL,
    CosineLRSchedulerFactory,
    IQLConfig,
    IQLStep,
    IQLTrainingStats,
    expectile_loss,
)
from tianshou_offline.algorithms.continuous.lb_sac import LBSAC, LBSACConfig, sqrt_scaled_lr
from tianshou_offline.algorithms.continuous.nets import (
    MLP,
    VAE,
    CriticEnsemble,
    DeterministicActor,
    GaussianActor,
    Perturbation,
    ValueFunction,
)
from tianshou_offline.algorithms.continuous.policies import (
    BCQPolicy,
    ContinuousPolicy,
    CriticWeightedPolicy,
    DeterministicPolicy,
    GaussianPolicy,
    ObsNormalizer,
)
from tianshou_offline.algorithms.continuous.rebrac import (
    NextActionDataset,
    NextActionTransitions,
    ReBRAC,
    ReBRACConfig,
    ReBRACStep,
    ReBRACTrainingStats,
)
from tianshou_offline.algorithms.continuous.sac_n import (
    SACN,
    SACNConfig,
    SACNStep,
    SACNTrainingStats,
)
from tianshou_offline.algorithms.continuous.td3_bc import (
    TD3BC,
    TD3BCConfig,
    TD3BCStep,
    TD3BCTrainingStats,
    TD3Config,
)
from tianshou_offline.algorithms.core import (
    episode_starts,
    polyak_update,
    resolve_stats_type,
    return_to_go,
    to_floats,
)
from tianshou_offline.algorithms.presets import PRESETS, Preset, preset
from tianshou_offline.algorithms.registry import (
    CONFIG_CLASSES,
    algorithm_names,
    config_class,
    make_algorithm,
    make_config,
)
from tianshou_offline.algorithms.seeds import (
    SeedBatch,
    SeedBatchStats,
    make_seed_batch,
)

__all__ = [
    "AWAC",
    "BCQ",
    "CONFIG_CLASSES",
    "CQL",
    "CRR",
    "EDAC",
    "FQE",
    "IQL",
    "LBSAC",
    "MLP",
    "PRESETS",
    "SACN",
    "TD3BC",
    "VAE",
    "AWACConfig",
    "AWACStep",
    "AWACTrainingStats",
    "AlgorithmConfig",
    "BCQConfig",
    "BCQPolicy",
    "BCQStep",
    "BCQTrainingStats",
    "CQLConfig",
    "CQLStep",
    "CQLTrainingStats",
    "CRRConfig",
    "CRRStep",
    "CRRTrainingStats",
    "CalQLTransitions",
    "ContinuousConfig",
    "ContinuousPolicy",
    "ContinuousTDConfig",
    "CosineLRSchedulerFactory",
    "CriticEnsemble",
    "CriticWeightedPolicy",
    "DeterministicActor",
    "DeterministicPolicy",
    "DiscreteConfig",
    "DiscreteTDConfig",
    "EDACConfig",
    "FQEConfig",
    "FQEStep",
    "FQETrainingStats",
    "GaussianActor",
    "GaussianPolicy",
    "IQLConfig",
    "IQLStep",
    "IQLTrainingStats",
    "ImitationConfig",
    "ImitationLearning",
    "ImitationStep",
    "ImitationTrainingStats",
    "LBSACConfig",
    "NextActionDataset",
    "NextActionTransitions",
    "ObsNormalizer",
    "OfflineAlgorithmBase",
    "OnlineFineTuning",
    "Perturbation",
    "Preset",
    "ReBRAC",
    "ReBRACConfig",
    "ReBRACStep",
    "ReBRACTrainingStats",
    "SACNConfig",
    "SACNStep",
    "SACNTrainingStats",
    "SeedBatch",
    "SeedBatchStats",
    "TD3BCConfig",
    "TD3BCStep",
    "TD3BCTrainingStats",
    "TD3Config",
    "TransitionDataset",
    "Transitions",
    "ValueFunction",
    "advantage_weights",
    "algorithm_names",
    "calql_reference_values",
    "config_class",
    "ensemble_similarity",
    "episode_starts",
    "expectile_loss",
    "make_algorithm",
    "make_config",
    "make_seed_batch",
    "polyak_update",
    "preset",
    "resolve_stats_type",
    "return_to_go",
    "sqrt_scaled_lr",
    "to_floats",
]

# --- discrete actions: DiscreteImitationLearning, DiscreteBCQ, DiscreteCQL, DiscreteCRR ---
from tianshou_offline.algorithms.discrete.base import DiscreteOfflineAlgorithm
from tianshou_offline.algorithms.discrete.bcq import (
    DiscreteBCQ,
    DiscreteBCQConfig,
    DiscreteBCQStep,
    DiscreteBCQTrainingStats,
)
from tianshou_offline.algorithms.discrete.cql import (
    DiscreteCQL,
    DiscreteCQLConfig,
    DiscreteCQLStep,
    DiscreteCQLTrainingStats,
    quantile_huber_loss,
)
from tianshou_offline.algorithms.discrete.crr import (
    DiscreteCRR,
    DiscreteCRRConfig,
    DiscreteCRRStep,
    DiscreteCRRTrainingStats,
)
from tianshou_offline.algorithms.discrete.dataset import DiscreteTransitions, FrameDataset
from tianshou_offline.algorithms.discrete.fqe import (
    DiscreteFQE,
    DiscreteFQEConfig,
    DiscreteFQEStep,
    DiscreteFQETrainingStats,
)
from tianshou_offline.algorithms.discrete.il import (
    DiscreteImitationConfig,
    DiscreteImitationLearning,
    DiscreteImitationStep,
    DiscreteImitationTrainingStats,
)
from tianshou_offline.algorithms.discrete.nets import (
    AtariTrunk,
    DualHeadNet,
    MLPTrunk,
    QNet,
    QuantileQNet,
    make_trunk,
)
from tianshou_offline.algorithms.discrete.policies import (
    DiscreteActorPolicy,
    DiscreteBCQPolicy,
    DiscretePolicy,
    QValuePolicy,
)

# --- the Decision Transformer (continuous and discrete actions) ---
from tianshou_offline.algorithms.dt.algorithm import (
    ContinuousDTConfig,
    ContinuousDTPolicy,
    DecisionTransformer,
    DiscreteDecisionTransformer,
    DiscreteDTConfig,
    DiscreteDTPolicy,
    DTStep,
    DTTrainingStats,
    LinearWarmupLRSchedulerFactory,
    RewardInInfo,
    segment_loss,
)
from tianshou_offline.algorithms.dt.model import DecisionTransformerNet, state_encoder
from tianshou_offline.algorithms.dt.segments import SegmentDataset, Segments, episode_table

__all__ += [
    "ContinuousDTConfig",
    "ContinuousDTPolicy",
    "DTStep",
    "DTTrainingStats",
    "DecisionTransformer",
    "DecisionTransformerNet",
    "DiscreteDTConfig",
    "DiscreteDTPolicy",
    "DiscreteDecisionTransformer",
    "LinearWarmupLRSchedulerFactory",
    "RewardInInfo",
    "SegmentDataset",
    "Segments",
    "episode_table",
    "segment_loss",
    "state_encoder",
]

__all__ += [
    "AtariTrunk",
    "DiscreteActorPolicy",
    "DiscreteBCQ",
    "DiscreteBCQConfig",
    "DiscreteBCQPolicy",
    "DiscreteBCQStep",
    "DiscreteBCQTrainingStats",
    "DiscreteCQL",
    "DiscreteCQLConfig",
    "DiscreteCQLStep",
    "DiscreteCQLTrainingStats",
    "DiscreteCRR",
    "DiscreteCRRConfig",
    "DiscreteCRRStep",
    "DiscreteCRRTrainingStats",
    "DiscreteFQE",
    "DiscreteFQEConfig",
    "DiscreteFQEStep",
    "DiscreteFQETrainingStats",
    "DiscreteImitationConfig",
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
