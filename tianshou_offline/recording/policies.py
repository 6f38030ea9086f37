"""Policies that drive recording: random, the built-in scripted CartPole expert, and
weights-only policy checkpoints (read with ``torch.load(weights_only=True)``: never
unpickled).

Every policy the package saves replays with ``tianshou-offline record --policy FILE``
(:func:`make_policy`). A checkpoint is a ``torch.save``d dict of plain data and tensors::

    {"format": "tianshou-offline-policy", "version": 1 | 2,
     "net": {...},                      # what rebuilds the networks (below)
     "observation_space": {...},        # gymnasium spaces as JSON (data.format.space_to_dict);
     "action_space": {...},             #   version 2 always, version 1 MLP files optionally
     "action": {...},                   # version 1: the action space in short (below)
     "state_dict": {name: tensor}}

``net`` is one of

- ``{"type": "continuous", "policy": "DeterministicPolicy" | "GaussianPolicy" |
  "CriticWeightedPolicy" | "BCQPolicy",
  "normalize_obs": bool, "obs_norm_eps": float, "action_scaling": bool,
  "squash": bool, "deterministic_eval": bool,   # GaussianPolicy (and CriticWeightedPolicy)
  "num_action_samples": int, "temperature": float,   # CriticWeightedPolicy's num_sampled_actions
  "num_candidate_actions": int,                 # BCQPolicy's num_sampled_actions
  "modules": {attribute: module spec}}`` (version 2, :func:`save_policy_checkpoint` given a
  policy of :mod:`tianshou_offline.algorithms`): the policy is rebuilt with its class,
  flags, spaces and networks, and ``state_dict`` is the policy's own (networks and
  :class:`~tianshou_offline.algorithms.ObsNormalizer` statistics). A module spec is
  ``{"type": "DeterministicActor" | "GaussianActor" | "VAE" | "Perturbation" |
  "CriticEnsemble", "obs_dim": D, "act_dim": A, "hidden_sizes": [...], ...}`` with the
  class's other constructor arguments (``conditioned_std``, ``log_std_bounds``,
  ``tanh_mean``; ``latent_dim``, ``latent_clip``; ``phi``; ``num_critics``, ``layer_norm``).
  The policy acts with its action outside training steps (Tianshou's
  ``Policy.compute_action``: the actor's output, a Gaussian's mode; BCQ's best of its sampled
  candidates and CRR's critic-weighted pick, from a generator seeded by ``seed``) scaled to
  the action space's bounds.
- ``{"type": "mlp", "state_shape": [4], "action_shape": 2, "hidden_sizes": [64, 64]}``
  (version 1): a Tianshou ``Net`` with ``"action": {"type": "discrete", "n": 2, "start": 0}``
  (argmax of its outputs) or ``{"type": "continuous", "low": [...], "high": [...],
  "shape": [...]}`` (the output in the env's units, clipped to the bounds).
- ``{"type": "discrete", "policy": "QValuePolicy" | "DiscreteBCQPolicy" |
  "DiscreteActorPolicy", "model": {"type": "QNet" | "QuantileQNet" | "DualHeadNet",
  "num_actions": A, "hidden_sizes": [...], "num_quantiles": N, "trunk": {"type": "mlp",
  "obs_dim": D, "hidden_sizes": [...]} | {"type": "atari", "in_channels": C, "height": H,
  "width": W, "scale_obs": bool}}, "eps_inference": float, "deterministic_eval": bool,
  "logits_index": int | None, "unlikely_action_threshold": float}`` (version 2,
  :func:`save_policy_checkpoint` given a discrete policy of :mod:`tianshou_offline.algorithms`:
  DQN-style and CQL's quantile networks, BCQ, imitation, CRR; MLP or Atari trunks):
  :func:`load_discrete_policy` rebuilds it as that policy (what off-policy evaluation needs:
  action probabilities on batches), ``record --policy`` replays it.
- ``{"type": "atari", ...}`` (version 1, :func:`save_atari_checkpoint`, e.g. by
  ``examples/atari/atari_*.py``): the Nature-DQN conv trunk with a Q, quantile, BCQ or
  logits head.

:func:`load_policy_checkpoint` also reads the ``state_dict`` files Tianshou's own Atari DQN /
QR-DQN examples save (``policy.pth``, e.g. from ``atari_qrdqn.py``), weights only; the
architecture is inferred from the tensor shapes.

Before a policy acts, its observation and action spaces are checked against the env's
(:class:`~tianshou_offline.errors.DataValidationError` naming the file, the field, what
was found and what was expected): the observation shape, the action space's kind, size and
bounds.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import gymnasium as gym
import numpy as np

if TYPE_CHECKING:
    from tianshou.utils.net.common import Net
    from torch import nn

    from tianshou_offline.algorithms import ContinuousPolicy, DiscretePolicy

from tianshou_offline.errors import (
    DatasetFormatError,
    DataValidationError,
    SourceNotFoundError,
    TianshouOfflineError,
    UnsafeDataError,
    raised_within,
)

CHECKPOINT_FORMAT = "tianshou-offline-policy"
CHECKPOINT_VERSION = 2
"""The newest checkpoint version read and written. Version 2 added the continuous policies
(``net.type == "continuous"``); MLP and Atari checkpoints are still written as version 1, so
that older readers load them."""

POLICY_CHOICES = "'random', 'scripted' (the CartPole-v1 expert) or a policy checkpoint file"

CONTINUOUS_CHECKPOINT = (
    "a checkpoint of a continuous-action policy (policy.pt of the MuJoCo examples, or a "
    "policy of tianshou_offline.algorithms saved with save_policy_checkpoint)"
)
"""What :func:`load_continuous_policy` reads, in its error messages."""
"""What ``--policy`` accepts, for messages."""

AtariHead = Literal["q", "quantiles", "bcq", "logits"]
"""How an Atari checkpoint acts: ``argmax`` of Q-values (``"q"``), of quantile means
(``"quantiles"``), of Q over BCQ's allowed actions (``"bcq"``, a two-headed net: Q, imitation
logits) or of policy logits (``"logits"``; for a two-headed CRR net, the first head)."""

ActFn = Callable[[Any], Any]
"""Maps one observation to one action."""


class ScriptedCartPoleExpert:
    """A hand-written CartPole-v1 controller (return 500 without noise) with ε-noise.

    :param eps: probability of replacing the action by a uniformly random one.
    :param seed: seed of the noise generator.
    """

    def __init__(self, eps: float = 0.25, seed: int = 0) -> None:
        self.eps = eps
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: np.ndarray) -> int:
        x, x_dot, theta, theta_dot = (float(v) for v in obs)
        action = int(theta + 0.3 * theta_dot + 0.02 * x + 0.1 * x_dot > 0)
        if self.rng.random() < self.eps:
            action = int(self.rng.integers(2))
        return action


def random_policy(space: gym.Space[Any], seed: int | None = None) -> ActFn:
    space.seed(seed)
    return lambda _obs: space.sample()


# --------------------------------------------------------------------------------------
# reading and writing checkpoint files
# --------------------------------------------------------------------------------------


def _write(payload: dict[str, Any], path: Path) -> Path:
    """``torch.save`` atomically (:func:`~tianshou_offline.data.atomic.atomic_output`),
    replacing ``path`` (a checkpoint is saved again and again during training: it always
    replaces the previous one)."""
    from tianshou_offline.data.atomic import atomic_output, torch_save

    with atomic_output(path, overwrite=True, tag="ckpt") as tmp:
        torch_save(payload, tmp)
    return path


def _describe_bytes(p: Path) -> str:
    """What a file that ``torch.load`` cannot read looks like, for the message."""
    with open(p, "rb") as fh:
        head = fh.read(64)
    if not head:
        return "an empty file"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file (a dataset? datasets go to -o, policies to --policy)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"binary data starting with {head[:8]!r}"
    shown = " ".join(text.split())[:40]
    return f"text ({shown!r}…)" if shown else "blank text"


def _read(p: Path, expected: str = POLICY_CHOICES) -> Any:
    """The checkpoint's payload, loaded weights-only; ``expected`` says, for a missing file,
    what the caller takes.

    :raises SourceNotFoundError: no such file.
    :raises DatasetFormatError: a directory, or not a ``torch.save`` file.
    :raises UnsafeDataError: it holds pickled objects other than tensors and plain data.
    """
    import pickle

    import torch

    if not p.exists():
        raise SourceNotFoundError(f"{p}: no such policy checkpoint (expected {expected})")
    if p.is_dir():
        raise DatasetFormatError(f"{p}: is a directory; expected a weights-only policy checkpoint")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # torch's weights-only unpickler refused an object
        if "weights only" in str(e).lower():
            names = re.findall(r"GLOBAL ([\w.]+)", str(e))
            what = f" (e.g. {names[0]})" if names else ""
            raise UnsafeDataError(
                f"{p}: not a weights-only policy checkpoint: it holds pickled objects{what}, "
                "which are never unpickled here; expected a file of tensors and plain data "
                "written by save_policy_checkpoint"
            ) from e
        found = _describe_bytes(p)
        raise DatasetFormatError(
            f"{p}: not a weights-only policy checkpoint: found {found}; expected a torch.save "
            "file written by save_policy_checkpoint (or a Tianshou Atari policy.pth)"
        ) from e
    except Exception as e:  # text, truncated archives, …: torch raises many types
        if not raised_within(e, ("torch", "zipfile", "pickle")):  # not the file's fault
            raise
        found = _describe_bytes(p) if not zipfile.is_zipfile(p) else "a damaged torch.save file"
        raise DatasetFormatError(
            f"{p}: not a weights-only policy checkpoint: found {found} "
            f"({type(e).__name__}); expected a torch.save file written by "
            "save_policy_checkpoint (or a Tianshou Atari policy.pth)"
        ) from e


def read_policy_state_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The weights of a policy file: a checkpoint's ``state_dict``, or the file itself when it
    is a bare ``state_dict`` (``torch.save(policy.state_dict())``). For code that rebuilds the
    policy itself (``--resume-path`` of the MuJoCo examples).

    :raises SourceNotFoundError: no such file.
    :raises DatasetFormatError: not a weights-only ``torch.save`` file of tensors.
    """
    p = Path(path)
    payload = _read(p)
    if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT:
        payload = payload.get("state_dict")
    if not isinstance(payload, dict):
        raise DatasetFormatError(
            f"{p}: holds a {type(payload).__name__}; expected a policy checkpoint or state_dict"
        )
    return payload


