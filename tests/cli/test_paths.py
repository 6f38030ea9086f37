"""Bad output paths are one ``error:`` line, exit code 2, no traceback, in every command and
example (issue 23): a missing folder, an unwritable folder, a directory where a file goes (or
a file where a directory goes). The check comes with the arguments, before torch or
tianshou is imported; so do the other errors that need only the arguments (issue 23, item 6).

All command cases run from one subprocess (one Python start-up), each in a fork of it that
reports its exit code, its stderr and whether it imported torch/tianshou.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

_PROBE = r"""
import contextlib, io, json, os, sys
from tianshou_offline.cli import main

def run(case):
    os.environ.update(case["env"])
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(case["argv"])
        except SystemExit as e:
            code = e.code
        except BaseException as e:  # a traceback would have been printed
            code = f"raised {type(e).__name__}: {e}"
    return {"code": code, "stderr": err.getvalue(),
            "heavy": sorted(m for m in ("torch", "tianshou") if m in sys.modules)}

report = {}
for name, case in json.loads(sys.argv[1]).items():
    r, w = os.pipe()
    pid = os.fork()  # each case in a child of this process: its imports are its own
    if pid == 0:
        os.close(r)
        with os.fdopen(w, "w") as out:
            out.write(json.dumps(run(case)))
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as inp:
        report[name] = json.loads(inp.read())
    os.waitpid(pid, 0)
print(json.dumps(report))
"""

FILE_OUTPUTS = {  # command → argv with {out}; each writes a file
    "inspect --plot": ["inspect", "{buf}", "--plot", "{out}"],
    "record": ["record", "--env", "CartPole-v1", "--policy", "random", "--episodes", "1",
               "-o", "{out}"],
    "convert d4rl": ["convert", "d4rl", "{d4rl}", "-o", "{out}"],
    "convert minari": ["convert", "minari", "{tmp}/some-dataset", "-o", "{out}"],
    "convert tianshou": ["convert", "tianshou", "{buf}", "-o", "{out}"],
    "convert tfds": ["convert", "tfds", "rlu_atari/Pong_run_1", "--data-dir", "{tmp}",
                     "-o", "{out}"],
    "repack": ["repack", "{buf}", "{out}"],
    "evaluate --json": ["evaluate", "--fqe", "{ckpt}", "--data", "{buf}", "--json", "{out}"],
    "export-policy": ["export-policy", "{ckpt}", "-o", "{out}"],
}  # fmt: skip
DIR_OUTPUTS = {  # each creates a directory (with its parents)
    "convert rl-unplugged-atari": ["convert", "rl-unplugged-atari", "--task", "Pong",
                                   "--shard-id", "0", "--output-dir", "{out}"],
    "make-datasets": ["make-datasets", "--env", "CartPole-v1", "--budget", "10", "-o", "{out}"],
    "grid --output": ["grid", "{spec}", "--output", "{out}"],
    "quickstart --workdir": ["quickstart", "--workdir", "{out}"],
    "export minari": ["export", "minari", "{buf}", "--dataset-id", "x-v0"],
}  # fmt: skip
FLAG_WORDS = {"-o": "-o/--output", "{buf}": "OUTPUT", "export minari": "--dataset-id x-v0"}
"""How a command's error names the option (where not the option itself)."""
BAD = ("missing folder", "unwritable folder", "wrong kind")


def _unwritable(tmp: Path) -> Path:
    """A folder this process cannot write in: a read-only one, or /sys for root (root
    writes anywhere else)."""
    if os.geteuid() == 0:
        return Path("/sys")
    ro = tmp / "read-only"
    ro.mkdir(exist_ok=True)
    ro.chmod(0o555)
    return ro


def _bad_path(tmp: Path, bad: str, directory: bool) -> Path:
    if bad == "missing folder":
        # a directory output is created with its parents: what is missing is a folder
        # where a file is in the way
        return tmp / ("a-file/sub/out" if directory else "no-such-folder/out.x")
    if bad == "unwritable folder":
        return _unwritable(tmp) / "out"
    return tmp / ("a-file" if directory else "a-dir")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    import gymnasium as gym

    from tianshou_offline import BufferWriter

    tmp = tmp_path_factory.mktemp("paths")
    buf = tmp / "buf.hdf5"
    with BufferWriter(buf, observation_space=gym.spaces.Box(-1, 1, (2,)),
                      action_space=gym.spaces.Box(-1, 1, (1,))) as w:  # fmt: skip
        w.add_episode(obs=np.zeros((3, 2), np.float32), act=np.zeros((3, 1), np.float32),
                      rew=np.ones(3, np.float32), terminated=np.array([False, False, True]),
                      truncated=np.zeros(3, bool), obs_next=np.zeros((3, 2), np.float32))  # fmt: skip
    d4rl = tmp / "d4rl.hdf5"
    with h5py.File(d4rl, "w") as f:
        f["observations"] = np.zeros((4, 2), np.float32)
        f["actions"] = np.zeros((4, 1), np.float32)
        f["rewards"] = np.zeros(4, np.float32)
        f["terminals"] = np.array([0, 0, 0, 1], bool)
        f["timeouts"] = np.zeros(4, bool)
    (tmp / "ckpt.pt").write_bytes(b"checked later")
    spec = tmp / "grid.json"
    spec.write_text(json.dumps({"output": "runs", "datasets": [str(buf)], "algorithms": ["il"]}))
    (tmp / "a-dir").mkdir()
    (tmp / "a-file").write_text("in the way")
    return {"tmp": str(tmp), "buf": str(buf), "d4rl": str(d4rl), "ckpt": str(tmp / "ckpt.pt"),
            "spec": str(spec)}  # fmt: skip


