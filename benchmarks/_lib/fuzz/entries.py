"""Running one entry point (:data:`ENTRY_POINTS`, each with the option sets of :data:`OPTIONS`) on
one file inside a worker process (:func:`run_entry`)."""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._lib.fuzz.checks import check_buffer


class _Timeout(BaseException):
    """Raised by the worker's timer (a BaseException: no ``except Exception`` swallows it)."""


class _Inconsistent(Exception):
    pass


class _StderrHandler(logging.Handler):
    """Log records to whatever ``sys.stderr`` is now (the CLI's, captured per run)."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(self.format(record) + "\n")


def _cli(argv: list[str]) -> tuple[str, str]:
    """Run ``tianshou-offline ARGV`` in-process: ``(outcome, detail)``."""
    from tianshou_offline.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse
            code = e.code if isinstance(e.code, int) else 1
    text = err.getvalue()
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    if code == 0:
        return "ok", ""
    if code == 2 and len(errors) == 1 and "Traceback" not in text:
        return "typed", errors[0][:300]
    return "untyped", f"exit {code}; stderr: {text[-600:]!r}"


def _check_file(path: Path) -> None:
    from tianshou_offline.data.buffer import load_buffer

    problem = check_buffer(load_buffer(path))
    if problem:
        raise _Inconsistent(f"output {path.name}: {problem}")


def _check_loaded(buf: Any, path: Path | None = None) -> None:
    problem = check_buffer(buf)
    if problem:
        raise _Inconsistent(problem)
    if path is not None:
        problem = check_table(buf, path)
        if problem:
            raise _Inconsistent(problem)


def check_table(buf: Any, path: Path) -> str | None:
    """What ``inspect``'s episode table (``tianshou_offline.data.stats.episode_table``) says
    differently from the loaded buffer, or None (also when the table cannot be read)."""
    from tianshou_offline.data.stats import episode_table
    from tianshou_offline.errors import TianshouOfflineError

    try:
        table = episode_table(path)
    except TianshouOfflineError:
        return None
    n = len(buf)
    # an empty Tianshou buffer has no columns at all (reading ``done`` raises)
    done = np.asarray(buf.done[:n], dtype=bool) if n else np.zeros(0, dtype=bool)
    ends = np.flatnonzero(done)
    starts = np.concatenate([[0], ends[:-1] + 1]) if len(ends) else np.zeros(0, np.int64)
    if len(table.starts) != len(starts) or not (
        np.array_equal(table.starts, starts) and np.array_equal(table.lengths, ends + 1 - starts)
    ):
        return (
            f"episode table: {len(table.starts)} episodes starting at {list(table.starts[:6])}, "
            f"the buffer: {len(starts)} starting at {list(starts[:6])}"
        )
    return None


OPTIONS: dict[str, list[Any]] = {
    # CLI entry points: argument lists after the input ("OUT": the output path, "PLOT": a PNG
    # path, "EXISTING": the output already exists, so --overwrite replaces it)
    "inspect": [[], ["--json"], ["--plot", "PLOT"], ["--json", "--plot", "PLOT"],
                ["EXISTING", "--plot", "PLOT", "--overwrite"], ["--card", "CARD"]],
    "convert_tianshou": [[], ["--compression", "gzip"], ["--compression", "lzf", "--no-info"],
                         ["--allow-pickle", "--no-progress"], ["--env-id", "CartPole-v1"],
                         ["--compression", "none", "--clean"], ["EXISTING", "--overwrite"]],
    "convert_d4rl": [[], ["--with-infos"], ["--qlearning-compat", "--max-episode-steps", "10"],
                     ["--float32", "--nan-policy", "warn"], ["--nan-policy", "ignore"],
                     ["--compression", "gzip", "--no-progress"], ["--compression", "lzf", "--clean"],
                     ["--env-id", "Hopper-v5", "EXISTING", "--overwrite"]],
    # API entry points: keyword arguments
    "load_buffer": [{}, {"include_info": False}, {"stack_num": 2}, {"sample_avail": True},
                    {"progress": True, "allow_pickle": True}],
    "load_rl_unplugged": [{}, {"join_episodes": False}, {"include_info": False},
                          {"progress": True}],
    "load_disk": [{}, {"include_info": False}, {"progress": True, "sample_avail": True}],
    "convert_minari": [{}, {"reader": "minari"}, {"with_infos": True}, {"episodes": "0:2"},
                       {"compression": "gzip", "nan_policy": "warn"},
                       {"nan_policy": "ignore", "overwrite": True, "progress": True}],
    "convert_shard": [{}, {"decoder": "pillow"}, {"decoder": "cv2", "progress": True},
                      {"chunk_records": 3, "compression": "lzf"},
                      {"contiguous": True}, {"overwrite": True}],
}  # fmt: skip
"""The option sets each entry point runs with (a run's ``variant`` picks one): together they
use every option of every entry point (``tests/test_fuzz.py`` checks this against the CLI's
parsers and the functions' signatures), so that a bug behind an option shows."""

UNFUZZED_OPTIONS = {
    "--observation-space": "a space must match the data's shapes (a mismatch is refused first)",
    "--action-space": "as --observation-space",
    "mp_context": "how worker processes start, not what is read",
    "task": "names the output (fixed: Pong)",
    "num_actions": "fixed: 6 (Pong)",
    "run_id": "names the output",
    "shard_id": "names the output",
    "download": "would fetch from the network",
    "memory": "load_buffer's memory='disk' is an entry point of its own, load_disk, run on the "
    "contiguous seed (the disk-backed loader refuses every other layout before reading)",
    "workers": "the harness's workers are daemonic processes, which cannot start a pool",
}
"""Options no variant uses, and why."""


def _cli_args(entry: str, variant: int, out: Path, workdir: Path) -> list[str]:
    args = list(OPTIONS[entry][variant % len(OPTIONS[entry])])
    if "EXISTING" in args:
        args.remove("EXISTING")
        target = workdir / "plot.png" if entry == "inspect" else out
        target.write_bytes(b"an older output")
    paths = {"PLOT": str(workdir / "plot.png"), "CARD": str(workdir / "card.md")}
    return [paths.get(a, a) for a in args]


def _check_png(path: Path) -> None:
    if not path.read_bytes().startswith(b"\x89PNG"):
        raise _Inconsistent(f"--plot wrote {path.name}, not a PNG")


def run_entry(entry: str, path: Path, workdir: Path, variant: int) -> tuple[str, str]:
    """Run one entry point on one mutant with the option set ``variant`` picks
    (:data:`OPTIONS`): ``(outcome, detail)`` (raises for untyped errors)."""
    from tianshou_offline.errors import TianshouOfflineError

    out = workdir / "out.hdf5"
    kw: dict[str, Any] = {}
    if not entry.startswith(("inspect", "convert_tianshou", "convert_d4rl")):
        kw = dict(OPTIONS[entry][variant % len(OPTIONS[entry])])
    try:
        if entry == "load_buffer":
            from tianshou_offline.data.buffer import load_buffer

            _check_loaded(load_buffer(path, **kw), path)
            return "ok", ""
        if entry == "load_disk":
            from tianshou_offline.data.buffer import load_buffer

            _check_loaded(load_buffer(path, memory="disk", **kw), path)
            return "ok", ""
        if entry == "load_rl_unplugged":
            from tianshou_offline.converters.rl_unplugged import load_rl_unplugged

            paths = [path] if variant % 2 else [path, path]
            _check_loaded(load_rl_unplugged(paths, **kw))
            return "ok", ""
        if entry == "inspect":
            args = _cli_args(entry, variant, out, workdir)
            outcome, detail = _cli(["inspect", str(path), *args])
            if outcome == "ok" and "--plot" in args:
                _check_png(workdir / "plot.png")
            if outcome == "ok" and "--card" in args:
                _check_png(workdir / "card_returns.png")
                if not (workdir / "card.md").read_text(encoding="utf-8").startswith("# "):
                    raise _Inconsistent("--card wrote card.md without its title")
            return outcome, detail
        if entry in ("convert_tianshou", "convert_d4rl"):
            command = ["convert", entry.split("_")[1], str(path), "-o", str(out)]
            args = _cli_args(entry, variant, out, workdir)
            outcome, detail = _cli([*command, *args])
            if outcome == "ok" and "--clean" not in args:  # --clean only removes temporaries
                _check_file(out)
            return outcome, detail
        if entry == "convert_minari":
            from tianshou_offline.converters.minari import convert_minari

            convert_minari(path, out, **kw)
            _check_file(out)
            return "ok", ""
        if entry == "convert_shard":
            from tianshou_offline.converters.rl_unplugged import convert_shard, load_rl_unplugged

            convert_shard(path, out, task="Pong", num_actions=6, **{"workers": 1, **kw})
            _check_loaded(load_rl_unplugged(out))
            return "ok", ""
        raise ValueError(f"unknown entry point {entry}")
    except TianshouOfflineError as e:
        return "typed", f"{type(e).__name__}: {str(e)[:300]}"
    except _Inconsistent as e:
        return "inconsistent", str(e)[:400]


ENTRY_POINTS = ("load_buffer", "load_disk", "inspect", "convert_tianshou", "convert_d4rl", "load_rl_unplugged",
                "convert_minari", "convert_shard")  # fmt: skip
