"""Fixtures of the algorithm tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from tianshou.data import ReplayBuffer

from benchmarks._lib.experts.pendulum import cached_expert_file


@pytest.fixture(scope="module")
def expert_buffer(expert_data_dir: Path) -> ReplayBuffer:
    """The session's Pendulum-v1 expert data (``benchmarks/_lib/experts/pendulum.py``, gathered
    once per session), loaded once per module."""
    from tianshou_offline import load_buffer

    return load_buffer(cached_expert_file(expert_data_dir))
