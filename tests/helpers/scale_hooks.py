"""Fault injection for tests/scale/test_scale.py, run inside Ray workers (pickled by value).

Each hook pauses the first attempt of one task: it writes the worker's pid to
``{control}/pid`` and sleeps until the test kills that process; a later attempt (Ray's
retry) finds ``{control}/attempts`` already counted and goes on. Every attempt appends a
line to ``{control}/attempts``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _first_attempt(control: Path) -> bool:
    log = control / "attempts"
    first = not log.exists()
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\n")
    return first


def _pause(control: Path) -> None:
    tmp = control / f".pid.{os.getpid()}"
    tmp.write_text(str(os.getpid()))
    os.replace(tmp, control / "pid")
    time.sleep(120)  # killed by the test long before


@dataclass(frozen=True)
class PauseShard:
    """``before_shard`` hook: on the first attempt for the shard named ``name``, leave a
    half-written temporary beside the output (as a worker killed mid-write does) and pause."""

    name: str
    control: str

    def __call__(self, source: Path, output: Path) -> None:
        if source.name != self.name:
            return
        control = Path(self.control)
        if not _first_attempt(control):
            return
        from tianshou_offline.data.atomic import temp_path

        temp_path(output, "rlu").write_bytes(b"\x89HDF\r\n\x1a\n half a shard")
        _pause(control)


@dataclass(frozen=True)
class PauseCell:
    """``on_checkpoint`` hook: on the first attempt of the cell ``key``, pause after the
    checkpoint of epoch ``epoch``."""

    key: str
    epoch: int
    control: str

    def __call__(self, cell: Any, epoch: int, checkpoint: Path) -> None:
        if cell.key != self.key or epoch != self.epoch:
            return
        if _first_attempt(Path(self.control)):
            _pause(Path(self.control))
