"""EpisodeRecorder: real gymnasium envs, metadata, Dict observations, SIGKILL safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from tianshou.data import ReplayBuffer

from tests.helpers.buffers import episodes_of
from tianshou_offline import (
    DataValidationError,
    EpisodeRecorder,
    OutputExistsError,
    load_buffer,
    read_metadata,
)
from tianshou_offline.data.stats import episode_table


def _run(env: gym.Env, episodes: int, seed: int = 0) -> list[dict[str, Any]]:
    """Drive ``env`` with random actions; return what the env produced, per episode."""
    out = []
    env.action_space.seed(seed)
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        ep: dict[str, Any] = {"obs": [], "obs_next": [], "act": [], "rew": []}
        done = False
        while not done:
            a = env.action_space.sample()
            nxt, r, te, tr, _ = env.step(a)
            ep["obs"].append(obs)
            ep["obs_next"].append(nxt)
            ep["act"].append(a)
            ep["rew"].append(r)
            obs = nxt
            done = te or tr
        ep["terminated"] = te
        ep["truncated"] = tr
        out.append(ep)
    return out


def test_records_episodes_with_metadata_and_info(tmp_path: Path) -> None:
    path = tmp_path / "rec.hdf5"
    env = EpisodeRecorder(
        gym.make("CartPole-v1", max_episode_steps=40),
        path,
        episode_metadata=lambda ep: {"ret": ep.episode_return, "is_expert": ep.length > 20,
                                     "label": "rand"},
    )
    eps = _run(env, 6)
    env.close()
    buf = load_buffer(path)
    md = read_metadata(path)
    assert md.env_id == "CartPole-v1" and md.env_spec and "CartPole" in md.env_spec
    assert md.observation_space == gym.make("CartPole-v1").observation_space
    assert md.num_episodes == 6 and len(buf) == sum(len(e["rew"]) for e in eps)
    for rows, ep in zip(episodes_of(buf), eps, strict=True):
        np.testing.assert_array_equal(buf.obs[rows], np.stack(ep["obs"]))
        np.testing.assert_array_equal(buf.obs_next[rows], np.stack(ep["obs_next"]))
        np.testing.assert_array_equal(buf.act[rows], np.stack(ep["act"]))
        assert bool(buf.terminated[rows[-1]]) == ep["terminated"]
        assert bool(buf.truncated[rows[-1]]) == (ep["truncated"] and not ep["terminated"])
    table = episode_table(path)
    np.testing.assert_allclose(table.metadata["ret"], [sum(e["rew"]) for e in eps])
    np.testing.assert_array_equal(table.metadata["is_expert"], [len(e["rew"]) > 20 for e in eps])
    assert list(table.metadata["label"]) == ["rand"] * 6
    np.testing.assert_allclose(table.returns, [sum(e["rew"]) for e in eps])


class DictObsEnv(gym.Env):
    """A tiny env with a nested Dict/Tuple observation space and a Box action."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Dict({
            "pos": gym.spaces.Box(-10, 10, (2,), np.float32),
            "meta": gym.spaces.Dict({"count": gym.spaces.Discrete(100)}),
            "pair": gym.spaces.Tuple((gym.spaces.Discrete(3), gym.spaces.Box(0, 1, (1,), np.float32))),
        })
        self.action_space = gym.spaces.Box(-1, 1, (2,), np.float32)
        self._t = 0
        self._pos = np.zeros(2, np.float32)

    def _obs(self) -> dict[str, Any]:
        return {"pos": self._pos.copy(), "meta": {"count": self._t},
                "pair": (self._t % 3, np.array([self._t / 100], np.float32))}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        self._t = 0
        self._pos = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return self._obs(), {}

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        self._t += 1
        self._pos = np.clip(self._pos + action, -10, 10).astype(np.float32)
        return self._obs(), float(-np.abs(self._pos).sum()), bool(self._t >= 5 + self._pos[0] > 8), self._t >= 12, {"dist": float(np.abs(self._pos).sum())}


