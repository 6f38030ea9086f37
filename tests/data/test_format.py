"""The on-disk format: round trips, spaces, boundaries, atomic writes and bad inputs."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import h5py
import numpy as np
import pytest
from tianshou.data import Batch, ReplayBuffer

from tests.helpers.buffers import episodes_of, fill
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
    open_h5,
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
def test_space_json_round_trip(space: gym.Space[Any]) -> None:
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


def _episode(rng: np.random.Generator, length: int, *, last: str = "terminated") -> dict[str, Any]:
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
            "pair": gym.spaces.Tuple(
                (gym.spaces.Discrete(3), gym.spaces.Box(0, 1, (2,), np.float32))
            ),
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

        def cut(tree: Any, sl: slice) -> Any:
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
        assert list(f["tianshou_offline/episodes/metadata/name"].asstr()[:]) == [
            "ep0",
            "ep1",
            "ep2",
        ]
    buf = load_buffer(path)
    assert len(buf) == 12
    row = 0
    for ep in episodes:
        n = len(ep["rew"])
        sl = np.arange(row, row + n)
        b: Any = buf[sl]  # nested Batch fields are untyped unions
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
def test_round_trip_dtypes_and_compression(
    tmp_path: Path, compression: Literal["gzip", "lzf"] | None, dtype: type[np.generic]
) -> None:
    rng = np.random.default_rng(0)
    obs = (rng.random((50, 4)) * 100).astype(dtype)
    path = tmp_path / "d.hdf5"
    with BufferWriter(path, compression=compression) as w:
        w.add_transitions(
            obs=obs[:-1],
            obs_next=obs[1:],
            act=rng.integers(0, 3, 49).astype(np.uint8),
            rew=rng.random(49).astype(np.float32),
            terminated=np.arange(49) % 10 == 9,
            truncated=np.zeros(49, bool),
        )
    buf = load_buffer(path)
    np.testing.assert_array_equal(buf.obs, obs[:-1])
    assert (
        buf.obs.dtype == np.dtype(dtype)
        and buf.act.dtype == np.uint8
        and buf.rew.dtype == np.float32
    )
    # 4 terminal rows + the trailing rows form a cut episode
    assert int(buf.done.sum()) == 5 and bool(buf.done[-1]) and not buf.terminated[-1]


def test_episode_boundaries_next_prev(tmp_path: Path) -> None:
    """Loaded buffers know where episodes start and end; Tianshou's from_data does not."""
    rng = np.random.default_rng(2)
    eps = [
        _episode(rng, n, last=last)
        for n, last in ((3, "terminated"), (4, "truncated"), (2, "none"))
    ]
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
            buf.add(
                Batch(
                    obs=stack,
                    act=t % 3,
                    rew=1.0,
                    terminated=t == length - 1,
                    truncated=False,
                    info={},
                )
            )
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


