"""The two sides of the continuous return-parity benchmark (``benchmarks/parity_continuous.py``):
the Pendulum-v1 expert data as each side stores it, our networks' initial weights copied layer
by layer into Tianshou 2.0.1's, and both sides' algorithms built with the same settings (the
``small`` preset's for IL, BCQ and TD3+BC; Tianshou's example settings for CQL, on both sides).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm.algorithm_base import Algorithm
from tianshou.algorithm.imitation.bcq import BCQ as TsBCQ
from tianshou.algorithm.imitation.bcq import BCQPolicy as TsBCQPolicy
from tianshou.algorithm.imitation.cql import CQL as TsCQL
from tianshou.algorithm.imitation.imitation_base import ImitationPolicy, OfflineImitationLearning
from tianshou.algorithm.imitation.td3_bc import TD3BC as TsTD3BC
from tianshou.algorithm.modelfree.ddpg import ContinuousDeterministicPolicy
from tianshou.algorithm.modelfree.sac import AutoAlpha, SACPolicy
from tianshou.algorithm.optim import AdamOptimizerFactory as Adam
from tianshou.data import ReplayBuffer
from tianshou.utils import RunningMeanStd
from tianshou.utils.net.common import MLP as TsMLP
from tianshou.utils.net.common import Net
from tianshou.utils.net.continuous import VAE as TsVAE
from tianshou.utils.net.continuous import (
    ContinuousActorDeterministic,
    ContinuousActorProbabilistic,
    ContinuousCritic,
)
from tianshou.utils.net.continuous import Perturbation as TsPerturbation
from torch import nn

from benchmarks._lib.experts.pendulum import cached_expert_file
from tianshou_offline import load_buffer
from tianshou_offline.algorithms import (
    BCQ,
    CQL,
    CRR,
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
)
from tianshou_offline.algorithms import MLP as OurMLP
from tianshou_offline.algorithms.registry import make_config

TASK = "Pendulum-v1"
OBS_DIM, ACT_DIM = 3, 1
PRESET = "small"
"""The preset whose IL, BCQ and TD3+BC settings both sides train with
(:mod:`tianshou_offline.algorithms.presets`)."""
CQL_WEIGHT = 5.0
"""The CQL weight of Kumar et al.'s MuJoCo runs, without the Lagrange multiplier: with
Tianshou's defaults (Lagrange, τ = 10, gradient clipping at 1) the multiplier decays to ~0 on
this data and both implementations degrade to unregularised SAC and collapse after ~5k steps."""


# ------------------------------------------------------------------- data


def expert_buffers(data_dir: Path) -> tuple[ReplayBuffer, ReplayBuffer]:
    """(ours: actions in env units, Tianshou's: the same transitions, actions in [-1, 1])."""
    path = cached_expert_file(data_dir)
    ours = load_buffer(path)
    theirs = load_buffer(path)
    env = gym.make(TASK)
    assert isinstance(env.action_space, gym.spaces.Box)
    high = float(env.action_space.high[0])
    theirs.act[:] = theirs.act / high  # Tianshou stores policy-range actions in its buffers
    return ours, theirs


def normalized_obs_copy(buffer: ReplayBuffer) -> tuple[ReplayBuffer, RunningMeanStd]:
    """Tianshou's TD3+BC example recipe: normalise obs/obs_next of the buffer in place."""
    from tianshou_offline.data.columns import buffer_from_columns

    batch: Any = buffer[np.arange(len(buffer))]  # Batch fields are untyped unions
    rms = RunningMeanStd()
    rms.update(batch.obs)
    eps = np.finfo(np.float32).eps.item()
    scale = np.sqrt(rms.var + eps)
    cols = {k: batch[k] for k in ("act", "rew", "terminated", "truncated")}
    cols["obs"] = ((batch.obs - rms.mean) / scale).astype(np.float32)
    cols["obs_next"] = ((batch.obs_next - rms.mean) / scale).astype(np.float32)
    cols["done"] = batch.done
    return buffer_from_columns(cols), rms


# ------------------------------------------------------------------- initial weights


def _our_linears(mlp: OurMLP) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight (out, in), bias (out,)) of every layer of our MLP, input to output."""
    layers: list[tuple[torch.Tensor, torch.Tensor]] = [(mlp.first.weight, mlp.first.bias)]
    layers += [(m.weight, m.bias) for m in mlp.rest if isinstance(m, nn.Linear)]
    return layers


def _ts_linears(module: nn.Module) -> list[nn.Linear]:
    """Tianshou's ``Linear`` layers in registration order (= input to output for its nets)."""
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


