"""The environment of a dataset family: a registered gymnasium id or a ``module:Class`` entry
point, made the same way every time, and described for the files' provenance."""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec

from tianshou_offline.errors import DataValidationError, MissingDependencyError, SourceNotFoundError

DEFAULT_ENTRY_POINT_STEPS = 1000
"""Time limit (steps per episode) of an environment given as ``module:Class`` when none is
given: D4RL's locomotion limit. A registered id keeps its own."""


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


@dataclass(frozen=True)
class EnvSource:
    """How to make the family's environment.

    :param spec: what the user gave: a registered id (``Hopper-v5``) or an entry point
        (``my_package.envs:MyEnv``, a ``gymnasium.Env`` subclass or a function returning one).
    :param kwargs: keyword arguments of the environment's constructor.
    :param max_episode_steps: the time limit (None: the registered one; for an entry point
        :data:`DEFAULT_ENTRY_POINT_STEPS`).
    """

    spec: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    max_episode_steps: int | None = None

    @property
    def is_entry_point(self) -> bool:
        return ":" in self.spec

    def env_spec(self) -> EnvSpec:
        """The gymnasium ``EnvSpec`` :meth:`make` builds from (never registered: no global
        state changes)."""
        if self.is_entry_point:
            return EnvSpec(
                id=self.spec,
                entry_point=self.spec,
                max_episode_steps=self.max_episode_steps or DEFAULT_ENTRY_POINT_STEPS,
                kwargs=dict(self.kwargs),
            )
        base = gym.spec(self.spec)
        kwargs = {**base.kwargs, **self.kwargs}
        return EnvSpec(
            id=base.id,
            entry_point=base.entry_point,
            reward_threshold=base.reward_threshold,
            nondeterministic=base.nondeterministic,
            max_episode_steps=self.max_episode_steps or base.max_episode_steps,
            order_enforce=base.order_enforce,
            disable_env_checker=base.disable_env_checker,
            kwargs=kwargs,
            additional_wrappers=base.additional_wrappers,
        )

    def make(self) -> gym.Env[Any, Any]:
        """A new instance of the environment (with its time limit)."""
        return gym.make(self.env_spec())

    def describe(self) -> dict[str, Any]:
        """JSON-able facts for provenance: the id, its version, the entry point, the
        constructor arguments, the time limit and the versions of gymnasium and of the
        environment's package."""
        spec = self.env_spec()
        module = str(spec.entry_point).split(":")[0] if isinstance(spec.entry_point, str) else ""
        package = module.split(".")[0]
        package_version: str | None = None
        try:
            package_version = str(getattr(importlib.import_module(package), "__version__", None))
        except ImportError:
            package_version = None
        out: dict[str, Any] = {
            "env": self.spec,
            "env_id": spec.id,
            "env_version": spec.version,
            "entry_point": spec.entry_point if isinstance(spec.entry_point, str) else None,
            "kwargs": json.loads(json.dumps(dict(self.kwargs), default=str)),
            "max_episode_steps": spec.max_episode_steps,
            "gymnasium_version": gym.__version__,
            "package": package or None,
            "package_version": package_version,
        }
        if package != "gymnasium":
            return out
        try:  # MuJoCo tasks: the simulator's version changes the dynamics
            mujoco = importlib.import_module("mujoco")
            if "mujoco" in module:
                out["mujoco_version"] = str(getattr(mujoco, "__version__", ""))
        except ImportError:
            pass
        return out


def resolve_env(
    spec: str,
    *,
    kwargs: Mapping[str, Any] | None = None,
    max_episode_steps: int | None = None,
) -> EnvSource:
    """Check that ``spec`` names an environment the families support and make it once.

    :param spec: a registered gymnasium id or ``module:Class`` (or ``module:function``).
    :raises SourceNotFoundError: an unknown id, a module that does not import, a missing
        attribute, or an attribute that is not an environment.
    :raises MissingDependencyError: the environment needs a package that is not installed.
    :raises DataValidationError: spaces the online agents do not handle (observations must be
        a ``Box``; actions a ``Box`` or ``Discrete``).
    """
    if max_episode_steps is not None and max_episode_steps < 1:
        raise DataValidationError(f"max_episode_steps={max_episode_steps}: expected >= 1")
    source = EnvSource(spec, dict(kwargs or {}), max_episode_steps)
    if source.is_entry_point:
        module_name, _, attr = spec.partition(":")
        if not module_name or not attr:
            raise SourceNotFoundError(
                f"--env {spec}: expected a registered gymnasium id (e.g. Hopper-v5) or an "
                "entry point module:Class (e.g. my_package.envs:MyEnv)"
            )
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise SourceNotFoundError(
                f"--env {spec}: cannot import module {module_name!r} ({_one_line(e)}); expected "
                "an importable module:Class"
            ) from e
        target = getattr(module, attr, None)
        if target is None or not callable(target):
            found = "no such attribute" if target is None else f"a {type(target).__name__}"
            raise SourceNotFoundError(
                f"--env {spec}: module {module_name!r} has {found} {attr!r}; expected a "
                "gymnasium.Env subclass or a function returning one"
            )
    else:
        try:
            gym.spec(spec)
        except gym.error.Error as e:
            raise SourceNotFoundError(
                f"--env {spec}: not a registered gymnasium id ({_one_line(e)}); expected an id "
                "such as Hopper-v5 or an entry point module:Class"
            ) from e
    try:
        env = source.make()
    except gym.error.DependencyNotInstalled as e:
        raise MissingDependencyError(f"--env {spec}: {_one_line(e)}") from e
    except (TypeError, ValueError, gym.error.Error) as e:
        raise SourceNotFoundError(
            f"--env {spec}: could not be made ({type(e).__name__}: {_one_line(e)[:200]}); "
            "expected a gymnasium.Env"
        ) from e
    try:
        if not isinstance(env.unwrapped, gym.Env):
            raise SourceNotFoundError(
                f"--env {spec}: made a {type(env.unwrapped).__name__}; expected a gymnasium.Env"
            )
        check_spaces(spec, env.observation_space, env.action_space)
    finally:
        env.close()
    return source


def check_spaces(name: str, obs: gym.Space[Any], act: gym.Space[Any]) -> None:
    """The spaces the online agents (MLP networks) handle.

    :raises DataValidationError: otherwise, naming the space found.
    """
    if not isinstance(obs, gym.spaces.Box) or not np.issubdtype(obs.dtype, np.number):
        raise DataValidationError(
            f"--env {name}: observation space is {obs}; expected a numeric Box (flattened for "
            "the agents' MLPs)"
        )
    if isinstance(act, gym.spaces.Box):
        if not (np.all(np.isfinite(act.low)) and np.all(np.isfinite(act.high))):
            raise DataValidationError(
                f"--env {name}: action space is {act}; expected finite bounds (SAC squashes "
                "its actions into them)"
            )
        return
    if not isinstance(act, gym.spaces.Discrete):
        raise DataValidationError(
            f"--env {name}: action space is {act}; expected a Box (SAC) or Discrete (DQN)"
        )
