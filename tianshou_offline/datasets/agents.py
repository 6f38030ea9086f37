"""The online agents that produce a family's policies: Tianshou's SAC for ``Box`` actions and
Tianshou's DQN for ``Discrete`` ones, with MLP networks.

An agent acts in a single environment one step at a time (the online loop in
:mod:`~tianshou_offline.datasets.online` owns the environment and the replay buffer), trains
with the algorithm's own ``update(buffer, batch_size)`` as Tianshou's ``OffPolicyTrainer``
does, and saves its policy as a weights-only policy checkpoint
(:func:`~tianshou_offline.recording.policies.save_policy_checkpoint`) that
``tianshou-offline record --policy`` replays:

- SAC's actor is this package's :class:`~tianshou_offline.algorithms.GaussianActor` (behind
  Tianshou's actor interface), saved as a tanh-squashed
  :class:`~tianshou_offline.algorithms.GaussianPolicy` (its mode, ``tanh(mean)`` scaled to the
  action bounds, is SAC's deterministic action);
- DQN's Q-network is Tianshou's MLP ``Net``, saved as an ``mlp`` checkpoint (argmax).

Actions are kept twice: in the policy's range for the replay buffer the algorithm learns from
(SAC: ``[-1, 1]``; DQN: ``0 … n-1``), and in the environment's units for the data files.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm.modelfree.dqn import DQN, DiscreteQLearningPolicy
from tianshou.algorithm.modelfree.sac import SAC, AutoAlpha, SACPolicy
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import ReplayBuffer
from tianshou.utils.net.common import Net
from tianshou.utils.net.continuous import ContinuousCritic
from tianshou.utils.torch_utils import policy_within_training_step, torch_train_mode
from torch import nn

from tianshou_offline.algorithms import GaussianActor, GaussianPolicy
from tianshou_offline.errors import DatasetFormatError, DataValidationError
from tianshou_offline.recording.policies import load_policy_checkpoint, save_policy_checkpoint

ActFn = Callable[[Any], Any]
"""One observation → one action in the environment's units."""