@torch.no_grad()
def _copy_layers(
    src: Sequence[tuple[torch.Tensor, torch.Tensor]], dst: Sequence[nn.Linear]
) -> None:
    if len(src) != len(dst):
        raise ValueError(f"{len(src)} source layers for {len(dst)} target layers")
    for (w, b), lin in zip(src, dst, strict=True):
        if lin.weight.shape != w.shape or lin.bias.shape != b.shape:
            raise ValueError(f"layer shapes differ: {tuple(w.shape)} vs {tuple(lin.weight.shape)}")
        lin.weight.copy_(w)
        lin.bias.copy_(b)


def copy_mlp(src: OurMLP, dst: nn.Module) -> None:
    """Our MLP (hidden layers + output layer) into a Tianshou net of the same layers."""
    _copy_layers(_our_linears(src), _ts_linears(dst))


def copy_gaussian_actor(src: GaussianActor, dst: ContinuousActorProbabilistic) -> None:
    """Our output layer ``(2A, H)`` = [mean rows; log_std rows] → Tianshou's ``mu``, ``sigma``."""
    layers = _our_linears(src.net)
    (w, b), a = layers[-1], src.act_dim
    _copy_layers(layers[:-1], _ts_linears(dst.preprocess))
    _copy_layers([(w[:a], b[:a])], _ts_linears(dst.mu))
    _copy_layers([(w[a:], b[a:])], _ts_linears(dst.sigma))


def copy_critic(src: CriticEnsemble, member: int, dst: ContinuousCritic) -> None:
    """Member ``member`` of our ensemble (weights ``(E, in, out)``) → one Tianshou critic."""
    layers = [(w[member].T, b[member, 0]) for w, b in zip(src.weights, src.biases, strict=True)]
    _copy_layers(layers, _ts_linears(dst))


def copy_vae(src: VAE, dst: TsVAE) -> None:
    """Encoder, [mean; log_std] head (split), decoder."""
    _copy_layers(_our_linears(src.encoder), _ts_linears(dst.encoder))
    w, b, latent = src.mean_and_log_std.weight, src.mean_and_log_std.bias, src.latent_dim
    _copy_layers([(w[:latent], b[:latent])], [dst.mean])
    _copy_layers([(w[latent:], b[latent:])], [dst.log_std])
    _copy_layers(_our_linears(src.decoder), _ts_linears(dst.decoder))


# ------------------------------------------------------------------- builders


def _ts_critic(h: list[int]) -> ContinuousCritic:
    return ContinuousCritic(
        preprocess_net=Net(
            state_shape=(OBS_DIM,), action_shape=(ACT_DIM,), hidden_sizes=h, concat=True
        )
    )


def _ts_critics(h: list[int], src: CriticEnsemble | None) -> tuple[ContinuousCritic, ...]:
    """Tianshou's two critics, started from members 0 and 1 of our ensemble ``src``."""
    critics = (_ts_critic(h), _ts_critic(h))
    if src is not None:
        for member, critic in enumerate(critics):
            copy_critic(src, member, critic)
    return critics


def _preset(name: str) -> Any:
    """The ``small`` preset's config of ``name``: where both sides' settings of IL, BCQ and
    TD3+BC come from (CQL and CRR keep Tianshou's example settings, which differ)."""
    return make_config(name, "continuous", preset=PRESET)


