"""Interrupted training resumes exactly (issue 30, item 4): an example script killed with
SIGKILL in the middle of an epoch and restarted with ``--resume-path .../last.pt`` ends with
the same weights, optimizer states, step count and counters as a run that was never
interrupted, bit for bit on CPU.

Every example shares the resume code (:mod:`tianshou_offline.training` through
``examples/mujoco/d4rl_common.py`` and ``examples/atari/_common.py``); here the MuJoCo-style
TD3+BC (target networks, a policy delay on the step count, noise from torch's generator,
mini-batches from numpy's); ``tests/recording/test_atari.py`` kills and resumes an Atari example.
"""

from __future__ import annotations

import random
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.resume import REPO, assert_same_training, epoch_of, run_example, run_in_process
from tianshou_offline.training import read_training_checkpoint

SCRIPT = REPO / "examples" / "mujoco" / "d4rl_td3_bc.py"


def _last(logdir: Path) -> Path:
    (path,) = logdir.glob("Pendulum-v1/td3_bc/0/*/last.pt")
    return path


def test_killed_example_resumes_to_the_same_weights(
    pendulum_random: Path, tmp_path: Path
) -> None:
    args = ["--expert-data-task", str(pendulum_random), "--epoch", "3", "--step-per-epoch", "20",
            "--test-num", "1", "--hidden-sizes", "16", "--batch-size", "32", "--threads", "1",
            "--logger", "none", "--show-progress", "0"]  # fmt: skip
    run_in_process(SCRIPT, [*args, "--logdir", str(tmp_path / "straight")])
    # killed at the 31st of 60 gradient steps: in the middle of the second epoch
    killed = run_example(SCRIPT, [*args, "--logdir", str(tmp_path / "killed")], tmp_path,
                         kill_at=31)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    last = _last(tmp_path / "killed")
    assert epoch_of(last) == 1  # the checkpoint of the first epoch
    run_in_process(SCRIPT, [*args, "--resume-path", str(last)])
    assert_same_training(_last(tmp_path / "straight"), last, (3, 3 * 20 * 32, 60))


FINETUNE = REPO / "examples" / "mujoco" / "finetune_td3_bc.py"


def test_killed_finetuning_resumes_to_the_same_weights_and_returns(
    pendulum_random: Path, tmp_path: Path
) -> None:
    """Fine-tuning (issue 30): the online buffer, the generators and the counters come back
    from ``last.pt``; every epoch collects from environments seeded for it and every test
    starts from the same seeded states, so the killed-and-resumed run (``--resume``: no
    path named) ends with the uninterrupted run's weights and logged test returns.
    Fails when the per-epoch reseeding is removed (weights differ) or the online buffer is
    not restored."""
    args = ["--expert-data-task", str(pendulum_random), "--task", "Pendulum-v1",
            "--online-steps", "60", "--step-per-epoch", "20", "--online-buffer-size", "1000",
            "--test-num", "1", "--hidden-sizes", "16", "--batch-size", "32", "--threads", "1",
            "--logger", "none", "--show-progress", "0"]  # fmt: skip
    straight = run_in_process(FINETUNE, [*args, "--logdir", str(tmp_path / "straight")])
    # killed at the 31st of 60 collection steps: in the middle of the second epoch
    killed = run_example(FINETUNE, [*args, "--logdir", str(tmp_path / "killed")], tmp_path,
                         kill_at=31)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    (last,) = (tmp_path / "killed").glob("Pendulum-v1/finetune_td3_bc/0/*/last.pt")
    assert epoch_of(last) == 1
    resumed = run_in_process(FINETUNE, [*args, "--logdir", str(tmp_path / "killed"), "--resume"])
    assert resumed["log_path"] == str(last.parent)  # the run's own directory
    (done,) = (tmp_path / "straight").glob("Pendulum-v1/finetune_td3_bc/0/*/last.pt")
    assert_same_training(done, last, (3, 60, 60))
    assert len(straight["test_returns"]) == 4  # before training and after each epoch
    assert resumed["test_returns"] == straight["test_returns"]
    assert resumed["final_return_mean"] == straight["final_return_mean"]
    assert resumed["online_env_steps"] == straight["online_env_steps"] == 60


