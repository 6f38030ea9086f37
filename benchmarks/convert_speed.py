"""Converter speed and memory: D4RL files and Minari datasets → tianshou-offline buffers.

Workloads (issue 3):

- a D4RL-shaped file with 1,000,000 transitions (observations 17, actions 6, float32, with
  ``next_observations`` and ``timeouts``), uncompressed and gzip-compressed;
- a Minari dataset of 1,000 episodes × 1,000 steps (same shapes), in Minari's HDF5 and Arrow
  storage, written by ``minari.create_dataset_from_buffers``.

References, timed in the same run and interleaved with the converter (medians of
``--repeats`` runs; the machine may be shared, so only same-run ratios mean much):

- D4RL: **raw h5py read** of every column the converter reads (``read_direct`` into
  preallocated arrays: the I/O bound), and **raw h5py copy** (that read plus writing the same
  arrays to a new HDF5 file: the bound for any converter that writes its output);
- Minari: the **naive path** ``minari.load_dataset(...).iterate_episodes()`` + concatenation +
  ``ReplayBuffer.from_data`` (in memory, no file written), and the same plus
  ``ReplayBuffer.save_hdf5`` (it then writes a file, as the converter does);
- Minari floors (bounds, not converters): the **read floor** (the least any reader of the
  storage does: every episode's arrays read with the cheapest calls, nothing kept or
  written) and the **write floor** (raw h5py writing arrays of the output's shapes from
  memory); ``naive / (read floor + write floor)`` is the best speed-up any converter could
  reach on this machine.

Peak memory: each converter runs once more in a fresh subprocess; the figure is the peak
resident set (VmHWM) minus the resident set just before converting, against the output size.

Targets (``--check``: exit 1 when one is missed): ``convert d4rl`` <= 2x the raw h5py read;
``convert minari`` >= 5x faster than the naive path; peak memory <= 1.5x the output. Every run
writes a result file under ``benchmarks/results/convert_speed/``; ``--table-only`` /
``--readme`` print / write the documentation's tables from the kept results.

Usage::

    python -m benchmarks.convert_speed                      # full size (~2 min, ~1.5 GB disk)
    python -m benchmarks.convert_speed --transitions 100000 --episodes 100 --repeats 3
    python -m benchmarks.convert_speed --table-only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from benchmarks._lib import report, results
from benchmarks._lib.peers import child_env
from benchmarks._lib.process_memory import status_kib

BENCHMARK = "convert_speed"
CODE = ("benchmarks/convert_speed.py", "tianshou_offline/converters", "tianshou_offline/data")
D4RL_TARGET = 2.0
"""``convert d4rl`` takes at most this multiple of the raw h5py read."""
MINARI_TARGET = 5.0
"""``convert minari`` is at least this many times faster than the naive path."""
MEMORY_TARGET = 1.5
"""Peak resident memory at most this multiple of the output's size."""

OBS_DIM = 17
ACT_DIM = 6


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------


