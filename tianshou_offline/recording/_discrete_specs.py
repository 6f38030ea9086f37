"""Discrete policies of :mod:`tianshou_offline.algorithms` in a checkpoint (version 2,
``net.type == "discrete"``): their networks as plain-data specs and rebuilt from them;
see :mod:`tianshou_offline.recording.policies`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym

from tianshou_offline.recording._atari_weights import (
    _build_atari_net,
)
from tianshou_offline.recording._checkpoint_files import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    _act_mismatch,
    _check,
    _load_weights,
    _obs_mismatch,
    stored_spaces,
)

if TYPE_CHECKING:
    from torch import nn

    from tianshou_offline.algorithms import DiscretePolicy


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
    obs_space, act_space = stored_spaces(p, payload, observation_space, action_space, env_name)
    policy = _build_discrete(spec, obs_space, act_space)
    _load_weights(p, policy, payload["state_dict"])
    return policy.eval()
