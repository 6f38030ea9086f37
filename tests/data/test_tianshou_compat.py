"""Compatibility both ways with Tianshou's own HDF5 files, and the D4RL key layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import gymnasium as gym
import h5py
import numpy as np
import pytest
from tianshou.data import Batch, Collector, CollectStats, ReplayBuffer, VectorReplayBuffer
from tianshou.env import DummyVectorEnv

from tests.helpers.buffers import episodes_of, fill
from tianshou_offline import BufferWriter, load_buffer, save_buffer


def _write_ours(path: Path, lengths: list[int], seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    eps = []
    with BufferWriter(path, observation_space=gym.spaces.Box(-5, 5, (3,))) as w:
        for i, n in enumerate(lengths):
            obs = rng.normal(size=(n + 1, 3)).astype(np.float32)
            ep = {
                "obs": obs[:-1], "obs_next": obs[1:], "act": rng.integers(0, 4, n),
                "rew": rng.normal(size=n), "terminated": np.arange(n) == n - 1,
                "truncated": np.zeros(n, bool), "info": {"t": np.arange(n)},
            }
            if i % 2:
                ep["terminated"], ep["truncated"] = ep["truncated"], ep["terminated"]
            w.add_episode(**ep)
            eps.append(ep)
    return eps


def test_our_file_loads_with_tianshou_load_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "ours.hdf5"
    _write_ours(path, [5, 8, 3, 9])
    ours = load_buffer(path)
    theirs = ReplayBuffer.load_hdf5(str(path))
    assert len(theirs) == len(ours) == 25
    idx = np.arange(25)
    np.testing.assert_array_equal(theirs.next(idx), ours.next(idx))
    np.testing.assert_array_equal(theirs.prev(idx), ours.prev(idx))
    # same seed → same sampled indices → same transitions
    np.random.seed(123)
    b1, i1 = theirs.sample(64)
    np.random.seed(123)
    b2, i2 = ours.sample(64)
    np.testing.assert_array_equal(i1, i2)
    for key in ("obs", "act", "rew", "terminated", "truncated", "done", "obs_next"):
        np.testing.assert_array_equal(b1[key], b2[key])
    info1: Any = b1.info  # Batch fields are untyped unions
    info2: Any = b2.info
    np.testing.assert_array_equal(info1.t, info2.t)


def test_tianshou_replaybuffer_file_loads(tmp_path: Path) -> None:
    buf = ReplayBuffer(30)
    fill(buf, [7, 9, 11, 6, 8], seed=1, last_unfinished=True)  # 41 adds: wrapped
    path = tmp_path / "rb.hdf5"
    buf.save_hdf5(str(path))
    loaded = load_buffer(path)
    assert len(loaded) == 30
    order = np.concatenate([np.arange(buf._insertion_idx, 30), np.arange(buf._insertion_idx)])
    got, want = loaded[np.arange(30)], buf[order]
    for key in ("obs", "act", "rew", "terminated", "truncated", "obs_next"):
        np.testing.assert_array_equal(got[key], want[key])
    np.testing.assert_array_equal(loaded.info.ep, buf.info.ep[order])
    # boundaries agree with the original buffer (mapped through the unrolling)
    idx = np.arange(30)
    np.testing.assert_array_equal(order[loaded.next(idx)], buf.next(order))
    # the oldest rows are the tail of an episode whose start was overwritten
    lengths = [len(e) for e in episodes_of(loaded)]
    assert sum(lengths) == 30 and lengths[-1] == 8  # the unfinished last episode


def test_tianshou_vector_file_loads_without_unpickling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vb = VectorReplayBuffer(40, 4)  # 4 sub-buffers of 10
    rng = np.random.default_rng(2)
    # each env has its own episode lengths; the sub-buffers wrap, the last episodes are unfinished
    ep_len = [3, 4, 6, 12]
    t = np.zeros(4, int)
    ep = np.zeros(4, int)
    for step in range(14):
        term = (t + 1) % np.array(ep_len) == 0
        vb.add(Batch(obs=rng.normal(size=(4, 2)), act=np.arange(4), rew=rng.normal(size=4),
                     terminated=term, truncated=np.zeros(4, bool),
                     obs_next=rng.normal(size=(4, 2)), info=Batch(step=np.full(4, step), ep=ep.copy())))
        t += 1
        ep += term
    path = tmp_path / "vb.hdf5"
    vb.save_hdf5(str(path))
    with h5py.File(path) as f:
        assert f["buffers"].attrs["__data_type__"] == "pickled_ndarray"
        assert f["_random_state"].attrs["__data_type__"] == "RandomState"

    import pickle

    def no_unpickling(*args: Any, **kwargs: Any) -> NoReturn:
        raise AssertionError("load_buffer must not unpickle")

    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(pickle, "load", no_unpickling)
    loaded = load_buffer(path)
    assert len(loaded) == len(vb) == 40
    # per sub-buffer chronological order, concatenated
    expected_rows = []
    for i, sub in enumerate(vb.buffers):
        ins = sub._insertion_idx
        order = np.concatenate([np.arange(ins, 10), np.arange(ins)]) if len(sub) == 10 else np.arange(len(sub))
        expected_rows.append(order + vb._offset[i])
    rows = np.concatenate(expected_rows)
    np.testing.assert_array_equal(loaded.obs, vb.obs[rows])
    np.testing.assert_array_equal(loaded.info.step, vb.info.step[rows])
    # no episode runs from one env's sub-buffer into the next one's
    for ep_rows in episodes_of(loaded):
        assert len(set(rows[ep_rows] // 10)) == 1, rows[ep_rows]
        assert len(set(loaded.info.ep[ep_rows].tolist())) == 1


def test_collector_buffer_round_trip(tmp_path: Path) -> None:
    """Real data: Tianshou's Collector on CartPole into a VectorReplayBuffer."""
    envs = DummyVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(3)])
    envs.seed(0)
    vb = VectorReplayBuffer(3000, 3)

    from tianshou.algorithm.imitation.imitation_base import ImitationPolicy
    from tianshou.utils.net.common import Net

    policy = ImitationPolicy(
        actor=Net(state_shape=4, action_shape=2, hidden_sizes=[8]), action_space=envs.action_space[0]
    )
    collector = Collector[CollectStats](policy, envs, vb)
    collector.reset()
    collector.collect(n_step=900, random=True)
    path_theirs = tmp_path / "collected_tianshou.hdf5"
    vb.save_hdf5(str(path_theirs))
    path_ours = tmp_path / "collected_ours.hdf5"
    save_buffer(vb, path_ours, observation_space=envs.observation_space[0], env_id="CartPole-v1")
    a = load_buffer(path_theirs)
    b = load_buffer(path_ours)
    assert len(a) == len(b) == len(vb)
    ia = np.arange(len(a))
    for key in ("obs", "act", "rew", "terminated", "truncated", "done", "obs_next"):
        np.testing.assert_array_equal(a[ia][key], b[ia][key])
    # every episode: obs_next[t] == obs[t+1] inside the episode, and it ends where done
    for rows in episodes_of(b):
        np.testing.assert_array_equal(b.obs_next[rows[:-1]], b.obs[rows[1:]])
        assert b.done[rows[-1]] and not b.done[rows[:-1]].any()
    # and Tianshou reads our file back identically
    c = ReplayBuffer.load_hdf5(str(path_ours))
    np.testing.assert_array_equal(c.obs, b.obs)


