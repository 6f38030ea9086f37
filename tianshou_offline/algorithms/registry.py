"""The registry of algorithm configs: a name and the kind of action space → a config class.

:func:`make_algorithm` is the one builder of algorithms by name (``tianshou-offline grid``,
the quality table and the speed benchmark use it)::

    algorithm = make_algorithm("td3bc", obs_space, act_space, preset="small", alpha=2.0)

Adding an algorithm is one line in :data:`CONFIG_CLASSES` (its config class; the class says
its :attr:`~tianshou_offline.algorithms.config.AlgorithmConfig.name` and action kind).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from tianshou_offline.algorithms.config import ActionKind, AlgorithmConfig, action_kind_of
from tianshou_offline.algorithms.continuous.awac import AWACConfig
from tianshou_offline.algorithms.continuous.bcq import BCQConfig
from tianshou_offline.algorithms.continuous.cql import CQLConfig
from tianshou_offline.algorithms.continuous.crr import CRRConfig
from tianshou_offline.algorithms.continuous.edac import EDACConfig
from tianshou_offline.algorithms.continuous.il import ImitationConfig
from tianshou_offline.algorithms.continuous.iql import IQLConfig
from tianshou_offline.algorithms.continuous.lb_sac import LBSACConfig
from tianshou_offline.algorithms.continuous.rebrac import ReBRACConfig
from tianshou_offline.algorithms.continuous.sac_n import SACNConfig
from tianshou_offline.algorithms.continuous.td3_bc import TD3BCConfig
from tianshou_offline.algorithms.discrete.bcq import DiscreteBCQConfig
from tianshou_offline.algorithms.discrete.cql import DiscreteCQLConfig
from tianshou_offline.algorithms.discrete.crr import DiscreteCRRConfig
from tianshou_offline.algorithms.discrete.il import DiscreteImitationConfig
from tianshou_offline.algorithms.dt.algorithm import ContinuousDTConfig, DiscreteDTConfig
from tianshou_offline.errors import DataValidationError

if TYPE_CHECKING:
    import gymnasium as gym
    import torch
    from tianshou.algorithm.algorithm_base import OfflineAlgorithm

__all__ = [
    "CONFIG_CLASSES",
    "algorithm_names",
    "config_class",
    "make_algorithm",
    "make_config",
]

CONFIG_CLASSES: tuple[type[AlgorithmConfig], ...] = (
    ImitationConfig,
    BCQConfig,
    CQLConfig,
    CRRConfig,
    TD3BCConfig,
    IQLConfig,
    ReBRACConfig,
    DiscreteImitationConfig,
    DiscreteBCQConfig,
    DiscreteCQLConfig,
    DiscreteCRRConfig,
    SACNConfig,
    EDACConfig,
    LBSACConfig,
    AWACConfig,
    ContinuousDTConfig,
    DiscreteDTConfig,
)
"""Every registered config class, one line each."""

_BY_KEY: Mapping[tuple[ActionKind, str], type[AlgorithmConfig]] = MappingProxyType(
    {(c.action_kind, c.name): c for c in CONFIG_CLASSES}
)


def _kind(action: ActionKind | gym.Space[Any]) -> ActionKind:
    if action == "continuous" or action == "discrete":
        return action
    if isinstance(action, str):
        raise DataValidationError(
            f"action kind {action!r}: expected 'continuous', 'discrete' or an action space"
        )
    return action_kind_of(action)


def algorithm_names(action: ActionKind | gym.Space[Any]) -> tuple[str, ...]:
    """The registered names for this action kind (or for data with this action space)."""
    kind = _kind(action)
    return tuple(name for k, name in _BY_KEY if k == kind)


def config_class(name: str, action: ActionKind | gym.Space[Any]) -> type[AlgorithmConfig]:
    """The config class registered as ``name`` for this action kind (or action space).

    :raises DataValidationError: no such algorithm for that kind of action.
    """
    kind = _kind(action)
    cls = _BY_KEY.get((kind, name))
    if cls is None:
        raise DataValidationError(
            f"algorithm {name!r}: not one of the {kind}-action algorithms; expected one of "
            f"{', '.join(algorithm_names(kind))}"
        )
    return cls


def make_config(
    name: str,
    action: ActionKind | gym.Space[Any],
    *,
    preset: str | None = None,
    **overrides: Any,
) -> AlgorithmConfig:
    """The config of ``name`` (an algorithm, or a variant row of the preset): the preset's
    settings (no preset: the config's defaults, the paper's) with ``overrides`` applied.

    :raises DataValidationError: an unknown algorithm or preset, or a preset without it.
    :raises UnknownHyperparameterError: an override that names no field (the message lists
        the fields).
    """
    from tianshou_offline.algorithms.presets import preset_config

    kind = _kind(action)
    base = config_class(name, kind)() if preset is None else preset_config(preset, name, kind)
    return base.replace(**overrides)


def make_algorithm(
    name: str,
    observation_space: gym.Space[Any],
    action_space: gym.Space[Any],
    *,
    preset: str | None = None,
    device: str | torch.device = "cpu",
    **overrides: Any,
) -> OfflineAlgorithm[Any]:
    """The algorithm ``name`` for data with these spaces: :func:`make_config`, then
    :meth:`~tianshou_offline.algorithms.config.AlgorithmConfig.build` on ``device``. The
    action space picks the continuous or the discrete algorithm of that name.

    :raises DataValidationError: an unknown algorithm or preset, or spaces it cannot use.
    :raises UnknownHyperparameterError: an override that names no field.
    """
    config = make_config(name, action_space, preset=preset, **overrides)
    return config.build(observation_space, action_space, device=device)