def build_tianshou(
    name: str,
    env: gym.Env[Any, Any],
    h: list[int],
    init: Algorithm[Any, Any] | None = None,
    *,
    bcq_net: bool = False,
) -> Algorithm[Any, Any]:
    """Tianshou's algorithm ``name``; with ``init`` (our algorithm of the same name, freshly
    built), its networks start from ``init``'s weights (copied before the algorithm makes its
    target networks)."""
    space = env.action_space
    src: Any = init
    if name == "il":
        actor = ContinuousActorDeterministic(
            preprocess_net=Net(state_shape=(OBS_DIM,), hidden_sizes=h), action_shape=(ACT_DIM,)
        )
        if src is not None:
            copy_mlp(src.policy.actor.net, actor)
        policy = ImitationPolicy(actor=actor, action_space=space, action_scaling=True)
        return OfflineImitationLearning(policy=policy, optim=Adam(lr=_preset("il").lr))
    if name == "bcq":
        vae = TsVAE(
            encoder=TsMLP(input_dim=OBS_DIM + ACT_DIM, hidden_sizes=h),
            decoder=TsMLP(input_dim=OBS_DIM + 2 * ACT_DIM, output_dim=ACT_DIM, hidden_sizes=h),
            hidden_dim=h[-1],
            latent_dim=2 * ACT_DIM,
            max_action=1.0,
        )
        # Tianshou's Perturbation takes ``preprocess_net(...)[0]``, meant for a ``Net``'s
        # ``(logits, state)``; with the plain ``MLP`` of Tianshou's own BCQ example that is
        # the first row of the batch, so every state gets the first state's perturbation.
        # ``bcq_net=True`` uses a ``Net`` (same layers), which makes it per-state.
        perturbation_net: nn.Module = (
            Net(state_shape=(OBS_DIM + ACT_DIM,), action_shape=(ACT_DIM,), hidden_sizes=h)
            if bcq_net
            else TsMLP(input_dim=OBS_DIM + ACT_DIM, output_dim=ACT_DIM, hidden_sizes=h)
        )
        perturbation = TsPerturbation(
            preprocess_net=perturbation_net,
            max_action=1.0,
            phi=_preset("bcq").phi,
        )
        critic, critic2 = _ts_critics(h, None if src is None else src.policy.critics)
        if src is not None:
            copy_vae(src.policy.vae, vae)
            copy_mlp(src.policy.perturbation.net, perturbation)
        bcq_policy = TsBCQPolicy(
            actor_perturbation=perturbation,
            critic=critic,
            vae=vae,
            action_space=space,
            action_scaling=True,
        )
        c = _preset("bcq")
        return TsBCQ(
            policy=bcq_policy,
            actor_perturbation_optim=Adam(lr=c.actor_lr),
            critic_optim=Adam(lr=c.critic_lr),
            vae_optim=Adam(lr=c.vae_lr),
            critic2=critic2,
            gamma=c.gamma,
            tau=c.tau,
            lmbda=c.lmbda,
            num_sampled_action=c.num_sampled_actions,
        )
    if name == "cql":
        gaussian_actor = ContinuousActorProbabilistic(
            preprocess_net=Net(state_shape=(OBS_DIM,), hidden_sizes=h),
            action_shape=(ACT_DIM,),
            unbounded=True,
            conditioned_sigma=True,
        )
        critic, critic2 = _ts_critics(h, None if src is None else src.critics)
        if src is not None:
            copy_gaussian_actor(src.policy.actor, gaussian_actor)
        return TsCQL(
            policy=SACPolicy(actor=gaussian_actor, action_space=space),
            policy_optim=Adam(lr=1e-3),
            critic=critic,
            critic_optim=Adam(lr=1e-3),
            critic2=critic2,
            critic2_optim=Adam(lr=1e-3),
            alpha=AutoAlpha(target_entropy=-float(ACT_DIM), log_alpha=0.0, optim=Adam(lr=1e-3)),
            cql_alpha_lr=1e-3,
            cql_weight=CQL_WEIGHT,
            tau=0.005,
            gamma=0.99,
            temperature=1.0,
            with_lagrange=False,
            num_repeat_actions=10,
            max_grad_norm=1e10,  # i.e. no clipping, as ours below
            calibrated=False,
        )
    if name == "td3bc":
        actor = ContinuousActorDeterministic(
            preprocess_net=Net(state_shape=(OBS_DIM,), hidden_sizes=h), action_shape=(ACT_DIM,)
        )
        critic, critic2 = _ts_critics(h, None if src is None else src.critics)
        if src is not None:
            copy_mlp(src.policy.actor.net, actor)
        c = _preset("td3bc")
        return TsTD3BC(
            policy=ContinuousDeterministicPolicy(actor=actor, action_space=space),
            policy_optim=Adam(lr=c.actor_lr),
            critic=critic,
            critic_optim=Adam(lr=c.critic_lr),
            critic2=critic2,
            critic2_optim=Adam(lr=c.critic_lr),
            tau=c.tau,
            gamma=c.gamma,
            policy_noise=c.policy_noise,
            noise_clip=c.noise_clip,
            update_actor_freq=c.update_actor_freq,
            alpha=c.alpha,
        )
    raise ValueError(name)


