"""The algorithms an experiment grid names: the registry of
:mod:`tianshou_offline.algorithms` at the ``small`` preset.

Names: ``il`` (behaviour cloning), ``bcq``, ``cql``, ``crr``, ``td3bc``, ``iql``, ``rebrac``,
``sacn``, ``edac``, ``lbsac``, ``awac``, ``dt`` for continuous (``Box``) actions and ``il``,
``bcq``, ``cql``, ``crr``, ``dt`` for discrete actions (every registered algorithm but
:data:`NOT_IN_GRIDS`);
the action space of the data picks the side. A grid's ``overrides`` replace the preset's
settings field by field (the fields of the algorithm's ``*Config``); an unknown key is an
error naming the fields there are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tianshou_offline.errors import DataValidationError

if TYPE_CHECKING:
    import gymnasium as gym
    from tianshou.algorithm.algorithm_base import OfflineAlgorithm

    from tianshou_offline.algorithms.seeds import SeedBatch

GRID_PRESET = "small"
"""The preset of a grid's cells (:data:`tianshou_offline.algorithms.PRESETS`)."""

NOT_IN_GRIDS: tuple[str, ...] = ()
"""Registered algorithms a grid does not offer (none today)."""

RETURN_CONDITIONED: tuple[str, ...] = ("dt",)
"""Algorithms whose policy conditions on a target return (the Decision Transformer): a grid
evaluates them on environments wrapped in ``RewardInInfo``, and a cell that sets no
``target_return`` conditions on the best episode return of its dataset."""


def algorithm_names(action_space: gym.Space[Any]) -> tuple[str, ...]:
    """The names a grid can use for data with ``action_space``."""
    from tianshou_offline.algorithms.registry import algorithm_names as names

    return tuple(n for n in names(action_space) if n not in NOT_IN_GRIDS)


def hyperparameters(
    name: str, action_space: gym.Space[Any], overrides: Mapping[str, Any] = {}
) -> dict[str, Any]:
    """The settings of ``name`` for ``action_space`` (the grid's preset), with ``overrides``.

    :raises DataValidationError: an unknown algorithm, or an override it does not have.
    """
    from tianshou_offline.algorithms.registry import make_config

    _check_offered(name, action_space)
    return make_config(name, action_space, preset=GRID_PRESET, **overrides).hyperparameters()


def build_algorithm(
    name: str,
    observation_space: gym.Space[Any],
    action_space: gym.Space[Any],
    overrides: Mapping[str, Any] = {},
) -> OfflineAlgorithm[Any]:
    """The algorithm ``name`` for data with these spaces (see the module doc).

    :raises DataValidationError: unknown name or override; observations that are not a
        flat ``Box``.
    """
    from tianshou_offline.algorithms.registry import make_algorithm

    _check_offered(name, action_space)
    return make_algorithm(name, observation_space, action_space, preset=GRID_PRESET, **overrides)


def _check_offered(name: str, action_space: gym.Space[Any]) -> None:
    if name in NOT_IN_GRIDS:
        raise DataValidationError(
            f"algorithm {name!r}: not offered to grids; expected one of "
            f"{', '.join(algorithm_names(action_space))}"
        )


def build_seed_batch(
    name: str,
    observation_space: gym.Space[Any],
    action_space: gym.Space[Any],
    overrides: Mapping[str, Any],
    seeds: Sequence[int],
) -> SeedBatch[Any, Any, Any]:
    """The seeds of ``name`` as one seed batch at the grid's preset (a grid file's
    ``seed_batch: true``; seed k built as :func:`build_algorithm` after
    ``torch.manual_seed(k)``).

    :raises DataValidationError: as :func:`build_algorithm`, or no seed-batched form.
    """
    from tianshou_offline.algorithms.seeds import make_seed_batch

    _check_offered(name, action_space)
    return make_seed_batch(
        name, observation_space, action_space, seeds=seeds, preset=GRID_PRESET, **overrides
    )