# --------------------------------------------------------------------------------------
# the checkpoint's spaces against the env's
# --------------------------------------------------------------------------------------


def _check_format(p: Path, payload: Any) -> None:
    """:raises DatasetFormatError: ``payload`` is not a policy checkpoint's dict."""
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else None
        raise DatasetFormatError(
            f"{p}: field 'format' is {found!r}; expected {CHECKPOINT_FORMAT!r} "
            "(a checkpoint written by save_policy_checkpoint)"
        )


def _one_line(space: gym.Space[Any]) -> str:
    return " ".join(str(space).split())


def _squeezed(shape: Sequence[int] | None) -> tuple[int, ...]:
    return tuple(int(d) for d in (shape or ()) if int(d) != 1)


def _obs_mismatch(found: tuple[int, ...] | gym.Space[Any], env: gym.Space[Any]) -> str | None:
    """None when observations of ``env`` fit a policy made for ``found`` (a shape, or a
    space), else ``"found …; expected …"``. Bounds are not compared (the same env's bounds
    differ between versions); sizes of 1 are ignored (``(1, 84, 84)`` is ``(84, 84)``)."""
    if isinstance(found, gym.Space) and not isinstance(found, gym.spaces.Box):
        if type(found) is type(env) and found == env:
            return None
        return f"is {_one_line(found)}; expected {_one_line(env)}"
    shape = tuple(found.shape or ()) if isinstance(found, gym.spaces.Box) else found
    if not isinstance(env, gym.spaces.Box):
        return f"has shape {shape}; expected {_one_line(env)}"
    if _squeezed(shape) != _squeezed(env.shape):
        return f"has shape {shape}; expected shape {tuple(env.shape or ())}"
    return None


def _act_mismatch(found: gym.Space[Any], env: gym.Space[Any]) -> str | None:
    """None when ``env``'s actions are the policy's (kind, size, start, bounds), else
    ``"found …; expected …"``."""
    expected = f"expected {_one_line(env)}"
    if isinstance(found, gym.spaces.Discrete) and isinstance(env, gym.spaces.Discrete):
        if int(found.n) == int(env.n) and int(found.start) == int(env.start):
            return None
        return f"is {_one_line(found)}; {expected}"
    if isinstance(found, gym.spaces.Box) and isinstance(env, gym.spaces.Box):
        if tuple(found.shape or ()) != tuple(env.shape or ()):
            return f"is {_one_line(found)}; {expected} (another action size)"
        same = np.allclose(found.low, env.low, equal_nan=True) and np.allclose(
            found.high, env.high, equal_nan=True
        )
        if same:
            return None
        return f"is {_one_line(found)}; {expected} (other action bounds)"
    return f"is {_one_line(found)}; {expected}"


def _check(p: Path, field: str, mismatch: str | None, env_name: str | None, what: str) -> None:
    if mismatch is None:
        return
    env = f"{env_name}'s {what}" if env_name else f"the env's {what}"
    raise DataValidationError(
        f"{p}: field {field!r} {mismatch} ({env}): the policy was made for another environment"
    )


# --------------------------------------------------------------------------------------
# MLP policies (Tianshou Net)
# --------------------------------------------------------------------------------------


def _action_spec(space: gym.Space[Any]) -> dict[str, Any]:
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "continuous",
            "low": space.low.astype(float).ravel().tolist(),
            "high": space.high.astype(float).ravel().tolist(),
            "shape": list(space.shape),
        }
    raise ValueError(f"policy checkpoints support Discrete and Box actions, not {space}")


def _action_space_of(action: Mapping[str, Any]) -> gym.Space[Any]:
    """The action space a version-1 ``"action"`` field describes."""
    if action["type"] == "discrete":
        if "n" not in action:  # the oldest files: the size is the net's action_shape
            raise KeyError("n")
        return gym.spaces.Discrete(int(action["n"]), start=int(action.get("start", 0)))
    shape = tuple(int(x) for x in action["shape"])
    low = np.asarray(action["low"], dtype=np.float32).reshape(shape)
    high = np.asarray(action["high"], dtype=np.float32).reshape(shape)
    return gym.spaces.Box(low, high, shape=shape, dtype=np.float32)


