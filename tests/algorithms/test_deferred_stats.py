"""Statistics that stay on the device until read (``algorithms/deferred.py``):

- a step's typed statistics read as the floats the step computed (attribute access,
  ``asdict``, pickling, Tianshou's ``get_loss_stats_dict``), all fields resolved at once;
- ``run_training`` (our ``OfflineStatsTrainer``, reading the statistics once per interval)
  hands Tianshou's logger exactly what Tianshou's own ``OfflineTrainer`` hands it after every
  step: the same steps, values and moving averages.
"""

from __future__ import annotations

import pickle
from dataclasses import asdict
from typing import Any

import pytest
import torch
from tianshou.trainer import OfflineTrainer, OfflineTrainerParams
from tianshou.utils import BaseLogger
from tianshou.utils.torch_utils import policy_within_training_step

from tests.helpers.continuous import make, synthetic_buffer
from tianshou_offline.algorithms import CQLTrainingStats
from tianshou_offline.algorithms.deferred import (
    OfflineStatsTrainer,
    deferred_stats,
    resolve_stats,
)


class RecordingLogger(BaseLogger):
    """Keeps every update record the trainer writes (every step: ``update_interval=1``)."""

    def __init__(self) -> None:
        super().__init__(update_interval=1)
        self.records: list[tuple[int, dict[str, Any]]] = []

    def write(self, step_type: str, step: int, data: dict[str, Any]) -> None:
        if step_type.startswith("update"):
            self.records.append((step, {k: v for k, v in data.items() if "train_time" not in k}))

    def prepare_dict_for_logging(self, log_data: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in log_data.items():
            if isinstance(value, dict):
                out.update({f"{key}/{k}": v for k, v in value.items()})
            else:
                out[key] = value
        return out

    def finalize(self) -> None:
        pass

    def save_data(self, *args: Any, **kwargs: Any) -> None:
        pass

    def restore_data(self) -> tuple[int, int, int]:
        return 0, 0, 0

    @staticmethod
    def restore_logged_data(log_path: str) -> dict[str, Any]:
        return {}


def test_pending_fields_read_as_the_steps_floats() -> None:
    values: dict[str, torch.Tensor | float | None] = {
        "actor_loss": torch.tensor(1.5),
        "critic_loss": torch.tensor(2.25, dtype=torch.float64),
        "td_loss": torch.tensor([3.0]),
        "cql_loss": 0.5,
        "alpha": torch.tensor(0.25),
        "alpha_loss": None,
        "cql_alpha_loss": torch.tensor(0.75),
        "q_data": torch.tensor(-1.0),
        "q_policy": torch.tensor(4.0),
        "q_random": torch.tensor(5.0),
        "q_target": torch.tensor(6.0),
        "log_prob": torch.tensor(-7.0),
    }
    first = deferred_stats(CQLTrainingStats, values)
    assert first.cql_alpha_loss == 0.75  # a field with a default (None) read first
    stats = deferred_stats(CQLTrainingStats, values)
    assert stats.pending
    assert stats.critic_loss == 2.25 and isinstance(stats.critic_loss, float)
    assert not stats.pending  # one read resolved every field
    assert stats.td_loss == 3.0 and stats.cql_loss == 0.5 and stats.alpha_loss is None
    assert stats.cql_alpha is None  # a field left out takes its default
    eager = CQLTrainingStats(
        **{k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in values.items()}
    )
    fresh = deferred_stats(CQLTrainingStats, values)
    assert asdict(fresh) == asdict(eager)
    again = pickle.loads(pickle.dumps(deferred_stats(CQLTrainingStats, values)))
    assert again == eager and not again.pending
    loss_dict = deferred_stats(CQLTrainingStats, values).get_loss_stats_dict()
    assert loss_dict == eager.get_loss_stats_dict()
    many = [deferred_stats(CQLTrainingStats, values) for _ in range(3)]
    resolve_stats(many)
    assert not any(s.pending for s in many) and all(s == eager for s in many)
    with pytest.raises(TypeError, match="no field bogus"):
        deferred_stats(CQLTrainingStats, {**values, "bogus": 1.0})
    with pytest.raises(TypeError, match="'q_data'"):
        deferred_stats(CQLTrainingStats, {k: v for k, v in values.items() if k != "q_data"})


def test_a_step_returns_pending_statistics() -> None:
    algo = make("td3bc")
    buffer = synthetic_buffer()
    with policy_within_training_step(algo.policy):
        stats = algo.update(buffer, 32)
    assert stats.pending
    assert isinstance(stats.critic_loss, float) and not stats.pending


@pytest.mark.parametrize("name", ["td3bc", "cql_lagrange"])
def test_trainer_logs_what_tianshous_trainer_logs(name: str) -> None:
    """Checked to fail when the flush passes the current step number instead of each
    step's own, and when the moving averages are skipped."""
    buffer = synthetic_buffer()
    logged: list[list[tuple[int, dict[str, Any]]]] = []
    for trainer_class in (OfflineTrainer, OfflineStatsTrainer):
        torch.manual_seed(0)
        algo = make(name)
        logger = RecordingLogger()
        params = OfflineTrainerParams(
            buffer=buffer,
            max_epochs=2,
            epoch_num_steps=7,
            batch_size=32,
            test_collector=None,
            show_progress=False,
            verbose=False,
            logger=logger,
        )
        if trainer_class is OfflineTrainer:
            OfflineTrainer(algo, params).run()
        else:
            trainer = algo.create_trainer(params)
            assert isinstance(trainer, OfflineStatsTrainer)
            trainer.stats_interval = 3  # flushes mid-epoch and at each epoch's end
            trainer.run()
        logged.append(logger.records)
    plain, deferred = logged
    assert [s for s, _ in plain] == list(range(1, 15))
    assert deferred == plain