def build_ours(name: str, env: gym.Env[Any, Any], h: list[int]) -> Algorithm[Any, Any]:
    kw: dict[str, Any] = dict(
        action_space=env.action_space, observation_space=env.observation_space
    )
    if name == "il":
        return ImitationLearning(
            policy=DeterministicPolicy(actor=DeterministicActor(OBS_DIM, ACT_DIM, h), **kw),
            optim=Adam(lr=_preset("il").lr),
        )
    if name == "bcq":
        c = _preset("bcq")
        policy = BCQPolicy(
            vae=VAE(OBS_DIM, ACT_DIM, h),
            perturbation=Perturbation(OBS_DIM, ACT_DIM, h, phi=c.phi),
            critics=CriticEnsemble(OBS_DIM, ACT_DIM, h),
            **kw,
        )
        return BCQ(
            policy=policy,
            vae_optim=Adam(lr=c.vae_lr),
            actor_perturbation_optim=Adam(lr=c.actor_lr),
            critic_optim=Adam(lr=c.critic_lr),
            gamma=c.gamma,
            tau=c.tau,
            lmbda=c.lmbda,
            num_sampled_actions=c.num_sampled_actions,
        )
    if name == "cql":
        return CQL(
            policy=GaussianPolicy(actor=GaussianActor(OBS_DIM, ACT_DIM, h), **kw),
            policy_optim=Adam(lr=1e-3),
            critics=CriticEnsemble(OBS_DIM, ACT_DIM, h),
            critic_optim=Adam(lr=1e-3),
            alpha="auto",
            alpha_optim=Adam(lr=1e-3),
            cql_weight=CQL_WEIGHT,
            tau=0.005,
            gamma=0.99,
            temperature=1.0,
            with_lagrange=False,
            num_sampled_actions=10,
            backup_entropy=True,  # Tianshou's CQL always backs up the entropy term
            max_grad_norm=None,
        )
    if name == "td3bc":
        c = _preset("td3bc")
        return TD3BC(
            policy=DeterministicPolicy(
                actor=DeterministicActor(OBS_DIM, ACT_DIM, h), normalize_obs=c.normalize_obs, **kw
            ),
            policy_optim=Adam(lr=c.actor_lr),
            critics=CriticEnsemble(OBS_DIM, ACT_DIM, h),
            critic_optim=Adam(lr=c.critic_lr),
            tau=c.tau,
            gamma=c.gamma,
            policy_noise=c.policy_noise,
            noise_clip=c.noise_clip,
            update_actor_freq=c.update_actor_freq,
            alpha=c.alpha,
        )
    if name == "crr":
        return CRR(
            policy=GaussianPolicy(actor=GaussianActor(OBS_DIM, ACT_DIM, h), squash=False, **kw),
            policy_optim=Adam(lr=1e-3),
            critics=CriticEnsemble(OBS_DIM, ACT_DIM, h, num_critics=2),
            critic_optim=Adam(lr=1e-3),
        )
    raise ValueError(name)