@overload
def save_policy_checkpoint(
    path: str | os.PathLike[str], net: ContinuousPolicy | DiscretePolicy
) -> Path: ...
@overload
def save_policy_checkpoint(
    path: str | os.PathLike[str],
    net: Net,
    *,
    state_shape: Sequence[int],
    action_space: gym.Space[Any],
    hidden_sizes: Sequence[int],
    observation_space: gym.Space[Any] | None = None,
) -> Path: ...
def save_policy_checkpoint(
    path: str | os.PathLike[str],
    net: Net | ContinuousPolicy | DiscretePolicy,
    *,
    state_shape: Sequence[int] | None = None,
    action_space: gym.Space[Any] | None = None,
    hidden_sizes: Sequence[int] | None = None,
    observation_space: gym.Space[Any] | None = None,
) -> Path:
    """Save a policy's weights with what rebuilds it, so that
    ``tianshou-offline record --policy PATH`` replays it (written atomically).

    - A policy of :mod:`tianshou_offline.algorithms` (``DeterministicPolicy``,
      ``GaussianPolicy``, ``BCQPolicy`` with the package's networks): pass it alone; its
      spaces, flags and network sizes are read from it (version 2). Likewise a discrete
      policy (``QValuePolicy``, ``DiscreteBCQPolicy``, ``DiscreteActorPolicy`` on MLP or Atari
      trunks; version 2, ``net.type`` ``"discrete"``).
    - A Tianshou MLP ``Net`` (e.g. the actor of Tianshou's ``ImitationPolicy``): pass
      ``state_shape``, ``action_space`` and ``hidden_sizes`` (version 1);
      ``observation_space`` is stored too when given.

    :raises ValueError: a network this format cannot describe.
    """
    from tianshou_offline.algorithms import ContinuousPolicy, DiscretePolicy
    from tianshou_offline.recording.dt_policies import dt_payload, is_dt_policy

    p = Path(path)
    if isinstance(net, ContinuousPolicy | DiscretePolicy):
        import torch

        # the payload is checked by rebuilding the network, whose initial weights come from
        # a generator of its own: a checkpoint written during training (the best policy)
        # must not change the random numbers the run draws next (exact resume)
        with torch.random.fork_rng(devices=[]):
            if is_dt_policy(net):
                checked = dt_payload(net)
            elif isinstance(net, ContinuousPolicy):
                checked = _continuous_payload(net)
            else:
                checked = _discrete_payload(net)
        return _write(checked, p)
    if state_shape is None or action_space is None or hidden_sizes is None:
        raise ValueError("an MLP Net needs state_shape, action_space and hidden_sizes")
    from tianshou_offline.data.format import space_to_dict

    action_shape: int | list[int] = (
        int(action_space.n)
        if isinstance(action_space, gym.spaces.Discrete)
        else list(action_space.shape or ())
    )
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "version": 1,
        "net": {
            "type": "mlp",
            "state_shape": [int(x) for x in state_shape],
            "action_shape": action_shape,
            "hidden_sizes": [int(h) for h in hidden_sizes],
        },
        "action": _action_spec(action_space),
        "action_space": space_to_dict(action_space),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
    }
    if observation_space is not None:
        payload["observation_space"] = space_to_dict(observation_space)
    return _write(payload, p)


def build_mlp_net(p: Path, payload: Mapping[str, Any]) -> Net:
    """The Tianshou ``Net`` of a version-1 MLP checkpoint's ``payload`` (read from ``p``),
    weights loaded, in eval mode."""
    from tianshou.utils.net.common import Net

    spec = payload["net"]
    net = Net(
        state_shape=tuple(int(x) for x in spec["state_shape"]),
        action_shape=spec["action_shape"],
        hidden_sizes=tuple(int(h) for h in spec["hidden_sizes"]),
    )
    _load_weights(p, net, payload["state_dict"])
    net.eval()
    return net


def _mlp_act_fn(p: Path, payload: Mapping[str, Any]) -> ActFn:
    import torch

    action = payload["action"]
    net = build_mlp_net(p, payload)
    start = int(action.get("start", 0))
    if action["type"] == "discrete":

        @torch.no_grad()
        def act_discrete(obs: Any) -> int:
            out, _ = net(torch.as_tensor(np.asarray(obs, dtype=np.float32)[None]))
            return int(out.argmax(dim=-1).item()) + start

        return act_discrete
    shape = tuple(int(x) for x in action["shape"])
    low = np.asarray(action["low"], dtype=np.float32).reshape(shape)
    high = np.asarray(action["high"], dtype=np.float32).reshape(shape)

    @torch.no_grad()
    def act_continuous(obs: Any) -> np.ndarray:
        out, _ = net(torch.as_tensor(np.asarray(obs, dtype=np.float32)[None]))
        clipped: np.ndarray = np.clip(out.numpy()[0].reshape(shape), low, high)
        return clipped

    return act_continuous


def _load_weights(p: Path, module: nn.Module, state: Any) -> None:
    if not isinstance(state, dict):
        raise DatasetFormatError(
            f"{p}: field 'state_dict' is a {type(state).__name__}; expected tensors by name"
        )
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        raise DatasetFormatError(
            f"{p}: field 'state_dict' does not fit the networks of field 'net' "
            f"({' '.join(str(e).split())[:240]})"
        ) from e


# --------------------------------------------------------------------------------------
# continuous policies of tianshou_offline.algorithms
# --------------------------------------------------------------------------------------

_POLICY_MODULES = {
    "DeterministicPolicy": ("actor",),
    "GaussianPolicy": ("actor",),
    "BCQPolicy": ("vae", "perturbation", "critics"),
    "CriticWeightedPolicy": ("actor", "critics"),
}
"""The networks each policy class owns, by attribute (its constructor's argument)."""


def _mlp_sizes(mlp: nn.Module) -> tuple[list[int], int, list[int]]:
    """``(in_dims, out_dim, hidden_sizes)`` of an :class:`~tianshou_offline.algorithms.MLP`,
    read from its layers (``out_dim`` 0: no output layer)."""
    from torch import nn

    from tianshou_offline.algorithms import MLP

    if not isinstance(mlp, MLP):
        raise ValueError(f"expected an MLP, found a {type(mlp).__name__}")
    widths = [int(mlp.first.weight.shape[0])] + [
        int(m.out_features) for m in mlp.rest if isinstance(m, nn.Linear)
    ]
    in_dims = [int(d) for d in mlp.first.in_dims]
    if len(mlp.rest) == 0 or isinstance(mlp.rest[-1], nn.Linear):  # an output layer
        return in_dims, widths[-1], widths[:-1]
    return in_dims, 0, widths


def _module_spec(module: nn.Module, where: str) -> dict[str, Any]:
    """What rebuilds one of the continuous-control networks (see the module docstring)."""
    from tianshou_offline.algorithms import (
        VAE,
        CriticEnsemble,
        DeterministicActor,
        GaussianActor,
        Perturbation,
    )

    kind = type(module)
    if kind is DeterministicActor or kind is GaussianActor or kind is Perturbation:
        in_dims, out_dim, hidden = _mlp_sizes(module.get_submodule("net"))
        spec: dict[str, Any] = {
            "type": kind.__name__,
            "obs_dim": in_dims[0],
            "act_dim": out_dim,
            "hidden_sizes": hidden,
        }
        if isinstance(module, GaussianActor):
            spec["act_dim"] = int(module.act_dim)
            spec["conditioned_std"] = bool(module.conditioned_std)
            spec["log_std_bounds"] = [float(module.log_std_min), float(module.log_std_max)]
            spec["tanh_mean"] = bool(module.tanh_mean)
        if isinstance(module, Perturbation):
            spec["phi"] = float(module.phi)
        return spec
    if kind is VAE:
        assert isinstance(module, VAE)
        in_dims, _, hidden = _mlp_sizes(module.encoder)
        return {
            "type": "VAE",
            "obs_dim": in_dims[0],
            "act_dim": in_dims[1],
            "hidden_sizes": hidden,
            "latent_dim": int(module.latent_dim),
            "latent_clip": float(module.latent_clip),
        }
    if kind is CriticEnsemble:
        assert isinstance(module, CriticEnsemble)
        return {
            "type": "CriticEnsemble",
            "obs_dim": int(module.obs_dim),
            "act_dim": int(module.act_dim),
            "hidden_sizes": [int(w.shape[-1]) for w in list(module.weights)[:-1]],
            "num_critics": int(module.num_critics),
            "layer_norm": bool(module.layer_norm),
        }
    raise ValueError(
        f"{where} is a {kind.__name__}; policy checkpoints describe DeterministicActor, "
        "GaussianActor, VAE, Perturbation and CriticEnsemble networks"
    )


