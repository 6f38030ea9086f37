"""Our algorithm configs → d3rlpy 2.8.1's config fields: the one field map of the benchmarks.

:func:`d3rlpy_params` reads an algorithm's settings as our registry gives them
(:meth:`~tianshou_offline.algorithms.config.AlgorithmConfig.hyperparameters` of a preset's
config) and returns what :mod:`benchmarks._lib.d3rlpy_side` builds on d3rlpy's side: the
builder's algorithm name and its ``params``. It runs in our process (d3rlpy's side, in its
own virtual environment, never imports this package), so the job spec carries plain data.

A setting d3rlpy cannot express is refused (:class:`NotExpressible`, naming the field, its
value and what d3rlpy does) — except the differences d3rlpy has no field for at all, which
are returned in :attr:`D3rlpyMapping.differences` for the benchmark to print under its table.

d3rlpy's own defaults differ from ours in places (BCQ samples 100 actions, CQL learns its
conservative weight, CRR copies its targets every 100 steps, DiscreteBC penalises logits with
β = 0.5, AWAC's batch is 1024): every field below is set from our config, none is left at
d3rlpy's default unless the two agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["D3RLPY_HAS", "D3rlpyMapping", "NotExpressible", "d3rlpy_params"]

D3RLPY_HAS: dict[str, frozenset[str]] = {
    "continuous": frozenset({"il", "bcq", "cql", "crr", "td3bc", "iql", "rebrac", "awac"}),
    "discrete": frozenset({"il", "bcq", "cql"}),
}
"""Our registry names (by action kind) that d3rlpy 2.8.1 has an algorithm for."""


class NotExpressible(ValueError):
    """Our config sets something d3rlpy's algorithm has no field for."""


@dataclass(frozen=True)
class D3rlpyMapping:
    """What :mod:`benchmarks._lib.d3rlpy_side` builds for one of our configs."""

    algo: str
    """The builder's algorithm name (``bc``, ``bcq``, …; discrete: ``il``, ``bcq``, ``cql``)."""
    params: dict[str, Any]
    """d3rlpy's config fields, as the builder names them."""
    observation_scaler: bool = False
    """Standardise observations with the data's mean and std (d3rlpy's
    ``StandardObservationScaler``): our ``normalize_obs``."""
    n_step: int = 1
    """n of d3rlpy's ``MultiStepTransitionPicker`` (our ``n_step_return_horizon``)."""
    differences: tuple[str, ...] = field(default=())
    """What the two sides still do differently (d3rlpy has no field for it)."""


def _require(name: str, hp: Mapping[str, Any], key: str, expected: Any, d3rlpy: str) -> None:
    if key in hp and hp[key] != expected:
        raise NotExpressible(
            f"{name}: {key}={hp[key]!r} cannot be mapped to d3rlpy 2.8.1 ({d3rlpy}); "
            f"expected {key}={expected!r}"
        )


def _continuous_common(name: str, hp: Mapping[str, Any]) -> dict[str, Any]:
    _require(name, hp, "n_step_return_horizon", 1, "its continuous algorithms use 1-step targets")
    out: dict[str, Any] = {}
    if "actor_lr" in hp:
        out.update(actor_lr=hp["actor_lr"], critic_lr=hp["critic_lr"], gamma=hp["gamma"],
                   tau=hp["tau"], n_critics=hp["num_critics"])  # fmt: skip
    return out


