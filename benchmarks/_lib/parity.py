"""The check shared by the return-parity benchmarks (``parity_continuous.py``,
``parity_discrete.py``) that paired runs really trained on the same mini-batches (their
statistics are :mod:`benchmarks._lib.stats`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


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
