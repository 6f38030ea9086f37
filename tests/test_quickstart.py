"""The quickstart runs end to end (small budget) through the real CLI; every policy it saves
replays with ``tianshou-offline record``; it refuses to overwrite an earlier run; its printed
output is the README's transcript (modulo the timing column)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tianshou_offline import load_buffer
from tianshou_offline.cli import main as cli_main
from tianshou_offline.errors import OutputExistsError
from tianshou_offline.quickstart import TABLE_HEADER, QuickstartRow, run_quickstart

ROOT = Path(__file__).resolve().parents[1]
TIME_COLUMN = slice(65, 75)
"""Characters of a table row that hold its time (s): after the name (34), episodes (9),
mean return (13) and ± std (9) columns."""


def _run(*args: str, cwd: Path, script: bool = False) -> subprocess.CompletedProcess[str]:
    entry = (
        [str(ROOT / "examples" / "quickstart.py")]
        if script
        else ["-m", "tianshou_offline.cli", "quickstart"]
    )
    return subprocess.run(
        [sys.executable, *entry, *args],
        capture_output=True, text=True, timeout=900, cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip


def _replay_commands(stdout: str) -> list[list[str]]:
    """The ``tianshou-offline record ...`` commands the quickstart prints, as argv lists."""
    return [
        shlex.split(line.strip())[1:]
        for line in stdout.splitlines()
        if line.strip().startswith("tianshou-offline record ")
    ]


def test_quickstart_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows: list[QuickstartRow] = []
    result = run_quickstart(
        tmp_path, episodes=8, epochs=2, steps_per_epoch=500, eval_episodes=5,
        continuous_steps=200, on_row=rows.append,
    )  # fmt: skip
    dataset, bc = result.rows[0], result.rows[1]
    assert dataset.episodes == 8 and dataset.mean_return > 150
    assert bc.mean_return >= 195  # BC of a noisy expert on CartPole
    assert result.files["dataset"].exists() and result.files["bc_policy"].exists()
    assert "behaviour cloning" in result.table()
    assert rows == result.rows and len(rows) == 4  # each row reported as it was measured
    # every saved policy replays with `tianshou-offline record --policy`
    monkeypatch.chdir(tmp_path)
    policies = [f for f in result.outputs if f.kind == "policy"]
    assert {f.path.name for f in policies} == {"bc_policy.pt", "td3bc_pendulum_policy.pt"}
    for f in policies:
        out = tmp_path / f"{f.path.stem}_replay.hdf5"
        argv = [
            "record",
            "--env",
            f.env_id,
            "--policy",
            str(f.path),
            "--episodes",
            "1",
            "-o",
            str(out),
        ]
        assert cli_main(argv) == 0
        assert len(load_buffer(out)) > 0
    # an earlier run's files are not overwritten unless asked
    before = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    with pytest.raises(OutputExistsError, match="cartpole_expert.hdf5.*overwrite"):
        run_quickstart(tmp_path, episodes=2, epochs=1, steps_per_epoch=10, continuous=False)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before
    again = run_quickstart(
        tmp_path, episodes=2, epochs=1, steps_per_epoch=10, eval_episodes=1, continuous=False,
        overwrite=True,
    )  # fmt: skip
    assert again.rows[0].episodes == 2


def test_quickstart_example_script(tmp_path: Path) -> None:
    work = tmp_path / "work"
    p = _run("--workdir", str(work), "--episodes", "4", "--epochs", "1", "--steps-per-epoch", "200",
             "--td3bc-steps", "100", "--eval-episodes", "2", cwd=tmp_path, script=True)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "mean return" in p.stdout and "behaviour cloning" in p.stdout
    assert (work / "cartpole_expert.hdf5").exists()
    assert "behaviour cloning on CartPole-v1: update 1/200" in p.stderr  # progress, not a TTY
    # ... to the end of each training run (issue 23), not only its first update
    assert "behaviour cloning on CartPole-v1: epoch 1: update 200/200 (100%)" in p.stderr
    assert "TD3+BC on Pendulum-v1: epoch 1: update 100/100 (100%)" in p.stderr
    assert "\r" not in p.stderr and "\x1b" not in p.stderr
    # each printed policy replays
    commands = _replay_commands(p.stdout)
    assert [c[c.index("--policy") + 1] for c in commands] == [
        str(work / "bc_policy.pt"), str(work / "td3bc_pendulum_policy.pt")
    ]  # fmt: skip
    for argv in commands:
        argv[argv.index("--episodes") + 1] = "1"
        argv[argv.index("-o") + 1] = str(tmp_path / argv[argv.index("-o") + 1])
        assert cli_main(argv) == 0
    # running again into the same --workdir refuses, and leaves the files alone
    before = {x: x.stat().st_mtime_ns for x in work.iterdir()}
    p = _run("--workdir", str(work), "--episodes", "4", cwd=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    errors = [line for line in p.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("error: "), p.stderr
    assert "cartpole_expert.hdf5" in errors[0] and "--overwrite" in errors[0]
    assert p.stdout == ""
    assert {x: x.stat().st_mtime_ns for x in work.iterdir()} == before


@pytest.mark.parametrize("flag", ["--epochs", "--steps-per-epoch"])
def test_quickstart_rejects_bad_values(flag: str) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "tianshou_offline.cli", "quickstart", flag, "zero"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2 and "invalid int value" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize("flag", ["--episodes", "--epochs", "--td3bc-steps", "--eval-episodes"])
def test_quickstart_rejects_non_positive_sizes(flag: str, tmp_path: Path) -> None:
    p = _run("--workdir", str(tmp_path / "w"), flag, "0", cwd=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    errors = [line for line in p.stderr.splitlines() if "error:" in line]
    assert errors == [f"error: quickstart: {flag} is 0; expected at least 1"], p.stderr
    assert not (tmp_path / "w").exists()


def _readme_transcript() -> tuple[list[str], list[str]]:
    """The README Quickstart section's command (argv after ``tianshou-offline``) and the
    output lines it shows."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Quickstart") :]
    block = re.search(r"```text\n(.*?)```", section, re.S)
    assert block is not None, "no transcript in the README's Quickstart section"
    lines = block.group(1).splitlines()
    assert lines[0].startswith("$ tianshou-offline ")
    return shlex.split(lines[0][2:])[1:], lines[1:]