def d3rlpy_params(name: str, action_kind: str, hp: Mapping[str, Any]) -> D3rlpyMapping:
    """d3rlpy's side of our algorithm ``name`` (a registry name, e.g. ``crr``; a preset's
    variant maps as the algorithm it configures) with settings ``hp`` for ``action_kind``
    (``continuous``/``discrete``) actions.

    :raises NotExpressible: d3rlpy has no such algorithm, or no field for one of ``hp``'s
        settings (the message names it).
    """
    if name not in D3RLPY_HAS.get(action_kind, frozenset()):
        raise NotExpressible(f"d3rlpy 2.8.1 has no {action_kind}-action {name!r}")
    if action_kind == "discrete":
        return _discrete(name, hp)
    if name not in ("cql",):
        _require(name, hp, "max_grad_norm", None, "gradient clipping only for CQL's critic here")
    scaler = bool(hp.get("normalize_obs", False))
    p = _continuous_common(name, hp)
    if name == "il":
        _require(name, hp, "actor", "deterministic", "the benchmarks build its deterministic BC")
        return D3rlpyMapping("bc", {"lr": hp["lr"]}, scaler)
    if name == "bcq":
        _require(name, hp, "latent_dim", None, "its VAE latent is 2 × the action size")
        _require(name, hp, "policy_num_sampled_actions", hp["num_sampled_actions"],
                 "one n_action_samples for the target and for acting")  # fmt: skip
        _require(name, hp, "vae_hidden_sizes", hp["hidden_sizes"],
                 "the benchmarks give the imitator the critics' encoder widths")  # fmt: skip
        _require(name, hp, "perturb_target_actions", True, "it perturbs the target's actions")
        p.update(imitator_lr=hp["vae_lr"], lam=hp["lmbda"],
                 n_action_samples=hp["num_sampled_actions"], action_flexibility=hp["phi"],
                 beta=hp["kl_weight"])  # fmt: skip
        return D3rlpyMapping("bcq", p, scaler)
    if name == "cql":
        _require(name, hp, "target_entropy", None, "its target entropy is −(action size)")
        _require(name, hp, "temperature", 1.0, "its log-sum-exp has no temperature")
        _require(name, hp, "calibrated", False, "Cal-QL is another d3rlpy algorithm")
        _require(name, hp, "lagrange_form", "cql", "its Lagrange term is CQL's")
        lagrange = bool(hp["with_lagrange"])
        p.update(
            temp_lr=hp["alpha_lr"] if hp["auto_alpha"] else 0.0,
            initial_temperature=hp["init_alpha"] if hp["auto_alpha"] else hp["alpha"],
            # no Lagrange dual: the weight stays cql_weight × exp(log α = 0)
            alpha_lr=hp["cql_alpha_lr"] if lagrange else 0.0,
            alpha_threshold=hp["lagrange_threshold"],
            conservative_weight=hp["cql_weight"],
            n_action_samples=hp["num_sampled_actions"],
            soft_q_backup=bool(hp["backup_entropy"]),
            critic_clip_grad_norm=hp["max_grad_norm"],
        )
        return D3rlpyMapping("cql", p, scaler)
    if name == "td3bc":
        p.update(policy_noise=hp["policy_noise"], noise_clip=hp["noise_clip"],
                 alpha=hp["alpha"], update_actor_interval=hp["update_actor_freq"])  # fmt: skip
        return D3rlpyMapping("td3bc", p, scaler)
    if name == "crr":
        if hp["target_update_freq"] == 1:
            target = {"target_update_type": "soft", "target_update_interval": 1}
        elif hp["tau"] == 1.0:
            target = {"target_update_type": "hard",
                      "target_update_interval": hp["target_update_freq"]}  # fmt: skip
        else:
            raise NotExpressible(
                f"crr: tau={hp['tau']} with target_update_freq={hp['target_update_freq']} "
                "cannot be mapped to d3rlpy 2.8.1 (soft updates every step, or hard copies); "
                "expected target_update_freq=1 or tau=1.0"
            )
        p.update(beta=hp["beta"], n_action_samples=hp["num_sampled_actions"],
                 advantage_type=hp["advantage"], weight_type=hp["weight"],
                 max_weight=hp["max_weight"], **target)  # fmt: skip
        return D3rlpyMapping("crr", p, scaler, differences=(
            "CRR's Gaussian: d3rlpy's mean is tanh(μ) (log-likelihoods of a Gaussian around "
            "tanh(μ)); ours is unbounded, its actions clipped to the bounds",
        ))  # fmt: skip
    if name == "iql":
        _require(name, hp, "value_lr", hp["critic_lr"], "one optimizer for its Q and V")
        _require(name, hp, "deterministic_actor", False, "its actor is a Gaussian")
        _require(name, hp, "actor_cosine_steps", None, "no learning-rate schedule by default")
        p.update(expectile=hp["expectile"], weight_temp=hp["beta"], max_weight=hp["max_weight"])
        return D3rlpyMapping("iql", p, scaler)
    if name == "rebrac":
        _require(name, hp, "normalize_q", True, "its actor loss divides by mean |Q|")
        p.update(policy_noise=hp["policy_noise"], noise_clip=hp["noise_clip"],
                 update_actor_interval=hp["update_actor_freq"], actor_beta=hp["actor_bc_coef"],
                 critic_beta=hp["critic_bc_coef"], critic_layer_norm=hp["critic_layer_norm"])  # fmt: skip
        return D3rlpyMapping("rebrac", p, scaler)
    # awac
    _require(
        name, hp, "normalize_weights", True, "its weights are B · softmax(A / λ) over the batch"
    )
    _require(name, hp, "conditioned_std", False, "its log-std is a state-independent parameter")
    p.update(lam=hp["lam"], n_action_samples=hp["num_sampled_actions"])
    return D3rlpyMapping("awac", p, scaler, differences=(
        "AWAC's critic target: d3rlpy 2.8.1 reuses its SAC target — a tanh-squashed next action "
        "and − log π(a'|s') with the temperature fixed at 1 — where ours is the paper's "
        "min_j Q'_j(s', a'), a' ~ π clipped to the bounds",
        "AWAC's Gaussian: d3rlpy's mean is tanh(μ), log-std clamped to [−6, 0]; ours is "
        "unbounded (actions clipped to the bounds), log-std clamped to our GaussianActor's "
        "bounds; d3rlpy's actor loss is the batch sum (B × ours: the same Adam step up to ε)",
    ))  # fmt: skip


def _discrete(name: str, hp: Mapping[str, Any]) -> D3rlpyMapping:
    _require(name, hp, "max_grad_norm", None, "no gradient clipping in the benchmarks' builder")
    if name == "il":  # ours: plain cross-entropy (d3rlpy's beta penalises the logits)
        return D3rlpyMapping("il", {"lr": hp["lr"], "beta": 0.0})
    _require(name, hp, "huber_delta", 1.0, "its Huber loss has δ = 1")
    p = {"lr": hp["lr"], "target_update_interval": hp["target_update_freq"], "gamma": hp["gamma"]}
    n = int(hp["n_step_return_horizon"])
    if name == "bcq":
        p.update(action_flexibility=hp["unlikely_action_threshold"],
                 beta=hp["imitation_logits_penalty"])  # fmt: skip
        return D3rlpyMapping("bcq", p, n_step=n)
    # cql: d3rlpy's DiscreteCQL is double DQN with one mean Q per action; only our CQL in
    # that form maps (one quantile, the double-DQN target): its quantile Huber loss at
    # τ̂ = ½ is half the Huber loss of the mean Q, so d3rlpy's α is twice our min_q_weight
    _require(name, hp, "num_quantiles", 1, "one mean Q per action (double DQN)")
    _require(name, hp, "double_q", True, "its target is double DQN's")
    _require(name, hp, "kappa", 1.0, "its Huber loss has δ = 1")
    p.update(alpha=2.0 * float(hp["min_q_weight"]))
    return D3rlpyMapping("cql", p, n_step=n)
