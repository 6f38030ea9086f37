"""Mean and standard error over seeds: the one rule of the package and its benchmarks.

One seed has no spread: its standard error is ``None`` and it is shown as such
(``52.8 (1 seed)``), never as ``± 0.0`` (which would read as a measured, perfectly
repeatable result) nor as ``nan``."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def mean_se(xs: Sequence[float]) -> tuple[float, float | None]:
    """Mean and standard error of the mean (sample standard deviation / √n).

    :returns: ``(mean, se)``; ``se`` is None for a single value.
    :raises ValueError: ``xs`` is empty.
    """
    if not xs:
        raise ValueError("mean_se of no values")
    mean = statistics.fmean(xs)
    if len(xs) == 1:
        return mean, None
    return mean, statistics.stdev(xs) / math.sqrt(len(xs))


def format_mean_se(mean: float, se: float | None, digits: int = 1, *, sign: bool = False) -> str:
    """``mean ± se`` at ``digits`` decimals, or ``mean (1 seed)`` when ``se`` is None;
    ``sign`` writes ``+`` on positive means (differences)."""
    m = f"{mean:+.{digits}f}" if sign else f"{mean:.{digits}f}"
    return f"{m} (1 seed)" if se is None else f"{m} ± {se:.{digits}f}"
