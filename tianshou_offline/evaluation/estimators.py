"""Off-policy estimators of a policy's value from logged episodes, and bootstrap intervals.

Every estimator reads an :class:`EpisodeBatch`: ``n`` logged episodes padded to a common
length ``T``, with per step the reward ``r_t``, the log importance ratio
``log ρ_t = log π(a_t|s_t) − log μ(a_t|s_t)`` of the evaluated policy ``π`` against the
behaviour policy ``μ``, and (for the model-based ones) ``Q̂(s_t, a_t)`` and
``V̂(s_t) = E_{a~π}[Q̂(s_t, a)]`` of a fitted Q (FQE). All estimate the discounted value
``V(π) = E[Σ_t γ^t r_t]`` from the logged initial states, in the data's reward units.

The cumulative importance weight is ``w_t = Π_{k≤t} ρ_k`` (computed in log space), clipped
to ``max_weight`` when one is given (truncated importance sampling, Ionides 2008: bias for
bounded variance; the clip is stated in every result). After an episode ends it is treated
as absorbing — reward 0, ``Q̂ = V̂ = 0``, ratio 1 (``w`` stays at its last value) — as Jiang
& Li (2016) and Thomas & Brunskill (2016) pad episodes of different lengths.

Estimators (``n`` episodes, superscript ``i`` the episode):

- :class:`DirectMethod` (FQE, Le et al. 2019, Eq. 4): ``V̂ = (1/n) Σ_i V̂(s_0^i)``.
- :class:`PerDecisionIS` (Precup, Sutton & Singh 2000, per-decision importance sampling):
  ``V̂ = (1/n) Σ_i Σ_t γ^t w_t^i r_t^i``.
- :class:`WeightedIS` (weighted per-decision IS; Precup et al. 2000; Thomas & Brunskill
  2016, Sec. 3): ``V̂ = Σ_t γ^t Σ_i (w_t^i / Σ_j w_t^j) r_t^i`` — self-normalised at every
  step: biased, consistent, far lower variance.
- :class:`DoublyRobust` (Jiang & Li 2016, "Doubly Robust Off-policy Value Evaluation for
  Reinforcement Learning", ICML, Eq. 10 unrolled; Thomas & Brunskill 2016, Eq. 1):
  ``V̂ = (1/n) Σ_i Σ_t γ^t [ w_t^i r_t^i − ( w_t^i Q̂(s_t^i, a_t^i) − w_{t−1}^i V̂(s_t^i) ) ]``
  with ``w_{−1} = 1``: importance sampling with ``Q̂`` as a control variate; unbiased when
  either ``μ`` or ``Q̂`` is right.
- :class:`WeightedDoublyRobust` (Thomas & Brunskill 2016, "Data-Efficient Off-Policy Policy
  Evaluation for Reinforcement Learning", ICML, Eq. 2, WDR): the same with the weights
  self-normalised per step, ``ŵ_t^i = w_t^i / Σ_j w_t^j`` and ``ŵ_{−1}^i = 1/n``.

:func:`bootstrap_interval` gives a percentile bootstrap interval of any of them over
episodes (Efron & Tibshirani 1993; the resampling unit is the episode, as the estimators'
independence assumption is).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

__all__ = [
    "ESTIMATORS",
    "DirectMethod",
    "DoublyRobust",
    "EpisodeBatch",
    "Estimator",
    "PerDecisionIS",
    "WeightedDoublyRobust",
    "WeightedIS",
    "bootstrap_interval",
    "make_estimator",
]


@dataclass(frozen=True)
class EpisodeBatch:
    """Logged episodes padded to a common length ``T`` (arrays ``(n, T)``, float64 unless
    said otherwise; zeros after an episode's end).

    :ivar rew: rewards ``r_t``.
    :ivar mask: bool, True at the steps the episode has.
    :ivar log_ratio: ``log π(a_t|s_t) − log μ(a_t|s_t)`` (``−inf`` where ``π(a_t|s_t) = 0``),
        None when no behaviour policy is known.
    :ivar q: ``Q̂(s_t, a_t)``, None without a fitted Q.
    :ivar v: ``V̂(s_t) = E_{a~π} Q̂(s_t, a)``, None without a fitted Q.
    :ivar gamma: the discount.
    """

    rew: np.ndarray
    mask: np.ndarray
    gamma: float
    log_ratio: np.ndarray | None = None
    q: np.ndarray | None = None
    v: np.ndarray | None = None

    def __post_init__(self) -> None:
        shape = self.rew.shape
        for name in ("mask", "log_ratio", "q", "v"):
            value = getattr(self, name)
            if value is not None and value.shape != shape:
                raise ValueError(f"EpisodeBatch.{name} has shape {value.shape}; expected {shape}")
        if len(shape) != 2 or shape[0] == 0:
            raise ValueError(f"EpisodeBatch.rew has shape {shape}; expected (n > 0, T)")

    @property
    def num_episodes(self) -> int:
        return int(self.rew.shape[0])

    def take(self, episodes: np.ndarray) -> EpisodeBatch:
        """The episodes at indices ``episodes`` (repeats allowed: a bootstrap resample)."""

        def pick(x: np.ndarray | None) -> np.ndarray | None:
            return None if x is None else x[episodes]

        return EpisodeBatch(
            rew=self.rew[episodes], mask=self.mask[episodes], gamma=self.gamma,
            log_ratio=pick(self.log_ratio), q=pick(self.q), v=pick(self.v),
        )  # fmt: skip

    def discounts(self) -> np.ndarray:
        """``γ^t`` for ``t = 0..T−1``: ``(T,)``."""
        return np.power(self.gamma, np.arange(self.rew.shape[1], dtype=np.float64))

    def weights(self, max_weight: float | None = None) -> np.ndarray:
        """Cumulative importance weights ``w_t = Π_{k≤t} ρ_k`` (``(n, T)``; ratio 1 after the
        end), clipped to ``max_weight`` when given.

        :raises ValueError: no ``log_ratio``.
        """
        if self.log_ratio is None:
            raise ValueError("this estimator needs importance ratios (a behaviour policy)")
        log_ratio = np.where(self.mask, self.log_ratio, 0.0)
        with np.errstate(over="ignore"):
            w: np.ndarray = np.exp(np.cumsum(log_ratio, axis=1))
        return w if max_weight is None else np.minimum(w, max_weight)


class Estimator(ABC):
    """An off-policy estimator: ``estimator(batch) -> V̂``.

    :cvar name: its short name (``fqe``, ``is``, ``wis``, ``dr``, ``wdr``).
    :cvar needs_ratios: reads ``log_ratio`` (a behaviour policy).
    :cvar needs_q: reads ``q``/``v`` (a fitted Q).
    """

    name: ClassVar[str]
    needs_ratios: ClassVar[bool] = True
    needs_q: ClassVar[bool] = False

    def __init__(self, max_weight: float | None = None) -> None:
        if max_weight is not None and not max_weight > 0:
            raise ValueError(f"max_weight={max_weight}: expected > 0 (or None: no clipping)")
        self.max_weight = max_weight

    @abstractmethod
    def __call__(self, batch: EpisodeBatch) -> float:
        """The estimate of ``V(π)`` from ``batch``."""

    def _q(self, batch: EpisodeBatch) -> tuple[np.ndarray, np.ndarray]:
        if batch.q is None or batch.v is None:
            raise ValueError(f"{self.name}: needs a fitted Q (q and v of the EpisodeBatch)")
        return np.where(batch.mask, batch.q, 0.0), np.where(batch.mask, batch.v, 0.0)


def _self_normalised(w: np.ndarray) -> np.ndarray:
    """``w_t^i / Σ_j w_t^j`` per step (a step where every weight is 0 contributes 0)."""
    total = w.sum(axis=0, keepdims=True)
    out: np.ndarray = np.divide(w, total, out=np.zeros_like(w), where=total > 0)
    return out


class DirectMethod(Estimator):
    """FQE's value (Le et al. 2019, Eq. 4): ``V̂ = (1/n) Σ_i V̂(s_0^i)``."""

    name = "fqe"
    needs_ratios = False
    needs_q = True

    def __call__(self, batch: EpisodeBatch) -> float:
        _, v = self._q(batch)
        return float(v[:, 0].mean())


class PerDecisionIS(Estimator):
    """Per-decision importance sampling (Precup et al. 2000):
    ``V̂ = (1/n) Σ_i Σ_t γ^t w_t^i r_t^i``."""

    name = "is"

    def __call__(self, batch: EpisodeBatch) -> float:
        w = batch.weights(self.max_weight)
        rew = np.where(batch.mask, batch.rew, 0.0)
        return float((batch.discounts() * w * rew).sum(axis=1).mean())


class WeightedIS(Estimator):
    """Weighted per-decision importance sampling (Precup et al. 2000; Thomas & Brunskill
    2016): ``V̂ = Σ_t γ^t Σ_i (w_t^i / Σ_j w_t^j) r_t^i``."""

    name = "wis"

    def __call__(self, batch: EpisodeBatch) -> float:
        w = _self_normalised(batch.weights(self.max_weight))
        rew = np.where(batch.mask, batch.rew, 0.0)
        return float((batch.discounts() * w * rew).sum())


class DoublyRobust(Estimator):
    """Doubly robust (Jiang & Li 2016):
    ``V̂ = (1/n) Σ_i Σ_t γ^t [w_t r_t − (w_t Q̂(s_t, a_t) − w_{t−1} V̂(s_t))]``, ``w_{−1} = 1``."""

    name = "dr"
    needs_q = True

    def __call__(self, batch: EpisodeBatch) -> float:
        w = batch.weights(self.max_weight)
        w_prev = np.concatenate([np.ones_like(w[:, :1]), w[:, :-1]], axis=1)
        q, v = self._q(batch)
        rew = np.where(batch.mask, batch.rew, 0.0)
        terms = w * rew - (w * q - w_prev * v)
        return float((batch.discounts() * terms).sum(axis=1).mean())


class WeightedDoublyRobust(Estimator):
    """Weighted doubly robust (Thomas & Brunskill 2016, WDR): doubly robust with
    ``ŵ_t^i = w_t^i / Σ_j w_t^j``, ``ŵ_{−1}^i = 1/n``, summed over episodes."""

    name = "wdr"
    needs_q = True

    def __call__(self, batch: EpisodeBatch) -> float:
        w = _self_normalised(batch.weights(self.max_weight))
        n = batch.num_episodes
        w_prev = np.concatenate([np.full_like(w[:, :1], 1.0 / n), w[:, :-1]], axis=1)
        q, v = self._q(batch)
        rew = np.where(batch.mask, batch.rew, 0.0)
        terms = w * rew - (w * q - w_prev * v)
        return float((batch.discounts() * terms).sum())


ESTIMATORS: dict[str, type[Estimator]] = {
    cls.name: cls
    for cls in (DirectMethod, PerDecisionIS, WeightedIS, DoublyRobust, WeightedDoublyRobust)
}
"""The estimators by name, in the order results are reported."""


def make_estimator(name: str, max_weight: float | None = None) -> Estimator:
    """The estimator called ``name`` (:data:`ESTIMATORS`).

    :raises ValueError: an unknown name.
    """
    if name not in ESTIMATORS:
        raise ValueError(f"estimator {name!r}: expected one of {', '.join(ESTIMATORS)}")
    return ESTIMATORS[name](max_weight=max_weight)


def bootstrap_interval(
    estimator: Estimator,
    batch: EpisodeBatch,
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``estimator`` over episodes: ``resamples`` batches of
    ``n`` episodes drawn with replacement, the estimator recomputed on each, the
    ``(1 − level)/2`` and ``(1 + level)/2`` quantiles of the results.

    It covers the sampling of episodes given the fitted models (``μ``, ``Q̂``): a model
    fitted on the same data is not refitted per resample, so the intervals of ``fqe``,
    ``dr`` and ``wdr`` leave out the models' own fitting error.

    :raises ValueError: ``resamples < 1`` or ``level`` outside (0, 1).
    """
    if resamples < 1:
        raise ValueError(f"resamples={resamples}: expected >= 1")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level={level}: expected a value in (0, 1)")
    rng = np.random.default_rng(seed)
    n = batch.num_episodes
    values = np.array(
        [estimator(batch.take(rng.integers(0, n, size=n))) for _ in range(resamples)]
    )
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(values, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(lo), float(hi)
