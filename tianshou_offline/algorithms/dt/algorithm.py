"""Decision Transformer: offline RL as return-conditioned sequence modelling, for continuous
and discrete actions (Atari frames included).

Reference: Chen, Lu, Rajeswaran, Lee, Grover, Laskin, Abbeel, Srinivas & Mordatch (2021),
"Decision Transformer: Reinforcement Learning via Sequence Modeling", NeurIPS,
arXiv:2106.01345 — Sec. 3, Algorithm 1 (training and the evaluation loop).

**Training** (:class:`DecisionTransformer`, a Tianshou ``OfflineAlgorithm`` trained by
``OfflineTrainer``): mini-batches of trajectory segments of K steps
(:class:`~tianshou_offline.algorithms.dt.segments.SegmentDataset`: returns-to-go, timesteps,
left padding, masks) from any buffer — in RAM, or disk-backed (a buffer with
``disk_columns()``: the frames are gathered from its files). The network
(:class:`~tianshou_offline.algorithms.dt.model.DecisionTransformerNet`) predicts each step's
action from the tokens before it; the loss of Algorithm 1, over the real (unpadded) steps
``M`` of the batch::

    continuous:  L = 1/(|M| A) Σ_{(i,t)∈M} ‖â_{i,t} − a_{i,t}‖²
    discrete:    L = −1/|M|    Σ_{(i,t)∈M} log softmax(ℓ_{i,t})[a_{i,t}]

The authors train with AdamW (lr 1e-4, weight decay 1e-4), a linear learning-rate warm-up
over 10,000 steps (:class:`LinearWarmupLRSchedulerFactory`) and gradient-norm clipping at
0.25 (the default ``max_grad_norm``).

**Acting** (:class:`ContinuousDTPolicy`, :class:`DiscreteDTPolicy`: Tianshou policies, used by
``Collector`` unchanged): the policy conditions on a target return. It keeps, per
environment, the last K steps of the episode in Tianshou's hidden ``state`` (which the
``Collector`` zeroes when an episode ends, so a new episode starts a new context). At the
first step of an episode the return-to-go is the target; after each step it is lowered by
the reward received, ``R̂_{t+1} = R̂_t − r_t`` (Algorithm 1's evaluation loop). The reward
reaches the policy through the observation's ``info``: wrap the environments in
:class:`RewardInInfo`.

**Differences from the authors' code and CORL**, deliberate: the loss averages over the real
steps only (the authors' MuJoCo code; CORL averages the masked squared error over all padded
slots, which down-weights short segments); weight decay applies to every parameter (the
authors' MuJoCo setting; their Atari code exempts biases, LayerNorm and embeddings); a
segment may start at any stored step (the authors' sampler), and timesteps beyond the
network's ``max_timestep`` are clamped; :class:`ContinuousDTConfig` initialises the network
with PyTorch's defaults, not with GPT-2's rule as the authors' gym code (its docstring says
why; :class:`DiscreteDTConfig` initialises as their Atari code).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, cast

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from tianshou.algorithm.optim import (
    LRSchedulerFactory,
    OptimizerFactory,
    TorchOptimizerFactory,
)
from tianshou.data import Batch, ReplayBuffer
from tianshou.data.batch import BatchProtocol
from tianshou.data.types import ActStateBatchProtocol, ObsBatchProtocol, RolloutBatchProtocol
from torch.optim.lr_scheduler import LambdaLR, LRScheduler
from typing_extensions import TypeVar

from tianshou_offline.algorithms.config import (
    ActionKind,
    AlgorithmConfig,
    box_dims,
    discrete_actions,
    param_default,
)
from tianshou_offline.algorithms.continuous.dataset import TransitionDataset
from tianshou_offline.algorithms.continuous.policies import ContinuousPolicy
from tianshou_offline.algorithms.core import OfflineAlgorithmCore, OfflineDataset
from tianshou_offline.algorithms.deferred import OfflineTrainingStats
from tianshou_offline.algorithms.discrete.dataset import FrameDataset
from tianshou_offline.algorithms.discrete.policies import DiscretePolicy
from tianshou_offline.algorithms.discrete.streaming import StreamingFrameDataset, disk_columns
from tianshou_offline.algorithms.dt.model import DecisionTransformerNet, state_encoder
from tianshou_offline.algorithms.dt.segments import SegmentDataset, Segments
from tianshou_offline.errors import DataValidationError

__all__ = [
    "ContinuousDTConfig",
    "ContinuousDTPolicy",
    "DTStep",
    "DTTrainingStats",
    "DecisionTransformer",
    "DiscreteDTConfig",
    "DiscreteDTPolicy",
    "DiscreteDecisionTransformer",
    "LinearWarmupLRSchedulerFactory",
    "RewardInInfo",
    "segment_loss",
]


class RewardInInfo(gym.Wrapper[Any, Any, Any, Any]):
    """Puts the reward of the step that produced each observation into its ``info``
    (``info["reward"]``; 0 at reset), so that a return-conditioned policy can lower its
    return-to-go by the rewards received."""

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        return obs, {**info, "reward": 0.0}

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, "reward": float(reward)}


class LinearWarmupLRSchedulerFactory(LRSchedulerFactory):
    """A Tianshou ``LRSchedulerFactory``: the learning rate rises linearly from ``lr /
    warmup_steps`` to ``lr`` over the first ``warmup_steps`` gradient steps, then stays (the
    Decision Transformer's schedule, 10,000 steps)."""

    def __init__(self, warmup_steps: int) -> None:
        if warmup_steps < 1:
            raise ValueError(f"warmup_steps={warmup_steps}: expected >= 1")
        self.warmup_steps = int(warmup_steps)

    def create_scheduler(self, optim: torch.optim.Optimizer) -> LRScheduler:
        steps = self.warmup_steps
        return LambdaLR(optim, lambda t: min((t + 1) / steps, 1.0))


# --------------------------------------------------------------------------- configs


@dataclass(frozen=True, kw_only=True)
class _DTConfig(AlgorithmConfig):
    """The settings both Decision Transformer configs have."""

    name: ClassVar[str] = "dt"

    lr: float = 1e-4
    """AdamW learning rate"""
    weight_decay: float = 1e-4
    """AdamW weight decay"""
    warmup_steps: int = 10_000
    """linear learning-rate warm-up, in gradient steps"""
    max_grad_norm: float | None = 0.25
    """clip the gradient norm (None: no clipping)"""
    context: int = param_default(DecisionTransformerNet, "context")
    """K, steps per segment and the policy's context"""
    embed_dim: int = param_default(DecisionTransformerNet, "hidden")
    """width of the token embeddings"""
    n_layers: int = param_default(DecisionTransformerNet, "layers")
    """transformer blocks"""
    n_heads: int = param_default(DecisionTransformerNet, "heads")
    """attention heads"""
    dropout: float = param_default(DecisionTransformerNet, "dropout")
    """dropout of embeddings, attention and feed-forward layers"""
    max_timestep: int = param_default(DecisionTransformerNet, "max_timestep")
    """timesteps are embedded up to this value"""
    init_std: float | None = param_default(DecisionTransformerNet, "init_std")
    """std of GPT-2's N(0, std²) initialisation (the authors' code: 0.02; None: PyTorch's)"""
    target_return: float = 3600.0
    """the return the policy conditions on at each episode's start"""
    rtg_scale: float = 1000.0
    """returns-to-go are divided by this in the network's input"""

    def __post_init__(self) -> None:
        super().__post_init__()
        sizes = ("context", "n_layers", "n_heads", "warmup_steps")
        small = [f"{n}={getattr(self, n)}" for n in sizes if getattr(self, n) < 1]
        if small:
            raise DataValidationError(f"{self.name}: {', '.join(small)}; expected at least 1")
        if self.embed_dim % self.n_heads:
            raise DataValidationError(
                f"{self.name}: embed_dim={self.embed_dim} with n_heads={self.n_heads}; "
                "expected a multiple of n_heads"
            )
        if not self.rtg_scale > 0:
            raise DataValidationError(f"{self.name}: rtg_scale={self.rtg_scale}; expected > 0")
        if self.init_std is not None and not self.init_std > 0:
            raise DataValidationError(
                f"{self.name}: init_std={self.init_std}; expected > 0 or None"
            )

    def _net(self, observation_space: gym.Space[Any], act_dim: int) -> DecisionTransformerNet:
        return DecisionTransformerNet(
            state_encoder=state_encoder(observation_space, self.embed_dim),
            act_dim=act_dim,
            discrete=self.action_kind == "discrete",
            hidden=self.embed_dim,
            layers=self.n_layers,
            heads=self.n_heads,
            context=self.context,
            max_timestep=self.max_timestep,
            dropout=self.dropout,
            init_std=self.init_std,
        )

    def _optim(self) -> OptimizerFactory:
        return TorchOptimizerFactory(
            torch.optim.AdamW, lr=self.lr, weight_decay=self.weight_decay
        ).with_lr_scheduler_factory(LinearWarmupLRSchedulerFactory(self.warmup_steps))


@dataclass(frozen=True, kw_only=True)
class ContinuousDTConfig(_DTConfig):
    """The Decision Transformer's MuJoCo settings (the authors' ``gym/experiment.py``, CORL):
    K = 20, 3 blocks of 128 units, 1 head, AdamW 1e-4 with weight decay 1e-4 and a
    10,000-step warm-up, clip 0.25, returns-to-go / 1000, normalised observations; train
    with 64 segments per step.

    Initialisation: PyTorch's defaults (``init_std`` None, the network's default), a
    deliberate difference from the authors' gym code (GPT-2's N(0, 0.02²) in the blocks,
    ``init_std=0.02``): with GPT-2's the Pendulum learning test's returns were worse at each
    of three seeds and spread wider (``tests/algorithms/test_dt.py`` states both), and with
    PyTorch's the quality table's Hopper medium cell is level with d3rlpy's, which
    initialises as the authors do."""

    action_kind: ClassVar[ActionKind] = "continuous"

    normalize_obs: bool = True
    """normalise observations with the data's mean and std (kept in the policy)"""

    def build(
        self,
        observation_space: gym.Space[Any],
        action_space: gym.Space[Any],
        *,
        device: str | torch.device = "cpu",
    ) -> DecisionTransformer:
        """A :class:`DecisionTransformer` with a :class:`ContinuousDTPolicy`."""
        _, a = box_dims(observation_space, action_space)
        policy = ContinuousDTPolicy(
            model=self._net(observation_space, a),
            action_space=action_space,
            observation_space=observation_space,
            target_return=self.target_return,
            rtg_scale=self.rtg_scale,
            normalize_obs=self.normalize_obs,
        )
        algorithm: DecisionTransformer = DecisionTransformer(
            policy=policy, optim=self._optim(), max_grad_norm=self.max_grad_norm
        )
        return self.place(algorithm, device)


@dataclass(frozen=True, kw_only=True)
class DiscreteDTConfig(_DTConfig):
    """The Decision Transformer's Atari settings (the authors' ``atari/run_dt_atari.py``):
    K = 30, 6 blocks of 128 units, 8 heads, AdamW 6e-4 with weight decay 0.1, clip 1.0,
    returns-to-go unscaled, actions sampled at evaluation, GPT-2's initialisation N(0, 0.02²);
    train with 128 segments per step. Frames ``(C, H, W)`` get the Nature-DQN encoder, flat
    observations a linear one."""

    action_kind: ClassVar[ActionKind] = "discrete"

    lr: float = 6e-4
    """AdamW learning rate"""
    weight_decay: float = 0.1
    """AdamW weight decay"""
    warmup_steps: int = 1000
    """linear learning-rate warm-up, in gradient steps"""
    max_grad_norm: float | None = 1.0
    """clip the gradient norm (None: no clipping)"""
    context: int = 30
    """K, steps per segment and the policy's context"""
    n_layers: int = 6
    """transformer blocks"""
    n_heads: int = 8
    """attention heads"""
    init_std: float | None = 0.02
    """std of GPT-2's N(0, std²) initialisation (None: PyTorch's defaults); 0.02 as the
    authors' Atari code (minGPT's rule) and d3rlpy: with PyTorch's defaults d3rlpy's discrete
    Decision Transformer lost most of its lead over ours on the quality table's CartPole
    medium row (``python -m benchmarks.quality_diagnostics --variants
    dt-default-init-cartpole``)"""
    max_timestep: int = 10_000
    """timesteps are embedded up to this value"""
    target_return: float = 20.0
    """the return the policy conditions on at each episode's start (data's reward units)"""
    rtg_scale: float = 1.0
    """returns-to-go are divided by this in the network's input"""
    sample_actions: bool = True
    """sample actions from the predicted distribution (False: the most likely one)"""

    def build(
        self,
        observation_space: gym.Space[Any],
        action_space: gym.Space[Any],
        *,
        device: str | torch.device = "cpu",
    ) -> DiscreteDecisionTransformer:
        """A :class:`DiscreteDecisionTransformer` with a :class:`DiscreteDTPolicy`."""
        policy = DiscreteDTPolicy(
            model=self._net(observation_space, discrete_actions(action_space)),
            action_space=action_space,
            observation_space=observation_space,
            target_return=self.target_return,
            rtg_scale=self.rtg_scale,
            sample_actions=self.sample_actions,
        )
        algorithm: DiscreteDecisionTransformer = DiscreteDecisionTransformer(
            policy=policy, optim=self._optim(), max_grad_norm=self.max_grad_norm
        )
        return self.place(algorithm, device)


# --------------------------------------------------------------------------- acting


def _fresh_context(
    n: int, k: int, obs: np.ndarray, act_shape: tuple[int, ...], discrete: bool
) -> Batch:
    return Batch(
        obs=np.zeros((n, k, *obs.shape[1:]), dtype=obs.dtype),
        act=np.zeros((n, k, *act_shape), dtype=np.int64 if discrete else np.float32),
        rtg=np.zeros((n, k), dtype=np.float32),
        t=np.zeros((n, k), dtype=np.int64),
        length=np.zeros(n, dtype=np.int64),
    )


class _ReturnConditioned:
    """The acting loop shared by the continuous and the discrete policy (see the module
    docstring). The subclass supplies ``model``, ``target_return``, ``rtg_scale`` and
    ``_predict(obs, act, rtg, t, mask) -> actions (n,)`` or ``(n, A)``."""

    model: DecisionTransformerNet
    target_return: float
    rtg_scale: float

    def _condition(
        self,
        model: DecisionTransformerNet,
        *,
        discrete: bool,
        act_dim: int,
        target_return: float,
        rtg_scale: float,
    ) -> None:
        """Keep ``model`` (it must be ``discrete`` with ``act_dim`` actions) and the return it
        conditions on.

        :raises ValueError: another model, or ``rtg_scale <= 0``.
        """
        if model.discrete != discrete or model.act_dim != act_dim:
            raise ValueError(
                f"model: discrete={model.discrete}, act_dim={model.act_dim}; expected a "
                f"{'discrete' if discrete else 'continuous'} model with act_dim={act_dim}"
            )
        if not rtg_scale > 0:
            raise ValueError(f"rtg_scale={rtg_scale}: expected > 0")
        self.model = model
        self.target_return = float(target_return)
        self.rtg_scale = float(rtg_scale)

    def _predict(
        self, obs: np.ndarray, act: np.ndarray, rtg: np.ndarray, t: np.ndarray, mask: np.ndarray
    ) -> np.ndarray:
        raise NotImplementedError

    def _act_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def act_in_context(
        self, batch: ObsBatchProtocol, state: dict[str, Any] | BatchProtocol | np.ndarray | None
    ) -> tuple[np.ndarray, Batch]:
        """One step for every environment of ``batch``: extend its context with the new
        observation and return-to-go, predict the action, record it. Returns the actions
        and the new context (Tianshou's hidden state)."""
        obs = np.asarray(batch.obs)
        n, k = obs.shape[0], self.model.context
        ctx = state if isinstance(state, Batch) and len(state.get_keys()) else None
        if ctx is None or len(ctx) != n:
            ctx = _fresh_context(n, k, obs, self._act_shape(), self.model.discrete)
        fresh = np.asarray(ctx.length) == 0
        raw_info = getattr(batch, "info", None)
        info: Batch = raw_info if isinstance(raw_info, Batch) else Batch()
        if "reward" in info.get_keys():
            reward = np.asarray(info.reward, dtype=np.float32).reshape(n)
        elif fresh.all():
            reward = np.zeros(n, dtype=np.float32)
        else:
            raise ValueError(
                f"{type(self).__name__}: the observation's info holds no 'reward'; wrap the "
                "environments in tianshou_offline.algorithms.RewardInInfo so that the "
                "return-to-go follows the rewards received"
            )
        rtg_prev = np.asarray(ctx.rtg)[:, -1]
        rtg = np.where(
            fresh, self.target_return / self.rtg_scale, rtg_prev - reward / self.rtg_scale
        )
        t = np.where(fresh, 0, np.asarray(ctx.t)[:, -1] + 1)
        new = Batch(
            obs=np.concatenate([np.asarray(ctx.obs)[:, 1:], obs[:, None].astype(ctx.obs.dtype)], 1),
            act=np.concatenate([np.asarray(ctx.act)[:, 1:], np.zeros_like(ctx.act[:, :1])], 1),
            rtg=np.concatenate([np.asarray(ctx.rtg)[:, 1:], rtg[:, None].astype(np.float32)], 1),
            t=np.concatenate([np.asarray(ctx.t)[:, 1:], t[:, None].astype(np.int64)], 1),
            length=np.minimum(np.asarray(ctx.length) + 1, k),
        )
        mask = np.arange(k)[None, :] >= (k - new.length)[:, None]
        act = self._predict(new.obs, new.act, new.rtg, new.t, mask)
        new.act[:, -1] = act
        return act, new


class ContinuousDTPolicy(_ReturnConditioned, ContinuousPolicy):
    """Acts with a Decision Transformer for continuous actions, conditioned on a target
    return (see the module docstring; wrap the environments in :class:`RewardInInfo`).

    :param model: the network (``discrete=False``, ``act_dim`` = A).
    :param target_return: the return to condition on at the start of each episode, in the
        environment's reward units (the authors: 3600 for Hopper, 6000 for HalfCheetah).
    :param rtg_scale: returns-to-go are divided by it in the network's input (1000 for MuJoCo).
    See :class:`~tianshou_offline.algorithms.continuous.policies.ContinuousPolicy` for the
    other parameters.
    """

    def __init__(
        self,
        *,
        model: DecisionTransformerNet,
        action_space: gym.Space[Any],
        observation_space: gym.Space[Any],
        target_return: float,
        rtg_scale: float = ContinuousDTConfig.rtg_scale,
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
        self._condition(
            model,
            discrete=False,
            act_dim=self.act_dim,
            target_return=target_return,
            rtg_scale=rtg_scale,
        )

    def _act_shape(self) -> tuple[int, ...]:
        return (self.act_dim,)

    def _predict(
        self, obs: np.ndarray, act: np.ndarray, rtg: np.ndarray, t: np.ndarray, mask: np.ndarray
    ) -> np.ndarray:
        n, k = mask.shape
        dev = self.device
        obs_t = self.obs_to_tensor(obs.reshape(n * k, *obs.shape[2:])).view(n, k, -1)
        with torch.no_grad():
            pred = self.model(
                obs_t,
                torch.as_tensor(act, device=dev),
                torch.as_tensor(rtg, device=dev),
                torch.as_tensor(t, device=dev),
                torch.as_tensor(mask, device=dev),
            )
        return cast(np.ndarray, pred[:, -1].cpu().numpy())

    def select_action(self, obs: torch.Tensor) -> torch.Tensor:
        """The action at the first step of an episode (a context of one step at the target
        return) for normalised ``obs (B, D)``."""
        n = obs.shape[0]
        with torch.no_grad():
            return cast(
                torch.Tensor,
                self.model(
                    obs.unsqueeze(1),
                    torch.zeros(n, 1, self.act_dim, device=obs.device),
                    torch.full((n, 1), self.target_return / self.rtg_scale, device=obs.device),
                    torch.zeros(n, 1, dtype=torch.int64, device=obs.device),
                    torch.ones(n, 1, dtype=torch.bool, device=obs.device),
                )[:, 0],
            )

    def forward(
        self,
        batch: ObsBatchProtocol,
        state: dict[str, Any] | BatchProtocol | np.ndarray | None = None,
        **kwargs: Any,
    ) -> ActStateBatchProtocol:
        act, new_state = self.act_in_context(batch, state)
        return cast(ActStateBatchProtocol, Batch(act=act, state=new_state))


class DiscreteDTPolicy(_ReturnConditioned, DiscretePolicy):
    """Acts with a Decision Transformer for discrete actions (Atari frames included),
    conditioned on a target return (see the module docstring; wrap the environments in
    :class:`RewardInInfo`).

    :param model: the network (``discrete=True``, ``act_dim`` = the number of actions).
    :param target_return: the return to condition on at the start of each episode (the
        authors' Atari targets: 90 Breakout, 2500 Qbert, 20 Pong, 1450 Seaquest, in the data's
        reward units).
    :param rtg_scale: returns-to-go are divided by it in the network's input (1 for Atari).
    :param sample_actions: sample from the predicted distribution (the authors' Atari
        evaluation) instead of the most likely action.
    See :class:`~tianshou_offline.algorithms.discrete.policies.DiscretePolicy` for the other
    parameters.
    """

    def __init__(
        self,
        *,
        model: DecisionTransformerNet,
        action_space: gym.Space[Any],
        observation_space: gym.Space[Any] | None = None,
        target_return: float,
        rtg_scale: float = DiscreteDTConfig.rtg_scale,
        sample_actions: bool = False,
        eps_inference: float = 0.0,
    ) -> None:
        super().__init__(
            action_space=action_space,
            observation_space=observation_space,
            eps_inference=eps_inference,
        )
        self._condition(
            model,
            discrete=True,
            act_dim=self.num_actions,
            target_return=target_return,
            rtg_scale=rtg_scale,
        )
        self.sample_actions = sample_actions

    def _act_shape(self) -> tuple[int, ...]:
        return ()

    def _choose(self, logits: torch.Tensor) -> torch.Tensor:
        if self.sample_actions:
            return torch.multinomial(torch.softmax(logits, dim=-1), 1).squeeze(-1)
        return logits.argmax(dim=-1)

    def _predict(
        self, obs: np.ndarray, act: np.ndarray, rtg: np.ndarray, t: np.ndarray, mask: np.ndarray
    ) -> np.ndarray:
        dev = self.device
        with torch.no_grad():
            logits = self.model(
                self.obs_to_tensor(obs),
                torch.as_tensor(act, device=dev),
                torch.as_tensor(rtg, device=dev),
                torch.as_tensor(t, device=dev),
                torch.as_tensor(mask, device=dev),
            )
        out: np.ndarray = self._choose(logits[:, -1]).cpu().numpy()
        return out

    def select_action(self, obs: torch.Tensor) -> torch.Tensor:
        """The action at the first step of an episode (a context of one step at the target
        return) for ``obs (B, *obs_shape)``."""
        n = obs.shape[0]
        with torch.no_grad():
            logits = self.model(
                obs.unsqueeze(1),
                torch.zeros(n, 1, dtype=torch.int64, device=obs.device),
                torch.full((n, 1), self.target_return / self.rtg_scale, device=obs.device),
                torch.zeros(n, 1, dtype=torch.int64, device=obs.device),
                torch.ones(n, 1, dtype=torch.bool, device=obs.device),
            )
        return self._choose(logits[:, 0])

    def forward(
        self,
        batch: ObsBatchProtocol,
        state: dict[str, Any] | BatchProtocol | np.ndarray | None = None,
        **kwargs: Any,
    ) -> ActStateBatchProtocol:
        act, new_state = self.act_in_context(batch, state)
        return cast(ActStateBatchProtocol, Batch(act=act, state=new_state))


# --------------------------------------------------------------------------- training


def segment_loss(pred: torch.Tensor, segments: Segments, *, discrete: bool) -> torch.Tensor:
    """Algorithm 1's loss over the real steps of ``segments`` (see the module docstring):
    the mean squared error per action dimension, or the cross-entropy of the logits.

    Leading dimensions before the segments' ``(B, K)`` are kept (a seed batch's
    ``(S, B, K, …)`` gives one loss per seed, ``(S,)``); plain segments give a scalar."""
    # padding is weighted out rather than indexed out: a boolean index sizes its output by the
    # data, which makes the host wait for the device
    weight = segments.mask.to(pred.dtype)  # (…, B, K)
    if discrete:
        ce = F.cross_entropy(pred.flatten(0, -2), segments.act.flatten(), reduction="none")
        return (ce.view_as(weight) * weight).sum(dim=(-2, -1)) / weight.sum(dim=(-2, -1))
    mse = (pred - segments.act).pow(2).mean(dim=-1)
    return (mse * weight).sum(dim=(-2, -1)) / weight.sum(dim=(-2, -1))


@dataclass(kw_only=True)
class DTTrainingStats(OfflineTrainingStats):
    """Statistics of one Decision Transformer step."""

    loss: float
    """The action loss over the real steps (MSE or cross-entropy)."""
    accuracy: float | None = None
    """Discrete actions: the share of real steps whose most likely action is the data's."""
    real_steps: float
    """The share of the batch's K-step slots that are real steps (not padding)."""
    lr: float
    """The learning rate of this step."""


TDTStats = TypeVar("TDTStats", bound=DTTrainingStats, default=DTTrainingStats)


@dataclass(frozen=True, slots=True)
class DTStep:
    """Tensors of one step, detached, for :meth:`DecisionTransformer._extend_stats`.

    :ivar batch: the segments.
    :ivar pred: ``(B, K, A)`` the predicted actions (continuous) or logits (discrete).
    """

    batch: Segments
    pred: torch.Tensor


class DecisionTransformer(
    OfflineAlgorithmCore[ContinuousDTPolicy | DiscreteDTPolicy, SegmentDataset, Segments, TDTStats]
):
    """The Decision Transformer (Chen et al. 2021); see the module docstring.

    Train it with ``algorithm.run_training(OfflineTrainerParams(buffer=..., batch_size=64))``:
    each gradient step samples ``batch_size`` segments of ``policy.model.context`` steps.

    :param policy: a :class:`ContinuousDTPolicy` or a :class:`DiscreteDTPolicy` (its
        ``model`` is trained, its ``rtg_scale`` scales the data's returns-to-go).
    :param optim: optimizer factory for the network (the authors: AdamW, lr 1e-4, weight
        decay 1e-4, with :class:`LinearWarmupLRSchedulerFactory` (10,000)).
    :param max_grad_norm: clip the gradient norm (0.25 in the paper; None: no clipping).
    """

    def __init__(
        self,
        *,
        policy: ContinuousDTPolicy | DiscreteDTPolicy,
        optim: OptimizerFactory,
        max_grad_norm: float | None = ContinuousDTConfig.max_grad_norm,
    ) -> None:
        super().__init__(policy=policy)
        self.optim = self._make_optimizer(policy.model, optim, max_grad_norm)
        self.discrete = isinstance(policy, DiscreteDTPolicy)

    @property
    def device(self) -> torch.device:
        return self.policy.device

    def _build_dataset(self, buffer: ReplayBuffer) -> SegmentDataset:
        """Segments over a row dataset of ``buffer``: a :class:`TransitionDataset`
        (continuous: observations normalised, actions mapped) or a frame dataset (discrete;
        streamed from disk for a disk-backed buffer)."""
        policy = self.policy
        rows_dataset: OfflineDataset[Any]
        if isinstance(policy, DiscreteDTPolicy):
            rows = np.sort(np.asarray(buffer.sample_indices(0), dtype=np.int64))
            kind = StreamingFrameDataset if disk_columns(buffer) is not None else FrameDataset
            rows_dataset = kind.from_buffer(
                buffer, device=self.device, num_actions=policy.num_actions
            )
        else:
            rows = np.asarray(buffer.sample_indices(0), dtype=np.int64)
            rows_dataset = TransitionDataset.from_buffer(buffer, policy=policy)
        return SegmentDataset.from_buffer(
            buffer,
            rows_dataset,
            rows,
            context=policy.model.context,
            rtg_scale=policy.rtg_scale,
        )

    def _as_transitions(self, batch: RolloutBatchProtocol | Segments) -> Segments:
        if isinstance(batch, Segments):
            return batch
        raise TypeError(
            "DecisionTransformer trains on trajectory segments, not on Tianshou transition "
            "batches; train with algorithm.update(buffer, batch_size) or OfflineTrainer"
        )

    def _update_with_batch(self, batch: RolloutBatchProtocol | Segments) -> TDTStats:
        s = self._as_transitions(batch)
        model = self.policy.model
        pred = model(s.obs, s.act, s.rtg, s.timesteps, s.mask)
        loss = segment_loss(pred, s, discrete=self.discrete)
        lr = self.optim.optim.param_groups[0]["lr"]
        self.optim.step(loss)
        accuracy: torch.Tensor | None = None
        if self.discrete:
            with torch.no_grad():
                hits = (pred.argmax(-1) == s.act) & s.mask
                accuracy = hits.sum() / s.mask.sum()
        stats = self._make_stats(
            loss=loss, accuracy=accuracy, real_steps=s.mask.float().mean(), lr=float(lr)
        )
        self._extend_stats(stats, DTStep(batch=s, pred=pred.detach()))
        return stats

    def _extend_stats(self, stats: TDTStats, step: DTStep) -> None:
        """Override to fill in extra fields of a stats subclass (see ``examples/extend_stats.py``)."""


class DiscreteDecisionTransformer(DecisionTransformer[TDTStats]):
    """The Decision Transformer for discrete actions: :class:`DecisionTransformer` with a
    :class:`DiscreteDTPolicy` and the authors' Atari gradient clip (1.0) as the default.

    :param policy: a :class:`DiscreteDTPolicy`.
    :param optim: optimizer factory (the authors' Atari code: AdamW, lr 6e-4, weight decay
        0.1, a linear warm-up).
    :param max_grad_norm: clip the gradient norm (None: no clipping).
    """

    def __init__(
        self,
        *,
        policy: DiscreteDTPolicy,
        optim: OptimizerFactory,
        max_grad_norm: float | None = DiscreteDTConfig.max_grad_norm,
    ) -> None:
        super().__init__(policy=policy, optim=optim, max_grad_norm=max_grad_norm)
