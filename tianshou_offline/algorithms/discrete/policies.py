"""Discrete policies (Tianshou ``Policy`` subclasses: acting, not learning): observation
conversion and ε-greedy noise (:class:`DiscretePolicy`), greedy on Q (:class:`QValuePolicy`),
categorical logits (:class:`DiscreteActorPolicy`) and BCQ's constrained argmax
(:class:`DiscreteBCQPolicy`, Fujimoto et al. 2019, arXiv:1910.01708, Sec. 4)."""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm.algorithm_base import Policy, TArrOrActBatch
from tianshou.data import Batch
from tianshou.data.batch import BatchProtocol
from tianshou.data.types import ActStateBatchProtocol, ObsBatchProtocol
from tianshou.utils.torch_utils import policy_within_training_step
from torch import nn

from tianshou_offline.algorithms.discrete.nets import DualHeadNet

__all__ = [
    "DiscreteActorPolicy",
    "DiscreteBCQPolicy",
    "DiscretePolicy",
    "QValuePolicy",
    "allowed_actions",
    "constrained_argmax",
]


class DiscretePolicy(Policy):
    """Base of the discrete policies: observation conversion and ε-greedy noise.

    Subclasses implement :meth:`select_action` on a tensor batch. Tianshou's ``Collector``
    adds the ε-greedy noise (:meth:`add_exploration_noise`) when created with
    ``exploration_noise=True``; ε is ``eps_inference`` outside training steps.

    :param action_space: the environment's ``Discrete`` action space (``start`` 0).
    :param observation_space: the environment's observation space.
    :param eps_inference: probability of a uniformly random action when evaluating.
    :param eps_training: the same within training steps (offline: unused by the trainer).
    """

    def __init__(
        self,
        *,
        action_space: gym.Space[Any],
        observation_space: gym.Space[Any] | None = None,
        eps_inference: float = 0.0,
        eps_training: float = 0.0,
    ) -> None:
        if not isinstance(action_space, gym.spaces.Discrete):
            raise TypeError(f"action_space={action_space}: expected a gymnasium Discrete space")
        if int(action_space.start) != 0:
            raise ValueError(f"action_space={action_space}: expected start=0")
        super().__init__(
            action_space=action_space,
            observation_space=observation_space,
            action_scaling=False,
            action_bound_method=None,
        )
        self.num_actions = int(action_space.n)
        self.eps_inference = float(eps_inference)
        self.eps_training = float(eps_training)

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def set_eps_inference(self, eps: float) -> None:
        """Set ε for evaluation."""
        self.eps_inference = float(eps)

    def set_eps_training(self, eps: float) -> None:
        """Set ε within training steps."""
        self.eps_training = float(eps)

    def obs_to_tensor(self, obs: Any) -> torch.Tensor:
        """Observations (numpy or tensor, ``(B, *obs_shape)``) as a tensor on the policy's
        device; ``uint8`` stays ``uint8``, other dtypes become ``float32``."""
        x = obs if isinstance(obs, torch.Tensor) else torch.as_tensor(np.asarray(obs))
        if x.dtype != torch.uint8:
            x = x.to(torch.float32)
        return x.to(self.device)

    @abstractmethod
    def select_action(self, obs: torch.Tensor) -> torch.Tensor:
        """``obs (B, *obs_shape)`` → greedy (or sampled) actions ``(B,)`` int64."""

    @torch.no_grad()
    def action_probs(self, obs: torch.Tensor) -> torch.Tensor:
        """``π(· | s)``, ``(B, A)`` float32: the distribution of the action this policy takes
        when evaluated (outside training steps) — the deterministic action :meth:`select_action`
        gives, mixed with ``eps_inference``'s uniform noise:
        ``π(a | s) = (1 − ε) 1{a = greedy(s)} + ε / A``. What off-policy evaluation
        evaluates (a categorical policy that samples overrides it)."""
        with policy_within_training_step(self, enabled=False):
            greedy = self.select_action(obs)
        probs = torch.nn.functional.one_hot(greedy, self.num_actions).to(torch.float32)
        return self._mix_eps(probs)

    def _mix_eps(self, probs: torch.Tensor) -> torch.Tensor:
        eps = self.eps_inference
        return probs if eps <= 0.0 else (1.0 - eps) * probs + eps / self.num_actions

    def forward(
        self,
        batch: ObsBatchProtocol,
        state: dict[str, Any] | BatchProtocol | np.ndarray | None = None,
        **kwargs: Any,
    ) -> ActStateBatchProtocol:
        with torch.no_grad():
            act = self.select_action(self.obs_to_tensor(batch.obs))
        return cast(ActStateBatchProtocol, Batch(act=act.cpu().numpy(), state=state))

    def add_exploration_noise(self, act: TArrOrActBatch, batch: ObsBatchProtocol) -> TArrOrActBatch:
        """ε-greedy: replace each action by a uniform one with probability ε."""
        eps = self.eps_training if self.is_within_training_step else self.eps_inference
        if eps <= 0.0:
            return act
        if not isinstance(act, np.ndarray):
            raise NotImplementedError("ε-greedy noise needs numpy actions")
        # numpy's global generator, as Tianshou's policies (seeded by np.random.seed)
        noisy = act.copy()
        mask = np.random.random(len(noisy)) < eps
        noisy[mask] = np.random.randint(self.num_actions, size=int(mask.sum()))
        return cast(TArrOrActBatch, noisy)


