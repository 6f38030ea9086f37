"""Deployable policy exports: a policy checkpoint → one TorchScript or ONNX graph that takes
raw observations and returns actions in the environment's units.

:func:`export_policy` reads any checkpoint :mod:`tianshou_offline.recording.policies` writes
(every policy of :mod:`tianshou_offline.algorithms`, continuous and discrete, flat and image
observations; the version-1 MLP and Atari checkpoints) and traces the acting path the Python
policy runs between Tianshou's ``Collector`` and the env:

- continuous: flatten, ``float32``, the policy's :class:`~tianshou_offline.algorithms.ObsNormalizer`
  (dataset statistics, when the policy normalises), the policy's action in ``[-1, 1]``, its
  bounding (clip or none, as ``action_bound_method``) and Tianshou's ``map_action`` scaling to
  the action space's ``[low, high]``: ``obs (B, *obs_shape) float32 → act (B, *act_shape)
  float32``;
- discrete: ``uint8`` frames stay ``uint8`` (the trunk scales them, as in training), other
  observations become ``float32``; greedy actions (BCQ's constrained argmax, the argmax of
  Q-values, quantile means or policy logits): ``obs → act (B,) int64`` (plus the action
  space's ``start`` for version-1 MLP checkpoints).

A Decision Transformer checkpoint (``net.type`` ``"decision_transformer"``) acts on the episode
so far, so its graph takes the policy's context instead of one observation: ``obs (B, K,
*obs_shape)`` raw, ``actions (B, K, *act_shape)`` the actions taken (env units; int64 for
discrete), ``rtg (B, K)`` returns-to-go in the env's reward units (the target return at an
episode's first step, then lowered by each reward received), ``timesteps (B, K)`` int64 and
``mask (B, K)`` bool (True for real steps; a short context is padded on the left) →
``act``, the next action in the env's units. The metadata's ``"decision_transformer"`` entry
holds ``context`` (K), ``target_return`` and ``rtg_scale``, its ``"inputs"`` every input.

The batch dimension is dynamic in both formats (``obs``/``act`` are the ONNX input and output
names). The file carries a JSON description (spaces, the policy's class, the mode) as the
TorchScript extra file ``tianshou_offline.json`` and as the ONNX metadata entry of that name.

Sampling policies. A policy that draws random numbers when it acts exports only its
**deterministic form**, and only when asked (``deterministic=True``, CLI ``--deterministic``):
every random draw is replaced by its distribution's mode, so the graph is a function of the
observation:

- ``BCQPolicy`` (continuous BCQ, Fujimoto et al. 2019): the VAE's latent is its prior's mode
  ``z = 0`` instead of ``num_sampled_actions`` clipped draws; all candidates are then the
  same decoded, perturbed action, so the critic's ranking is moot and the graph holds no
  critic: ``ξ_φ(s, G_ω(s, z=0))``;
- ``CriticWeightedPolicy`` (CRR's critic-weighted policy): the proposals are the Gaussian's
  mode (``tanh(mean)`` squashed, else ``mean`` clipped to ``[-1, 1]``), so the softmax over
  their Q-values is moot;
- ``GaussianPolicy`` without ``deterministic_eval`` and ``DiscreteActorPolicy`` without
  ``deterministic_eval``: the Gaussian's mode, the logits' argmax.

These equal the Python policy with the randomness switched off (BCQ with ``latent_clip = 0``,
CRR with a standard deviation of 0), which is how the tests check them. Deterministic
policies export unchanged (the flag changes nothing for them).

ONNX uses PyTorch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``) on
the same traced graph the TorchScript file holds: it needs ``onnx`` but not ``onnxscript``,
and exports a policy in well under a second (the ``torch.export``-based exporter is
slower and needs ``onnxscript``).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import gymnasium as gym
import numpy as np

from tianshou_offline.errors import (
    DatasetFormatError,
    DataValidationError,
    MissingDependencyError,
    OutputExistsError,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)

ExportFormat = Literal["torchscript", "onnx"]
FORMATS: tuple[ExportFormat, ...] = ("torchscript", "onnx")
METADATA_KEY = "tianshou_offline.json"
"""The name of the JSON description in an exported file (TorchScript extra file, ONNX
metadata entry)."""
ONNX_OPSET = 17


@dataclass(frozen=True)
class PolicyExport:
    """What :func:`export_policy` wrote.

    :ivar path: the exported file.
    :ivar format: ``"torchscript"`` or ``"onnx"``.
    :ivar policy: the policy's class (e.g. ``"BCQPolicy"``, ``"QValuePolicy"``; ``"mlp"`` for
        a version-1 Tianshou ``Net``).
    :ivar mode: ``"deterministic"`` (the policy acts deterministically),
        ``"deterministic form"`` (a sampling policy exported with ``deterministic=True``).
    :ivar obs_shape: the observation shape one batch row has.
    :ivar obs_dtype: the input's dtype (``"float32"`` or ``"uint8"``).
    :ivar act_shape: one action's shape (``()`` for discrete actions).
    :ivar act_dtype: ``"float32"`` or ``"int64"``.
    :ivar metadata: the JSON description stored in the file.
    """

    path: Path
    format: ExportFormat
    policy: str
    mode: str
    obs_shape: tuple[int, ...]
    obs_dtype: str
    act_shape: tuple[int, ...]
    act_dtype: str
    metadata: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# the graphs
# --------------------------------------------------------------------------------------


def _graph_classes() -> dict[str, type[nn.Module]]:
    """The graph modules (defined lazily: this module imports torch only when exporting)."""
    import torch
    from torch import nn

    class ContinuousGraph(nn.Module):
        """Raw obs → normaliser → ``select`` ([-1, 1]) → bound → scale to ``[low, high]``."""

        low: torch.Tensor
        high: torch.Tensor

        def __init__(
            self,
            normalizer: nn.Module,
            select: nn.Module,
            *,
            bound: str | None,
            low: np.ndarray | None,
            high: np.ndarray | None,
            act_shape: tuple[int, ...],
        ) -> None:
            super().__init__()
            self.normalizer = normalizer
            self.select = select
            self.bound = bound
            self.scale = low is not None and high is not None
            flat = int(np.prod(act_shape))
            self.register_buffer(
                "low", torch.as_tensor(np.zeros(flat) if low is None else low, dtype=torch.float32)
            )
            self.register_buffer(
                "high",
                torch.as_tensor(np.ones(flat) if high is None else high, dtype=torch.float32),
            )
            self.act_shape = act_shape

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            x = obs.reshape(obs.shape[0], -1).to(torch.float32)
            act = cast(torch.Tensor, self.select(self.normalizer(x)))
            if self.bound == "clip":
                act = act.clamp(-1.0, 1.0)
            elif self.bound == "tanh":
                act = torch.tanh(act)
            if self.scale:  # Tianshou's Policy.map_action
                act = self.low + (self.high - self.low) * (act + 1.0) / 2.0
            return act.reshape((-1, *self.act_shape))

    class ActorOutput(nn.Module):
        """A deterministic actor's action."""

        def __init__(self, actor: nn.Module) -> None:
            super().__init__()
            self.actor = actor

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return cast(torch.Tensor, self.actor(x))

    class GaussianMode(nn.Module):
        """A Gaussian actor's mode: ``tanh(mean)`` (squashed) or ``mean`` clipped."""

        def __init__(self, actor: nn.Module, squash: bool) -> None:
            super().__init__()
            self.actor = actor
            self.squash = squash

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            mean = self.actor(x)[0]
            return torch.tanh(mean) if self.squash else mean.clamp(-1.0, 1.0)

    class BCQMode(nn.Module):
        """``ξ_φ(s, G_ω(s, z = 0))``: BCQ's candidate at the latent prior's mode."""

        def __init__(self, vae: nn.Module, perturbation: nn.Module, latent_dim: int) -> None:
            super().__init__()
            self.vae = vae
            self.perturbation = perturbation
            self.latent_dim = latent_dim

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = torch.zeros_like(x[:, :1]).expand(-1, self.latent_dim)
            decoded = self.vae.get_submodule("decoder")(x, z)  # VAE.decode(x, z): tanh(decoder)
            return cast(torch.Tensor, self.perturbation(x, torch.tanh(decoded)))

    class DiscreteGraph(nn.Module):
        """Obs (``uint8`` kept, else ``float32``) → ``values`` → argmax (+ start)."""

        def __init__(self, values: nn.Module, *, keep_uint8: bool, start: int) -> None:
            super().__init__()
            self.values = values
            self.keep_uint8 = keep_uint8
            self.start = start

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            x = obs if self.keep_uint8 and obs.dtype == torch.uint8 else obs.to(torch.float32)
            act = cast(torch.Tensor, self.values(x)).argmax(dim=1)
            return act + self.start if self.start else act

    class Values(nn.Module):
        """The scores whose argmax is the action, from a network's output: Q-values
        (``"q"``), quantile means (``"quantiles"``), logits (``"logits"``, element
        ``index`` of a tuple output), BCQ's Q over allowed actions (``"bcq"``: τ as
        :func:`~tianshou_offline.algorithms.discrete.policies.allowed_actions`) or a Tianshou
        ``Net``'s first output (``"tianshou_net"``)."""

        def __init__(
            self, model: nn.Module, head: str, *, index: int | None = None,
            log_threshold: float = float("-inf"),
        ) -> None:  # fmt: skip
            super().__init__()
            self.model = model
            self.head = head
            self.index = index
            self.log_threshold = log_threshold

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.model(x)
            if self.head == "bcq":
                q, logits = out
                allowed = logits - logits.max(dim=1, keepdim=True).values > self.log_threshold
                return cast(torch.Tensor, q.masked_fill(~allowed, float("-inf")))
            if self.head == "tianshou_net":
                return cast(torch.Tensor, out[0])
            if self.index is not None:
                out = out[self.index]
            if self.head == "quantiles":
                return cast(torch.Tensor, out.mean(dim=2))
            return cast(torch.Tensor, out)

    class MLPContinuous(nn.Module):
        """A version-1 Tianshou ``Net``'s output in the env's units, clipped to the bounds."""

        low: torch.Tensor
        high: torch.Tensor

        def __init__(self, net: nn.Module, low: np.ndarray, high: np.ndarray) -> None:
            super().__init__()
            self.net = net
            self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32))
            self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32))
            self.act_shape = tuple(low.shape)

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            out = self.net(obs.to(torch.float32))[0]
            out = out.reshape((-1, *self.act_shape))
            return torch.minimum(torch.maximum(out, self.low), self.high)

    class DTGraph(nn.Module):
        """A Decision Transformer's next action from its context (the last K steps, left
        padded): raw observations (normalised as in training), the actions taken (env
        units; mapped back to ``[-1, 1]``), returns-to-go in the env's reward units
        (divided by ``rtg_scale`` here), timesteps and the mask of real steps → the action
        of the last step in the env's units (continuous: clipped and scaled; discrete: the
        most likely)."""

        low: torch.Tensor
        high: torch.Tensor

        def __init__(
            self, model: nn.Module, normalizer: nn.Module | None, *, rtg_scale: float,
            low: np.ndarray | None, high: np.ndarray | None, keep_uint8: bool,
        ) -> None:  # fmt: skip
            super().__init__()
            self.model = model
            self.normalizer = normalizer
            self.rtg_scale = float(rtg_scale)
            self.discrete = normalizer is None
            self.scale = low is not None and high is not None
            self.keep_uint8 = keep_uint8
            self.register_buffer("low", torch.as_tensor(0.0 if low is None else low))
            self.register_buffer("high", torch.as_tensor(1.0 if high is None else high))

        def forward(
            self, obs: torch.Tensor, act: torch.Tensor, rtg: torch.Tensor,
            timesteps: torch.Tensor, mask: torch.Tensor,
        ) -> torch.Tensor:  # fmt: skip
            b, k = mask.shape
            rtg = rtg.to(torch.float32) / self.rtg_scale
            if self.normalizer is None:
                x = obs if self.keep_uint8 and obs.dtype == torch.uint8 else obs.float()
                logits = self.model(x, act, rtg, timesteps, mask)[:, -1]
                return cast(torch.Tensor, logits.argmax(dim=-1))
            x = self.normalizer(obs.reshape(b * k, -1).to(torch.float32)).view(b, k, -1)
            a = act.to(torch.float32)
            if self.scale:  # Tianshou's map_action_inverse
                a = (a - self.low) * 2.0 / (self.high - self.low) - 1.0
            out = self.model(x, a, rtg, timesteps, mask)[:, -1].clamp(-1.0, 1.0)
            if self.scale:  # Tianshou's map_action
                out = self.low + (self.high - self.low) * (out + 1.0) / 2.0
            return cast(torch.Tensor, out)

    return {
        "DTGraph": DTGraph,
        "ContinuousGraph": ContinuousGraph,
        "ActorOutput": ActorOutput,
        "GaussianMode": GaussianMode,
        "BCQMode": BCQMode,
        "DiscreteGraph": DiscreteGraph,
        "Values": Values,
        "MLPContinuous": MLPContinuous,
    }


