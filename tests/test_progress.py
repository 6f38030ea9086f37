"""Progress (``tianshou_offline.progress``): plain lines without a terminal, silent for work that
ends within the first interval, and counts that stop at the total (``record --steps``).
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers.cli_probe import run_probe
from tianshou_offline.progress import PlainProgress, progress


def test_plain_progress_lines_without_a_terminal(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    with open(log, "w") as fh:
        bar = progress(total=10, desc="recording X", unit="step", stream=fh, interval_s=0.0)
        assert isinstance(bar, PlainProgress)
        with bar:
            for _ in range(12):  # more than the total: a whole last episode
                bar.update(1)
    lines = log.read_text().splitlines()
    assert lines and all("\r" not in x and "\x1b" not in x for x in lines)
    assert lines[0].startswith("recording X: 1/10 step (10%)")
    assert "(done in" in lines[-1]
    # silent when the work ends within the first interval (short runs, tests)
    with open(log, "w") as fh, progress(total=3, desc="d", stream=fh) as quiet:
        quiet.update(3)
    assert log.read_text() == ""


def test_record_steps_progress_stops_at_its_total(tmp_path: Path) -> None:
    out = tmp_path / "s.hdf5"
    doc, text = run_probe("record", "--env", "CartPole-v1", "--policy", "random", "--steps",
                          "30", "-o", str(out), env={"TIANSHOU_OFFLINE_PROGRESS_INTERVAL": "0"})  # fmt: skip
    assert doc["code"] == 0
    counts = [line for line in text.splitlines() if line.startswith("recording CartPole-v1:")]
    assert counts and all("/30 step" in x for x in counts)
    assert all(int(x.split(":")[1].split("/")[0]) <= 30 for x in counts)