class QValuePolicy(DiscretePolicy):
    """Acts greedily on ``Q(s, ·)``: ``argmax_a Q(s, a)``.

    :param model: ``obs → (B, A)`` Q-values, or ``(B, A, N)`` quantiles (``Q`` = their mean).
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        action_space: gym.Space[Any],
        observation_space: gym.Space[Any] | None = None,
        eps_inference: float = 0.0,
    ) -> None:
        super().__init__(
            action_space=action_space,
            observation_space=observation_space,
            eps_inference=eps_inference,
        )
        self.model = model

    def q_values(self, obs: torch.Tensor) -> torch.Tensor:
        """``(B, A)`` action values (the mean over quantiles for a quantile network)."""
        out = cast(torch.Tensor, self.model(obs))
        return out.mean(dim=2) if out.dim() == 3 else out

    def select_action(self, obs: torch.Tensor) -> torch.Tensor:
        return self.q_values(obs).argmax(dim=1)


class DiscreteActorPolicy(DiscretePolicy):
    """Acts with a categorical policy given by logits.

    :param actor: ``obs → (B, A)`` logits, or a module returning a tuple whose element
        ``logits_index`` holds them (e.g. a :class:`~tianshou_offline.algorithms.discrete.nets.DualHeadNet`).
    :param deterministic_eval: take ``argmax`` outside training steps (otherwise sample).
    :param logits_index: which output of a tuple-valued ``actor`` are the logits.
    """

    def __init__(
        self,
        *,
        actor: nn.Module,
        action_space: gym.Space[Any],
        observation_space: gym.Space[Any] | None = None,
        deterministic_eval: bool = True,
        eps_inference: float = 0.0,
        logits_index: int | None = None,
    ) -> None:
        super().__init__(
            action_space=action_space,
            observation_space=observation_space,
            eps_inference=eps_inference,
        )
        self.actor = actor
        self.deterministic_eval = deterministic_eval
        self.logits_index = logits_index

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        """``(B, A)`` policy logits."""
        out = self.actor(obs)
        if self.logits_index is not None:
            out = out[self.logits_index]
        return cast(torch.Tensor, out)

    @torch.no_grad()
    def action_probs(self, obs: torch.Tensor) -> torch.Tensor:
        """``π(· | s)`` as the policy acts when evaluated: the greedy action's one-hot with
        ``deterministic_eval``, else ``softmax(logits)``; mixed with ``eps_inference``."""
        if self.deterministic_eval:
            return super().action_probs(obs)
        return self._mix_eps(torch.softmax(self.logits(obs).to(torch.float32), dim=1))

    def select_action(self, obs: torch.Tensor) -> torch.Tensor:
        logits = self.logits(obs)
        if self.deterministic_eval and not self.is_within_training_step:
            return logits.argmax(dim=1)
        # Gumbel-max sampling from the categorical distribution
        gumbel = -torch.empty_like(logits).exponential_().log()
        return (logits + gumbel).argmax(dim=1)


def allowed_actions(logits: torch.Tensor, log_threshold: float) -> torch.Tensor:
    """``(B, A)`` bool: ``G(a|s) / max_â G(â|s) > τ``, computed on log-probabilities
    (``log_softmax`` differences equal logit differences); any leading dimensions."""
    return logits - logits.max(dim=-1, keepdim=True).values > log_threshold


def constrained_argmax(q: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """``argmax`` of ``q (B, A)`` over the ``allowed (B, A)`` actions (the most likely action is
    always allowed); any leading dimensions."""
    return q.masked_fill(~allowed, -math.inf).argmax(dim=-1)


class DiscreteBCQPolicy(DiscretePolicy):
    """Acts with ``argmax_{a : G(a|s)/max G > τ} Q(s, a)`` (Fujimoto et al. 2019, Sec. 4).

    :param model: a :class:`~tianshou_offline.algorithms.discrete.nets.DualHeadNet` whose
        first head gives Q-values and second head the imitation logits.
    :param unlikely_action_threshold: τ ∈ [0, 1).
    :param eps_inference: ε-greedy noise when evaluating.
    """

    def __init__(
        self,
        *,
        model: DualHeadNet,
        action_space: gym.Space[Any],
        observation_space: gym.Space[Any] | None = None,
        unlikely_action_threshold: float = 0.3,
        eps_inference: float = 0.0,
    ) -> None:
        super().__init__(
            action_space=action_space,
            observation_space=observation_space,
            eps_inference=eps_inference,
        )
        if not 0.0 <= unlikely_action_threshold < 1.0:
            raise ValueError(
                f"unlikely_action_threshold={unlikely_action_threshold}: expected a value in [0, 1)"
            )
        self.model = model
        self.unlikely_action_threshold = float(unlikely_action_threshold)
        self.log_threshold = (
            math.log(unlikely_action_threshold) if unlikely_action_threshold > 0 else -math.inf
        )

    def select_action(self, obs: torch.Tensor) -> torch.Tensor:
        q, logits = self.model(obs)
        return constrained_argmax(q, allowed_actions(logits, self.log_threshold))
