"""``benchmarks/gpu_check.py`` in its CPU smoke mode: every algorithm's gradient step runs
and makes no call that would make the host wait for a GPU (counted through the same code
path as on CUDA); and the counter does see such calls."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from benchmarks import gpu_check
from benchmarks._lib.syncs import SyncCounter
from tianshou_offline.algorithms.continuous.td3_bc import TD3BC
from tianshou_offline.algorithms.registry import CONFIG_CLASSES
from tianshou_offline.algorithms.seeds import SeedIQL


def test_counter_sees_every_kind_of_sync() -> None:
    x = torch.arange(4.0)
    with SyncCounter() as counter:
        y = x * 2 + 1  # stays on the device
        assert counter.count == 0
        _ = y.sum().item()
        if y.max() > 3:  # bool() of a tensor
            pass
        _ = y[y > 2]  # boolean-mask indexing sizes its output by the data
        _ = float(y[0]), y.tolist(), y.cpu(), torch.nonzero(y)
    assert counter.count == 7
    assert any("item at test_gpu_check.py" in site for site in counter.sites)


def test_smoke_mode_every_step_is_sync_free(capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu_check.main(["--device", "cpu", "--check", "--no-keep", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    batched = [c for c in CONFIG_CLASSES if gpu_check._has_seed_batch(c.action_kind, c.name)]
    assert len(batched) >= 15  # every continuous and discrete MLP algorithm but the DT
    assert out.count("syncs/step max 0") == len(CONFIG_CLASSES) + len(batched)
    assert out.count("seed-batch  syncs/step max 0") == len(batched)


def test_smoke_mode_fails_on_a_synchronising_step(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A step that reads a loss on the host (as converting statistics with ``.item()``
    per step did) is reported and fails ``--check``."""
    original = TD3BC._update_with_batch

    def reads_a_value(self: Any, batch: Any) -> Any:
        stats = original(self, batch)
        _ = self._last_actor[0].item()
        return stats

    monkeypatch.setattr(TD3BC, "_update_with_batch", reads_a_value)
    argv = ["--device", "cpu", "--check", "--no-keep", "--algorithms", "continuous:td3bc"]
    assert gpu_check.main(argv) == 1
    assert "steps that synchronise: continuous:td3bc (eager)" in capsys.readouterr().out


def test_smoke_mode_fails_on_a_synchronising_seed_batch_step(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A seed batch whose statistics are read on the host every step (the ``.tolist()``
    of the per-seed statistics the first seed batches made) fails ``--check``."""
    original = SeedIQL._seed_stats

    def reads_them(self: Any, values: Any) -> Any:
        stats = original(self, values)
        _ = stats.seeds  # reading resolves them: one transfer
        return stats

    monkeypatch.setattr(SeedIQL, "_seed_stats", reads_them)
    argv = ["--device", "cpu", "--check", "--no-keep", "--algorithms", "continuous:iql"]
    assert gpu_check.main(argv) == 1
    out = capsys.readouterr().out
    assert "steps that synchronise: continuous:iql (seed-batch)" in out
    assert "(eager)" not in out.split("steps that synchronise:")[1]
