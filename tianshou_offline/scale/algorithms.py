"""The algorithms an experiment grid names, built from a name, the data's spaces and
hyperparameters.

Names: ``il`` (behaviour cloning), ``bcq``, ``cql``, ``crr``, ``td3bc``, ``iql``, ``rebrac`` for
continuous (``Box``) actions and ``il``, ``bcq``, ``cql``, ``crr`` for discrete actions; the action space
of the data picks the side. The algorithms that exist only as configs of the registry
(:data:`REGISTRY_ONLY`: ``sacn``, ``edac``, ``lbsac``, ``awac``) are built by
:func:`~tianshou_offline.algorithms.make_algorithm` from the ``small`` preset, overrides
checked against their config's fields. Each has a table of default hyperparameters
(:data:`CONTINUOUS_DEFAULTS`, :data:`DISCRETE_DEFAULTS`, small networks: these are the
settings of ``benchmarks/quality_table.py``'s small scale) that a grid's ``overrides``
replace key by key; an unknown key is an error naming the keys there are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from tianshou_offline.errors import DataValidationError

if TYPE_CHECKING:
    from tianshou.algorithm.algorithm_base import OfflineAlgorithm

CONTINUOUS_DEFAULTS: dict[str, dict[str, Any]] = {
    "il": {"lr": 1e-3, "hidden_sizes": [64, 64]},
    "bcq": {"lr": 1e-3, "gamma": 0.99, "tau": 0.005, "lmbda": 0.75, "num_sampled_action": 10,
            "phi": 0.05, "kl_weight": 0.5, "num_critics": 2, "hidden_sizes": [64, 64]},
    "cql": {"actor_lr": 1e-4, "critic_lr": 3e-4, "alpha_lr": 1e-4, "cql_weight": 5.0,
            "tau": 0.005, "gamma": 0.99, "num_sampled_actions": 10, "num_critics": 2,
            "with_lagrange": False, "hidden_sizes": [64, 64]},
    "td3bc": {"lr": 3e-4, "tau": 0.005, "gamma": 0.99, "policy_noise": 0.2, "noise_clip": 0.5,
              "update_actor_freq": 2, "alpha": 2.5, "num_critics": 2, "hidden_sizes": [64, 64]},
    "crr": {"lr": 3e-4, "gamma": 0.99, "tau": 0.005, "num_action_samples": 4, "beta": 1.0,
            "max_weight": 20.0, "num_critics": 1, "hidden_sizes": [64, 64]},
    "iql": {"lr": 3e-4, "tau": 0.005, "gamma": 0.99, "expectile": 0.7, "beta": 3.0,
            "max_weight": 100.0, "num_critics": 2, "hidden_sizes": [64, 64]},
    "rebrac": {"lr": 1e-3, "tau": 0.005, "gamma": 0.99, "policy_noise": 0.2, "noise_clip": 0.5,
               "update_actor_freq": 2, "actor_bc_coef": 0.001, "critic_bc_coef": 0.01,
               "num_critics": 2, "hidden_sizes": [64, 64]},
}  # fmt: skip
"""Continuous actions: ReLU MLPs of ``hidden_sizes`` for every network. IQL: the paper's
MuJoCo settings, a Gaussian actor with a tanh mean and a state-independent std, observations
normalised (CORL); ReBRAC: LayerNorm critics, d3rlpy's default penalties."""

DISCRETE_DEFAULTS: dict[str, dict[str, Any]] = {
    "il": {"lr": 1e-3, "trunk_sizes": [64], "head_sizes": [64]},
    "bcq": {"lr": 1e-3, "gamma": 0.99, "n_step": 3, "target_update_freq": 100,
            "threshold": 0.3, "imitation_logits_penalty": 0.01, "trunk_sizes": [64, 64],
            "head_sizes": []},
    "cql": {"lr": 1e-3, "gamma": 0.99, "n_step": 3, "target_update_freq": 100,
            "min_q_weight": 10.0, "num_quantiles": 200, "double_q": False, "trunk_sizes": [64],
            "head_sizes": [64]},
    "crr": {"lr": 1e-3, "gamma": 0.99, "n_step": 1, "target_update_freq": 100, "beta": 1.0,
            "trunk_sizes": [64], "head_sizes": [64]},
}  # fmt: skip
"""Discrete actions: an MLP trunk of ``trunk_sizes`` and heads of ``head_sizes`` (Tianshou's
CartPole offline tests' sizes). BCQ: the Q-value and imitation heads are linear layers on one
trunk of two hidden layers (d3rlpy's ``share_encoder`` layout); with a hidden layer of its own
per head, the imitator shares less with Q: CartPole ``medium`` seeds 0–2 scored 103.8, 72.2,
78.3 against 106.7, 109.1, 88.0 with this layout (``benchmarks/quality_table.py``'s budget). CQL: Tianshou's default conservative weight 10 — the quantile
loss sums over its 200 target quantiles, so a weight of 1 hardly acts (see
``benchmarks/quality_table.py``'s ``DISCRETE_HP``)."""