def test_save_buffer_hands_the_writer_views_of_consecutive_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows in order are written from views of the buffer's arrays, not from a copy (of a
    frame column, as large as the file), and the file holds the same rows."""
    seen: list[np.ndarray] = []
    add = BufferWriter.add_transitions

    def spy(self: BufferWriter, **columns: Any) -> None:
        seen.append(columns["obs"])
        add(self, **columns)

    monkeypatch.setattr(BufferWriter, "add_transitions", spy)
    buf = ReplayBuffer(30)
    fill(buf, [4, 5, 6], seed=4)  # 15 rows, not wrapped
    save_buffer(buf, tmp_path / "flat.hdf5")
    assert len(seen) == 1 and np.shares_memory(seen[0], buf._meta.obs)
    loaded = load_buffer(tmp_path / "flat.hdf5")
    np.testing.assert_array_equal(loaded.obs, buf.obs[:15])
    np.testing.assert_array_equal(loaded.done, buf.done[:15])


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


def test_attribute_name_that_is_not_utf8(good_file: Path) -> None:
    """A corrupted attribute name comes back from h5py as bytes; metadata still reads (the
    name shown with its undecodable bytes replaced), as found by the fuzz run."""
    with h5py.File(good_file, "a") as f:
        f["tianshou_offline"].attrs[b"note\xff"] = "kept"
    md = read_metadata(good_file)
    assert md.extra_attrs["note\ufffd"] == "kept"
    assert len(load_buffer(good_file)) == 180


def _first_vlen_descriptor(data: bytes) -> tuple[int, int]:
    """``(offset, index)`` of the first global heap collection in ``data`` and the byte offset
    of the first stored descriptor (length, collection address, index) that points into it."""
    gcol = data.find(b"GCOL")
    assert gcol > 0
    at = data.find(gcol.to_bytes(8, "little"), gcol + 4096)  # attributes follow the heap
    if at < 0:
        at = data.find(gcol.to_bytes(8, "little"))
    assert at >= 4 and 0 < int.from_bytes(data[at - 4 : at], "little") < 4096
    return gcol, at - 4


def test_vlen_attribute_claiming_gigabytes_is_refused_before_libhdf5_reads_it(
    good_file: Path,
) -> None:
    """A string attribute's stored length (4 bytes before its heap address) corrupted to
    2.3 GB: libhdf5 would allocate and zero that much before finding no such object (fuzz
    mutants writer#2740, writer_dict#8801); it is refused when the file is opened."""
    data = bytearray(good_file.read_bytes())
    _, desc = _first_vlen_descriptor(bytes(data))
    data[desc : desc + 4] = (0x89000005).to_bytes(4, "little")
    good_file.write_bytes(bytes(data))
    with pytest.raises(DatasetFormatError, match=r"variable-length attribute value at byte "
                       rf"{desc} claims 2298478597 bytes, more than the whole file"):  # fmt: skip
        open_h5(good_file).close()
    with pytest.raises(DatasetFormatError, match="claims 2298478597 bytes"):
        load_buffer(good_file)


def test_global_heap_object_whose_size_wraps_around_is_refused(good_file: Path) -> None:
    """An object of the global heap (where string attributes live) with size 2**64 - 1:
    libhdf5's padded size wraps to 0 bytes, its walk then reads the object's own bytes as
    headers and loops forever on a zero-sized free-space object there (fuzz mutant
    writer_dict#4441). It is refused when the file is opened, before libhdf5 walks it."""
    data = bytearray(good_file.read_bytes())
    gcol, _ = _first_vlen_descriptor(bytes(data))
    first = gcol + 16  # the first object's header: index, references, reserved, size
    assert int.from_bytes(data[first : first + 2], "little") > 0
    data[first + 8 : first + 16] = (2**64 - 1).to_bytes(8, "little")
    data[first + 16 : first + 32] = bytes(16)  # read as a free-space object of size 0
    good_file.write_bytes(bytes(data))
    with pytest.raises(DatasetFormatError, match=rf"global heap collection at byte {gcol} is "
                       rf"corrupt \(the object at byte {first + 16} "):  # fmt: skip
        open_h5(good_file).close()


def test_heap_scan_of_a_large_file_needs_no_map_of_it(
    good_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan of a file larger than the full-scan size searches its first and last windows
    by reading them: it maps nothing (a map of a whole 500 MB file failed with ENOMEM, an
    untyped OSError, under the fuzz harness's address-space limit). The corrupt collection
    in the first window is still refused, and the file padded past the windows opens."""
    import mmap

    from tianshou_offline.data import byte_guards, reading

    def no_map(*args: object, **kwargs: object) -> None:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(mmap, "mmap", no_map)
    monkeypatch.setattr(byte_guards, "GCOL_FULL_SCAN_BYTES", 1 << 16)
    monkeypatch.setattr(byte_guards, "GCOL_WINDOW_BYTES", 1 << 15)
    data = bytearray(good_file.read_bytes())
    gcol, _ = _first_vlen_descriptor(bytes(data))
    assert gcol + 4096 < 1 << 15 < len(data) - (1 << 15)  # in the first window only
    reading.check_global_heaps(good_file)  # intact: passes
    first = gcol + 16
    data[first + 8 : first + 16] = (2**64 - 1).to_bytes(8, "little")
    data[first + 16 : first + 32] = bytes(16)
    good_file.write_bytes(bytes(data))
    with pytest.raises(DatasetFormatError, match=rf"global heap collection at byte {gcol} is "):
        reading.check_global_heaps(good_file)


def test_heap_walk_reads_each_collection_in_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan walks a global heap collection (an object per string) in the collection's
    bytes read a block at a time, not one read of the file per object header: a 1.6 GB file
    whose 250 MB column had become strings (fuzz mutant large_writer#1538, seed 4) took 21 s
    to open (its scanned windows hold 264,000 objects), over every reader's time limit."""
    from tianshou_offline.data import byte_guards

    path = tmp_path / "strings.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("s", data=np.array([str(i) for i in range(100_000)], dtype=object),
                         dtype=h5py.string_dtype())  # fmt: skip
    reads = [0]
    read = byte_guards._FileView._read

    def counted(view: Any, lo: int, hi: int) -> bytes:
        reads[0] += 1
        return read(view, lo, hi)

    monkeypatch.setattr(byte_guards._FileView, "_read", counted)
    byte_guards.check_global_heaps(path)
    assert path.read_bytes().count(b"GCOL") > 10
    assert reads[0] < 1000  # 100,000 objects: two reads each before


def test_vlen_dataset_element_claiming_gigabytes_is_refused_before_it_is_read(
    tmp_path: Path,
) -> None:
    """A stored descriptor of a string column (episode metadata) whose length is corrupted
    to 2.4 GB: checked against the file's size before libhdf5 reads (and allocates) it."""
    from tianshou_offline.data.stats import episode_table

    rng = np.random.default_rng(3)
    path = tmp_path / "labels.hdf5"
    with BufferWriter(path) as w:
        for n in (5, 6):
            w.add_episode(**_episode(rng, n), metadata={"label": "expert-run"})
    assert list(episode_table(path).metadata["label"]) == ["expert-run"] * 2
    with h5py.File(path) as f:
        chunks: list[Any] = []
        f["tianshou_offline/episodes/metadata/label"].id.chunk_iter(chunks.append)
        at = chunks[0].byte_offset
    data = bytearray(path.read_bytes())
    assert int.from_bytes(data[at + 16 : at + 20], "little") == len("expert-run")
    data[at + 16 : at + 20] = (0x90000000).to_bytes(4, "little")  # element 1's length
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetFormatError, match=r"element 1 of '/tianshou_offline/episodes/"
                       r"metadata/label' stored at byte \d+ claims 2415919104 bytes"):  # fmt: skip
        episode_table(path)


_READ_ISOLATED = r"""
import sys
from tianshou_offline.data import byte_guards
from tianshou_offline.errors import TianshouOfflineError

what, path, window = sys.argv[1], sys.argv[2], int(sys.argv[3])
if window:  # scan only the first and last `window` bytes, as for a file over 64 MiB
    byte_guards.GCOL_FULL_SCAN_BYTES, byte_guards.GCOL_WINDOW_BYTES = 0, window
try:
    if what == "load_buffer":
        from tianshou_offline import load_buffer
        load_buffer(path)
    elif what == "episode_table":
        from tianshou_offline.data.stats import episode_table
        episode_table(path)
    else:  # attr_str on a file libhdf5 opened without the package's scan
        import h5py
        from tianshou_offline.data.reading import attr_str
        with h5py.File(path, "r") as f:
            attr_str(f[what], "__data_type__")
    print("ok")
except TianshouOfflineError as e:
    print(f"typed {type(e).__name__}: {e}")
"""


def _read_isolated(what: str, path: Path, window: int = 0) -> str:
    """Run a reader on ``path`` in a child process (libhdf5 may crash the interpreter): its
    one-line answer; the child must exit normally (a SIGSEGV is ``returncode -11``)."""
    import os
    import subprocess
    import sys

    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-c", _READ_ISOLATED, what, str(path), str(window)],
                         capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert res.returncode == 0, f"the reader died (exit {res.returncode}): {res.stderr[-2000:]}"
    return res.stdout.strip().splitlines()[-1]


def _corrupt_vlen_kind(path: Path, obj: str, name: bytes) -> int:
    """Turn the variable-length string type of ``obj``'s attribute ``name`` (``obj`` itself,
    a string dataset, for ``name=b""``) into kind 3 (one bit: 1 → 3), as the fuzz harness's
    bit flips did (mutant contiguous#1214, seed 4); returns the datatype's offset."""
    with h5py.File(path, "r") as f:
        header = h5py.h5o.get_info(f[obj].id).addr
    data = bytearray(path.read_bytes())
    at = data.find(name + b"\0", header) if name else header
    q = data.find(bytes([0x19, 0x01, 0x01, 0x00, 0x10, 0, 0, 0]), at)
    assert 0 < q - at < 64, (at, q)
    data[q + 1] ^= 0x02
    path.write_bytes(bytes(data))
    return q


def test_string_attribute_of_unknown_vlen_kind_is_refused_not_a_crash(good_file: Path) -> None:
    """An attribute's variable-length string type whose kind (1: string) a flipped bit made
    3: libhdf5 decodes it and then crashes converting its value (SIGSEGV in ``H5Aread`` →
    ``H5T__conv_vlen`` → ``H5VL_blob_put``), which killed the fuzz harness's worker in
    ``load_buffer`` (contiguous#1214, seed 4). The file is refused when it is opened; where
    the scan does not reach (a large file's middle), the attribute reader refuses the type
    before reading the value. Run in a child process: the old code crashed it."""
    q = _corrupt_vlen_kind(good_file, "_meta/terminated", b"__data_type__")
    out = _read_isolated("load_buffer", good_file)
    assert out.startswith("typed DatasetFormatError"), out
    assert f"variable-length datatype of an attribute at byte {q} has kind 3" in out
    window = min(q, good_file.stat().st_size - q) // 2
    out = _read_isolated("load_buffer", good_file, window)  # outside the scanned windows
    assert out.startswith("typed DatasetFormatError"), out
    assert "'/_meta/terminated@__data_type__' is stored as a variable-length sequence" in out
    out = _read_isolated("_meta/terminated", good_file)  # libhdf5 opened it: no scan at all
    assert "is stored as a variable-length sequence; expected text" in out, out
    assert _read_isolated("_meta/rew", good_file) == "ok"


def test_string_column_of_unknown_vlen_kind_is_refused_not_a_crash(tmp_path: Path) -> None:
    """The same corruption in a dataset's own type (a string column: episode labels):
    reading it crashes libhdf5 in ``H5Dread``; refused when the file is opened (``inspect``'s
    episode table, in a child process: the old code crashed it)."""
    rng = np.random.default_rng(3)
    path = tmp_path / "labels.hdf5"
    with BufferWriter(path) as w:
        for n in (5, 6):
            w.add_episode(**_episode(rng, n), metadata={"label": "expert-run"})
    assert _read_isolated("episode_table", path) == "ok"
    q = _corrupt_vlen_kind(path, "tianshou_offline/episodes/metadata/label", b"")
    out = _read_isolated("episode_table", path)
    assert out.startswith("typed DatasetFormatError"), out
    assert f"variable-length datatype of an object at byte {q} has kind 3" in out


def test_array_data_that_reads_like_a_vlen_type_of_unknown_kind_opens(tmp_path: Path) -> None:
    """int32 values 4099, 793, 16 are the bytes of a version 2 object header message of type
    3 (datatype) followed by a variable-length type of kind 3: in array data they are no
    datatype, and the file opens (the scan takes such a message only at a message boundary
    of an object header chunk it walks)."""
    path = tmp_path / "ints.hdf5"
    with h5py.File(path, "w", libver="latest") as f:
        f["d"] = np.tile(np.array([4099, 0x0319, 16, 0], np.int32), 1000)
    open_h5(path).close()


def test_attribute_holding_a_vlen_sequence_is_not_text(tmp_path: Path) -> None:
    """A (valid) variable-length sequence where the format has a string attribute is refused
    by its type, before its value is read, rather than shown as text."""
    from tianshou_offline.data.reading import attr_str

    path = tmp_path / "seq.hdf5"
    value = np.empty(1, dtype=object)
    value[0] = np.arange(3, dtype=np.int32)
    with h5py.File(path, "w") as f:
        f.attrs.create("format", value, dtype=h5py.vlen_dtype(np.int32))
    with h5py.File(path, "r") as f:
        with pytest.raises(DatasetFormatError, match=r"attribute '/@format' is stored as a "
                           "variable-length sequence; expected text"):  # fmt: skip
            attr_str(f, "format")


def test_interrupted_attribute_scan_keeps_its_exception(
    good_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception raised while ``open_h5`` scans the file (the fuzz harness's timer, a
    Ctrl-C) comes out as itself: no array views the memory map it is closing, which would
    have replaced it with ``BufferError`` (fuzz mutant framestack#448, seed 2)."""

    class Interrupted(Exception):
        pass

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise Interrupted

    monkeypatch.setattr(np, "isin", interrupted)  # called by the scan of every block
    with pytest.raises(Interrupted):
        open_h5(good_file)


def test_tianshou_file_that_loads_empty_has_an_empty_episode_table(tmp_path: Path) -> None:
    """A Tianshou file without ``_size`` loads as an empty buffer, which has no columns in
    Tianshou: its episode table (``inspect``) is empty instead of an AttributeError (fuzz
    mutant tianshou#804, seed 2)."""
    from tianshou_offline.data.stats import episode_table, summary

    buf = ReplayBuffer(10)
    for t in range(4):
        buf.add(Batch(obs=np.array([t, t]), act=0, rew=1.0, terminated=t == 3, truncated=False,
                      obs_next=np.array([t + 1, t + 1]), info={}))  # fmt: skip
    path = tmp_path / "tianshou.hdf5"
    buf.save_hdf5(str(path))
    assert len(episode_table(path).starts) == 1
    with h5py.File(path, "a") as f:
        del f.attrs["_size"]
    assert len(load_buffer(path)) == 0
    table = episode_table(path)
    assert len(table.starts) == len(table.terminated) == len(table.truncated) == 0
    assert summary(path)["episodes"] == 0


def test_mismatched_column_lengths(good_file: Path) -> None:
    with h5py.File(good_file, "a") as f:
        f["_meta/act"].resize(100, axis=0)
    with pytest.raises(
        DatasetFormatError, match=r"'_meta/act' has 100 rows; expected at least 180"
    ):
        load_buffer(good_file)


def test_unknown_layout(tmp_path: Path) -> None:
    p = tmp_path / "other.hdf5"
    with h5py.File(p, "w") as f:
        f["weights"] = np.zeros(3)
    with pytest.raises(
        DatasetFormatError, match="unrecognised HDF5 layout: top-level keys are weights"
    ):
        load_buffer(p)


def test_pickled_payload_refused(tmp_path: Path) -> None:
    """A Tianshou file whose info holds Python objects is refused unless opted in."""
    buf = ReplayBuffer(8)
    for t in range(6):
        buf.add(
            Batch(
                obs=np.array([t, t]),
                act=0,
                rew=1.0,
                terminated=t == 5,
                truncated=False,
                obs_next=np.array([t + 1, t + 1]),
                info={"name": f"s{t}" if t else None},
            )
        )
    path = tmp_path / "tianshou_pickled.hdf5"
    buf.save_hdf5(str(path))
    with h5py.File(path) as f:
        assert f["_meta/info/name"].attrs["__data_type__"] == "pickled_ndarray"
    with pytest.raises(
        UnsafeDataError, match=r"_meta/info/name \(pickled_ndarray\).*allow_pickle=True"
    ):
        load_buffer(path)
    loaded = load_buffer(path, include_info=False)
    assert len(loaded) == 6 and "info" not in loaded._meta.get_keys()
    trusted = load_buffer(path, allow_pickle=True)
    assert list(trusted.info.name[:3]) == [None, "s1", "s2"]
    # a column marked pickled whose bytes are not a pickle: one typed line even when the
    # caller allows unpickling (the fuzz run of seed 3 found UnpicklingError passing through;
    # checked to fail before the fix)
    with h5py.File(path, "a") as f:
        blob = f["_meta/info/name"][()]
        del f["_meta/info/name"]
        f["_meta/info/name"] = np.zeros_like(blob)
        f["_meta/info/name"].attrs["__data_type__"] = "pickled_ndarray"
    with pytest.raises(DatasetFormatError, match=r"info/name' is marked pickled but does not "):
        load_buffer(path, allow_pickle=True)


def test_pickled_dataset_in_our_format_is_refused(good_file: Path) -> None:
    with h5py.File(good_file, "a") as f:
        del f["_meta/act"]
        payload = np.frombuffer(pickle.dumps(np.zeros(180, dtype=object)), dtype=np.byte)
        f["_meta/act"] = payload
        f["_meta/act"].attrs["__data_type__"] = "pickled_ndarray"
    with pytest.raises(UnsafeDataError, match="never stores pickles"):
        load_buffer(good_file, allow_pickle=True)


# --------------------------------------------------------------------------------------
# writer internals: batched episodes, whole-chunk writes, held-back rows
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [None, "lzf"])
@pytest.mark.parametrize("flush_bytes", [3000, 40000])
@pytest.mark.parametrize("seed", range(4))
def test_random_call_sizes_write_the_same_file(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    compression: Literal["gzip", "lzf"] | None,
    flush_bytes: int,
    seed: int,
) -> None:
    """Any sequence of add_transitions/add_episode/end_episode/flush calls, with flushes of
    held-back rows, whole chunks written directly and a padded last chunk, stores exactly the
    rows and episodes given (small chunks and flush sizes exercise every path)."""
    from tianshou_offline.data import h5io, pending_rows
    from tianshou_offline.data import writer as writer_mod

    monkeypatch.setattr(writer_mod, "_FLUSH_BYTES", flush_bytes)
    monkeypatch.setattr(h5io, "_PART_BYTES", 200)
    held_back: list[int] = []
    direct_chunks: list[int] = []
    original_split, original_write = pending_rows._split_rows, h5io._write_rows

    def split(parts: list[Any], rows: int) -> tuple[Any, Any]:
        head, rest = original_split(parts, rows)
        held_back.append(sum(len(r) for r in rest))
        return head, rest

    def write(
        ds: h5py.Dataset, start: int, parts: list[Any], chunk_rows: int | None, final: bool = False
    ) -> int:
        if chunk_rows is not None:
            direct_chunks.append(sum(len(p) for p in parts) // chunk_rows)
        return original_write(ds, start, parts, chunk_rows, final)

    monkeypatch.setattr(pending_rows, "_split_rows", split)
    monkeypatch.setattr(h5io, "_write_rows", write)
    rng = np.random.default_rng(seed)
    n = 3000
    obs: dict[str, np.ndarray] = {
        "a": rng.standard_normal((n + 1, 3)).astype(np.float32),
        "b": rng.integers(0, 9, (n + 1,)).astype(np.int64),
    }
    act = rng.integers(0, 4, n).astype(np.uint8)
    rew = rng.standard_normal(n)
    term = rng.random(n) < 0.01
    trunc = (rng.random(n) < 0.01) & ~term
    info = rng.random(n).astype(np.float32)
    done = term | trunc
    cut_rows: list[int] = []  # rows where end_episode() ends an episode without a flag
    path = tmp_path / "r.hdf5"
    with BufferWriter(path, compression=compression, chunk_bytes=256) as w:
        row = 0
        while row < n:
            k = int(min(n - row, rng.choice([1, 7, 40, 129, 300, 700])))
            sl = slice(row, row + k)
            ends = np.flatnonzero(done[sl])
            mode = rng.integers(0, 4)
            cols = dict(
                obs={key: v[sl] for key, v in obs.items()},
                obs_next={key: v[row + 1 : row + k + 1] for key, v in obs.items()},
                act=act[sl],
                rew=rew[sl],
                terminated=term[sl],
                truncated=trunc[sl],
                info={"x": info[sl]},
            )
            if mode == 0 and len(ends) <= 1 and (len(ends) == 0 or ends[0] == k - 1):
                w.add_episode(**cols, metadata={"i": len(w._ep_start), "s": f"e{row}"})
                if not len(ends):
                    cut_rows.append(row + k - 1)
                    done[row + k - 1] = True
            else:
                meta = [
                    {"i": len(w._ep_start) + j, "s": f"m{row + int(e)}"} for j, e in enumerate(ends)
                ]
                w.add_transitions(**cols, episode_metadata=meta)
                if mode == 1 and row + k < n and not done[row + k - 1]:
                    w.end_episode(metadata={"i": len(w._ep_start), "s": "end"})
                    cut_rows.append(row + k - 1)
                    done[row + k - 1] = True
            if mode == 2 and rng.random() < 0.15:
                w.flush()
            row += k
        if not done[-1]:
            cut_rows.append(n - 1)
            done[-1] = True
            w.end_episode(metadata={"i": len(w._ep_start), "s": "last"})
    buf = load_buffer(path)
    np.testing.assert_array_equal(buf.obs.a, obs["a"][:-1])
    np.testing.assert_array_equal(buf.obs.b, obs["b"][:-1])
    np.testing.assert_array_equal(buf.obs_next.a, obs["a"][1:])
    np.testing.assert_array_equal(buf.act, act)
    np.testing.assert_array_equal(buf.rew, rew)
    np.testing.assert_array_equal(buf.terminated, term)
    np.testing.assert_array_equal(buf.truncated, trunc)
    np.testing.assert_array_equal(buf.done, done)
    np.testing.assert_array_equal(buf.info.x, info)
    ends = np.flatnonzero(done)
    starts = np.concatenate([[0], ends[:-1] + 1])
    with h5py.File(path) as f:
        eps = f["tianshou_offline/episodes"]
        np.testing.assert_array_equal(eps["start"][()], starts)
        np.testing.assert_array_equal(eps["length"][()], ends + 1 - starts)
        np.testing.assert_allclose(
            eps["return"][()],
            [rew[s : e + 1].sum() for s, e in zip(starts, ends, strict=True)],
            rtol=1e-12,
        )
        np.testing.assert_array_equal(eps["metadata/i"][()], np.arange(len(ends)))
        np.testing.assert_array_equal(f["_indices"][()], np.arange(n))
        assert f["_meta/obs/a"].chunks is not None and f["_meta/obs/a"].maxshape[0] is None
    md = read_metadata(path)
    assert md.num_transitions == n and md.num_episodes == len(ends)
    # the paths meant to be exercised were
    assert (sum(direct_chunks) > 0) == (compression is None)
    assert (max(held_back) > 0) == (compression is None and flush_bytes == 40000)


def test_add_transitions_episode_metadata(tmp_path: Path) -> None:
    """One metadata mapping per episode ending in the call; the count and keys are checked
    before anything of the call is kept."""
    rng = np.random.default_rng(5)
    ep = _episode(rng, 6, last="terminated")
    two: dict[str, Any] = {k: np.concatenate([v, v]) for k, v in ep.items()}
    path = tmp_path / "m.hdf5"
    with BufferWriter(path) as w:
        w.add_transitions(**two, episode_metadata=[{"k": 1, "name": "a"}, {"k": 2, "name": "b"}])
        with pytest.raises(DataValidationError, match="episode_metadata has 1 entries; expected 2"):
            w.add_transitions(**two, episode_metadata=[{"k": 3, "name": "c"}])
        with pytest.raises(DataValidationError, match="differ from the first episode"):
            w.add_transitions(**two, episode_metadata=[{"k": 3, "name": "c"}, {"k": 4}])
        with pytest.raises(DataValidationError, match="has no metadata"):
            w.add_transitions(**two)
        with pytest.raises(DataValidationError, match="sequence of mappings"):
            not_a_sequence: Any = {"k": 3, "name": "c"}  # the wrong type, on purpose
            w.add_transitions(**two, episode_metadata=not_a_sequence)
        assert w.num_transitions == 12 and w.num_episodes == 2
        w.add_episode(**ep, metadata={"k": 5, "name": "e"})
    with h5py.File(path) as f:
        md = f["tianshou_offline/episodes/metadata"]
        assert list(md["k"][()]) == [1, 2, 5]
        assert list(md["name"].asstr()[()]) == ["a", "b", "e"]
    assert read_metadata(path).num_episodes == 3
    assert len(load_buffer(path)) == 18


def test_end_episode_does_not_modify_the_callers_arrays(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    ep = _episode(rng, 5, last="none")
    done = np.zeros(5, dtype=bool)
    with BufferWriter(tmp_path / "d.hdf5") as w:
        w.add_transitions(**ep, done=done)
    assert not done.any()
    assert load_buffer(tmp_path / "d.hdf5").done[-1]


# ------------------------------------------------------------------ fuzz findings (issue 25)


def _tianshou_file(path: Path, rew: np.ndarray, act: np.ndarray, obs_dim: int = 3) -> Path:
    """A Tianshou ``ReplayBuffer.save_hdf5`` file of ``len(rew)`` steps in episodes of 4."""
    n = len(rew)
    buf = ReplayBuffer(n)
    for t in range(n):
        buf.add(Batch(obs=np.full(obs_dim, t, np.float32), act=act[t], rew=rew[t],
                      terminated=t % 4 == 3, truncated=False,
                      obs_next=np.full(obs_dim, t + 1, np.float32), info={}))  # fmt: skip
    buf.save_hdf5(str(path))
    return path


@pytest.mark.parametrize(
    ("rew", "act"),
    [
        (np.array([1.0, np.inf, 2.0, 3.0, -np.inf, 1.0, 0.0, 0.0]), np.arange(8) % 2),  # ±inf
        (np.array([-np.inf] * 8), np.arange(8) % 2),  # every return -inf
        (np.array([True, False, True, True, False, False, True, False]), np.arange(8) % 2),
        (np.array([1e308, 1e308, 0, 0, -1e308, -1e308, 0, 0]), np.arange(8) % 2),  # ±inf sums
        (np.array([1e300, 0, 0, 0, -1e300, 0, 0, 0]), np.arange(8) % 2),  # range overflows
        (np.ones(8), (np.arange(8) % 2).astype(bool)),  # boolean actions
        (np.ones(8), np.stack([np.arange(8.0), np.full(8, np.inf)], axis=1)),  # inf actions
        (np.ones(8), np.ones((8, 2), dtype=bool)),  # boolean action vectors
    ],
)
def test_plot_of_non_finite_or_boolean_values(tmp_path: Path, rew: Any, act: Any) -> None:
    """``inspect --plot`` of a buffer whose rewards are infinite or boolean drew nothing
    (matplotlib: "supplied range of [-inf, -inf] is not finite", "numpy boolean subtract"):
    the plot leaves non-finite values out and says how many; checked to fail before."""
    from tianshou_offline.data.stats import plot_dataset

    src = _tianshou_file(tmp_path / "ts.hdf5", rew, act)
    png = plot_dataset(src, tmp_path / "plot.png")
    assert png.read_bytes().startswith(b"\x89PNG")


def test_convert_column_with_a_zero_length_dimension_is_refused(tmp_path: Path) -> None:
    """A column whose rows have a zero-length dimension cannot be stored chunked: the
    conversion raised h5py's ValueError ("All chunk dimensions must be positive"); now one
    typed error naming the column and its shape, and no output (checked to fail before)."""
    from tianshou_offline.converters.tianshou import convert_tianshou

    src = _tianshou_file(tmp_path / "ts.hdf5", np.ones(8), np.arange(8) % 2)
    with h5py.File(src, "r+") as f:
        for key in ("obs", "obs_next"):
            del f[f"_meta/{key}"]
            f["_meta"].create_dataset(key, data=np.zeros((8, 0), np.float32))
    out = tmp_path / "out.hdf5"
    with pytest.raises(DataValidationError, match=r"'obs'.*\(0,\)"):
        convert_tianshou(src, out)
    assert not out.exists() and not list(tmp_path.glob(".out.hdf5*"))
