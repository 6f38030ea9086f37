"""The child's trials: each runs one writer into a fresh directory that already holds an
earlier output (bytes known), under a fault armed at a fraction of what the writer needs,
and checks there the outcome (``ok``: the writer finished before the fault bit; ``typed``:
an ``OutputWriteError``, or for the CLI exit code 2 and one ``error:`` line naming the
output and saying it cannot be written; ``untyped``: anything else), that every output
present is complete (loads, and holds what it should), that no temporary is left and that
the earlier output is intact. The recorder's file must hold exactly the episodes it
committed before the failure.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._lib.faults.base import Writer
from benchmarks._lib.faults.inject import armed
from benchmarks._lib.faults.writers import WRITERS

EARLIER = b"an earlier output: its bytes must survive any failure beside it\n" * 64


def temps_left(out: Path) -> list[str]:
    """Temporaries left anywhere under ``out`` (``.NAME.PID.TOKEN[.TAG].tmp``)."""
    from tianshou_offline.data.atomic import temp_owner

    found = []
    for p in out.rglob(".*"):
        if p.name.endswith(".tmp") and temp_owner(p.name, p.name.split(".")[1]) is not None:
            found.append(str(p.relative_to(out)))
    return found


def written_files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file() and p.name != "earlier.bin"]


@dataclass
class Need:
    """What a writer's finished run writes: bytes in all, its largest file, write calls."""

    total: int
    largest: int
    calls: int

    def value(self, fault: str, frac: float) -> int:
        """The fault's setting at ``frac`` (0: at once, 1: just as the run would finish)."""
        if fault == "fsize":
            return int(frac * self.largest)
        if fault in ("enospc", "eio", "vanish"):
            return int(frac * self.calls)
        if fault == "readonly":
            return 0  # no moment: read-only from the start
        return int(frac * self.total)


def run_trials(spec: dict[str, Any], results: Path) -> None:
    """The child: for each trial of ``spec["trials"]`` (``[writer, fault, frac]``) run the
    writer once without a fault (the first time: what it needs), then under the fault at
    ``frac`` of what it needs, and append the outcome to ``results`` (one JSON line)."""
    logging_off()
    src = Path(spec["src"])
    src.mkdir(parents=True, exist_ok=True)
    root = Path(spec["root"])
    shutil.rmtree(root, ignore_errors=True)  # an earlier child's, which crashed
    root.mkdir(parents=True)
    full_root = root / "tmpfs"
    if spec.get("mount"):
        full_root.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={spec['mount']}", "tmpfs", str(full_root)],
            check=True,
        )
    shim = ctypes.CDLL(None) if spec.get("shim") else None
    if shim is not None:
        shim.fault_arm.argtypes = [ctypes.c_char_p, ctypes.c_long, ctypes.c_int]
        shim.fault_calls.restype = ctypes.c_long
        shim.fault_fired.restype = ctypes.c_long
    writers: dict[str, Writer] = {}
    needs: dict[str, Need] = {}
    first = int(spec.get("first", 0))
    for i, (name, fault, frac) in enumerate(spec["trials"], start=first):
        if name not in writers:
            writers[name] = WRITERS[name]()
            writers[name].prepare(src)
            base = root / f"base-{len(writers)}"
            base.mkdir()
            writers[name].before(base)
            with armed("count" if shim is not None else "none", 0, base, shim):
                ran = writers[name].run(base)
            assert ran.kind == "ok", f"{name} fails without a fault: {ran.message}"
            files = written_files(base)
            needs[name] = Need(
                total=sum(p.stat().st_size for p in files),
                largest=max(p.stat().st_size for p in files),
                calls=int(shim.fault_calls()) if shim is not None else 0,
            )
            shutil.rmtree(base)
        w = writers[name]
        value = needs[name].value(fault, float(frac))
        area = (full_root if fault == "full" else root) / f"t{i}"
        out = area / "out"
        out.mkdir(parents=True)
        (out / "earlier.bin").write_bytes(EARLIER)
        digest = hashlib.sha256(EARLIER).hexdigest()
        w.before(out)
        t0 = time.perf_counter()
        with armed(fault, value, out, shim):
            ran = w.run(out)
        earlier = out / "earlier.bin"
        if fault == "vanish" and not out.exists():
            # everything went with the directory, the earlier output too; the writer left
            # nothing anywhere (a directory made again would be here)
            wrong, intact = [], True
        else:
            wrong = w.check(out, ran)
            intact = (
                earlier.is_file() and hashlib.sha256(earlier.read_bytes()).hexdigest() == digest
            )
        if fault == "vanish" and ran.kind == "ok" and shim is not None and shim.fault_fired():
            wrong.append("finished as if its output directory had not vanished")
        row = {
            "trial": i,
            "writer": name,
            "fault": fault,
            "frac": float(frac),
            "value": value,
            "outcome": ran.kind,
            "message": ran.message[:600],
            "wrong": wrong,
            "temps": temps_left(out),
            "earlier_intact": intact,
            "seconds": time.perf_counter() - t0,
        }
        with open(results, "a") as f:
            f.write(json.dumps(row) + "\n")
        shutil.rmtree(area, ignore_errors=True)


def logging_off() -> None:
    import logging

    logging.disable(logging.WARNING)
    import torch

    torch.set_num_threads(1)
