"""Time per gradient step: tianshou-offline vs Tianshou 2.0.1 and d3rlpy 2.8.1, on equal footing.

Every side gets the same networks (256×256 ReLU MLPs unless ``--hidden``), batch size (256),
critic count, sampled-action counts and hyperparameters, and trains on the same synthetic
data (HalfCheetah-shaped by default: 17-d observations, 6-d actions, 100k transitions in
1000-step episodes; the values do not affect speed). The sides, **each in its own process**:

- **ours** — tianshou-offline (which steps PyTorch's fused Adam kernel);
- **Tianshou fused** — Tianshou 2.0.1 with ``TorchOptimizerFactory(torch.optim.Adam, lr=…,
  fused=True)``: the same optimizer kernel as ours, the headline comparison;
- **Tianshou default** — Tianshou with its default ``AdamOptimizerFactory`` (PyTorch's
  for-loop Adam on CPU), for context: what a Tianshou user runs;
- **d3rlpy** — d3rlpy 2.8.1 in its own virtual environment (``--d3rlpy-python``, or created
  under ``~/.cache/tianshou-offline/d3rlpy-venv``; never a dependency of this package), with a
  fused Adam through its public ``OptimizerFactory`` interface (``_d3rlpy_runner.py``). A step
  is its ``fit`` loop's: ``sample_transition_batch`` then ``update``.

Measurement (``_peers.py``): every process builds and warms up its algorithm, then the driver
runs them one at a time for ``--seconds`` each, in an order rotated every round, for
``--rounds`` rounds, with the same torch thread count (``--threads``; several values run one
after another). Reported: median ms per step, and for each peer the median (and range) of the
per-round ratios ours ÷ peer (speed ratio: >1 is ours faster). Target: ≥ 1.5× the faster
peer on the same footing (Tianshou fused, d3rlpy); the ``≥ 1.5×`` column says where missed.

Floors (``_floor.py``): after the rounds every side is profiled for the time its step spends in
matrix products, activations and the fused Adam kernel — the kernels a side cannot avoid for
the network passes it makes. A side with a larger floor does more network work. The ceiling
(the faster peer's ms ÷ our floor) is the largest ratio reachable with our amount of network
work; an implementation making fewer passes has a higher one. ``--profile-top K`` also lists
each side's K operators with the most self time.

Tianshou has no continuous CRR, IQL or ReBRAC: their rows compare with d3rlpy only.

The discrete suite (CartPole MLPs and the Atari conv net) is ``train_speed_discrete.py``; this
script runs it after the continuous table (``--suite``).

Usage::

    python benchmarks/train_speed.py --threads 1 2          # everything, 1 then 2 threads
    python benchmarks/train_speed.py --suite continuous --algorithms cql,bcq --profile-top 15
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
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
from tianshou.utils.torch_utils import policy_within_training_step

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _floor import describe_optimizers, find_optimizers
from _peers import Row, Side, Step, d3rlpy_python, print_rows, run_rows

from tianshou_offline.algorithms import (
    BCQ,
    CQL,
    CRR,
    IQL,
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
        num_sampled_action=hp["num_sampled_action"],
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
        target_update_interval=hp["target_update_interval"],
        num_action_samples=hp["num_action_samples"],
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


OURS: dict[str, Callable[[Setup], OfflineAlgorithm[Any]]] = {
    "il": ours_il,
    "bcq": ours_bcq,
    "bcq-ts-target": ours_bcq_ts_target,
    "cql": ours_cql,
    "td3bc": ours_td3bc,
    "crr": ours_crr,
    "iql": ours_iql,
    "rebrac": ours_rebrac,
}
TIANSHOU: dict[str, Callable[[Setup, str], OfflineAlgorithm[Any]]] = {
    "il": ts_il,
    "bcq": ts_bcq,
    "cql": ts_cql,
    "td3bc": ts_td3bc,
}


# ------------------------------------------------------------------- d3rlpy side


def d3rlpy_spec(key: str, common: dict[str, Any]) -> dict[str, Any] | None:
    """What ``_d3rlpy_runner.py`` builds for ``key``: d3rlpy's config fields, from :data:`HP`
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
    else:
        return None
    return {"suite": "continuous", "algo": algo, "params": params, **common}