@dataclass
class _Graph:
    module: nn.Module
    policy: str
    mode: str
    obs_shape: tuple[int, ...]
    obs_dtype: str
    act_shape: tuple[int, ...]
    act_dtype: str
    observation_space: gym.Space[Any] | None
    action_space: gym.Space[Any] | None
    context: dict[str, Any] | None = None
    """A Decision Transformer's: ``context`` (K), ``target_return``, ``rtg_scale`` (the
    graph's inputs are the K-step context, :func:`_inputs`)."""


def _inputs(graph: _Graph) -> list[tuple[str, tuple[Any, ...], str]]:
    """``(name, shape, dtype)`` of each input (``"B"``: the dynamic batch)."""
    if graph.context is None:
        return [("obs", ("B", *graph.obs_shape), graph.obs_dtype)]
    k = int(graph.context["context"])
    return [
        ("obs", ("B", k, *graph.obs_shape), graph.obs_dtype),
        ("actions", ("B", k, *graph.act_shape), graph.act_dtype),  # "act" names the output
        ("rtg", ("B", k), "float32"),
        ("timesteps", ("B", k), "int64"),
        ("mask", ("B", k), "bool"),
    ]


def _dt_graph(p: Path, policy: Any, deterministic: bool) -> _Graph:
    from tianshou_offline.algorithms import ContinuousDTPolicy

    g = _graph_classes()
    kind = type(policy).__name__
    space, obs_space = policy.action_space, policy.observation_space
    obs_shape = tuple(int(x) for x in obs_space.shape)
    info = {"context": int(policy.model.context), "target_return": float(policy.target_return),
            "rtg_scale": float(policy.rtg_scale)}  # fmt: skip
    if isinstance(policy, ContinuousDTPolicy):
        assert isinstance(space, gym.spaces.Box)
        act_shape = tuple(int(x) for x in space.shape)
        scale = bool(policy.action_scaling)
        module = g["DTGraph"](
            policy.model, policy.obs_normalizer, rtg_scale=policy.rtg_scale,
            low=space.low.astype(np.float32).ravel() if scale else None,
            high=space.high.astype(np.float32).ravel() if scale else None, keep_uint8=False,
        )  # fmt: skip
        return _Graph(module, kind, "deterministic", obs_shape, "float32", act_shape, "float32",
                      obs_space, space, info)  # fmt: skip
    mode = "deterministic"
    if policy.sample_actions:
        if not deterministic:
            raise _sampling_error(p, kind, "sample_actions: a categorical sample")
        mode = "deterministic form"
    uint8 = obs_space.dtype == np.uint8
    module = g["DTGraph"](policy.model, None, rtg_scale=policy.rtg_scale, low=None, high=None,
                          keep_uint8=uint8)  # fmt: skip
    return _Graph(module, kind, mode, obs_shape, "uint8" if uint8 else "float32", (), "int64",
                  obs_space, space, info)  # fmt: skip


