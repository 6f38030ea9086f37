"""A newcomer's path through the command (issue 13): no TensorFlow in commands that do not
read TFRecords through it, honest progress, and output that names what it counts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from tianshou_offline.progress import PlainProgress, progress

_PROBE = """
import json, sys
from tianshou_offline.cli import main
code = main(sys.argv[1:])
print("\\nPROBE " + json.dumps({"code": code, "tensorflow": "tensorflow" in sys.modules,
                                "tianshou": "tianshou" in sys.modules}))
"""


def run_probe(*args: str, env: dict[str, str] | None = None) -> tuple[dict[str, object], str]:
    res = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    line = [x for x in res.stdout.splitlines() if x.startswith("PROBE ")][-1]
    return json.loads(line[len("PROBE "):]), res.stdout + res.stderr


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rec") / "cp.hdf5"
    doc, _ = run_probe("record", "--env", "CartPole-v1", "--policy", "random", "--episodes", "3",
                       "-o", str(out))  # fmt: skip
    assert doc["code"] == 0 and not doc["tensorflow"]
    return out


def test_no_tensorflow_in_commands(recorded: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")  # only meaningful where TensorFlow is installed
    d4rl = tmp_path / "d.hdf5"
    rng = np.random.default_rng(0)
    with h5py.File(d4rl, "w") as f:
        f["observations"] = rng.normal(size=(50, 3)).astype(np.float32)
        f["actions"] = rng.uniform(-1, 1, size=(50, 1)).astype(np.float32)
        f["rewards"] = rng.normal(size=50).astype(np.float32)
        f["terminals"] = np.zeros(50, bool)
        f["timeouts"] = np.arange(50) % 25 == 24
    commands = [
        ("inspect", str(recorded)),
        ("convert", "d4rl", str(d4rl), "-o", str(tmp_path / "o.hdf5")),
        ("convert", "tianshou", str(recorded), "-o", str(tmp_path / "t.hdf5")),
    ]
    for command in commands:
        doc, _ = run_probe(*command)
        assert doc == {"code": 0, "tensorflow": False, "tianshou": doc["tianshou"]}, command
    # a command that does import tianshou (and so TensorBoard) still keeps TensorFlow out
    doc, _ = run_probe("convert", "tianshou", str(recorded), "-o", str(tmp_path / "t2.hdf5"))
    assert doc["tianshou"] and not doc["tensorflow"]


def test_inspect_names_the_cut_episode(tmp_path: Path) -> None:
    import gymnasium as gym

    from tianshou_offline import BufferWriter

    out = tmp_path / "cut.hdf5"
    with BufferWriter(out, observation_space=gym.spaces.Box(-1, 1, (2,)),
                      action_space=gym.spaces.Discrete(2)) as w:  # fmt: skip
        for flags in ((True, False), (False, True), (False, False)):
            w.add_episode(obs=np.zeros((3, 2), np.float32), act=np.zeros(3, np.int64),
                          rew=np.ones(3, np.float32),
                          terminated=np.array([False, False, flags[0]]),
                          truncated=np.array([False, False, flags[1]]),
                          obs_next=np.zeros((3, 2), np.float32))  # fmt: skip
    _, text = run_probe("inspect", str(out))
    assert "episodes:        3 (1 terminated, 1 truncated, 1 cut: neither flag set" in text
    _, text = run_probe("inspect", str(out), "--json")
    assert '"cut_episodes": 1' in text


def test_plot_is_not_replaced_without_overwrite(recorded: Path, tmp_path: Path) -> None:
    png = tmp_path / "p.png"
    png.write_bytes(b"precious")
    res = subprocess.run([sys.executable, "-m", "tianshou_offline.cli", "inspect", str(recorded),
                          "--plot", str(png)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 2 and res.stderr.startswith("error:") and "--overwrite" in res.stderr
    assert png.read_bytes() == b"precious"
    doc, _ = run_probe("inspect", str(recorded), "--plot", str(png), "--overwrite")
    assert doc["code"] == 0 and png.read_bytes().startswith(b"\x89PNG")


def test_plain_progress_lines_without_a_terminal(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    with open(log, "w") as fh:
        bar = progress(total=10, desc="recording X", unit="step", stream=fh, interval_s=0.0)
        assert isinstance(bar, PlainProgress)
        with bar:
            for _ in range(12):  # more than the total: a whole last episode
                bar.update(1)
    lines = log.read_text().splitlines()
    assert lines and all("\r" not in x and "\x1b" not in x for x in lines)
    assert lines[0].startswith("recording X: 1/10 step (10%)")
    assert "(done in" in lines[-1]
    # silent when the work ends within the first interval (short runs, tests)
    with open(log, "w") as fh, progress(total=3, desc="d", stream=fh) as quiet:
        quiet.update(3)
    assert log.read_text() == ""


def test_record_steps_progress_stops_at_its_total(tmp_path: Path) -> None:
    out = tmp_path / "s.hdf5"
    doc, text = run_probe("record", "--env", "CartPole-v1", "--policy", "random", "--steps",
                          "30", "-o", str(out), env={"TIANSHOU_OFFLINE_PROGRESS_INTERVAL": "0"})  # fmt: skip
    assert doc["code"] == 0
    counts = [line for line in text.splitlines() if line.startswith("recording CartPole-v1:")]
    assert counts and all("/30 step" in x for x in counts)
    assert all(int(x.split(":")[1].split("/")[0]) <= 30 for x in counts)


_IMPORT_PROBE = """
import sys, types
if sys.argv[1:] == ["tensorflow-first"]:  # as if the user had imported TensorFlow already
    sys.modules["tensorflow"] = types.ModuleType("tensorflow")
    import tianshou_offline
