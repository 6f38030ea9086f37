"""The package's one progress policy, for anything a user waits on (conversions, loading,
recording, training): a tqdm bar when the stream is a terminal, otherwise (a log file, a pipe,
CI) a plain line every ``interval_s`` seconds and one at the end, with no cursor escapes.

Without a terminal, nothing is printed for work that finishes within the first interval (short
runs and tests stay quiet) unless progress was asked for (``enabled=True``): then the final
line is always shown. ``enabled=False`` shows nothing.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, Protocol, TextIO, TypeVar

T = TypeVar("T")

PLAIN_INTERVAL_S = 30.0
"""Seconds between two plain progress lines (``$TIANSHOU_OFFLINE_PROGRESS_INTERVAL``
overrides it)."""


def _default_interval() -> float:
    try:
        return float(os.environ.get("TIANSHOU_OFFLINE_PROGRESS_INTERVAL", PLAIN_INTERVAL_S))
    except ValueError:
        return PLAIN_INTERVAL_S


class Progress(Protocol):
    """What callers use of a progress bar (tqdm's names)."""

    n: float

    def update(self, n: float = 1) -> Any: ...

    def close(self) -> None: ...

    def __enter__(self) -> Progress: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any: ...


def is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed, or not a real stream
        return False


def progress(
    *,
    total: float | None,
    desc: str,
    unit: str = "it",
    unit_scale: bool = False,
    enabled: bool | None = None,
    stream: TextIO | None = None,
    interval_s: float | None = None,
) -> Progress:
    """A progress bar following the package's policy (module doc).

    :param total: the amount of work (None: unknown; counts only).
    :param desc: what is being done, e.g. ``"converting hopper-medium-v2"``.
    :param unit: what is counted (``"row"``, ``"episode"``, ``"B"``).
    :param unit_scale: show counts with SI prefixes (k, M, G).
    :param enabled: False: nothing; None: the policy; True: the policy, and without a
        terminal the final line even for short work.
    :param stream: where it goes (default: stderr, read at call time).
    :param interval_s: seconds between plain lines (default :data:`PLAIN_INTERVAL_S`).
    """
    out = stream if stream is not None else sys.stderr
    interval_s = _default_interval() if interval_s is None else interval_s
    if enabled is False:
        return PlainProgress(total=total, desc=desc, unit=unit, unit_scale=unit_scale,
                             stream=None, interval_s=interval_s)  # fmt: skip
    if is_terminal(out):
        from tqdm import tqdm

        bar: Progress = tqdm(
            total=total, desc=desc, unit=unit, unit_scale=unit_scale, file=out, dynamic_ncols=True
        )
        return bar
    return PlainProgress(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=unit_scale,
        stream=out,
        interval_s=interval_s,
        final_line=enabled is True,
    )


class PlainProgress:
    """Plain progress lines (``desc: 1.2M/4.0M row (30%), 95.1k row/s, 31 s left``) every
    ``interval_s`` seconds and at the end once any line was shown (or always, with
    ``final_line``); silent with ``stream=None``."""

    def __init__(
        self,
        *,
        total: float | None,
        desc: str,
        unit: str,
        unit_scale: bool,
        stream: TextIO | None,
        interval_s: float,
        final_line: bool = False,
    ) -> None:
        self.n: float = 0
        self.total = total
        self.desc = desc
        self.unit = unit
        self.unit_scale = unit_scale
        self.stream = stream
        self.interval_s = interval_s
        self._start = self._last = time.monotonic()
        self._shown = final_line
        self._closed = False

    def _count(self, x: float) -> str:
        if not self.unit_scale:
            return f"{x:,.0f}"
        for prefix in ("", "k", "M", "G", "T"):
            if abs(x) < 999.5:
                return f"{x:.3g}{prefix}"
            x /= 1000.0
        return f"{x:.3g}P"

    def _line(self, now: float) -> str:
        elapsed = max(now - self._start, 1e-9)
        rate = self.n / elapsed
        done = self._count(self.n)
        if self.total:
            pct = 100.0 * self.n / self.total
            left = (self.total - self.n) / rate if rate > 0 else float("inf")
            eta = f", {left:.0f} s left" if left != float("inf") and left > 0 else ""
            head = f"{done}/{self._count(self.total)} {self.unit} ({pct:.0f}%)"
        else:
            head, eta = f"{done} {self.unit}", ""
        if rate <= 0:  # nothing done yet: no rate to show
            speed = ""
        elif rate < 1:  # slow units (grid cells): seconds per unit, not "0 cell/s"
            speed = f"{1 / rate:.0f} s/{self.unit}"
        else:
            speed = f"{self._count(rate)} {self.unit}/s"
        return f"{self.desc}: {head}" + (f", {speed}" if speed else "") + eta

    def update(self, n: float = 1) -> None:
        self.n += n
        if self.stream is None:
            return
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            self._shown = True
            print(self._line(now), file=self.stream, flush=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.stream is not None and self._shown:
            now = time.monotonic()
            print(f"{self._line(now)} (done in {now - self._start:.0f} s)", file=self.stream,
                  flush=True)  # fmt: skip

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def track(
    items: Iterable[T],
    *,
    total: float | None,
    desc: str,
    unit: str = "it",
    enabled: bool | None = None,
) -> Iterator[T]:
    """Iterate ``items``, counting them on a :func:`progress` bar."""
    with progress(total=total, desc=desc, unit=unit, enabled=enabled) as bar:
        for item in items:
            yield item
            bar.update(1)
