"""Faults beyond a kill (issue 30): every writer meets a write that fails, two processes write
the same output, the output directory is read-only, vanishes, or the temporary is on another
file system than its output.

- every writer (the converters ``convert d4rl``, ``convert minari`` (HDF5 and Arrow
  storage), ``convert tianshou`` (a ``ReplayBuffer``'s file and a ``VectorReplayBuffer``'s),
  ``convert tfds`` (with and without ``--frame-stack``), ``convert rl-unplugged-atari``;
  ``BufferWriter``, ``EpisodeRecorder``,
  ``make-datasets``, ``export minari``, ``repack``, a grid cell and its report, a policy
  checkpoint, a Decision Transformer's checkpoint, a training checkpoint over the previous
  one) under each fault of :mod:`benchmarks._lib.faults.inject` (``RLIMIT_FSIZE``;
  ``ENOSPC``/``EIO`` from the Nth write call, injected by an ``LD_PRELOAD`` shim; a full tmpfs
  in a user+mount namespace; a read-only output directory, a read-only bind mount in a
  user+mount namespace as root, ``chmod`` otherwise; the output directory deleted by the shim
  at the Nth write call) at a seeded random moment, one test per writer and fault: a
  typed error naming the output and the cause (CLI: exit 2, one ``error:`` line), every
  output present complete, no temporary left, an earlier output beside it intact (deleted
  directory: nothing made again), the recorder's file holding exactly the episodes it
  committed; a fault this system cannot inject (no C compiler, no user namespaces) is
  skipped, saying why;
- two processes converting to the same output (each converter), or repacking to one: one
  publishes a complete output, the other fails with one ``error:`` line (an export's
  directory appearing mid-run: ``test_atomic.py``); a grid worker on a cell, ``make-datasets``
  on a family, and an example's training run in a run directory (its checkpoints), that
  another process holds: it fails at once (``OutputBusyError``), writing nothing;
- a temporary on another file system: a typed error, nothing half-written; every
  temporary of the package is beside its output, so this cannot happen there.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks._lib import faults as _faults
from tianshou_offline.data import atomic
from tianshou_offline.errors import OutputWriteError

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------
# every writer, every fault
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """One child runs every writer under every fault at one seeded moment each (0.05-0.9 of
    what the writer needs: the fault always bites)."""
    frac = random.Random(30).uniform(0.05, 0.9)
    return _faults.sweep(list(_faults.WRITERS), _faults.FAULTS, lambda w, f: [frac],
                         tmp_path_factory.mktemp("faults"), timeout=300)  # fmt: skip


@pytest.mark.parametrize("fault", _faults.FAULTS)
@pytest.mark.parametrize("writer", _faults.WRITERS)
def test_every_writer_fails_cleanly(
    swept: tuple[dict[str, str], list[dict[str, Any]]], writer: str, fault: str
) -> None:
    skipped, rows = swept
    if fault in skipped:
        pytest.skip(f"{fault}: {skipped[fault]}")
    mine = [r for r in rows if r["fault"] == fault and r["writer"] == writer]
    assert len(mine) == 1, mine
    r = mine[0]
    where = f"{writer} under {fault} at {r['value']}: {r['message']}"
    assert r["outcome"] == "typed", where
    assert r["wrong"] == [] and r["temps"] == [] and r["earlier_intact"], (where, r)
    says = {
        "fsize": ("File too large (EFBIG)",),
        "eio": ("(EIO)",),
        "enospc": ("(ENOSPC)",),
        "full": ("(ENOSPC)",),
        # the CLI's check of its output path says it in words, before anything is written;
        # chmod (not root) refuses with EACCES
        "readonly": ("(EROFS)", "(Read-only file system)", "(EACCES)", "(Permission denied)"),
        "vanish": ("(ENOENT)",),
    }[fault]
    assert any(s in r["message"] for s in says), where
    if fault == "vanish":
        assert "vanished during the run" in r["message"], where


def test_a_write_failing_in_the_patch_table_is_an_error_not_a_crash(tmp_path: Path) -> None:
    """``convert rl-unplugged-atari`` (and ``convert tfds --frame-stack``) append the table of
    exact stacks to the finished temporary; an I/O error there (the last ~10% of its write
    calls) crashed the process (a segmentation fault in libhdf5 closing the file opened for
    appending; found by ``benchmarks/faults.py``). Now the table is written in a forked child
    and the failure is one typed error line. Fails with the table written in this process."""
    skipped, rows = _faults.sweep(["convert rl-unplugged"], ("eio",), lambda w, f: [0.92, 0.97],
                                  tmp_path, timeout=300)  # fmt: skip
    if skipped:
        pytest.skip(str(skipped))
    for r in rows:
        assert r["outcome"] == "typed" and "(EIO)" in r["message"], r
        assert r["wrong"] == [] and r["temps"] == [] and r["earlier_intact"], r


def test_a_recorder_whose_directory_vanishes_as_it_closes(tmp_path: Path) -> None:
    """Found by ``benchmarks/faults.py`` (``vanish``, on eec4955): the recorder's directory
    deleted during its last write calls (the file's close, after the last commit) finished
    as if nothing had happened, the recorded file gone with it. Now the close, too, checks
    that the file in place is still linked: one typed error (ENOENT). Fails on eec4955
    (outcome ``ok``: 'finished as if its output directory had not vanished')."""
    skipped, rows = _faults.sweep(["EpisodeRecorder"], ("vanish",), lambda w, f: [0.99],
                                  tmp_path, timeout=300)  # fmt: skip
    if skipped:
        pytest.skip(str(skipped))
    (r,) = rows
    assert r["outcome"] == "typed" and "(ENOENT)" in r["message"], r
    assert r["wrong"] == [] and r["temps"] == [] and r["earlier_intact"], r


def test_an_export_whose_directory_vanishes_at_its_first_write_leaves_nothing(
    tmp_path: Path,
) -> None:
    """Found by ``benchmarks/faults.py`` (``vanish`` at the first write calls, 1-3 in 100
    trials): the datasets root deleted as Minari writes the namespace's metadata; Minari's
    namespace calls made the root again (empty, the same inode number on this file system)
    before the typed error. Now what was made again goes (an open descriptor of the root
    tells it was deleted). Fails on db21e9b: earlier_intact False (an empty root left)."""
    skipped, rows = _faults.sweep(["export minari"], ("vanish",), lambda w, f: [0.0],
                                  tmp_path, timeout=300)  # fmt: skip
    if skipped:
        pytest.skip(str(skipped))
    (r,) = rows
    assert r["outcome"] == "typed" and "(ENOENT)" in r["message"], r
    assert r["wrong"] == [] and r["temps"] == [] and r["earlier_intact"], r


# --------------------------------------------------------------------------------------
# two writers
# --------------------------------------------------------------------------------------

_HOLD = """
import importlib, pathlib, sys, time
held, go, where, argv = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3], sys.argv[4:]

