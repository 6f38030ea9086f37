"""Write and load 1M transitions (obs 17, act 6): BufferWriter/load_buffer vs raw h5py.

Reference: raw h5py writing the same arrays with ``create_dataset(data=...)`` (one contiguous
dataset per column) and reading them back with ``ds[()]``. Ours writes the full format
(chunked, resizable columns + done flags + Tianshou bookkeeping + episode table) and loads a
ready ``tianshou.data.ReplayBuffer``. Throughput counts the payload (obs, obs_next, act, rew,
terminated, truncated) for both. Runs are interleaved; medians are reported.

Target: ours >= 0.5x raw h5py in both directions (``--check``: exit 1 when missed). Every
run writes a result file under ``benchmarks/results/io_speed/``; ``--table-only`` /
``--readme`` print / write the README table from the kept results.

    python -m benchmarks.io_speed [--transitions 1000000] [--repeats 5] [--dir /tmp] [--check]
    python -m benchmarks.io_speed --table-only
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from benchmarks._lib import report, results
from tianshou_offline import BufferWriter, Provenance, load_buffer


def make_data(n: int, ep_len: int = 1000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((n + 1, 17), dtype=np.float32)
    term = np.zeros(n, bool)
    trunc = np.zeros(n, bool)
    trunc[ep_len - 1 :: ep_len] = True
    return {
        "obs": obs[:-1],
        "obs_next": obs[1:],
        "act": rng.uniform(-1, 1, (n, 6)).astype(np.float32),
        "rew": rng.standard_normal(n, dtype=np.float32),
        "terminated": term,
        "truncated": trunc,
    }


def write_raw(path: Path, data: dict[str, np.ndarray]) -> None:
    with h5py.File(path, "w") as f:
        for k, v in data.items():
            f.create_dataset(k, data=v)


def read_raw(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f.keys()}


def write_ours(path: Path, data: dict[str, np.ndarray], block: int = 100_000) -> None:
    n = len(data["rew"])
    with BufferWriter(
        path, provenance=Provenance(source="buffer", dataset_id="bench"), overwrite=True
    ) as w:
        for s in range(0, n, block):
            block_columns: dict[str, Any] = {k: v[s : s + block] for k, v in data.items()}
            w.add_transitions(**block_columns)


BENCHMARK = "io_speed"
CODE = ("benchmarks/io_speed.py", "tianshou_offline/data")
TARGET = 0.5


def table(records: Sequence[dict[str, Any]]) -> str:
    """The README table: MB/s of raw h5py and ours, write and load, per kept result."""
    lines = ["| transitions | | raw h5py | tianshou-offline | ratio |", "|---:|---|---:|---:|---:|"]
    for r in records:
        f = r["figures"]
        for op, label in (("write", "write"), ("load", "load (into a ready `ReplayBuffer`)")):
            lines.append(
                f"| {r['settings']['transitions']:,} | {label} | {f['raw_' + op + '_mb_s']:.0f} MB/s "
                f"| {f['ours_' + op + '_mb_s']:.0f} MB/s | {f[op + '_ratio']:.2f}× |"
            )
    return "\n".join(lines) + "\n\n" + results.provenance_line(records)


def readme_section() -> str:
    """The README's section: :func:`table` of every kept result."""
    return table(results.read_results(BENCHMARK))


def missed_targets(records: Sequence[dict[str, Any]]) -> list[str]:
    return [f"{r['settings']['transitions']:,} transitions: {op} {r['figures'][op + '_ratio']:.2f}× "
            f"raw h5py < {TARGET}×" for r in records for op in ("write", "load")
            if r["figures"][op + "_ratio"] < TARGET]  # fmt: skip