def _build_module(spec: Mapping[str, Any]) -> nn.Module:
    from tianshou_offline.algorithms import (
        VAE,
        CriticEnsemble,
        DeterministicActor,
        GaussianActor,
        Perturbation,
    )

    kind = spec["type"]
    obs_dim, act_dim = int(spec["obs_dim"]), int(spec["act_dim"])
    hidden = [int(h) for h in spec["hidden_sizes"]]
    if kind == "DeterministicActor":
        return DeterministicActor(obs_dim, act_dim, hidden)
    if kind == "GaussianActor":
        lo, hi = (float(x) for x in spec["log_std_bounds"])
        return GaussianActor(
            obs_dim,
            act_dim,
            hidden,
            conditioned_std=bool(spec["conditioned_std"]),
            log_std_bounds=(lo, hi),
            tanh_mean=bool(spec.get("tanh_mean", False)),
        )
    if kind == "VAE":
        return VAE(
            obs_dim,
            act_dim,
            hidden,
            latent_dim=int(spec["latent_dim"]),
            latent_clip=float(spec["latent_clip"]),
        )
    if kind == "Perturbation":
        return Perturbation(obs_dim, act_dim, hidden, phi=float(spec["phi"]))
    if kind == "CriticEnsemble":
        return CriticEnsemble(
            obs_dim,
            act_dim,
            hidden,
            num_critics=int(spec["num_critics"]),
            layer_norm=bool(spec.get("layer_norm", False)),
        )
    raise ValueError(f"unknown network type {kind!r}")


def _build_policy(
    spec: Mapping[str, Any], observation_space: gym.Space[Any], action_space: gym.Space[Any]
) -> ContinuousPolicy:
    from tianshou_offline.algorithms import (
        VAE,
        BCQPolicy,
        ContinuousPolicy,
        CriticEnsemble,
        CriticWeightedPolicy,
        DeterministicPolicy,
        GaussianPolicy,
        Perturbation,
    )

    kind = spec["policy"]
    if kind not in _POLICY_MODULES:
        raise ValueError(f"unknown policy type {kind!r}")
    modules = {name: _build_module(spec["modules"][name]) for name in _POLICY_MODULES[kind]}
    common: dict[str, Any] = {
        "action_space": action_space,
        "observation_space": observation_space,
        "normalize_obs": bool(spec["normalize_obs"]),
        "action_scaling": bool(spec["action_scaling"]),
    }
    policy: ContinuousPolicy
    if kind == "DeterministicPolicy":
        policy = DeterministicPolicy(actor=modules["actor"], **common)
    elif kind == "CriticWeightedPolicy":
        policy = CriticWeightedPolicy(
            actor=modules["actor"],
            critics=modules["critics"],
            num_sampled_actions=int(spec["num_action_samples"]),
            temperature=float(spec["temperature"]),
            squash=bool(spec["squash"]),
            **common,
        )
    elif kind == "GaussianPolicy":
        policy = GaussianPolicy(
            actor=modules["actor"],
            squash=bool(spec["squash"]),
            deterministic_eval=bool(spec["deterministic_eval"]),
            **common,
        )
    else:
        vae, perturbation, critics = modules["vae"], modules["perturbation"], modules["critics"]
        assert isinstance(vae, VAE) and isinstance(perturbation, Perturbation)
        assert isinstance(critics, CriticEnsemble)
        policy = BCQPolicy(
            vae=vae,
            perturbation=perturbation,
            critics=critics,
            num_sampled_actions=int(spec["num_candidate_actions"]),
            **common,
        )
    assert isinstance(policy, ContinuousPolicy)
    policy.obs_normalizer.eps = float(spec.get("obs_norm_eps", policy.obs_normalizer.eps))
    return policy


def _continuous_payload(policy: ContinuousPolicy) -> dict[str, Any]:
    """The version-2 checkpoint of a policy; rebuilt and reloaded once here, so that a
    checkpoint that is written also loads."""
    from tianshou_offline.algorithms import BCQPolicy, CriticWeightedPolicy, GaussianPolicy
    from tianshou_offline.data.format import space_to_dict

    kind = type(policy).__name__
    if kind not in _POLICY_MODULES:
        raise ValueError(
            f"policy checkpoints describe {', '.join(_POLICY_MODULES)}; not a {kind} "
            "(a subclass may have other networks)"
        )
    spec: dict[str, Any] = {
        "type": "continuous",
        "policy": kind,
        "normalize_obs": bool(policy.obs_normalizer.enabled),
        "obs_norm_eps": float(policy.obs_normalizer.eps),
        "action_scaling": bool(policy.action_scaling),
        "modules": {
            name: _module_spec(policy.get_submodule(name), f"{kind}.{name}")
            for name in _POLICY_MODULES[kind]
        },
    }
    if isinstance(policy, GaussianPolicy):
        spec["squash"] = bool(policy.squash)
        spec["deterministic_eval"] = bool(policy.deterministic_eval)
    if isinstance(policy, CriticWeightedPolicy):
        spec["num_action_samples"] = int(policy.num_sampled_actions)
        spec["temperature"] = float(policy.temperature)
    if isinstance(policy, BCQPolicy):
        spec["num_candidate_actions"] = int(policy.num_sampled_actions)
    state = {k: v.detach().cpu() for k, v in policy.state_dict().items()}
    assert policy.observation_space is not None  # ContinuousPolicy requires one
    try:
        _build_policy(spec, policy.observation_space, policy.action_space).load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"cannot describe this {kind}'s networks: {e}") from e
    return {
        "format": CHECKPOINT_FORMAT,
        "version": 2,
        "net": spec,
        "observation_space": space_to_dict(policy.observation_space),
        "action_space": space_to_dict(policy.action_space),
        "state_dict": state,
    }


def _discrete_act_fn(policy: DiscretePolicy) -> ActFn:
    """Act with the discrete policy's action outside training steps (its greedy action; a
    sampling policy samples), ε-noise included (``eps_inference``)."""
    import torch

    policy.eval()

    def act(obs: Any) -> int:
        probs = policy.action_probs(policy.obs_to_tensor(np.asarray(obs)[None]))[0]
        return int(torch.multinomial(probs, 1).item())

    return act


def _continuous_act_fn(policy: ContinuousPolicy, seed: int | None) -> ActFn:
    """Act with the policy's deterministic action in the env's units. Random draws (BCQ's
    candidates) come from a private generator seeded by ``seed``: torch's global one is
    left as it was."""
    import torch

    policy.eval()
    space = policy.action_space
    assert isinstance(space, gym.spaces.Box)
    shape, dtype = tuple(space.shape), space.dtype
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    rng_state = generator.get_state()

    def act(obs: Any) -> np.ndarray:
        nonlocal rng_state
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(rng_state)
            action = policy.compute_action(np.asarray(obs, dtype=np.float32))
            rng_state = torch.get_rng_state()
        return np.asarray(action, dtype=dtype).reshape(shape)

    return act


# --------------------------------------------------------------------------------------
# loading any checkpoint
# --------------------------------------------------------------------------------------


