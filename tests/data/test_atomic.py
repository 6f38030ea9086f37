"""Nothing lost, nothing left behind (``tianshou_offline/data/atomic.py`` and its users).

- temporaries of killed runs (``convert d4rl``, ``export minari`` killed with SIGKILL) are
  removed by the next run for the same output, with a warning, or listed and removed by
  ``--clean``; a running process's temporaries are never touched;
- an output created while a run writes it (a slowed-down run in a subprocess) is left
  untouched and the run fails with one ``error:`` line (exit 2), leaving no temporary;
  ``--overwrite`` replaces it atomically;
- the same no-replace rename for the writer in append mode (the recorder), repair, the
  ``inspect --plot`` PNG, with and without ``renameat2``;
- RL Unplugged records with actions outside ``Discrete(n)`` and a 3 KB shard holding a valid
  46000x46000 PNG fail with typed errors, the PNG without being decoded;
- ``repair`` of a file that is not a tianshou-offline buffer is a typed error.
"""

from __future__ import annotations

import errno
import gzip
import io
import logging
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from benchmarks._lib.faults import d4rl_source
from tianshou_offline import load_buffer
from tianshou_offline.data import atomic
from tianshou_offline.data.writer import BufferWriter
from tianshou_offline.errors import DatasetFormatError, OutputExistsError, OutputWriteError

REPO = Path(__file__).resolve().parents[2]
DEAD_PID = 2**22 + 12345  # above Linux's default pid_max (2**22): never a running process


def _dead_temp(output: Path, tag: str | None = None, *, directory: bool = False) -> Path:
    """A temporary of ``output`` as a killed process would have left it."""
    name = atomic.temp_path(output, tag).name.replace(f".{os.getpid()}.", f".{DEAD_PID}.", 1)
    p = output.with_name(name)
    if directory:
        p.mkdir()
        (p / "data").mkdir()
        (p / "data" / "x.bin").write_bytes(b"\0" * 100)
    else:
        p.write_bytes(b"\0" * 100)
    return p


def _dot_entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# --------------------------------------------------------------------------------------
# the module: names, stale temporaries, renames
# --------------------------------------------------------------------------------------


def test_temp_names_and_owners(tmp_path: Path) -> None:
    out = tmp_path / "run_1-00000-of-00100.hdf5"
    t = atomic.temp_path(out, "rlu")
    assert t.parent == tmp_path and t.name.startswith(f".{out.name}.{os.getpid()}.")
    assert t.name.endswith(".rlu.tmp")
    assert atomic.temp_owner(t.name, out.name) == os.getpid()
    nested = atomic.temp_path(t)  # a writer staging into a converter's temporary
    assert atomic.temp_owner(nested.name, out.name) == os.getpid()
    assert atomic.temp_owner(atomic.temp_path(tmp_path / "other.hdf5").name, out.name) is None
    assert atomic.temp_owner(f".{out.name}.123.notahex!.tmp", out.name) is None
    assert atomic.temp_owner(out.name, out.name) is None
    with pytest.raises(ValueError, match="tag"):
        atomic.temp_path(out, "a.b")


def test_stale_temps_removed_running_ones_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "o.hdf5"
    dead_file = _dead_temp(out)
    dead_dir = _dead_temp(out, directory=True)
    dead_outer = _dead_temp(out, "rlu")  # a converter's temporary, and its writer's inside
    dead_nested = tmp_path / f".{dead_outer.name}.{DEAD_PID}.0123abcd.tmp"
    dead_nested.write_bytes(b"x")
    live = atomic.temp_path(out)  # this process runs
    live.write_bytes(b"mine")
    other = _dead_temp(tmp_path / "other.hdf5")  # another output's
    out.write_bytes(b"the output")
    found = {t.path: t for t in atomic.find_temps(out)}
    assert set(found) == {dead_file, dead_dir, dead_outer, dead_nested, live}
    assert found[live].running and not found[dead_file].running and found[dead_dir].is_dir
    assert found[dead_dir].size == 100 and found[dead_nested].pid == DEAD_PID
    with caplog.at_level(logging.WARNING, logger="tianshou_offline.data.atomic"):
        removed = atomic.remove_stale_temps(out)
    assert {t.path for t in removed} == set(found) - {live}
    assert "of a killed run" in caplog.text and dead_file.name in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, "o.hdf5"])
    assert atomic.find_temps(tmp_path / "missing" / "o.hdf5") == []