def make_d4rl_file(path: Path, n: int, *, compression: str | None, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((n + 1, OBS_DIM), dtype=np.float32)
    terminals = np.zeros(n, dtype=bool)
    terminals[rng.choice(n, size=max(1, n // 3000), replace=False)] = True
    timeouts = np.zeros(n, dtype=bool)
    timeouts[999::1000] = True
    timeouts &= ~terminals
    kw: dict[str, Any] = {"compression": compression} if compression else {}
    with h5py.File(path, "w") as f:
        f.create_dataset("observations", data=obs[:-1], **kw)
        f.create_dataset("next_observations", data=obs[1:], **kw)
        f.create_dataset("actions", data=rng.uniform(-1, 1, (n, ACT_DIM)).astype(np.float32), **kw)
        f.create_dataset("rewards", data=rng.standard_normal(n).astype(np.float32), **kw)
        f.create_dataset("terminals", data=terminals, **kw)
        f.create_dataset("timeouts", data=timeouts, **kw)


def make_minari_dataset(dataset_id: str, episodes: int, steps: int, data_format: str) -> None:
    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    rng = np.random.default_rng(1)
    buffers = []
    for i in range(episodes):
        trunc = np.zeros(steps, dtype=bool)
        trunc[-1] = True
        buffers.append(
            EpisodeBuffer(
                id=i,
                seed=i,
                observations=rng.standard_normal((steps + 1, OBS_DIM), dtype=np.float32),
                actions=rng.uniform(-1, 1, (steps, ACT_DIM)).astype(np.float32),
                rewards=rng.standard_normal(steps),
                terminations=np.zeros(steps, dtype=bool),
                truncations=trunc,
            )
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(
            dataset_id,
            buffers,
            observation_space=gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32),
            action_space=gym.spaces.Box(-1, 1, (ACT_DIM,), np.float32),
            data_format=data_format,
            algorithm_name="random",
            author="benchmark",
            author_email="benchmark@example.com",
            code_permalink="benchmarks/convert_speed.py",
            description="convert_speed benchmark data",
        )


# --------------------------------------------------------------------------------------
# the timed paths
# --------------------------------------------------------------------------------------

D4RL_COLUMNS = ("observations", "next_observations", "actions", "rewards", "terminals", "timeouts")


def raw_h5py_read(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        for key in D4RL_COLUMNS:
            ds = f[key]
            arr = np.empty(ds.shape, dtype=ds.dtype)
            ds.read_direct(arr)
            out[key] = arr
    return out


def raw_h5py_copy(path: Path, out: Path) -> None:
    arrays = raw_h5py_read(path)
    with h5py.File(out, "w") as f:
        for key, arr in arrays.items():
            f.create_dataset(key, data=arr)


def naive_minari(dataset_id: str, save_to: Path | None = None) -> int:
    import minari
    from tianshou.data import ReplayBuffer

    ds = minari.load_dataset(dataset_id)
    obs, obs_next, act, rew, term, trunc = [], [], [], [], [], []
    for ep in ds.iterate_episodes():
        obs.append(ep.observations[:-1])
        obs_next.append(ep.observations[1:])
        act.append(ep.actions)
        rew.append(ep.rewards)
        term.append(ep.terminations)
        trunc.append(ep.truncations)
    terminated = np.concatenate(term)
    truncated = np.concatenate(trunc)
    buf = ReplayBuffer.from_data(
        obs=np.concatenate(obs),
        act=np.concatenate(act),
        rew=np.concatenate(rew),
        terminated=terminated,
        truncated=truncated,
        done=terminated | truncated,
        obs_next=np.concatenate(obs_next),
    )
    if save_to is not None:
        buf.save_hdf5(str(save_to))
    return len(buf)


MINARI_ARRAYS = (b"observations", b"actions", b"rewards", b"terminations", b"truncations")


def minari_read_floor(data_path: Path, fmt: str) -> None:
    """The least any reader of the storage has to do (a floor, not a converter): every
    episode's arrays are read, nothing is kept, decoded further or written.

    HDF5: open, get the extent of and read the five arrays of each episode group (and close
    the file) with h5py's low-level calls and cached types. Arrow: read each episode's file
    into one reused buffer and let pyarrow parse it (no numpy conversion)."""
    if fmt == "hdf5":
        all_ = h5py.h5s.ALL
        with h5py.File(data_path / "main_data.hdf5", "r") as f:
            fid = f.id
            types: dict[bytes, tuple[np.dtype[Any], Any]] = {}
            for group in [k.encode() for k in f.keys()]:
                for name in MINARI_ARRAYS:
                    dsid = h5py.h5d.open(fid, group + b"/" + name)
                    t = types.get(name)
                    if t is None:
                        dt = np.dtype(dsid.dtype)
                        t = types[name] = (dt, h5py.h5t.py_create(dt))
                    arr = np.empty(dsid.get_space().get_simple_extent_dims(), dtype=t[0])
                    dsid.read(all_, all_, arr, t[1])
        return
    import pyarrow as pa
    import pyarrow.ipc as ipc

    buf = bytearray(1 << 20)
    for entry in os.scandir(data_path):
        if not entry.is_dir():
            continue
        for part in os.scandir(entry.path):
            if part.name.endswith(".arrow"):
                with open(part.path, "rb", buffering=0) as fh:
                    size = os.fstat(fh.fileno()).st_size
                    if size > len(buf):
                        buf = bytearray(size)
                    view = memoryview(buf)[:size]
                    fh.readinto(view)
                ipc.open_file(pa.py_buffer(view)).read_all()


def output_columns(n: int) -> dict[str, np.ndarray]:
    """Arrays shaped like a converted Minari benchmark dataset (n transitions)."""
    rng = np.random.default_rng(2)
    obs = rng.standard_normal((n, OBS_DIM), dtype=np.float32)
    return {
        "obs": obs,
        "obs_next": obs.copy(),
        "act": rng.uniform(-1, 1, (n, ACT_DIM)).astype(np.float32),
        "rew": rng.standard_normal(n),
        "terminated": np.zeros(n, dtype=bool),
        "truncated": np.zeros(n, dtype=bool),
    }


def raw_h5py_write(arrays: dict[str, np.ndarray], out: Path) -> None:
    """Write arrays already in memory to a new HDF5 file (contiguous): the write floor."""
    with h5py.File(out, "w") as f:
        for key, arr in arrays.items():
            f.create_dataset(key, data=arr)


def _remove(path: Path) -> None:
    if path.exists():
        path.unlink()


def timed(fn: Callable[[], Any], before: Callable[[], None] | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process: user + system)."""
    if before is not None:
        before()
    c = time.process_time()
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def run_interleaved(
    cases: dict[str, tuple[Callable[[], Any], Callable[[], None] | None]], repeats: int
) -> dict[str, tuple[float, float]]:
    """Median wall and CPU time of each case; the cases take turns so that load on the
    machine affects them alike. One untimed warm-up round first (page cache, imports)."""
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
    for r in range(repeats + 1):
        for name, (fn, before) in cases.items():
            dt = timed(fn, before)
            if r > 0:
                times[name].append(dt)
    return {
        k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
        for k, v in times.items()
    }


# --------------------------------------------------------------------------------------
# peak memory (fresh subprocess per converter)
# --------------------------------------------------------------------------------------


def memprobe(kind: str, source: str, output: str, minari_root: str) -> None:
    """(subprocess) convert once; print JSON with the RSS before and the peak after."""
    os.environ["MINARI_DATASETS_PATH"] = minari_root
    # everything the converters import lazily is imported before the baseline: the figure
    # is the memory that grows with the data, not the size of shared libraries
    import minari
    import pyarrow.ipc
    from minari.dataset._storages import get_arrow_storage, get_hdf5_storage

    from tianshou_offline.converters.d4rl import convert_d4rl
    from tianshou_offline.converters.minari import convert_minari

    del minari, pyarrow
    get_arrow_storage()
    get_hdf5_storage()

    before = status_kib("VmRSS")
    if kind == "d4rl":
        convert_d4rl(source, output, overwrite=True, progress=False)
    else:
        convert_minari(source, output, overwrite=True, progress=False)
    peak = status_kib("VmHWM")
    print(json.dumps({"before_kib": before, "peak_kib": peak}))


def measure_memory(kind: str, source: str, output: Path, minari_root: Path) -> dict[str, float]:
    _remove(output)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.convert_speed",
            "--_memprobe",
            kind,
            source,
            str(output),
            str(minari_root),
        ],
        env=child_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    size = output.stat().st_size
    delta = (doc["peak_kib"] - doc["before_kib"]) * 1024
    return {"peak_delta": delta, "output_size": size, "ratio": delta / size}


# --------------------------------------------------------------------------------------
# the kept results: tables and targets
# --------------------------------------------------------------------------------------

# A kept row: [workload, reference, [wall s, CPU s], converter, [wall s, CPU s]]; a bound:
# [workload, naive, read floor, write floor, convert minari] (each [wall s, CPU s]); a
# memory row: [converter, {"peak_delta", "output_size", "ratio"}].


def _d4rl_reads(figures: dict[str, Any]) -> list[Any]:
    return [r for r in figures["rows"]
            if r[0].startswith("D4RL") and r[1].startswith("raw h5py read (")]  # fmt: skip


def _minari_naive(figures: dict[str, Any]) -> list[Any]:
    return [r for r in figures["rows"] if r[0].startswith("Minari") and r[1].startswith("naive:")
            and r[3] == "convert minari"]  # fmt: skip


def missed_targets(records: Sequence[dict[str, Any]]) -> list[str]:
    """The targets each kept result misses (wall-time medians)."""
    out: list[str] = []
    for rec in records:
        f = rec["figures"]
        out += [f"{w}: convert d4rl {conv[0] / ref[0]:.2f}x the raw read > {D4RL_TARGET}x"
                for w, _, ref, _, conv in _d4rl_reads(f) if conv[0] > D4RL_TARGET * ref[0]]  # fmt: skip
        out += [f"{w}: {ref[0] / conv[0]:.2f}x faster than naive < {MINARI_TARGET}x"
                for w, _, ref, _, conv in _minari_naive(f) if ref[0] < MINARI_TARGET * conv[0]]  # fmt: skip
        out += [f"{name}: peak memory {m['ratio']:.2f}x the output > {MEMORY_TARGET}x"
                for name, m in f["memory"] if m["ratio"] > MEMORY_TARGET]  # fmt: skip
    return out


def _s(t: Sequence[float]) -> str:
    return f"{t[0]:.3f} s ({t[1]:.3f} s)"


def _block(rec: Mapping[str, Any]) -> str:
    """One kept result's tables: each converter against its
    reference (wall time, CPU time in brackets), Minari's floors, peak memory."""
    f, st = rec["figures"], rec["settings"]
    lines = [
        "| workload | reference | reference time | converter | converter time "
        "| converter ÷ reference | target |",
        "|---|---|---:|---|---:|---:|---|",
    ]
    d4rl, minari = _d4rl_reads(f), _minari_naive(f)
    for row in f["rows"]:
        w, ref_name, ref, conv_name, conv = row
        ratio = conv[0] / ref[0]
        target = ""
        if row in d4rl:
            target = f"≤ {D4RL_TARGET:g}× {'✓' if ratio <= D4RL_TARGET else '**✗**'}"
        elif row in minari:
            ok = 1 / ratio >= MINARI_TARGET
            target = f"≥ {MINARI_TARGET:g}× faster {'✓' if ok else '**✗**'}"
        speed = f"{ratio:.2f}×" if ratio >= 1 else f"{ratio:.2f}× ({1 / ratio:.2f}× faster)"
        lines.append(f"| {w} | {ref_name} | {_s(ref)} | `{conv_name}` | {_s(conv)} "
                     f"| {speed} | {target} |")  # fmt: skip
    if f["bounds"]:
        lines += [
            "",
            "| workload | naive | read floor | write floor | best possible speed-up "
            "| `convert minari` speed-up |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for w, naive, rd, wr, conv in f["bounds"]:
            lines.append(f"| {w} | {_s(naive)} | {_s(rd)} | {_s(wr)} "
                         f"| {naive[0] / (rd[0] + wr[0]):.2f}× | {naive[0] / conv[0]:.2f}× |")  # fmt: skip
    lines += ["", f"| converter | peak RSS increase | output size | peak ÷ output (≤ {MEMORY_TARGET:g}×) |",
              "|---|---:|---:|---:|"]  # fmt: skip
    for name, m in f["memory"]:
        lines.append(f"| `{name}` | {_mb(m['peak_delta'])} | {_mb(m['output_size'])} "
                     f"| {m['ratio']:.2f}× |")  # fmt: skip
    lines += ["", f"_Medians of {st['repeats']} interleaved repeats (wall time; CPU time of "
              f"the process in brackets), {st['transitions']:,} D4RL rows, Minari "
              f"{st['episodes']:,} × {st['steps']:,} steps; {results.conditions(rec)}._"]  # fmt: skip
    return "\n".join(lines)


def readme_section() -> str:
    """The documentation's section: one :func:`_block` per kept result."""
    return report.kept_section(BENCHMARK, _block)


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def _mb(n: float) -> str:
    return f"{n / 1e6:.0f} MB"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--workdir", type=Path, default=None, help="data directory (kept; default: temp)"
    )
    p.add_argument("--transitions", type=int, default=1_000_000)
    p.add_argument("--episodes", type=int, default=1000)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--formats", default="hdf5,arrow", help="Minari storages to benchmark")
    p.add_argument("--_memprobe", nargs=4, help=argparse.SUPPRESS)
    report.add_arguments(
        p,
        target=f"d4rl <= {D4RL_TARGET}x raw read; minari >= {MINARI_TARGET}x naive; "
        f"memory <= {MEMORY_TARGET}x",
        table=True,
    )
    args = p.parse_args(argv)
    if args.table_only or args.readme:
        return report.show_blocks(args, BENCHMARK, _block, missed_targets)
    if args._memprobe:
        memprobe(*args._memprobe)
        return 0
    load = results.LoadMonitor().start()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="convert_speed_"))
    workdir.mkdir(parents=True, exist_ok=True)
    minari_root = workdir / "minari"
    os.environ["MINARI_DATASETS_PATH"] = str(minari_root)
    from tianshou_offline.converters.d4rl import convert_d4rl
    from tianshou_offline.converters.minari import convert_minari

    print(
        f"workdir {workdir}; {args.repeats} timed repeats (medians), "
        f"{os.cpu_count()} CPUs, numpy {np.__version__}, h5py {h5py.__version__}",
        flush=True,
    )
    rows: list[tuple[str, str, tuple[float, float], str, tuple[float, float]]] = []
    mem_rows: list[tuple[str, dict[str, float]]] = []
    Timing = tuple[float, float]
    bounds: list[tuple[str, Timing, Timing, Timing, Timing]] = []

    # ---------------------------------------------------------------- D4RL
    out = workdir / "out.hdf5"
    copy_out = workdir / "copy.hdf5"
    for label, compression in (("uncompressed", None), ("gzip", "gzip")):
        src = workdir / f"d4rl_{label}_{args.transitions}.hdf5"
        if not src.exists():
            print(f"writing {src.name} ...", flush=True)
            make_d4rl_file(src, args.transitions, compression=compression)
        med = run_interleaved(
            {
                "raw_read": (partial(raw_h5py_read, src), None),
                "raw_copy": (partial(raw_h5py_copy, src, copy_out), lambda: _remove(copy_out)),
                "convert": (
                    partial(convert_d4rl, src, out, progress=False),
                    lambda: _remove(out),
                ),
            },
            args.repeats,
        )
        name = f"D4RL {args.transitions:,} rows ({label})"
        rows.append(
            (name, "raw h5py read (I/O bound)", med["raw_read"], "convert d4rl", med["convert"])
        )
        rows.append(
            (name, "raw h5py read + write", med["raw_copy"], "convert d4rl", med["convert"])
        )
        mem_rows.append(
            (f"convert d4rl ({label})", measure_memory("d4rl", str(src), out, minari_root))
        )

    # ---------------------------------------------------------------- Minari
    from tianshou_offline.converters.minari import minari_datasets_root

    assert minari_datasets_root() == minari_root
    naive_out = workdir / "naive.hdf5"
    floor_out = workdir / "floor.hdf5"
    out_arrays = output_columns(args.episodes * args.steps)
    for fmt in [f for f in args.formats.split(",") if f]:
        ds_id = f"bench/{fmt}-{args.episodes}x{args.steps}-v0"
        if not (minari_root / ds_id / "data" / "metadata.json").exists():
            print(f"writing Minari dataset {ds_id} ...", flush=True)
            make_minari_dataset(ds_id, args.episodes, args.steps, fmt)
        med = run_interleaved(
            {
                "naive": (partial(naive_minari, ds_id), None),
                "naive_save": (
                    partial(naive_minari, ds_id, naive_out),
                    lambda: _remove(naive_out),
                ),
                "convert": (
                    partial(convert_minari, ds_id, out, progress=False),
                    lambda: _remove(out),
                ),
                "convert_minari_reader": (
                    partial(convert_minari, ds_id, out, reader="minari", progress=False),
                    lambda: _remove(out),
                ),
                "read_floor": (
                    partial(minari_read_floor, minari_root / ds_id / "data", fmt),
                    None,
                ),
                "write_floor": (
                    lambda: raw_h5py_write(out_arrays, floor_out),
                    lambda: _remove(floor_out),
                ),
            },
            args.repeats,
        )
        name = f"Minari {args.episodes}x{args.steps} ({fmt})"
        rows.append(
            (
                name,
                "naive: iterate+concat+from_data",
                med["naive"],
                "convert minari",
                med["convert"],
            )
        )
        rows.append(
            (name, "naive + save_hdf5", med["naive_save"], "convert minari", med["convert"])
        )
        rows.append(
            (
                name,
                "naive: iterate+concat+from_data",
                med["naive"],
                "convert minari --reader minari",
                med["convert_minari_reader"],
            )
        )
        bounds.append((name, med["naive"], med["read_floor"], med["write_floor"], med["convert"]))
        mem_rows.append(
            (f"convert minari ({fmt})", measure_memory("minari", ds_id, out, minari_root))
        )
    _remove(floor_out)

    # ---------------------------------------------------------------- report
    print()
    print(
        "| workload | reference | ref. wall (CPU) | converter | conv. wall (CPU) | "
        "speed-up wall (CPU) |"
    )
    print("|---|---|---:|---|---:|---:|")
    for name, ref, (w_ref, c_ref), conv, (w_conv, c_conv) in rows:
        print(
            f"| {name} | {ref} | {w_ref:.3f} s ({c_ref:.3f} s) | {conv} | "
            f"{w_conv:.3f} s ({c_conv:.3f} s) | {w_ref / w_conv:.2f}x ({c_ref / c_conv:.2f}x) |"
        )
    print()
    print(
        "speed-up = reference time / converter time (< 1: the converter takes longer; "
        "1 / speed-up = converter time as a multiple of the reference)"
    )
    if bounds:
        print()
        print(
            "Floors (no converter of the storage can be faster than reading it plus writing "
            "its output): best possible speed-up = naive / (read floor + write floor)"
        )
        print()
        print(
            "| workload | naive wall (CPU) | read floor | write floor | best possible speed-up "
            "wall (CPU) | convert minari speed-up wall (CPU) |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        for name, (wn, cn), (wr, cr), (ww, cw), (wc, cc) in bounds:
            print(
                f"| {name} | {wn:.3f} s ({cn:.3f} s) | {wr:.3f} s ({cr:.3f} s) | "
                f"{ww:.3f} s ({cw:.3f} s) | {wn / (wr + ww):.2f}x ({cn / (cr + cw):.2f}x) | "
                f"{wn / wc:.2f}x ({cn / cc:.2f}x) |"
            )
    print()
    print("| converter | peak RSS increase | output size | peak / output |")
    print("|---|---:|---:|---:|")
    for name, m in mem_rows:
        print(f"| {name} | {_mb(m['peak_delta'])} | {_mb(m['output_size'])} | {m['ratio']:.2f}x |")
    print()
    print(
        "targets: convert d4rl <= 2x raw h5py read; convert minari >= 5x faster than naive; "
        "peak memory <= 1.5x output size"
    )
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    load.stop()
    settings = {k: v for k, v in vars(args).items()
                if k in ("transitions", "episodes", "steps", "repeats", "formats")}  # fmt: skip
    figures = {"rows": rows, "bounds": bounds, "memory": mem_rows}
    return report.keep(BENCHMARK, f"{args.transitions}-{args.episodes}x{args.steps}",
                       settings=settings, figures=figures, code=CODE, load=load,
                       missed=missed_targets([{"figures": figures}]), check=args.check)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
