"""The on-disk format: round trips, spaces, boundaries, atomic writes and bad inputs."""

from __future__ import annotations

import pickle
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest
from _buffers import episodes_of, fill
from tianshou.data import Batch, ReplayBuffer

from tianshou_offline import (
    BufferWriter,
    DatasetFormatError,
    DataValidationError,
    OutputExistsError,
    Provenance,
    SchemaVersionError,
    SourceNotFoundError,
    UnsafeDataError,
    load_buffer,
    read_metadata,
    save_buffer,
)
from tianshou_offline.data.format import (
    space_from_dict,
    space_from_json,
    space_to_dict,
    space_to_json,
)

SPACES = [
    gym.spaces.Box(-1.0, 1.0, (3,), np.float32),
    gym.spaces.Box(
        low=np.array([-np.inf, 0.0, -2.0]), high=np.array([np.inf, 1.0, 5.0]), dtype=np.float64
    ),
    gym.spaces.Box(0, 255, (84, 84, 4), np.uint8),
    gym.spaces.Discrete(6),
    gym.spaces.Discrete(3, start=-1),
    gym.spaces.MultiDiscrete([3, 4, 5]),
    gym.spaces.MultiBinary(7),
    gym.spaces.MultiBinary([2, 3]),
    gym.spaces.Text(max_length=12, charset="abc"),
    gym.spaces.Dict(
        {
            "pos": gym.spaces.Box(-1, 1, (2,), np.float32),
            "inner": gym.spaces.Dict({"k": gym.spaces.Discrete(4)}),
        }
    ),
    gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Box(0, 1, (2, 2), np.float32))),
]


@pytest.mark.parametrize("space", SPACES, ids=lambda s: type(s).__name__)
def test_space_json_round_trip(space: gym.Space) -> None:
    text = space_to_json(space)
    assert "pickle" not in text
    back = space_from_json(text)
    assert back == space
    assert space_from_dict(space_to_dict(space)) == space


def test_unknown_space_is_rejected() -> None:
    from tianshou_offline import SpaceSerializationError

    with pytest.raises(SpaceSerializationError, match="Graph"):
        space_to_dict(gym.spaces.Graph(gym.spaces.Box(0, 1, (2,)), None))
    with pytest.raises(SpaceSerializationError, match="unknown space type 'Foo'"):
        space_from_dict({"type": "Foo"})


def _episode(rng: np.random.Generator, length: int, *, last: str = "terminated") -> dict:
    obs = rng.normal(size=(length + 1, 3)).astype(np.float32)
    term = np.zeros(length, bool)
    trunc = np.zeros(length, bool)
    if last == "terminated":
        term[-1] = True
    elif last == "truncated":
        trunc[-1] = True
    return {
        "obs": obs[:-1],
        "obs_next": obs[1:],
        "act": rng.integers(0, 5, size=length),
        "rew": rng.normal(size=length),
        "terminated": term,
        "truncated": trunc,
    }


