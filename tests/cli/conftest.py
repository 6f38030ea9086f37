"""Fixtures of the command's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.cli_probe import run_probe


@pytest.fixture(scope="session")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CartPole-v1 file recorded by ``tianshou-offline record`` (random policy, 3 episodes)
    in a child process that did not import TensorFlow; shared by the command tests."""
    out = tmp_path_factory.mktemp("rec") / "cp.hdf5"
    doc, _ = run_probe("record", "--env", "CartPole-v1", "--policy", "random", "--episodes", "3",
                       "-o", str(out))  # fmt: skip
    assert doc["code"] == 0 and not doc["tensorflow"]
    return out
