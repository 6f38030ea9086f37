"""The continuous-control sides of the speed benchmark (``benchmarks/train_speed.py``): ours,
Tianshou 2.0.1's (fused or default Adam) and the spec d3rlpy's worker builds
(:mod:`benchmarks._lib.d3rlpy_side`), all from one table of hyperparameters (:data:`HP`).

Every side gets the same networks (256×256 ReLU MLPs unless ``--hidden``), batch size,
critic count, sampled-action counts and hyperparameters, and trains on the same synthetic
data (HalfCheetah-shaped by default: 17-d observations, 6-d actions, 100k transitions in
1000-step episodes; the values do not affect speed). Tianshou has no continuous CRR, IQL,
ReBRAC or AWAC: their rows compare with d3rlpy only; neither has SAC-N or EDAC (ours alone).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm.algorithm_base import OfflineAlgorithm
from tianshou.algorithm.imitation.bcq import BCQ as TsBCQ
from tianshou.algorithm.imitation.bcq import BCQPolicy as TsBCQPolicy
from tianshou.algorithm.imitation.cql import CQL as TsCQL
from tianshou.algorithm.imitation.imitation_base import (
    ImitationPolicy,
    OfflineImitationLearning,
)
from tianshou.algorithm.imitation.td3_bc import TD3BC as TsTD3BC
from tianshou.algorithm.modelfree.ddpg import ContinuousDeterministicPolicy
from tianshou.algorithm.modelfree.sac import AutoAlpha, SACPolicy
from tianshou.algorithm.optim import (
    AdamOptimizerFactory,
    OptimizerFactory,
    TorchOptimizerFactory,
)
from tianshou.data import Batch, ReplayBuffer
from tianshou.utils.net.common import MLP as TsMLP
from tianshou.utils.net.common import Net
from tianshou.utils.net.continuous import (
    VAE as TsVAE,
)
from tianshou.utils.net.continuous import (
    ContinuousActorDeterministic,
    ContinuousActorProbabilistic,
    ContinuousCritic,
)
from tianshou.utils.net.continuous import (
    Perturbation as TsPerturbation,
)

from tianshou_offline.algorithms import (
    AWAC,
    BCQ,
    CQL,
    CRR,
    EDAC,
    IQL,
    SACN,
    TD3BC,
    VAE,
    BCQPolicy,
    CriticEnsemble,
    DeterministicActor,
    DeterministicPolicy,
    GaussianActor,
    GaussianPolicy,
    ImitationLearning,
    Perturbation,
    ReBRAC,
    ValueFunction,
)


@dataclass
class Setup:
    obs_dim: int
    act_dim: int
    hidden: tuple[int, ...]
    obs_space: gym.spaces.Box
    act_space: gym.spaces.Box

    @classmethod
    def make(cls, obs_dim: int, act_dim: int, hidden: tuple[int, ...]) -> Setup:
        return cls(
            obs_dim=obs_dim,
            act_dim=act_dim,
            hidden=hidden,
            obs_space=gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
            act_space=gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32),
        )


def synthetic_buffer(obs_dim: int, act_dim: int, size: int, seed: int = 0) -> ReplayBuffer:
    """A full ReplayBuffer of random transitions in 1000-step (truncated) episodes."""
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((size + 1, obs_dim)).astype(np.float32)
    truncated = np.zeros(size, dtype=bool)
    truncated[999::1000] = True
    truncated[-1] = True
    terminated = np.zeros(size, dtype=bool)
    buf = ReplayBuffer(size)
    buf.set_batch(
        Batch(
            obs=obs[:-1],
            act=rng.uniform(-1, 1, (size, act_dim)).astype(np.float32),
            rew=rng.standard_normal(size).astype(np.float32),
            terminated=terminated,
            truncated=truncated,
            done=terminated | truncated,
            obs_next=obs[1:],
            info=Batch(),
        )
    )
    buf._size = size
    buf.last_index = np.array([size - 1])
    return buf


# ------------------------------------------------------------------- hyperparameters

HP: dict[str, dict[str, Any]] = {
    "il": {"lr": 1e-3},
    "bcq": {
        "lr": 1e-3,
        "gamma": 0.99,
        "tau": 0.005,
        "lmbda": 0.75,
        "num_sampled_action": 10,
        "phi": 0.05,
        "kl_weight": 0.5,
        "num_critics": 2,
    },
    "cql": {
        "actor_lr": 1e-4,
        "critic_lr": 3e-4,
        "alpha_lr": 1e-4,
        "cql_alpha_lr": 1e-4,
        "cql_weight": 1.0,
        "tau": 0.005,
        "gamma": 0.99,
        "lagrange_threshold": 10.0,
        "num_sampled_actions": 10,
        "max_grad_norm": 1.0,
        "num_critics": 2,
    },
    "td3bc": {
        "lr": 3e-4,
        "tau": 0.005,
        "gamma": 0.99,
        "policy_noise": 0.2,
        "noise_clip": 0.5,
        "update_actor_freq": 2,
        "alpha": 2.5,
        "num_critics": 2,
    },
    "crr": {
        "lr": 3e-4,
        "gamma": 0.99,
        "tau": 0.005,
        "target_update_interval": 1,
        "num_action_samples": 4,
        "beta": 1.0,
        "max_weight": 20.0,
        "num_critics": 1,
    },
    "iql": {
        "lr": 3e-4,
        "tau": 0.005,
        "gamma": 0.99,
        "expectile": 0.7,
        "beta": 3.0,
        "max_weight": 100.0,
        "num_critics": 2,
    },
    "rebrac": {
        "lr": 1e-3,
        "tau": 0.005,
        "gamma": 0.99,
        "policy_noise": 0.2,
        "noise_clip": 0.5,
        "update_actor_freq": 2,
        "actor_bc_coef": 0.001,
        "critic_bc_coef": 0.01,
        "num_critics": 2,
    },
    "sacn": {"lr": 3e-4, "tau": 0.005, "gamma": 0.99, "num_critics": 10},
    "edac": {"lr": 3e-4, "tau": 0.005, "gamma": 0.99, "num_critics": 10, "eta": 1.0},
    "awac": {
        "lr": 3e-4,
        "tau": 0.005,
        "gamma": 0.99,
        "lam": 1.0,
        "num_action_samples": 1,
        "num_critics": 2,
    },
}
"""One set of hyperparameters per algorithm, read by every side's builder (ours, Tianshou's
and :func:`d3rlpy_spec`), so the sides cannot drift apart."""


def ts_adam(lr: float, adam: str) -> OptimizerFactory:
    """Tianshou's optimizer factory: ``fused`` — ``torch.optim.Adam(fused=True)``;
    ``default`` — Tianshou's ``AdamOptimizerFactory`` (the for-loop kernel on CPU)."""
    if adam == "fused":
        return TorchOptimizerFactory(torch.optim.Adam, lr=lr, fused=True)
    if adam == "default":
        return AdamOptimizerFactory(lr=lr)
    raise ValueError(f"adam={adam!r}: expected 'fused' or 'default'")


