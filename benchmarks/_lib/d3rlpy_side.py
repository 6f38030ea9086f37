"""d3rlpy 2.8.1's side of the benchmarks, run in d3rlpy's own virtual environment.

The speed benchmark starts it as ``python -m benchmarks._lib.peers --builder
benchmarks._lib.d3rlpy_side --threads N`` with d3rlpy's interpreter (the protocol of
:mod:`benchmarks._lib.peers`); the quality table's d3rlpy jobs build their configs with
:func:`continuous_config` / :func:`discrete_config`. It imports d3rlpy, torch and numpy only
(never this package), and builds every algorithm from a plain-data spec (the equal-footing
mapping of our hyperparameters lives with the drivers, where it is tested without d3rlpy).

One gradient step is what d3rlpy's own ``fit`` loop does per step:
``dataset.sample_transition_batch(batch_size)`` (the Decision Transformer:
``sample_trajectory_batch(batch_size, length=context_size)``) then ``algo.update(batch)``.

Networks. Continuous: d3rlpy's ``VectorEncoderFactory(hidden_units)`` (ReLU MLPs, the
observation and action concatenated for critics; the same 256×256 MLPs as ours). Discrete:
an encoder with our layers — the trunk (CartPole: ``Linear(4, 64)``/ReLU; Atari: the
Nature-DQN convolutions, ``channels_last``, inputs × 1/255) and the head's hidden layers
(``Linear``/ReLU) — under d3rlpy's own last ``Linear(hidden, A)``: the layers of our
``QNet``.

Optimizer. d3rlpy's ``AdamFactory`` builds ``torch.optim.Adam`` without ``fused`` (the
for-loop kernel on CPU); ``adam="fused"`` uses :class:`FusedAdamFactory`, a subclass of
d3rlpy's public ``OptimizerFactory`` that passes ``fused=True`` (d3rlpy's ``OptimizerWrapper``
still does the zero-grad, clipping and step, unchanged).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn


def _d3rlpy() -> Any:
    import d3rlpy

    return d3rlpy


def _subclass(name: str, base: Any, **namespace: Any) -> Any:
    """A dataclass subclass of one of d3rlpy's factory bases, built with ``type()``: d3rlpy's
    classes are untyped here (``Any`` to mypy), and a ``class`` statement deriving from ``Any``
    is what ``--strict`` forbids."""
    return dataclasses.dataclass()(type(name, (base,), namespace))


def _optimizer_factory(
    adam: str,
    clip_grad_norm: float | None = None,
    *,
    weight_decay: float | None = None,
    warmup_steps: int | None = None,
) -> Any:
    """Adam, or AdamW with ``weight_decay`` (the Decision Transformer's), optionally with
    d3rlpy's linear warm-up of the learning rate over ``warmup_steps``."""
    from d3rlpy.optimizers import AdamFactory, AdamWFactory, OptimizerFactory
    from d3rlpy.optimizers.lr_schedulers import WarmupSchedulerFactory

    extra: dict[str, Any] = {}
    if warmup_steps is not None:
        extra["lr_scheduler_factory"] = WarmupSchedulerFactory(warmup_steps=warmup_steps)
    if adam == "default":
        if weight_decay is not None:
            return AdamWFactory(weight_decay=weight_decay, clip_grad_norm=clip_grad_norm, **extra)
        return AdamFactory(clip_grad_norm=clip_grad_norm, **extra)

    def create_optimizer(self: Any, named_modules: Any, lr: float) -> torch.optim.Optimizer:
        params: dict[nn.Parameter, None] = {}
        for _, module in named_modules:
            for p in module.parameters():
                params.setdefault(p, None)
        if weight_decay is not None:
            return torch.optim.AdamW(list(params), lr=lr, weight_decay=weight_decay, fused=True)
        return torch.optim.Adam(list(params), lr=lr, fused=True)

    def get_type() -> str:
        return "fused_adam"

    # ``torch.optim.Adam(..., fused=True)`` behind d3rlpy's optimizer interface
    FusedAdamFactory = _subclass(
        "FusedAdamFactory", OptimizerFactory,
        create_optimizer=create_optimizer, get_type=staticmethod(get_type),
    )  # fmt: skip
    return FusedAdamFactory(clip_grad_norm=clip_grad_norm, **extra)


def _encoder_factory(
    name: str,
    type_name: str,
    build: Callable[[Any], None],
    forward: Callable[[Any, torch.Tensor], torch.Tensor],
) -> Any:
    """An ``EncoderFactory`` (class ``{name}Factory``, ``get_type() == type_name``) whose
    encoders (class ``name``, a d3rlpy ``Encoder``) are made by ``build(encoder)`` after
    ``Encoder.__init__`` and run ``forward(encoder, x)``."""
    from d3rlpy.models import EncoderFactory
    from d3rlpy.models.torch import Encoder

    def encoder_init(self: Any) -> None:
        Encoder.__init__(self)
        build(self)

    encoder_class = type(name, (Encoder,), {"__init__": encoder_init, "forward": forward})

    def create(self: Any, observation_shape: Any) -> Any:
        return encoder_class()

    def get_type() -> str:
        return type_name

    factory = _subclass(
        f"{name}Factory", EncoderFactory, create=create, get_type=staticmethod(get_type)
    )
    return factory()


def _linear_encoder_factory(obs_dim: int, width: int) -> Any:
    """An ``EncoderFactory`` of one ``Linear(obs_dim, width)``: the Decision Transformer's
    state embedding (the paper's; d3rlpy's default is a 256×256 ReLU MLP)."""

    def build(self: Any) -> None:
        self.linear = nn.Linear(obs_dim, width)

    def forward(self: Any, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(x.reshape(x.shape[0], -1))
        return out

    return _encoder_factory("LinearEncoder", "tianshou_offline_linear", build, forward)


def _same_nets_encoder_factory(
    obs_shape: tuple[int, ...],
    trunk_hidden: list[int],
    head_hidden: list[int],
    channels_last: bool,
    scale_obs: bool,
) -> Any:
    """An ``EncoderFactory`` with our discrete trunk and head hidden layers."""

    def build(self: Any) -> None:
        layers: list[nn.Module] = []
        if len(obs_shape) == 3:
            c = obs_shape[0]
            layers += [
                nn.Conv2d(c, 32, kernel_size=8, stride=4),
                nn.ReLU(inplace=True),
                nn.Conv2d(32, 64, kernel_size=4, stride=2),
                nn.ReLU(inplace=True),
                nn.Conv2d(64, 64, kernel_size=3, stride=1),
                nn.ReLU(inplace=True),
                nn.Flatten(),
            ]
            with torch.no_grad():
                width = int(nn.Sequential(*layers)(torch.zeros(1, *obs_shape)).shape[1])
        else:
            width = int(np.prod(obs_shape))
            for h in trunk_hidden:
                layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
                width = h
        for h in head_hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        self.net = nn.Sequential(*layers)
        self.image = len(obs_shape) == 3
        if self.image and channels_last:
            for m in self.net.modules():
                if isinstance(m, nn.Conv2d):
                    m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last)

    def forward(self: Any, x: torch.Tensor) -> torch.Tensor:
        if self.image:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if scale_obs:
                x = x.mul(1.0 / 255.0)
        else:
            x = x.reshape(x.shape[0], -1)
        out: torch.Tensor = self.net(x)
        return out

    return _encoder_factory("SameNetsEncoder", "tianshou_offline_benchmark", build, forward)


# --------------------------------------------------------------------------- datasets


def _continuous_dataset(spec: dict[str, Any]) -> Any:
    from d3rlpy.constants import ActionSpace
    from d3rlpy.dataset import MDPDataset

    rng = np.random.default_rng(spec["seed"])
    n, d, a = spec["buffer_size"], spec["obs_dim"], spec["act_dim"]
    timeouts = np.zeros(n, dtype=np.float32)
    timeouts[999::1000] = 1.0
    timeouts[-1] = 1.0
    return MDPDataset(
        observations=rng.standard_normal((n, d)).astype(np.float32),
        actions=rng.uniform(-1, 1, (n, a)).astype(np.float32),
        rewards=rng.standard_normal(n).astype(np.float32),
        terminals=np.zeros(n, dtype=np.float32),
        timeouts=timeouts,
        action_space=ActionSpace.CONTINUOUS,
        action_size=a,
    )


def _discrete_dataset(spec: dict[str, Any]) -> Any:
    from d3rlpy.constants import ActionSpace
    from d3rlpy.dataset import FrameStackTransitionPicker, MDPDataset, MultiStepTransitionPicker

    rng = np.random.default_rng(spec["seed"])
    n, ep = spec["buffer_size"], spec["episode_len"]
    shape = tuple(spec["obs_shape"])
    terminals = np.zeros(n, dtype=np.float32)
    terminals[ep - 1 :: ep] = 1.0
    picker: Any = None
    if len(shape) == 3:  # compact: one frame per step, stacked by the picker
        obs = rng.integers(0, 255, size=(n, 1, *shape[1:]), dtype=np.uint8)
        picker = FrameStackTransitionPicker(n_frames=shape[0])
    else:
        obs = rng.normal(size=(n, *shape)).astype(np.float32)
    if spec["n_step"] > 1:
        if picker is not None:
            raise ValueError("frame stacking with n-step targets: no d3rlpy picker does both")
        picker = MultiStepTransitionPicker(n_steps=spec["n_step"], gamma=spec["gamma"])
    return MDPDataset(
        observations=obs,
        actions=rng.integers(0, spec["num_actions"], size=n),
        rewards=rng.normal(size=n).astype(np.float32),
        terminals=terminals,
        transition_picker=picker,
        action_space=ActionSpace.DISCRETE,
        action_size=spec["num_actions"],
    )


# --------------------------------------------------------------------------- algorithms


def continuous_config(spec: dict[str, Any]) -> Any:
    d3rlpy = _d3rlpy()
    from d3rlpy.models import VectorEncoderFactory

    algo, p, adam = spec["algo"], spec["params"], spec["adam"]
    enc = VectorEncoderFactory(hidden_units=list(spec["hidden"]))
    common = {"batch_size": spec["batch_size"]}
    if algo == "bc":
        return d3rlpy.algos.BCConfig(
            learning_rate=p["lr"],
            policy_type="deterministic",
            optim_factory=_optimizer_factory(adam),
            encoder_factory=enc,
            **common,
        )
    if algo == "dt":
        return d3rlpy.algos.DecisionTransformerConfig(**_dt_fields(spec, warmup_steps=True))
    nets = {"actor_encoder_factory": enc, "critic_encoder_factory": enc}
    # every actor-critic: the two learning rates and optimizers, discount, Polyak, critics
    ac = {
        "actor_learning_rate": p["actor_lr"],
        "critic_learning_rate": p["critic_lr"],
        "actor_optim_factory": _optimizer_factory(adam),
        "critic_optim_factory": _optimizer_factory(adam),
        "gamma": p["gamma"],
        "tau": p["tau"],
        "n_critics": p["n_critics"],
        **common,
    }
    if algo == "bcq":
        return d3rlpy.algos.BCQConfig(
            imitator_learning_rate=p["imitator_lr"],
            imitator_optim_factory=_optimizer_factory(adam),
            imitator_encoder_factory=enc,
            lam=p["lam"],
            n_action_samples=p["n_action_samples"],
            action_flexibility=p["action_flexibility"],
            beta=p["beta"],
            **nets,
            **ac,
        )
    if algo == "cql":
        return d3rlpy.algos.CQLConfig(
            **{**ac, "critic_optim_factory": _optimizer_factory(adam, p["critic_clip_grad_norm"])},
            temp_learning_rate=p["temp_lr"],
            alpha_learning_rate=p["alpha_lr"],
            temp_optim_factory=_optimizer_factory(adam),
            alpha_optim_factory=_optimizer_factory(adam),
            conservative_weight=p["conservative_weight"],
            alpha_threshold=p["alpha_threshold"],
            n_action_samples=p["n_action_samples"],
            soft_q_backup=p["soft_q_backup"],
            **nets,
        )
    if algo == "td3bc":
        return d3rlpy.algos.TD3PlusBCConfig(
            target_smoothing_sigma=p["policy_noise"],
            target_smoothing_clip=p["noise_clip"],
            alpha=p["alpha"],
            update_actor_interval=p["update_actor_interval"],
            **nets,
            **ac,
        )
    if algo == "crr":
        return d3rlpy.algos.CRRConfig(
            beta=p["beta"],
            n_action_samples=p["n_action_samples"],
            advantage_type=p["advantage_type"],
            weight_type=p["weight_type"],
            max_weight=p["max_weight"],
            target_update_type=p["target_update_type"],
            target_update_interval=p["target_update_interval"],
            **nets,
            **ac,
        )
    if algo == "iql":
        return d3rlpy.algos.IQLConfig(
            value_encoder_factory=enc,
            expectile=p["expectile"],
            weight_temp=p["weight_temp"],
            max_weight=p["max_weight"],
            **nets,
            **ac,
        )
    if algo == "rebrac":
        # ReBRAC's critics: Linear -> ReLU -> LayerNorm per hidden layer (as ours)
        critic_enc = VectorEncoderFactory(
            hidden_units=list(spec["hidden"]), use_layer_norm=p["critic_layer_norm"]
        )
        return d3rlpy.algos.ReBRACConfig(
            actor_encoder_factory=enc,
            critic_encoder_factory=critic_enc,
            target_smoothing_sigma=p["policy_noise"],
            target_smoothing_clip=p["noise_clip"],
            update_actor_interval=p["update_actor_interval"],
            actor_beta=p["actor_beta"],
            critic_beta=p["critic_beta"],
            **ac,
        )
    if algo == "awac":
        return d3rlpy.algos.AWACConfig(
            lam=p["lam"], n_action_samples=p["n_action_samples"], **nets, **ac
        )
    raise ValueError(f"unknown continuous algorithm {algo!r}")


def _dt_fields(spec: dict[str, Any], *, warmup_steps: bool) -> dict[str, Any]:
    """Both Decision Transformers' config fields from our settings: the optimizer (AdamW,
    clipping, and with ``warmup_steps`` the linear warm-up of the optimizer), one
    ``Linear(obs, embed_size)`` state embedding (ours), the transformer's sizes, GELU (ours,
    GPT-2's; d3rlpy's continuous default is ReLU), our rtg_scale as its reward scaler (d3rlpy
    divides rewards and returns-to-go by it in the network's input, in training and when
    acting)."""
    d3rlpy = _d3rlpy()
    p = spec["params"]
    return {
        "batch_size": spec["batch_size"],
        "learning_rate": p["lr"],
        "optim_factory": _optimizer_factory(
            spec["adam"], p["clip_grad_norm"], weight_decay=p["weight_decay"],
            warmup_steps=p["warmup_steps"] if warmup_steps else None,
        ),
        "encoder_factory": _linear_encoder_factory(spec["obs_dim"], p["embed_size"]),
        "context_size": p["context_size"],
        "max_timestep": p["max_timestep"],
        "num_heads": p["num_heads"],
        "num_layers": p["num_layers"],
        "attn_dropout": p["dropout"],
        "resid_dropout": p["dropout"],
        "embed_dropout": p["dropout"],
        "activation_type": "gelu",
        "reward_scaler": d3rlpy.preprocessing.MultiplyRewardScaler(1.0 / p["rtg_scale"]),
    }  # fmt: skip


def discrete_dt_config(spec: dict[str, Any]) -> Any:
    """d3rlpy's ``DiscreteDecisionTransformerConfig`` with our settings (flat observations:
    one ``Linear(obs, embed_size)`` state embedding, as ours). Its learning rate follows its
    own schedule of *real tokens* seen (``inner_update``): a linear warm-up over
    ``warmup_steps × batch × K`` tokens (``warmup_steps`` batches without padding), then a
    cosine decay that ``final_tokens`` puts out of reach, so the rate stays constant as
    ours does. Its position encoding is set to ``SIMPLE`` (one embedding per timestep, ours;
    its default ``GLOBAL`` is the authors' Atari one)."""
    d3rlpy = _d3rlpy()
    p = spec["params"]
    return d3rlpy.algos.DiscreteDecisionTransformerConfig(
        **_dt_fields(spec, warmup_steps=False),
        position_encoding_type=d3rlpy.PositionEncodingType.SIMPLE,
        warmup_tokens=int(p["warmup_steps"]) * int(spec["batch_size"]) * int(p["context_size"]),
        final_tokens=2**62,
    )


def discrete_config(spec: dict[str, Any]) -> Any:
    d3rlpy = _d3rlpy()
    algo, p, adam = spec["algo"], spec["params"], spec["adam"]
    if algo == "dt":
        return discrete_dt_config(spec)
    enc = _same_nets_encoder_factory(
        tuple(spec["obs_shape"]),
        list(spec["trunk_hidden"]),
        list(spec["head_hidden"]),
        spec["channels_last"],
        spec["scale_obs"],
    )
    common = {
        "batch_size": spec["batch_size"],
        "learning_rate": p["lr"],
        "optim_factory": _optimizer_factory(adam),
        "encoder_factory": enc,
    }
    if algo == "il":
        return d3rlpy.algos.DiscreteBCConfig(beta=p["beta"], **common)
    if algo == "bcq":
        return d3rlpy.algos.DiscreteBCQConfig(
            gamma=spec["gamma"],
            n_critics=1,
            action_flexibility=p["action_flexibility"],
            beta=p["beta"],
            target_update_interval=p["target_update_interval"],
            share_encoder=True,
            **common,
        )
    if algo == "cql":
        return d3rlpy.algos.DiscreteCQLConfig(
            gamma=spec["gamma"],
            n_critics=1,
            target_update_interval=p["target_update_interval"],
            alpha=p["alpha"],
            **common,
        )
    raise ValueError(f"unknown discrete algorithm {algo!r}")


def _optimizer_kinds(algo: Any) -> str:
    """The optimizers the built algorithm steps, e.g. ``Adam fused ×3``."""
    from d3rlpy.optimizers import OptimizerWrapper

    from benchmarks._lib.floor import describe_optimizers

    modules = algo.impl.modules
    wrappers = [getattr(modules, f.name) for f in dataclasses.fields(modules)]
    return describe_optimizers([w.optim for w in wrappers if isinstance(w, OptimizerWrapper)])


def build_side(spec: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    d3rlpy = _d3rlpy()
    d3rlpy.seed(spec["seed"])
    torch.manual_seed(spec["seed"])
    if spec["suite"] == "continuous":
        dataset, config = _continuous_dataset(spec), continuous_config(spec)
    else:
        dataset, config = _discrete_dataset(spec), discrete_config(spec)
    if spec.get("compile_graph"):  # torch.compile + CUDA graphs (d3rlpy uses them on CUDA only)
        config = dataclasses.replace(config, compile_graph=True)
    algo = config.create(device=spec.get("device", "cpu:0"))
    algo.build_with_dataset(dataset)
    batch_size = spec["batch_size"]

    def step() -> None:
        algo.update(dataset.sample_transition_batch(batch_size))

    def trajectory_step() -> None:  # a sequence model's fit loop samples segments
        algo.update(dataset.sample_trajectory_batch(batch_size, length=config.context_size))

    unique: dict[int, int] = {}
    for f in dataclasses.fields(algo.impl.modules):
        m = getattr(algo.impl.modules, f.name)
        if isinstance(m, nn.Module) and not f.name.startswith("targ_"):
            unique.update((id(p), p.numel()) for p in m.parameters())
    params = sum(unique.values())
    info = {
        "library": f"d3rlpy {d3rlpy.__version__}",
        "optimizer": _optimizer_kinds(algo),
        "parameters": params,
    }
    return (trajectory_step if spec.get("algo") == "dt" else step), info


# --------------------------------------------------------------------------- DT acting


def export_dt_step(algo: Any, path: str) -> None:
    """TorchScript of one acting step of d3rlpy's Decision Transformer on a context of
    ``K = context_size`` slots, the real steps last: ``(obs (K, *obs), act (K, A) float, or
    (K,) float action indices, rtg (K, 1) in reward units, timesteps (K,) int64, masks (K,)
    1.0 real / 0.0 padding) -> action (A,)`` (discrete: the logits ``(A,)``) — its
    ``predict`` after the observation and reward scalers, as ``StatefulTransformerWrapper``
    calls it (``save_policy``'s trace has no masks: it expects K real steps).
    :class:`DTContext` keeps the context."""
    from d3rlpy.algos.transformer.inputs import TorchTransformerInput

    impl, config = algo.impl, algo.config
    k = int(config.context_size)

    def step(
        obs: torch.Tensor, act: torch.Tensor, rtg: torch.Tensor, t: torch.Tensor,
        masks: torch.Tensor,
    ) -> torch.Tensor:  # fmt: skip
        o, r = obs.unsqueeze(0), rtg.unsqueeze(0)
        if config.observation_scaler is not None:
            o = config.observation_scaler.transform(o)
        if config.reward_scaler is not None:
            r = config.reward_scaler.transform(r)
        inpt = TorchTransformerInput(
            observations=o, actions=act.unsqueeze(0), rewards=torch.zeros_like(r),
            returns_to_go=r, timesteps=t.unsqueeze(0), masks=masks.unsqueeze(0), length=k,
        )  # fmt: skip
        out: torch.Tensor = impl.predict(inpt)
        return out

    dev = impl.device
    a = int(impl.action_size)
    discrete = _is_discrete(algo)
    dummy_act = torch.zeros(k, device=dev) if discrete else torch.rand(k, a, device=dev)
    dummy = (
        torch.rand(k, *impl.observation_shape, device=dev), dummy_act,
        torch.rand(k, 1, device=dev), torch.arange(k, device=dev),
        torch.ones(k, device=dev),
    )  # fmt: skip
    impl.modules.freeze()
    try:
        trace: Any = torch.jit.trace  # untyped in torch
        trace(step, dummy, check_trace=False).save(path)
    finally:
        impl.modules.unfreeze()


def _is_discrete(algo: Any) -> bool:
    from d3rlpy.constants import ActionSpace

    return bool(algo.get_action_type() == ActionSpace.DISCRETE)


class DTContext:
    """d3rlpy 2.8.1's acting rule for its Decision Transformer (the bookkeeping of its
    ``StatefulTransformerWrapper``, re-stated so that the step exported by
    :func:`export_dt_step` runs in the driver's environment): per episode, the last K
    observations; the actions taken, the current one a zero pad; returns-to-go starting at
    ``target_return``, lowered by each reward received; timesteps counting from 1 (capped at
    ``max_timestep``); a context shorter than K padded on the left with zeros, masked.
    Discrete actions: the action is drawn from ``softmax(logits)`` with torch's generator
    (``sample``: its ``SoftmaxTransformerActionSampler``'s rule at temperature 1) or is the
    most likely one (its ``GreedyTransformerActionSampler``), and the context holds its
    index.

    :param step: the exported step (``(obs, act, rtg, t, masks) -> action or logits``).
    """

    def __init__(
        self, step: Any, *, context: int, max_timestep: int, action_size: int,
        target_return: float, discrete: bool = False, sample: bool = False,
    ) -> None:  # fmt: skip
        self.step = step
        self.context = int(context)
        self.max_timestep = int(max_timestep)
        self.action_size = int(action_size)
        self.target_return = float(target_return)
        self.discrete = bool(discrete)
        self.sample = bool(sample)
        self.reset()

    def _pad(self) -> np.ndarray:
        shape = () if self.discrete else (self.action_size,)
        return np.zeros(shape, dtype=np.float32)

    def reset(self) -> None:
        """A new episode."""
        self._obs: list[np.ndarray] = []
        self._act: list[np.ndarray] = [self._pad()]
        self._rtg: list[float] = []
        self._t: list[int] = []
        self._timestep = 1
        self._rest = self.target_return

    def __call__(self, obs: Any, reward: float) -> Any:
        """The action for ``obs`` (discrete: an ``int``), given the reward of the previous
        step (0 at the first)."""
        k = self.context
        self._obs.append(np.asarray(obs, dtype=np.float32))
        self._rtg.append(self._rest - float(reward))
        self._t.append(self._timestep)
        self._obs, self._act = self._obs[-k:], self._act[-k:]
        self._rtg, self._t = self._rtg[-k:], self._t[-k:]
        n, pad = len(self._obs), k - len(self._obs)

        def left_padded(rows: np.ndarray) -> torch.Tensor:
            out = np.zeros((k, *rows.shape[1:]), dtype=rows.dtype)
            out[pad:] = rows
            return torch.as_tensor(out)

        with torch.no_grad():
            action = self.step(
                left_padded(np.stack(self._obs)),
                left_padded(np.stack(self._act)),
                left_padded(np.asarray(self._rtg, dtype=np.float32)[:, None]),
                left_padded(np.asarray(self._t, dtype=np.int64)),
                left_padded(np.ones(n, dtype=np.float32)),
            )
        out: Any
        if self.discrete:
            logits = action.reshape(-1).float()
            if self.sample:
                out = int(torch.multinomial(torch.softmax(logits, dim=-1), 1).item())
            else:
                out = int(logits.argmax().item())
            self._act[-1] = np.asarray(out, dtype=np.float32)
        else:
            out = np.asarray(action.cpu().numpy(), dtype=np.float32).reshape(self.action_size)
            self._act[-1] = out
        self._act.append(self._pad())
        self._timestep = min(self._timestep + 1, self.max_timestep)
        self._rest -= float(reward)
        return out


def check_dt_context(
    algo: Any, step: Any, observations: np.ndarray, rewards: np.ndarray, target_return: float
) -> float:
    """The largest difference between the actions of d3rlpy's own ``StatefulTransformerWrapper``
    and :class:`DTContext` around the exported ``step`` over one sequence of observations and
    the rewards received before each (longer than K: the context fills, then slides).
    Discrete actions: both take the most likely action (its ``GreedyTransformerActionSampler``),
    so that the actions fed back into the context are the same."""
    from d3rlpy.algos import GreedyTransformerActionSampler, IdentityTransformerActionSampler

    discrete = _is_discrete(algo)
    sampler = GreedyTransformerActionSampler() if discrete else IdentityTransformerActionSampler()
    wrapper = algo.as_stateful_wrapper(target_return=target_return, action_sampler=sampler)
    ours = DTContext(
        step, context=algo.config.context_size, max_timestep=algo.config.max_timestep,
        action_size=algo.impl.action_size, target_return=target_return, discrete=discrete,
    )  # fmt: skip
    worst = 0.0
    for obs, reward in zip(observations, rewards, strict=True):
        expected = np.asarray(wrapper.predict(obs, float(reward)), dtype=np.float32)
        worst = max(worst, float(np.abs(ours(obs, float(reward)) - expected).max()))
    return worst