class _Stopped(BaseException):
    """Stands in for SIGKILL in this process: nothing of the run's own code handles it."""


EVERY_SCRIPT = sorted(
    p.name for p in (REPO / "examples" / "mujoco").glob("*.py")
    if p.stem.startswith(("d4rl_", "finetune_")) and not p.stem.endswith("_common")
)  # fmt: skip
SMALL = {"d4rl_dt.py": ["--embed-dim", "8", "--n-layers", "1", "--context", "4",
                        "--warmup-steps", "2", "--target-return", "-200", "--rtg-scale", "100"]}  # fmt: skip


@pytest.mark.parametrize("script", EVERY_SCRIPT)
def test_every_example_stopped_midway_resumes_to_the_same_weights(
    script: str, pendulum_random: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every MuJoCo example (offline and fine-tuning) stopped at a random training step of its
    second epoch, after the first checkpoint, and continued with ``--resume`` ends with the
    weights, optimizer states, counters and final evaluation of a run never stopped. (The
    stop is an exception in this process, to keep this fast; the SIGKILLed runs above, and
    ``tests/recording/test_atari.py``'s, kill a real process.) Fails when ``--resume`` does not find
    the run's checkpoint (the resumed run starts afresh and its counters differ)."""
    from tianshou.trainer import OfflineTrainer, OnlineTrainer

    from tianshou_offline.algorithms.deferred import OfflineStatsTrainer

    path = REPO / "examples" / "mujoco" / script
    steps = 4
    online = script.startswith("finetune_")
    budget = ["--online-steps", str(2 * steps)] if online else ["--epoch", "2"]
    sizes = [] if script == "d4rl_dt.py" else ["--hidden-sizes", "8"]  # DT: --embed-dim
    args = ["--expert-data-task", str(pendulum_random), "--task", "Pendulum-v1", *budget,
            "--step-per-epoch", str(steps), "--test-num", "1", *sizes,
            "--batch-size", "16", "--threads", "1", "--logger", "none", "--show-progress", "0",
            *SMALL.get(script, []), *(["--online-buffer-size", "100"] if online else [])]  # fmt: skip
    straight = run_in_process(path, [*args, "--logdir", str(tmp_path / "straight")])
    stop_at = random.Random(script).randint(steps + 1, 2 * steps)
    calls = [0]
    for trainer in (OfflineTrainer, OfflineStatsTrainer, OnlineTrainer):  # each its own step
        step = trainer.__dict__["_training_step"]

        def counted(self: Any, *a: Any, _step: Any = step, **k: Any) -> Any:
            calls[0] += 1
            if calls[0] == stop_at:
                raise _Stopped
            return _step(self, *a, **k)

        monkeypatch.setattr(trainer, "_training_step", counted)
    with pytest.raises(_Stopped):
        run_in_process(path, [*args, "--logdir", str(tmp_path / "stopped")])
    monkeypatch.undo()
    (last,) = (tmp_path / "stopped").glob("Pendulum-v1/*/0/*/last.pt")
    assert epoch_of(last) == 1
    resumed = run_in_process(path, [*args, "--logdir", str(tmp_path / "stopped"), "--resume"])
    (done,) = (tmp_path / "straight").glob("Pendulum-v1/*/0/*/last.pt")
    state = read_training_checkpoint(done)
    assert state is not None
    assert_same_training(done, last, (state["epoch"], state["env_step"], state["gradient_step"]))
    if online:  # evaluates the final weights (the offline scripts: the best test's policy,
        # whose choice after a resume starts from the resumed run's first test)
        assert resumed["final_return_mean"] == straight["final_return_mean"]
        assert resumed["test_returns"] == straight["test_returns"]