REGISTRY_ONLY: tuple[str, ...] = ("sacn", "edac", "lbsac", "awac")
"""Continuous-action algorithms built from the registry's ``small`` preset (not from the
tables above). The Decision Transformer is not among them: its policy needs evaluation
environments that report rewards (``RewardInInfo``) and has no replayable checkpoint."""


def _registry_only(name: str, action_space: gym.Space[Any]) -> bool:
    return name in REGISTRY_ONLY and isinstance(action_space, gym.spaces.Box)


def algorithm_names(action_space: gym.Space[Any]) -> tuple[str, ...]:
    """The names this module builds for data with ``action_space``."""
    table = (
        DISCRETE_DEFAULTS if isinstance(action_space, gym.spaces.Discrete) else CONTINUOUS_DEFAULTS
    )
    extra = REGISTRY_ONLY if isinstance(action_space, gym.spaces.Box) else ()
    return (*table, *extra)


def hyperparameters(
    name: str, action_space: gym.Space[Any], overrides: Mapping[str, Any] = {}
) -> dict[str, Any]:
    """The defaults of ``name`` for ``action_space``, with ``overrides`` applied.

    :raises DataValidationError: an unknown algorithm, or an override it does not have.
    """
    if _registry_only(name, action_space):
        from tianshou_offline.algorithms import make_config

        return make_config(name, "continuous", preset="small", **overrides).hyperparameters()
    discrete = isinstance(action_space, gym.spaces.Discrete)
    table = DISCRETE_DEFAULTS if discrete else CONTINUOUS_DEFAULTS
    kind = "discrete" if discrete else "continuous"
    if name not in table:
        raise DataValidationError(
            f"algorithm {name!r}: not one of the {kind}-action algorithms; expected one of "
            f"{', '.join(algorithm_names(action_space))}"
        )
    unknown = sorted(set(overrides) - set(table[name]))
    if unknown:
        raise DataValidationError(
            f"algorithm {name!r} ({kind} actions): no hyperparameter {', '.join(unknown)}; "
            f"expected some of {', '.join(sorted(table[name]))}"
        )
    return {**table[name], **overrides}


def build_algorithm(
    name: str,
    observation_space: gym.Space[Any],
    action_space: gym.Space[Any],
    overrides: Mapping[str, Any] = {},
) -> OfflineAlgorithm[Any]:
    """The algorithm ``name`` for data with these spaces (see the module doc).

    :raises DataValidationError: unknown name or override; observations that are not a
        flat ``Box``.
    """
    from tianshou.algorithm.optim import AdamOptimizerFactory

    import tianshou_offline.algorithms as A

    if _registry_only(name, action_space):
        return A.make_algorithm(name, observation_space, action_space, preset="small", **overrides)
    hp = hyperparameters(name, action_space, overrides)
    if not isinstance(observation_space, gym.spaces.Box) or observation_space.shape is None:
        raise DataValidationError(
            f"observation space {observation_space}: expected a Box (these grids build MLPs)"
        )
    d = int(np.prod(observation_space.shape))

    def adam(lr: float) -> AdamOptimizerFactory:
        return AdamOptimizerFactory(lr=float(lr))

    if isinstance(action_space, gym.spaces.Discrete):
        return _discrete(A, name, hp, observation_space, action_space, adam(hp["lr"]))
    if not isinstance(action_space, gym.spaces.Box) or action_space.shape is None:
        raise DataValidationError(f"action space {action_space}: expected a Box or Discrete")
    a = int(np.prod(action_space.shape))
    h = tuple(int(x) for x in hp["hidden_sizes"])
    spaces: dict[str, Any] = {"action_space": action_space, "observation_space": observation_space}
    if name == "il":
        policy = A.DeterministicPolicy(actor=A.DeterministicActor(d, a, h), **spaces)
        return A.ImitationLearning(policy=policy, optim=adam(hp["lr"]))
    if name == "bcq":
        bcq_policy = A.BCQPolicy(
            vae=A.VAE(d, a, h), perturbation=A.Perturbation(d, a, h, phi=hp["phi"]),
            critics=A.CriticEnsemble(d, a, h, num_critics=hp["num_critics"]),
            num_candidate_actions=hp["num_sampled_action"], **spaces,
        )  # fmt: skip
        return A.BCQ(
            policy=bcq_policy, vae_optim=adam(hp["lr"]), actor_perturbation_optim=adam(hp["lr"]),
            critic_optim=adam(hp["lr"]), gamma=hp["gamma"], tau=hp["tau"], lmbda=hp["lmbda"],
            num_sampled_action=hp["num_sampled_action"], kl_weight=hp["kl_weight"],
        )  # fmt: skip
    if name == "cql":
        return A.CQL(
            policy=A.GaussianPolicy(actor=A.GaussianActor(d, a, h), **spaces),
            policy_optim=adam(hp["actor_lr"]),
            critics=A.CriticEnsemble(d, a, h, num_critics=hp["num_critics"]),
            critic_optim=adam(hp["critic_lr"]), alpha="auto", alpha_optim=adam(hp["alpha_lr"]),
            cql_weight=hp["cql_weight"], tau=hp["tau"], gamma=hp["gamma"],
            with_lagrange=bool(hp["with_lagrange"]),
            num_sampled_actions=hp["num_sampled_actions"], backup_entropy=False,
        )  # fmt: skip
    if name == "td3bc":
        policy = A.DeterministicPolicy(actor=A.DeterministicActor(d, a, h), normalize_obs=True,
                                       **spaces)  # fmt: skip
        return A.TD3BC(
            policy=policy, policy_optim=adam(hp["lr"]),
            critics=A.CriticEnsemble(d, a, h, num_critics=hp["num_critics"]),
            critic_optim=adam(hp["lr"]), tau=hp["tau"], gamma=hp["gamma"],
            policy_noise=hp["policy_noise"], noise_clip=hp["noise_clip"],
            update_actor_freq=hp["update_actor_freq"], alpha=hp["alpha"],
        )  # fmt: skip
    if name == "iql":
        actor = A.GaussianActor(d, a, h, conditioned_std=False, tanh_mean=True)
        return A.IQL(
            policy=A.GaussianPolicy(actor=actor, squash=False, normalize_obs=True, **spaces),
            policy_optim=adam(hp["lr"]),
            critics=A.CriticEnsemble(d, a, h, num_critics=hp["num_critics"]),
            critic_optim=adam(hp["lr"]), value=A.ValueFunction(d, h), value_optim=adam(hp["lr"]),
            expectile=hp["expectile"], beta=hp["beta"], max_weight=hp["max_weight"],
            tau=hp["tau"], gamma=hp["gamma"],
        )  # fmt: skip
    if name == "rebrac":
        return A.ReBRAC(
            policy=A.DeterministicPolicy(actor=A.DeterministicActor(d, a, h), **spaces),
            policy_optim=adam(hp["lr"]),
            critics=A.CriticEnsemble(d, a, h, num_critics=hp["num_critics"], layer_norm=True),
            critic_optim=adam(hp["lr"]), actor_bc_coef=hp["actor_bc_coef"],
            critic_bc_coef=hp["critic_bc_coef"], tau=hp["tau"], gamma=hp["gamma"],
            policy_noise=hp["policy_noise"], noise_clip=hp["noise_clip"],
            update_actor_freq=hp["update_actor_freq"],
        )  # fmt: skip
    assert name == "crr"
    return A.CRR(
        policy=A.GaussianPolicy(actor=A.GaussianActor(d, a, h), squash=False, **spaces),
        policy_optim=adam(hp["lr"]),
        critics=A.CriticEnsemble(d, a, h, num_critics=hp["num_critics"]),
        critic_optim=adam(hp["lr"]), gamma=hp["gamma"], tau=hp["tau"], target_update_interval=1,
        num_action_samples=hp["num_action_samples"], beta=hp["beta"],
        max_weight=hp["max_weight"], weight="exp", advantage="mean",
    )  # fmt: skip


