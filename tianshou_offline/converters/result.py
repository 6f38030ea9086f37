"""What every converter returns: :class:`ConversionResult`.

Every converter has the same shape, ``convert_<source>(source, output, *, options…) ->
ConversionResult``: paths (or a name the converter resolves) in, a typed result out. The CLI
and the example scripts call converters directly and read their results from it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ConversionResult:
    """What one conversion wrote.

    A result is path-like when the conversion wrote one file (``load_buffer(convert_d4rl(...))``
    works); a multi-file conversion lists its files in :attr:`outputs` and its per-file
    results in :attr:`parts`.
    """

    source: Path | str
    """What was read: a file, a directory, or the name/id the converter resolved."""
    outputs: tuple[Path, ...]
    """The files written (or, with ``skipped``, found already converted), in order."""
    num_transitions: int
    """Transitions in the outputs (all parts together)."""
    num_episodes: int
    """Episodes in the outputs (episodes cut at a file's end count once per file)."""
    seconds: float
    """Wall-clock time of the conversion, in seconds."""
    skipped: bool = False
    """The output was already converted and verified (``resume``); nothing was written."""
    details: Mapping[str, int | float | str] = field(default_factory=dict)
    """Source-specific counts (e.g. ``rows_dropped`` for D4RL, ``skipped_episodes`` for RLDS)."""
    parts: tuple[ConversionResult, ...] = ()
    """Per-file results of a multi-file conversion (e.g. one per RL Unplugged shard)."""

    @property
    def output(self) -> Path:
        """The output file of a single-file conversion.

        :raises ValueError: the conversion wrote several files (see :attr:`outputs`).
        """
        if len(self.outputs) != 1:
            raise ValueError(
                f"the conversion of {self.source} wrote {len(self.outputs)} files; use .outputs"
            )
        return self.outputs[0]

    def __fspath__(self) -> str:
        return os.fspath(self.output)

    @property
    def transitions_per_second(self) -> float:
        return self.num_transitions / self.seconds if self.seconds > 0 else float("nan")
