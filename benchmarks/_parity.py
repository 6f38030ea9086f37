"""Statistics shared by the return-parity benchmarks (``parity_continuous.py``,
``parity_discrete.py``): mean ± std cells, differences of means ± their standard error, and
the check that paired runs really trained on the same mini-batches."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any


def mean_std(values: Sequence[float]) -> str:
    """``mean ± std`` over seeds (std 0 for a single value; ``—`` for none)."""
    if not values:
        return "—"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {sd:.1f}"


def diff(a: Sequence[float], b: Sequence[float], paired: bool) -> str:
    """Difference of means ± its standard error: of the per-seed differences when ``paired``
    (same seeds on both sides, in the same order), else Welch's."""
    if len(a) < 2 or len(b) < 2:
        return "—"
    if paired:
        d = [x - y for x, y in zip(a, b, strict=True)]
        se = statistics.stdev(d) / len(d) ** 0.5
    else:
        se = (statistics.variance(a) / len(a) + statistics.variance(b) / len(b)) ** 0.5
    return f"{statistics.mean(a) - statistics.mean(b):+.1f} ± {se:.1f}"


def pairing_summary(runs: Sequence[Any], stream_id: Callable[[Any], object]) -> str:
    """In how many (algorithm, seed) pairs of a paired run both sides consumed the same
    mini-batch stream (``stream_id(run)``: a digest recorded by the run, None if unknown).

    :param runs: objects with ``algorithm``, ``seed``, ``implementation`` and ``sampling``.
    """
    by_key = {(r.algorithm, r.seed, r.implementation): r for r in runs if r.sampling == "paired"}
    pairs = [
        (r, by_key[(r.algorithm, r.seed, "tianshou")])
        for r in runs
        if r.sampling == "paired"
        and r.implementation == "ours"
        and (r.algorithm, r.seed, "tianshou") in by_key
    ]
    if not pairs:
        return "mini-batches: unpaired (each side its own generator)"
    same = sum(stream_id(a) is not None and stream_id(a) == stream_id(b) for a, b in pairs)
    return f"mini-batches: paired; the same random stream on both sides in {same}/{len(pairs)} runs"