def _cases(files: dict[str, str]) -> dict[str, dict[str, Any]]:
    tmp = Path(files["tmp"])
    cases: dict[str, dict[str, Any]] = {}
    for table, directory in ((FILE_OUTPUTS, False), (DIR_OUTPUTS, True)):
        for command, argv in table.items():
            for bad in BAD:
                out = _bad_path(tmp, bad, directory)
                env = {}
                if command == "export minari":  # writes $MINARI_DATASETS_PATH/x-v0
                    env = {"MINARI_DATASETS_PATH": str(out)}
                cases[f"{command}: {bad}"] = {
                    "argv": [a.format(out=out, **files) for a in argv],
                    "env": env,
                    "path": str(out),
                }
    # errors that need only the arguments (item 6)
    done = tmp / "done"
    done.mkdir()
    (done / "cartpole_expert.hdf5").write_text("an earlier run")
    for name, argv in {
        "make-datasets --env CartPol-v1": ["make-datasets", "--env", "CartPol-v1", "-o",
                                           str(tmp / "fam")],
        "quickstart rerun": ["quickstart", "--workdir", str(done)],
        "evaluate missing checkpoint": ["evaluate", "--fqe", str(tmp / "nope.pt"), "--data",
                                        files["buf"]],
        "evaluate missing data": ["evaluate", "--fqe", files["ckpt"], "--data",
                                  str(tmp / "nope.hdf5")],
        "record missing checkpoint": ["record", "--env", "CartPole-v1", "--policy",
                                      str(tmp / "nope.pt"), "--episodes", "1", "-o",
                                      str(tmp / "r.hdf5")],
    }.items():  # fmt: skip
        cases[name] = {"argv": argv, "env": {}, "path": ""}
    return cases


@pytest.fixture(scope="module")
def report(files: dict[str, str]) -> dict[str, Any]:
    cases = _cases(files)
    res = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(cases)],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr
    doc: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    for name, case in cases.items():
        doc[name]["path"] = case["path"]
    return doc


CASES = [f"{c}: {b}" for c in (*FILE_OUTPUTS, *DIR_OUTPUTS) for b in BAD]


@pytest.mark.parametrize("case", CASES)
def test_bad_output_path_is_one_line_before_heavy_imports(
    report: dict[str, Any], case: str
) -> None:
    r = report[case]
    lines = r["stderr"].strip().splitlines()
    assert r["code"] == 2, r
    assert len(lines) == 1 and lines[0].startswith("error: "), r["stderr"]
    assert "Traceback" not in r["stderr"]
    assert r["path"] in lines[0], lines[0]
    # the up-front check's words (the option that named the path), not an OSError's
    command = case.rpartition(":")[0]
    argv = {**FILE_OUTPUTS, **DIR_OUTPUTS}[command]
    key = argv[argv.index("{out}") - 1] if "{out}" in argv else command
    flag = FLAG_WORDS.get(key, key)
    assert lines[0].startswith(f"error: {flag} "), lines[0]
    assert r["heavy"] == [], f"{case}: imported {r['heavy']} before the error"


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("make-datasets --env CartPol-v1", "Did you mean"),
        ("quickstart rerun", "--overwrite"),
        ("evaluate missing checkpoint", "nope.pt"),
        ("evaluate missing data", "nope.hdf5"),
        ("record missing checkpoint", "nope.pt"),
    ],
)
def test_argument_errors_before_torch(report: dict[str, Any], case: str, says: str) -> None:
    r = report[case]
    assert r["code"] == 2 and r["stderr"].startswith("error: ") and says in r["stderr"], r
    if case.startswith("evaluate"):
        assert "random" not in r["stderr"]  # not record's vocabulary
    assert r["heavy"] == [], f"{case}: imported {r['heavy']} before the error"


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("config", ["MujocoConfig", "AtariConfig"])
def test_example_logdir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config: str, bad: str
) -> None:
    """The examples' --logdir (created with its parents) is checked with the flags."""
    from tianshou_offline.cli import example_args

    (tmp_path / "a-file").write_text("in the way")
    out = _bad_path(tmp_path, bad, directory=True)
    with pytest.raises(SystemExit) as e:
        example_args.parse_config(getattr(example_args, config), ["--logdir", str(out)],
                                  prog="example.py", description="")  # fmt: skip
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("example.py: error: --logdir"), err
    assert str(out) in err


def test_example_args_json_is_written_all_or_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``args.json`` of an example run: written whole, replaced by a resumed run; a write the
    disk refuses is a typed error naming the file, with no args.json and no temporary left."""
    import errno

    from tianshou_offline.cli import example_args
    from tianshou_offline.errors import OutputWriteError

    config = example_args.parse_config(example_args.MujocoConfig, ["--seed", "3"],
                                       prog="example.py", description="")  # fmt: skip
    path = example_args.write_args(config, tmp_path)
    assert json.loads(path.read_text())["seed"] == 3
    example_args.write_args(config, tmp_path)  # a resumed run: its own file replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["args.json"]
    path.unlink()

    def full(self: Path, *args: Any, **kwargs: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OutputWriteError, match="args.json"):
        example_args.write_args(config, tmp_path)
    assert list(tmp_path.iterdir()) == []
