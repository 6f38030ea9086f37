"""The continuous-control sides of the speed benchmark (``benchmarks/train_speed.py``): ours,
Tianshou 2.0.1's (fused or default Adam) and the spec d3rlpy's worker builds
(:mod:`benchmarks._lib.d3rlpy_side`), all from one config per algorithm: the ``speed``
preset's (:mod:`tianshou_offline.algorithms.presets`). Ours is built by the registry
(:func:`~tianshou_offline.algorithms.registry.make_algorithm`); Tianshou's builders below
and d3rlpy's :func:`~benchmarks._lib.field_map.d3rlpy_params` read the same config's fields.

Every side gets the same networks (256×256 ReLU MLPs unless ``--hidden``), batch size,
critic count, sampled-action counts and hyperparameters, and trains on the same synthetic
data (HalfCheetah-shaped by default: 17-d observations, 6-d actions, 100k transitions in
1000-step episodes; the values do not affect speed). Tianshou has no continuous CRR, IQL,
ReBRAC, AWAC or Decision Transformer: their rows compare with d3rlpy only; neither has SAC-N
or EDAC (ours alone).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
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

from benchmarks._lib.field_map import d3rlpy_algo, d3rlpy_has, d3rlpy_params
from tianshou_offline.algorithms import (
    BCQConfig,
    ContinuousDTConfig,
    CQLConfig,
    ImitationConfig,
    TD3BCConfig,
)
from tianshou_offline.algorithms.config import AlgorithmConfig, ContinuousConfig
from tianshou_offline.algorithms.presets import preset
from tianshou_offline.algorithms.registry import make_config

PRESET = "speed"
"""The preset every side's settings come from."""


@dataclass
class Setup:
    obs_dim: int
    act_dim: int
    obs_space: gym.spaces.Box
    act_space: gym.spaces.Box

    @classmethod
    def make(cls, obs_dim: int, act_dim: int) -> Setup:
        return cls(
            obs_dim=obs_dim,
            act_dim=act_dim,
            obs_space=gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
            act_space=gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32),
        )


def config(key: str, hidden: Sequence[int] | None = None) -> ContinuousConfig | ContinuousDTConfig:
    """The ``speed`` preset's config of ``key`` (an algorithm or a variant such as
    ``bcq-ts-target``), every network's hidden widths set to ``hidden`` if given (the
    Decision Transformer has none: its width is ``embed_dim``)."""
    c = make_config(key, "continuous", preset=PRESET)
    assert isinstance(c, ContinuousConfig | ContinuousDTConfig)
    if hidden is not None:
        widths = tuple(int(h) for h in hidden)
        c = c.replace(**{f: widths for f in ("hidden_sizes", "vae_hidden_sizes")
                         if f in c.field_names()})  # fmt: skip
    return c


def batch_size(key: str) -> int:
    """The ``speed`` preset's batch size of ``key``."""
    return preset(PRESET).batch_size_of(key.split("-")[0], "continuous")


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


def ts_adam(lr: float, adam: str) -> OptimizerFactory:
    """Tianshou's optimizer factory: ``fused`` — ``torch.optim.Adam(fused=True)``;
    ``default`` — Tianshou's ``AdamOptimizerFactory`` (the for-loop kernel on CPU)."""
    if adam == "fused":
        return TorchOptimizerFactory(torch.optim.Adam, lr=lr, fused=True)
    if adam == "default":
        return AdamOptimizerFactory(lr=lr)
    raise ValueError(f"adam={adam!r}: expected 'fused' or 'default'")


# ------------------------------------------------------------------- Tianshou 2.0.1 side


def _ts_critic(s: Setup, hidden: Sequence[int]) -> ContinuousCritic:
    return ContinuousCritic(
        preprocess_net=Net(
            state_shape=(s.obs_dim,),
            action_shape=(s.act_dim,),
            hidden_sizes=list(hidden),
            concat=True,
        )
    )


def _ts_deterministic_actor(s: Setup, hidden: Sequence[int]) -> ContinuousActorDeterministic:
    return ContinuousActorDeterministic(
        preprocess_net=Net(state_shape=(s.obs_dim,), hidden_sizes=list(hidden)),
        action_shape=(s.act_dim,),
    )


def ts_il(c: AlgorithmConfig, s: Setup, adam: str) -> OfflineAlgorithm[Any]:
    assert isinstance(c, ImitationConfig) and c.actor == "deterministic"
    return OfflineImitationLearning(
        policy=ImitationPolicy(
            actor=_ts_deterministic_actor(s, c.hidden_sizes), action_space=s.act_space
        ),
        optim=ts_adam(c.lr, adam),
    )


def ts_td3bc(c: AlgorithmConfig, s: Setup, adam: str) -> OfflineAlgorithm[Any]:
    assert isinstance(c, TD3BCConfig) and c.num_critics == 2
    actor = _ts_deterministic_actor(s, c.hidden_sizes)
    return TsTD3BC(
        policy=ContinuousDeterministicPolicy(actor=actor, action_space=s.act_space),
        policy_optim=ts_adam(c.actor_lr, adam),
        critic=_ts_critic(s, c.hidden_sizes),
        critic_optim=ts_adam(c.critic_lr, adam),
        critic2=_ts_critic(s, c.hidden_sizes),
        critic2_optim=ts_adam(c.critic_lr, adam),
        tau=c.tau,
        gamma=c.gamma,
        policy_noise=c.policy_noise,
        noise_clip=c.noise_clip,
        update_actor_freq=c.update_actor_freq,
        alpha=c.alpha,
        n_step_return_horizon=c.n_step_return_horizon,
    )