@pytest.fixture(params=["renameat2", "fallback"])
def rename_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with Linux's renameat2 and with the portable fallback."""
    if request.param == "renameat2":
        if atomic._renameat2() is None:
            pytest.skip("no renameat2 here")
    else:
        monkeypatch.setattr(atomic, "_renameat2", lambda: None)
    return str(request.param)


def test_publish_file_never_replaces_without_overwrite(tmp_path: Path, rename_impl: str) -> None:
    out = tmp_path / "o.bin"
    tmp = atomic.temp_path(out)
    tmp.write_bytes(b"new")
    atomic.publish(tmp, out, overwrite=False)
    assert out.read_bytes() == b"new" and not tmp.exists()
    tmp.write_bytes(b"newer")
    with pytest.raises(OutputExistsError, match="appeared while this run was writing"):
        atomic.publish(tmp, out, overwrite=False)
    assert out.read_bytes() == b"new" and tmp.read_bytes() == b"newer"
    atomic.publish(tmp, out, overwrite=True)
    assert out.read_bytes() == b"newer" and _dot_entries(tmp_path) == []


def test_publish_directory_never_replaces_without_overwrite(
    tmp_path: Path, rename_impl: str
) -> None:
    out = tmp_path / "dataset-v0"

    def staged(content: bytes) -> Path:
        tmp = atomic.temp_path(out)
        (tmp / "data").mkdir(parents=True)
        (tmp / "data" / "f").write_bytes(content)
        return tmp

    atomic.publish(staged(b"1"), out, overwrite=False)
    tmp = staged(b"2")
    with pytest.raises(OutputExistsError):
        atomic.publish(tmp, out, overwrite=False)
    assert (out / "data" / "f").read_bytes() == b"1"
    empty = tmp_path / "empty-v0"
    empty.mkdir()  # even an empty directory someone made is not replaced
    with pytest.raises(OutputExistsError):
        atomic.publish(tmp, empty, overwrite=False)
    assert empty.is_dir() and list(empty.iterdir()) == []
    atomic.publish(tmp, out, overwrite=True)
    assert (out / "data" / "f").read_bytes() == b"2"
    assert _dot_entries(tmp_path) == []


def _write_buffer(path: Path, *, episodes: int = 3, length: int = 6, **kw: Any) -> Path:
    rng = np.random.default_rng(0)
    with BufferWriter(
        path,
        observation_space=gym.spaces.Box(-1, 1, (3,), np.float32),
        action_space=gym.spaces.Box(-1, 1, (2,), np.float32),
        **kw,
    ) as w:
        for _ in range(episodes):
            term = np.zeros(length, bool)
            term[-1] = True
            obs = rng.uniform(-1, 1, (length + 1, 3)).astype(np.float32)
            w.add_episode(
                obs=obs[:-1],
                act=rng.uniform(-1, 1, (length, 2)).astype(np.float32),
                rew=rng.normal(size=length).astype(np.float32),
                terminated=term,
                truncated=np.zeros(length, bool),
                obs_next=obs[1:],
            )
    return path


def test_writer_keeps_a_file_that_appears(tmp_path: Path, rename_impl: str) -> None:
    out = tmp_path / "o.hdf5"
    w = BufferWriter(out, observation_space=gym.spaces.Discrete(3))
    w.add_episode(
        obs=np.arange(3), act=np.zeros(3, np.int64), rew=np.ones(3, np.float32),
        terminated=np.array([0, 0, 1], bool), truncated=np.zeros(3, bool), obs_next=np.arange(3),
    )  # fmt: skip
    w.flush()
    out.write_bytes(b"someone else's")
    with pytest.raises(OutputExistsError, match="left untouched"):
        w.close()
    assert out.read_bytes() == b"someone else's" and _dot_entries(tmp_path) == []
    # with overwrite the appearing file is replaced
    w = BufferWriter(tmp_path / "p.hdf5", overwrite=True)
    w.add_transitions(
        obs=np.arange(4), act=np.zeros(4, np.int64), rew=np.ones(4, np.float32),
        terminated=np.array([0, 0, 0, 1], bool), truncated=np.zeros(4, bool),
        obs_next=np.arange(4),
    )  # fmt: skip
    (tmp_path / "p.hdf5").write_bytes(b"old")
    w.close()
    assert len(load_buffer(tmp_path / "p.hdf5")) == 4 and _dot_entries(tmp_path) == []


