"""The tianshou-offline command, run as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tianshou_offline import load_buffer, read_metadata


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tianshou_offline.cli", *args],
        capture_output=True, text=True, cwd=cwd, timeout=300,
    )


def assert_clean_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    err_lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(err_lines) == 1, proc.stderr
    for frag in fragments:
        assert frag in err_lines[0], err_lines[0]


def test_record_inspect_plot(tmp_path: Path) -> None:
    out = tmp_path / "cp.hdf5"
    p = cli("record", "--env", "CartPole-v1", "--policy", "scripted", "--eps", "0.1",
            "--episodes", "4", "-o", str(out), "--compression", "gzip")
    assert p.returncode == 0, p.stderr
    assert "recorded 4 episodes" in p.stdout
    md = read_metadata(out)
    assert md.num_episodes == 4 and md.provenance is not None
    assert md.provenance.extra["policy"] == "scripted"
    p = cli("inspect", str(out), "--plot", str(tmp_path / "plot.png"))
    assert p.returncode == 0, p.stderr
    for text in ("transitions:", "episodes:        4", "provenance:      source=recorded",
                 "episode return:", "obs_next", "CartPole-v1"):
        assert text in p.stdout
    png = (tmp_path / "plot.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    p = cli("inspect", str(out), "--json")
    doc = json.loads(p.stdout)
    assert doc["num_episodes"] == 4 and doc["action_space"] == {"type": "Discrete", "n": 2, "start": 0}
    assert doc["statistics"]["length"]["mean"] == pytest.approx(load_buffer(out).rew.sum() / 4)


def test_record_from_checkpoint_with_steps_and_append(tmp_path: Path) -> None:
    import gymnasium as gym
    import torch
    from tianshou.utils.net.common import Net

    from tianshou_offline.recording.policies import save_policy_checkpoint

    torch.manual_seed(0)
    net = Net(state_shape=4, action_shape=2, hidden_sizes=[16])
    ckpt = save_policy_checkpoint(tmp_path / "p.pt", net, state_shape=(4,),
                                  action_space=gym.spaces.Discrete(2), hidden_sizes=[16])
    out = tmp_path / "ck.hdf5"
    p = cli("record", "--env", "CartPole-v1", "--policy", str(ckpt), "--steps", "300", "-o", str(out))
    assert p.returncode == 0, p.stderr
    n1 = len(load_buffer(out))
    assert n1 >= 300
    p = cli("record", "--env", "CartPole-v1", "--policy", "random", "--episodes", "2", "-o", str(out))
    assert_clean_error(p, "ck.hdf5", "exists", "--append")
    p = cli("record", "--env", "CartPole-v1", "--episodes", "2", "-o", str(out), "--append")
    assert p.returncode == 0, p.stderr
    num_episodes = read_metadata(out).num_episodes
    assert num_episodes is not None and num_episodes >= 3 and len(load_buffer(out)) > n1


def test_cli_bad_inputs(tmp_path: Path) -> None:
    assert_clean_error(cli("inspect", str(tmp_path / "missing.hdf5")), "missing.hdf5", "no such file")
    txt = tmp_path / "notes.hdf5"
    txt.write_text("hello")
    assert_clean_error(cli("inspect", str(txt)), "notes.hdf5", "not an HDF5 file")
    assert_clean_error(
        cli("record", "--env", "NoSuchEnv-v9", "--episodes", "1", "-o", str(tmp_path / "o.hdf5")),
        "NoSuchEnv-v9",
    )
    assert_clean_error(
        cli("record", "--env", "CartPole-v1", "--policy", str(tmp_path / "nope.pt"), "--episodes", "1",
            "-o", str(tmp_path / "o.hdf5")),
        "nope.pt",
    )
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not a checkpoint")
    assert_clean_error(
        cli("record", "--env", "CartPole-v1", "--policy", str(bogus), "--episodes", "1",
            "-o", str(tmp_path / "o.hdf5")),
        "bogus.pt", "weights-only",
    )
    assert_clean_error(cli("record", "--env", "CartPole-v1", "-o", str(tmp_path / "o.hdf5")), "--episodes")
    assert not (tmp_path / "o.hdf5").exists()
    p = cli("record", "--bogus-flag")
    assert p.returncode == 2 and "Traceback" not in p.stderr


def test_repair_command(tmp_path: Path) -> None:
    import h5py

    out = tmp_path / "r.hdf5"
    assert cli("record", "--env", "CartPole-v1", "--episodes", "3", "-o", str(out)).returncode == 0
    n = len(load_buffer(out))
    with h5py.File(out, "a") as f:  # simulate rows written after the last commit
        f["_meta/obs"].resize(n + 7, axis=0)
    p = cli("repair", str(out))
    assert p.returncode == 0, p.stderr
    assert "3 committed episodes" in p.stdout
    with h5py.File(out) as f:
        assert f["_meta/obs"].shape[0] == n
    np.testing.assert_array_equal(load_buffer(out).obs.shape, (n, 4))


def test_convert_tianshou_file(tmp_path: Path) -> None:
    import gymnasium as gym
    from tianshou.data import Batch, ReplayBuffer

    buf = ReplayBuffer(20)
    for t in range(25):  # CartPole-shaped: 4 floats, actions 0/1
        buf.add(Batch(obs=np.array([t, -t, 0, 0], np.float32), act=t % 2, rew=1.0,
                      terminated=t % 7 == 6, truncated=False,
                      obs_next=np.array([t + 1, -t - 1, 0, 0], np.float32),
                      info={"tag": "x" if t % 2 else None}))  # fmt: skip
    src = tmp_path / "ts.hdf5"
    buf.save_hdf5(str(src))
    out = tmp_path / "ours.hdf5"
    assert_clean_error(cli("convert", "tianshou", str(src), "-o", str(out)), "ts.hdf5", "_meta/info/tag",
                       "--allow-pickle")
    assert not out.exists()
    p = cli("convert", "tianshou", str(src), "-o", str(out), "--no-info", "--env-id", "CartPole-v1")
    assert p.returncode == 0, p.stderr
    md = read_metadata(out)
    assert md.provenance is not None and md.provenance.source == "tianshou" and md.env_id == "CartPole-v1"
    # issue 23: the spaces come from --env-id (Tianshou files carry none); inspect shows them
    assert isinstance(md.observation_space, gym.spaces.Box) and md.observation_space.shape == (4,)
    assert md.action_space == gym.spaces.Discrete(2)
    shown = json.loads(cli("inspect", str(out), "--json").stdout)
    assert shown["observation_space"]["type"] == "Box" and shown["action_space"]["n"] == 2
    assert "action:          Discrete(2)" in cli("inspect", str(out)).stdout
    # data that does not fit the env's spaces: the id is kept as a label, no spaces, a warning
    mc = tmp_path / "mc.hdf5"
    p = cli("convert", "tianshou", str(src), "-o", str(mc), "--no-info", "--env-id",
            "MountainCarContinuous-v0")  # fmt: skip
    assert p.returncode == 0 and "WARNING" in p.stderr and "(4,)" in p.stderr, p.stderr
    assert "MountainCarContinuous-v0's space" in p.stderr and "no spaces stored" in p.stderr
    assert read_metadata(mc).observation_space is None and read_metadata(mc).action_space is None
    loaded = load_buffer(out)
    np.testing.assert_array_equal(loaded.obs[:, 0], np.arange(5, 25))
    assert_clean_error(cli("convert", "tianshou", str(src), "-o", str(out), "--no-info"), "exists")