def _discrete(
    A: Any,
    name: str,
    hp: dict[str, Any],
    obs_space: gym.spaces.Box,
    space: gym.spaces.Discrete,
    optim: Any,
) -> OfflineAlgorithm[Any]:
    n = int(space.n)
    d = int(np.prod(obs_space.shape))
    spaces = {"action_space": space, "observation_space": obs_space}
    head = [int(x) for x in hp["head_sizes"]]

    def trunk() -> Any:
        return A.MLPTrunk(d, [int(x) for x in hp["trunk_sizes"]])

    algo: OfflineAlgorithm[Any]
    if name == "il":
        algo = A.DiscreteImitationLearning(
            policy=A.DiscreteActorPolicy(actor=A.QNet(trunk(), n, head), **spaces),
            optim=optim,
        )
    elif name == "bcq":
        algo = A.DiscreteBCQ(
            policy=A.DiscreteBCQPolicy(
                model=A.DualHeadNet(trunk(), n, head), **spaces,
                unlikely_action_threshold=hp["threshold"],
            ),
            optim=optim, gamma=hp["gamma"], n_step_return_horizon=hp["n_step"],
            target_update_freq=hp["target_update_freq"],
            imitation_logits_penalty=hp["imitation_logits_penalty"],
        )  # fmt: skip
    elif name == "cql":
        algo = A.DiscreteCQL(
            policy=A.QValuePolicy(
                model=A.QuantileQNet(trunk(), n, hp["num_quantiles"], head), **spaces
            ),
            optim=optim, min_q_weight=hp["min_q_weight"], gamma=hp["gamma"],
            n_step_return_horizon=hp["n_step"], target_update_freq=hp["target_update_freq"],
            double_q=bool(hp["double_q"]),
        )  # fmt: skip
    else:
        assert name == "crr"
        algo = A.DiscreteCRR(
            policy=A.DiscreteActorPolicy(
                actor=A.DualHeadNet(trunk(), n, head), **spaces, logits_index=0
            ),
            optim=optim, gamma=hp["gamma"], n_step_return_horizon=hp["n_step"],
            target_update_freq=hp["target_update_freq"], beta=hp["beta"],
        )  # fmt: skip
    return algo