def test_a_failed_write_of_the_temporary_names_the_output(tmp_path: Path) -> None:
    """A converter that writes its temporary with a writer of its own (``convert tfds``,
    ``convert rl-unplugged-atari``: a ``BufferWriter`` on the temporary) and fails there: the
    error names the output, never the temporary (it named ``.x.hdf5.PID.TOKEN.tfds.tmp``
    before); an error about another file is left as it is."""
    out = tmp_path / "x.hdf5"
    full = OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(OutputWriteError) as e:
        with atomic.atomic_output(out, overwrite=False, tag="tfds") as tmp:
            with BufferWriter(tmp, observation_space=gym.spaces.Discrete(2),
                              action_space=gym.spaces.Discrete(2), overwrite=True):  # fmt: skip
                raise atomic.write_error(tmp, full)
    assert str(e.value).startswith(f"{out}: cannot write the output: No space left on device")
    assert e.value.errno == errno.ENOSPC and ".tmp" not in str(e.value)
    assert list(tmp_path.iterdir()) == []
    other = tmp_path / "other.hdf5"
    with pytest.raises(OutputWriteError, match=f"^{other}: cannot write"):
        with atomic.atomic_output(out, overwrite=False):
            raise atomic.write_error(other, full)


def test_writer_removes_stale_temps_of_its_output(tmp_path: Path) -> None:
    out = tmp_path / "o.hdf5"
    stale = _dead_temp(out)
    _write_buffer(out)
    assert not stale.exists() and _dot_entries(tmp_path) == []


def test_recorder_keeps_a_file_that_appears(tmp_path: Path) -> None:
    from tianshou_offline.recording import EpisodeRecorder

    out = tmp_path / "rec.hdf5"
    rec = EpisodeRecorder(gym.make("CartPole-v1"), out)
    rec.reset(seed=0)
    out.write_bytes(b"someone else's")
    with pytest.raises(OutputExistsError):
        done = False
        while not done:
            _, _, term, trunc, _ = rec.step(0)
            done = term or trunc
    rec.close()
    assert out.read_bytes() == b"someone else's" and _dot_entries(tmp_path) == []


def test_plot_keeps_a_file_that_appears(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rename_impl: str
) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from tianshou_offline.data.stats import plot_dataset

    buf = _write_buffer(tmp_path / "b.hdf5")
    png = tmp_path / "plot.png"
    original = Figure.savefig

    def savefig_then_clobber(self: Figure, *args: Any, **kw: Any) -> None:
        original(self, *args, **kw)
        png.write_bytes(b"someone else's")

    monkeypatch.setattr(Figure, "savefig", savefig_then_clobber)
    with pytest.raises(OutputExistsError):
        plot_dataset(buf, png)
    assert png.read_bytes() == b"someone else's" and _dot_entries(tmp_path) == []
    plot_dataset(buf, png, overwrite=True)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and _dot_entries(tmp_path) == []


# --------------------------------------------------------------------------------------
# killed and raced commands (subprocesses slowed down midway)
# --------------------------------------------------------------------------------------

_SLOW = """
import pathlib, sys, time
marker, go, kind, argv = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]

def pause():
    marker.write_text("midway")
    deadline = time.monotonic() + 120
    while not (go and pathlib.Path(go).exists()):  # no go file: wait to be killed
        if time.monotonic() > deadline:
            raise SystemExit("no go")
        time.sleep(0.02)

if kind == "d4rl":
    from tianshou_offline.data import writer
    writer._FLUSH_BYTES = 1  # rows reach the temporary file from the first chunk on
    from tianshou_offline.converters import d4rl
    original = d4rl.iter_d4rl_chunks
    def slow(plan, rows):
        for i, item in enumerate(original(plan, 1000)):
            yield item
            if i == 2:
                pause()
    d4rl.iter_d4rl_chunks = slow
else:
    from tianshou_offline.converters.minari import export
    original = export._restore_infos
    calls = []
    def slow(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the dataset's temporary directory holds Minari's storage
            pause()
        return original(*args, **kwargs)
    export._restore_infos = slow
from tianshou_offline.cli import main
sys.exit(main(argv))
"""


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


