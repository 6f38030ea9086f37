"""Fixtures of the algorithm tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from tianshou.data import ReplayBuffer

from benchmarks._lib.experts.pendulum import cached_expert_file


@pytest.fixture(scope="module")
def expert_buffer(expert_data_dir: Path) -> ReplayBuffer:
    """The session's Pendulum-v1 expert data (``benchmarks/_lib/experts/pendulum.py``, gathered
    once per session), loaded once per module."""
    from tianshou_offline import load_buffer

    return load_buffer(cached_expert_file(expert_data_dir))


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Each algorithm test on one torch thread, the thread count restored after it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