def test_dict_observations_and_info_keys(tmp_path: Path) -> None:
    path = tmp_path / "dict.hdf5"
    env = EpisodeRecorder(DictObsEnv(), path, info_keys=["dist"])
    eps = _run(env, 3, seed=5)
    env.close()
    buf = load_buffer(path)
    md = read_metadata(path)
    assert md.observation_space == DictObsEnv().observation_space
    assert md.env_id is None
    rows = episodes_of(buf)
    for r, ep in zip(rows, eps, strict=True):
        np.testing.assert_array_equal(buf.obs.pos[r], np.stack([o["pos"] for o in ep["obs"]]))
        np.testing.assert_array_equal(buf.obs.meta.count[r], [o["meta"]["count"] for o in ep["obs"]])
        np.testing.assert_array_equal(buf.obs_next.pair["0"][r], [o["pair"][0] for o in ep["obs_next"]])
        np.testing.assert_array_equal(buf.info.dist[r], [float(np.abs(o["pos"]).sum()) for o in ep["obs_next"]])


def test_if_exists_modes(tmp_path: Path) -> None:
    path = tmp_path / "r.hdf5"
    env = EpisodeRecorder(gym.make("CartPole-v1"), path)
    _run(env, 2)
    env.close()
    with pytest.raises(OutputExistsError, match="r.hdf5: output exists"):
        EpisodeRecorder(gym.make("CartPole-v1"), path)
    env = EpisodeRecorder(gym.make("CartPole-v1"), path, if_exists="append")
    _run(env, 3, seed=10)
    env.close()
    assert read_metadata(path).num_episodes == 5
    env = EpisodeRecorder(gym.make("CartPole-v1"), path, if_exists="overwrite")
    # until the first new episode is committed, the old file is untouched
    assert read_metadata(path).num_episodes == 5
    _run(env, 1, seed=20)
    assert read_metadata(path).num_episodes == 1
    _run(env, 1, seed=21)
    env.close()
    assert read_metadata(path).num_episodes == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_unfinished_episode_is_not_written(tmp_path: Path) -> None:
    path = tmp_path / "u.hdf5"
    env = EpisodeRecorder(gym.make("CartPole-v1"), path)
    _run(env, 2)
    env.reset(seed=99)
    for _ in range(3):
        env.step(0)
    env.close()
    assert read_metadata(path).num_episodes == 2


RECORD_FOREVER = textwrap.dedent(
    """
    import sys, gymnasium as gym
    from tianshou_offline import EpisodeRecorder
    env = EpisodeRecorder(gym.make("CartPole-v1"), sys.argv[1], if_exists="append",
                          episode_metadata=lambda ep: {"ret": ep.episode_return})
    env.action_space.seed(0)
    obs, _ = env.reset(seed=0)
    while True:
        obs, r, te, tr, _ = env.step(env.action_space.sample())
        if te or tr:
            print(env.num_episodes, flush=True)
            obs, _ = env.reset()
    """
)


@pytest.mark.parametrize("run", range(3))
def test_sigkill_mid_run_keeps_completed_episodes(tmp_path: Path, run: int) -> None:
    path = tmp_path / "killed.hdf5"
    script = tmp_path / "rec.py"
    script.write_text(RECORD_FOREVER)
    proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    committed = 0
    target = 40 + 37 * run
    while committed < target:
        line = proc.stdout.readline()
        assert line, "recorder exited early"
        committed = int(line)
    time.sleep(0.01 * run)  # kill at different points of the recording loop
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # what the recorder printed before the kill is committed; it may have committed more
    buf = load_buffer(path)
    table = episode_table(path)
    assert len(table.lengths) >= committed
    assert len(buf) == int(table.lengths.sum())
    for rows in episodes_of(buf):
        np.testing.assert_array_equal(buf.obs_next[rows[:-1]], buf.obs[rows[1:]])
        assert buf.terminated[rows[-1]] or buf.truncated[rows[-1]]
    np.testing.assert_allclose(table.metadata["ret"], table.returns)
    # appending repairs the file; afterwards Tianshou itself can read it
    n_before = len(table.lengths)
    with pytest.raises(DataValidationError, match=r"carry metadata \['ret'\]"):
        EpisodeRecorder(gym.make("CartPole-v1"), path, if_exists="append")
    env = EpisodeRecorder(gym.make("CartPole-v1"), path, if_exists="append",
                          episode_metadata=lambda ep: {"ret": ep.episode_return})
    _run(env, 2, seed=1000)
    env.close()
    assert read_metadata(path).num_episodes == n_before + 2
    theirs = ReplayBuffer.load_hdf5(str(path))
    assert len(theirs) == len(load_buffer(path))
