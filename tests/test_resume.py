"""Interrupted training resumes exactly (issue 30, item 4): an example script killed with
SIGKILL in the middle of an epoch and restarted with ``--resume-path .../last.pt`` (or
``--resume``) ends with the same weights, optimizer states, step count and counters as a run
that was never interrupted, bit for bit on CPU, and logs what that run logged after the
checkpoint.

Every example shares the resume code (:mod:`tianshou_offline.training` through
``examples/mujoco/d4rl_common.py``, ``finetune_common.py`` and ``examples/atari/_common.py``):
here a TD3+BC run killed as a new interpreter (the script's own entry point), and every
MuJoCo example killed as a fork of the test process (cheap: no start-up);
``tests/recording/test_atari.py`` kills the Atari examples.
"""

from __future__ import annotations

import random
import signal
from pathlib import Path

import pytest

from tests.helpers.pendulum import SHORT_TASK
from tests.helpers.resume import (
    REPO,
    after,
    assert_same_training,
    epoch_of,
    killed_in_fork,
    logged,
    run_example,
    run_in_process,
)
from tianshou_offline.training import read_training_checkpoint

SCRIPT = REPO / "examples" / "mujoco" / "d4rl_td3_bc.py"


def _last(logdir: Path) -> Path:
    (path,) = logdir.glob("Pendulum-v1/td3_bc/0/*/last.pt")
    return path


def test_killed_example_resumes_to_the_same_weights(pendulum_random: Path, tmp_path: Path) -> None:
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


EVERY_SCRIPT = sorted(
    p.name for p in (REPO / "examples" / "mujoco").glob("*.py")
    if p.stem.startswith(("d4rl_", "finetune_")) and not p.stem.endswith("_common")
)  # fmt: skip
SMALL = {"d4rl_dt.py": ["--embed-dim", "8", "--n-layers", "1", "--context", "4",
                        "--warmup-steps", "2", "--target-return", "-200", "--rtg-scale", "100"],
         **{f"{kind}_{ensemble}.py": ["--num-critics", "3"] for kind in ("d4rl", "finetune")
            for ensemble in ("sac_n", "edac", "lb_sac")}}  # fmt: skip


@pytest.mark.parametrize("script", EVERY_SCRIPT)
def test_every_example_killed_midway_resumes_exactly(
    script: str, pendulum_random: Path, tmp_path: Path
) -> None:
    """Every MuJoCo example (offline, Decision Transformer, fine-tuning) SIGKILLed at a
    random training step of its second epoch, after the first checkpoint, and continued with
    ``--resume`` ends with the weights, optimizer states and counters of a run never killed,
    and writes to TensorBoard what that run wrote after the checkpoint, value for value
    (test returns, every step's training statistics and their moving averages, the epoch
    summaries with the best test, the final evaluation; timings aside), its results (test
    returns, best test, final evaluation of the best policy) equal.

    Checked to fail on the code before the resume restored the trainer's state and reseeded
    the test environments for each test: the resumed run's tests started from other initial
    states (other returns), it logged the checkpoint's test again, restarted the moving
    averages and the logger's update counter, and took its first test as the best policy."""
    path = REPO / "examples" / "mujoco" / script
    steps = 4
    online = script.startswith("finetune_")
    budget = ["--online-steps", str(2 * steps)] if online else ["--epoch", "2"]
    sizes = [] if script == "d4rl_dt.py" else ["--hidden-sizes", "8"]  # DT: --embed-dim
    args = ["--expert-data-task", str(pendulum_random), "--task", SHORT_TASK, *budget,
            "--step-per-epoch", str(steps), "--test-num", "1", *sizes,
            "--batch-size", "16", "--threads", "1", "--logger", "tensorboard",
            "--log-interval", "1", "--show-progress", "0", *SMALL.get(script, []),
            *(["--online-buffer-size", "100"] if online else [])]  # fmt: skip
    straight = run_in_process(path, [*args, "--logdir", str(tmp_path / "straight")])
    killed_in_fork(path, [*args, "--logdir", str(tmp_path / "killed")],
                   kill_at=random.Random(script).randint(steps + 1, 2 * steps))  # fmt: skip
    (run_dir,) = (tmp_path / "killed").glob(f"{SHORT_TASK}/*/0/*")
    at_kill = read_training_checkpoint(run_dir / "last.pt")
    assert at_kill is not None and at_kill["epoch"] == 1
    counters = (at_kill["epoch"], at_kill["env_step"], at_kill["gradient_step"])
    before = set(run_dir.glob("events.out.tfevents*"))
    resumed = run_in_process(path, [*args, "--logdir", str(tmp_path / "killed"), "--resume"])
    assert resumed["log_path"] == str(run_dir)  # the run's own directory
    (done,) = (tmp_path / "straight").glob(f"{SHORT_TASK}/*/0/*/last.pt")
    state = read_training_checkpoint(done)
    assert state is not None
    end = (state["epoch"], state["env_step"], state["gradient_step"])
    assert_same_training(done, run_dir / "last.pt", end)
    (straight_events,) = done.parent.glob("events.out.tfevents*")
    (resumed_events,) = set(run_dir.glob("events.out.tfevents*")) - before
    expected = after(logged(straight_events), counters)
    assert any(tag.startswith("test/") for tag, _, _ in expected)
    assert any(tag.startswith("update/") for tag, _, _ in expected)
    assert logged(resumed_events) == expected
    assert len(straight["test_returns"]) == 3  # before training and after each epoch
    for key in ("test_returns", "best_reward", "final_return_mean"):
        assert resumed[key] == straight[key], key
