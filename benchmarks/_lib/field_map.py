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

from collections.abc import Callable
from typing import Any

from tianshou_offline.algorithms import (
    AWACConfig,
    BCQConfig,
    ContinuousDTConfig,
    CQLConfig,
    CRRConfig,
    DiscreteBCQConfig,
    DiscreteCQLConfig,
    DiscreteDTConfig,
    DiscreteImitationConfig,
    ImitationConfig,
    IQLConfig,
    ReBRACConfig,
    TD3BCConfig,
)
from tianshou_offline.algorithms.config import AlgorithmConfig

__all__ = [
    "NotExpressible",
    "check_expressible",
    "d3rlpy_algo",
    "d3rlpy_differences",
    "d3rlpy_has",
    "d3rlpy_params",
]


class NotExpressible(ValueError):
    """Our config sets something d3rlpy's algorithm has no field for."""


Field = str | Callable[[Any], Any]
"""A d3rlpy field's value: the name of our config's field that holds it, or a function of
our config."""

_TD: dict[str, Field] = {
    "actor_lr": "actor_lr",
    "critic_lr": "critic_lr",
    "gamma": "gamma",
    "tau": "tau",
    "n_critics": "num_critics",
}
"""Every actor-critic's fields."""

_DT: dict[str, Field] = {
    "lr": "lr", "weight_decay": "weight_decay", "warmup_steps": "warmup_steps",
    "clip_grad_norm": "max_grad_norm", "context_size": "context",
    "max_timestep": "max_timestep", "embed_size": "embed_dim", "num_layers": "n_layers",
    "num_heads": "n_heads", "dropout": "dropout",
    # d3rlpy's reward scaler (× 1 / rtg_scale) and its acting wrapper's target
    "rtg_scale": "rtg_scale", "target_return": "target_return",
}  # fmt: skip
"""Both Decision Transformers' fields."""

_PARAMS: tuple[tuple[type[AlgorithmConfig], dict[str, Field]], ...] = (
    (ImitationConfig, {"lr": "lr"}),
    (BCQConfig, {
        **_TD, "imitator_lr": "vae_lr", "lam": "lmbda", "n_action_samples": "num_sampled_actions",
        "action_flexibility": "phi", "beta": "kl_weight",
    }),
    (CQLConfig, {
        **_TD, "temp_lr": "alpha_lr",
        # d3rlpy learns its conservative weight unless its learning rate is 0
        "alpha_lr": lambda c: c.cql_alpha_lr if c.with_lagrange else 0.0,
        "critic_clip_grad_norm": "max_grad_norm", "conservative_weight": "cql_weight",
        "alpha_threshold": "lagrange_threshold", "n_action_samples": "num_sampled_actions",
        "soft_q_backup": "backup_entropy",
    }),
    (TD3BCConfig, {
        **_TD, "policy_noise": "policy_noise", "noise_clip": "noise_clip", "alpha": "alpha",
        "update_actor_interval": "update_actor_freq",
    }),
    (CRRConfig, {
        **_TD, "beta": "beta", "n_action_samples": "num_sampled_actions",
        "advantage_type": "advantage", "weight_type": "weight", "max_weight": "max_weight",
        "target_update_type": lambda c: "soft" if c.target_update_freq == 1 else "hard",
        "target_update_interval": "target_update_freq",
    }),
    # d3rlpy: one optimizer for Q and V, at critic_lr
    (IQLConfig, {**_TD, "expectile": "expectile", "weight_temp": "beta", "max_weight": "max_weight"}),
    (ReBRACConfig, {
        **_TD, "policy_noise": "policy_noise", "noise_clip": "noise_clip",
        "update_actor_interval": "update_actor_freq", "actor_beta": "actor_bc_coef",
        "critic_beta": "critic_bc_coef", "critic_layer_norm": "critic_layer_norm",
    }),
    (AWACConfig, {**_TD, "lam": "lam", "n_action_samples": "num_sampled_actions"}),
    # d3rlpy's embedding width is its state encoder's output: d3rlpy_side gives it one
    # Linear(obs, embed_size), as ours; dropout is one value for the three d3rlpy has
    (ContinuousDTConfig, _DT),
    # the sampling rule of its acting wrapper's action sampler
    (DiscreteDTConfig, {**_DT, "sample_actions": "sample_actions"}),
    (DiscreteImitationConfig, {"lr": "lr", "beta": lambda c: 0.0}),  # ours: plain cross-entropy
    (DiscreteBCQConfig, {
        "lr": "lr", "action_flexibility": "unlikely_action_threshold",
        "beta": "imitation_logits_penalty", "target_update_interval": "target_update_freq",
    }),
    (DiscreteCQLConfig, {
        "lr": "lr", "alpha": "min_q_weight", "target_update_interval": "target_update_freq",
    }),
)  # fmt: skip
"""The one map: for each of our configs d3rlpy has an algorithm of, d3rlpy's field → its
value (the first class that matches)."""