def load_policy_checkpoint(
    path: str | os.PathLike[str],
    *,
    scale_obs: bool | None = None,
    num_actions: int | None = None,
    observation_space: gym.Space[Any] | None = None,
    action_space: gym.Space[Any] | None = None,
    env_name: str | None = None,
    seed: int | None = None,
) -> ActFn:
    """Load a policy checkpoint as an obs → action function: one written by
    :func:`save_policy_checkpoint` / :func:`save_atari_checkpoint`, or a Tianshou Atari
    DQN / QR-DQN ``state_dict`` (weights only in every case).

    :param scale_obs: Atari nets only: divide pixels by 255 (default: the checkpoint's own
        setting; unscaled for Tianshou checkpoints, as Tianshou's ``--scale-obs 0`` default).
    :param num_actions: the env's number of actions; tells a Tianshou QR-DQN checkpoint
        (``A × N`` outputs) from a DQN one (``A`` outputs). Default: ``action_space.n``.
    :param observation_space: the env's; when given (with ``action_space``), the
        checkpoint's spaces are checked against them before anything is built.
    :param action_space: the env's.
    :param env_name: names the env in mismatch messages (e.g. ``"Pendulum-v1"``).
    :param seed: seed of a stochastic policy's random draws (BCQ's candidate actions).
    :raises SourceNotFoundError: no such file.
    :raises DatasetFormatError: not a policy checkpoint (or a damaged one).
    :raises DataValidationError: the checkpoint's spaces are not the env's.
    """
    p = Path(path)
    if num_actions is None and isinstance(action_space, gym.spaces.Discrete):
        num_actions = int(action_space.n)
    payload = _read(p)
    if isinstance(payload, dict) and payload.get("format") is None:
        tianshou_net = _tianshou_atari_state(payload)
        if tianshou_net is not None:
            model, in_shape, outputs = tianshou_net
            _check_tianshou_atari(p, in_shape, outputs, observation_space, action_space, env_name)
            return _atari_act_fn(
                model, "tianshou", None, scale_obs=bool(scale_obs), num_actions=num_actions
            )
        if any(isinstance(k, str) and k.startswith("obs_normalizer.") for k in payload):
            raise DatasetFormatError(
                f"{p}: field 'format' is missing: a bare policy state_dict (e.g. "
                "torch.save(policy.state_dict())), without the sizes and flags that rebuild the "
                f"policy; expected {CHECKPOINT_FORMAT!r} (write it with "
                "tianshou_offline.recording.policies.save_policy_checkpoint(path, policy))"
            )
    _check_format(p, payload)
    version = payload.get("version", 0)
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise DatasetFormatError(
            f"{p}: field 'version' is {version!r}; expected at most {CHECKPOINT_VERSION} "
            "(written by a newer tianshou-offline?)"
        )
    try:
        return _from_payload(p, payload, scale_obs, observation_space, action_space, env_name, seed)
    except TianshouOfflineError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise DatasetFormatError(
            f"{p}: field 'net' is malformed ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:200]}); expected the description written by "
            "save_policy_checkpoint"
        ) from e


