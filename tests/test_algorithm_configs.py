"""The algorithm configs, their registry and the presets (``tianshou_offline.algorithms``)."""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from tianshou_offline.algorithms import (
    CONFIG_CLASSES,
    PRESETS,
    AlgorithmConfig,
    algorithm_names,
    config_class,
    make_algorithm,
    make_config,
)
from tianshou_offline.errors import DataValidationError, UnknownHyperparameterError

OBS = gym.spaces.Box(-1.0, 1.0, (5,), np.float32)
SPACES: dict[str, gym.Space[Any]] = {
    "continuous": gym.spaces.Box(-2.0, 2.0, (3,), np.float32),
    "discrete": gym.spaces.Discrete(4),
}
IDS = [f"{c.action_kind}-{c.name}" for c in CONFIG_CLASSES]


@pytest.mark.parametrize("cls", CONFIG_CLASSES, ids=IDS)
def test_an_unknown_override_is_an_error_listing_the_fields(
    cls: type[AlgorithmConfig],
) -> None:
    with pytest.raises(UnknownHyperparameterError) as info:
        make_algorithm(cls.name, OBS, SPACES[cls.action_kind], no_such_setting=1)
    message = str(info.value)
    assert "no_such_setting" in message
    for name in cls.field_names():
        assert name in message
    assert isinstance(info.value, DataValidationError)  # what the grid's callers catch


@pytest.mark.parametrize("cls", CONFIG_CLASSES, ids=IDS)
def test_configs_are_frozen_keyword_only_and_documented(cls: type[AlgorithmConfig]) -> None:
    config = cls()
    field = cls.field_names()[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(config, field, getattr(config, field))
    positional: tuple[Any, ...] = (getattr(config, field),)
    with pytest.raises(TypeError):
        cls(*positional)
    assert config_class(cls.name, cls.action_kind) is cls
    assert cls.name in algorithm_names(cls.action_kind)
    assert hash(config.replace(**{field: getattr(config, field)})) == hash(config)


@pytest.mark.parametrize("cls", CONFIG_CLASSES, ids=IDS)
def test_the_constructor_takes_its_defaults_from_the_config(cls: type[AlgorithmConfig]) -> None:
    """A constructor parameter named like a config field defaults to that field's default
    (the value is written once, in the config)."""
    algorithm = cls().build(OBS, SPACES[cls.action_kind])
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    shared = 0
    for name, param in inspect.signature(type(algorithm).__init__).parameters.items():
        if name in defaults and param.default is not inspect.Parameter.empty:
            assert param.default == defaults[name], name
            shared += 1
    assert shared > 0 or cls.name == "il"


def test_renamed_hyperparameters_warn_and_still_work() -> None:
    with pytest.warns(DeprecationWarning, match="'n_step' is deprecated.*n_step_return_horizon"):
        config = make_config("td3bc", "continuous", n_step=3)
    assert config == make_config("td3bc", "continuous", n_step_return_horizon=3)
    with pytest.raises(UnknownHyperparameterError, match="both 'n_step'"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            make_config("td3bc", "continuous", n_step=3, n_step_return_horizon=2)


def test_unknown_algorithm_and_preset_are_errors() -> None:
    with pytest.raises(DataValidationError, match="'sac'.*expected one of .*td3bc"):
        make_config("sac", "continuous")
    with pytest.raises(DataValidationError, match="preset 'huge': expected one of .*small"):
        make_config("td3bc", "continuous", preset="huge")


def test_lists_from_a_grid_file_equal_the_tuple_defaults() -> None:
    config = make_config("td3bc", "continuous", preset="small", hidden_sizes=[64, 64])
    assert config == PRESETS["small"].config("td3bc", "continuous")
    assert config.hyperparameters()["hidden_sizes"] == [64, 64]