# ------------------------------------------------------------------- Tianshou 2.0.1 side


def _ts_critic(s: Setup) -> ContinuousCritic:
    return ContinuousCritic(
        preprocess_net=Net(
            state_shape=(s.obs_dim,),
            action_shape=(s.act_dim,),
            hidden_sizes=list(s.hidden),
            concat=True,
        )
    )


def ts_il(s: Setup, adam: str) -> OfflineAlgorithm[Any]:
    actor = ContinuousActorDeterministic(
        preprocess_net=Net(state_shape=(s.obs_dim,), hidden_sizes=list(s.hidden)),
        action_shape=(s.act_dim,),
    )
    return OfflineImitationLearning(
        policy=ImitationPolicy(actor=actor, action_space=s.act_space),
        optim=ts_adam(HP["il"]["lr"], adam),
    )


def ts_td3bc(s: Setup, adam: str) -> OfflineAlgorithm[Any]:
    hp = HP["td3bc"]
    actor = ContinuousActorDeterministic(
        preprocess_net=Net(state_shape=(s.obs_dim,), hidden_sizes=list(s.hidden)),
        action_shape=(s.act_dim,),
    )
    return TsTD3BC(
        policy=ContinuousDeterministicPolicy(actor=actor, action_space=s.act_space),
        policy_optim=ts_adam(hp["lr"], adam),
        critic=_ts_critic(s),
        critic_optim=ts_adam(hp["lr"], adam),
        critic2=_ts_critic(s),
        critic2_optim=ts_adam(hp["lr"], adam),
        tau=hp["tau"],
        gamma=hp["gamma"],
        policy_noise=hp["policy_noise"],
        noise_clip=hp["noise_clip"],
        update_actor_freq=hp["update_actor_freq"],
        alpha=hp["alpha"],
        n_step_return_horizon=1,
    )