from tianshou_offline.data import writer
writer._FLUSH_BYTES = 1  # rows reach the temporary as they are added
module, _, name = where.partition(":")
owner = importlib.import_module(module)
*outer, attr = name.split(".")
for part in outer:
    owner = getattr(owner, part)
original = getattr(owner, attr)

def hold(*args, **kwargs):  # the first file is written, not yet published: wait
    if not held.exists():
        held.write_text("holding")
        deadline = time.monotonic() + 300
        while not go.exists():
            if time.monotonic() > deadline:
                raise SystemExit("never released")
            time.sleep(0.02)
    return original(*args, **kwargs)

setattr(owner, attr, hold)
from tianshou_offline.cli import main
sys.exit(main(argv))
"""

_BUFFER_WRITER = "tianshou_offline.data.writer:BufferWriter.close"
"""Where a converter's run is held: its first file is written, not yet finished nor published."""
_PUBLISH = "tianshou_offline.data.atomic:publish"
"""Where a writer using ``atomic_output`` is held: its temporary is complete, not published."""


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **extra}


def _held(
    tmp_path: Path, argv: list[str], during: Callable[[], object], *,
    where: str = _BUFFER_WRITER, **env: str,
) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run ``tianshou-offline argv`` in a process that pauses midway (as it calls ``where``,
    ``module:function``, the first time: by default as it finishes its first file, written
    but not published); call ``during`` there; let it go on."""
    held, go = tmp_path / "held", tmp_path / "go"
    p = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(held), str(go), where, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=_env(**env),
    )
    deadline = time.monotonic() + 300
    while not held.exists():
        assert p.poll() is None, p.communicate()
        assert time.monotonic() < deadline, "the run never got midway"
        time.sleep(0.05)
    try:
        during()
    finally:
        go.write_text("go")
        out, err = p.communicate(timeout=300)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


_NATIVE = re.compile(
    r"[IWEF]\d{4} |To enable the following instructions: |"
    r"A\.L\.E: Arcade Learning Environment|\[Powered by Stella\]"
)
"""Lines native libraries print on stderr whatever the CLI does (TensorFlow's log of its
start-up in ``convert tfds``; ale-py's banner, imported for the action space of an RL
Unplugged game): not the CLI's."""


