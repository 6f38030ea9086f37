"""Atari (stacked-frame) policies: the version 1 ``"atari"`` checkpoints of
:func:`save_atari_checkpoint`, and the ``state_dict`` files Tianshou's own Atari DQN / QR-DQN
examples save (the architecture inferred from the tensor shapes); see
:mod:`tianshou_offline.recording.policies`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from tianshou_offline.recording._checkpoint_files import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    ActFn,
    AtariHead,
    _check,
    _obs_mismatch,
    _one_line,
    _write,
)

if TYPE_CHECKING:
    from torch import nn


from tianshou_offline.errors import (
    DatasetFormatError,
    DataValidationError,
)

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