def read_policy_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The payload of a checkpoint written by :func:`save_policy_checkpoint` or
    :func:`save_atari_checkpoint` (see the module doc), read weights-only, its ``format``,
    ``version`` and ``net`` checked — for code that dispatches on ``net["type"]``.

    :raises SourceNotFoundError: no such file.
    :raises DatasetFormatError: not such a checkpoint (or one of a newer version).
    :raises UnsafeDataError: it holds pickled objects.
    """
    p = Path(path)
    payload = _read(p)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else None
        raise DatasetFormatError(
            f"{p}: field 'format' is {found!r}; expected {CHECKPOINT_FORMAT!r} "
            "(a checkpoint written by save_policy_checkpoint)"
        )
    version = payload.get("version", 0)
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise DatasetFormatError(
            f"{p}: field 'version' is {version!r}; expected at most {CHECKPOINT_VERSION} "
            "(written by a newer tianshou-offline?)"
        )
    if not isinstance(payload.get("net"), dict):
        raise DatasetFormatError(
            f"{p}: field 'net' is {type(payload.get('net')).__name__}; expected the network "
            "description written by save_policy_checkpoint"
        )
    return payload


def _not_markov(p: Path) -> DatasetFormatError:
    """What the loaders of Markov policies (off-policy evaluation's) say of a Decision
    Transformer checkpoint."""
    return DatasetFormatError(
        f"{p}: field 'net.type' is 'decision_transformer': a Decision Transformer acts on the "
        "episode so far and a target return, not on the observation alone; off-policy "
        "estimators (FQE, IS, WIS, DR, WDR) need a Markov policy pi(a|s). Evaluate it in the "
        "environment (tianshou_offline.recording.dt_policies.load_dt_policy) or replay it "
        "with `tianshou-offline record --policy`"
    )


def load_continuous_policy(
    path: str | os.PathLike[str],
    *,
    observation_space: gym.Space[Any] | None = None,
    action_space: gym.Space[Any] | None = None,
    env_name: str | None = None,
) -> ContinuousPolicy:
    """Rebuild the policy of a version-2 continuous checkpoint (written by
    :func:`save_policy_checkpoint` from a policy of :mod:`tianshou_offline.algorithms`) as
    that policy, on the CPU, in eval mode — for code that needs its networks (batched actions,
    fitted Q evaluation) rather than an obs → action function (:func:`load_policy_checkpoint`).

    :param observation_space: when given, the checkpoint's observation space is checked
        against it (as :func:`load_policy_checkpoint` does).
    :param action_space: likewise for the action space (kind, size, bounds).
    :param env_name: names the environment or data in mismatch messages.
    :raises SourceNotFoundError: no such file.
    :raises DatasetFormatError: not a policy checkpoint, or not a continuous one.
    :raises DataValidationError: the checkpoint's spaces are not the given ones.
    """
    from tianshou_offline.data.format import space_from_dict

    p = Path(path)
    payload = _read(p, CONTINUOUS_CHECKPOINT)
    _check_format(p, payload)
    net = payload.get("net")
    kind = net.get("type", "mlp") if isinstance(net, dict) else None
    if kind == "decision_transformer":
        raise _not_markov(p)
    action = payload.get("action")
    if kind != "continuous" and isinstance(action, dict) and action.get("type") == "discrete":
        raise DatasetFormatError(
            f"{p}: a policy of discrete actions (net {kind!r}); expected {CONTINUOUS_CHECKPOINT}"
        )
    if (
        not isinstance(net, dict)
        or kind != "continuous"
        or payload.get("version") != CHECKPOINT_VERSION
    ):
        raise DatasetFormatError(
            f"{p}: field 'net.type' is {kind!r} (version {payload.get('version')!r}); expected "
            f"'continuous' (version {CHECKPOINT_VERSION}: a policy of "
            "tianshou_offline.algorithms saved with save_policy_checkpoint)"
        )
    try:
        obs_space = space_from_dict(payload["observation_space"])
        act_space = space_from_dict(payload["action_space"])
        if observation_space is not None:
            _check(p, "observation_space", _obs_mismatch(obs_space, observation_space),
                   env_name, "observations")  # fmt: skip
        if action_space is not None:
            _check(p, "action_space", _act_mismatch(act_space, action_space), env_name,
                   "actions")  # fmt: skip
        policy = _build_policy(net, obs_space, act_space)
    except TianshouOfflineError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise DatasetFormatError(
            f"{p}: field 'net' is malformed ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:200]}); expected the description written by "
            "save_policy_checkpoint"
        ) from e
    _load_weights(p, policy, payload["state_dict"])
    policy.eval()
    return policy


def _from_payload(
    p: Path,
    payload: Mapping[str, Any],
    scale_obs: bool | None,
    observation_space: gym.Space[Any] | None,
    action_space: gym.Space[Any] | None,
    env_name: str | None,
    seed: int | None,
) -> ActFn:
    from tianshou_offline.data.format import space_from_dict

    spec = payload["net"]
    kind = spec.get("type", "mlp")
    stored_obs = payload.get("observation_space")
    stored_act = payload.get("action_space")
    if kind == "continuous":
        if stored_obs is None or stored_act is None:
            raise KeyError("observation_space" if stored_obs is None else "action_space")
        obs_space, act_space = space_from_dict(stored_obs), space_from_dict(stored_act)
        if observation_space is not None:
            _check(p, "observation_space", _obs_mismatch(obs_space, observation_space),
                   env_name, "observations")  # fmt: skip
        if action_space is not None:
            _check(p, "action_space", _act_mismatch(act_space, action_space), env_name,
                   "actions")  # fmt: skip
        policy = _build_policy(spec, obs_space, act_space)
        _load_weights(p, policy, payload["state_dict"])
        return _continuous_act_fn(policy, seed)
    if kind == "atari":
        frames = (int(spec["frame_stack"]), *(int(x) for x in spec.get("frame_shape", (84, 84))))
        if observation_space is not None:
            _check(p, "net.frame_stack", _obs_mismatch(frames, observation_space), env_name,
                   "observations")  # fmt: skip
        if action_space is not None:
            found = gym.spaces.Discrete(int(spec["num_actions"]))
            _check(p, "net.num_actions", _act_mismatch(found, action_space), env_name,
                   "actions")  # fmt: skip
        model, head, threshold = _build_atari_net(spec)
        _load_weights(p, model, payload["state_dict"])
        return _atari_act_fn(
            model,
            head,
            threshold,
            scale_obs=bool(spec.get("scale_obs", True)) if scale_obs is None else scale_obs,
        )
    if kind == "discrete":
        return _discrete_act_fn(
            _discrete_from_payload(p, payload, observation_space, action_space, env_name)
        )
    if kind == "decision_transformer":
        from tianshou_offline.recording.dt_policies import (
            ReturnConditionedActFn,
            policy_from_payload,
        )

        dt = policy_from_payload(p, payload, observation_space, action_space, env_name)
        return ReturnConditionedActFn(dt, seed=seed)
    if kind != "mlp":
        raise DatasetFormatError(
            f"{p}: field 'net.type' is {kind!r}; expected 'continuous', 'discrete', "
            "'decision_transformer', 'mlp' or 'atari'"
        )
    if observation_space is not None:
        state_shape = tuple(int(x) for x in spec["state_shape"])
        field = "observation_space" if stored_obs is not None else "net.state_shape"
        found_obs = space_from_dict(stored_obs) if stored_obs is not None else state_shape
        _check(p, field, _obs_mismatch(found_obs, observation_space), env_name, "observations")
    if action_space is not None:
        action = payload["action"]
        if "n" not in action and action["type"] == "discrete":  # the oldest files
            action = {**action, "n": int(spec["action_shape"])}
        _check(p, "action", _act_mismatch(_action_space_of(action), action_space), env_name,
               "actions")  # fmt: skip
    return _mlp_act_fn(p, payload)


def make_policy(
    spec: str,
    env: gym.Env[Any, Any],
    *,
    eps: float = 0.0,
    seed: int | None = None,
    scale_obs: bool | None = None,
) -> ActFn:
    """Resolve a ``--policy`` value: ``random``, ``scripted`` (CartPole) or a checkpoint path.
    A checkpoint's spaces are checked against ``env``'s before it acts.

    :param eps: probability of taking a random action instead (ε-greedy noise).
    :param seed: seed of the noise (and of a stochastic policy's draws).
    :param scale_obs: for Atari checkpoints, see :func:`load_policy_checkpoint`.
    :raises SourceNotFoundError: no such file.
    :raises DatasetFormatError: not a policy checkpoint.
    :raises DataValidationError: the policy was made for another env.
    """
    env_name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    if spec == "random":
        return random_policy(env.action_space, seed)
    if spec == "scripted":
        cartpole = (
            env_name.startswith("CartPole")
            and _obs_mismatch((4,), env.observation_space) is None
            and _act_mismatch(gym.spaces.Discrete(2), env.action_space) is None
        )
        if not cartpole:
            raise DataValidationError(
                f"--policy scripted: the built-in expert drives CartPole (4 observations, 2 "
                f"actions); the env is {env_name} (for it, give 'random' or a policy "
                "checkpoint file)"
            )
        return ScriptedCartPoleExpert(eps=eps, seed=seed or 0)
    space = env.action_space
    base = load_policy_checkpoint(
        spec,
        scale_obs=scale_obs,
        observation_space=env.observation_space,
        action_space=space,
        env_name=env_name,
        seed=seed,
    )
    if eps <= 0:
        return base
    from tianshou_offline.recording.dt_policies import ReturnConditionedActFn

    if isinstance(base, ReturnConditionedActFn):  # its context records the action taken
        base.eps = float(eps)
        return base
    rng = np.random.default_rng(seed)
    space.seed(seed)

    def noisy(obs: Any) -> Any:
        return space.sample() if rng.random() < eps else base(obs)

    return noisy


# --------------------------------------------------------------------------------------
# Atari (stacked-frame) policies
# --------------------------------------------------------------------------------------


def save_atari_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    head: AtariHead,
    num_actions: int,
    frame_stack: int = 4,
    frame_shape: Sequence[int] = (84, 84),
    hidden_sizes: Sequence[int] = (512,),
    num_quantiles: int | None = None,
    scale_obs: bool = True,
    unlikely_action_threshold: float | None = None,
) -> Path:
    """Save an Atari policy network (Nature-DQN trunk, see
    :mod:`tianshou_offline.algorithms.discrete.nets`) with what is needed to rebuild it.

    :param model: a ``QNet`` (``head="q"`` or ``"logits"``), ``QuantileQNet``
        (``"quantiles"``) or ``DualHeadNet`` (``"bcq"``: Q, imitation logits; ``"logits"``:
        CRR's policy logits, Q-values).
    :param unlikely_action_threshold: BCQ's τ (``head="bcq"``).
    """
    p = Path(path)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "net": {
            "type": "atari",
            "head": head,
            "dual": type(model).__name__ == "DualHeadNet",
            "frame_stack": int(frame_stack),
            "frame_shape": [int(x) for x in frame_shape],
            "num_actions": int(num_actions),
            "hidden_sizes": [int(h) for h in hidden_sizes],
            "num_quantiles": None if num_quantiles is None else int(num_quantiles),
            "scale_obs": bool(scale_obs),
            "unlikely_action_threshold": unlikely_action_threshold,
        },
        "action": {"type": "discrete", "n": int(num_actions), "start": 0},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    return _write(payload, p)


def _build_atari_net(spec: dict[str, Any]) -> tuple[nn.Module, str, float | None]:
    from tianshou_offline.algorithms import (
        AtariTrunk,
        DualHeadNet,
        QNet,
        QuantileQNet,
    )

    h, w = (int(x) for x in spec.get("frame_shape", (84, 84)))
    trunk = AtariTrunk(int(spec["frame_stack"]), h, w, scale_obs=bool(spec.get("scale_obs", True)))
    head = str(spec["head"])
    n = int(spec["num_actions"])
    hidden = [int(x) for x in spec.get("hidden_sizes", [512])]
    model: nn.Module
    if spec.get("dual") or head == "bcq":
        model = DualHeadNet(trunk, n, hidden)
    elif head == "quantiles":
        model = QuantileQNet(trunk, n, int(spec["num_quantiles"]), hidden)
    elif head in ("q", "logits"):
        model = QNet(trunk, n, hidden)
    else:
        raise DatasetFormatError(f"Atari checkpoint: unknown head {head!r}")
    model.eval()
    threshold = spec.get("unlikely_action_threshold")
    return model, head, None if threshold is None else float(threshold)


def _tianshou_atari_state(
    payload: dict[str, Any],
) -> tuple[nn.Module, tuple[int, int, int], int] | None:
    """Rebuild a Tianshou ``DQNet`` / ``QRDQNet`` (Nature-DQN conv net) from a ``state_dict``
    saved by Tianshou's Atari examples (keys ``…model.net.0.0.weight`` … ``…model.net.3.bias``,
    possibly under ``policy.``), as one of our networks with the same weights.

    :returns: the network, its input shape ``(C, H, W)`` and its number of outputs
        (``A`` for DQN, ``A × N`` for QR-DQN); None when ``payload`` is not such a file."""
    import torch

    tensors = {k: v for k, v in payload.items() if isinstance(v, torch.Tensor)}
    prefixes = sorted(
        {k[: -len("net.0.0.weight")] for k in tensors if k.endswith("net.0.0.weight")},
        key=lambda pre: ("old" in pre, len(pre)),  # prefer the online model to a lagged copy
    )
    for pre in prefixes:
        names = ["net.0.0", "net.0.2", "net.0.4", "net.1", "net.3"]
        if not all(f"{pre}{n}.weight" in tensors and f"{pre}{n}.bias" in tensors for n in names):
            continue
        conv1 = tensors[f"{pre}net.0.0.weight"]
        hidden = tensors[f"{pre}net.1.weight"]
        out = tensors[f"{pre}net.3.weight"]
        in_channels = int(conv1.shape[1])
        # infer the frame size from the flattened conv output (84×84 → 3136)
        flat = int(hidden.shape[1])
        side = {3136: 84}.get(flat)
        if side is None:
            continue
        from tianshou_offline.algorithms import AtariTrunk, QNet

        trunk = AtariTrunk(in_channels, side, side, scale_obs=False)
        model = QNet(trunk, int(out.shape[0]), [int(hidden.shape[0])])
        mapping = {
            "trunk.net.0": "net.0.0",
            "trunk.net.2": "net.0.2",
            "trunk.net.4": "net.0.4",
            "head.0": "net.1",
            "head.2": "net.3",
        }
        state = {
            f"{ours}.{p}": tensors[f"{pre}{theirs}.{p}"]
            for ours, theirs in mapping.items()
            for p in ("weight", "bias")
        }
        model.load_state_dict(state)
        model.eval()
        return model, (in_channels, side, side), int(out.shape[0])
    return None


def _atari_act_fn(
    model: nn.Module,
    head: str,
    threshold: float | None,
    *,
    scale_obs: bool,
    num_actions: int | None = None,
) -> ActFn:
    import torch

    trunk = getattr(model, "trunk", None)
    if trunk is not None and hasattr(trunk, "scale_obs"):
        trunk.scale_obs = scale_obs
    log_tau = float(np.log(threshold)) if threshold else -np.inf

    @torch.no_grad()
    def act(obs: Any) -> int:
        x = torch.as_tensor(np.asarray(obs))[None]
        out = model(x)
        if head == "bcq":
            q, logits = out
            allowed = logits - logits.max(dim=1, keepdim=True).values > log_tau
            values = q.masked_fill(~allowed, -torch.inf)
        elif head == "logits":
            values = out[0] if isinstance(out, tuple) else out
        elif head == "quantiles":
            values = out.mean(dim=2)
        elif head == "tianshou":  # Q-values, or A × N quantiles
            values = out.view(1, num_actions or out.shape[1], -1).mean(dim=2)
        else:
            values = out
        return int(values.argmax(dim=1).item())

    return act


def _check_tianshou_atari(
    p: Path,
    in_shape: tuple[int, int, int],
    outputs: int,
    observation_space: gym.Space[Any] | None,
    action_space: gym.Space[Any] | None,
    env_name: str | None,
) -> None:
    """A Tianshou DQN / QR-DQN ``state_dict``'s input shape and outputs (``A`` or ``A × N``)
    against the env's."""
    if observation_space is not None:
        _check(p, "net.0.0.weight", _obs_mismatch(in_shape, observation_space), env_name,
               "observations")  # fmt: skip
    if action_space is None:
        return
    if not isinstance(action_space, gym.spaces.Discrete) or outputs % int(action_space.n):
        raise DataValidationError(
            f"{p}: field 'net.3.weight' is a Q-network with {outputs} outputs; expected a "
            f"multiple of the number of actions of {env_name or 'the env'} "
            f"({_one_line(action_space)}): the policy was made for another environment"
        )


# --------------------------------------------------------------------------------------
# discrete policies of tianshou_offline.algorithms (net.type "discrete", version 2)
# --------------------------------------------------------------------------------------

_DISCRETE_POLICIES = ("QValuePolicy", "DiscreteBCQPolicy", "DiscreteActorPolicy")


def _linear_widths(seq: nn.Module) -> list[int]:
    from torch import nn

    return [int(m.out_features) for m in seq.modules() if isinstance(m, nn.Linear)]


def _trunk_spec(trunk: nn.Module) -> dict[str, Any]:
    from tianshou_offline.algorithms import AtariTrunk, MLPTrunk

    if type(trunk) is MLPTrunk:
        assert isinstance(trunk, MLPTrunk)
        return {"type": "mlp", "obs_dim": trunk.obs_dim, "hidden_sizes": _linear_widths(trunk)}
    if type(trunk) is AtariTrunk:
        assert isinstance(trunk, AtariTrunk)
        c, h, w = trunk.in_shape
        return {"type": "atari", "in_channels": c, "height": h, "width": w,
                "scale_obs": bool(trunk.scale_obs)}  # fmt: skip
    raise ValueError(f"a {type(trunk).__name__} trunk; expected MLPTrunk or AtariTrunk")


def _model_spec(model: nn.Module) -> dict[str, Any]:
    from tianshou_offline.algorithms import DualHeadNet, QNet, QuantileQNet

    kind = type(model)
    if kind is QNet or kind is QuantileQNet:
        assert isinstance(model, QNet | QuantileQNet)
        spec: dict[str, Any] = {
            "type": kind.__name__,
            "num_actions": model.num_actions,
            "hidden_sizes": _linear_widths(model.head)[:-1],
            "trunk": _trunk_spec(model.trunk),
        }
        if isinstance(model, QuantileQNet):
            spec["num_quantiles"] = model.num_quantiles
        return spec
    if kind is DualHeadNet:
        assert isinstance(model, DualHeadNet)
        return {"type": "DualHeadNet", "num_actions": model.num_actions,
                "hidden_sizes": _linear_widths(model.first)[:-1],
                "trunk": _trunk_spec(model.trunk)}  # fmt: skip
    raise ValueError(f"a {kind.__name__} network; expected QNet, QuantileQNet or DualHeadNet")


def _build_model(spec: Mapping[str, Any]) -> nn.Module:
    from tianshou_offline.algorithms import AtariTrunk, DualHeadNet, MLPTrunk, QNet, QuantileQNet

    t = spec["trunk"]
    trunk: AtariTrunk | MLPTrunk
    if t["type"] == "mlp":
        trunk = MLPTrunk(int(t["obs_dim"]), [int(h) for h in t["hidden_sizes"]])
    elif t["type"] == "atari":
        trunk = AtariTrunk(int(t["in_channels"]), int(t["height"]), int(t["width"]),
                           scale_obs=bool(t["scale_obs"]))  # fmt: skip
    else:
        raise ValueError(f"unknown trunk type {t['type']!r}")
    n, hidden = int(spec["num_actions"]), [int(h) for h in spec["hidden_sizes"]]
    if spec["type"] == "QNet":
        return QNet(trunk, n, hidden)
    if spec["type"] == "QuantileQNet":
        return QuantileQNet(trunk, n, int(spec["num_quantiles"]), hidden)
    if spec["type"] == "DualHeadNet":
        return DualHeadNet(trunk, n, hidden)
    raise ValueError(f"unknown network type {spec['type']!r}")


def _build_discrete(
    spec: Mapping[str, Any], obs: gym.Space[Any], act: gym.Space[Any]
) -> DiscretePolicy:
    from tianshou_offline.algorithms import (
        DiscreteActorPolicy,
        DiscreteBCQPolicy,
        DualHeadNet,
        QValuePolicy,
    )

    kind = spec["policy"]
    model = _build_model(spec["model"])
    eps = float(spec.get("eps_inference", 0.0))
    common: dict[str, Any] = {"action_space": act, "observation_space": obs, "eps_inference": eps}
    if kind == "QValuePolicy":
        return QValuePolicy(model=model, **common)
    if kind == "DiscreteBCQPolicy":
        if not isinstance(model, DualHeadNet):
            raise ValueError("DiscreteBCQPolicy needs a DualHeadNet")
        return DiscreteBCQPolicy(model=model,
                                 unlikely_action_threshold=float(spec["unlikely_action_threshold"]),
                                 **common)  # fmt: skip
    if kind == "DiscreteActorPolicy":
        index = spec.get("logits_index")
        return DiscreteActorPolicy(actor=model, deterministic_eval=bool(spec["deterministic_eval"]),
                                   logits_index=None if index is None else int(index), **common)  # fmt: skip
    raise ValueError(
        f"unknown policy type {kind!r}; expected one of {', '.join(_DISCRETE_POLICIES)}"
    )


def _discrete_payload(policy: DiscretePolicy) -> dict[str, Any]:
    """The version-2 checkpoint of a discrete policy (see the module docstring); rebuilt and
    reloaded once here, so that a checkpoint that is written also loads.

    :raises ValueError: a policy or network this format does not describe.
    """
    from tianshou_offline.algorithms import DiscreteActorPolicy, DiscreteBCQPolicy, QValuePolicy
    from tianshou_offline.data.format import space_to_dict

    kind = type(policy).__name__
    if kind not in _DISCRETE_POLICIES:
        raise ValueError(
            f"policy checkpoints describe {', '.join(_DISCRETE_POLICIES)}; not a {kind}"
        )
    spec: dict[str, Any] = {"type": "discrete", "policy": kind,
                            "eps_inference": float(policy.eps_inference)}  # fmt: skip
    if isinstance(policy, QValuePolicy | DiscreteBCQPolicy):
        spec["model"] = _model_spec(policy.model)
    if isinstance(policy, DiscreteBCQPolicy):
        spec["unlikely_action_threshold"] = policy.unlikely_action_threshold
    if isinstance(policy, DiscreteActorPolicy):
        spec["model"] = _model_spec(policy.actor)
        spec["deterministic_eval"] = bool(policy.deterministic_eval)
        spec["logits_index"] = policy.logits_index
    obs_space = policy.observation_space
    if obs_space is None:
        trunk = spec["model"]["trunk"]
        shape = ((trunk["in_channels"], trunk["height"], trunk["width"])
                 if trunk["type"] == "atari" else (trunk["obs_dim"],))  # fmt: skip
        obs_space = gym.spaces.Box(-float("inf"), float("inf"), shape=shape)
    state = {k: v.detach().cpu() for k, v in policy.state_dict().items()}
    try:
        _build_discrete(spec, obs_space, policy.action_space).load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"cannot describe this {kind}'s networks: {e}") from e
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "net": spec,
        "observation_space": space_to_dict(obs_space),
        "action_space": space_to_dict(policy.action_space),
        "state_dict": state,
    }