def _cli(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tianshou_offline.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_env(**env),
        timeout=300,
    )


def _slowed(
    tmp_path: Path,
    kind: str,
    argv: list[str],
    *,
    during: Callable[[], object] | None,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """Run ``tianshou-offline argv`` slowed down midway; there, SIGKILL its process group
    (``during`` None) or call ``during`` and let it finish."""
    marker, go = tmp_path / "marker", tmp_path / "go"
    marker.unlink(missing_ok=True)
    go.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW, str(marker), str(go) if during else "", kind, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=_env(**env),
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never got midway"
        time.sleep(0.05)
    if during is None:
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        during()
        go.write_text("go")
    out, err = proc.communicate(timeout=180)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _one_error_line(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


def _d4rl_file(path: Path, n: int = 5000) -> Path:
    return d4rl_source(path, n, episode=1000)


def test_killed_convert_leaves_temps_the_next_run_removes(tmp_path: Path) -> None:
    src = _d4rl_file(tmp_path / "d.hdf5")
    work = tmp_path / "out"
    work.mkdir()
    out = work / "o.hdf5"
    argv = ["convert", "d4rl", str(src), "-o", str(out), "--no-progress"]
    res = _slowed(tmp_path, "d4rl", argv, during=None)
    assert res.returncode == -signal.SIGKILL
    assert not out.exists()
    left = atomic.stale_temps(out)
    assert len(left) == 1 and left[0].size > 0, _dot_entries(work)
    res = _cli(argv)
    assert res.returncode == 0, res.stderr
    assert "of a killed run" in res.stderr and left[0].path.name in res.stderr
    assert _dot_entries(work) == [] and len(load_buffer(out)) == 5000


def test_clean_lists_and_removes_stale_temps_only(tmp_path: Path) -> None:
    src = _d4rl_file(tmp_path / "d.hdf5", n=3000)
    work = tmp_path / "out"
    work.mkdir()
    out = work / "o.hdf5"
    argv = ["convert", "d4rl", str(src), "-o", str(out), "--no-progress"]
    assert _slowed(tmp_path, "d4rl", argv, during=None).returncode == -signal.SIGKILL
    (stale,) = atomic.stale_temps(out)
    live = atomic.temp_path(out)  # a run of this (running) process
    live.write_bytes(b"in use")
    res = _cli([*argv, "--clean"])
    assert res.returncode == 0, res.stderr
    assert f"removed {stale.path}" in res.stdout and f"kept {live}" in res.stdout
    assert "1 temporaries of killed runs removed" in res.stdout
    assert not out.exists() and _dot_entries(work) == [live.name]  # nothing converted


def test_file_created_during_convert_is_left_untouched(tmp_path: Path) -> None:
    src = _d4rl_file(tmp_path / "d.hdf5")
    work = tmp_path / "out"
    work.mkdir()
    out = work / "o.hdf5"
    argv = ["convert", "d4rl", str(src), "-o", str(out), "--compression", "gzip", "--no-progress"]
    res = _slowed(tmp_path, "d4rl", argv, during=lambda: out.write_bytes(b"user data"))
    line = _one_error_line(res)
    assert str(out) in line and "appeared" in line and "--overwrite" in line
    assert out.read_bytes() == b"user data" and _dot_entries(work) == []
    # with --overwrite the file that appears is replaced, atomically
    res = _slowed(
        tmp_path, "d4rl", [*argv, "--overwrite"], during=lambda: out.write_bytes(b"again")
    )
    assert res.returncode == 0, res.stderr
    assert len(load_buffer(out)) == 5000 and _dot_entries(work) == []


@pytest.fixture()
def minari_env(tmp_path: Path) -> dict[str, str]:
    pytest.importorskip("minari")
    root = tmp_path / "minari"
    root.mkdir()
    return {"MINARI_DATASETS_PATH": str(root)}


def test_killed_export_leaves_a_directory_the_next_run_removes(
    tmp_path: Path, minari_env: dict[str, str]
) -> None:
    buf = _write_buffer(tmp_path / "b.hdf5", episodes=4)
    ns = Path(minari_env["MINARI_DATASETS_PATH"]) / "atomic"
    argv = ["export", "minari", str(buf), "--dataset-id", "atomic/box-v0", "--no-progress"]
    res = _slowed(tmp_path, "export", argv, during=None, **minari_env)
    assert res.returncode == -signal.SIGKILL
    (left,) = atomic.stale_temps(ns / "box-v0")
    assert left.is_dir and not (ns / "box-v0").exists()
    res = _cli(argv, **minari_env)
    assert res.returncode == 0, res.stderr
    assert "of a killed run" in res.stderr and _dot_entries(ns) == []
    assert (ns / "box-v0" / "data" / "metadata.json").is_file()
    # --clean with nothing to clean
    res = _cli([*argv, "--clean"], **minari_env)
    assert res.returncode == 0 and "0 temporaries of killed runs removed" in res.stdout


def test_directory_created_during_export_is_left_untouched(
    tmp_path: Path, minari_env: dict[str, str]
) -> None:
    buf = _write_buffer(tmp_path / "b.hdf5", episodes=4)
    ns = Path(minari_env["MINARI_DATASETS_PATH"]) / "atomic"
    target = ns / "race-v0"

    def create_target() -> None:
        target.mkdir()
        (target / "mine.txt").write_text("user data")

    argv = ["export", "minari", str(buf), "--dataset-id", "atomic/race-v0", "--no-progress"]
    res = _slowed(tmp_path, "export", argv, during=create_target, **minari_env)
    line = _one_error_line(res)
    assert str(target) in line and "appeared" in line
    assert [p.name for p in target.iterdir()] == ["mine.txt"]
    assert (target / "mine.txt").read_text() == "user data" and _dot_entries(ns) == []


# --------------------------------------------------------------------------------------
# RL Unplugged: actions outside the declared space, PNG headers checked before decoding
# --------------------------------------------------------------------------------------


def _png(img: np.ndarray) -> bytes:
    from PIL import Image

    bio = io.BytesIO()
    Image.fromarray(img, mode="L").save(bio, format="PNG")
    return bio.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def zero_png(width: int, height: int, rows_per_block: int = 250) -> bytes:
    """A valid all-black 8-bit grayscale PNG of any size, built without its pixels: the
    deflate stream is one block of rows compressed after a full flush (so it does not refer to
    earlier data), repeated; the Adler-32 of ``n`` zero bytes is ``(n mod 65521) << 16 | 1``.
    46000x46000 (2.1 GB of pixels) takes 2 MB, and 3 KB once gzipped in a shard."""
    assert height % rows_per_block == 0
    rows = bytes((width + 1) * rows_per_block)  # filter byte 0 + zero pixels, per row
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(rows) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(rows) + c.flush(zlib.Z_FULL_FLUSH)
    assert again == first
    total = (width + 1) * height
    idat = (
        b"\x78\xda"
        + first * (height // rows_per_block)
        + c.flush()
        + struct.pack(">I", ((total % 65521) << 16) | 1)
    )
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def test_zero_png_is_a_valid_png() -> None:
    from PIL import Image

    png = zero_png(30, 500)
    with Image.open(io.BytesIO(png)) as im:
        arr = np.asarray(im)
    assert arr.shape == (500, 30) and arr.dtype == np.uint8 and not arr.any()


def _records(
    n: int,
    *,
    actions: dict[int, int] | None = None,
    newest: dict[int, bytes] | None = None,
    frame: int = 12,
) -> list[bytes]:
    """``n`` RL Unplugged Atari records of one episode (12x12 frames, zero padding), with
    ``actions[t]`` as ``a_t`` and ``newest[t]`` as the newest frame of ``o_t`` of record t."""
    from tianshou_offline.converters._tfrecord import example_class

    rng = np.random.default_rng(1)
    frames = [_png(rng.integers(0, 255, (frame, frame), dtype=np.uint8)) for _ in range(n + 1)]
    for t, png in (newest or {}).items():
        frames[t] = png
    zeros = _png(np.zeros((frame, frame), np.uint8))
    recs = []
    for t in range(n):
        ex = example_class()()
        f = ex.features.feature
        f["o_t"].bytes_list.value.extend(
            [frames[k] if k >= 0 else zeros for k in range(t - 3, t + 1)]
        )
        f["o_tp1"].bytes_list.value.extend([frames[k] if k >= 0 else zeros for k in range(t - 2, t + 2)])  # fmt: skip
        f["a_t"].int64_list.value.append((actions or {}).get(t, t % 4))
        f["a_tp1"].int64_list.value.append((t + 1) % 4)
        f["r_t"].float_list.value.append(1.0)
        f["d_t"].float_list.value.append(0.0 if t == n - 1 else 1.0)
        f["episode_id"].int64_list.value.append(7)
        f["episode_return"].float_list.value.append(float(n))
        recs.append(ex.SerializeToString())
    return recs


def _shard(path: Path, records: list[bytes]) -> Path:
    import crc32c

    def masked(data: bytes) -> int:
        c = crc32c.crc32c(data)
        return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    stream = b""
    for r in records:
        head = struct.pack("<Q", len(r))
        stream += head + struct.pack("<I", masked(head)) + r + struct.pack("<I", masked(r))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(stream, mtime=0))
    return path


@pytest.mark.parametrize("value", [18, 2**63 - 1, -1])
def test_rlu_action_outside_the_declared_space(tmp_path: Path, value: int) -> None:
    pytest.importorskip("crc32c")
    from tianshou_offline.converters.rl_unplugged import convert_shard

    src = _shard(tmp_path / "Breakout" / "shard", _records(9, actions={5: value}))
    out = tmp_path / "o.hdf5"
    with pytest.raises(DatasetFormatError) as e:
        convert_shard(src, out, task="Breakout", workers=1, num_actions=18)
    msg = str(e.value)
    assert str(src) in msg and "record 5" in msg and f"a_t is {value}" in msg
    assert "Discrete(18)" in msg
    assert not out.exists() and _dot_entries(tmp_path) == []


@pytest.fixture()
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the PNGs decoded (``decoder="pillow"``); none of a huge one may be."""
    from tianshou_offline.converters import _tfrecord

    sizes: list[int] = []
    factory = _tfrecord._DECODERS["pillow"]

    def spying() -> Callable[[bytes], np.ndarray]:
        decode = factory()

        def spy(png: bytes) -> np.ndarray:
            sizes.append(len(png))
            assert len(png) < 100_000, "a huge PNG is being decoded"
            return decode(png)

        return spy

    monkeypatch.setitem(_tfrecord._DECODERS, "pillow", spying)
    return sizes


@pytest.mark.parametrize("record", [0, 4])
def test_rlu_huge_png_fails_fast_without_decoding(
    tmp_path: Path, decoded: list[int], record: int
) -> None:
    pytest.importorskip("crc32c")
    from tianshou_offline.converters.rl_unplugged import convert_shard

    huge = zero_png(46000, 46000)
    src = _shard(tmp_path / "Breakout" / "shard", _records(8, newest={record: huge}))
    assert src.stat().st_size < 64_000  # a small shard (the huge frame is in 8 stacks)
    out = tmp_path / "o.hdf5"
    t0 = time.perf_counter()
    with pytest.raises(DatasetFormatError) as e:
        convert_shard(src, out, task="Breakout", workers=1, num_actions=4, decoder="pillow")
    assert time.perf_counter() - t0 < 30
    msg = str(e.value)
    assert str(src) in msg and f"record {record}" in msg and "46000x46000" in msg
    assert "not decoded" in msg
    assert all(n < 100_000 for n in decoded)
    assert not out.exists() and _dot_entries(tmp_path) == []


def test_rlu_png_header_checks() -> None:
    from tianshou_offline.converters._rlu_decode import check_png_frame

    ok = _png(np.zeros((12, 12), np.uint8))
    assert check_png_frame(ok, (12, 12), where="w", what="o_t[3]") == (12, 12)
    assert check_png_frame(ok, None, where="w", what="o_t[3]") == (12, 12)
    with pytest.raises(DatasetFormatError, match="12x12 8-bit grayscale.*expected an 8-bit grayscale 84x84"):  # fmt: skip
        check_png_frame(ok, (84, 84), where="w", what="o_t[3]")
    from PIL import Image

    bio = io.BytesIO()
    Image.new("RGB", (12, 12)).save(bio, format="PNG")
    with pytest.raises(DatasetFormatError, match="RGB"):
        check_png_frame(bio.getvalue(), (12, 12), where="w", what="o_t[3]")
    with pytest.raises(DatasetFormatError, match="not a valid PNG"):
        check_png_frame(b"GIF89a" + bytes(40), (12, 12), where="w", what="o_t[3]")
    bad_crc = bytearray(ok)
    bad_crc[30] ^= 0xFF
    with pytest.raises(DatasetFormatError, match="CRC"):
        check_png_frame(bytes(bad_crc), (12, 12), where="w", what="o_t[3]")


# --------------------------------------------------------------------------------------
# repair of files that are not ours
# --------------------------------------------------------------------------------------


def _tianshou_file(path: Path) -> Path:
    from tianshou.data import Batch, ReplayBuffer

    buf = ReplayBuffer(8)
    for t in range(5):
        buf.add(
            Batch(obs=np.float32(t), act=0, rew=1.0, terminated=t == 4, truncated=False,
                  obs_next=np.float32(t + 1), info={})
        )  # fmt: skip
    buf.save_hdf5(str(path))
    return path


@pytest.mark.parametrize("kind", ["tianshou", "d4rl"])
def test_repair_refuses_a_foreign_file(tmp_path: Path, kind: str) -> None:
    from tianshou_offline.data.repair import repair_file

    path = (
        _tianshou_file(tmp_path / "t.hdf5") if kind == "tianshou" else _d4rl_file(
            tmp_path / "t.hdf5", n=10
        )
    )  # fmt: skip
    before = path.read_bytes()
    with pytest.raises(DatasetFormatError) as e:
        repair_file(path)
    msg = str(e.value)
    assert str(path) in msg and f"a {kind} file" in msg and "repair rewrites only" in msg
    assert f"convert {kind}" in msg
    assert path.read_bytes() == before and _dot_entries(tmp_path) == []
    res = _cli(["repair", str(path)])
    assert "repair rewrites only" in _one_error_line(res)


def test_file_sha256_reads_every_block(tmp_path: Path) -> None:
    """The digest covers the whole file, past the 1 MiB read block and its ragged end."""
    import hashlib

    data = np.random.default_rng(0).bytes((5 << 19) + 3)
    (tmp_path / "f.bin").write_bytes(data)
    assert atomic.file_sha256(tmp_path / "f.bin") == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert atomic.file_sha256(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_in_child_process_raises_a_failed_allocation_as_memory_error() -> None:
    """A MemoryError in the child (numpy's; pyarrow's ArrowMemoryError subclasses it) comes
    back as MemoryError, a resource failure, not as the RuntimeError of a bug; other
    exceptions stay RuntimeError. Before: RuntimeError('MemoryError: ...') (checked to
    fail so)."""

    def allocate() -> None:
        raise MemoryError("Unable to allocate 9.14 MiB")

    class ArrowLikeMemoryError(MemoryError):
        pass

    def allocate_in_a_library() -> None:
        raise ArrowLikeMemoryError("malloc of size 64 failed")

    with pytest.raises(MemoryError, match=r"^Unable to allocate 9\.14 MiB$"):
        atomic.in_child_process(allocate)
    with pytest.raises(MemoryError, match=r"^ArrowLikeMemoryError: malloc of size 64 failed$"):
        atomic.in_child_process(allocate_in_a_library)
    empty: dict[str, int] = {}
    with pytest.raises(RuntimeError, match=r"^KeyError: 'k'$"):
        atomic.in_child_process(lambda: empty["k"])
