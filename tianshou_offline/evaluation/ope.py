"""Off-policy evaluation of policies on a dataset: FQE, importance sampling and doubly robust
estimates with bootstrap intervals (:func:`evaluate_policy`, :func:`ope_rank`).

For every evaluated policy ``π`` and the data's episodes this module computes, per logged
step, what the estimators of :mod:`~tianshou_offline.evaluation.estimators` read:

- **the behaviour policy** ``μ(a_t | s_t)``: a behaviour model fitted once per dataset
  (:func:`fit_behavior`) — for discrete actions a softmax classifier (behaviour cloning by
  cross-entropy, :class:`~tianshou_offline.algorithms.DiscreteImitationLearning`), for
  continuous actions a state-conditioned Gaussian fitted by maximum likelihood
  (:class:`~tianshou_offline.algorithms.ImitationLearning` with an unsquashed
  :class:`~tianshou_offline.algorithms.GaussianPolicy`, actions in the policy's ``[−1, 1]``
  units) — or, with ``behavior="stored"``, the probabilities a dataset stores in its info
  column ``behavior_prob`` (``μ`` of each logged action; a density for continuous actions);
- **the evaluated policy** ``π(a_t | s_t)``: for discrete actions the distribution it acts
  with (:meth:`~tianshou_offline.algorithms.DiscretePolicy.action_probs`: a one-hot for a
  greedy policy); a deterministic continuous policy has no density, so importance sampling
  evaluates its Gaussian smoothing ``π_σ(a|s) = N(a; π(s), σ² I)`` (``σ = target_std`` in
  ``[−1, 1]`` action units; Kallus & Zhou 2018, "Policy Evaluation and Optimization with
  Continuous Treatments", AISTATS: the kernel-smoothed ratio);
- **the fitted Q** of FQE (:class:`~tianshou_offline.algorithms.FQE` or
  :class:`~tianshou_offline.algorithms.DiscreteFQE`): ``Q̂(s_t, a_t)`` and
  ``V̂(s_t) = E_{a~π} Q̂(s_t, a)`` (for a continuous policy ``Q̂(s_t, π(s_t))``, the
  smoothing's mean).

Cumulative importance weights are clipped to ``max_weight`` (stated in every result; None:
no clip). An episode cut by a time limit contributes its stored steps only: the estimates
are of the discounted return over the data's horizon, which equals the environment's value
when ``γ^T`` is small for the episodes' length ``T`` — choose ``γ`` so.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import gymnasium as gym
import numpy as np

from tianshou_offline.errors import DatasetFormatError, DataValidationError
from tianshou_offline.evaluation.estimators import (
    ESTIMATORS,
    EpisodeBatch,
    bootstrap_interval,
    make_estimator,
)

if TYPE_CHECKING:
    import torch
    from tianshou.algorithm.algorithm_base import Policy
    from tianshou.data import ReplayBuffer

    from tianshou_offline.algorithms import ContinuousPolicy, DiscretePolicy

log = logging.getLogger(__name__)

__all__ = [
    "BehaviorModel",
    "Estimate",
    "OPEResult",
    "OPESettings",
    "episode_rows",
    "evaluate_policy",
    "fit_behavior",
    "load_policy",
    "ope_rank",
    "select_checkpoints",
    "spearman",
]

STORED_BEHAVIOR_KEY = "behavior_prob"
"""The info column with ``μ(a_t | s_t)`` of each logged action (``behavior="stored"``)."""


@dataclass(frozen=True)
class OPESettings:
    """How :func:`evaluate_policy` estimates (every field has a usable default)."""

    estimators: tuple[str, ...] = tuple(ESTIMATORS)
    """Names of :data:`~tianshou_offline.evaluation.estimators.ESTIMATORS`."""
    gamma: float = 0.99
    """Discount of the estimated value."""
    fqe_steps: int | None = None
    """FQE gradient steps per policy; None: the FQE config's
    (:attr:`~tianshou_offline.algorithms.FQEConfig.steps`)."""
    fqe_hidden: tuple[int, ...] | None = None
    """Q-network widths (discrete: the MLP trunk; Atari data: the conv trunk + the last);
    None: the FQE config's (:class:`~tianshou_offline.algorithms.FQEConfig` for continuous
    policies, :class:`~tianshou_offline.algorithms.DiscreteFQEConfig` for discrete ones)."""
    fqe_lr: float | None = None
    """FQE's Adam learning rate; None: the FQE config's."""
    fqe_tau: float | None = None
    """Polyak factor of FQE's target network; None: the FQE config's."""
    batch_size: int | None = None
    """Transitions per gradient step of the FQE and behaviour-model fits; None: the FQE
    config's (:attr:`~tianshou_offline.algorithms.FQEConfig.batch_size`)."""
    behavior: Literal["fit", "stored"] = "fit"
    """Fit a behaviour model on the data, or read the data's ``behavior_prob`` info column."""
    behavior_steps: int = 3000
    """Gradient steps of the fitted behaviour model."""
    behavior_hidden: tuple[int, ...] = (64, 64)
    target_std: float = 0.1
    """σ of the Gaussian smoothing of a deterministic continuous policy ([−1, 1] units)."""
    max_weight: float | None = 100.0
    """Clip of the cumulative importance weights (None: no clip)."""
    resamples: int = 1000
    """Bootstrap resamples of the intervals."""
    level: float = 0.95
    """Confidence level of the intervals."""
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        unknown = [e for e in self.estimators if e not in ESTIMATORS]
        if unknown or not self.estimators:
            raise ValueError(
                f"estimators {', '.join(unknown) or '(none)'}: expected some of "
                f"{', '.join(ESTIMATORS)}"
            )
        for name in ("fqe_steps", "behavior_steps", "batch_size", "resamples"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: expected >= 1")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma={self.gamma}: expected 0 < gamma <= 1")
        if not self.target_std > 0:
            raise ValueError(f"target_std={self.target_std}: expected > 0")
        if self.behavior not in ("fit", "stored"):
            raise ValueError(f"behavior={self.behavior!r}: expected 'fit' or 'stored'")

    @property
    def needs_q(self) -> bool:
        return any(ESTIMATORS[e].needs_q for e in self.estimators)

    @property
    def needs_ratios(self) -> bool:
        return any(ESTIMATORS[e].needs_ratios for e in self.estimators)


