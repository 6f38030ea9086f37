"""Off-policy evaluation of checkpoints from a dataset alone.

- :mod:`~tianshou_offline.evaluation.estimators`: the estimators (FQE's direct value,
  per-decision and weighted importance sampling, doubly robust and weighted doubly robust)
  on logged episodes, and bootstrap intervals;
- :mod:`~tianshou_offline.evaluation.ope`: behaviour models, :func:`evaluate_policy` (every
  estimator for one policy) and :func:`ope_rank` (checkpoints on a buffer file; ``evaluate
  --ope``);
- below: :func:`fqe_rank`, FQE alone for continuous checkpoints (``evaluate --fqe``).

:func:`fqe_rank` loads a buffer file and policy checkpoints (written by
:func:`~tianshou_offline.recording.policies.save_policy_checkpoint`), fits ``Q^π`` of each
policy on the data (:class:`~tianshou_offline.algorithms.FQE`: Le et al. 2019, Algorithm 3)
and ranks them by ``V̂(π) = E_{s_0~d_0}[Q̂(s_0, π(s_0))]`` over the data's initial states —
the model-selection use Paine et al. (2020) study. ``tianshou-offline evaluate --fqe`` is its
command line.

Every checkpoint is checked against the data's observation and action spaces before any
fitting starts, so a wrong checkpoint fails in seconds, not after the others were fitted.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym

from tianshou_offline.errors import DatasetFormatError, DataValidationError
from tianshou_offline.evaluation.ope import (
    Estimate,
    OPEResult,
    OPESettings,
    evaluate_policy,
    fit_behavior,
    ope_rank,
)
from tianshou_offline.progress import progress

if TYPE_CHECKING:
    from tianshou_offline.algorithms import ContinuousPolicy

log = logging.getLogger(__name__)

__all__ = [
    "Estimate",
    "FQEResult",
    "OPEResult",
    "OPESettings",
    "evaluate_policy",
    "fit_behavior",
    "fqe_rank",
    "ope_rank",
]


@dataclass(frozen=True)
class FQEResult:
    """One checkpoint's FQE estimate.

    :ivar checkpoint: the checkpoint file.
    :ivar estimate: ``V̂(π)``, a discounted return (``γ`` = the ``gamma`` passed) in the data's
        reward units.
    :ivar rank: 1 for the highest estimate.
    :ivar final_loss: the regression loss of the last gradient step.
    :ivar seconds: wall time of the fit.
    """

    checkpoint: Path
    estimate: float
    rank: int
    final_loss: float
    seconds: float


def fqe_rank(
    checkpoints: Sequence[str | os.PathLike[str]],
    data: str | os.PathLike[str],
    *,
    steps: int | None = None,
    batch_size: int | None = None,
    gamma: float | None = None,
    hidden_sizes: Sequence[int] | None = None,
    lr: float | None = None,
    tau: float | None = None,
    n_step: int = 1,
    seed: int = 0,
    device: str = "cpu",
    show_progress: bool | None = None,
) -> list[FQEResult]:
    """Fit FQE for every checkpoint on the buffer file ``data``; results best first.

    Each fit starts from the same seed (the same critic initialisation and mini-batch order
    for every checkpoint), so differences between estimates come from the policies.

    :param checkpoints: policy checkpoints of continuous policies (version 2).
    :param data: a buffer file (any layout :func:`~tianshou_offline.load_buffer` reads).
    :param steps: gradient steps per checkpoint.
    :param batch_size: transitions per gradient step.
    :param gamma: discount of the estimated value.
    :param n_step: 1 only (kept for compatibility; see :class:`~tianshou_offline.algorithms.FQE`).
    :param hidden_sizes: widths of the Q-network.
    :param lr: Adam learning rate of the Q-network.
    :param tau: Polyak factor of the target network.

    ``steps``, ``batch_size``, ``gamma``, ``hidden_sizes``, ``lr`` and ``tau`` left at None take
    :class:`~tianshou_offline.algorithms.FQEConfig`'s defaults.
    :param show_progress: a progress bar per checkpoint, counting its gradient steps (the
        package's progress policy, :mod:`tianshou_offline.progress`: tqdm on a terminal, plain
        lines otherwise; None: the policy, False: none, True: also a final line per
        checkpoint without a terminal).
    :raises SourceNotFoundError: a missing file.
    :raises DatasetFormatError: a file that is not a buffer / not a continuous checkpoint.
    :raises DataValidationError: a checkpoint whose spaces are not the data's, or data
        without Box spaces.
    """
    import torch

    from tianshou_offline.algorithms import FQE, FQEConfig
    from tianshou_offline.data.buffer import load_buffer
    from tianshou_offline.data.format import read_metadata
    from tianshou_offline.recording.policies import load_continuous_policy

    given: dict[str, Any] = {"gamma": gamma, "hidden_sizes": hidden_sizes, "lr": lr, "tau": tau,
                             "steps": steps, "batch_size": batch_size}  # fmt: skip
    config = FQEConfig(**{k: v for k, v in given.items() if v is not None})
    if config.steps < 1:
        raise ValueError(f"steps={config.steps}: expected >= 1")
    if n_step != 1:
        raise ValueError(
            f"n_step={n_step}: expected 1 (FQE's target is one-step: an n-step target would "
            "follow the data's actions within the window, not the evaluated policy's)"
        )
    data_path = Path(data)
    meta = read_metadata(data_path)
    obs_space, act_space = meta.observation_space, meta.action_space
    for what, space in (("observation_space", obs_space), ("action_space", act_space)):
        if not isinstance(space, gym.spaces.Box):
            raise DataValidationError(
                f"{data_path}: field {what!r} is {space}; FQE evaluates continuous policies "
                "and needs Box observation and action spaces stored with the data"
            )
    policies: list[tuple[Path, ContinuousPolicy]] = []
    for c in checkpoints:
        try:
            policy = load_continuous_policy(
                c, observation_space=obs_space, action_space=act_space, env_name=str(data_path)
            )
        except DatasetFormatError as e:  # a discrete or foreign checkpoint: say what FQE takes
            raise DatasetFormatError(
                f"{e}; fqe_rank (CLI: --fqe) evaluates continuous-action policies; any policy, "
                "discrete ones too: evaluation.ope (CLI: --ope fqe)"
            ) from e
        policies.append((Path(c), policy))
    buffer = load_buffer(data_path)
    fitted: list[tuple[Path, float, float, float]] = []
    for i, (path, policy) in enumerate(policies, 1):
        torch.manual_seed(seed)
        fqe: FQE = config.build(policy, device=device)
        start = time.perf_counter()
        with progress(
            total=config.steps,
            desc=f"FQE {i}/{len(policies)} {path.name}",
            unit="step",
            enabled=show_progress,
        ) as bar:
            estimate = fqe.fit(
                buffer, steps=config.steps, batch_size=config.batch_size, progress=bar
            )
        seconds = time.perf_counter() - start
        log.info("FQE %s: estimate %.4f (%d steps, %.1f s)", path, estimate, config.steps,
                 seconds)  # fmt: skip
        fitted.append((path, estimate, fqe.last_loss, seconds))
    order = sorted(range(len(fitted)), key=lambda i: -fitted[i][1])
    return [
        FQEResult(
            checkpoint=fitted[i][0],
            estimate=fitted[i][1],
            rank=r + 1,
            final_loss=fitted[i][2],
            seconds=fitted[i][3],
        )
        for r, i in enumerate(order)
    ]
