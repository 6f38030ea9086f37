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
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

if TYPE_CHECKING:
    from tianshou.utils.net.common import Net

from tianshou_offline.errors import DatasetFormatError, SourceNotFoundError

CHECKPOINT_FORMAT = "tianshou-offline-policy"
CHECKPOINT_VERSION = 1

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


def load_policy_checkpoint(path: str | os.PathLike[str]) -> ActFn:
    """Load a checkpoint written by :func:`save_policy_checkpoint` as an obs → action function.

    :raises SourceNotFoundError: no such file.
    :raises DatasetFormatError: not a tianshou-offline policy checkpoint.
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


def make_policy(spec: str, env: gym.Env[Any, Any], *, eps: float = 0.0, seed: int | None = None) -> ActFn:
    """Resolve a ``--policy`` value: ``random``, ``scripted`` (CartPole) or a checkpoint path.

    :param eps: probability of taking a random action instead (ε-greedy noise).
    """
    if spec == "random":
        return random_policy(env.action_space, seed)
    if spec == "scripted":
        if env.spec is None or not env.spec.id.startswith("CartPole"):
            raise ValueError(
                f"--policy scripted is the built-in CartPole expert; env is {env.spec.id if env.spec else env}"
            )
        return ScriptedCartPoleExpert(eps=eps, seed=seed or 0)
    base = load_policy_checkpoint(spec)
    if eps <= 0:
        return base
    rng = np.random.default_rng(seed)
    space = env.action_space
    space.seed(seed)

    def noisy(obs: Any) -> Any:
        return space.sample() if rng.random() < eps else base(obs)

    return noisy
