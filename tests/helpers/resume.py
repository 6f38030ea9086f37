"""Kill-and-resume helpers of ``tests/test_resume.py`` and
``tests/recording/test_atari.py``: run an
example script that SIGKILLs itself at a given training step (a new interpreter, or a fork of
the test process: no start-up or imports to pay), compare two training checkpoints tensor by
tensor, and read what a run logged to TensorBoard."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from tests.helpers.examples import folder_on_path
from tianshou_offline.training import FORMAT, read_training_checkpoint

REPO = Path(__file__).resolve().parents[2]

KILLED = """
import os, runpy, signal, sys
sys.path.insert(0, os.path.dirname(sys.argv[2]))
from tianshou.trainer import OfflineTrainer, OnlineTrainer
from tianshou_offline.algorithms.deferred import OfflineStatsTrainer
calls, at = [0], int(sys.argv[1])
def counting(step):
    def counted(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == at:  # the training step at which the process dies
            os.kill(os.getpid(), signal.SIGKILL)
        return step(self, *args, **kwargs)
    return counted
for trainer in (OfflineTrainer, OfflineStatsTrainer, OnlineTrainer):  # each its own step
    trainer._training_step = counting(trainer.__dict__["_training_step"])
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_example(
    script: Path, args: list[str], cwd: Path, *, kill_at: int | None = None
) -> subprocess.CompletedProcess[str]:
    """``python script args`` (``kill_at``: SIGKILLed when it starts that training step: a
    gradient step offline, a collection step and its gradient steps online)."""
    cmd = [sys.executable, str(script), *args]
    if kill_at is not None:
        cmd = [sys.executable, "-c", KILLED, str(kill_at), str(script), *args]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "D4RL_DATASET_DIR": str(cwd / "d4rl"), "MINARI_DATASETS_PATH": str(cwd / "minari")}  # fmt: skip
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def run_in_process(script: Path, args: list[str]) -> Any:
    """The example's ``main(args)`` in this process (an uninterrupted or a resumed run: no
    interpreter to start; the example seeds every generator itself); returns what ``main``
    returns."""
    import importlib.util

    name = f"_resumed_example_{script.parent.name}_{script.stem}"
    with folder_on_path(script.parent):
        module = sys.modules.get(name)
        if module is None:
            spec = importlib.util.spec_from_file_location(name, script)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # dataclasses look their module up
            spec.loader.exec_module(module)
        return module.main(args)


def tensors(state: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of a nested state (weights, optimizer moments), by path."""
    out: dict[str, torch.Tensor] = {}
    if isinstance(state, torch.Tensor):
        out[prefix] = state
    elif isinstance(state, dict):
        for k, v in state.items():
            out.update(tensors(v, f"{prefix}/{k}"))
    elif isinstance(state, list | tuple):
        for i, v in enumerate(state):
            out.update(tensors(v, f"{prefix}/{i}"))
    return out


def assert_same_training(a_path: Path, b_path: Path, counters: tuple[int, int, int]) -> None:
    """Two training checkpoints at ``counters`` (epoch, env step, gradient step) with equal
    tensors (weights, targets, optimizer moments) and extra state (step count, schedulers)."""
    a, b = read_training_checkpoint(a_path), read_training_checkpoint(b_path)
    assert a is not None and b is not None and a["format"] == b["format"] == FORMAT
    assert (a["epoch"], a["env_step"], a["gradient_step"]) == counters
    assert (b["epoch"], b["env_step"], b["gradient_step"]) == counters
    ta, tb = tensors(a["algorithm"]), tensors(b["algorithm"])
    assert ta.keys() == tb.keys() and len(ta) > 4
    different = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert different == [], f"tensors that differ after the resume: {different}"
    assert a["algorithm"].get("_extra_state") == b["algorithm"].get("_extra_state")


def epoch_of(path: Path) -> int:
    state = read_training_checkpoint(path)
    assert state is not None, f"{path}: not a training checkpoint"
    return int(state["epoch"])


def killed_in_fork(script: Path, args: list[str], kill_at: int) -> None:
    """Run the example's ``main(args)`` in a fork of this process that SIGKILLs itself when it
    starts training step ``kill_at`` (as :func:`run_example`'s ``kill_at``); asserts that it
    died of that signal. The fork shares this process's imports, so the kill costs only the
    training up to that step."""
    import signal

    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            from tianshou.trainer import OfflineTrainer, OnlineTrainer

            from tianshou_offline.algorithms.deferred import OfflineStatsTrainer

            calls = [0]
            trainers: tuple[Any, ...] = (OfflineTrainer, OfflineStatsTrainer, OnlineTrainer)
            for trainer in trainers:  # each its own step
                step = trainer.__dict__["_training_step"]

                def counted(self: Any, *a: Any, _step: Any = step, **k: Any) -> Any:
                    calls[0] += 1
                    if calls[0] == kill_at:
                        os.kill(os.getpid(), signal.SIGKILL)
                    return _step(self, *a, **k)

                trainer._training_step = counted
            run_in_process(script, args)
        finally:
            os._exit(3)  # it finished (or failed) without being killed
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
        f"{script.name} was not killed at training step {kill_at} (status {status})"
    )


TIMED = ("time", "speed")
"""Logged values that measure time (they differ between any two runs)."""


def logged(event_file: Path) -> list[tuple[str, int, float]]:
    """The scalars of one TensorBoard event file, in the order written: (tag, step, value);
    the timings (:data:`TIMED`) left out."""
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    out = []
    for event in LegacyEventFileLoader(str(event_file)).Load():  # as written (no migration)
        for value in event.summary.value:
            if value.HasField("simple_value") and not any(t in value.tag for t in TIMED):
                out.append((value.tag, int(event.step), float(value.simple_value)))
    return out


def after(records: list[tuple[str, int, float]], counters: tuple[int, int, int]) -> list[Any]:
    """The records written after a checkpoint at ``counters`` (epoch, env step, gradient
    step), each scope by its own step: tests and collection by environment step, training
    statistics by gradient step, epoch summaries by epoch, the final evaluation always."""
    epoch, env_step, gradient_step = counters
    since = {"test": env_step, "training": env_step, "update": gradient_step, "info": epoch,
             "eval": -1}  # fmt: skip
    return [r for r in records if r[1] > since[r[0].split("/")[0]]]
