"""Policies that drive recording: random, the built-in scripted CartPole expert, and
weights-only checkpoints of MLP policies (loaded with ``torch.load(weights_only=True)``;
never unpickled).

A checkpoint is a ``torch.save``d dict::

    {"format": "tianshou-offline-policy", "version": 1,
     "net": {"type": "mlp", "state_shape": [4], "action_shape": 2, "hidden_sizes": [64, 64]},
     "action": {"type": "discrete"} | {"type": "continuous", "low": [...], "high": [...]},
     "state_dict": {...}}

For a discrete action space the net outputs action values/logits and the policy takes the
argmax; for a continuous one the net outputs the action in the env's units (clipped to
the bounds).

Atari (stacked-frame) policies use ``"net": {"type": "atari", ...}`` (written by
:func:`save_atari_checkpoint`, e.g. by ``examples/atari/atari_*.py``): the Nature-DQN conv
trunk with a Q, quantile, BCQ or logits head. :func:`load_policy_checkpoint` also reads the
``state_dict`` files Tianshou's own Atari DQN / QR-DQN examples save (``policy.pth``, e.g.
from ``atari_qrdqn.py``), weights only; the architecture is inferred from the tensor shapes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import gymnasium as gym
import numpy as np

if TYPE_CHECKING:
    from tianshou.utils.net.common import Net
    from torch import nn

from tianshou_offline.errors import DatasetFormatError, SourceNotFoundError

CHECKPOINT_FORMAT = "tianshou-offline-policy"
CHECKPOINT_VERSION = 1

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


def save_policy_checkpoint(
    path: str | os.PathLike[str],
    net: Net,
    *,
    state_shape: Sequence[int],
    action_space: gym.Space[Any],
    hidden_sizes: Sequence[int],
) -> Path:
    """Save an MLP policy's weights with the architecture needed to rebuild it."""
    import torch

    p = Path(path)
    action_shape: int | list[int] = (
        int(action_space.n)
        if isinstance(action_space, gym.spaces.Discrete)
        else list(action_space.shape or ())
    )
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "net": {
            "type": "mlp",
            "state_shape": list(state_shape),
            "action_shape": action_shape,
            "hidden_sizes": list(hidden_sizes),
        },
        "action": _action_spec(action_space),
        "state_dict": net.state_dict(),
    }
    tmp = p.with_name(f".{p.name}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, p)
    return p


def load_policy_checkpoint(
    path: str | os.PathLike[str],
    *,
    scale_obs: bool | None = None,
    num_actions: int | None = None,
) -> ActFn:
    """Load a policy checkpoint as an obs → action function: one written by
    :func:`save_policy_checkpoint` / :func:`save_atari_checkpoint`, or a Tianshou Atari
    DQN / QR-DQN ``state_dict`` (weights only in every case).

    :param scale_obs: Atari nets only: divide pixels by 255 (default: the checkpoint's own
        setting; unscaled for Tianshou checkpoints, as Tianshou's ``--scale-obs 0`` default).
    :param num_actions: the env's number of actions; tells a Tianshou QR-DQN checkpoint
        (``A × N`` outputs) from a DQN one (``A`` outputs).
    :raises SourceNotFoundError: no such file.
    :raises DatasetFormatError: not a policy checkpoint.
    """
    import torch
    from tianshou.utils.net.common import Net

    p = Path(path)
    if not p.exists():
        raise SourceNotFoundError(f"{p}: no such policy checkpoint (expected 'random' or a .pt file)")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise DatasetFormatError(
            f"{p}: not a weights-only policy checkpoint ({type(e).__name__}: {e})"
        ) from e
    if isinstance(payload, dict) and payload.get("format") is None:
        tianshou_net = _tianshou_atari_state(payload)
        if tianshou_net is not None:
            return _atari_act_fn(
                *tianshou_net, scale_obs=bool(scale_obs), num_actions=num_actions
            )
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise DatasetFormatError(
            f"{p}: field 'format' is {payload.get('format') if isinstance(payload, dict) else None!r}; "
            f"expected {CHECKPOINT_FORMAT!r}"
        )
    if int(payload.get("version", 0)) > CHECKPOINT_VERSION:
        raise DatasetFormatError(
            f"{p}: checkpoint version {payload.get('version')} is newer than {CHECKPOINT_VERSION}"
        )
    spec = payload["net"]
    if spec.get("type") == "atari":
        model, head, threshold = _build_atari_net(spec)
        model.load_state_dict(payload["state_dict"])
        return _atari_act_fn(
            model,
            head,
            threshold,
            scale_obs=bool(spec.get("scale_obs", True)) if scale_obs is None else scale_obs,
        )
    net = Net(
        state_shape=tuple(spec["state_shape"]),
        action_shape=spec["action_shape"],
        hidden_sizes=tuple(spec["hidden_sizes"]),
    )
    net.load_state_dict(payload["state_dict"])
    net.eval()
    action = payload["action"]

    def act(obs: Any) -> Any:
        return _act(obs)

    @torch.no_grad()
    def _act(obs: Any) -> Any:
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32)[None])
        out, _ = net(x)
        if action["type"] == "discrete":
            return int(out.argmax(dim=-1).item()) + int(action.get("start", 0))
        a = out.numpy()[0].reshape(action["shape"])
        return np.clip(a, np.asarray(action["low"]).reshape(a.shape), np.asarray(action["high"]).reshape(a.shape))

    return act


def make_policy(
    spec: str,
    env: gym.Env[Any, Any],
    *,
    eps: float = 0.0,
    seed: int | None = None,
    scale_obs: bool | None = None,
) -> ActFn:
    """Resolve a ``--policy`` value: ``random``, ``scripted`` (CartPole) or a checkpoint path.

    :param eps: probability of taking a random action instead (ε-greedy noise).
    :param scale_obs: for Atari checkpoints, see :func:`load_policy_checkpoint`.
    """
    if spec == "random":
        return random_policy(env.action_space, seed)
    if spec == "scripted":
        if env.spec is None or not env.spec.id.startswith("CartPole"):
            raise ValueError(
                f"--policy scripted is the built-in CartPole expert; env is {env.spec.id if env.spec else env}"
            )
        return ScriptedCartPoleExpert(eps=eps, seed=seed or 0)
    space = env.action_space
    base = load_policy_checkpoint(
        spec,
        scale_obs=scale_obs,
        num_actions=int(space.n) if isinstance(space, gym.spaces.Discrete) else None,
    )
    if eps <= 0:
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
    import torch

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
    tmp = p.with_name(f".{p.name}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, p)
    return p


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


def _tianshou_atari_state(payload: dict[str, Any]) -> tuple[nn.Module, str, float | None] | None:
    """Rebuild a Tianshou ``DQNet`` / ``QRDQNet`` (Nature-DQN conv net) from a ``state_dict``
    saved by Tianshou's Atari examples (keys ``…model.net.0.0.weight`` … ``…model.net.3.bias``,
    possibly under ``policy.``), as one of our networks with the same weights."""
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
        return model, "tianshou", None
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
