"""Running one entry point (:data:`ENTRY_POINTS`, each with the option sets of :data:`OPTIONS`) on
one file inside a worker process (:func:`run_entry`)."""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
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


def _check_file(path: Path, **kw: Any) -> int:
    """Load an output an entry point wrote (``kw``: ``load_buffer``'s) and check it: a
    writer's output that its own loader refuses, or that loads inconsistent, is a bug
    (``inconsistent``), not a refusal of the input. Returns its length."""
    from tianshou_offline.data.buffer import load_buffer
    from tianshou_offline.errors import TianshouOfflineError

    try:
        buf = load_buffer(path, **kw)
    except TianshouOfflineError as e:
        raise _Inconsistent(f"output {path.name} is refused: {type(e).__name__}: {e}") from e
    problem = check_buffer(buf)
    if problem:
        raise _Inconsistent(f"output {path.name}: {problem}")
    return len(buf)


def _loads(path: Path, **kw: Any) -> int | None:
    """The length of the buffer ``path`` loads as (``kw``: ``load_buffer``'s), or None when
    it is refused (typed)."""
    from tianshou_offline.data.buffer import load_buffer
    from tianshou_offline.errors import TianshouOfflineError

    try:
        return len(load_buffer(path, **kw))
    except TianshouOfflineError:
        return None


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
    "repack": [[], ["--no-progress"], ["EXISTING", "--overwrite"]],
    "repair": [[]],
    # API entry points: keyword arguments
    "load_buffer": [{}, {"include_info": False}, {"stack_num": 2}, {"sample_avail": True},
                    {"progress": True, "allow_pickle": True}],
    "load_rl_unplugged": [{}, {"join_episodes": False}, {"include_info": False},
                          {"progress": True}],
    "load_disk": [{}, {"include_info": False}, {"progress": True, "sample_avail": True}],
    "load_rl_unplugged_disk": [{}, {"join_episodes": False}, {"include_info": False},
                               {"progress": True}],
    "convert_minari": [{}, {"reader": "minari"}, {"with_infos": True}, {"episodes": "0:2"},
                       {"compression": "gzip", "nan_policy": "warn"},
                       {"nan_policy": "ignore", "overwrite": True, "progress": True}],
    "convert_shard": [{}, {"decoder": "pillow"}, {"decoder": "cv2", "progress": True},
                      {"chunk_records": 3, "compression": "lzf"},
                      {"contiguous": True}, {"overwrite": True}],
    "export_minari": [{}, {"data_format": "arrow", "include_infos": False},
                      {"data_format": "parquet", "include_infos": False, "progress": True},
                      {"jpeg_encoding": True},
                      {"author": "fuzz", "author_email": "fuzz@example.com",
                       "algorithm_name": "fuzz", "code_permalink": "https://example.com/fuzz",
                       "description": "fuzz"},
                      {"overwrite": True}],
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
    "memory": "memory='disk' is an entry point of its own (load_disk, load_rl_unplugged_disk), "
    "run on the contiguous seeds (the disk-backed loaders refuse every other layout before "
    "reading); repack's outputs are loaded with it too",
    "buffer_path": "export_minari's input (the mutant)",
    "dataset_id": "names the output (fixed: fuzz/export-v0)",
    "workers": "the harness's workers are daemonic processes, which cannot start a pool",
}
"""Options no variant uses, and why."""

CLI_ENTRIES = ("inspect", "convert_tianshou", "convert_d4rl", "repack", "repair")
"""Entry points run as ``tianshou-offline`` commands (their options are argument lists)."""