def _sampling_error(p: Path, kind: str, what: str) -> DataValidationError:
    return DataValidationError(
        f"{p}: a {kind} samples its actions ({what}); an exported graph cannot draw them as "
        "the policy does: pass deterministic=True (CLI: --deterministic) to export its "
        "deterministic form (every random draw replaced by its mode)"
    )


def _continuous_graph(p: Path, policy: Any, deterministic: bool) -> _Graph:
    from tianshou_offline.algorithms import (
        BCQPolicy,
        CriticWeightedPolicy,
        DeterministicPolicy,
        GaussianPolicy,
    )

    g = _graph_classes()
    kind = type(policy).__name__
    mode = "deterministic"
    select: nn.Module
    if isinstance(policy, DeterministicPolicy):
        select = g["ActorOutput"](policy.actor)
    elif isinstance(policy, CriticWeightedPolicy):
        if not deterministic:
            raise _sampling_error(p, kind, "m Gaussian proposals, one drawn by softmax(Q/T)")
        select, mode = g["GaussianMode"](policy.actor, policy.squash), "deterministic form"
    elif isinstance(policy, GaussianPolicy):
        if not policy.deterministic_eval:
            if not deterministic:
                raise _sampling_error(p, kind, "deterministic_eval is off: a Gaussian sample")
            mode = "deterministic form"
        select = g["GaussianMode"](policy.actor, policy.squash)
    elif isinstance(policy, BCQPolicy):
        if not deterministic:
            raise _sampling_error(p, kind, "VAE candidates decoded from random latents")
        select = g["BCQMode"](policy.vae, policy.perturbation, int(policy.vae.latent_dim))
        mode = "deterministic form"
    else:  # pragma: no cover - load_policy builds only the classes above
        raise DatasetFormatError(f"{p}: cannot export a {kind}")
    space = policy.action_space
    assert isinstance(space, gym.spaces.Box)
    act_shape = tuple(int(x) for x in space.shape)
    scale = bool(policy.action_scaling)
    module = g["ContinuousGraph"](
        policy.obs_normalizer,
        select,
        bound=policy.action_bound_method,
        low=space.low.astype(np.float32).ravel() if scale else None,
        high=space.high.astype(np.float32).ravel() if scale else None,
        act_shape=act_shape,
    )
    obs_space = policy.observation_space
    return _Graph(
        module, kind, mode, tuple(int(x) for x in obs_space.shape), "float32", act_shape,
        "float32", obs_space, space,
    )  # fmt: skip