# ------------------------------------------------------------------- worker side


_BUFFERS: dict[tuple[int, int, int, int], ReplayBuffer] = {}


def build_side(spec: dict[str, Any]) -> tuple[Step, dict[str, Any]]:
    """Build ours or Tianshou's algorithm from a spec (``_tianshou_runner.py``): its gradient
    step (``algorithm.update(buffer, batch_size)``, as Tianshou's ``OfflineTrainer`` calls
    it) and facts for the table."""
    torch.manual_seed(spec["seed"])
    setup = Setup.make(spec["obs_dim"], spec["act_dim"], tuple(spec["hidden"]))
    key = (spec["obs_dim"], spec["act_dim"], spec["buffer_size"], spec["seed"])
    if key not in _BUFFERS:
        _BUFFERS[key] = synthetic_buffer(*key)
    buffer = _BUFFERS[key]
    if spec["impl"] == "ours":
        algo = OURS[spec["algo"]](setup)
        library = "tianshou-offline"
    else:
        algo = TIANSHOU[spec["algo"]](setup, spec["adam"])
        library = "tianshou 2.0.1"
    algo.process_buffer(buffer)
    batch_size = spec["batch_size"]

    def step() -> None:
        with policy_within_training_step(algo.policy):
            algo.update(buffer=buffer, sample_size=batch_size)

    step()  # optimizers create their state (and ours choose the fused kernel) at step 1
    info = {
        "library": library,
        "optimizer": describe_optimizers(find_optimizers(algo)),
        "parameters": sum(p.numel() for p in algo.policy.parameters()),
    }
    return step, info


# ------------------------------------------------------------------- rows

ROWS: dict[str, tuple[str, list[str]]] = {
    # key: (label, notes on differences in work)
    "il": ("BC (deterministic)", []),
    "bcq": (
        "BCQ",
        [
            "the TD target: ours and d3rlpy perturb the sampled next actions with the target "
            "perturbation network (the paper's ξ_φ'), Tianshou 2.0.1 does not (one perturbation "
            "pass fewer on 10 × batch); the second 'ours' line uses Tianshou's rule "
            "(perturb_target_actions=False) — equal work with Tianshou",
        ],
    ),
    "cql": (
        "CQL (Lagrange, auto α)",
        [
            "d3rlpy evaluates the critics on the dataset actions twice per step (TD error and "
            "conservative term) where ours evaluates them once",
        ],
    ),
    "td3bc": ("TD3+BC", []),
    "crr": ("CRR (1 critic, 4 samples)", ["Tianshou 2.0.1 has no continuous CRR"]),
    "iql": (
        "IQL (Gaussian actor)",
        [
            "Tianshou 2.0.1 has no IQL",
            "V passes per step: d3rlpy V(s') before and V(s) twice (loss, then the actor's "
            "advantage after its critic step); ours V(s) for the loss, then V(s) and V(s') "
            "after the V step in one call — the same three",
        ],
    ),
    "rebrac": (
        "ReBRAC (LayerNorm critics)",
        [
            "Tianshou 2.0.1 has no ReBRAC",
            "batch 256 as every row (the paper's 1024 is a training setting, not part of the "
            "step's work per sample)",
        ],
    ),
}


def continuous_rows(args: argparse.Namespace, keys: list[str]) -> list[Row]:
    """The rows to measure: sides and specs for each algorithm."""
    common = {
        "obs_dim": args.obs_dim,
        "act_dim": args.act_dim,
        "hidden": list(args.hidden),
        "batch_size": args.batch_size,
        "buffer_size": args.buffer_size,
        "seed": args.seed,
    }
    rows: list[Row] = []
    for key in keys:
        label, notes = ROWS[key]
        base = {"suite": "continuous", "algo": key, **common}
        sides = [Side("ours", "ours", {**base, "impl": "ours", "adam": "fused"})]
        ours = [("ours", "")]
        if key == "bcq":
            sides.append(
                Side(
                    "ours-ts-target",
                    "ours",
                    {**base, "algo": "bcq-ts-target", "impl": "ours", "adam": "fused"},
                )
            )
            ours.append(("ours-ts-target", " — ours with Tianshou's target rule"))
        if key in TIANSHOU:
            for adam in ("fused", "default"):
                sides.append(
                    Side(
                        f"tianshou-{adam}",
                        f"tianshou-{adam}",
                        {**base, "impl": "tianshou", "adam": adam},
                    )
                )
        spec = d3rlpy_spec(key, {**common, "adam": "fused"})
        if spec is not None:
            sides.append(Side("d3rlpy", "d3rlpy", spec))
        rows.append(
            Row(
                key=f"continuous:{key}",
                label=label,
                sides=sides,
                ours=ours,
                notes=notes,
            )
        )
    return rows