def _mask_times(lines: list[str]) -> list[str]:
    """Each table row with its time column replaced by ``<time>`` (it must hold a number)."""
    masked, in_table = [], False
    for line in lines:
        if in_table and line.strip():
            assert re.fullmatch(r" *\d+\.\d", line[TIME_COLUMN]), line
            line = line[: TIME_COLUMN.start] + "<time>" + line[TIME_COLUMN.stop :]
        elif in_table:
            in_table = False
        elif line == "-" * len(TABLE_HEADER):
            in_table = True
        masked.append(line)
    return masked


def _table_rows(lines: list[str]) -> dict[str, tuple[int, float]]:
    """The printed table's rows: name -> (episodes, mean return)."""
    start = lines.index("-" * len(TABLE_HEADER)) + 1
    end = lines.index("", start)
    return {line[:34].strip(): (int(line[34:43]), float(line[43:56])) for line in lines[start:end]}


@pytest.mark.slow
def test_printed_output_is_the_readme_transcript(tmp_path: Path) -> None:
    """The README's transcript, run as written (the default budget, about a minute): the
    same lines, modulo the numbers of the time column; and its continuous part (50 scripted
    Pendulum-v1 expert episodes, TD3+BC for 2,000 steps, 10 evaluation episodes) reaches
    expert level whatever numbers the README shows (a TD3+BC that learns nothing scores about
    −1200, the scripted expert about −150)."""
    argv, shown = _readme_transcript()
    assert argv[0] == "quickstart"
    p = _run(*argv[1:], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert _mask_times(p.stdout.splitlines()) == _mask_times(shown)
    rows = _table_rows(p.stdout.splitlines())
    episodes, mean = rows["dataset: scripted Pendulum expert"]
    assert episodes == 50 and mean > -250, rows
    assert rows["TD3+BC (tianshou_offline)"][1] > -300, rows
    workdir = tmp_path / argv[argv.index("--workdir") + 1]
    assert (workdir / "td3bc_pendulum_policy.pt").is_file()


def test_cli_knows_the_quickstart_files(tmp_path: Path) -> None:
    """``tianshou-offline quickstart`` refuses a rerun from its own list of the files (no torch
    import for the error); it must be the library's list."""
    from tianshou_offline.cli.quickstart import QUICKSTART_FILES
    from tianshou_offline.quickstart import quickstart_files

    assert QUICKSTART_FILES == tuple(p.name for p in quickstart_files(tmp_path))
