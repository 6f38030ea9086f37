"""Our algorithm configs in d3rlpy 2.8.1's terms: the one map of our config fields to the
``params`` that :mod:`benchmarks._lib.d3rlpy_side` builds d3rlpy's configs from.

The benchmarks (the speed benchmark and the quality table) take our side's settings from a
preset (:mod:`tianshou_offline.algorithms.presets`) and give d3rlpy the same values through
:func:`d3rlpy_params`, so the two sides cannot drift apart. d3rlpy's own defaults differ
(BCQ samples 100 actions, CQL learns its conservative weight, CRR copies its targets every
100 steps, DiscreteBC penalises its logits with β = 0.5); every value d3rlpy gets is ours.
It runs without d3rlpy: the result is plain data, sent to d3rlpy's process.
"""

from __future__ import annotations

from typing import Any

from tianshou_offline.algorithms import (
    AWACConfig,
    BCQConfig,
    ContinuousDTConfig,
    CQLConfig,
    CRRConfig,
    DiscreteBCQConfig,
    DiscreteCQLConfig,
    DiscreteImitationConfig,
    ImitationConfig,
    IQLConfig,
    ReBRACConfig,
    TD3BCConfig,
)
from tianshou_offline.algorithms.config import AlgorithmConfig, ContinuousTDConfig

__all__ = ["d3rlpy_algo", "d3rlpy_has", "d3rlpy_params"]


def d3rlpy_has(config: AlgorithmConfig) -> bool:
    """Whether d3rlpy 2.8.1 has this algorithm (it has no SAC-N, EDAC, LB-SAC, nor a
    discrete CRR; its discrete Decision Transformer is not mapped here)."""
    return isinstance(
        config,
        ImitationConfig
        | BCQConfig
        | CQLConfig
        | TD3BCConfig
        | CRRConfig
        | IQLConfig
        | ReBRACConfig
        | AWACConfig
        | ContinuousDTConfig
        | DiscreteImitationConfig
        | DiscreteBCQConfig
        | DiscreteCQLConfig,
    )


def d3rlpy_algo(config: AlgorithmConfig) -> str:
    """The name :mod:`benchmarks._lib.d3rlpy_side` knows the algorithm by (``bc`` for our
    continuous ``il``)."""
    if isinstance(config, ImitationConfig):
        return "bc"
    return config.name


def _td(config: ContinuousTDConfig) -> dict[str, Any]:
    return {
        "actor_lr": config.actor_lr,
        "critic_lr": config.critic_lr,
        "gamma": config.gamma,
        "tau": config.tau,
        "n_critics": config.num_critics,
    }


def d3rlpy_params(config: AlgorithmConfig, **changes: Any) -> dict[str, Any]:
    """d3rlpy's config fields for ``config`` (the ``params`` of
    :func:`benchmarks._lib.d3rlpy_side.continuous_config` / ``discrete_config``), with
    ``changes`` applied: a value d3rlpy needs that has no field of ours (the quality table's
    d3rlpy-side conservative weight of DiscreteCQL).

    :raises ValueError: d3rlpy has no such algorithm, or a change names no d3rlpy field.
    """
    params: dict[str, Any]
    if isinstance(config, ImitationConfig):
        params = {"lr": config.lr}
    elif isinstance(config, BCQConfig):
        params = {
            **_td(config),
            "imitator_lr": config.vae_lr,
            "lam": config.lmbda,
            "n_action_samples": config.num_sampled_actions,
            "action_flexibility": config.phi,
            "beta": config.kl_weight,
        }
    elif isinstance(config, CQLConfig):
        params = {
            **_td(config),
            "temp_lr": config.alpha_lr,
            # d3rlpy learns its conservative weight unless its learning rate is 0
            "alpha_lr": config.cql_alpha_lr if config.with_lagrange else 0.0,
            "critic_clip_grad_norm": config.max_grad_norm,
            "conservative_weight": config.cql_weight,
            "alpha_threshold": config.lagrange_threshold,
            "n_action_samples": config.num_sampled_actions,
            "soft_q_backup": config.backup_entropy,
        }
    elif isinstance(config, TD3BCConfig):
        params = {
            **_td(config),
            "policy_noise": config.policy_noise,
            "noise_clip": config.noise_clip,
            "alpha": config.alpha,
            "update_actor_interval": config.update_actor_freq,
        }
    elif isinstance(config, CRRConfig):
        params = {
            **_td(config),
            "beta": config.beta,
            "n_action_samples": config.num_sampled_actions,
            "advantage_type": config.advantage,
            "weight_type": config.weight,
            "max_weight": config.max_weight,
            "target_update_type": "soft" if config.target_update_freq == 1 else "hard",
            "target_update_interval": config.target_update_freq,
        }
    elif isinstance(config, IQLConfig):
        params = {
            **_td(config),  # d3rlpy: one optimizer for Q and V, at critic_lr
            "expectile": config.expectile,
            "weight_temp": config.beta,
            "max_weight": config.max_weight,
        }
    elif isinstance(config, ReBRACConfig):
        params = {
            **_td(config),
            "policy_noise": config.policy_noise,
            "noise_clip": config.noise_clip,
            "update_actor_interval": config.update_actor_freq,
            "actor_beta": config.actor_bc_coef,
            "critic_beta": config.critic_bc_coef,
            "critic_layer_norm": config.critic_layer_norm,
        }
    elif isinstance(config, AWACConfig):
        params = {
            **_td(config),
            "lam": config.lam,
            "n_action_samples": config.num_sampled_actions,
        }
    elif isinstance(config, ContinuousDTConfig):
        # d3rlpy's embedding width is its state encoder's output: d3rlpy_side gives it one
        # Linear(obs, embed_size), as ours; dropout is one value for the three d3rlpy has
        params = {
            "lr": config.lr,
            "weight_decay": config.weight_decay,
            "warmup_steps": config.warmup_steps,
            "clip_grad_norm": config.max_grad_norm,
            "context_size": config.context,
            "max_timestep": config.max_timestep,
            "embed_size": config.embed_dim,
            "num_layers": config.n_layers,
            "num_heads": config.n_heads,
            "dropout": config.dropout,
        }
    elif isinstance(config, DiscreteImitationConfig):
        params = {"lr": config.lr, "beta": 0.0}  # ours: plain cross-entropy
    elif isinstance(config, DiscreteBCQConfig):
        params = {
            "lr": config.lr,
            "action_flexibility": config.unlikely_action_threshold,
            "beta": config.imitation_logits_penalty,
            "target_update_interval": config.target_update_freq,
        }
    elif isinstance(config, DiscreteCQLConfig):
        params = {
            "lr": config.lr,
            "alpha": config.min_q_weight,
            "target_update_interval": config.target_update_freq,
        }
    else:
        raise ValueError(f"d3rlpy has no {config.action_kind}-action {config.name!r}")
    unknown = sorted(set(changes) - set(params))
    if unknown:
        raise ValueError(
            f"d3rlpy's {config.name!r} has no field {', '.join(unknown)}; it has "
            f"{', '.join(params)}"
        )
    return {**params, **changes}
