"""``tianshou-offline --help`` and every ``convert``/``export`` ``--help`` import no heavy
module (tianshou, torch, TensorFlow, h5py, minari): their start time is Python's own
(measured by ``benchmarks/cli_start.py``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("tianshou", "torch", "tensorflow", "tensorboard", "h5py", "minari", "gymnasium", "wandb")

HELP_COMMANDS = [
    [],
    ["quickstart"],
    ["record"],
    ["inspect"],
    ["repair"],
    ["convert"],
    ["convert", "d4rl"],
    ["convert", "minari"],
    ["convert", "rl-unplugged-atari"],
    ["convert", "tfds"],
    ["convert", "tianshou"],
    ["export"],
    ["export", "minari"],
    ["export-policy"],
    ["make-datasets"],
    ["evaluate"],
]

_PROBE = """
import contextlib, io, json, sys
from tianshou_offline.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main(sys.argv[1:] + ["--help"])
    except SystemExit as e:
        code = e.code
print(json.dumps({"code": code, "help": out.getvalue(),
                  "modules": sorted(m for m in sys.modules if "." not in m)}))
"""


@pytest.mark.parametrize("command", HELP_COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_help_imports_nothing_heavy(command: list[str]) -> None:
    res = subprocess.run(
        [sys.executable, "-c", _PROBE, *command], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["code"] == 0 and "usage: tianshou-offline" in doc["help"]
    assert sorted(set(HEAVY) & set(doc["modules"])) == []


def test_abbreviated_flags_are_errors(capsys: pytest.CaptureFixture[str]) -> None:
    from tianshou_offline.cli import build_parser

    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["record", "--env", "CartPole-v1", "--episode", "3", "-o", "x"])
    assert e.value.code == 2
    assert "unrecognized arguments: --episode" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "command", "hint"),
    [
        (["record", "--env", "CartPole-v1", "--episode", "2", "-o", "x.hdf5"], "record",
         "--episode: did you mean --episodes?"),
        (["convert", "d4rl", "x.hdf5", "-o", "y.hdf5", "--overwirte"], "convert d4rl",
         "--overwirte: did you mean --overwrite?"),
        (["inspect", "x.hdf5", "-v"], "inspect", "-v: an option of tianshou-offline itself"),
    ],
)  # fmt: skip
def test_mistyped_flag_gets_the_commands_usage_and_a_suggestion(
    capsys: pytest.CaptureFixture[str], argv: list[str], command: str, hint: str
) -> None:
    """Issue 23: ``record --episode 2`` printed the top-level usage, with no suggestion."""
    from tianshou_offline.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: tianshou-offline {command} "), err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"tianshou-offline {command}: error: unrecognized arguments") and hint in last