@dataclass(frozen=True, kw_only=True)
class SACParams:
    """Soft Actor-Critic (Haarnoja et al. 2018, with the automatic temperature of
    arXiv:1812.05905) for ``Box`` actions; the defaults are the usual MuJoCo ones
    (CleanRL/Stable-Baselines3: 256×256 MLPs, Adam 3e-4, batch 256, one update per step)."""

    hidden_sizes: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the actor and of each of the two critics."""
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    """Learning rate of the entropy temperature (tuned to the target entropy ``-dim(A)``)."""
    init_alpha: float = 1.0
    gamma: float = 0.99
    tau: float = 0.005
    batch_size: int = 256
    start_steps: int = 10_000
    """Uniformly random actions for the first steps (at most a tenth of the budget)."""
    updates_per_step: float = 1.0
    """Gradient steps per environment step once learning starts."""


@dataclass(frozen=True, kw_only=True)
class DQNParams:
    """Double DQN (van Hasselt et al. 2016) with n-step targets for ``Discrete`` actions;
    ε decays linearly from ``eps_start`` to ``eps_end`` over ``eps_decay_fraction`` of the
    budget after the random start."""

    hidden_sizes: tuple[int, ...] = (128, 128)
    lr: float = 1e-3
    gamma: float = 0.99
    n_step: int = 3
    target_update_freq: int = 500
    """Gradient steps between two copies of the Q-network into its target."""
    batch_size: int = 64
    start_steps: int = 1_000
    updates_per_step: float = 0.5
    eps_start: float = 1.0
    eps_end: float = 0.05
    eps_decay_fraction: float = 0.2


def default_algorithm(action_space: gym.Space[Any]) -> str:
    """``"sac"`` for a ``Box`` action space, ``"dqn"`` for a ``Discrete`` one."""
    return "sac" if isinstance(action_space, gym.spaces.Box) else "dqn"


class OnlineAgent(ABC):
    """An online learner acting in one environment (see the module docstring)."""

    name: str
    algorithm: Any
    """The Tianshou algorithm (``SAC``/``DQN``); its ``state_dict`` holds its optimizers."""
    batch_size: int
    start_steps: int
    updates_per_step: float

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.Space[Any],
        params: SACParams | DQNParams,
    ) -> None:
        self.observation_space = observation_space
        self.action_space = action_space
        self.obs_shape = tuple(int(x) for x in observation_space.shape)
        self.batch_size = params.batch_size
        self.start_steps = params.start_steps
        self.updates_per_step = params.updates_per_step

    @abstractmethod
    def random_action(self, rng: np.random.Generator) -> tuple[np.ndarray, Any]:
        """A uniformly random ``(buffer action, env action)``."""

    @abstractmethod
    def explore(self, obs: Any, step: int, rng: np.random.Generator) -> tuple[np.ndarray, Any]:
        """The exploring action at online step ``step``: ``(buffer action, env action)``
        (SAC: a sample of the policy, torch's RNG; DQN: ε-greedy with ``rng``)."""

    @abstractmethod
    def greedy(self, obs: Any) -> Any:
        """The deterministic env action (SAC: the mode; DQN: argmax Q)."""

    @abstractmethod
    def save_policy(self, path: Path) -> Path:
        """Write the current policy as a replayable policy checkpoint."""

    @abstractmethod
    def behaviour(self, checkpoint: Path, *, seed: int, eps: float) -> ActFn:
        """The data-collection policy of a saved checkpoint: SAC samples its Gaussian (from a
        private generator seeded by ``seed``); DQN acts ε-greedily with ``eps``."""

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """The hyperparameters, JSON-able (for provenance)."""

    def evaluator(self, checkpoint: Path) -> ActFn:
        """The deterministic policy of a saved checkpoint, loaded as ``record --policy``
        loads it."""
        return load_policy_checkpoint(
            checkpoint, observation_space=self.observation_space, action_space=self.action_space
        )

    def update(self, buffer: ReplayBuffer) -> None:
        """One gradient step on a mini-batch of ``buffer``."""
        with policy_within_training_step(self.algorithm.policy), torch_train_mode(self.algorithm):
            self.algorithm.update(buffer=buffer, sample_size=self.batch_size)

    def extra_state(self) -> dict[str, Any]:
        """What resuming needs beyond ``algorithm.state_dict()`` (counters, optimizers the
        algorithm does not list)."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:  # noqa: B027 (optional)
        """Restore :meth:`extra_state`."""


class _TianshouActor(nn.Module):
    """A :class:`~tianshou_offline.algorithms.GaussianActor` behind Tianshou's actor interface
    ``(obs, state, info) -> ((mean, std), state)`` (what ``SACPolicy`` calls)."""

    def __init__(self, actor: GaussianActor) -> None:
        super().__init__()
        self.actor = actor

    def forward(self, obs: Any, state: Any = None, info: Any = None) -> Any:
        x = torch.as_tensor(np.asarray(obs) if not isinstance(obs, torch.Tensor) else obs)
        x = x.to(torch.float32).reshape(x.shape[0], -1)
        mean, log_std = self.actor(x)
        return (mean, log_std.exp()), state


class SACAgent(OnlineAgent):
    """Tianshou's ``SAC`` with this package's Gaussian actor (see the module docstring)."""

    name = "sac"

    def __init__(
        self, observation_space: gym.spaces.Box, action_space: gym.spaces.Box, params: SACParams
    ) -> None:
        super().__init__(observation_space, action_space, params)
        self.hp = params
        obs_dim = int(np.prod(self.obs_shape))
        act_dim = int(np.prod(action_space.shape))
        hidden = list(params.hidden_sizes)
        self.actor = GaussianActor(obs_dim, act_dim, hidden)
        self.sac_policy = SACPolicy(
            actor=_TianshouActor(self.actor),
            action_space=action_space,
            observation_space=observation_space,
            deterministic_eval=True,
            action_scaling=True,
        )

        def critic() -> ContinuousCritic:
            return ContinuousCritic(
                preprocess_net=Net(
                    state_shape=(obs_dim,),
                    action_shape=(act_dim,),
                    hidden_sizes=hidden,
                    concat=True,
                )
            )

        self.alpha = AutoAlpha(
            target_entropy=-float(act_dim),
            log_alpha=math.log(params.init_alpha),
            optim=AdamOptimizerFactory(lr=params.alpha_lr),
        )
        self.algorithm = SAC(
            policy=self.sac_policy,
            policy_optim=AdamOptimizerFactory(lr=params.actor_lr),
            critic=critic(),
            critic_optim=AdamOptimizerFactory(lr=params.critic_lr),
            critic2=critic(),
            critic2_optim=AdamOptimizerFactory(lr=params.critic_lr),
            tau=params.tau,
            gamma=params.gamma,
            alpha=self.alpha,
        )
        self.policy = self._gaussian_policy(self.actor)

    def _gaussian_policy(self, actor: GaussianActor) -> GaussianPolicy:
        return GaussianPolicy(
            actor=actor,
            action_space=self.action_space,
            observation_space=self.observation_space,
            squash=True,
            deterministic_eval=True,
        )

    def _obs(self, obs: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(obs, dtype=np.float32).reshape(1, -1))

    def random_action(self, rng: np.random.Generator) -> tuple[np.ndarray, Any]:
        act = rng.uniform(-1.0, 1.0, size=self.action_space.shape).astype(np.float32)
        return act, self.policy.map_action(act)

    @torch.no_grad()
    def explore(self, obs: Any, step: int, rng: np.random.Generator) -> tuple[np.ndarray, Any]:
        mean, log_std = self.actor(self._obs(obs))
        act = torch.tanh(mean + log_std.exp() * torch.randn_like(mean))[0].numpy()
        return act, self.policy.map_action(act)

    @torch.no_grad()
    def greedy(self, obs: Any) -> Any:
        mean, _ = self.actor(self._obs(obs))
        return self.policy.map_action(torch.tanh(mean)[0].numpy())

    def save_policy(self, path: Path) -> Path:
        return save_policy_checkpoint(path, self.policy)

    def behaviour(self, checkpoint: Path, *, seed: int, eps: float) -> ActFn:
        payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
        obs_dim = int(np.prod(self.obs_shape))
        act_dim = int(np.prod(self.action_space.shape or ()))
        policy = self._gaussian_policy(GaussianActor(obs_dim, act_dim, list(self.hp.hidden_sizes)))
        try:
            policy.load_state_dict(payload["state_dict"])
        except (KeyError, RuntimeError, TypeError) as e:
            raise DatasetFormatError(
                f"{checkpoint}: field 'state_dict' does not fit this run's SAC actor ({e})"
            ) from e
        policy.eval()
        generator = torch.Generator().manual_seed(seed)
        actor = policy.actor

        @torch.no_grad()
        def act(obs: Any) -> Any:
            mean, log_std = actor(self._obs(obs))
            noise = torch.randn(mean.shape, generator=generator)
            return policy.map_action(torch.tanh(mean + log_std.exp() * noise)[0].numpy())

        return act

    def params(self) -> dict[str, Any]:
        return {"algorithm": "sac", **asdict(self.hp)}

    def extra_state(self) -> dict[str, Any]:
        optim: torch.optim.Optimizer = self.alpha._optim  # not among the algorithm's optimizers
        return {"alpha_optim": optim.state_dict()}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.alpha._optim.load_state_dict(state["alpha_optim"])


class DQNAgent(OnlineAgent):
    """Tianshou's (double) ``DQN`` with an MLP ``Net`` (see the module docstring)."""

    name = "dqn"

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Discrete,
        params: DQNParams,
        budget: int,
    ) -> None:
        super().__init__(observation_space, action_space, params)
        self.hp = params
        self.num_actions = int(action_space.n)
        self.start = int(action_space.start)
        self.decay_steps = max(1, int(params.eps_decay_fraction * budget))
        self.model = Net(
            state_shape=self.obs_shape,
            action_shape=self.num_actions,
            hidden_sizes=list(params.hidden_sizes),
        )
        self.dqn_policy = DiscreteQLearningPolicy(
            model=self.model, action_space=action_space, observation_space=observation_space
        )
        self.algorithm = DQN(
            policy=self.dqn_policy,
            optim=AdamOptimizerFactory(lr=params.lr),
            gamma=params.gamma,
            n_step_return_horizon=params.n_step,
            target_update_freq=params.target_update_freq,
            is_double=True,
        )

    def eps(self, step: int) -> float:
        """ε at online step ``step``."""
        frac = min(1.0, max(0, step - self.start_steps) / self.decay_steps)
        return self.hp.eps_start + frac * (self.hp.eps_end - self.hp.eps_start)

    def random_action(self, rng: np.random.Generator) -> tuple[np.ndarray, Any]:
        a = int(rng.integers(self.num_actions))
        return np.asarray(a, dtype=np.int64), a + self.start

    @torch.no_grad()
    def _argmax(self, obs: Any) -> int:
        q, _ = self.model(torch.as_tensor(np.asarray(obs, dtype=np.float32)[None]))
        return int(q.argmax(dim=-1).item())

    def explore(self, obs: Any, step: int, rng: np.random.Generator) -> tuple[np.ndarray, Any]:
        if rng.random() < self.eps(step):
            return self.random_action(rng)
        a = self._argmax(obs)
        return np.asarray(a, dtype=np.int64), a + self.start

    def greedy(self, obs: Any) -> Any:
        return self._argmax(obs) + self.start

    def save_policy(self, path: Path) -> Path:
        return save_policy_checkpoint(
            path,
            self.model,
            state_shape=self.obs_shape,
            action_space=self.action_space,
            hidden_sizes=self.hp.hidden_sizes,
            observation_space=self.observation_space,
        )

    def behaviour(self, checkpoint: Path, *, seed: int, eps: float) -> ActFn:
        base = self.evaluator(checkpoint)
        rng = np.random.default_rng(seed)
        start, n = self.start, self.num_actions

        def act(obs: Any) -> Any:
            if eps > 0 and rng.random() < eps:
                return int(rng.integers(n)) + start
            return base(obs)

        return act

    def params(self) -> dict[str, Any]:
        return {"algorithm": "dqn", **asdict(self.hp)}

    def extra_state(self) -> dict[str, Any]:
        return {"iter": int(self.algorithm._iter)}  # DQN's target-copy counter

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.algorithm._iter = int(state["iter"])