def _discrete_graph(p: Path, policy: Any, deterministic: bool) -> _Graph:
    from tianshou_offline.algorithms import (
        AtariTrunk,
        DiscreteActorPolicy,
        DiscreteBCQPolicy,
        MLPTrunk,
        QuantileQNet,
        QValuePolicy,
    )

    g = _graph_classes()
    kind = type(policy).__name__
    mode = "deterministic"
    values: nn.Module
    if isinstance(policy, QValuePolicy):
        head = "quantiles" if isinstance(policy.model, QuantileQNet) else "q"
        values = g["Values"](policy.model, head)
    elif isinstance(policy, DiscreteBCQPolicy):
        values = g["Values"](policy.model, "bcq", log_threshold=float(policy.log_threshold))
    elif isinstance(policy, DiscreteActorPolicy):
        if not policy.deterministic_eval:
            if not deterministic:
                raise _sampling_error(p, kind, "deterministic_eval is off: a categorical sample")
            mode = "deterministic form"
        values = g["Values"](policy.actor, "logits", index=policy.logits_index)
    else:  # pragma: no cover
        raise DatasetFormatError(f"{p}: cannot export a {kind}")
    trunk = next(m for m in policy.modules() if isinstance(m, AtariTrunk | MLPTrunk))
    obs_space = policy.observation_space  # None for a save_atari_checkpoint file
    if obs_space is not None:
        obs_shape = tuple(int(x) for x in obs_space.shape)
    elif isinstance(trunk, AtariTrunk):
        obs_shape = tuple(trunk.in_shape)
    else:
        obs_shape = (int(trunk.obs_dim),)
    # frames stay bytes (the Atari trunk converts and scales them, as in training)
    uint8 = isinstance(trunk, AtariTrunk) or (obs_space is not None and obs_space.dtype == np.uint8)
    module = g["DiscreteGraph"](values, keep_uint8=uint8, start=0)
    return _Graph(
        module, kind, mode, obs_shape, "uint8" if uint8 else "float32", (), "int64", obs_space,
        policy.action_space,
    )  # fmt: skip