def ts_cql(s: Setup, adam: str) -> OfflineAlgorithm[Any]:
    hp = HP["cql"]
    actor = ContinuousActorProbabilistic(
        preprocess_net=Net(state_shape=(s.obs_dim,), hidden_sizes=list(s.hidden)),
        action_shape=(s.act_dim,),
        unbounded=True,
        conditioned_sigma=True,
    )
    return TsCQL(
        policy=SACPolicy(actor=actor, action_space=s.act_space),
        policy_optim=ts_adam(hp["actor_lr"], adam),
        critic=_ts_critic(s),
        critic_optim=ts_adam(hp["critic_lr"], adam),
        critic2=_ts_critic(s),
        critic2_optim=ts_adam(hp["critic_lr"], adam),
        alpha=AutoAlpha(
            target_entropy=-float(s.act_dim),
            log_alpha=0.0,
            optim=ts_adam(hp["alpha_lr"], adam),
        ),
        cql_alpha_lr=hp["cql_alpha_lr"],
        cql_weight=hp["cql_weight"],
        tau=hp["tau"],
        gamma=hp["gamma"],
        temperature=1.0,
        with_lagrange=True,
        lagrange_threshold=hp["lagrange_threshold"],
        num_repeat_actions=hp["num_sampled_actions"],
        max_grad_norm=hp["max_grad_norm"],
        calibrated=False,
    )


def ts_bcq(s: Setup, adam: str) -> OfflineAlgorithm[Any]:
    hp = HP["bcq"]
    d, a, h = s.obs_dim, s.act_dim, list(s.hidden)
    perturbation = TsPerturbation(
        preprocess_net=TsMLP(input_dim=d + a, output_dim=a, hidden_sizes=h),
        max_action=1.0,
        phi=hp["phi"],
    )
    vae = TsVAE(
        encoder=TsMLP(input_dim=d + a, hidden_sizes=h),
        decoder=TsMLP(input_dim=d + 2 * a, output_dim=a, hidden_sizes=h),
        hidden_dim=h[-1],
        latent_dim=2 * a,
        max_action=1.0,
    )
    policy = TsBCQPolicy(
        actor_perturbation=perturbation,
        action_space=s.act_space,
        critic=_ts_critic(s),
        vae=vae,
    )
    return TsBCQ(
        policy=policy,
        actor_perturbation_optim=ts_adam(hp["lr"], adam),
        critic_optim=ts_adam(hp["lr"], adam),
        vae_optim=ts_adam(hp["lr"], adam),
        critic2=_ts_critic(s),
        gamma=hp["gamma"],
        tau=hp["tau"],
        lmbda=hp["lmbda"],
        num_sampled_action=hp["num_sampled_action"],
    )


# ------------------------------------------------------------------- tianshou-offline side


def _ours_adam(lr: float) -> OptimizerFactory:
    """Tianshou's default Adam factory: our algorithms switch it to the fused kernel."""
    return AdamOptimizerFactory(lr=lr)


def ours_il(s: Setup) -> OfflineAlgorithm[Any]:
    policy = DeterministicPolicy(
        actor=DeterministicActor(s.obs_dim, s.act_dim, s.hidden),
        action_space=s.act_space,
        observation_space=s.obs_space,
    )
    return ImitationLearning(policy=policy, optim=_ours_adam(HP["il"]["lr"]))


def ours_td3bc(s: Setup) -> OfflineAlgorithm[Any]:
    hp = HP["td3bc"]
    policy = DeterministicPolicy(
        actor=DeterministicActor(s.obs_dim, s.act_dim, s.hidden),
        action_space=s.act_space,
        observation_space=s.obs_space,
    )
    return TD3BC(
        policy=policy,
        policy_optim=_ours_adam(hp["lr"]),
        critics=CriticEnsemble(s.obs_dim, s.act_dim, s.hidden, num_critics=hp["num_critics"]),
        critic_optim=_ours_adam(hp["lr"]),
        tau=hp["tau"],
        gamma=hp["gamma"],
        policy_noise=hp["policy_noise"],
        noise_clip=hp["noise_clip"],
        update_actor_freq=hp["update_actor_freq"],
        alpha=hp["alpha"],
    )


