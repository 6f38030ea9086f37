"""RL Unplugged Atari converter: exactness against TensorFlow's decoding, robustness, resume.

Shards are written here with real TensorFlow (``tf.io.TFRecordWriter`` + GZIP,
``tf.train.Example``) from real Atari frames (ale-py + gymnasium ``AtariPreprocessing``); the
reference is ``tf.io.parse_single_example`` + ``tf.image.decode_png`` of the same records.
"""

from __future__ import annotations

import gzip
import http.server
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("ale_py")

from tests.helpers.rlu import (  # noqa: E402
    Episode,
    atari_episodes,
    episode_records,
    reference_decode,
    write_shard,
)
from tianshou_offline import load_buffer, read_metadata  # noqa: E402
from tianshou_offline.cli import build_parser  # noqa: E402
from tianshou_offline.cli.convert import main_rl_unplugged_atari  # noqa: E402
from tianshou_offline.converters import rl_unplugged as rlu  # noqa: E402
from tianshou_offline.converters._tfrecord import iter_records  # noqa: E402
from tianshou_offline.errors import (  # noqa: E402
    DatasetFormatError,
    OutputExistsError,
    SourceNotFoundError,
    StackNumMismatchError,
)

GAME = "Breakout"


@pytest.fixture(scope="module")
def episodes() -> list[Episode]:
    # 6 episodes, 40..300 steps, terminal ones and ones cut at max_steps (truncated)
    eps = atari_episodes(5, max_steps=300, seed=3)
    eps += atari_episodes(1, max_steps=40, seed=4)  # cut: not terminal
    return eps


@pytest.fixture(scope="module")
def records(episodes: list[Episode]) -> list[bytes]:
    cache: dict[int, bytes] = {}
    out: list[bytes] = []
    for i, ep in enumerate(episodes):
        out += episode_records(ep, 1000 + i, padding="zeros", png_cache=cache)
    return out


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory, records: list[bytes]) -> Path:
    d = tmp_path_factory.mktemp("rlu")
    return write_shard(d / "cache" / GAME / rlu.shard_filename(1, 0), records)


@pytest.fixture(scope="module")
def reference(shard: Path) -> dict[str, np.ndarray]:
    return reference_decode(shard)


def assert_exact(buf: Any, ref: dict[str, np.ndarray], rows: Any = None) -> None:
    """``buf`` equals the TF reference transition by transition (scalar and batch indexing)."""
    n = len(ref["act"])
    assert len(buf) == n
    idx = np.arange(n)
    batch = buf[idx]
    for key in ("obs", "obs_next"):
        assert batch[key].shape == (n, 4, 84, 84) and batch[key].dtype == np.uint8
        bad = np.flatnonzero((batch[key] != ref[key]).reshape(n, -1).any(axis=1))
        assert bad.size == 0, f"{key} differs at rows {bad[:10]}"
    np.testing.assert_array_equal(batch.act, ref["act"])
    np.testing.assert_array_equal(batch.rew, ref["rew"])
    np.testing.assert_array_equal(batch.terminated, ref["terminated"])
    for key in ("episode_id", "episode_return", "a_tp1"):
        # Tianshou stacks info like obs (stack_num=4): the last entry is the transition's own
        np.testing.assert_array_equal(batch.info[key][:, -1], ref[key])
    for i in rows if rows is not None else range(n):
        t = buf[int(i)]
        np.testing.assert_array_equal(t.obs, ref["obs"][i])
        np.testing.assert_array_equal(t.obs_next, ref["obs_next"][i])
        assert t.act == ref["act"][i] and t.rew == ref["rew"][i]
        assert bool(t.terminated) == bool(ref["terminated"][i])


