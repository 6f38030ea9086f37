"""Read back what an offline W&B run wrote (``WANDB_MODE=offline``): wandb 0.31 has no reader
of its own for the run file, ``run-ID.wandb``, a LevelDB-style log (a 7-byte file header
``:W&B``, then 32 KiB blocks of records, each a 7-byte header — CRC-32C, length, type:
full/first/middle/last — and a piece of a ``wandb_internal_pb2.Record``)."""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[Any]:
    """The ``Record`` protobufs of a run file, in order."""
    import importlib

    pb: Any = importlib.import_module("wandb.proto.wandb_internal_pb2")  # generated: untyped

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a W&B run file ({data[:7]!r})"
    out: list[Any] = []
    pos, pieces = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # the block's tail is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if kind == 0 and length == 0:
            pos += left
            continue
        body = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        pieces = body if kind in (FULL, FIRST) else pieces + body
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(pieces)
            out.append(record)
    return out


def _key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else str(item.key)


@dataclass
class OfflineRun:
    """What a run logged: its name, group, config, history rows and final summary."""

    run_id: str
    name: str
    group: str
    project: str
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def rows(self, axis: str) -> dict[int, dict[str, Any]]:
        """History rows that carry the step counter ``axis`` (``update/update_step``), by it."""
        return {int(r[axis]): r for r in self.history if axis in r}


def read_run(directory: Path, *, timeout: float = 60.0) -> OfflineRun:
    """The one offline run under ``directory`` (``directory/wandb/offline-run-*/``), once
    W&B's service process has written its last record (``exit``)."""
    (path,) = directory.glob("wandb/offline-run-*/run-*.wandb")
    deadline = time.monotonic() + timeout
    found = records(path)
    while not any(r.WhichOneof("record_type") == "exit" for r in found):
        assert time.monotonic() < deadline, f"{path}: the run was never finished"
        time.sleep(0.1)
        found = records(path)
    run: OfflineRun | None = None
    for r in found:
        kind = r.WhichOneof("record_type")
        if kind == "run":
            run = OfflineRun(r.run.run_id, r.run.display_name, r.run.run_group, r.run.project)
            run.config = {u.key: json.loads(u.value_json) for u in r.run.config.update}
        elif kind == "history" and run is not None:
            run.history.append({_key(i): json.loads(i.value_json) for i in r.history.item})
        elif kind == "summary" and run is not None:
            run.summary.update({_key(u): json.loads(u.value_json) for u in r.summary.update})
        elif kind == "config" and run is not None:
            run.config.update({u.key: json.loads(u.value_json) for u in r.config.update})
    assert run is not None, f"{path}: no run record"
    return run