def ours_cql(s: Setup) -> OfflineAlgorithm[Any]:
    hp = HP["cql"]
    policy = GaussianPolicy(
        actor=GaussianActor(s.obs_dim, s.act_dim, s.hidden),
        action_space=s.act_space,
        observation_space=s.obs_space,
    )
    return CQL(
        policy=policy,
        policy_optim=_ours_adam(hp["actor_lr"]),
        critics=CriticEnsemble(s.obs_dim, s.act_dim, s.hidden, num_critics=hp["num_critics"]),
        critic_optim=_ours_adam(hp["critic_lr"]),
        alpha="auto",
        alpha_optim=_ours_adam(hp["alpha_lr"]),
        cql_alpha_optim=_ours_adam(hp["cql_alpha_lr"]),
        cql_weight=hp["cql_weight"],
        tau=hp["tau"],
        gamma=hp["gamma"],
        temperature=1.0,
        with_lagrange=True,
        lagrange_threshold=hp["lagrange_threshold"],
        num_sampled_actions=hp["num_sampled_actions"],
        backup_entropy=True,
        max_grad_norm=hp["max_grad_norm"],
    )


def _ours_bcq(s: Setup, perturb_target_actions: bool) -> OfflineAlgorithm[Any]:
    hp = HP["bcq"]
    policy = BCQPolicy(
        vae=VAE(s.obs_dim, s.act_dim, s.hidden),
        perturbation=Perturbation(s.obs_dim, s.act_dim, s.hidden, phi=hp["phi"]),
        critics=CriticEnsemble(s.obs_dim, s.act_dim, s.hidden, num_critics=hp["num_critics"]),
        action_space=s.act_space,
        observation_space=s.obs_space,
    )
    return BCQ(
        policy=policy,
        vae_optim=_ours_adam(hp["lr"]),
        actor_perturbation_optim=_ours_adam(hp["lr"]),
        critic_optim=_ours_adam(hp["lr"]),
        gamma=hp["gamma"],
        tau=hp["tau"],
        lmbda=hp["lmbda"],
        num_sampled_actions=hp["num_sampled_action"],
        kl_weight=hp["kl_weight"],
        perturb_target_actions=perturb_target_actions,
    )


def ours_bcq(s: Setup) -> OfflineAlgorithm[Any]:
    return _ours_bcq(s, perturb_target_actions=True)


def ours_bcq_ts_target(s: Setup) -> OfflineAlgorithm[Any]:
    return _ours_bcq(s, perturb_target_actions=False)


def ours_crr(s: Setup) -> OfflineAlgorithm[Any]:
    hp = HP["crr"]
    policy = GaussianPolicy(
        actor=GaussianActor(s.obs_dim, s.act_dim, s.hidden),
        action_space=s.act_space,
        observation_space=s.obs_space,
        squash=False,
    )
    return CRR(
        policy=policy,
        policy_optim=_ours_adam(hp["lr"]),
        critics=CriticEnsemble(s.obs_dim, s.act_dim, s.hidden, num_critics=hp["num_critics"]),
        critic_optim=_ours_adam(hp["lr"]),
        gamma=hp["gamma"],
        tau=hp["tau"],
        target_update_freq=hp["target_update_interval"],
        num_sampled_actions=hp["num_action_samples"],
        beta=hp["beta"],
        max_weight=hp["max_weight"],
        weight="exp",
        advantage="mean",
    )


def ours_iql(s: Setup) -> OfflineAlgorithm[Any]:
    hp = HP["iql"]
    policy = GaussianPolicy(
        actor=GaussianActor(s.obs_dim, s.act_dim, s.hidden, conditioned_std=False, tanh_mean=True),
        action_space=s.act_space,
        observation_space=s.obs_space,
        squash=False,
    )
    return IQL(
        policy=policy,
        policy_optim=_ours_adam(hp["lr"]),
        critics=CriticEnsemble(s.obs_dim, s.act_dim, s.hidden, num_critics=hp["num_critics"]),
        critic_optim=_ours_adam(hp["lr"]),
        value=ValueFunction(s.obs_dim, s.hidden),
        value_optim=_ours_adam(hp["lr"]),
        expectile=hp["expectile"],
        beta=hp["beta"],
        max_weight=hp["max_weight"],
        tau=hp["tau"],
        gamma=hp["gamma"],
    )