def d3rlpy_has(config: AlgorithmConfig) -> bool:
    """Whether d3rlpy 2.8.1 has this algorithm (it has no SAC-N, EDAC, LB-SAC, nor a
    discrete CRR)."""
    return isinstance(config, tuple(kind for kind, _ in _PARAMS))


def d3rlpy_algo(config: AlgorithmConfig) -> str:
    """The name :mod:`benchmarks._lib.d3rlpy_side` knows the algorithm by (``bc`` for our
    continuous ``il``)."""
    if isinstance(config, ImitationConfig):
        return "bc"
    return config.name


def d3rlpy_params(config: AlgorithmConfig, **changes: Any) -> dict[str, Any]:
    """d3rlpy's config fields for ``config`` (the ``params`` of
    :func:`benchmarks._lib.d3rlpy_side.continuous_config` / ``discrete_config``), with
    ``changes`` applied: a value d3rlpy needs that has no field of ours (the quality table's
    d3rlpy-side conservative weight of DiscreteCQL).

    :raises ValueError: d3rlpy has no such algorithm, or a change names no d3rlpy field.
    """
    fields = next((f for kind, f in _PARAMS if isinstance(config, kind)), None)
    if fields is None:
        raise ValueError(f"d3rlpy has no {config.action_kind}-action {config.name!r}")
    params = {k: getattr(config, f) if isinstance(f, str) else f(config) for k, f in fields.items()}
    unknown = sorted(set(changes) - set(params))
    if unknown:
        raise ValueError(
            f"d3rlpy's {config.name!r} has no field {', '.join(unknown)}; it has "
            f"{', '.join(params)}"
        )
    return {**params, **changes}


def _expected(config: AlgorithmConfig) -> list[tuple[str, Any, str]]:
    """(field, the value d3rlpy's algorithm behaves as, what d3rlpy does) for the settings
    of ours that :func:`d3rlpy_params` has no d3rlpy field to carry."""
    hp = config.hyperparameters()
    out: list[tuple[str, Any, str]] = []
    if config.action_kind == "continuous":
        out.append(("n_step_return_horizon", 1, "its continuous algorithms use 1-step targets"))
        if not isinstance(config, CQLConfig | ContinuousDTConfig):
            out.append(("max_grad_norm", None, "gradient clipping only for CQL's critic here"))
    elif not isinstance(config, DiscreteDTConfig):
        out.append(("max_grad_norm", None, "no gradient clipping in the benchmarks' builder"))
    if isinstance(config, DiscreteDTConfig):  # the continuous one's is a listed difference
        out.append(("init_std", 0.02, "its GPT-2 initialisation is N(0, 0.02)"))
    if isinstance(config, ImitationConfig):
        out.append(("actor", "deterministic", "the benchmarks build its deterministic BC"))
    elif isinstance(config, BCQConfig):
        out += [
            ("latent_dim", None, "its VAE latent is 2 × the action size"),
            ("policy_num_sampled_actions", hp["num_sampled_actions"],
             "one n_action_samples for the target and for acting"),
            ("vae_hidden_sizes", hp["hidden_sizes"], "its imitator gets the critics' widths"),
            ("perturb_target_actions", True, "it perturbs the target's actions"),
        ]  # fmt: skip
    elif isinstance(config, CQLConfig):
        out += [
            ("auto_alpha", True, "its entropy temperature is learned"),
            ("init_alpha", 1.0, "its initial temperature is 1"),
            ("target_entropy", None, "its target entropy is −(action size)"),
            ("temperature", 1.0, "its log-sum-exp has no temperature"),
            ("calibrated", False, "Cal-QL is another d3rlpy algorithm"),
            ("lagrange_form", "cql", "its Lagrange term is CQL's"),
        ]
    elif isinstance(config, CRRConfig):
        if hp["target_update_freq"] != 1:
            out.append(("tau", 1.0, "soft updates every step, or hard copies"))
    elif isinstance(config, IQLConfig):
        out += [
            ("value_lr", hp["critic_lr"], "one optimizer for its Q and V"),
            ("deterministic_actor", False, "its actor is a Gaussian"),
            ("actor_cosine_steps", None, "no learning-rate schedule"),
        ]
    elif isinstance(config, ReBRACConfig):
        out.append(("normalize_q", True, "its actor loss divides by the batch's mean |Q|"))
    elif isinstance(config, AWACConfig):
        out += [
            ("normalize_weights", True, "its weights are B · softmax(A / λ) over the batch"),
            ("conditioned_std", False, "its log-std is a state-independent parameter"),
        ]
    elif isinstance(config, DiscreteBCQConfig):
        out.append(("huber_delta", 1.0, "its Huber loss has δ = 1"))
    elif isinstance(config, DiscreteCQLConfig):  # d3rlpy's: double DQN, a mean Q per action
        out += [
            ("num_quantiles", 1, "one mean Q per action (double DQN)"),
            ("double_q", True, "its target is double DQN's"),
            ("kappa", 1.0, "its Huber loss has δ = 1"),
        ]
    return out