def _error_line(res: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith("WARNING")]
    lines = [ln for ln in lines if not _NATIVE.match(ln)]
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


def _appeared(res: subprocess.CompletedProcess[str], target: Path) -> None:
    line = _error_line(res)
    assert str(target) in line and "appeared while this run was writing it" in line, line


@pytest.fixture(scope="module")
def converter(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], _faults.Converter]:
    """The converter ``name`` of the harness, its sources made (once per module)."""
    src = tmp_path_factory.mktemp("converter-sources")
    made: dict[str, _faults.Converter] = {}

    def get(name: str) -> _faults.Converter:
        if name not in made:
            if name == "convert tfds":
                pytest.importorskip("tensorflow_datasets")
            c = _faults.CONVERTERS[name]()
            c.prepare(src)
            made[name] = c
        return made[name]

    return get


CONVERTERS = [c for c in _faults.CONVERTERS if c != "convert tfds-flat"]
"""The converters raced by two processes: ``convert tfds`` without ``--frame-stack`` writes
through the same ``BufferWriter`` as with it (which is raced), for another TensorFlow
start-up in a subprocess (it stays in the fault sweep)."""


@pytest.mark.parametrize("name", CONVERTERS)
def test_two_conversions_to_one_output(
    name: str, converter: Callable[[str], _faults.Converter], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """The second conversion runs while the first is midway (its first file written, not
    published): it publishes; the first fails with one line naming that output, leaving
    what the second published complete, and no temporary anywhere."""
    from tianshou_offline.cli import main

    conv = converter(name)
    out = tmp_path / "out"
    out.mkdir()
    argv = [*conv.argv(conv.output(out)), "--no-progress"]
    codes: list[int] = []
    first = _held(tmp_path, argv, lambda: codes.append(main(argv)))
    assert codes == [0], capsys.readouterr().err
    _appeared(first, conv.output(out))
    assert conv.check(out, _faults.Ran("ok")) == []
    assert _faults.temps_left(out) == []


def test_two_repacks_to_one_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # fmt: skip
    """The same for ``repack``: the second repack runs while the first holds a complete
    temporary, not yet published; it publishes, the first fails with one line naming the
    output, the published file is complete and no temporary is left. Fails with a publish
    that replaces (the first run's file then overwrites the second's without an error)."""
    from tianshou_offline import load_buffer
    from tianshou_offline.cli import main

    repack = _faults.WRITERS["repack"]()
    repack.prepare(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    argv = ["repack", str(tmp_path / "repack-source.hdf5"), str(out / "r.hdf5"), "--no-progress"]
    codes: list[int] = []
    first = _held(tmp_path, argv, lambda: codes.append(main(argv)), where=_PUBLISH)
    assert codes == [0], capsys.readouterr().err
    _appeared(first, out / "r.hdf5")
    assert len(load_buffer(out / "r.hdf5")) == 20 * 50
    assert sorted(p.name for p in out.iterdir()) == ["r.hdf5"]


@pytest.mark.parametrize("script", ["d4rl_td3_bc.py", "finetune_td3_bc.py"])
def test_two_runs_into_one_run_directory(
    script: str, pendulum_random: Path, tmp_path: Path
) -> None:  # fmt: skip
    """Training checkpoints: a second run into the directory of a run that goes on (a second
    ``--resume`` of it; two runs started in the same second) fails at once with
    ``OutputBusyError``, training nothing and writing nothing there; the running one's
    checkpoints are untouched. (The Atari examples take the same lock,
    ``training.lock_run_directory``.) Checked to fail with ``lock_run_directory`` making the
    directory without taking its lock: the second run trains and replaces ``last.pt``."""
    from tests.helpers.pendulum import SHORT_TASK
    from tests.helpers.resume import run_in_process
    from tianshou_offline.errors import OutputBusyError

    path = REPO / "examples" / "mujoco" / script
    budget = ["--online-steps", "4", "--online-buffer-size", "100"] if "finetune" in script else []
    args = ["--expert-data-task", str(pendulum_random), "--task", SHORT_TASK, "--epoch", "1",
            "--step-per-epoch", "4", "--test-num", "1", "--hidden-sizes", "8", "--batch-size",
            "16", "--threads", "1", "--logger", "none", "--show-progress", "0", *budget,
            "--logdir", str(tmp_path)]  # fmt: skip
    run_in_process(path, args)
    (run_dir,) = tmp_path.glob(f"{SHORT_TASK}/*/0/*")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    assert "last.pt" in before
    with atomic.output_lock(run_dir):  # the first run, going on
        with pytest.raises(OutputBusyError, match=f"{run_dir}: another process is writing"):
            run_in_process(path, [*args, "--resume"])
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before


def test_two_grid_workers_on_one_cell(tmp_path: Path) -> None:
    """A worker that starts a cell another one runs (it holds the cell directory's lock: an
    ``flock``, which two descriptors of one process contend for as two processes do) fails
    at once, training nothing, leaving nothing."""
    from tianshou_offline.errors import OutputBusyError
    from tianshou_offline.scale.grid import cell_dir, run_cell

    src, out = tmp_path / "src", tmp_path / "grid"
    src.mkdir()
    g = _faults.Grid()
    g.prepare(src)
    cell = cell_dir(g.cell(), out)
    cell.mkdir(parents=True)
    with atomic.output_lock(cell):
        with pytest.raises(OutputBusyError, match=f"{cell}: another process is writing"):
            run_cell(g.cell(), out)
    assert list(cell.iterdir()) == []


def test_two_make_datasets_on_one_family(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same for a second ``make-datasets`` on a family that one is making: one error
    line, exit 2, nothing written."""
    from tianshou_offline.cli import main

    fam = tmp_path / "family"
    fam.mkdir()
    with atomic.output_lock(fam):
        code = main(_faults.MakeDatasets.argv(fam))
    line = _error_line(subprocess.CompletedProcess([], code, "", capsys.readouterr().err))
    assert str(fam) in line and "another process is writing these outputs now" in line
    assert list(fam.iterdir()) == []


# --------------------------------------------------------------------------------------
# another file system (read-only and vanished output directories are faults of the sweep
# above: ``readonly``, ``vanish``)
# --------------------------------------------------------------------------------------


@pytest.fixture()
def other_fs(tmp_path: Path) -> Iterator[Path]:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second file system (/dev/shm) here")
    d = shm / f"faults-{os.getpid()}"
    d.mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_temporary_on_another_file_system(
    tmp_path: Path, other_fs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A temporary that is not beside its output (a path on another file system): the rename
    cannot move it (``EXDEV``); nothing is copied half-way, the temporary is removed."""
    monkeypatch.setattr(
        atomic, "temp_path", lambda out, tag=None: other_fs / f".{Path(out).name}.tmp"
    )
    out = tmp_path / "policy.json"
    with pytest.raises(
        OutputWriteError, match=r"policy\.json: cannot write the output: .*\(EXDEV\)"
    ):
        with atomic.atomic_output(out, overwrite=False) as tmp:
            tmp.write_bytes(b"{}" * 1000)
    assert not out.exists() and list(other_fs.iterdir()) == []
    assert list(tmp_path.iterdir()) == []


_TEMPORARIES_ELSEWHERE = re.compile(r"\b(tempfile|mkstemp|mkdtemp|TemporaryDirectory|gettempdir)\b")


def test_every_temporary_is_beside_its_output(tmp_path: Path) -> None:
    """Why a temporary on another file system than its output cannot happen in the package:
    every writer names its temporary with ``atomic.temp_path``, which puts it in the output's
    own directory (through the same path, a symbolic link included: the same file system,
    so the rename into place never crosses one), and no module of the package makes a
    temporary anywhere else (``tempfile``: only ``quickstart``'s working directory, where it
    writes its outputs, not their temporaries). Fails on a ``temp_path`` in the system's
    temporary directory, and on a module that starts using ``tempfile``."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    for out in (real / "o.hdf5", tmp_path / "link" / "o.hdf5", Path("relative.hdf5")):
        for tag in (None, "patches"):
            tmp = atomic.temp_path(out, tag)
            assert tmp.parent == out.parent and atomic.temp_owner(tmp.name, out.name), tmp
    with atomic.atomic_output(tmp_path / "link" / "x.json", overwrite=False) as tmp:
        assert tmp.parent == tmp_path / "link"
        tmp.write_bytes(b"{}")
        assert os.stat(tmp).st_dev == os.stat(real).st_dev
    assert (real / "x.json").read_bytes() == b"{}"
    package = REPO / "tianshou_offline"
    elsewhere = sorted(
        str(f.relative_to(package))
        for f in package.rglob("*.py")
        if _TEMPORARIES_ELSEWHERE.search(f.read_text())
    )
    assert elsewhere == ["cli/quickstart.py"], elsewhere


def test_write_error_names_the_output_and_the_cause(tmp_path: Path) -> None:
    """h5py's message (a failed write deep in libhdf5) becomes one line: the output, the
    system's words, the errno's name, what it means."""
    raw = RuntimeError(
        "Can't decrement id ref count (file write failed: time = Mon Dec  7 04:53:50 2026\n, "
        f"filename = '{tmp_path}/.x.hdf5.1.abcdef01.tmp', file descriptor = 3, errno = 28, "
        "error message = 'No space left on device', buf = 0x1, total write size = 8)"
    )
    assert atomic.is_write_failure(raw) and not atomic.is_write_failure(RuntimeError("bug"))
    e = atomic.write_error(tmp_path / "x.hdf5", raw)
    assert isinstance(e, OSError) and e.errno == 28 and "\n" not in str(e)
    assert str(e).startswith(f"{tmp_path / 'x.hdf5'}: cannot write the output: No space left")
    assert "(ENOSPC); the file system is full" in str(e)


def test_grid_whose_event_file_fails_is_one_error_line(
    tmp_path: Path, pendulum_random: Path
) -> None:
    """TensorBoard writes its event file in a thread of its own; a write failing there (here
    EIO on that file only, from its second write on) ended the thread with a traceback on
    stderr before the grid's one ``error:`` line. Now: exit 2, one line naming the cell's
    directory and the cause, no traceback. Fails without
    ``loggers.writer_thread_errors_not_printed`` (the thread's traceback is printed)."""
    import errno
    import json

    from tianshou_offline.scale.grid import cell_dir, load_grid

    shim = _faults.build_shim(tmp_path / "shim")
    if shim is None:
        pytest.skip("no C compiler for the write-failing shim")
    spec = tmp_path / "grid.json"
    spec.write_text(json.dumps({
        "output": str(tmp_path / "out"), "datasets": [str(pendulum_random)],
        "algorithms": {"il": {"hidden_sizes": [[8]]}}, "seeds": 1,
        "budget": {"epochs": 2, "steps_per_epoch": 4, "batch_size": 16, "test_episodes": 1,
                   "eval_episodes": 1},
    }))  # fmt: skip
    directory = cell_dir(load_grid(spec).cells[0], tmp_path / "out")
    res = subprocess.run(
        [sys.executable, "-c", "import sys; from tianshou_offline.cli import main; "
         "sys.exit(main(sys.argv[1:]))", "grid", str(spec), "--no-ray", "--no-progress"],
        capture_output=True, text=True, timeout=300,
        env=_env(LD_PRELOAD=str(shim), FAULT_DIR=str(directory / "events.out.tfevents"),
                 FAULT_AT="1", FAULT_ERRNO=str(errno.EIO)),
    )  # fmt: skip
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    line = _error_line(res)
    assert "1 of 1 cells failed" in line, line
    failed = [ln for ln in res.stdout.splitlines() if ln.startswith("failed: ")]
    assert len(failed) == 1 and str(directory) in failed[0] and "(EIO)" in failed[0], res.stdout
    assert (directory / "last.pt").is_file() or not (directory / "result.json").exists()