def _mlp_graph(p: Path, payload: dict[str, Any]) -> _Graph:
    """Version-1 MLP checkpoints: a Tianshou ``Net``."""
    from tianshou_offline.data.format import space_from_dict
    from tianshou_offline.recording.policies import build_mlp_net

    g = _graph_classes()
    spec = payload["net"]
    stored_obs = payload.get("observation_space")
    obs_space = space_from_dict(stored_obs) if stored_obs is not None else None
    net = build_mlp_net(p, payload)
    action = payload["action"]
    state_shape = tuple(int(x) for x in spec["state_shape"])
    if action["type"] == "discrete":
        n = int(action.get("n", spec["action_shape"]))
        start = int(action.get("start", 0))
        module = g["DiscreteGraph"](g["Values"](net, "tianshou_net"), keep_uint8=False, start=start)
        return _Graph(
            module, "mlp", "deterministic", state_shape, "float32", (), "int64", obs_space,
            gym.spaces.Discrete(n, start=start),
        )  # fmt: skip
    shape = tuple(int(x) for x in action["shape"])
    low = np.asarray(action["low"], dtype=np.float32).reshape(shape)
    high = np.asarray(action["high"], dtype=np.float32).reshape(shape)
    return _Graph(
        g["MLPContinuous"](net, low, high), "mlp", "deterministic", state_shape, "float32",
        shape, "float32", obs_space, gym.spaces.Box(low, high, dtype=np.float32),
    )  # fmt: skip