def test_round_trip_every_column_type(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    path = tmp_path / "all.hdf5"
    obs_space = gym.spaces.Dict(
        {
            "image": gym.spaces.Box(0, 255, (5, 5), np.uint8),
            "state": gym.spaces.Dict({"x": gym.spaces.Box(-1, 1, (2,), np.float64)}),
            "flag": gym.spaces.MultiBinary(1),
            "pair": gym.spaces.Tuple((gym.spaces.Discrete(3), gym.spaces.Box(0, 1, (2,), np.float32))),
        }
    )
    act_space = gym.spaces.Box(-2, 2, (2,), np.float32)
    episodes = []
    for length, last in ((4, "terminated"), (3, "truncated"), (5, "terminated")):
        n1 = length + 1
        obs = {
            "image": rng.integers(0, 255, size=(n1, 5, 5), dtype=np.uint8),
            "state": {"x": rng.normal(size=(n1, 2))},
            "flag": rng.integers(0, 2, size=(n1, 1)).astype(np.int8),
            "pair": (rng.integers(0, 3, size=n1), rng.random((n1, 2)).astype(np.float32)),
        }

        def cut(tree, sl):
            if isinstance(tree, dict):
                return {k: cut(v, sl) for k, v in tree.items()}
            if isinstance(tree, tuple):
                return tuple(cut(v, sl) for v in tree)
            return tree[sl]

        ep = _episode(rng, length, last=last)
        ep["obs"] = cut(obs, slice(0, -1))
        ep["obs_next"] = cut(obs, slice(1, None))
        ep["act"] = rng.uniform(-2, 2, size=(length, 2)).astype(np.float32)
        ep["info"] = {"cost": rng.random(length), "sub": {"ok": rng.random(length) > 0.5}}
        episodes.append(ep)
    with BufferWriter(
        path,
        observation_space=obs_space,
        action_space=act_space,
        env_id="Fake-v0",
        provenance=Provenance(source="recorded", dataset_id="unit"),
        compression="gzip",
        compression_opts=4,
    ) as w:
        for i, ep in enumerate(episodes):
            w.add_episode(**ep, metadata={"idx": i, "name": f"ep{i}", "good": i % 2 == 0})
    md = read_metadata(path)
    assert md.observation_space == obs_space and md.action_space == act_space
    assert md.env_id == "Fake-v0" and md.num_episodes == 3 and md.num_transitions == 12
    assert md.provenance is not None and md.provenance.source == "recorded"
    with h5py.File(path) as f:
        assert f["_meta/obs/image"].compression == "gzip"
        assert f["_meta/obs/image"].chunks is not None
        assert list(f["tianshou_offline/episodes/metadata/name"].asstr()[:]) == ["ep0", "ep1", "ep2"]
    buf = load_buffer(path)
    assert len(buf) == 12
    row = 0
    for ep in episodes:
        n = len(ep["rew"])
        sl = np.arange(row, row + n)
        b = buf[sl]
        np.testing.assert_array_equal(b.obs.image, ep["obs"]["image"])
        assert b.obs.image.dtype == np.uint8
        np.testing.assert_array_equal(b.obs.state.x, ep["obs"]["state"]["x"])
        np.testing.assert_array_equal(b.obs.flag, ep["obs"]["flag"])
        np.testing.assert_array_equal(b.obs.pair["0"], ep["obs"]["pair"][0])
        np.testing.assert_array_equal(b.obs_next.pair["1"], ep["obs_next"]["pair"][1])
        np.testing.assert_array_equal(b.act, ep["act"])
        np.testing.assert_array_equal(b.rew, ep["rew"])
        np.testing.assert_array_equal(b.terminated, ep["terminated"])
        np.testing.assert_array_equal(b.truncated, ep["truncated"])
        np.testing.assert_array_equal(b.info.cost, ep["info"]["cost"])
        np.testing.assert_array_equal(b.info.sub.ok, ep["info"]["sub"]["ok"])
        row += n


@pytest.mark.parametrize("compression", [None, "gzip", "lzf"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8, np.int32, np.bool_])
def test_round_trip_dtypes_and_compression(tmp_path: Path, compression, dtype) -> None:
    rng = np.random.default_rng(0)
    obs = (rng.random((50, 4)) * 100).astype(dtype)
    path = tmp_path / "d.hdf5"
    with BufferWriter(path, compression=compression) as w:
        w.add_transitions(
            obs=obs[:-1], obs_next=obs[1:], act=rng.integers(0, 3, 49).astype(np.uint8),
            rew=rng.random(49).astype(np.float32), terminated=np.arange(49) % 10 == 9,
            truncated=np.zeros(49, bool),
        )
    buf = load_buffer(path)
    np.testing.assert_array_equal(buf.obs, obs[:-1])
    assert buf.obs.dtype == np.dtype(dtype) and buf.act.dtype == np.uint8 and buf.rew.dtype == np.float32
    # 4 terminal rows + the trailing rows form a cut episode
    assert int(buf.done.sum()) == 5 and bool(buf.done[-1]) and not buf.terminated[-1]


def test_episode_boundaries_next_prev(tmp_path: Path) -> None:
    """Loaded buffers know where episodes start and end; Tianshou's from_data does not."""
    rng = np.random.default_rng(2)
    eps = [_episode(rng, n, last=last) for n, last in ((3, "terminated"), (4, "truncated"), (2, "none"))]
    path = tmp_path / "b.hdf5"
    with BufferWriter(path) as w:
        for ep in eps:
            w.add_episode(**ep)
    buf = load_buffer(path)
    idx = np.arange(len(buf))
    # rows: [0 1 2] [3 4 5 6] [7 8]
    np.testing.assert_array_equal(buf.next(idx), [1, 2, 2, 4, 5, 6, 6, 8, 8])
    np.testing.assert_array_equal(buf.prev(idx), [0, 0, 1, 3, 3, 4, 5, 7, 7])
    assert [list(e) for e in episodes_of(buf)] == [[0, 1, 2], [3, 4, 5, 6], [7, 8]]
    # the last episode was cut by the data: done without terminated/truncated
    assert buf.done[8] and not buf.terminated[8] and not buf.truncated[8]

    # the bug this loader avoids: from_data leaves last_index=[0]
    with h5py.File(path) as f:
        m = f["_meta"]
        bad = ReplayBuffer.from_data(
            m["obs"], m["act"], m["rew"], m["terminated"], m["truncated"], m["done"], m["obs_next"]
        )
    assert list(bad.last_index) == [0]
    assert bad.next(0) == 0  # row 0 wrongly treated as an episode end
    assert bad.prev(1) == 1  # ... so row 1 wrongly starts one


def test_frame_stacking_settings_round_trip(tmp_path: Path) -> None:
    """save_only_last_obs + stack_num=4 buffers (one frame per step) keep their stacks."""
    buf = ReplayBuffer(40, stack_num=4, ignore_obs_next=True, save_only_last_obs=True)
    rng = np.random.default_rng(3)
    for _e, length in enumerate((7, 9, 5)):
        frames = rng.integers(0, 255, size=(length + 4, 6, 6), dtype=np.uint8)
        for t in range(length):
            stack = frames[t : t + 4]
            buf.add(Batch(obs=stack, act=t % 3, rew=1.0, terminated=t == length - 1,
                          truncated=False, info={}))
    path = tmp_path / "stack.hdf5"
    save_buffer(buf, path)
    md = read_metadata(path)
    assert md.stack_num == 4 and md.save_only_last_obs and not md.obs_next_stored
    loaded = load_buffer(path)
    assert loaded.obs.shape == (21, 6, 6)  # one frame per step on disk and in memory
    idx = np.arange(len(buf))
    np.testing.assert_array_equal(loaded[idx].obs, buf[idx].obs)
    np.testing.assert_array_equal(loaded[idx].obs_next, buf[idx].obs_next)
    assert loaded[idx].obs.shape == (21, 4, 6, 6)


def test_save_buffer_unrolls_circular_buffer(tmp_path: Path) -> None:
    buf = ReplayBuffer(10)
    fill(buf, [4, 5, 6], seed=4)  # 15 adds into 10 slots: wrapped
    path = tmp_path / "circ.hdf5"
    save_buffer(buf, path)
    loaded = load_buffer(path)
    order = np.concatenate([np.arange(buf._insertion_idx, 10), np.arange(buf._insertion_idx)])
    np.testing.assert_array_equal(loaded.obs, buf.obs[order])
    np.testing.assert_array_equal(loaded.done, buf.done[order])
    np.testing.assert_array_equal(loaded.info.step, buf.info.step[order])
    # the first 5 rows are the tail of episode 1 (its start was overwritten), then episode 2
    assert [len(e) for e in episodes_of(loaded)] == [4, 6]


def test_atomic_write_and_overwrite(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    path = tmp_path / "out.hdf5"
    with pytest.raises(RuntimeError, match="boom"), BufferWriter(path) as w:
        w.add_episode(**_episode(rng, 5))
        w.flush()
        raise RuntimeError("boom")
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind
    with BufferWriter(path) as w:
        w.add_episode(**_episode(rng, 5))
    with pytest.raises(OutputExistsError, match="out.hdf5"):
        BufferWriter(path)
    before = path.read_bytes()
    with BufferWriter(path, overwrite=True) as w:
        w.add_episode(**_episode(rng, 7))
    assert path.read_bytes() != before and len(load_buffer(path)) == 7
    with pytest.raises(DataValidationError, match="no transitions"):
        with BufferWriter(tmp_path / "empty.hdf5"):
            pass
    assert not (tmp_path / "empty.hdf5").exists()


def test_writer_rejects_bad_columns(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    w = BufferWriter(tmp_path / "x.hdf5")
    ep = _episode(rng, 5)
    with pytest.raises(DataValidationError, match="'act' has 4 rows; expected 5"):
        w.add_episode(**{**ep, "act": ep["act"][:4]})
    with pytest.raises(DataValidationError, match="dtype object"):
        w.add_episode(**{**ep, "info": {"s": np.array([None] * 5, dtype=object)}})
    with pytest.raises(DataValidationError, match="obs_next"):
        w.add_episode(**{k: v for k, v in ep.items() if k != "obs_next"})
    bad = ep["rew"].copy()
    bad[2] = np.nan
    with pytest.raises(DataValidationError, match="non-finite.*row 2"):
        w.add_episode(**{**ep, "rew": bad})
    w.add_episode(**ep)
    with pytest.raises(DataValidationError, match="row shape"):
        w.add_episode(**{**ep, "obs": ep["obs"][:, :2], "obs_next": ep["obs_next"][:, :2]})
    w.abort()
    assert not (tmp_path / "x.hdf5").exists()
    w2 = BufferWriter(tmp_path / "nan.hdf5", nan_policy="warn")
    w2.add_episode(**{**ep, "rew": bad})
    w2.close()
    assert np.isnan(load_buffer(tmp_path / "nan.hdf5").rew[2])


# --------------------------------------------------------------------------------------
# bad input files
# --------------------------------------------------------------------------------------


@pytest.fixture()
def good_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(7)
    path = tmp_path / "good.hdf5"
    with BufferWriter(path) as w:
        for n in (50, 60, 70):
            w.add_episode(**_episode(rng, n))
    return path


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFoundError, match="nope.hdf5: no such file"):
        load_buffer(tmp_path / "nope.hdf5")


def test_not_hdf5(tmp_path: Path) -> None:
    p = tmp_path / "text.hdf5"
    p.write_text("obs,act\n1,2\n")
    with pytest.raises(DatasetFormatError, match="text.hdf5: not an HDF5 file"):
        load_buffer(p)


def test_truncated_file(good_file: Path) -> None:
    data = good_file.read_bytes()
    good_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetFormatError, match="good.hdf5.*truncated"):
        load_buffer(good_file)


def test_wrong_schema_version(good_file: Path) -> None:
    with h5py.File(good_file, "a") as f:
        f["tianshou_offline"].attrs["format_version"] = 99
    with pytest.raises(SchemaVersionError, match="format_version 99 is not supported"):
        load_buffer(good_file)
    with pytest.raises(SchemaVersionError):
        read_metadata(good_file)


def test_mismatched_column_lengths(good_file: Path) -> None:
    with h5py.File(good_file, "a") as f:
        f["_meta/act"].resize(100, axis=0)
    with pytest.raises(DatasetFormatError, match=r"'_meta/act' has 100 rows; expected at least 180"):
        load_buffer(good_file)


def test_unknown_layout(tmp_path: Path) -> None:
    p = tmp_path / "other.hdf5"
    with h5py.File(p, "w") as f:
        f["weights"] = np.zeros(3)
    with pytest.raises(DatasetFormatError, match="unrecognised HDF5 layout: top-level keys are weights"):
        load_buffer(p)


def test_pickled_payload_refused(tmp_path: Path) -> None:
    """A Tianshou file whose info holds Python objects is refused unless opted in."""
    buf = ReplayBuffer(8)
    for t in range(6):
        buf.add(Batch(obs=np.array([t, t]), act=0, rew=1.0, terminated=t == 5, truncated=False,
                      obs_next=np.array([t + 1, t + 1]), info={"name": f"s{t}" if t else None}))
    path = tmp_path / "tianshou_pickled.hdf5"
    buf.save_hdf5(str(path))
    with h5py.File(path) as f:
        assert f["_meta/info/name"].attrs["__data_type__"] == "pickled_ndarray"
    with pytest.raises(UnsafeDataError, match=r"_meta/info/name \(pickled_ndarray\).*allow_pickle=True"):
        load_buffer(path)
    loaded = load_buffer(path, include_info=False)
    assert len(loaded) == 6 and "info" not in loaded._meta.get_keys()
    trusted = load_buffer(path, allow_pickle=True)
    assert list(trusted.info.name[:3]) == [None, "s1", "s2"]


def test_pickled_dataset_in_our_format_is_refused(good_file: Path) -> None:
    with h5py.File(good_file, "a") as f:
        del f["_meta/act"]
        payload = np.frombuffer(pickle.dumps(np.zeros(180, dtype=object)), dtype=np.byte)
        f["_meta/act"] = payload
        f["_meta/act"].attrs["__data_type__"] = "pickled_ndarray"
    with pytest.raises(UnsafeDataError, match="never stores pickles"):
        load_buffer(good_file, allow_pickle=True)
