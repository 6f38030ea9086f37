"""Caching and the command line shared by the expert-data gatherers
(:mod:`.cartpole`, :mod:`.pendulum`)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch

Gather = Callable[[Path], Path]


def cached_file(directory: str | os.PathLike[str], file_name: str, gather: Gather) -> Path:
    """``directory / file_name`` (or in ``$TIANSHOU_OFFLINE_EXPERT_CACHE`` when set),
    gathered first with ``gather(path)`` if it does not exist yet."""
    cache = os.environ.get("TIANSHOU_OFFLINE_EXPERT_CACHE")
    folder = Path(cache) if cache else Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_name
    if not path.exists():
        gather(path)
    return path


def script_main(file_name: str, gather: Gather) -> None:
    """``python -m benchmarks._lib.experts.X [OUT.hdf5]``: gather into OUT (default ``file_name``)."""
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(1)
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(file_name)
    print(gather(target))
