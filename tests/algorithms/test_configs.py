"""The algorithm configs, their registry and the presets (``tianshou_offline.algorithms``)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import warnings
from pathlib import Path
from typing import Any, get_args

import gymnasium as gym
import numpy as np
import pytest
import torch

from tests.helpers.algorithm_fingerprint import fingerprint
from tests.helpers.configs import OBS, SPACES
from tianshou_offline.algorithms import (
    BCQ,
    CONFIG_CLASSES,
    CRR,
    PRESETS,
    AlgorithmConfig,
    BCQConfig,
    BCQPolicy,
    DiscreteBCQConfig,
    TD3BCConfig,
    algorithm_names,
    config_class,
    make_algorithm,
    make_config,
)
from tianshou_offline.algorithms.config import ActionKind, adam
from tianshou_offline.errors import DataValidationError, UnknownHyperparameterError

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
        if cls.name == "cql" and name == "alpha":  # "auto": the config's auto_alpha
            assert param.default == "auto" and defaults["auto_alpha"] is True
            continue
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


# --------------------------------------------------------------------------- presets: every row

ROWS = json.loads((Path(__file__).parent / "algorithm_rows.json").read_text())
"""Fingerprints (``tests/helpers/algorithm_fingerprint.py``) of the algorithms the grid, the quality
table (both scales), the speed benchmarks and every example built with their own tables and
builders, before those moved into the presets: ``preset/kind/name`` → fingerprint."""

ROW_SPACES: dict[str, tuple[gym.Space[Any], gym.Space[Any]]] = {
    "continuous": (
        gym.spaces.Box(-np.inf, np.inf, (5,), np.float32),
        gym.spaces.Box(-1.0, 1.0, (3,), np.float32),
    ),
    "discrete": (gym.spaces.Box(-np.inf, np.inf, (4,), np.float32), gym.spaces.Discrete(3)),
    "speed-cartpole": (gym.spaces.Box(-np.inf, np.inf, (4,), np.float32), gym.spaces.Discrete(2)),
    "atari": (gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(6)),
}
"""The spaces each row was built for."""

EXAMPLE_RUN: dict[str, dict[str, Any]] = {}
"""Settings the examples derive from their other flags (IQL's ``--actor-cosine-lr 1``: the
cosine schedule over ``--epoch`` × ``--step-per-epoch``, off by default)."""


def _row_spaces(preset_name: str, kind: str) -> tuple[gym.Space[Any], gym.Space[Any]]:
    if preset_name in ("atari", "speed-atari"):
        return ROW_SPACES["atari"]
    return ROW_SPACES.get(preset_name, ROW_SPACES[kind])


@pytest.mark.parametrize("row", sorted(ROWS))
def test_every_preset_row_builds_the_algorithm_of_before(row: str) -> None:
    """Every row the examples, the grid, the quality table and the speed benchmarks use
    builds the same networks, settings and optimizers as their own builders did."""
    preset_name, kind_name, name = row.split("/")
    kind: ActionKind = "discrete" if kind_name == "discrete" else "continuous"
    observation_space, action_space = _row_spaces(preset_name, kind)
    torch.manual_seed(0)
    algorithm = make_algorithm(
        name, observation_space, action_space, preset=preset_name, **EXAMPLE_RUN.get(row, {})
    )
    if preset_name == "atari":  # the examples act ε-greedily (--eps-test)
        algorithm.policy.eps_inference = 0.001
    expected = dict(ROWS[row])
    batch_size = expected.pop("batch_size", None)
    expected.pop("spaces", None)
    built = fingerprint(algorithm)
    assert built == expected
    if batch_size is not None:
        assert PRESETS[preset_name].batch_size_of(name, kind) == batch_size
    _assert_holds_the_preset_settings(built, PRESETS[preset_name].config(name, kind))


def _assert_holds_the_preset_settings(built: dict[str, Any], config: AlgorithmConfig) -> None:
    """Every setting of ``config`` the built algorithm keeps under the field's name (an
    attribute of the algorithm, else of its policy), its ``n_step`` and every learning rate
    (``actor_lr`` → ``actor_optim``, ``lr`` → ``optim``; not under a warm-up schedule)
    hold the preset's value: a config whose ``build`` drops or swaps a setting fails here
    even where the fingerprint of ``algorithm_rows.json`` was recorded from it."""
    settings, optimizers = built["settings"], built["optimizers"]
    checked = 0
    for field, value in config.hyperparameters().items():
        if value is None:  # derived when built (CQL's target entropy −A)
            continue
        value = list(value) if isinstance(value, tuple) else value
        # the algorithm's own attribute, else the policy's (BCQ's policy samples its own number)
        key = field if field in settings else f"policy.{field}"
        if key in settings:
            assert settings[key] == value, f"{config.name}: {key}"
            checked += 1
        optim = "optim" if field == "lr" else field.removesuffix("_lr") + "_optim"
        # a warm-up schedule (the Decision Transformer's) starts below the configured rate
        if field.endswith("lr") and optim in optimizers and not built["lr_schedulers"]:
            assert optimizers[optim]["lr"] == pytest.approx(value), f"{config.name}: {optim}"
            checked += 1
    if "n_step_return_horizon" in config.field_names():
        assert built["n_step"] == config.hyperparameters()["n_step_return_horizon"]
    assert checked >= 1, f"{config.name}: no setting of the preset found in the algorithm"


def test_every_preset_row_is_checked() -> None:
    """Every row of every preset is in ``algorithm_rows.json``: the algorithms that had a
    builder of their own before the presets with what that builder built, the others (the
    Decision Transformer, SAC-N, EDAC, LB-SAC and AWAC outside the speed benchmark) with
    what their preset built when they were added to this file."""
    covered = {tuple(r.split("/")) for r in ROWS}
    for p in PRESETS.values():
        for kind in get_args(ActionKind):
            for name in p.names(kind):
                assert (p.name, kind, name) in covered


def _old(**kwargs: Any) -> dict[str, Any]:
    """Keyword arguments under names the type annotations no longer have."""
    return kwargs


def test_renamed_constructor_keywords_warn_and_still_work() -> None:
    """The names of the previous release (``num_sampled_action``, ``num_action_samples``,
    ``num_candidate_actions``, ``target_update_interval``) keep working, with a warning."""
    bcq = make_algorithm("bcq", OBS, SPACES["continuous"], preset="small")
    assert isinstance(bcq, BCQ)
    p = bcq.policy
    with pytest.warns(DeprecationWarning, match="'num_candidate_actions' is deprecated"):
        policy = BCQPolicy(
            vae=p.vae, perturbation=p.perturbation, critics=p.critics,
            action_space=p.action_space, observation_space=OBS, **_old(num_candidate_actions=7),
        )  # fmt: skip
    assert policy.num_sampled_actions == 7
    with pytest.warns(DeprecationWarning, match="'num_sampled_action' is deprecated"):
        old = BCQ(
            policy=policy, vae_optim=adam(1e-3), actor_perturbation_optim=adam(1e-3),
            critic_optim=adam(1e-3), **_old(num_sampled_action=3),
        )  # fmt: skip
    assert old.num_sampled_actions == 3
    crr = make_algorithm("crr", OBS, SPACES["continuous"], preset="small")
    assert isinstance(crr, CRR)
    with pytest.warns(DeprecationWarning) as caught:
        old_crr = CRR(
            policy=crr.policy, policy_optim=adam(1e-3), critics=crr.critics,
            critic_optim=adam(1e-3), **_old(num_action_samples=5, target_update_interval=2),
        )  # fmt: skip
    assert {str(w.message).split("'")[1] for w in caught} == {
        "num_action_samples",
        "target_update_interval",
    }
    assert (old_crr.num_sampled_actions, old_crr.target_update_freq) == (5, 2)
    # the attributes keep their old names too (read-only aliases, with a warning)
    with pytest.warns(DeprecationWarning, match="CRR attribute 'target_update_interval'"):
        assert old_crr.target_update_interval == 2
    with pytest.warns(DeprecationWarning, match="BCQPolicy attribute 'num_candidate_actions'"):
        assert policy.num_candidate_actions == 7
    with pytest.warns(DeprecationWarning, match="BCQ attribute 'num_sampled_action'"):
        assert old.num_sampled_action == 3
    with pytest.raises(TypeError, match="both 'num_action_samples' and 'num_sampled_actions'"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            CRR(
                policy=crr.policy, policy_optim=adam(1e-3), critics=crr.critics,
                critic_optim=adam(1e-3), num_sampled_actions=4, **_old(num_action_samples=5),
            )  # fmt: skip


def test_old_grid_keys_still_work() -> None:
    """A grid file of the previous release: ``lr`` sets every network's learning rate,
    ``threshold``/``n_step``/``head_sizes``/``num_sampled_action`` their new fields."""
    with pytest.warns(DeprecationWarning):
        td3bc = make_config("td3bc", "continuous", preset="small", lr=1e-3)
        bcq = make_config(
            "bcq", "discrete", preset="small", threshold=0.5, n_step=2, head_sizes=[32]
        )
        continuous_bcq = make_config("bcq", "continuous", num_sampled_action=4)
    assert isinstance(td3bc, TD3BCConfig) and isinstance(bcq, DiscreteBCQConfig)
    assert (td3bc.actor_lr, td3bc.critic_lr) == (1e-3, 1e-3)
    assert (bcq.unlikely_action_threshold, bcq.n_step_return_horizon) == (0.5, 2)
    assert bcq.hidden_sizes == (32,)
    assert isinstance(continuous_bcq, BCQConfig) and continuous_bcq.num_sampled_actions == 4