COLUMNS = [
    ("tianshou-fused", "Tianshou fused"),
    ("tianshou-default", "Tianshou default"),
    ("d3rlpy", "d3rlpy"),
]


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared with ``train_speed_discrete.py``."""
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="one run per value")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="per side per round")
    parser.add_argument(
        "--floor-steps",
        type=int,
        default=30,
        help="steps profiled per side (0: no floors)",
    )
    parser.add_argument(
        "--floor-rounds",
        type=int,
        default=3,
        help="interleaved profiles per side (median)",
    )
    parser.add_argument("--profile-top", type=int, default=0, metavar="K")
    parser.add_argument(
        "--d3rlpy-python",
        default=None,
        help="d3rlpy 2.8.1's interpreter (default: ~/.cache/tianshou-offline/d3rlpy-venv)",
    )
    parser.add_argument(
        "--no-d3rlpy",
        action="store_true",
        help="skip d3rlpy (else its venv is created if missing)",
    )
    parser.add_argument("--json", default=None, help="write every row's measurements here")


def resolve_d3rlpy(args: argparse.Namespace) -> str | None:
    if args.no_d3rlpy:
        return None
    return d3rlpy_python(args.d3rlpy_python, create=True, torch_version=torch.__version__)


def run_and_print(
    title: str,
    make_rows: Callable[[], list[Row]],
    columns: list[tuple[str, str]],
    args: argparse.Namespace,
    d3rlpy: str | None,
    threads: int,
) -> list[Row]:
    load_before = os.getloadavg()[0]
    rows = run_rows(
        make_rows(),
        threads=threads,
        d3rlpy=d3rlpy,
        rounds=args.rounds,
        seconds=args.seconds,
        floor_steps=args.floor_steps or None,
        floor_rounds=args.floor_rounds,
        top=args.profile_top,
    )
    load_after = os.getloadavg()[0]
    print(
        f"\n## {title} — torch {torch.__version__}, {threads} thread(s), {args.rounds} "
        f"interleaved rounds × {args.seconds:.1f} s per side; {os.cpu_count()} CPUs, load "
        f"average {load_before:.1f} → {load_after:.1f}\n",
        flush=True,
    )
    print(
        "ms = median ms per gradient step; ÷ X = ours ÷ X, the median (range) of per-round "
        "speed ratios (> 1: ours faster); faster peer = the faster of Tianshou fused and "
        "d3rlpy (same optimizer kernel as ours); floor = ms per step in matrix products, "
        "activations and the fused Adam kernel (_floor.py); ceiling = faster peer ms ÷ our "
        "floor: the most a ratio can be with our amount of network work\n"
    )
    print_rows(rows, columns, bool(args.profile_top))
    sys.stdout.flush()
    return rows


def dump_json(path: str, results: dict[str, list[Row]]) -> None:
    with open(path, "w") as f:
        json.dump({k: [asdict(r) for r in rows] for k, rows in results.items()}, f, indent=1)


def summary_table(path: str) -> str:
    """README's table from a ``--json`` file: per row and our line, at each thread count,
    ours ms/step and ours ÷ each peer (median per-round ratio), whether ≥ 1.5× the faster
    fused-Adam peer; then each side's floor and the ceiling at the first thread count."""
    import statistics as st

    with open(path) as f:
        data: dict[str, list[dict[str, Any]]] = json.load(f)
    suites = list(dict.fromkeys(k.rsplit("-", 1)[0] for k in data))
    threads = list(dict.fromkeys(k.rsplit("-", 1)[1] for k in data))

    def sides(row: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {s["key"]: s for s in row["sides"]}

    def ratio(row: dict[str, Any], ours: str, peer: str) -> float | None:
        ss = sides(row)
        if peer not in ss or not ss[peer]["ms"]:
            return None
        return float(st.median(p / o for o, p in zip(ss[ours]["ms"], ss[peer]["ms"], strict=True)))

    peers = [k for k, _ in COLUMNS]
    head = ["algorithm"]
    for t in threads:
        head += [f"{t}t: ours ms", *(f"÷ {h}" for _, h in COLUMNS), "≥ 1.5×"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    floor_lines = [
        f"| algorithm | floor ms ({threads[0]}t): ours | "
        + " | ".join(h for _, h in COLUMNS)
        + " | ceiling |",
        "|---|" + "---:|" * (len(COLUMNS) + 2),
    ]
    for suite in suites:
        rows_by_t = {t: data[f"{suite}-{t}"] for t in threads if f"{suite}-{t}" in data}
        first = rows_by_t[threads[0]]
        for i, row in enumerate(first):
            for ours, suffix in row["ours"]:
                cells = [row["label"] + suffix]
                for t in threads:
                    r_t = rows_by_t[t][i]
                    ss = sides(r_t)
                    cells.append(f"{st.median(ss[ours]['ms']):.2f}")
                    values = {p: ratio(r_t, ours, p) for p in peers}
                    cells += [f"{v:.2f}×" if v is not None else "–" for v in values.values()]
                    footing = [v for p, v in values.items() if v is not None and "default" not in p]
                    cells.append(("yes" if min(footing) >= 1.5 else "**no**") if footing else "–")
                lines.append("| " + " | ".join(cells) + " |")
                ss = sides(row)
                floors = [
                    ss[k]["floor"]["floor_ms"] if k in ss and ss[k]["floor"] else None
                    for k in [ours, *peers]
                ]
                fused_ms = [
                    st.median(ss[p]["ms"])
                    for p in peers
                    if p in ss and "default" not in p and ss[p]["ms"]
                ]
                ceiling = f"{min(fused_ms) / floors[0]:.2f}×" if fused_ms and floors[0] else "–"
                floor_lines.append(
                    "| "
                    + " | ".join(
                        [row["label"] + suffix]
                        + [f"{x:.2f}" if x is not None else "–" for x in floors]
                        + [ceiling]
                    )
                    + " |"
                )
    return "\n".join(lines) + "\n\n" + "\n".join(floor_lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=("all", "continuous", "discrete"), default="all")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--obs-dim", type=int, default=17)
    parser.add_argument("--act-dim", type=int, default=6)
    parser.add_argument("--buffer-size", type=int, default=100_000)
    parser.add_argument("--algorithms", default=",".join(ROWS), help="continuous suite")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--summary-from",
        metavar="JSON",
        default=None,
        help="print README's tables from --json",
    )
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    if args.summary_from:
        print(summary_table(args.summary_from))
        return 0
    keys = [k.strip() for k in args.algorithms.split(",") if k.strip()]
    unknown = [k for k in keys if k not in ROWS]
    if unknown:
        parser.error(f"unknown algorithms {unknown}; choose from {list(ROWS)}")
    d3rlpy = resolve_d3rlpy(args)
    results: dict[str, list[Row]] = {}
    for threads in args.threads:
        if args.suite in ("all", "continuous"):
            results[f"continuous-{threads}"] = run_and_print(
                f"Continuous control (obs {args.obs_dim}, act {args.act_dim}, hidden "
                f"{args.hidden}, batch {args.batch_size})",
                lambda: continuous_rows(args, keys),
                COLUMNS,
                args,
                d3rlpy,
                threads,
            )
        if args.suite in ("all", "discrete"):
            import train_speed_discrete

            for name, rows in train_speed_discrete.run_suite(args, d3rlpy, threads).items():
                results[f"{name}-{threads}"] = rows
        if args.json:
            dump_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