def policy_graph(checkpoint: str | os.PathLike[str], *, deterministic: bool = False) -> nn.Module:
    """The module :func:`export_policy` traces: ``forward(obs (B, *obs_shape)) -> act`` in the
    env's units (see the module doc), in eval mode on the CPU.

    :raises SourceNotFoundError: no such checkpoint.
    :raises DatasetFormatError: not a policy checkpoint.
    :raises DataValidationError: a sampling policy without ``deterministic``.
    """
    return _graph(Path(checkpoint), deterministic).module


def _graph(p: Path, deterministic: bool) -> _Graph:
    from tianshou_offline.recording.policies import (
        load_continuous_policy,
        load_discrete_policy,
        read_policy_checkpoint,
    )

    payload = read_policy_checkpoint(p)
    kind = payload["net"].get("type", "mlp")
    graph: _Graph
    if kind == "continuous":
        graph = _continuous_graph(p, load_continuous_policy(p), deterministic)
    elif kind == "decision_transformer":
        from tianshou_offline.recording.dt_policies import policy_from_payload

        graph = _dt_graph(p, policy_from_payload(p, payload, None, None, None), deterministic)
    elif kind in ("discrete", "atari"):
        graph = _discrete_graph(p, load_discrete_policy(p), deterministic)
    elif kind == "mlp":
        try:
            graph = _mlp_graph(p, payload)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise DatasetFormatError(
                f"{p}: field 'net' is malformed ({type(e).__name__}: "
                f"{' '.join(str(e).split())[:200]}); expected the description written by "
                "save_policy_checkpoint"
            ) from e
    else:
        raise DatasetFormatError(
            f"{p}: field 'net.type' is {kind!r}; expected 'continuous', 'discrete', "
            "'decision_transformer', 'mlp' or 'atari'"
        )
    graph.module.eval()
    graph.module.requires_grad_(False)  # a deployed graph's outputs need no autograd
    return graph


# --------------------------------------------------------------------------------------
# writing the files
# --------------------------------------------------------------------------------------


def _metadata(graph: _Graph, checkpoint: Path) -> dict[str, Any]:
    from tianshou_offline._version import __version__
    from tianshou_offline.data.format import space_to_dict

    inputs = [{"name": n, "shape": list(shape), "dtype": d} for n, shape, d in _inputs(graph)]
    meta: dict[str, Any] = {
        "format": "tianshou-offline-policy-export",
        "version": 1,
        "tianshou_offline": __version__,
        "checkpoint": checkpoint.name,
        "policy": graph.policy,
        "mode": graph.mode,
        "input": inputs[0],
        "output": {"name": "act", "shape": ["B", *graph.act_shape], "dtype": graph.act_dtype},
        "observation_space": (
            None if graph.observation_space is None else space_to_dict(graph.observation_space)
        ),
        "action_space": None if graph.action_space is None else space_to_dict(graph.action_space),
    }
    if graph.context is not None:  # the inputs are the context; acting needs its settings
        meta["inputs"] = inputs
        meta["decision_transformer"] = graph.context
    return meta


def _example(graph: _Graph) -> tuple[torch.Tensor, ...]:
    import torch

    dtypes = {"uint8": torch.uint8, "float32": torch.float32, "int64": torch.int64,
              "bool": torch.bool}  # fmt: skip
    return tuple(
        (torch.ones if dtype == "bool" else torch.zeros)(
            (2, *shape[1:]), dtype=dtypes[dtype]
        )
        for _, shape, dtype in _inputs(graph)
    )


def _tracer_warning() -> type[Warning]:
    import torch

    kind: type[Warning] = getattr(torch.jit, "TracerWarning")  # noqa: B009 - not in __all__
    return kind


@contextmanager
def _no_fused_attention() -> Iterator[None]:
    """PyTorch's fused transformer-encoder kernel switched off while a graph is traced (the
    Decision Transformer's blocks): ONNX has no such operator, and the unfused graph computes
    the same."""
    import torch

    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)


