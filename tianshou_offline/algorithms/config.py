"""Typed algorithm configs: one frozen dataclass per algorithm, the one place its defaults live.

In the style of d3rlpy's ``*Config`` and CleanRL's ``Args``: every hyperparameter of an
algorithm — network widths, learning rates, the loss's coefficients — is a keyword-only field
of its config class with its default and a one-line docstring under it, and
:meth:`AlgorithmConfig.build` turns the config and the data's spaces into the algorithm::

    config = TD3BCConfig(alpha=2.0)
    algorithm = config.build(env.observation_space, env.action_space, device="cuda")

The algorithm's constructor takes its defaults from the same fields (``tau: float =
TD3BCConfig.tau``), so a default is written once. :func:`make_algorithm` (in
:mod:`~tianshou_offline.algorithms.registry`) builds one by name, from a named preset
(:mod:`~tianshou_offline.algorithms.presets`) and keyword overrides; a name that is no field
raises :class:`~tianshou_offline.errors.UnknownHyperparameterError` listing the fields.

A config class declares its registry name (:attr:`AlgorithmConfig.name`, e.g. ``"td3bc"``) and
the kind of action it learns (:attr:`AlgorithmConfig.action_kind`); :attr:`renamed` maps
names of an earlier release to fields (accepted for one release with a
``DeprecationWarning``).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self, TypeVar, cast

import gymnasium as gym
import numpy as np
from tianshou.algorithm.optim import AdamOptimizerFactory

from tianshou_offline.algorithms.continuous.nets import ConvEncoder, CriticEnsemble
from tianshou_offline.algorithms.discrete.nets import AtariTrunk, MLPTrunk, Trunk
from tianshou_offline.errors import DataValidationError, UnknownHyperparameterError

if TYPE_CHECKING:
    import torch
    from tianshou.algorithm.algorithm_base import OfflineAlgorithm
    from torch import nn


ActionKind = Literal["continuous", "discrete"]
"""``continuous``: a ``Box`` action space; ``discrete``: a ``Discrete`` one."""

__all__ = [
    "ActionKind",
    "AlgorithmConfig",
    "ContinuousConfig",
    "ContinuousTDConfig",
    "DiscreteConfig",
    "DiscreteTDConfig",
    "action_kind_of",
    "adam",
    "box_dims",
    "discrete_actions",
    "flat_obs_dim",
    "param_default",
    "renamed_attribute",
    "renamed_kwargs",
    "warn_renamed",
]


A = TypeVar("A", bound="torch.nn.Module")


@dataclass(frozen=True, kw_only=True)
class AlgorithmConfig(ABC):
    """Base of the algorithm configs: a frozen, keyword-only dataclass of hyperparameters.

    Subclasses declare every hyperparameter as a field (default and a docstring under it),
    set :attr:`name` and :attr:`action_kind`, and implement :meth:`build`. Sequence fields
    (network widths) are stored as tuples, so a config is hashable and a list from a YAML
    grid or a command line compares equal to the default.
    """

    name: ClassVar[str]
    """The registry name (``"td3bc"``); unique per :attr:`action_kind`."""
    action_kind: ClassVar[ActionKind]
    """The kind of action space the algorithm learns from."""
    renamed: ClassVar[Mapping[str, str | tuple[str, ...]]] = {}
    """Names of an earlier release → the field (or fields) that replaced them (deprecated
    aliases; ``lr`` of the earlier grids sets every network's learning rate)."""

    compile: bool = False
    """compile the networks' forward and backward passes with torch.compile (the first step
    compiles; an algorithm that cannot be compiled trains eagerly and logs why)"""
    cuda_graphs: bool = False
    """with ``compile`` on a CUDA device: replay the compiled networks as CUDA graphs
    (torch.compile's ``reduce-overhead`` mode; a step's shapes are static); ignored on a CPU"""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))

    @abstractmethod
    def build(
        self,
        observation_space: gym.Space[Any],
        action_space: gym.Space[Any],
        *,
        device: str | torch.device = "cpu",
    ) -> OfflineAlgorithm[Any]:
        """The algorithm with these settings for data with these spaces, on ``device``.

        :raises DataValidationError: a space the algorithm cannot learn from.
        """

    def place(self, algorithm: A, device: str | torch.device) -> A:
        """``algorithm`` on ``device``, its step compiled when :attr:`compile` is set (what
        every :meth:`build` returns)."""
        placed = algorithm.to(device)
        if self.compile:
            compile_step = getattr(placed, "compile_step", None)
            if compile_step is None:
                raise TypeError(f"{type(placed).__name__}: no compile_step (not one of ours)")
            graphs = self.cuda_graphs and str(device).startswith("cuda")
            compile_step(mode="reduce-overhead" if graphs else None)
        return placed

    # ------------------------------------------------------------------ fields and overrides

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The hyperparameters, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def create(cls, **values: Any) -> Self:
        """A config of these values (the others at their defaults); deprecated names are
        accepted with a ``DeprecationWarning``.

        :raises UnknownHyperparameterError: a name that is no field (the message lists them).
        """
        return cls(**cls._checked(values))

    def replace(self, **overrides: Any) -> Self:
        """A copy with ``overrides`` applied (names checked as in :meth:`create`)."""
        return dataclasses.replace(self, **self._checked(overrides))

    def hyperparameters(self) -> dict[str, Any]:
        """The fields and their values (a JSON-ready dict: tuples become lists)."""
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in dataclasses.fields(self)
        }

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        """Each field's resolved type annotation."""
        hints = typing.get_type_hints(cls)
        return {name: hints[name] for name in cls.field_names()}

    @classmethod
    def _checked(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        fields = cls.field_names()
        out: dict[str, Any] = {}
        unknown: list[str] = []
        for key, value in values.items():
            if key in cls.renamed and key not in fields:
                new = cls.renamed[key]
                targets = (new,) if isinstance(new, str) else new
                warn_renamed(
                    f"{cls.__name__} hyperparameter", key, " and ".join(targets), stacklevel=4
                )
                both = [t for t in targets if t in values]
                if both:
                    raise UnknownHyperparameterError(
                        f"algorithm {cls.name!r}: both {key!r} and its new name {both[0]!r} given"
                    )
                out.update(dict.fromkeys(targets, value))
                continue
            if key not in fields:
                unknown.append(key)
            out[key] = value
        if unknown:
            raise UnknownHyperparameterError(
                f"algorithm {cls.name!r} ({cls.action_kind} actions): no hyperparameter "
                f"{', '.join(sorted(unknown))}; expected some of {', '.join(fields)}"
            )
        return out


F = TypeVar("F", bound=Callable[..., Any])


def renamed_kwargs(renames: Mapping[str, str]) -> Callable[[F], F]:
    """A decorator that accepts the keyword arguments of an earlier release under their old
    names (``{old: new}``), with a ``DeprecationWarning``, for one release."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{fn.__qualname__}: both {old!r} and {new!r} given")
                    warn_renamed(f"{fn.__qualname__} keyword", old, new)
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return cast(F, wrapper)

    return decorate


def param_default(fn: Callable[..., Any], param: str) -> Any:
    """The default of ``fn``'s parameter ``param``: a config field whose default is a network's
    or a policy's (written once, in that constructor)."""
    default = inspect.signature(fn).parameters[param].default
    if default is inspect.Parameter.empty:
        raise TypeError(f"{fn.__qualname__}: parameter {param!r} has no default")
    return default


def warn_renamed(what: str, old: str, new: str, *, stacklevel: int = 3) -> None:
    """The ``DeprecationWarning`` of a name that was renamed (kept for one release)."""
    warnings.warn(
        f"{what} {old!r} is deprecated and will be removed in the next release; use {new!r}",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


class renamed_attribute:
    """A read-only attribute of an earlier release under its old name (the name it is
    assigned to in the class body): reading it gives attribute ``new``, with a
    ``DeprecationWarning`` naming the class, for one release."""

    def __init__(self, new: str) -> None:
        self.new = new
        self.old = new
        self.owner = "?"

    def __set_name__(self, owner: type, name: str) -> None:
        self.old = name
        self.owner = owner.__name__

    def __get__(self, obj: object, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        warn_renamed(f"{self.owner} attribute", self.old, self.new)
        return getattr(obj, self.new)


def action_kind_of(action_space: gym.Space[Any]) -> ActionKind:
    """``discrete`` for a ``Discrete`` space, ``continuous`` for a ``Box``.

    :raises DataValidationError: any other space.
    """
    if isinstance(action_space, gym.spaces.Discrete):
        return "discrete"
    if isinstance(action_space, gym.spaces.Box):
        return "continuous"
    raise DataValidationError(f"action space {action_space}: expected a Box or Discrete")


def flat_obs_dim(observation_space: gym.Space[Any]) -> int:
    """The size of a ``Box`` observation, flattened.

    :raises DataValidationError: a space that is not a ``Box``.
    """
    if not isinstance(observation_space, gym.spaces.Box) or observation_space.shape is None:
        raise DataValidationError(
            f"observation space {observation_space}: expected a Box (the configs build MLPs "
            "of flat observations)"
        )
    return int(np.prod(observation_space.shape))


def box_dims(observation_space: gym.Space[Any], action_space: gym.Space[Any]) -> tuple[int, int]:
    """(observation size, action size) of ``Box`` spaces, both flattened.

    :raises DataValidationError: a space that is not a ``Box``.
    """
    if not isinstance(action_space, gym.spaces.Box) or action_space.shape is None:
        raise DataValidationError(f"action space {action_space}: expected a Box")
    return flat_obs_dim(observation_space), int(np.prod(action_space.shape))


def adam(lr: float) -> AdamOptimizerFactory:
    """Tianshou's Adam factory at learning rate ``lr`` (the algorithms switch it to PyTorch's
    fused kernel where they can, see :mod:`~tianshou_offline.algorithms._optim`)."""
    return AdamOptimizerFactory(lr=float(lr))


@dataclass(frozen=True, kw_only=True)
class ContinuousConfig(AlgorithmConfig):
    """The settings every continuous-action config has: ReLU MLPs, the policy's observation
    normaliser and, for pixel observations, a convolutional encoder in front of each network
    (:meth:`network_input`; configs whose ``build`` uses it set :attr:`conv_encoder`)."""

    action_kind: ClassVar[ActionKind] = "continuous"
    conv_encoder: ClassVar[bool] = False
    """Whether ``build`` puts :meth:`network_input`'s encoder in front of its networks."""

    hidden_sizes: tuple[int, ...] = (256, 256)
    """widths of the hidden layers of every network"""
    normalize_obs: bool = False
    """normalise observations with the data's mean and std (kept in the policy)"""
    max_grad_norm: float | None = None
    """clip every gradient's norm to this (None: no clipping)"""
    encoder: Literal["auto", "flat", "conv"] = "auto"
    """'conv': a pixel encoder per network for (C, H, W) images; 'flat'; 'auto': conv for 3-D"""
    encoder_features: int = 50
    """output size of each network's convolutional encoder"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.encoder not in ("auto", "flat", "conv"):
            raise DataValidationError(
                f"{self.name}: encoder={self.encoder!r}; expected 'auto', 'flat' or 'conv'"
            )
        if self.encoder == "conv" and not self.conv_encoder:
            raise DataValidationError(
                f"{self.name}: encoder='conv' is not offered by this algorithm (it is by il, "
                "td3bc, iql and cql); expected 'auto' or 'flat'"
            )

    def network_input(
        self, observation_space: gym.Space[Any]
    ) -> tuple[int, Callable[[], nn.Module | None]]:
        """``(D, new_encoder)``: the input size of the networks' MLPs and what makes the
        ``encoder`` of each network ``build`` makes — a new
        :class:`~tianshou_offline.algorithms.continuous.nets.ConvEncoder` (``D`` =
        :attr:`encoder_features`) when :attr:`encoder` picks convolutions, else None
        (``D`` = the flattened observation size).

        :raises DataValidationError: ``encoder='conv'`` for a space that is not ``(C, H, W)``.
        """
        dim = flat_obs_dim(observation_space)
        shape = tuple(observation_space.shape or ())
        conv = self.encoder == "conv" or (
            self.encoder == "auto" and self.conv_encoder and len(shape) == 3
        )
        if not conv:
            return dim, lambda: None
        if len(shape) != 3:
            raise DataValidationError(
                f"{self.name}: encoder='conv' needs (C, H, W) image observations; the "
                f"observation space has shape {shape}"
            )
        features = int(self.encoder_features)

        def new_encoder() -> nn.Module:
            return ConvEncoder(shape, features)

        return features, new_encoder


@dataclass(frozen=True, kw_only=True)
class ContinuousTDConfig(ContinuousConfig):
    """A continuous-action actor-critic: learning rates, discount, targets, critics."""

    actor_lr: float = 3e-4
    """Adam learning rate of the actor"""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics"""
    gamma: float = 0.99
    """discount factor"""
    tau: float = 0.005
    """Polyak factor of the target networks"""
    n_step_return_horizon: int = 1
    """n of the n-step TD target"""
    num_critics: int = param_default(CriticEnsemble, "num_critics")
    """members of the critic ensemble"""

    renamed: ClassVar[Mapping[str, str | tuple[str, ...]]] = {
        "n_step": "n_step_return_horizon",
        "lr": ("actor_lr", "critic_lr"),
    }


@dataclass(frozen=True, kw_only=True)
class DiscreteConfig(AlgorithmConfig):
    """The settings every discrete-action config has: a trunk (Nature-DQN convolutions for
    ``(C, H, W)`` image observations, else an MLP of ``trunk_sizes``) with heads of
    ``hidden_sizes``, one Adam optimizer."""

    action_kind: ClassVar[ActionKind] = "discrete"

    lr: float = 1e-4
    """Adam learning rate"""
    hidden_sizes: tuple[int, ...] = (512,)
    """hidden widths of each head on the trunk"""
    trunk_sizes: tuple[int, ...] = (64, 64)
    """widths of the MLP trunk of flat observations"""
    scale_obs: bool = True
    """feed image observations / 255 to the convolutions"""
    max_grad_norm: float | None = None
    """clip the gradient's norm to this (None: no clipping)"""

    renamed: ClassVar[Mapping[str, str | tuple[str, ...]]] = {"head_sizes": "hidden_sizes"}

    def trunk(self, observation_space: gym.Space[Any]) -> Trunk:
        """A new trunk for these observations: :class:`AtariTrunk` for ``(C, H, W)`` images,
        else an :class:`MLPTrunk` of :attr:`trunk_sizes` over the flattened observation."""
        shape = getattr(observation_space, "shape", None)
        if isinstance(observation_space, gym.spaces.Box) and shape is not None and len(shape) == 3:
            c, h, w = (int(x) for x in shape)
            return AtariTrunk(c, h, w, scale_obs=self.scale_obs)
        return MLPTrunk(flat_obs_dim(observation_space), list(self.trunk_sizes))


@dataclass(frozen=True, kw_only=True)
class DiscreteTDConfig(DiscreteConfig):
    """A discrete-action Q-learner: discount, n-step targets, target-network copies."""

    gamma: float = 0.99
    """discount factor"""
    n_step_return_horizon: int = 1
    """n of the n-step TD target"""
    target_update_freq: int = 0
    """gradient steps between target-network copies (0: no target network)"""

    renamed: ClassVar[Mapping[str, str | tuple[str, ...]]] = {
        "head_sizes": "hidden_sizes",
        "n_step": "n_step_return_horizon",
    }


def discrete_actions(action_space: gym.Space[Any]) -> int:
    """The number of actions of a ``Discrete`` space.

    :raises DataValidationError: any other space.
    """
    if not isinstance(action_space, gym.spaces.Discrete):
        raise DataValidationError(f"action space {action_space}: expected a Discrete")
    return int(action_space.n)
