"""Tianshou policies (the acting side) for the continuous-control algorithms.

A policy maps a Tianshou observation batch to actions; Tianshou's ``Collector`` calls it to
evaluate an algorithm. Every policy here

- owns an :class:`ObsNormalizer` (identity unless enabled), fitted on the dataset by the
  algorithm's ``process_buffer``, so evaluation in the raw environment needs no wrapper and
  checkpoints (``state_dict``) carry the statistics;
- outputs actions in ``[-1, 1]`` that Tianshou's ``map_action`` scales to the environment's
  bounds (``action_scaling=True``);
- runs its forward pass without autograd (acting only; algorithms call the networks).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Iterator
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from tianshou.algorithm.algorithm_base import Policy
from tianshou.data import Batch
from tianshou.data.batch import BatchProtocol
from tianshou.data.types import ActBatchProtocol, ActStateBatchProtocol, ObsBatchProtocol
from tianshou.exploration import BaseNoise
from torch import nn
from typing_extensions import TypeVar

from tianshou_offline.algorithms.config import renamed_attribute, renamed_kwargs
from tianshou_offline.algorithms.continuous.nets import VAE, CriticEnsemble, Perturbation

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_TArrOrActBatch = TypeVar("_TArrOrActBatch", bound="np.ndarray | ActBatchProtocol")
_ATANH_CLIP = 1.0 - 1e-6


class ObsNormalizer(nn.Module):
    """``(obs - mean) / std`` with dataset statistics (Fujimoto & Gu 2021, Sec. 5).

    :param obs_dim: D, the flat observation size.
    :param enabled: when False the module is the identity (and :meth:`fit` does nothing).
    :param eps: added to the standard deviation (1e-3 as in TD3+BC).

    ``mean`` and ``std`` are buffers, so they are saved with the policy's ``state_dict``.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, obs_dim: int, *, enabled: bool = False, eps: float = 1e-3) -> None:
        super().__init__()
        self.enabled = enabled
        self.eps = eps
        self.register_buffer("mean", torch.zeros(obs_dim))
        self.register_buffer("std", torch.ones(obs_dim))

    @torch.no_grad()
    def fit(self, obs: Any) -> None:
        """Set the statistics from ``obs``: ``(N, …)`` rows of any numeric dtype — an array, a
        tensor, or a disk-backed column (anything with ``shape`` and ``take(rows)``).

        The observations are taken as float32 (what the networks see), then summed in float64
        in two passes (the mean, then the squared deviations) over chunks of 1 MiB of float64
        (at least 64 rows), so that a column larger than RAM is never read whole, the freed
        temporaries the allocator keeps stay small, and a column in RAM and the same column on
        disk give identical statistics.
        """
        if not self.enabled:
            return
        n = int(obs.shape[0])
        if n == 0:
            raise ValueError("cannot fit the observation normaliser on no observations")
        dim = int(np.prod(obs.shape[1:], dtype=np.int64))
        step = max(64, (1 << 20) // (8 * max(dim, 1)))
        take = (
            getattr(obs, "take", None) if not isinstance(obs, np.ndarray | torch.Tensor) else None
        )

        def chunks() -> Iterator[torch.Tensor]:
            for a in range(0, n, step):
                b = min(n, a + step)
                rows = take(np.arange(a, b)) if callable(take) else obs[a:b]
                x = rows if isinstance(rows, torch.Tensor) else torch.from_numpy(np.asarray(rows))
                yield x.reshape(b - a, dim).to(device="cpu", dtype=torch.float32).double()

        total = torch.zeros(dim, dtype=torch.float64)
        for x in chunks():
            total += x.sum(0)
        mean = total / n
        squares = torch.zeros(dim, dtype=torch.float64)
        for x in chunks():
            squares += (x - mean).square().sum(0)
        self.mean.copy_(mean.to(self.mean))
        self.std.copy_(((squares / n).sqrt() + self.eps).to(self.std))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return obs
        return (obs - self.mean) / self.std


def _flat_dim(space: gym.Space[Any]) -> int:
    if not isinstance(space, gym.spaces.Box):
        raise TypeError(
            f"observation_space={space}: the continuous algorithms need a Box observation space"
        )
    return int(np.prod(space.shape))


class ContinuousPolicy(Policy):
    """Base of the policies below: observation conversion, normalisation, action scaling.

    Subclasses implement :meth:`select_action` on a normalised tensor batch (as the discrete
    policies do); :meth:`forward` converts Tianshou's batch and calls it without gradients.

    :param action_space: the environment's ``Box`` action space.
    :param observation_space: the environment's ``Box`` observation space (flattened).
    :param normalize_obs: normalise observations with dataset statistics.
    :param action_scaling: scale ``[-1, 1]`` actions to the action space's bounds.
    :param action_bound_method: how actions are bounded to ``[-1, 1]`` before scaling.
    """

    def __init__(
        self,
        *,
        action_space: gym.Space[Any],
        observation_space: gym.Space[Any],
        normalize_obs: bool = False,
        action_scaling: bool = True,
        action_bound_method: Any = "clip",
    ) -> None:
        if not isinstance(action_space, gym.spaces.Box):
            raise TypeError(f"action_space={action_space}: expected a gymnasium Box")
        super().__init__(
            action_space=action_space,
            observation_space=observation_space,
            action_scaling=action_scaling,
            action_bound_method=action_bound_method,
        )
        self.obs_dim = _flat_dim(observation_space)
        self.act_dim = int(np.prod(action_space.shape))
        self.obs_normalizer = ObsNormalizer(self.obs_dim, enabled=normalize_obs)
        self.exploration_noise: BaseNoise | None = None
        """Noise a ``Collector(..., exploration_noise=True)`` adds to the policy's actions
        (in the ``[-1, 1]`` range; the sum is clipped to it) — e.g. Tianshou's
        ``GaussianNoise(sigma=0.1)`` for a deterministic actor fine-tuned online. None: no
        noise (a Gaussian policy explores by sampling within training steps)."""

    def add_exploration_noise(
        self, act: _TArrOrActBatch, batch: ObsBatchProtocol
    ) -> _TArrOrActBatch:
        """``clip(act + ε, −1, 1)`` with ``ε`` from :attr:`exploration_noise` (unchanged when
        it is None)."""
        if self.exploration_noise is None:
            return act
        if isinstance(act, np.ndarray):
            noisy = act + self.exploration_noise(act.shape)
            return cast(_TArrOrActBatch, np.clip(noisy, -1.0, 1.0).astype(act.dtype))
        raise TypeError(
            f"{type(self).__name__}.add_exploration_noise: got a {type(act).__name__}; "
            "expected the numpy actions Tianshou's Collector passes"
        )

    @property
    def device(self) -> torch.device:
        return self.obs_normalizer.mean.device

    def obs_to_tensor(self, obs: Any) -> torch.Tensor:
        """Raw observations (numpy or tensor, ``(B, *obs_shape)``) → normalised ``(B, D)`` float32."""
        x = torch.as_tensor(np.asarray(obs) if not isinstance(obs, torch.Tensor) else obs)
        x = x.to(device=self.device, dtype=torch.float32)
        return cast(torch.Tensor, self.obs_normalizer(x.reshape(x.shape[0], -1)))

    @abstractmethod
    def select_action(self, obs: torch.Tensor) -> torch.Tensor:
        """``obs (B, D)`` (normalised) → actions ``(B, A)`` in the policy's ``[-1, 1]`` range."""

    def forward(
        self,
        batch: ObsBatchProtocol,
        state: dict[str, Any] | BatchProtocol | np.ndarray | None = None,
        **kwargs: Any,
    ) -> ActStateBatchProtocol:
        with torch.no_grad():
            act = self.select_action(self.obs_to_tensor(batch.obs))
        return cast(ActStateBatchProtocol, Batch(act=act, state=state))


class DeterministicPolicy(ContinuousPolicy):
    """Acts with a deterministic actor ``obs (B, D) -> act (B, A) ∈ [-1, 1]``.

    Used by :class:`~tianshou_offline.algorithms.TD3BC` and by deterministic behaviour
    cloning. See :class:`ContinuousPolicy` for the other parameters.

    :param actor: e.g. :class:`~tianshou_offline.algorithms.continuous.nets.DeterministicActor`.
    """

    def __init__(
        self,
        *,
        actor: nn.Module,
        action_space: gym.Space[Any],
        observation_space: gym.Space[Any],
        normalize_obs: bool = False,
        action_scaling: bool = True,
    ) -> None:
        super().__init__(
            action_space=action_space,
            observation_space=observation_space,
            normalize_obs=normalize_obs,
            action_scaling=action_scaling,
            action_bound_method="clip",
        )
        self.actor = actor

    def select_action(self, obs: torch.Tensor) -> torch.Tensor:
        """``π(s)``: the actor's action for ``obs (B, D)`` (normalised), ``(B, A)``."""
        return cast(torch.Tensor, self.actor(obs))


def gaussian_sample(
    mean: torch.Tensor,
    log_std: torch.Tensor,
    *,
    squash: bool,
    num_samples: int | None = None,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reparameterised samples of a (tanh-squashed) diagonal Gaussian and their log-density.

    :param mean: ``(B, A)`` (or ``(K, B, A)`` with ``noise``: any leading dimensions).
    :param log_std: ``(B, A)``, as ``mean``.
    :param squash: apply ``tanh`` and the change-of-variables correction
        (Haarnoja et al. 2018, Eq. 21).
    :param num_samples: N samples per state; ``None`` for one.
    :param noise: the standard-normal draws to use, of the samples' shape (default: drawn
        here with ``torch.randn``; the seed-batched algorithms pass each seed's own draws).
    :returns: ``act (B, A)`` or ``(B, N, A)`` and ``log_prob (B,)`` or ``(B, N)``.
    """
    if num_samples is not None:
        mean, log_std = mean.unsqueeze(-2), log_std.unsqueeze(-2)
        if noise is None:
            noise = torch.randn(
                (mean.shape[0], num_samples, mean.shape[-1]), device=mean.device, dtype=mean.dtype
            )
    elif noise is None:
        noise = torch.randn_like(mean)
    u = mean + log_std.exp() * noise
    log_prob = (-0.5 * noise.pow(2) - log_std - _LOG_SQRT_2PI).sum(-1)
    if not squash:
        return u, log_prob
    # log(1 - tanh(u)^2) = 2 * (log 2 - u - softplus(-2u)), numerically stable
    log_prob = log_prob - (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)
    return torch.tanh(u), log_prob


def gaussian_actions(
    mean: torch.Tensor,
    log_std: torch.Tensor,
    *,
    squash: bool,
    num_samples: int | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Samples as :func:`gaussian_sample` without their log-density (cheaper); unsquashed
    samples are clipped to ``[-1, 1]`` (the actions the policy would execute). ``noise``: the
    standard-normal draws to use (as :func:`gaussian_sample`)."""
    if num_samples is not None:
        mean, log_std = mean.unsqueeze(-2), log_std.unsqueeze(-2)
        if noise is None:
            shape = (mean.shape[0], num_samples, mean.shape[-1])
            noise = torch.randn(shape, device=mean.device)
        u = torch.addcmul(mean, log_std.exp(), noise)
    else:
        u = torch.addcmul(mean, log_std.exp(), torch.randn_like(mean) if noise is None else noise)
    return torch.tanh(u) if squash else u.clamp(-1.0, 1.0)


def gaussian_log_prob(
    mean: torch.Tensor, log_std: torch.Tensor, act: torch.Tensor, *, squash: bool
) -> torch.Tensor:
    """Log-density of given actions ``act (B, A)`` (or ``(B, N, A)`` with ``mean (B, 1, A)``).

    For a squashed Gaussian the actions are un-squashed with ``atanh`` after clipping to
    ``±(1 - 1e-6)``. :returns: ``(B,)`` (or ``(B, N)``).
    """
    if squash:
        act = act.clamp(-_ATANH_CLIP, _ATANH_CLIP)
        u = torch.atanh(act)
    else:
        u = act
    z = (u - mean) * torch.exp(-log_std)
    log_prob = (-0.5 * z.pow(2) - log_std - _LOG_SQRT_2PI).sum(-1)
    if squash:
        log_prob = log_prob - (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)
    return log_prob


class GaussianPolicy(ContinuousPolicy):
    """Acts with a Gaussian actor ``obs (B, D) -> (mean, log_std)``, each ``(B, A)``.

    Used by :class:`~tianshou_offline.algorithms.CQL`, :class:`~tianshou_offline.algorithms.CRR`
    and Gaussian behaviour cloning. See :class:`ContinuousPolicy` for the other parameters.

    :param actor: e.g. :class:`~tianshou_offline.algorithms.continuous.nets.GaussianActor`.
    :param squash: ``tanh``-squash samples into ``[-1, 1]`` (SAC/CQL); otherwise samples are
        unbounded and clipped when acting (CRR, behaviour cloning).
    :param deterministic_eval: act with the mode (``tanh(mean)`` / ``mean``) outside of
        training steps instead of sampling.
    """

    def __init__(
        self,
        *,
        actor: nn.Module,
        action_space: gym.Space[Any],
        observation_space: gym.Space[Any],
        squash: bool = True,
        deterministic_eval: bool = True,
        normalize_obs: bool = False,
        action_scaling: bool = True,
    ) -> None:
        super().__init__(
            action_space=action_space,
            observation_space=observation_space,
            normalize_obs=normalize_obs,
            action_scaling=action_scaling,
            action_bound_method=None if squash else "clip",
        )
        self.actor = actor
        self.squash = squash
        self.deterministic_eval = deterministic_eval

    def mode(self, mean: torch.Tensor) -> torch.Tensor:
        """The most likely action for ``mean (B, A)``."""
        return torch.tanh(mean) if self.squash else mean

    def select_action(self, obs: torch.Tensor) -> torch.Tensor:
        """The mode (``deterministic_eval`` outside training steps) or a sample of
        ``π(·|s)`` for ``obs (B, D)`` (normalised), ``(B, A)``."""
        mean, log_std = self.actor(obs)
        if self.deterministic_eval and not self.is_within_training_step:
            return self.mode(mean)
        act, _ = gaussian_sample(mean, log_std, squash=self.squash)
        return act


class CriticWeightedPolicy(GaussianPolicy):
    """CRR's critic-weighted action selection ("critic weighted policy", CWP): draw
    ``num_sampled_actions`` actions ``a_j ~ π(·|s)`` and act with one of them, drawn with
    probability ``softmax_j(Q(s, a_j) / temperature)`` (``Q`` the minimum over the critic
    ensemble, as in :class:`~tianshou_offline.algorithms.CRR`'s advantage).

    This is how d3rlpy 2.8's CRR acts at evaluation (``predict``: ``n_action_samples``
    samples, softmax of their Q-values, temperature 1; its documentation, citing Wang et al.
    2020: "In evaluation, the action is determined by Critic Weighted Policy"): the
    regression-trained π proposes, the critic re-weights. A plain :class:`GaussianPolicy`
    acts with the Gaussian's mode instead (``deterministic_eval``).
    Every call samples, inside and outside training steps. Pass the same ``critics`` to
    :class:`~tianshou_offline.algorithms.CRR`.

    :param critics: the critic ensemble ``(obs (B, D), act (B, N, A)) -> (E, B, N)``.
    :param num_sampled_actions: m, the proposals per state (d3rlpy: its ``n_action_samples``,
        4 by default); the old name ``num_action_samples`` is accepted with a
        ``DeprecationWarning`` until the next release.
    :param temperature: T of the softmax (> 0; large values approach sampling from π, small
        ones the proposal with the highest Q).
    See :class:`GaussianPolicy` for the other parameters (``squash=False`` as for CRR).
    """

    @renamed_kwargs({"num_action_samples": "num_sampled_actions"})
    def __init__(
        self,
        *,
        actor: nn.Module,
        critics: nn.Module,
        action_space: gym.Space[Any],
        observation_space: gym.Space[Any],
        num_sampled_actions: int = 4,
        temperature: float = 1.0,
        squash: bool = False,
        normalize_obs: bool = False,
        action_scaling: bool = True,
    ) -> None:
        if num_sampled_actions < 1:
            raise ValueError(f"num_sampled_actions={num_sampled_actions}: expected >= 1")
        if not temperature > 0:
            raise ValueError(f"temperature={temperature}: expected > 0")
        super().__init__(
            actor=actor,
            action_space=action_space,
            observation_space=observation_space,
            squash=squash,
            deterministic_eval=False,
            normalize_obs=normalize_obs,
            action_scaling=action_scaling,
        )
        self.critics = critics
        self.num_sampled_actions = int(num_sampled_actions)
        self.temperature = float(temperature)

    num_action_samples = renamed_attribute("num_sampled_actions")
    """Deprecated: :attr:`num_sampled_actions` (the name of the previous release)."""

    def select_action(self, obs: torch.Tensor) -> torch.Tensor:
        """``obs (B, D)`` (normalised) → one of m policy samples per state, drawn with
        probability ``softmax(Q / T)``, ``(B, A)``."""
        mean, log_std = self.actor(obs)
        proposals = gaussian_actions(
            mean, log_std, squash=self.squash, num_samples=self.num_sampled_actions
        )  # (B, m, A)
        q = cast(torch.Tensor, self.critics(obs, proposals)).min(dim=0).values  # (B, m)
        choice = torch.multinomial(torch.softmax(q / self.temperature, dim=1), 1).squeeze(1)
        return proposals[torch.arange(obs.shape[0], device=obs.device), choice]


class BCQPolicy(ContinuousPolicy):
    """BCQ's action selection (Fujimoto et al. 2019, Eq. 11): decode
    ``num_sampled_actions`` actions per state with the VAE, perturb them, and take the one
    with the highest ``Q_1``. All states of a batch are evaluated in one call.

    :param vae: the generative model ``G_ω``.
    :param perturbation: ``ξ_φ``.
    :param critics: the critic ensemble (member 0 ranks the candidates).
    :param num_sampled_actions: candidates per state (100 in the authors' code); the old name
        ``num_candidate_actions`` is accepted with a ``DeprecationWarning`` until the next
        release.
    """

    @renamed_kwargs({"num_candidate_actions": "num_sampled_actions"})
    def __init__(
        self,
        *,
        vae: VAE,
        perturbation: Perturbation,
        critics: CriticEnsemble,
        action_space: gym.Space[Any],
        observation_space: gym.Space[Any],
        num_sampled_actions: int = 100,
        normalize_obs: bool = False,
        action_scaling: bool = True,
    ) -> None:
        super().__init__(
            action_space=action_space,
            observation_space=observation_space,
            normalize_obs=normalize_obs,
            action_scaling=action_scaling,
            action_bound_method="clip",
        )
        self.vae = vae
        self.perturbation = perturbation
        self.critics = critics
        self.num_sampled_actions = num_sampled_actions

    num_candidate_actions = renamed_attribute("num_sampled_actions")
    """Deprecated: :attr:`num_sampled_actions` (the name of the previous release)."""

    def select_action(self, obs: torch.Tensor) -> torch.Tensor:
        """``obs (B, D)`` (normalised) → the best of the candidate actions, ``(B, A)``."""
        candidates: torch.Tensor = self.perturbation(
            obs, self.vae.decode(obs, num_samples=self.num_sampled_actions)
        )  # (B, N, A)
        q: torch.Tensor = self.critics(obs, candidates, member=0)  # (B, N)
        best = q.argmax(dim=1)
        return candidates[torch.arange(obs.shape[0], device=obs.device), best]
