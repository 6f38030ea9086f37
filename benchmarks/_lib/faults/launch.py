"""The parent's side: how children run here (:func:`launcher`: the shim preloaded, a user and
mount namespace for a tmpfs, or why a fault is skipped), one child over a list of trials
(:func:`run_child`, a death mid-trial reported as ``crash``), and a sweep of writers and
faults over as many children as crashes need (:func:`sweep`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._lib.faults.inject import FAULTS, build_shim, namespace_prefix

REPO = Path(__file__).resolve().parents[3]


@dataclass
class Launch:
    """How children run here: the command prefix (a user and mount namespace for ``full``),
    the environment (the shim preloaded for ``enospc``/``eio``) and the faults they can
    inject, with why the others cannot be."""

    prefix: list[str]
    env: dict[str, str]
    faults: list[str]
    skipped: dict[str, str]


def launcher(work: Path, faults: tuple[str, ...] = FAULTS) -> Launch:
    """How to run children that inject ``faults`` on this system."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "PYTHONFAULTHANDLER": "1"}  # fmt: skip
    prefix: list[str] = []
    skipped: dict[str, str] = {}
    shimmed = {"enospc", "eio", "vanish"} & set(faults)
    if shimmed:
        lib = build_shim(work)
        if lib is None:
            skipped.update(
                dict.fromkeys(shimmed, "no C compiler (cc) to build the LD_PRELOAD shim")
            )
        else:
            env["LD_PRELOAD"] = str(lib)
    # a tmpfs, and a read-only bind mount for root (who ignores permissions), need a mount
    # namespace; others make a directory read-only with chmod
    mounted = {"full", "readonly"} & set(faults) if os.geteuid() == 0 else {"full"} & set(faults)
    if mounted:
        ns = namespace_prefix()
        if ns is None:
            skipped.update(dict.fromkeys(mounted, (
                "cannot mount (a tmpfs, a read-only bind mount): no unprivileged user "
                "namespaces, or no unshare/mount"
            )))  # fmt: skip
        else:
            prefix = ns
    return Launch(prefix, env, [f for f in faults if f not in skipped], skipped)


def run_child(
    launch: Launch, trials: list[tuple[str, str, float]], work: Path, *, first: int = 0,
    timeout: float = 600,
) -> tuple[list[dict[str, Any]], int, str]:  # fmt: skip
    """Run ``trials`` in one child; returns its rows (a trial it died in: outcome ``crash``,
    the rest not run), its exit status and its stderr."""
    work.mkdir(parents=True, exist_ok=True)
    results = work / "results.jsonl"
    results.unlink(missing_ok=True)
    spec = {
        "src": str(work / "src"),
        "root": str(work / "area"),
        "mount": "16m" if "full" in launch.faults else None,
        "shim": "LD_PRELOAD" in launch.env,
        "first": first,
        "trials": trials,
    }
    spec_file = work / "spec.json"
    spec_file.write_text(json.dumps(spec))
    res = subprocess.run(
        [
            *launch.prefix,
            sys.executable,
            "-m",
            "benchmarks._lib.faults",
            str(spec_file),
            str(results),
        ],
        capture_output=True,
        text=True,
        env=launch.env,
        cwd=REPO,
        timeout=timeout,
    )
    rows = [json.loads(ln) for ln in results.read_text().splitlines()] if results.exists() else []
    if len(rows) < len(trials):
        name, fault, frac = trials[len(rows)]
        tail = "\n".join(ln for ln in res.stderr.splitlines() if not ln.startswith("Extension"))
        rows.append({"trial": first + len(rows), "writer": name, "fault": fault,
                     "frac": frac, "value": -1, "outcome": "crash",
                     "message": f"exit {res.returncode}: {tail[-1500:]}", "wrong": [],
                     "temps": [], "earlier_intact": False, "seconds": 0.0})  # fmt: skip
    return rows, res.returncode, res.stderr


def sweep(
    writers: list[str], faults: tuple[str, ...], fracs: Callable[[str, str], list[float]],
    work: Path, *, timeout: float = 600,
) -> tuple[dict[str, str], list[dict[str, Any]]]:  # fmt: skip
    """Every writer under every fault this system can inject, once at each of
    ``fracs(writer, fault)`` (fractions of what the writer needs: 0 fails at once, 1 just as
    it would finish); a child that crashed is replaced, the rest of its trials run in the
    next one.

    :returns: the faults skipped here with why, and one row per trial."""
    launch = launcher(work, faults)
    todo = [(w, f, x) for f in launch.faults for w in writers for x in fracs(w, f)]
    rows: list[dict[str, Any]] = []
    while todo:
        got, status, err = run_child(launch, todo, work, first=len(rows), timeout=timeout)
        if len(got) == len(todo) and status != 0 and got[-1]["outcome"] != "crash":
            # every trial reported, then the child died (at exit): the last one is blamed
            got[-1] = {**got[-1], "outcome": "crash", "message": f"exit {status}: {err[-1500:]}"}
        rows.extend(got)
        todo = todo[len(got) :]
    return launch.skipped, rows