else:
    from tianshou_offline import load_buffer
    from tianshou_offline.algorithms import TD3BC  # imports tianshou, and so TensorBoard
    assert "tensorboard" in sys.modules
print("tensorflow" in sys.modules, "tensorboard.compat.notf" in sys.modules)
"""


def test_library_import_is_quiet_and_tensorflow_free() -> None:
    """Issue 23: ``from tianshou_offline import load_buffer`` printed TensorFlow/CUDA lines
    (Tianshou → TensorBoard → TensorFlow) where TensorFlow is installed. The package keeps
    TensorBoard in its no-TensorFlow mode unless TensorFlow was imported first."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("only meaningful where TensorFlow is installed")
    res = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "True"] and res.stderr == "", res.stdout + res.stderr
    res = subprocess.run([sys.executable, "-c", _IMPORT_PROBE, "tensorflow-first"],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[1] == "False"  # TensorBoard keeps the user's TensorFlow


def test_grid_without_ray_for_a_small_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Issue 23: a 2-cell grid paid Ray's start-up (142 s wall for 28 s of training), printed
    '0 cell/s' and '± 0.0'. A small local grid runs in this process (Ray only when asked, for
    a cluster, a Ray already started, or from RAY_MIN_CELLS cells with room for two at once),
    the cell line says what its spread is over, the progress line has no zero rate, and a
    last line says where the time went."""
    from tianshou_offline.cli import main
    from tianshou_offline.quickstart import record_cartpole_expert
    from tianshou_offline.scale import grid as sg

    one = [sg.Cell("il", "d.hdf5", seed=0, budget=sg.Budget())]
    assert not sg.choose_ray(one * 2, None, 8, None) or "ray" in sys.modules
    assert sg.choose_ray(one * 2, "auto", None, None) and sg.choose_ray(one, None, 1, True)
    if "ray" not in sys.modules:
        assert sg.choose_ray(one * sg.RAY_MIN_CELLS, None, 2, None)
        assert not sg.choose_ray(one * sg.RAY_MIN_CELLS, None, 1, None)  # room for one only
    data = record_cartpole_expert(tmp_path / "cp.hdf5", episodes=3, eps=0.25, seed=0)
    spec = tmp_path / "grid.json"
    budget = {"epochs": 1, "steps_per_epoch": 20, "batch_size": 32, "test_episodes": 1,
              "eval_episodes": 2}  # fmt: skip
    spec.write_text(json.dumps({"output": str(tmp_path / "runs"), "datasets": [str(data)],
                                "algorithms": ["il"], "seeds": 1, "budget": budget}))  # fmt: skip
    monkeypatch.setenv("TIANSHOU_OFFLINE_PROGRESS_INTERVAL", "0")
    assert main(["grid", str(spec)]) == 0  # the default for one cell: no Ray
    out, err = capsys.readouterr()
    assert "time: " in out and "no Ray (cells in this process" in out, out
    assert "over 2 evaluation episodes" in out and "± 0.0" not in out
    assert "| il on cp | 1 |" in out and "(1 seed)" in out
    assert not re.search(r"(?<![\d.])0 cell/s", err), err  # "10 cell/s" is a rate, "0 cell/s" not
    assert "grid cells in this process: 1/1 cell" in err, err


def test_inspect_does_not_import_tianshou(recorded: Path) -> None:
    """``inspect`` is a fraction of a second: its memory note asks for the available memory
    without importing tianshou (which data.ondisk does: 4 s on a busy machine)."""
    doc, _ = run_probe("inspect", str(recorded))
    assert doc["code"] == 0 and doc["tianshou"] is False, doc