@dataclass(frozen=True)
class Estimate:
    """One estimate with its bootstrap interval (discounted return, the data's units)."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class OPEResult:
    """One policy's estimates.

    :ivar checkpoint: the checkpoint file (or the name given).
    :ivar estimates: per estimator name.
    :ivar ranks: per estimator name, 1 for the highest estimate among the policies ranked.
    :ivar fqe_loss: the last FQE regression loss (nan without FQE).
    :ivar seconds: wall time of this policy's evaluation.
    :ivar value_bounds: the values the data's rewards allow (:func:`value_bounds`), or None.
    """

    checkpoint: str
    estimates: dict[str, Estimate]
    ranks: dict[str, int] = field(default_factory=dict)
    fqe_loss: float = float("nan")
    seconds: float = 0.0
    value_bounds: tuple[float, float] | None = None

    def implausible(self) -> list[str]:
        """The estimators whose value lies outside :attr:`value_bounds`: a diverged fit
        (FQE, and DR/WDR on its Q) or a weight blow-up, never a value the data allows."""
        if self.value_bounds is None:
            return []
        lo, hi = self.value_bounds
        tol = 1e-6 * max(1.0, abs(lo), abs(hi))
        return [k for k, e in self.estimates.items()
                if not lo - tol <= e.value <= hi + tol]  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "estimates": {k: asdict(v) for k, v in self.estimates.items()},
            "ranks": dict(self.ranks),
            "fqe_loss": self.fqe_loss,
            "seconds": self.seconds,
            "value_bounds": None if self.value_bounds is None else list(self.value_bounds),
            "implausible": self.implausible(),
        }


# --------------------------------------------------------------------------- episodes


def episode_rows(buffer: ReplayBuffer) -> np.ndarray:
    """The storage rows of every episode of ``buffer``, in order: ``(n, T)`` int64, ``−1``
    after an episode's end (``T`` the longest episode). Follows ``buffer.next`` from each
    episode's first row (:func:`~tianshou_offline.algorithms.episode_starts`)."""
    from tianshou_offline.algorithms import episode_starts

    cur = episode_starts(buffer)
    columns = [cur.copy()]
    alive = np.ones(len(cur), dtype=bool)
    while True:
        nxt = np.asarray(buffer.next(cur), dtype=np.int64)
        alive &= nxt != cur
        if not alive.any():
            break
        cur = np.where(alive, nxt, cur)
        columns.append(np.where(alive, cur, -1))
    return np.stack(columns, axis=1)