def ours_rebrac(s: Setup) -> OfflineAlgorithm[Any]:
    hp = HP["rebrac"]
    policy = DeterministicPolicy(
        actor=DeterministicActor(s.obs_dim, s.act_dim, s.hidden),
        action_space=s.act_space,
        observation_space=s.obs_space,
    )
    return ReBRAC(
        policy=policy,
        policy_optim=_ours_adam(hp["lr"]),
        critics=CriticEnsemble(
            s.obs_dim, s.act_dim, s.hidden, num_critics=hp["num_critics"], layer_norm=True
        ),
        critic_optim=_ours_adam(hp["lr"]),
        actor_bc_coef=hp["actor_bc_coef"],
        critic_bc_coef=hp["critic_bc_coef"],
        tau=hp["tau"],
        gamma=hp["gamma"],
        policy_noise=hp["policy_noise"],
        noise_clip=hp["noise_clip"],
        update_actor_freq=hp["update_actor_freq"],
    )


def _ours_ensemble(s: Setup, key: str) -> OfflineAlgorithm[Any]:
    hp = HP[key]
    policy = GaussianPolicy(
        actor=GaussianActor(s.obs_dim, s.act_dim, s.hidden),
        action_space=s.act_space,
        observation_space=s.obs_space,
    )
    kw: dict[str, Any] = dict(
        policy=policy,
        policy_optim=_ours_adam(hp["lr"]),
        critics=CriticEnsemble(s.obs_dim, s.act_dim, s.hidden, num_critics=hp["num_critics"]),
        critic_optim=_ours_adam(hp["lr"]),
        alpha_optim=_ours_adam(hp["lr"]),
        tau=hp["tau"],
        gamma=hp["gamma"],
    )
    return EDAC(eta=hp["eta"], **kw) if key == "edac" else SACN(**kw)


def ours_awac(s: Setup) -> OfflineAlgorithm[Any]:
    hp = HP["awac"]
    policy = GaussianPolicy(  # d3rlpy's NormalPolicy: a state-dependent std, not squashed
        actor=GaussianActor(s.obs_dim, s.act_dim, s.hidden),
        action_space=s.act_space,
        observation_space=s.obs_space,
        squash=False,
    )
    return AWAC(
        policy=policy,
        policy_optim=_ours_adam(hp["lr"]),
        critics=CriticEnsemble(s.obs_dim, s.act_dim, s.hidden, num_critics=hp["num_critics"]),
        critic_optim=_ours_adam(hp["lr"]),
        lam=hp["lam"],
        normalize_weights=True,  # d3rlpy's batch softmax
        num_sampled_actions=hp["num_action_samples"],
        tau=hp["tau"],
        gamma=hp["gamma"],
    )


OURS: dict[str, Callable[[Setup], OfflineAlgorithm[Any]]] = {
    "il": ours_il,
    "bcq": ours_bcq,
    "bcq-ts-target": ours_bcq_ts_target,
    "cql": ours_cql,
    "td3bc": ours_td3bc,
    "crr": ours_crr,
    "iql": ours_iql,
    "rebrac": ours_rebrac,
    "sacn": functools.partial(_ours_ensemble, key="sacn"),
    "edac": functools.partial(_ours_ensemble, key="edac"),
    "awac": ours_awac,
}
TIANSHOU: dict[str, Callable[[Setup, str], OfflineAlgorithm[Any]]] = {
    "il": ts_il,
    "bcq": ts_bcq,
    "cql": ts_cql,
    "td3bc": ts_td3bc,
}


# ------------------------------------------------------------------- d3rlpy side


