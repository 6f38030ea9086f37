"""Kept results: every benchmark run writes one small JSON file under ``benchmarks/results/``.

A result file holds what a sceptical reader needs to audit a figure::

    {
      "schema": 1,
      "benchmark": "train_speed",          # the script
      "name": "continuous-1t",             # what this run measured (unique per benchmark)
      "key": "continuous-1t.3f9a0c1b.8d2e4a6b0c1f",   # name . settings hash . code fingerprint
      "created": "2026-12-07T05:12:00+00:00",
      "command": ["python", "-m", "benchmarks.train_speed", "--threads", "1"],
      "settings": {...},                   # every setting that changes the figures
      "seeds": [0, 1, 2, 3, 4],
      "data": {"hopper-medium": "sha256…"},  # what the run read, by content
      "versions": {"commit": "7e2b13e…", "dirty": false, "code_fingerprint": "8d2e4a6b0c1f",
                   "code": ["tianshou_offline/algorithms", …], "python": "3.11.9",
                   "torch": "2.13.0", "tianshou": "2.0.1", "d3rlpy": "2.8.1", …},
      "machine": {"cpus": 2, "platform": "…", "nice": 5,
                  "load": {"before": 0.9, "after": 1.4, "median": 1.2, "max": 2.0,
                           "samples": 31}},
      "figures": {...}                     # the measurements
    }

The **key** includes a fingerprint of the code the run depends on (:func:`code_fingerprint`
of the paths the benchmark declares: the library modules it exercises, the script, this
library), so a benchmark that resumes from kept results (the quality table) never reuses a
result of older code: :func:`find_result` looks a key up. Tables are generated from whatever
results are committed (:func:`read_results`, newest per name), each result naming the commit
and fingerprint it came from.

Use::

    from benchmarks._lib.results import LoadMonitor, write_result

    with LoadMonitor() as load:
        figures = measure(...)
    write_result("my_benchmark", "setting-a", settings=vars(args), figures=figures,
                 seeds=[0], data={"file": file_sha256(path)}, code=CODE, load=load)

Standard library only (the figures must be JSON-serialisable).
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from tianshou_offline.data.atomic import file_sha256 as file_sha256

REPO = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO / "benchmarks" / "results"
"""Where results are kept (committed)."""
SCHEMA = 1
LIBRARY_CODE = ("benchmarks/_lib",)
"""Code every benchmark depends on (added to each benchmark's own paths)."""


# ----------------------------------------------------------------------------- provenance


def _files(paths: Iterable[str | Path]) -> list[Path]:
    found: set[Path] = set()
    for p in paths:
        path = (REPO / p).resolve()
        if path.is_dir():
            found.update(f for f in path.rglob("*.py") if "__pycache__" not in f.parts)
        elif path.is_file():
            found.add(path)
        else:
            raise FileNotFoundError(f"{path}: a declared code path of a benchmark does not exist")
    return sorted(found)


def code_fingerprint(paths: Iterable[str | Path]) -> str:
    """12 hex digits of the SHA-256 of the ``.py`` files under ``paths`` (relative to the
    repository root; files or directories): each file's path and content, in path order.
    :data:`LIBRARY_CODE` is always included."""
    h = hashlib.sha256()
    for f in _files([*LIBRARY_CODE, *paths]):
        h.update(str(f.relative_to(REPO)).encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def git_commit(paths: Iterable[str | Path] = ()) -> tuple[str | None, bool]:
    """The repository's ``HEAD`` commit and whether ``paths`` (all files when empty) differ
    from it; ``(None, False)`` outside a git checkout."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        status = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", *map(str, paths)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None, False
    return head, bool(status.strip())


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions(code: Sequence[str | Path], *, d3rlpy: str | None = None) -> dict[str, Any]:
    """This checkout's commit (and whether the declared code differs from it), the code
    fingerprint, and the versions of Python and the libraries a run may use.

    :param d3rlpy: the version of d3rlpy in the peer's own environment (None: not used).
    """
    paths = [*LIBRARY_CODE, *map(str, code)]
    commit, dirty = git_commit(paths)
    out: dict[str, Any] = {
        "commit": commit,
        "dirty": dirty,
        "code_fingerprint": code_fingerprint(code),
        "code": paths,
        "python": platform.python_version(),
    }
    for dist in ("tianshou-offline", "torch", "tianshou", "numpy", "h5py", "gymnasium"):
        out[dist] = _version(dist)
    out["d3rlpy"] = d3rlpy
    return out


class LoadMonitor:
    """The machine's 1-minute load average before, during (sampled every ``every`` seconds
    in a thread) and after a run: ``with LoadMonitor() as load: ...`` (or :meth:`start` /
    :meth:`stop`); then :meth:`summary`."""

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self.samples: list[float] = []
        self.before = os.getloadavg()[0]
        self.after: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(os.getloadavg()[0])

    def start(self) -> LoadMonitor:
        self.before = os.getloadavg()[0]
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.after = os.getloadavg()[0]

    def __enter__(self) -> LoadMonitor:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def summary(self) -> dict[str, Any]:
        after = self.after if self.after is not None else os.getloadavg()[0]
        seen = [self.before, *self.samples, after]
        return {
            "before": round(self.before, 2),
            "after": round(after, 2),
            "median": round(statistics.median(seen), 2),
            "max": round(max(seen), 2),
            "samples": len(seen),
        }


def machine(load: LoadMonitor | Mapping[str, Any] | None) -> dict[str, Any]:
    """CPUs, platform, this process's nice value and the load during the run."""
    summary = load.summary() if isinstance(load, LoadMonitor) else dict(load or {})
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "nice": os.nice(0),
        "load": summary,
    }