# --------------------------------------------------------------------------- behaviour


@dataclass
class BehaviorModel:
    """``log μ(a_t | s_t)`` of logged steps: ``log_prob(rows) -> (len(rows),)`` float64 for
    storage rows of the buffer it was made for.

    :ivar kind: ``"softmax"`` (fitted, discrete), ``"gaussian"`` (fitted, continuous) or
        ``"stored"`` (the data's ``behavior_prob``).
    :ivar log_prob: the function.
    :ivar final_loss: the fit's last loss (nan when stored).
    """

    kind: str
    log_prob: Callable[[np.ndarray], np.ndarray]
    final_loss: float = float("nan")


def _chunks(rows: np.ndarray, size: int = 4096) -> list[np.ndarray]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def fit_behavior(
    buffer: ReplayBuffer,
    observation_space: gym.Space[Any],
    action_space: gym.Space[Any],
    settings: OPESettings = OPESettings(),
    *,
    source: str = "the data",
) -> BehaviorModel:
    """The behaviour model of ``buffer`` (see the module docstring).

    :param source: names the data in messages.
    :raises DataValidationError: ``behavior="stored"`` and the data has no ``behavior_prob``
        info column, or spaces the models cannot handle.
    """
    import torch
    from tianshou.algorithm.optim import AdamOptimizerFactory

    import tianshou_offline.algorithms as A

    if settings.behavior == "stored":
        info: Any = getattr(buffer, "info", None)
        keys = info.get_keys() if info is not None and hasattr(info, "get_keys") else []
        if STORED_BEHAVIOR_KEY not in keys:
            raise DataValidationError(
                f"{source}: no info column {STORED_BEHAVIOR_KEY!r} (the behaviour policy's "
                "probability of each logged action), which behavior='stored' needs; fit a "
                "behaviour model instead (behavior='fit')"
            )
        stored = np.asarray(info[STORED_BEHAVIOR_KEY], dtype=np.float64).reshape(-1)

        def stored_log_prob(rows: np.ndarray) -> np.ndarray:
            with np.errstate(divide="ignore"):
                out: np.ndarray = np.log(stored[rows])
            return out

        return BehaviorModel("stored", stored_log_prob)
    torch.manual_seed(settings.seed)
    optim = AdamOptimizerFactory(lr=1e-3)
    if isinstance(action_space, gym.spaces.Discrete):
        trunk = A.make_trunk(observation_space, settings.behavior_hidden)
        actor = A.QNet(trunk, int(action_space.n)).to(settings.device)
        policy = A.DiscreteActorPolicy(actor=actor, action_space=action_space,
                                       observation_space=observation_space,
                                       deterministic_eval=False)  # fmt: skip
        bc: Any = A.DiscreteImitationLearning(policy=policy, optim=optim)
        bc.train_steps(buffer, steps=settings.behavior_steps, batch_size=_batch_size(settings))
        policy.eval()

        def softmax_log_prob(batch: Any) -> torch.Tensor:
            logp = torch.log_softmax(policy.logits(policy.obs_to_tensor(batch.obs)), dim=1)
            act = torch.as_tensor(np.asarray(batch.act, dtype=np.int64).reshape(-1))
            return logp.gather(1, act.to(logp.device)[:, None])[:, 0]

        return BehaviorModel("softmax", _per_chunk(buffer, softmax_log_prob), _last_loss(bc))
    if not isinstance(action_space, gym.spaces.Box) or not isinstance(
        observation_space, gym.spaces.Box
    ):
        raise DataValidationError(
            f"{source}: action space {action_space}, observation space {observation_space}; "
            "the behaviour models handle Discrete or Box actions and Box observations"
        )
    obs_dim = int(np.prod(observation_space.shape))
    act_dim = int(np.prod(action_space.shape))
    gauss = A.GaussianPolicy(
        actor=A.GaussianActor(obs_dim, act_dim, settings.behavior_hidden),
        action_space=action_space, observation_space=observation_space,
        squash=False, normalize_obs=True,
    ).to(settings.device)  # fmt: skip
    il: Any = A.ImitationLearning(policy=gauss, optim=optim)
    il.train_steps(buffer, steps=settings.behavior_steps, batch_size=_batch_size(settings))
    gauss.eval()

    def gaussian_log_prob(batch: Any) -> torch.Tensor:
        from tianshou_offline.algorithms.continuous.policies import gaussian_log_prob as glp

        act = _policy_units(gauss, batch.act)
        mean, log_std = gauss.actor(gauss.obs_to_tensor(batch.obs))
        return glp(mean, log_std, act, squash=False)

    return BehaviorModel("gaussian", _per_chunk(buffer, gaussian_log_prob), _last_loss(il))