def _from_atari_spec(
    spec: Mapping[str, Any], act: gym.Space[Any]
) -> tuple[DiscretePolicy, nn.Module]:
    """The policy of an Atari checkpoint (``save_atari_checkpoint``) and the network its
    ``state_dict`` loads into."""
    from tianshou_offline.algorithms import (
        DiscreteActorPolicy,
        DiscreteBCQPolicy,
        DualHeadNet,
        QValuePolicy,
    )

    model, head, threshold = _build_atari_net(dict(spec))
    if head == "bcq":
        assert isinstance(model, DualHeadNet)
        return DiscreteBCQPolicy(model=model, action_space=act,
                                 unlikely_action_threshold=threshold or 0.0), model  # fmt: skip
    if head == "logits":
        index = 0 if isinstance(model, DualHeadNet) else None
        return DiscreteActorPolicy(actor=model, action_space=act, logits_index=index), model
    return QValuePolicy(model=model, action_space=act), model


def _discrete_from_payload(
    p: Path,
    payload: Mapping[str, Any],
    observation_space: gym.Space[Any] | None,
    action_space: gym.Space[Any] | None,
    env_name: str | None,
) -> DiscretePolicy:
    """The policy of a ``"discrete"`` or ``"atari"`` checkpoint payload, its spaces checked
    against the given ones, on the CPU, in eval mode."""
    from tianshou_offline.data.format import space_from_dict

    spec = payload["net"]
    if spec.get("type") == "atari":
        frames = (int(spec["frame_stack"]), *(int(x) for x in spec.get("frame_shape", (84, 84))))
        found = gym.spaces.Discrete(int(spec["num_actions"]))
        if observation_space is not None:
            _check(p, "net.frame_stack", _obs_mismatch(frames, observation_space), env_name,
                   "observations")  # fmt: skip
        if action_space is not None:
            _check(p, "net.num_actions", _act_mismatch(found, action_space), env_name,
                   "actions")  # fmt: skip
        policy, model = _from_atari_spec(spec, found)
        _load_weights(p, model, payload["state_dict"])
        return policy.eval()
    obs_space = space_from_dict(payload["observation_space"])
    act_space = space_from_dict(payload["action_space"])
    if observation_space is not None:
        _check(p, "observation_space", _obs_mismatch(obs_space, observation_space), env_name,
               "observations")  # fmt: skip
    if action_space is not None:
        _check(p, "action_space", _act_mismatch(act_space, action_space), env_name, "actions")
    policy = _build_discrete(spec, obs_space, act_space)
    _load_weights(p, policy, payload["state_dict"])
    return policy.eval()