def check_expressible(config: AlgorithmConfig) -> None:
    """Refuse a config with a setting :func:`d3rlpy_params` cannot give d3rlpy (a benchmark
    that compares like for like calls it; the speed benchmark states its differences).

    :raises NotExpressible: naming the first such field, its value and d3rlpy's.
    """
    if not d3rlpy_has(config):
        raise NotExpressible(f"d3rlpy 2.8.1 has no {config.action_kind}-action {config.name!r}")
    hp = config.hyperparameters()
    for key, expected, d3rlpy in _expected(config):
        if key in hp and hp[key] != expected:
            raise NotExpressible(
                f"{config.name}: {key}={hp[key]!r} cannot be mapped to d3rlpy 2.8.1 "
                f"({d3rlpy}); expected {key}={expected!r}"
            )


def d3rlpy_differences(config: AlgorithmConfig) -> tuple[str, ...]:
    """What d3rlpy's algorithm still does differently from ours, with no field to change it
    (for the table's notes)."""
    if isinstance(config, CRRConfig):
        return (
            "CRR's Gaussian: d3rlpy's mean is tanh(μ) (log-likelihoods of a Gaussian around "
            "tanh(μ)); ours is unbounded, its actions clipped to the bounds — measured: most "
            "of HalfCheetah medium's actor-mean gap (below)",
        )
    if isinstance(config, ContinuousDTConfig):
        return (
            "Decision Transformer's segments: d3rlpy's end at a uniformly drawn stored step "
            "(left-padded near an episode's start), ours start at one (left-padded when the "
            "episode ends within K steps)",
            "Decision Transformer's loss: d3rlpy sums the squared error over the action's "
            "dimensions and averages over every slot of the batch, padding included; ours "
            "averages over the real steps and the dimensions",
            "Decision Transformer's timesteps: d3rlpy's count from 1, ours from 0 (each side "
            "acts as it trained); its attention masks padding with −10⁴ (ours −10⁹), its "
            "blocks are its own GPT-2 ones (ours PyTorch's TransformerEncoderLayer; both "
            "pre-LayerNorm, GELU), its blocks and timestep embedding initialised N(0, 0.02) "
            "(GPT-2's, as the authors' gym code; ours init_std=None, PyTorch's defaults: linear "
            "layers uniform in ±1/√fan-in, the timestep embedding N(0, 1) — ours on purpose: "
            "ContinuousDTConfig's docstring says why)",
        )
    if isinstance(config, DiscreteDTConfig):
        return (
            "Discrete Decision Transformer's network: d3rlpy's is the authors' Atari one — tanh "
            "on the token embeddings, no LayerNorm on them, a bias-free output layer, its own "
            "GPT-2 blocks; ours LayerNorm on the token embeddings and PyTorch's "
            "TransformerEncoderLayer (both pre-LayerNorm, GELU, one embedding per timestep)",
            "Discrete Decision Transformer's loss: d3rlpy averages the cross-entropy over every "
            "slot of the batch, padding (action 0) included; ours over the real steps",
            "Discrete Decision Transformer's learning rate: d3rlpy warms up over real tokens "
            "(warmup_steps × batch × K; padded segments make it a little longer), its first "
            "step at the full rate; ours over gradient steps",
            "Discrete Decision Transformer's segments and timesteps: as the continuous one's",
            "Discrete Decision Transformer's initialisation: both sides' blocks, output layer "
            "and action embedding N(0, 0.02) (GPT-2's, as the authors' Atari code), biases 0; "
            "d3rlpy's timestep embedding N(0, 0.02), ours 0 (the authors' Atari code). Ours "
            "initialised with PyTorch's defaults before (init_std=None: embeddings N(0, 1), "
            "linear layers uniform in ±1/√fan-in) — measured: most of CartPole medium's gap "
            "then (below)",
        )
    if isinstance(config, AWACConfig):
        return (
            "AWAC's critic target: d3rlpy 2.8.1 reuses its SAC target — a tanh-squashed next "
            "action and − log π(a'|s') with the temperature fixed at 1 — where ours is the "
            "paper's min_j Q'_j(s', a'), a' ~ π clipped to the bounds — measured: its − log π "
            "term is the cause of HalfCheetah medium's AWAC gap (below)",
            "AWAC's Gaussian: d3rlpy's mean is tanh(μ), log-std clamped to [−6, 0]; ours is "
            "unbounded (actions clipped to the bounds), log-std clamped to our GaussianActor's "
            "bounds; d3rlpy's actor loss is the batch sum (B × ours: the same Adam step up to ε)",
        )
    return ()