def no_temp_files(d: Path) -> bool:
    return not [p for p in d.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_exact_against_tensorflow_decoding(
    shard: Path, reference: dict[str, np.ndarray], tmp_path: Path, workers: int
) -> None:
    out = tmp_path / "out.hdf5"
    # small chunks: many chunk boundaries inside episodes
    res = rlu.convert_shard(shard, out, task=GAME, workers=workers, chunk_records=53)
    n = len(reference["act"])
    assert res.num_transitions == n
    buf = rlu.load_rl_unplugged(out)
    assert_exact(buf, reference)
    # compact: one frame per step, no obs_next column, few full stacks
    meta = read_metadata(out)
    assert meta.columns["obs"] == ((n, 84, 84), "|u1")
    assert not meta.obs_next_stored and meta.stack_num == 4 and meta.save_only_last_obs
    n_eps = len(np.unique(reference["episode_id"]))
    assert res.obs_patches == 3 * n_eps  # zero padding at each episode start
    assert res.obs_next_patches <= n_eps  # only final observations
    assert meta.extra_attrs["rlu.verified"] == "obs,obs_next"
    # episode ends: terminal episodes terminated, the cut-at-max-steps ones truncated
    ends = np.flatnonzero(buf.done)
    assert len(ends) == n_eps
    eid = reference["episode_id"]
    trunc_rows = np.flatnonzero(buf.truncated)
    assert all(eid[r] != eid[r + 1] for r in trunc_rows)
    assert not buf.truncated[-1]  # the shard's last episode is cut, not truncated
    assert meta.observation_space is not None and meta.observation_space.shape == (4, 84, 84)
    assert meta.env_id == f"ALE/{GAME}-v5"
    assert meta.provenance is not None and meta.provenance.source == "rl_unplugged"


def test_compact_size(shard: Path, tmp_path: Path, reference: dict[str, np.ndarray]) -> None:
    out = tmp_path / "out.hdf5"
    rlu.convert_shard(shard, out, task=GAME, workers=1)
    n = len(reference["act"])
    full = 2 * n * 4 * 84 * 84  # obs + obs_next stacks
    assert out.stat().st_size < full / 6  # ~8x smaller, less the patches and columns


@pytest.mark.parametrize("memory", ["ram", "disk"])
def test_stack_num_override_on_patched_file_is_one_typed_line(
    shard: Path, tmp_path: Path, memory: Literal["ram", "disk"]
) -> None:
    """A ``stack_num`` override on a file with stack patches (exact 4-frame stacks) is refused
    with the file, the stored and the requested value — before, RAM loading failed inside
    numpy (``could not be broadcast``) and the disk loader silently dropped the patches."""
    out = tmp_path / "out.hdf5"
    rlu.convert_shard(shard, out, task=GAME, workers=1, contiguous=True)
    assert sum(load_buffer(out, memory=memory).num_patches) > 0
    for requested in (2, 6):
        with pytest.raises(StackNumMismatchError) as e:
            load_buffer(out, stack_num=requested, memory=memory)
        msg = str(e.value)
        assert "\n" not in msg and "broadcast" not in msg
        assert str(out) in msg and "stack_num=4" in msg and f"stack_num={requested} was" in msg
    assert load_buffer(out, stack_num=4, memory=memory).stack_num == 4  # the file's: fine


def test_load_buffer_is_exact_and_tianshou_matches_except_patched_rows(
    shard: Path, reference: dict[str, np.ndarray], tmp_path: Path
) -> None:
    """``load_buffer`` applies the stack patches; Tianshou's own ``load_hdf5`` (which knows
    nothing of them) gives its own rebuild, exact wherever no stack was patched."""
    from tianshou.data import ReplayBuffer

    out = tmp_path / "out.hdf5"
    rlu.convert_shard(shard, out, task=GAME, workers=1)
    assert_exact(load_buffer(out), reference)
    plain = ReplayBuffer.load_hdf5(str(out))
    exact = rlu.load_rl_unplugged(out)
    obs_rows, next_rows = exact.patch_rows()
    assert len(obs_rows) and len(next_rows)
    n = len(plain)
    b: Any = plain[np.arange(n)]  # Batch fields are untyped unions
    ok_obs = np.setdiff1d(np.arange(n), obs_rows)
    np.testing.assert_array_equal(b.obs[ok_obs], reference["obs"][ok_obs])
    assert not np.array_equal(b.obs[obs_rows], reference["obs"][obs_rows])
    # obs_next[i] = obs[i + 1] inside an episode
    affected = set(next_rows.tolist()) | {r - 1 for r in obs_rows.tolist()}
    ok_next = np.asarray([i for i in range(n) if i not in affected])
    np.testing.assert_array_equal(b.obs_next[ok_next], reference["obs_next"][ok_next])


def test_repeat_padding_needs_no_obs_patches(episodes: list[Episode], tmp_path: Path) -> None:
    recs: list[bytes] = []
    for i, ep in enumerate(episodes[:3]):
        recs += episode_records(ep, i, padding="repeat")
    src = write_shard(tmp_path / GAME / "repeat", recs)
    res = rlu.convert_shard(src, tmp_path / "out.hdf5", task=GAME, workers=1)
    assert res.obs_patches == 0  # Tianshou's stacking repeats an episode's first frame too
    assert res.obs_next_patches <= 3
    assert_exact(rlu.load_rl_unplugged(tmp_path / "out.hdf5"), reference_decode(src), rows=[])


def test_episodes_split_across_shards(records: list[bytes], tmp_path: Path) -> None:
    cuts = [0, 211, 450, len(records)]  # mid-episode cuts
    paths = []
    for k in range(3):
        paths.append(
            write_shard(
                tmp_path / "cache" / GAME / rlu.shard_filename(1, k), records[cuts[k] : cuts[k + 1]]
            )
        )
    outs = []
    refs = []
    for k, p in enumerate(paths):
        out = tmp_path / f"{k}.hdf5"
        rlu.convert_shard(p, out, task=GAME, workers=2, chunk_records=64)
        ref = reference_decode(p)
        assert_exact(rlu.load_rl_unplugged(out), ref, rows=[0, 1, 2, len(ref["act"]) - 1])
        outs.append(out)
        refs.append(ref)
    combined = rlu.load_rl_unplugged(outs)
    ref_all = {k: np.concatenate([r[k] for r in refs]) for k in refs[0]}
    assert_exact(combined, ref_all, rows=[210, 211, 212, 213, 449, 450, 451])
    # the episodes cut by the shard boundaries are joined again
    assert not combined.done[cuts[1] - 1] and not combined.done[cuts[2] - 1]
    assert int(combined.done.sum()) == len(np.unique(ref_all["episode_id"]))
    # without joining, each shard keeps its own boundary
    apart = rlu.load_rl_unplugged(outs, join_episodes=False)
    assert apart.done[cuts[1] - 1] and apart.done[cuts[2] - 1]
    assert_exact(apart, ref_all, rows=[])


def test_short_shard_has_exactly_its_records(records: list[bytes], tmp_path: Path) -> None:
    src = write_shard(tmp_path / GAME / "short", records[100:137])
    res = rlu.convert_shard(src, tmp_path / "out.hdf5", task=GAME, workers=2, chunk_records=16)
    assert res.num_transitions == 37
    buf = rlu.load_rl_unplugged(tmp_path / "out.hdf5")
    assert len(buf) == 37 and buf.done[-1]
    assert_exact(buf, reference_decode(src), rows=[0, 1, 2, 36])


def test_tfrecord_reader_matches_tensorflow(shard: Path, records: list[bytes]) -> None:
    assert list(iter_records(shard)) == records


# --------------------------------------------------------------------------------------
# corrupt and truncated input


def _frame(payload: bytes) -> tuple[int, int]:
    return struct.unpack("<QI", payload[:12])


def _corrupt_record_crc(raw: bytes, k: int) -> tuple[bytes, int]:
    """Flip one payload byte of record ``k`` of an uncompressed TFRecord stream."""
    pos = 0
    for _ in range(k):
        length = struct.unpack_from("<Q", raw, pos)[0]
        pos += 16 + length
    data = bytearray(raw)
    data[pos + 12 + 40] ^= 0xFF
    return bytes(data), pos


@pytest.mark.parametrize("compressed", [False, True])
def test_corrupt_crc_names_file_and_record(
    records: list[bytes], tmp_path: Path, compressed: bool
) -> None:
    src = write_shard(tmp_path / "plain", records[:300], compression="")
    raw, offset = _corrupt_record_crc(src.read_bytes(), 123)
    bad = tmp_path / "in" / "bad-shard"
    bad.parent.mkdir()
    bad.write_bytes(gzip.compress(raw) if compressed else raw)
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / "bad.hdf5"
    with pytest.raises(DatasetFormatError) as e:
        rlu.convert_shard(bad, out, task=GAME, workers=2, chunk_records=32)
    msg = str(e.value)
    assert str(bad) in msg and "record 123" in msg and f"offset {offset}" in msg
    assert "CRC" in msg
    assert not out.exists() and no_temp_files(outdir)


def test_truncated_gzip_file(shard: Path, tmp_path: Path) -> None:
    data = shard.read_bytes()
    bad = tmp_path / "in" / "truncated"
    bad.parent.mkdir()
    bad.write_bytes(data[: int(len(data) * 0.6)])
    outdir = tmp_path / "out"
    outdir.mkdir()
    with pytest.raises(DatasetFormatError) as e:
        rlu.convert_shard(bad, outdir / "x.hdf5", task=GAME, workers=2)
    msg = str(e.value)
    assert str(bad) in msg and "truncated" in msg and "record " in msg and "offset" in msg
    assert no_temp_files(outdir) and not (outdir / "x.hdf5").exists()


def test_truncated_uncompressed_file(records: list[bytes], tmp_path: Path) -> None:
    src = write_shard(tmp_path / "plain", records[:50], compression="")
    raw = src.read_bytes()
    pos = 0
    for _ in range(20):
        pos += 16 + struct.unpack_from("<Q", raw, pos)[0]
    bad = tmp_path / "in" / "cut"
    bad.parent.mkdir()
    bad.write_bytes(raw[: pos + 100])  # record 20 is cut inside its payload
    with pytest.raises(DatasetFormatError, match=rf"record 20 \(uncompressed byte offset {pos}\)"):
        rlu.convert_shard(bad, tmp_path / "x.hdf5", task=GAME, workers=1)
    assert not (tmp_path / "x.hdf5").exists()


def test_not_a_tfrecord_file(tmp_path: Path) -> None:
    bad = tmp_path / "junk"
    bad.write_bytes(b"hello world, this is not a tfrecord file at all")
    with pytest.raises(DatasetFormatError, match="junk"):
        rlu.convert_shard(bad, tmp_path / "x.hdf5", task=GAME, workers=1)


def test_missing_feature_is_named(tmp_path: Path) -> None:
    ex = tf.train.Example(
        features=tf.train.Features(
            feature={"a_t": tf.train.Feature(int64_list=tf.train.Int64List(value=[1]))}
        )
    )
    src = write_shard(tmp_path / "odd", [ex.SerializeToString()])
    with pytest.raises(DatasetFormatError, match="o_t"):
        rlu.convert_shard(src, tmp_path / "x.hdf5", task=GAME, workers=1)


# --------------------------------------------------------------------------------------
# many shards, resume, CLI, download


@pytest.fixture()
def cache(records: list[bytes], tmp_path: Path) -> Path:
    d = tmp_path / "cache"
    bounds = [0, 250, 520, len(records)]
    for k in range(3):
        write_shard(d / GAME / rlu.shard_filename(1, k), records[bounds[k] : bounds[k + 1]])
    return d


class Interrupt(Exception):
    pass


def test_interrupted_multi_shard_run_resumes(
    cache: Path, reference: dict[str, np.ndarray], tmp_path: Path
) -> None:
    outdir = tmp_path / "buffers"
    seen: list[rlu.ShardResult] = []

    def stop_after_first(res: rlu.ShardResult) -> None:
        seen.append(res)
        if len(seen) == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        rlu.convert_rl_unplugged_atari(
            GAME, shard_ids=[0, 1, 2], cache_dir=cache, output=outdir, workers=2,
            on_result=stop_after_first,
        )  # fmt: skip
    game_dir = outdir / GAME
    assert sorted(p.name for p in game_dir.iterdir()) == [f"{rlu.shard_filename(1, 0)}.hdf5"]
    # a killed process left a temp file behind; output exists -> refused without --resume
    stale = game_dir / f".{rlu.shard_filename(1, 1)}.hdf5.999999999.abcd.rlu.tmp"
    stale.write_bytes(b"partial")
    with pytest.raises(OutputExistsError, match="--resume"):
        rlu.convert_rl_unplugged_atari(GAME, shard_ids=[0, 1, 2], cache_dir=cache, output=outdir)
    results = rlu.convert_rl_unplugged_atari(
        GAME, shard_ids=[0, 1, 2], cache_dir=cache, output=outdir, workers=2, resume=True
    )
    assert [r.skipped for r in results.parts] == [True, False, False]
    assert not stale.exists() and no_temp_files(game_dir)
    buf = rlu.load_rl_unplugged(game_dir)
    # the three shards hold the records of ``shard`` in order (TensorFlow decodes each record
    # on its own): their reference is the module's decoding of that shard
    assert_exact(buf, reference, rows=[249, 250, 251, 519, 520])
    # a damaged output is converted again on resume
    damaged = game_dir / f"{rlu.shard_filename(1, 2)}.hdf5"
    damaged.write_bytes(damaged.read_bytes()[:1000])
    results = rlu.convert_rl_unplugged_atari(
        GAME, shard_ids=[0, 1, 2], cache_dir=cache, output=outdir, workers=1, resume=True
    )
    assert [r.skipped for r in results.parts] == [True, True, False]
    assert rlu.is_converted(damaged, cache / GAME / rlu.shard_filename(1, 2))


def _cli(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    rc: int = args.func(args)  # the handler prints its lines; errors still raise
    return rc


def test_cli_ranges_and_paths(
    cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outdir = tmp_path / "b"
    rc = _cli(["convert", "rl-unplugged-atari", "--task", GAME, "--shard-id", "0-1",
               "--cache-dir", str(cache), "--output-dir", str(outdir), "--workers", "2",
               "--no-progress"])  # fmt: skip
    assert rc == 0
    assert len(list((outdir / GAME).glob("*.hdf5"))) == 2
    assert "transitions" in capsys.readouterr().out
    explicit = cache / GAME / rlu.shard_filename(1, 2)
    rc = _cli(["convert", "rl-unplugged-atari", "--shard-id", str(explicit),
               "--output-dir", str(outdir), "--workers", "1", "--no-progress"])  # fmt: skip
    assert rc == 0 and (outdir / GAME / f"{explicit.name}.hdf5").exists()
    with pytest.raises(SourceNotFoundError, match="Breakout"):
        _cli(["convert", "rl-unplugged-atari", "--task", "Breakout2", "--shard-id", "1",
              "--cache-dir", str(cache), "--output-dir", str(outdir)])  # fmt: skip
    with pytest.raises(SourceNotFoundError, match="--download"):
        _cli(["convert", "rl-unplugged-atari", "--task", GAME, "--shard-id", "7",
              "--cache-dir", str(cache), "--output-dir", str(outdir)])  # fmt: skip
    with pytest.raises(SourceNotFoundError, match="0..99"):
        _cli(["convert", "rl-unplugged-atari", "--task", GAME, "--shard-id", "100",
              "--cache-dir", str(cache), "--output-dir", str(outdir)])  # fmt: skip


def test_cli_contiguous_shards_load_from_disk(cache: Path, tmp_path: Path) -> None:
    """``--contiguous`` writes shards that ``memory="disk"`` maps; they read as the RAM load."""
    from tianshou_offline.cli._run import UsageError

    outdir = tmp_path / "c"
    rc = _cli(["convert", "rl-unplugged-atari", "--task", GAME, "--shard-id", "0-1",
               "--cache-dir", str(cache), "--output-dir", str(outdir), "--workers", "1",
               "--contiguous", "--no-progress"])  # fmt: skip
    assert rc == 0
    files = sorted((outdir / GAME).glob("*.hdf5"))
    assert len(files) == 2
    disk = rlu.load_rl_unplugged(files, memory="disk")
    ram = rlu.load_rl_unplugged(files)
    assert type(disk).__name__ == "DiskReplayBuffer" and len(disk) == len(ram)
    idx = np.arange(0, len(ram), 7)
    for key in ("obs", "obs_next", "act", "rew", "terminated"):
        assert np.array_equal(np.asarray(disk[idx][key]), np.asarray(ram[idx][key])), key
    with pytest.raises(UsageError, match="--contiguous stores uncompressed"):
        _cli(["convert", "rl-unplugged-atari", "--task", GAME, "--shard-id", "0",
              "--cache-dir", str(cache), "--output-dir", str(tmp_path / "d"),
              "--contiguous", "--compression", "gzip"])  # fmt: skip


def test_parse_shard_spec() -> None:
    assert rlu.parse_shard_spec(["1"]) == ([1], [])
    assert rlu.parse_shard_spec(["0-3", "7,9-10"]) == ([0, 1, 2, 3, 7, 9, 10], [])
    ids, paths = rlu.parse_shard_spec(["a/run_1-00001-of-00100"])
    assert ids == [] and paths == [Path("a/run_1-00001-of-00100")]


@pytest.fixture()
def http_root(cache: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(  # noqa: E731
        *a, directory=str(cache), **k
    )
    monkeypatch.setattr(http.server.SimpleHTTPRequestHandler, "log_message", lambda *a, **k: None)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_download_from_local_server(http_root: str, cache: Path, tmp_path: Path) -> None:
    local_cache = tmp_path / "dl"
    results = rlu.convert_rl_unplugged_atari(
        GAME, shard_ids=[1], cache_dir=local_cache, output=tmp_path / "o", workers=1,
        download=True, url_prefix=http_root,
    )  # fmt: skip
    name = rlu.shard_filename(1, 1)
    assert (local_cache / GAME / name).read_bytes() == (cache / GAME / name).read_bytes()
    assert results.parts[0].num_transitions == 270
    with pytest.raises(SourceNotFoundError, match="404"):
        rlu.download_file(f"{http_root}/{GAME}/nope", tmp_path / "nope", progress=False)
    assert not (tmp_path / "nope").exists()


def test_default_path_needs_no_tensorflow(shard: Path, tmp_path: Path) -> None:
    """Convert in a fresh interpreter where importing tensorflow fails."""
    code = (
        "import sys; sys.modules['tensorflow'] = None\n"
        "from tianshou_offline.converters.rl_unplugged import convert_shard, load_rl_unplugged\n"
        f"r = convert_shard({str(shard)!r}, {str(tmp_path / 'o.hdf5')!r}, task='Breakout', workers=2)\n"
        "b = load_rl_unplugged(r.output)\n"
        "assert 'tensorflow' not in sys.modules or sys.modules['tensorflow'] is None\n"
        "print(len(b))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == str(len(list(iter_records(shard))))


def test_script_main_with_tianshou_flag_names(
    cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--task", GAME, "--run-id", "1", "--shard-id", "2", "--dataset-dir", str(cache),
            "--buffer-dir", str(tmp_path / "b"), "--workers", "1", "--no-progress"]  # fmt: skip
    assert main_rl_unplugged_atari(argv) == 0
    assert (tmp_path / "b" / GAME / f"{rlu.shard_filename(1, 2)}.hdf5").exists()
    assert main_rl_unplugged_atari(argv) == 2  # exists: refused with a one-line error
    assert "error:" in capsys.readouterr().err
    assert main_rl_unplugged_atari([*argv, "--resume"]) == 0