def ts_cql(c: AlgorithmConfig, s: Setup, adam: str) -> OfflineAlgorithm[Any]:
    assert isinstance(c, CQLConfig) and c.num_critics == 2 and c.auto_alpha
    actor = ContinuousActorProbabilistic(
        preprocess_net=Net(state_shape=(s.obs_dim,), hidden_sizes=list(c.hidden_sizes)),
        action_shape=(s.act_dim,),
        unbounded=True,
        conditioned_sigma=True,
    )
    target_entropy = -float(s.act_dim) if c.target_entropy is None else c.target_entropy
    return TsCQL(
        policy=SACPolicy(actor=actor, action_space=s.act_space),
        policy_optim=ts_adam(c.actor_lr, adam),
        critic=_ts_critic(s, c.hidden_sizes),
        critic_optim=ts_adam(c.critic_lr, adam),
        critic2=_ts_critic(s, c.hidden_sizes),
        critic2_optim=ts_adam(c.critic_lr, adam),
        alpha=AutoAlpha(
            target_entropy=target_entropy,
            log_alpha=math.log(c.init_alpha),
            optim=ts_adam(c.alpha_lr, adam),
        ),
        cql_alpha_lr=c.cql_alpha_lr,
        cql_weight=c.cql_weight,
        tau=c.tau,
        gamma=c.gamma,
        temperature=c.temperature,
        with_lagrange=c.with_lagrange,
        lagrange_threshold=c.lagrange_threshold,
        num_repeat_actions=c.num_sampled_actions,
        max_grad_norm=c.max_grad_norm if c.max_grad_norm is not None else math.inf,
        calibrated=c.calibrated,
    )


def ts_bcq(c: AlgorithmConfig, s: Setup, adam: str) -> OfflineAlgorithm[Any]:
    assert isinstance(c, BCQConfig) and c.num_critics == 2
    d, a, h, vh = s.obs_dim, s.act_dim, list(c.hidden_sizes), list(c.vae_hidden_sizes)
    perturbation = TsPerturbation(
        preprocess_net=TsMLP(input_dim=d + a, output_dim=a, hidden_sizes=h),
        max_action=1.0,
        phi=c.phi,
    )
    latent = c.latent_dim if c.latent_dim is not None else 2 * a
    vae = TsVAE(
        encoder=TsMLP(input_dim=d + a, hidden_sizes=vh),
        decoder=TsMLP(input_dim=d + latent, output_dim=a, hidden_sizes=vh),
        hidden_dim=vh[-1],
        latent_dim=latent,
        max_action=1.0,
    )
    policy = TsBCQPolicy(
        actor_perturbation=perturbation,
        action_space=s.act_space,
        critic=_ts_critic(s, c.hidden_sizes),
        vae=vae,
    )
    return TsBCQ(
        policy=policy,
        actor_perturbation_optim=ts_adam(c.actor_lr, adam),
        critic_optim=ts_adam(c.critic_lr, adam),
        vae_optim=ts_adam(c.vae_lr, adam),
        critic2=_ts_critic(s, c.hidden_sizes),
        gamma=c.gamma,
        tau=c.tau,
        lmbda=c.lmbda,
        num_sampled_action=c.num_sampled_actions,
    )


TIANSHOU: dict[str, Callable[[AlgorithmConfig, Setup, str], OfflineAlgorithm[Any]]] = {
    "il": ts_il,
    "bcq": ts_bcq,
    "cql": ts_cql,
    "td3bc": ts_td3bc,
}
"""Tianshou 2.0.1's algorithms, built from our config's fields."""


# ------------------------------------------------------------------- d3rlpy side


def d3rlpy_spec(key: str, common: dict[str, Any]) -> dict[str, Any] | None:
    """What :mod:`benchmarks._lib.d3rlpy_side` builds for ``key``: d3rlpy's config fields from
    the ``speed`` preset's config (:func:`~benchmarks._lib.field_map.d3rlpy_params`). None:
    d3rlpy has no such algorithm.

    :param common: ``obs_dim``, ``act_dim``, ``hidden``, ``batch_size``, ``buffer_size``,
        ``seed``, ``adam`` (every side's).
    """
    c = config(key, common["hidden"])
    if not d3rlpy_has(c):
        return None
    return {"suite": "continuous", "algo": d3rlpy_algo(c), "params": d3rlpy_params(c), **common}


# ------------------------------------------------------------------- building a side


@functools.cache
def _buffer(obs_dim: int, act_dim: int, size: int, seed: int) -> ReplayBuffer:
    return synthetic_buffer(obs_dim, act_dim, size, seed)


def build(spec: dict[str, Any]) -> tuple[OfflineAlgorithm[Any], ReplayBuffer, int, str]:
    """Ours or Tianshou's algorithm for a spec (``impl``, ``algo``, ``adam``, shapes,
    ``hidden``): the algorithm, its buffer, its batch size and the library's name."""
    setup = Setup.make(spec["obs_dim"], spec["act_dim"])
    buffer = _buffer(spec["obs_dim"], spec["act_dim"], spec["buffer_size"], spec["seed"])
    c = config(spec["algo"], spec["hidden"])
    if spec["impl"] == "ours":
        algo = c.build(setup.obs_space, setup.act_space)
        return algo, buffer, spec["batch_size"], "tianshou-offline"
    algo = TIANSHOU[spec["algo"]](c, setup, spec["adam"])
    return algo, buffer, spec["batch_size"], "tianshou 2.0.1"
