"""What continuous and discrete fitted Q evaluation share (Le, Voloshin & Yue 2019,
arXiv:1903.08738, Algorithm 3 and Eq. 4; Paine et al. 2020, arXiv:2007.09055).

:class:`FQESettings` holds the settings both FQE configs have (their defaults live here);
:class:`FittedQEvaluation` the parts of the algorithm that do not depend on the kind of
action: the checks of the settings, the regression step's bookkeeping (optimizer step,
target update, statistics), :meth:`~FittedQEvaluation.estimate` over the data's initial
states and :meth:`~FittedQEvaluation.fit`. The regression targets and the value of a state
are the kinds' own (:class:`~tianshou_offline.algorithms.continuous.fqe.FQE`,
:class:`~tianshou_offline.algorithms.discrete.fqe.DiscreteFQE`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from tianshou.data import ReplayBuffer
from typing_extensions import TypeVar

from tianshou_offline.algorithms.core import OfflineAlgorithmCore, TDataset, TPolicy
from tianshou_offline.algorithms.deferred import OfflineTrainingStats
from tianshou_offline.algorithms.gradient import GradientStep
from tianshou_offline.algorithms.sampling import TBatch
from tianshou_offline.progress import Progress

__all__ = ["FQESettings", "FQEStats", "FittedQEvaluation"]


@dataclass(frozen=True, kw_only=True)
class FQESettings:
    """The settings of both FQE configs: a Q-network of 256 × 256 fitted with Adam 3e-4 and
    Polyak averaging (Paine et al. 2020's soft version)."""

    hidden_sizes: tuple[int, ...] = (256, 256)
    """widths of the Q-network's hidden layers"""
    lr: float = 3e-4
    """Adam learning rate of the Q-network"""
    tau: float = 0.005
    """Polyak factor of the target network (1.0: hard copies)"""
    target_update_freq: int = 1
    """gradient steps between target updates (with ``tau=1``: K of the iterated regression)"""
    gamma: float = 0.99
    """discount of the estimated value"""
    max_grad_norm: float | None = None
    """clip the gradient's norm to this (None: no clipping)"""
    steps: int = 20_000
    """gradient steps of a fit (per evaluated policy)"""
    batch_size: int = 256
    """transitions per gradient step"""

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))


@dataclass(kw_only=True)
class FQEStats(OfflineTrainingStats):
    """Statistics of one FQE step."""

    loss: float
    """The regression loss ``MSE(Q(s, a), y)`` (summed over an ensemble's members)."""
    q_data: float
    """Mean ``Q(s, a)`` of the dataset actions."""
    q_target: float
    """Mean regression target ``y``."""


TFQEStats = TypeVar("TFQEStats", bound=FQEStats)


class FittedQEvaluation(OfflineAlgorithmCore[TPolicy, TDataset, TBatch, TFQEStats], ABC):
    """Base of the FQE algorithms: the kinds implement the update's targets,
    :meth:`initial_observations` and :meth:`value_of`. The evaluated policy is never
    updated."""

    tau: float
    target_update_freq: int

    def _fqe_settings(
        self, tau: float, target_update_freq: int, gamma: float, n_step_return_horizon: int
    ) -> None:
        """Check and keep the settings FQE shares (an n-step target is refused: it would
        follow the data's actions within the window, not the evaluated policy's)."""
        name = type(self).__name__
        if not 0.0 < tau <= 1.0:
            raise ValueError(f"tau={tau}: expected 0 < tau <= 1")
        if target_update_freq < 1:
            raise ValueError(f"target_update_freq={target_update_freq}: expected >= 1")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma={gamma}: expected a value in [0, 1]")
        if n_step_return_horizon != 1:
            raise ValueError(
                f"{name}: n_step_return_horizon={n_step_return_horizon}; expected 1 (an "
                "n-step target would follow the data's actions within the window, not the "
                "evaluated policy's: a biased estimate without an importance-weight correction)"
            )
        self.tau = float(tau)
        self.target_update_freq = int(target_update_freq)
        self.gamma = gamma
        self.n_step = n_step_return_horizon
        self._initial_obs: torch.Tensor | None = None
        self._last_stats: TFQEStats | None = None

    def _regression_step(
        self, optim: GradientStep, loss: torch.Tensor, q_data: torch.Tensor, target: torch.Tensor
    ) -> TFQEStats:
        """One gradient step of the regression ``loss``, the target network's update every
        :attr:`target_update_freq` steps, and the step's statistics."""
        optim.step(loss)
        if (self.num_updates + 1) % self.target_update_freq == 0:
            self._update_targets(self.tau)
        stats = self._make_stats(loss=loss, q_data=q_data.mean(), q_target=target.mean())
        self._last_stats = stats
        return stats

    @property
    def last_loss(self) -> float:
        """The regression loss of the latest gradient step (nan before the first; reading it
        waits for the device)."""
        stats = self._last_stats
        return float("nan") if stats is None else float(stats.loss)

    # ------------------------------------------------------------------ the estimate

    @abstractmethod
    def initial_observations(self, buffer: ReplayBuffer) -> torch.Tensor:
        """The first observation of every episode of ``buffer``, as the policy reads them."""

    @abstractmethod
    def value_of(self, obs: torch.Tensor) -> float:
        """The mean estimated value ``Q̂(s, π)`` of the states ``obs``."""

    def estimate(self, buffer: ReplayBuffer | None = None) -> float:
        """``V̂(π) = E_{s_0~d_0}[ Q̂(s_0, π) ]`` (Le et al. 2019, Eq. 4) over the first
        observation of every episode of ``buffer`` (default: the buffer trained on); a
        discounted return in the units of the data's rewards.

        :raises RuntimeError: no buffer given and none trained on yet.
        """
        if buffer is not None:
            obs0 = self.initial_observations(buffer)
        elif self._initial_obs is not None:
            obs0 = self._initial_obs
        else:
            raise RuntimeError(
                f"{type(self).__name__}.estimate: no buffer given and none trained on yet"
            )
        return self.value_of(obs0)

    def fit(
        self,
        buffer: ReplayBuffer,
        *,
        steps: int,
        batch_size: int = FQESettings.batch_size,
        progress: Progress | None = None,
    ) -> float:
        """Fit ``Q^π`` on ``buffer`` with ``steps`` gradient steps of ``batch_size``
        transitions (Tianshou's ``OfflineTrainer``, one epoch, no test episodes) and return
        :meth:`estimate`.

        :param progress: counts the gradient steps (one ``update(1)`` each; e.g. a
            :func:`tianshou_offline.progress.progress` bar with ``total=steps``).
        """
        self._initial_obs = self.initial_observations(buffer)
        self.train_steps(buffer, steps=steps, batch_size=batch_size, progress=progress)
        return self.estimate()

    def _extend_stats(self, stats: TFQEStats, step: Any) -> None:
        """Override to fill in extra fields of a stats subclass (see ``examples/extend_stats.py``)."""
