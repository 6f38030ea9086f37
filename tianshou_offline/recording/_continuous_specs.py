"""Continuous policies of :mod:`tianshou_offline.algorithms` in a checkpoint: their modules
as plain-data specs, rebuilt from them, and how a rebuilt policy acts (version 2,
``net.type == "continuous"``; see :mod:`tianshou_offline.recording.policies`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from tianshou_offline.recording._checkpoint_files import (
    CHECKPOINT_FORMAT,
    ActFn,
)

if TYPE_CHECKING:
    from torch import nn

    from tianshou_offline.algorithms import ContinuousPolicy, DiscretePolicy


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