def load_discrete_policy(
    path: str | os.PathLike[str],
    *,
    observation_space: gym.Space[Any] | None = None,
    action_space: gym.Space[Any] | None = None,
    env_name: str | None = None,
) -> DiscretePolicy:
    """Rebuild the policy of a discrete checkpoint — version 2 ``"discrete"`` (any discrete
    policy of :mod:`tianshou_offline.algorithms`, saved with ``save_policy_checkpoint``) or
    ``"atari"`` (``save_atari_checkpoint``) — as that policy, on the CPU, in eval mode.

    :param observation_space: when given, the checkpoint's observation space is checked
        against it; likewise ``action_space`` (kind and size).
    :param env_name: names the environment or data in mismatch messages.
    :raises SourceNotFoundError: no such file.
    :raises DatasetFormatError: not a policy checkpoint, or not a discrete one.
    :raises DataValidationError: the checkpoint's spaces are not the given ones.
    """

    p = Path(path)
    payload = _read(p)
    _check_format(p, payload)
    net = payload.get("net")
    kind = net.get("type") if isinstance(net, dict) else None
    if kind == "decision_transformer":
        raise _not_markov(p)
    if kind not in ("discrete", "atari"):
        raise DatasetFormatError(
            f"{p}: field 'net.type' is {kind!r}; expected 'discrete' (a discrete policy of "
            "tianshou_offline.algorithms saved with save_policy_checkpoint) or 'atari'"
        )
    try:
        return _discrete_from_payload(p, payload, observation_space, action_space, env_name)
    except TianshouOfflineError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise DatasetFormatError(
            f"{p}: field 'net' is malformed ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:200]}); expected the description written by "
            "save_policy_checkpoint"
        ) from e