# ----------------------------------------------------------------------------- keys and files


def settings_hash(settings: Mapping[str, Any]) -> str:
    """8 hex digits of the SHA-256 of the settings as sorted JSON."""
    blob = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def result_key(name: str, settings: Mapping[str, Any], fingerprint: str) -> str:
    """``NAME.SETTINGS.FINGERPRINT``: a result of other settings or other code has another
    key."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"result name {name!r}: expected a non-empty file-name stem")
    return f"{name}.{settings_hash(settings)}.{fingerprint}"


def result_path(benchmark: str, key: str, results_dir: Path = RESULTS_DIR) -> Path:
    return results_dir / benchmark / f"{key}.json"


def write_result(
    benchmark: str,
    name: str,
    *,
    settings: Mapping[str, Any],
    figures: Mapping[str, Any],
    code: Sequence[str | Path],
    seeds: Sequence[int] = (),
    data: Mapping[str, str] | None = None,
    load: LoadMonitor | Mapping[str, Any] | None = None,
    d3rlpy: str | None = None,
    results_dir: Path = RESULTS_DIR,
    extra_versions: Mapping[str, Any] | None = None,
) -> Path:
    """Write one result file (to a temporary beside it, then renamed into place; a result
    with the same key — same settings, same code — is replaced by the newer run).

    :param benchmark: the script's name (a folder under ``results_dir``).
    :param name: what was measured, unique within the benchmark (e.g. ``continuous-1t``).
    :param settings: everything that changes the figures (budgets, sizes, options).
    :param figures: the measurements (JSON-serialisable).
    :param code: paths (relative to the repository root) of the code the run depends on.
    :param seeds: the seeds of the run.
    :param data: the files read, name → :func:`file_sha256`.
    :param load: the :class:`LoadMonitor` of the run (or its summary).
    :param d3rlpy: d3rlpy's version when a d3rlpy peer ran.
    :returns: the file written.
    """
    from tianshou_offline.data.atomic import replace, temp_path

    vers = versions(code, d3rlpy=d3rlpy)
    vers.update(extra_versions or {})
    key = result_key(name, settings, vers["code_fingerprint"])
    record = {
        "schema": SCHEMA,
        "benchmark": benchmark,
        "name": name,
        "key": key,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": [Path(sys.executable).name, *sys.argv],
        "settings": dict(settings),
        "seeds": list(seeds),
        "data": dict(data or {}),
        "versions": vers,
        "machine": machine(load),
        "figures": dict(figures),
    }
    out = result_path(benchmark, key, results_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(out)
    tmp.write_text(json.dumps(record, indent=1, sort_keys=False, default=_json_default) + "\n")
    replace(tmp, out)
    return out


def _json_default(obj: object) -> object:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable: {obj!r}")


def find_result(
    benchmark: str,
    name: str,
    settings: Mapping[str, Any],
    code: Sequence[str | Path],
    results_dir: Path = RESULTS_DIR,
) -> dict[str, Any] | None:
    """The kept result of ``name`` at these settings **and this code** (None: none; a result
    of older code is not returned)."""
    path = result_path(benchmark, result_key(name, settings, code_fingerprint(code)), results_dir)
    if not path.exists():
        return None
    record: dict[str, Any] = json.loads(path.read_text())
    return record


def read_results(
    benchmark: str, results_dir: Path = RESULTS_DIR, *, latest: bool = True
) -> list[dict[str, Any]]:
    """The committed results of ``benchmark`` ordered by name; with ``latest`` only the
    newest per name (by ``created``, then key), whatever the code they came from."""
    folder = results_dir / benchmark
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    records.sort(key=lambda r: (r["name"], r["created"], r["key"]))
    if latest:
        newest: dict[str, dict[str, Any]] = {}
        for r in records:
            newest[r["name"]] = r
        records = list(newest.values())
    return records


def conditions(record: Mapping[str, Any]) -> str:
    """How loaded the machine was during one kept run, for a table's caption: ``nice 10,
    load 3.2 (max 5.1)``."""
    load = record["machine"]["load"]
    return f"nice {record['machine']['nice']}, load {load['median']:.1f} (max {load['max']:.1f})"


def provenance_line(records: Sequence[Mapping[str, Any]]) -> str:
    """One line under a generated table: the commits, fingerprints, dates and load of the
    results it was made from."""
    if not records:
        return "_No kept results._"
    commits = sorted({str(r["versions"]["commit"] or "?")[:10] for r in records})
    prints = sorted({str(r["versions"]["code_fingerprint"]) for r in records})
    dates = sorted(str(r["created"])[:10] for r in records)
    loads = [float(r["machine"]["load"].get("median", float("nan"))) for r in records]
    cpus = sorted({int(r["machine"]["cpus"] or 0) for r in records})
    span = dates[0] if dates[0] == dates[-1] else f"{dates[0]} – {dates[-1]}"
    return (
        f"_From {len(records)} kept result(s) in `benchmarks/results/{records[0]['benchmark']}/` "
        f"({span}; commit {', '.join(commits)}; code {', '.join(prints)}; "
        f"{'/'.join(map(str, cpus))} CPUs, median load {min(loads):.1f}–{max(loads):.1f})._"
    )