def measure(transitions: int, repeats: int, directory: str | None) -> dict[str, Any]:
    """Write and load ``transitions`` rows ``repeats`` times each way, interleaved; prints the
    table and returns the figures (medians)."""
    args = argparse.Namespace(transitions=transitions, repeats=repeats, dir=directory)
    data = make_data(args.transitions)
    payload = sum(v.nbytes for v in data.values())
    print(
        f"{args.transitions} transitions, obs 17 / act 6 float32: payload {payload / 2**20:.1f} MiB"
    )
    tmp = Path(tempfile.mkdtemp(dir=args.dir, prefix="io_speed_"))
    raw_path, ours_path = tmp / "raw.hdf5", tmp / "ours.hdf5"
    times: dict[str, list[float]] = {k: [] for k in ("raw_w", "ours_w", "raw_r", "ours_r")}
    for _ in range(args.repeats):
        writes: list[tuple[str, Callable[[], object]]] = [
            ("raw_w", lambda: write_raw(raw_path, data)),
            ("ours_w", lambda: write_ours(ours_path, data)),
        ]
        for name, write in writes:
            t0 = time.perf_counter()
            write()
            times[name].append(time.perf_counter() - t0)
        reads: list[tuple[str, Callable[[], object]]] = [
            ("raw_r", lambda: read_raw(raw_path)),
            ("ours_r", lambda: load_buffer(ours_path)),
        ]
        for name, read in reads:
            t0 = time.perf_counter()
            out = read()
            times[name].append(time.perf_counter() - t0)
            del out
    buf = load_buffer(ours_path)
    assert len(buf) == args.transitions
    np.testing.assert_array_equal(buf.obs[-5:], data["obs"][-5:])
    med = {k: statistics.median(v) for k, v in times.items()}
    mbps = {k: payload / 2**20 / v for k, v in med.items()}
    print(f"{'':<8}{'raw h5py':>14}{'tianshou-offline':>20}{'ratio (ours/raw)':>20}")
    print(
        f"{'write':<8}{mbps['raw_w']:>10.0f} MB/s{mbps['ours_w']:>16.0f} MB/s"
        f"{mbps['ours_w'] / mbps['raw_w']:>19.2f}x"
    )
    print(
        f"{'load':<8}{mbps['raw_r']:>10.0f} MB/s{mbps['ours_r']:>16.0f} MB/s"
        f"{mbps['ours_r'] / mbps['raw_r']:>19.2f}x"
    )
    print(
        f"(medians of {args.repeats}; seconds: "
        + ", ".join(f"{k}={v:.3f}" for k, v in med.items())
        + ")"
    )
    print(
        f"file sizes: raw {raw_path.stat().st_size / 2**20:.1f} MiB, ours {ours_path.stat().st_size / 2**20:.1f} MiB"
    )
    for p in (raw_path, ours_path):
        p.unlink()
    tmp.rmdir()
    return {
        "seconds": med,
        **{f"{k.split('_')[0]}_{'write' if k.endswith('w') else 'load'}_mb_s": v
           for k, v in mbps.items()},
        "write_ratio": mbps["ours_w"] / mbps["raw_w"],
        "load_ratio": mbps["ours_r"] / mbps["raw_r"],
        "payload_bytes": payload,
    }  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--transitions", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dir", default=None, help="directory for the files (default: a temp dir)")
    report.add_arguments(ap, target=f"ours >= {TARGET}x raw h5py", table=True)
    args = ap.parse_args()
    if args.table_only or args.readme:
        return report.show_kept(args, BENCHMARK, table, missed_targets)
    with results.LoadMonitor() as load:
        figures = measure(args.transitions, args.repeats, args.dir)
    path = results.write_result(
        BENCHMARK, f"{args.transitions}", settings={"transitions": args.transitions,
        "repeats": args.repeats}, figures=figures, code=CODE, load=load,
    )  # fmt: skip
    print(f"kept: {path.relative_to(results.REPO)}")
    return report.finish(missed_targets([json.loads(path.read_text())]), args.check)


if __name__ == "__main__":
    raise SystemExit(main())
