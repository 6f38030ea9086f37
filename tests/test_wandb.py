"""``--logger wandb`` (issue 29): the example scripts and ``tianshou-offline grid`` log the
typed training statistics, the test returns, the final evaluation and the run's settings to a
Weights & Biases run, read back here from the files an offline run writes
(``WANDB_MODE=offline``, no network; ``tests/helpers/wandb_runs.py``) and compared with what the trainer
handed the logger and what the run returned."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.resume import REPO, run_in_process
from tests.helpers.wandb_runs import read_run

pytest.importorskip("wandb")

SCRIPT = REPO / "examples" / "mujoco" / "d4rl_td3_bc.py"


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, dict[str, Any]]]:
    """W&B offline and quiet; every ``log_*_data`` call the trainer makes, recorded (scope,
    step, the statistics as handed over)."""
    from tianshou_offline.loggers import WandbLogger, flatten_log_data

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    calls: list[tuple[str, int, dict[str, Any]]] = []
    for scope in ("update", "test"):
        method = f"log_{scope}_data"
        original = getattr(WandbLogger, method)

        def spy(self: Any, data: dict[str, Any], step: int, _o: Any = original,
                _s: str = scope) -> None:  # fmt: skip
            calls.append((_s, step, flatten_log_data(data)))
            _o(self, data, step)

        monkeypatch.setattr(WandbLogger, method, spy)
    return calls


def _same_rows(run_rows: dict[int, dict[str, Any]], calls: list[tuple[str, int, dict[str, Any]]],
               scope: str) -> int:  # fmt: skip
    """Every row the trainer handed over in ``scope`` (past the logger's interval) is in the
    run's history under its step, value for value; returns how many."""
    checked = 0
    for s, step, data in calls:
        if s != scope or step not in run_rows:
            continue
        row = run_rows[step]
        assert {f"{scope}/{k}": v for k, v in data.items()}.items() <= row.items(), (step, row)
        checked += 1
    return checked


def test_example_logs_stats_returns_and_settings(
    pendulum_random: Path, tmp_path: Path, offline: list[tuple[str, int, dict[str, Any]]]
) -> None:
    from tianshou_offline.algorithms.continuous.td3_bc import TD3BCTrainingStats

    args = ["--expert-data-task", str(pendulum_random), "--epoch", "2", "--step-per-epoch", "10",
            "--test-num", "1", "--hidden-sizes", "16", "--batch-size", "32", "--threads", "1",
            "--show-progress", "0", "--logger", "wandb", "--log-interval", "3",
            "--wandb-project", "tests", "--logdir", str(tmp_path)]  # fmt: skip
    result = run_in_process(SCRIPT, args)
    log_path = Path(result["log_path"])
    run = read_run(log_path)
    assert run.project == "tests" and run.group == "Pendulum-v1__td3_bc"
    assert run.name == "__".join(log_path.parts[-4:])  # Pendulum-v1__td3_bc__0__TIME
    # the settings: the flags and the algorithm's config
    assert run.config["batch_size"] == 32 and run.config["epoch"] == 2
    assert run.config["algo"]["hidden_sizes"] == [16]
    assert run.config["expert_data_task"] == str(pendulum_random)
    # the typed statistics, every 3rd gradient step, as the algorithm returned them
    updates = run.rows("update/update_step")
    steps = sorted(updates)
    assert len(steps) == 7 and {b - a for a, b in itertools.pairwise(steps)} == {3}, steps
    for name in TD3BCTrainingStats.__dataclass_fields__:
        if name not in ("train_time", "smoothed_loss"):
            assert all(isinstance(r[f"update/{name}"], float) for r in updates.values()), name
    assert _same_rows(updates, offline, "update") == len(updates)
    # the test returns of every epoch (and the one before training)
    tests = run.rows("test/env_step")
    assert sorted(tests) == [0, 10 * 32, 20 * 32]
    assert _same_rows(tests, offline, "test") == 3
    means = [tests[s]["test/returns_stat/mean"] for s in sorted(tests)]
    assert max(means) == pytest.approx(result["best_reward"], abs=0)
    # the final evaluation, as the script printed and returned it
    assert run.summary["eval/return_mean"] == result["final_return_mean"]
    assert run.summary["eval/episodes"] == 1
    assert run.run_id == _run_id(log_path)  # a resumed run continues this W&B run


def _run_id(directory: Path) -> str:
    from tianshou_offline.loggers import run_id_for

    return run_id_for(directory)


def test_grid_logs_each_cell_to_its_run(
    pendulum_random: Path, tmp_path: Path, offline: list[tuple[str, int, dict[str, Any]]]
) -> None:
    from tianshou_offline.cli import main

    spec = tmp_path / "grid.json"
    spec.write_text(json.dumps({
        "output": str(tmp_path / "out"), "datasets": [str(pendulum_random)],
        "algorithms": {"td3bc": {"hidden_sizes": [[16]]}}, "seeds": 1,
        "budget": {"epochs": 2, "steps_per_epoch": 5, "batch_size": 16, "test_episodes": 1,
                   "eval_episodes": 2},
    }))  # fmt: skip
    assert main(["grid", str(spec), "--no-ray", "--no-progress", "--logger", "wandb",
                 "--wandb-project", "grid-tests"]) == 0  # fmt: skip
    (cell,) = (tmp_path / "out" / "cells").iterdir()
    result = json.loads((cell / "result.json").read_text())
    run = read_run(cell)
    assert (run.project, run.name, run.group) == ("grid-tests", result["key"], result["group"])
    assert run.config == {"_wandb": {}, **json.loads(json.dumps(result["spec"]))}
    tests = run.rows("test/env_step")
    assert [[s // 16, tests[s]["test/returns_stat/mean"]] for s in sorted(tests)] == result["curve"]
    assert _same_rows(tests, offline, "test") == 3
    assert _same_rows(run.rows("update/update_step"), offline, "update") == 2  # one per epoch
    assert run.summary["eval/return_mean"] == result["final_return_mean"]
    assert not list(cell.glob("events.out.tfevents*"))  # W&B instead of TensorBoard