def _per_chunk(
    buffer: ReplayBuffer, log_prob: Callable[[Any], torch.Tensor]
) -> Callable[[np.ndarray], np.ndarray]:
    """A behaviour model's ``rows → log μ(a|s)`` (float64) from ``log_prob`` of a batch of
    the buffer, evaluated without gradients in chunks of rows."""
    import torch

    @torch.no_grad()
    def log_probs(rows: np.ndarray) -> np.ndarray:
        parts = [log_prob(buffer[chunk]).double().cpu() for chunk in _chunks(rows)]
        return torch.cat(parts).numpy()

    return log_probs


def _batch_size(settings: OPESettings) -> int:
    """The mini-batch of the behaviour model's fit: the settings', else the FQE config's."""
    if settings.batch_size is not None:
        return settings.batch_size
    from tianshou_offline.algorithms import FQEConfig

    return FQEConfig().batch_size


def _last_loss(algorithm: Any) -> float:
    return float(getattr(algorithm, "last_loss", float("nan")))


def _policy_units(policy: ContinuousPolicy, act: Any) -> torch.Tensor:
    """Dataset actions (the env's units) in the policy's ``[−1, 1]`` range, ``(N, A)``."""
    import torch

    a = np.asarray(act, dtype=np.float32).reshape(len(act), -1)
    mapped = np.asarray(policy.map_action_inverse(a), dtype=np.float32)
    return torch.as_tensor(mapped, device=policy.device)


# --------------------------------------------------------------------------- one policy


def _fit_fqe(policy: DiscretePolicy | ContinuousPolicy, buffer: ReplayBuffer, settings: OPESettings,
             observation_space: gym.Space[Any]) -> Any:  # fmt: skip
    import torch

    import tianshou_offline.algorithms as A

    torch.manual_seed(settings.seed)
    given: dict[str, Any] = {"hidden_sizes": settings.fqe_hidden, "lr": settings.fqe_lr,
             "tau": settings.fqe_tau, "steps": settings.fqe_steps,
             "batch_size": settings.batch_size}  # fmt: skip
    overrides = {k: v for k, v in given.items() if v is not None}
    fqe: Any
    config: A.DiscreteFQEConfig | A.FQEConfig
    if isinstance(policy, A.DiscretePolicy):
        config = A.DiscreteFQEConfig(gamma=settings.gamma, **overrides)
        fqe = config.build(policy, observation_space, device=settings.device)
    else:
        assert isinstance(policy, A.ContinuousPolicy)
        config = A.FQEConfig(gamma=settings.gamma, **overrides)
        fqe = config.build(policy, device=settings.device)
    fqe.fit(buffer, steps=config.steps, batch_size=config.batch_size)
    return fqe