def d3rlpy_spec(key: str, common: dict[str, Any]) -> dict[str, Any] | None:
    """What :mod:`benchmarks._lib.d3rlpy_side` builds for ``key``: d3rlpy's config fields, from :data:`HP`
    (d3rlpy's own defaults differ: e.g. BCQ samples 100 actions, CQL weights the conservative
    term by 5, CRR copies its targets every 100 steps). None: d3rlpy has no such algorithm.

    :param common: ``obs_dim``, ``act_dim``, ``hidden``, ``batch_size``, ``buffer_size``,
        ``seed``, ``adam`` (every side's).
    """
    params: dict[str, Any]
    if key == "il":
        params = {"lr": HP["il"]["lr"]}
        algo = "bc"
    elif key == "bcq":
        hp = HP["bcq"]
        params = {
            "actor_lr": hp["lr"],
            "critic_lr": hp["lr"],
            "imitator_lr": hp["lr"],
            "gamma": hp["gamma"],
            "tau": hp["tau"],
            "n_critics": hp["num_critics"],
            "lam": hp["lmbda"],
            "n_action_samples": hp["num_sampled_action"],
            "action_flexibility": hp["phi"],
            "beta": hp["kl_weight"],
        }
        algo = "bcq"
    elif key == "cql":
        hp = HP["cql"]
        params = {
            "actor_lr": hp["actor_lr"],
            "critic_lr": hp["critic_lr"],
            "temp_lr": hp["alpha_lr"],
            "alpha_lr": hp["cql_alpha_lr"],
            "critic_clip_grad_norm": hp["max_grad_norm"],
            "gamma": hp["gamma"],
            "tau": hp["tau"],
            "n_critics": hp["num_critics"],
            "conservative_weight": hp["cql_weight"],
            "alpha_threshold": hp["lagrange_threshold"],
            "n_action_samples": hp["num_sampled_actions"],
            "soft_q_backup": True,  # ours: backup_entropy=True
        }
        algo = "cql"
    elif key == "td3bc":
        hp = HP["td3bc"]
        params = {
            "actor_lr": hp["lr"],
            "critic_lr": hp["lr"],
            "gamma": hp["gamma"],
            "tau": hp["tau"],
            "n_critics": hp["num_critics"],
            "policy_noise": hp["policy_noise"],
            "noise_clip": hp["noise_clip"],
            "alpha": hp["alpha"],
            "update_actor_interval": hp["update_actor_freq"],
        }
        algo = "td3bc"
    elif key == "crr":
        hp = HP["crr"]
        params = {
            "actor_lr": hp["lr"],
            "critic_lr": hp["lr"],
            "gamma": hp["gamma"],
            "tau": hp["tau"],
            "n_critics": hp["num_critics"],
            "beta": hp["beta"],
            "n_action_samples": hp["num_action_samples"],
            "advantage_type": "mean",
            "weight_type": "exp",
            "max_weight": hp["max_weight"],
            "target_update_type": "soft" if hp["target_update_interval"] == 1 else "hard",
            "target_update_interval": hp["target_update_interval"],
        }
        algo = "crr"
    elif key == "iql":
        hp = HP["iql"]
        params = {
            "actor_lr": hp["lr"],
            "critic_lr": hp["lr"],  # d3rlpy: one optimizer for Q and V
            "gamma": hp["gamma"],
            "tau": hp["tau"],
            "n_critics": hp["num_critics"],
            "expectile": hp["expectile"],
            "weight_temp": hp["beta"],
            "max_weight": hp["max_weight"],
        }
        algo = "iql"
    elif key == "rebrac":
        hp = HP["rebrac"]
        params = {
            "actor_lr": hp["lr"],
            "critic_lr": hp["lr"],
            "gamma": hp["gamma"],
            "tau": hp["tau"],
            "n_critics": hp["num_critics"],
            "policy_noise": hp["policy_noise"],
            "noise_clip": hp["noise_clip"],
            "update_actor_interval": hp["update_actor_freq"],
            "actor_beta": hp["actor_bc_coef"],
            "critic_beta": hp["critic_bc_coef"],
            "critic_layer_norm": True,
        }
        algo = "rebrac"
    elif key == "awac":
        hp = HP["awac"]
        params = {
            "actor_lr": hp["lr"],
            "critic_lr": hp["lr"],
            "gamma": hp["gamma"],
            "tau": hp["tau"],
            "n_critics": hp["num_critics"],
            "lam": hp["lam"],
            "n_action_samples": hp["num_action_samples"],
        }
        algo = "awac"
    else:
        return None
    return {"suite": "continuous", "algo": algo, "params": params, **common}


# ------------------------------------------------------------------- building a side


@functools.cache
def _buffer(obs_dim: int, act_dim: int, size: int, seed: int) -> ReplayBuffer:
    return synthetic_buffer(obs_dim, act_dim, size, seed)


def build(spec: dict[str, Any]) -> tuple[OfflineAlgorithm[Any], ReplayBuffer, int, str]:
    """Ours or Tianshou's algorithm for a spec (``impl``, ``algo``, ``adam``, shapes):
    the algorithm, its buffer, its batch size and the library's name."""
    setup = Setup.make(spec["obs_dim"], spec["act_dim"], tuple(spec["hidden"]))
    buffer = _buffer(spec["obs_dim"], spec["act_dim"], spec["buffer_size"], spec["seed"])
    if spec["impl"] == "ours":
        return OURS[spec["algo"]](setup), buffer, spec["batch_size"], "tianshou-offline"
    algo = TIANSHOU[spec["algo"]](setup, spec["adam"])
    return algo, buffer, spec["batch_size"], "tianshou 2.0.1"