def make_agent(
    algorithm: str,
    observation_space: gym.Space[Any],
    action_space: gym.Space[Any],
    *,
    budget: int,
    sac: SACParams,
    dqn: DQNParams,
) -> OnlineAgent:
    """The agent ``algorithm`` (``sac``/``dqn``) for these spaces; the random start is
    capped at a tenth of ``budget``.

    :raises DataValidationError: an unknown algorithm, or one that does not fit the action space.
    """
    assert isinstance(observation_space, gym.spaces.Box)
    if algorithm == "sac":
        if not isinstance(action_space, gym.spaces.Box):
            raise DataValidationError(
                f"algorithm 'sac' needs Box actions; the env's action space is {action_space} "
                "(use 'dqn')"
            )
        capped = SACParams(**{**asdict(sac), "start_steps": min(sac.start_steps, budget // 10)})
        return SACAgent(observation_space, action_space, capped)
    if algorithm == "dqn":
        if not isinstance(action_space, gym.spaces.Discrete):
            raise DataValidationError(
                f"algorithm 'dqn' needs Discrete actions; the env's action space is "
                f"{action_space} (use 'sac')"
            )
        capped_dqn = DQNParams(**{**asdict(dqn), "start_steps": min(dqn.start_steps, budget // 10)})
        return DQNAgent(observation_space, action_space, capped_dqn, budget)
    raise DataValidationError(f"algorithm {algorithm!r}: expected 'sac' (Box actions) or 'dqn'")