def _d4rl_file(
    path: Path, *, next_obs: bool, timeouts: bool, dtype: type[np.floating[Any]] = np.float32
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    n = 30
    obs = rng.normal(size=(n, 4)).astype(dtype)
    terminals = np.zeros(n, bool)
    to = np.zeros(n, bool)
    terminals[[6, 19]] = True
    to[[12, 25]] = True
    data = {
        "observations": obs,
        "actions": rng.normal(size=(n, 2)).astype(dtype),
        "rewards": rng.normal(size=n).astype(dtype),
        "terminals": terminals,
    }
    if timeouts:
        data["timeouts"] = to
    if next_obs:
        data["next_observations"] = rng.normal(size=(n, 4)).astype(dtype)
    with h5py.File(path, "w") as f:
        for k, v in data.items():
            f.create_dataset(k, data=v, compression="gzip")
    return data


def test_d4rl_layout_with_next_observations(tmp_path: Path) -> None:
    data = _d4rl_file(tmp_path / "d.hdf5", next_obs=True, timeouts=True, dtype=np.float64)
    buf = load_buffer(tmp_path / "d.hdf5")
    assert len(buf) == 30
    np.testing.assert_array_equal(buf.obs, data["observations"])
    np.testing.assert_array_equal(buf.obs_next, data["next_observations"])
    np.testing.assert_array_equal(buf.terminated, data["terminals"])
    np.testing.assert_array_equal(buf.truncated, data["timeouts"])
    assert [len(e) for e in episodes_of(buf)] == [7, 6, 7, 6, 4]


def test_d4rl_layout_without_next_observations(tmp_path: Path) -> None:
    data = _d4rl_file(tmp_path / "d.hdf5", next_obs=False, timeouts=True)
    buf = load_buffer(tmp_path / "d.hdf5")
    # timeout rows 12 and 25 and the final row 29 have no successor: dropped
    keep = np.setdiff1d(np.arange(30), [12, 25, 29])
    np.testing.assert_array_equal(buf.obs, data["observations"][keep])
    inside = ~data["terminals"][keep]
    np.testing.assert_array_equal(buf.obs_next[inside], data["observations"][keep + 1][inside])
    assert buf.truncated.sum() == 2 and buf.terminated.sum() == 2
    assert [len(e) for e in episodes_of(buf)] == [7, 5, 7, 5, 3]
