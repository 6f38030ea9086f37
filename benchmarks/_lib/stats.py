"""Statistics of the benchmarks: one mean ± standard error, one Student-t test, one
correction for many cells.

- :func:`mean_se` / :func:`format_mean_se` — the package's one rule
  (:mod:`tianshou_offline.scale.stats`): one seed has no spread (``52.8 (1 seed)``).
- :func:`t_quantile` — Student's t critical value (SciPy).
- :func:`t_test` — the two-sided one-sample t-test of "the mean of these paired differences
  is 0" (its p-value); :func:`beyond_noise` — that test at level ``alpha`` for one cell.
- :func:`holm` — Holm's step-down correction: which of several cells' tests reject at a
  family-wise error rate ``alpha`` (a table of 40 cells at 95% each would show two
  differences by chance alone).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from tianshou_offline.scale.stats import format_mean_se, mean_se

__all__ = [
    "beyond_noise",
    "diff_cell",
    "format_mean_se",
    "holm",
    "mean_se",
    "mean_std",
    "t_quantile",
    "t_test",
]


def t_quantile(dof: int, level: float = 0.95) -> float:
    """The two-sided critical value of Student's t with ``dof`` degrees of freedom at
    confidence ``level`` (``dof=2, level=0.95``: 4.303); ``inf`` for ``dof < 1``."""
    if dof < 1:
        return math.inf
    from scipy.stats import t

    return float(t.ppf(1.0 - (1.0 - level) / 2.0, dof))


def t_test(xs: Sequence[float]) -> float | None:
    """Two-sided p-value of the one-sample t-test that the mean of ``xs`` is 0.

    :returns: None for fewer than two values (no spread, no test); 0 or 1 when every value
        is the same (a spread of exactly 0: nonzero means differ surely, zeros do not).
    """
    if len(xs) < 2:
        return None
    m, se = mean_se(xs)
    assert se is not None
    if se == 0.0:
        return 0.0 if m != 0.0 else 1.0
    from scipy.stats import t

    return float(2.0 * t.sf(abs(m) / se, len(xs) - 1))


def beyond_noise(xs: Sequence[float], alpha: float = 0.05) -> bool:
    """Whether the mean of ``xs`` differs from 0 by :func:`t_test` at level ``alpha`` — for
    one comparison; for a table of many use :func:`holm`. One value is never beyond noise."""
    p = t_test(xs)
    return p is not None and p < alpha


def holm(pvalues: Sequence[float | None], alpha: float = 0.05) -> list[bool]:
    """Holm's step-down procedure: which hypotheses are rejected at family-wise error rate
    ``alpha``. ``None`` (no test) is never rejected and does not count among the tests.

    Sorted ascending, the k-th smallest of m p-values is rejected while
    ``p_(k) ≤ alpha / (m − k + 1)`` for it and every smaller one.
    """
    tested = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(tested)
    out = [False] * len(pvalues)
    for k, (p, i) in enumerate(tested):
        if p > alpha / (m - k):
            break
        out[i] = True
    return out


def mean_std(values: Sequence[float]) -> str:
    """``mean ± standard deviation`` over seeds (one value: ``mean (1 seed)``; none: ``—``)."""
    if not values:
        return "—"
    sd = statistics.stdev(values) if len(values) > 1 else None
    return format_mean_se(statistics.fmean(values), sd)


def diff_cell(a: Sequence[float], b: Sequence[float], paired: bool) -> str:
    """Difference of means ± its standard error: of the per-seed differences when ``paired``
    (same seeds on both sides, in the same order), else Welch's; ``—`` when a side has
    fewer than two values."""
    if len(a) < 2 or len(b) < 2:
        return "—"
    if paired:
        m, se = mean_se([x - y for x, y in zip(a, b, strict=True)])
    else:
        m = statistics.fmean(a) - statistics.fmean(b)
        se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    return format_mean_se(m, se, sign=True)