UNFUZZED_COMMANDS = {
    "convert tfds": "reads through tensorflow-datasets (TensorFlow in every worker: 10 s and "
    "500 MB a process); its frames are stacked by the code convert_shard's --frame-stack uses",
    "convert minari": "the command calls convert_minari, an entry point (every option)",
    "export minari": "the command calls export_minari, an entry point (every option)",
    "convert rl-unplugged-atari": "the command calls convert_shard per shard, an entry point "
    "(every option); --resume re-reads its own outputs with load_rl_unplugged, an entry point",
    "reference-scores": "rolls out an environment; reads the file's episode table, as inspect",
    "evaluate": "trains FQE on the file (minutes a run); reads it with load_buffer",
    "record": "writes a file, reads none",
    "make-datasets": "writes files, reads only its own state",
    "grid": "reads a grid spec and datasets with load_buffer; trains",
    "export-policy": "reads a policy checkpoint, not a dataset",
    "quickstart": "writes files, reads none",
}
"""``tianshou-offline`` commands that are no entry point of the harness, and why."""


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
    if entry not in CLI_ENTRIES:
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
        if entry in ("load_rl_unplugged", "load_rl_unplugged_disk"):
            from tianshou_offline.converters.rl_unplugged import load_rl_unplugged

            paths = [path] if variant % 2 else [path, path]
            if entry.endswith("_disk"):
                kw["memory"] = "disk"
            _check_loaded(load_rl_unplugged(paths, **kw))
            return "ok", ""
        if entry == "repack":
            args = _cli_args(entry, variant, out, workdir)
            outcome, detail = _cli(["repack", str(path), str(out), *args])
            if outcome == "ok":
                _check_repacked(path, out)
            return outcome, detail
        if entry == "repair":  # it rewrites its input: a copy of the mutant
            copy = workdir / "repair.hdf5"
            shutil.copyfile(path, copy)
            before = _loads(copy)
            outcome, detail = _cli(["repair", str(copy)])
            if outcome == "ok" and (before is not None or _loads(copy) is not None):
                # a file that loaded must load as before; one that did not may stay refused
                after = _check_file(copy)
                if before is not None and after != before:
                    raise _Inconsistent(f"loaded {before} rows before repair, {after} after")
            return outcome, detail
        if entry == "export_minari":
            return _export_minari(path, workdir, kw)
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
            try:
                shards = load_rl_unplugged(out)
            except TianshouOfflineError as e:
                raise _Inconsistent(f"output {out.name} is refused: {type(e).__name__}: {e}") from e
            _check_loaded(shards)
            return "ok", ""
        raise ValueError(f"unknown entry point {entry}")
    except TianshouOfflineError as e:
        return "typed", f"{type(e).__name__}: {str(e)[:300]}"
    except _Inconsistent as e:
        return "inconsistent", str(e)[:400]


def _check_repacked(source: Path, out: Path) -> None:
    """``repack``'s output holds what its source holds: it loads (in RAM, and from disk where
    the disk-backed loader takes its layout) as the source does, to the same length; a
    source that is refused may give an output that is refused too."""
    from tianshou_offline.errors import TianshouOfflineError

    n = _loads(source)
    if n is None:
        if _loads(out) is None:
            return
        _check_file(out)
        return
    m = _check_file(out)
    if m != n:
        raise _Inconsistent(f"the source loads as {n} rows, the repacked output as {m}")
    try:
        m = _check_file(out, memory="disk")
    except _Inconsistent as e:
        if isinstance(e.__cause__, TianshouOfflineError) and _layout(out) != "tianshou_offline":
            return  # the disk-backed loader reads this package's own layout only
        raise
    if m != n:
        raise _Inconsistent(f"the source loads as {n} rows, the repacked output from disk as {m}")


def _layout(path: Path) -> str:
    from tianshou_offline.data.format import detect_layout, open_h5

    with open_h5(path) as f:
        return str(detect_layout(f))


EXPORT_ID = "fuzz/export-v0"


def _export_minari(path: Path, workdir: Path, kw: dict[str, Any]) -> tuple[str, str]:
    """``export_minari`` of the mutant into ``workdir`` (``MINARI_DATASETS_PATH``), then the
    dataset converted back (``convert_minari``): it must hold as many rows as the mutant
    loads as."""
    import os

    from tianshou_offline.converters.minari import convert_minari, export_minari
    from tianshou_offline.errors import TianshouOfflineError

    root = workdir / "minari"
    if kw.get("overwrite"):  # an older dataset with that id, which the export replaces
        (root / EXPORT_ID / "data").mkdir(parents=True)
        (root / EXPORT_ID / "data" / "metadata.json").write_text("{}")
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        data = export_minari(path, EXPORT_ID, **kw)
        back = workdir / "back.hdf5"
        try:
            convert_minari(data, back, nan_policy="ignore")  # as the input holds them
        except TianshouOfflineError as e:
            raise _Inconsistent(
                f"the exported dataset does not convert back: {type(e).__name__}: {e}"
            ) from e
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old
    m = _check_file(back)
    n = _loads(path, include_info=kw.get("include_infos", True))  # as the export loads it
    if n != m:
        raise _Inconsistent(f"the input loads as {n} rows, its Minari export converts back to {m}")
    return "ok", ""


ENTRY_POINTS = ("load_buffer", "load_disk", "inspect", "convert_tianshou", "convert_d4rl",
                "repack", "repair", "load_rl_unplugged", "load_rl_unplugged_disk",
                "convert_minari", "convert_shard", "export_minari")  # fmt: skip