def _trace(graph: _Graph) -> torch.jit.ScriptModule:
    import torch

    trace: Any = torch.jit.trace  # untyped in torch's stubs
    with torch.no_grad(), warnings.catch_warnings(), _no_fused_attention():
        # the batch size is read from obs.shape: the tracer warns that it is a Python int
        warnings.simplefilter("ignore", _tracer_warning())
        # torch 2.10+ marks TorchScript deprecated in favour of torch.export; jit.load of the
        # file is what deployments (and LibTorch in C++) still read
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = trace(graph.module, _example(graph), check_trace=False)
    return cast("torch.jit.ScriptModule", traced)


def _write_torchscript(graph: _Graph, meta: dict[str, Any], tmp: Path) -> None:
    import torch

    traced = _trace(graph)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # as in _trace
        torch.jit.save(traced, str(tmp), _extra_files={METADATA_KEY: json.dumps(meta)})


def _write_onnx(graph: _Graph, meta: dict[str, Any], tmp: Path) -> None:
    import torch

    try:
        import onnx
    except ImportError as e:
        raise MissingDependencyError(
            "ONNX export needs the onnx package: pip install 'tianshou-offline[onnx]'"
        ) from e
    with torch.no_grad(), warnings.catch_warnings(), _no_fused_attention():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript-based exporter
        warnings.simplefilter("ignore", _tracer_warning())
        names = [name for name, _, _ in _inputs(graph)]
        torch.onnx.export(
            graph.module,
            _example(graph),
            str(tmp),
            dynamo=False,
            input_names=names,
            output_names=["act"],
            dynamic_axes={**{n: {0: "batch"} for n in names}, "act": {0: "batch"}},
            opset_version=ONNX_OPSET,
        )
    model = onnx.load(str(tmp))
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    onnx.save(model, str(tmp))


def export_policy(
    checkpoint: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    format: ExportFormat = "torchscript",
    deterministic: bool = False,
    overwrite: bool = False,
) -> PolicyExport:
    """Export a policy checkpoint as a TorchScript (``torch.jit.load``) or ONNX
    (onnxruntime) graph ``obs (B, *obs_shape) → act`` in the env's units (module doc).

    The file is written to a temporary beside ``output`` and renamed into place.

    :param checkpoint: a checkpoint of :func:`~tianshou_offline.recording.policies.save_policy_checkpoint`
        or :func:`~tianshou_offline.recording.policies.save_atari_checkpoint`.
    :param output: the file to write (``.pt``/``.ts`` for TorchScript, ``.onnx`` for ONNX by
        convention; not enforced).
    :param format: ``"torchscript"`` or ``"onnx"`` (needs the ``onnx`` extra).
    :param deterministic: export a sampling policy's deterministic form (module doc);
        required for BCQ, CRR's critic-weighted policy and sampling actors.
    :param overwrite: replace an existing ``output``.
    :raises SourceNotFoundError: no such checkpoint.
    :raises DatasetFormatError: not a policy checkpoint.
    :raises DataValidationError: a sampling policy without ``deterministic``; an unknown format.
    :raises OutputExistsError: ``output`` exists and not ``overwrite``.
    :raises MissingDependencyError: ONNX without the ``onnx`` package.
    """
    from tianshou_offline.data.atomic import publish, remove_stale_temps, remove_temp, temp_path

    if format not in FORMATS:
        raise DataValidationError(f"format {format!r}: expected one of {', '.join(FORMATS)}")
    src, out = Path(checkpoint), Path(output)
    if out.is_dir():
        raise OutputExistsError(f"{out}: is a directory; expected a file path for the export")
    if out.exists() and not overwrite:
        raise OutputExistsError(
            f"{out}: exists; pass overwrite=True (CLI: --overwrite) to replace it"
        )
    if not out.parent.is_dir():
        raise DataValidationError(f"{out}: the folder {out.parent} does not exist")
    graph = _graph(src, deterministic)
    meta = _metadata(graph, src)
    remove_stale_temps(out)
    tmp = temp_path(out, "export")
    try:
        (_write_onnx if format == "onnx" else _write_torchscript)(graph, meta, tmp)
        publish(tmp, out, overwrite=overwrite)
    finally:
        remove_temp(tmp)
    log.info("exported %s (%s, %s) to %s", src, graph.policy, graph.mode, out)
    return PolicyExport(
        path=out, format=format, policy=graph.policy, mode=graph.mode, obs_shape=graph.obs_shape,
        obs_dtype=graph.obs_dtype, act_shape=graph.act_shape, act_dtype=graph.act_dtype,
        metadata=meta,
    )  # fmt: skip