def _step_values(
    policy: DiscretePolicy | ContinuousPolicy, fqe: Any, buffer: ReplayBuffer, rows: np.ndarray, settings: OPESettings
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``log π(a_t|s_t)``, ``Q̂(s_t, a_t)`` and ``V̂(s_t)`` of the logged steps at ``rows``."""
    import torch
    from tianshou.utils.torch_utils import policy_within_training_step

    import tianshou_offline.algorithms as A

    log_pi, qs, vs = [], [], []
    with torch.no_grad():
        for chunk in _chunks(rows):
            batch = buffer[chunk]
            obs = policy.obs_to_tensor(batch.obs)
            if isinstance(policy, A.DiscretePolicy):
                act = torch.as_tensor(np.asarray(batch.act, dtype=np.int64).reshape(-1))
                act = act.to(obs.device)[:, None]
                probs = policy.action_probs(obs)
                log_pi.append(probs.gather(1, act)[:, 0].double().log().cpu())
                if fqe is not None:
                    q_all = fqe.q_values(obs)
                    qs.append(q_all.gather(1, act)[:, 0].double().cpu())
                    vs.append((q_all * probs).sum(dim=1).double().cpu())
                continue
            assert isinstance(policy, A.ContinuousPolicy)
            act_c = _policy_units(policy, batch.act)
            with policy_within_training_step(policy, enabled=False):
                mode = policy.select_action(obs).clamp(-1.0, 1.0)
            sigma = settings.target_std
            z = (act_c - mode) / sigma
            log_k = (-0.5 * z.pow(2) - math.log(sigma) - 0.5 * math.log(2 * math.pi)).sum(-1)
            log_pi.append(log_k.double().cpu())
            if fqe is not None:
                qs.append(fqe.critics(obs, act_c).mean(dim=0).double().cpu())
                vs.append(fqe.critics(obs, mode).mean(dim=0).double().cpu())
    return (
        torch.cat(log_pi).numpy(),
        torch.cat(qs).numpy() if qs else None,
        torch.cat(vs).numpy() if vs else None,
    )


def evaluate_policy(
    policy: Policy,
    buffer: ReplayBuffer,
    *,
    behavior: BehaviorModel | None,
    settings: OPESettings = OPESettings(),
    observation_space: gym.Space[Any] | None = None,
    name: str = "policy",
) -> OPEResult:
    """Every estimator of ``settings`` for one policy on ``buffer``, with bootstrap intervals.

    :param policy: a :class:`~tianshou_offline.algorithms.DiscretePolicy` or
        :class:`~tianshou_offline.algorithms.ContinuousPolicy` (in eval mode; never updated).
    :param behavior: from :func:`fit_behavior` (shared by the policies of one dataset); None
        only when no estimator needs importance ratios.
    :param observation_space: the data's (default: the policy's), for FQE's Q-network.
    :raises ValueError: an estimator needs a behaviour model and none is given.
    """
    import tianshou_offline.algorithms as A

    if not isinstance(policy, A.DiscretePolicy | A.ContinuousPolicy):
        raise TypeError(f"{type(policy).__name__}: expected a DiscretePolicy or ContinuousPolicy")
    if settings.needs_ratios and behavior is None:
        raise ValueError(
            f"estimators {', '.join(settings.estimators)} need a behaviour model (fit_behavior)"
        )
    start = time.perf_counter()
    policy = policy.to(settings.device)
    policy.eval()
    space = observation_space if observation_space is not None else policy.observation_space
    assert space is not None
    fqe = _fit_fqe(policy, buffer, settings, space) if settings.needs_q else None
    if fqe is not None:
        fqe.eval()
    table = episode_rows(buffer)
    mask = table >= 0
    rows = table[mask]
    log_pi, q, v = _step_values(policy, fqe, buffer, rows, settings)

    def padded(values: np.ndarray) -> np.ndarray:
        out = np.zeros(table.shape, dtype=np.float64)
        out[mask] = values
        return out

    log_ratio = None
    if behavior is not None and settings.needs_ratios:
        log_ratio = padded(log_pi - behavior.log_prob(rows))
    batch = EpisodeBatch(
        rew=padded(np.asarray(buffer.rew, dtype=np.float64)[rows]), mask=mask,
        gamma=settings.gamma, log_ratio=log_ratio,
        q=None if q is None else padded(q), v=None if v is None else padded(v),
    )  # fmt: skip
    estimates: dict[str, Estimate] = {}
    for name_ in settings.estimators:
        estimator = make_estimator(name_, settings.max_weight)
        lo, hi = bootstrap_interval(estimator, batch, resamples=settings.resamples,
                                    level=settings.level, seed=settings.seed)  # fmt: skip
        estimates[name_] = Estimate(estimator(batch), lo, hi)
    return OPEResult(
        checkpoint=name,
        estimates=estimates,
        fqe_loss=float(fqe.last_loss) if fqe is not None else float("nan"),
        seconds=time.perf_counter() - start,
        value_bounds=value_bounds(buffer, settings.gamma),
    )


def value_bounds(buffer: ReplayBuffer, gamma: float) -> tuple[float, float] | None:
    """``[min(0, r_min), max(0, r_max)] / (1 − γ)``: every discounted value the data's rewards
    allow (they include 0: an episode that ends earns nothing after); None for ``γ = 1``."""
    if gamma >= 1.0:
        return None
    rows = episode_rows(buffer)
    rew = np.asarray(buffer.rew, dtype=np.float64)[rows[rows >= 0]]
    return min(0.0, float(rew.min())) / (1.0 - gamma), max(0.0, float(rew.max())) / (1.0 - gamma)


def rank_results(results: Sequence[OPEResult]) -> list[OPEResult]:
    """The results with ``ranks`` filled in (per estimator, 1 = highest; NaN last)."""
    ranks: list[dict[str, int]] = [{} for _ in results]
    names = results[0].estimates.keys() if results else []
    for name in names:
        values = [r.estimates[name].value for r in results]
        order = sorted(range(len(results)),
                       key=lambda i: (not math.isfinite(values[i]), -values[i]))  # fmt: skip
        for rank, i in enumerate(order, 1):
            ranks[i][name] = rank
    return [
        OPEResult(r.checkpoint, r.estimates, ranks[i], r.fqe_loss, r.seconds, r.value_bounds)
        for i, r in enumerate(results)
    ]


# --------------------------------------------------------------------------- checkpoints


def load_policy(
    path: str | os.PathLike[str], observation_space: gym.Space[Any],
    action_space: gym.Space[Any], *, source: str,
) -> DiscretePolicy | ContinuousPolicy:  # fmt: skip
    """The policy of a checkpoint, for data with these spaces: a discrete checkpoint
    (``"discrete"`` or ``"atari"``) for ``Discrete`` actions, a continuous one (version 2)
    for ``Box`` actions; its spaces checked against the data's.

    :raises DatasetFormatError: not a checkpoint of that kind.
    :raises DataValidationError: the checkpoint's spaces are not the data's.
    """
    from tianshou_offline.recording.policies import load_continuous_policy, load_discrete_policy

    if isinstance(action_space, gym.spaces.Discrete):
        return load_discrete_policy(path, observation_space=observation_space,
                                    action_space=action_space, env_name=source)  # fmt: skip
    try:
        return load_continuous_policy(path, observation_space=observation_space,
                                      action_space=action_space, env_name=source)  # fmt: skip
    except DatasetFormatError as e:
        raise DatasetFormatError(
            f"{e}; {source} has continuous actions ({action_space})"
        ) from e


def ope_rank(
    checkpoints: Sequence[str | os.PathLike[str]],
    data: str | os.PathLike[str],
    settings: OPESettings = OPESettings(),
    *,
    on_result: Callable[[OPEResult], None] | None = None,
) -> list[OPEResult]:
    """Estimate the value of every checkpoint's policy on the buffer file ``data`` with the
    estimators of ``settings`` (one behaviour model for all), ranked; in the order given.

    Every checkpoint is loaded and checked against the data's spaces before anything is
    fitted. Each policy's fits start from ``settings.seed``.

    :param on_result: called with each policy's result as it is done (unranked).
    :raises SourceNotFoundError: a missing file.
    :raises DatasetFormatError: a file that is not a buffer or not a checkpoint of the data's
        kind of actions.
    :raises DataValidationError: a checkpoint whose spaces are not the data's; data without
        what an estimator needs (``behavior_prob`` with ``behavior="stored"``; at least two
        episodes for an interval).
    """
    from tianshou_offline.data.buffer import load_buffer
    from tianshou_offline.data.format import read_metadata

    data_path = Path(data)
    meta = read_metadata(data_path)
    obs_space, act_space = meta.observation_space, meta.action_space
    if obs_space is None or act_space is None:
        missing = "observation_space" if obs_space is None else "action_space"
        raise DataValidationError(
            f"{data_path}: no field {missing!r}; off-policy evaluation checks checkpoints "
            "against the spaces stored with the data"
        )
    policies = [
        (Path(c), load_policy(c, obs_space, act_space, source=str(data_path)))
        for c in checkpoints
    ]
    buffer = load_buffer(data_path)
    table = episode_rows(buffer)
    if table.shape[0] < 2:
        raise DataValidationError(
            f"{data_path}: holds {table.shape[0]} episode; the bootstrap intervals resample "
            "episodes and need at least 2"
        )
    behavior = (
        fit_behavior(buffer, obs_space, act_space, settings, source=str(data_path))
        if settings.needs_ratios else None
    )  # fmt: skip
    results = []
    for path, policy in policies:
        result = evaluate_policy(policy, buffer, behavior=behavior, settings=settings,
                                 observation_space=obs_space, name=str(path))  # fmt: skip
        log.info("OPE %s: %s (%.1f s)", path,
                 {k: round(v.value, 4) for k, v in result.estimates.items()}, result.seconds)  # fmt: skip
        if on_result is not None:
            on_result(result)
        results.append(result)
    return rank_results(results)


# --------------------------------------------------------------------------- model selection


def select_checkpoints(
    entries: Sequence[tuple[str, str | os.PathLike[str], float]],
    data: str | os.PathLike[str],
    settings: OPESettings = OPESettings(),
) -> dict[str, Any]:
    """Offline model selection checked against the truth: the off-policy estimates of
    labelled checkpoints next to their true (online-evaluated) returns, and per estimator
    the checkpoint it would select.

    :param entries: ``(label, checkpoint, true return)`` per checkpoint (e.g. a grid's
        cells: the cell key, its ``policy.pt``, its evaluation's mean return).
    :returns: ``rows`` (label, checkpoint, true_return, estimates, ranks) and ``selection``
        per estimator: ``pick`` (the label ranked first), ``pick_return``, ``best`` (the
        label of the best true return), ``best_return``, ``regret`` (best − pick, in the
        true returns' units) and ``spearman`` (between estimates and true returns; None for
        fewer than 3 checkpoints or constant values).
    """
    labels = [e[0] for e in entries]
    truth = {e[0]: float(e[2]) for e in entries}
    results = ope_rank([e[1] for e in entries], data, settings)
    rows = [
        {"label": label, "checkpoint": r.checkpoint, "true_return": truth[label],
         **r.to_json()}
        for label, r in zip(labels, results, strict=True)
    ]  # fmt: skip
    best = max(labels, key=lambda lab: truth[lab])
    selection: dict[str, Any] = {}
    for name in settings.estimators:
        pick = next(row["label"] for row in rows if row["ranks"][name] == 1)
        est = [row["estimates"][name]["value"] for row in rows]
        tru = [row["true_return"] for row in rows]
        rho = spearman(est, tru) if len(rows) >= 3 else None
        selection[name] = {"pick": pick, "pick_return": truth[pick], "best": best,
                           "best_return": truth[best], "regret": truth[best] - truth[pick],
                           "spearman": rho}  # fmt: skip
    return {"data": str(data), "rows": rows, "selection": selection}


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(len(values), dtype=np.float64)
    for v in np.unique(values):
        tied = values == v
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (Pearson's of the average ranks, ties shared); None when
    either side is constant or not finite."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()) or len(a) < 2:
        return None
    ra, rb = _average_ranks(a), _average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else None
