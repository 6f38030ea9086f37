#!/usr/bin/env python3
"""Training from an Atari dataset larger than RAM (issue 15): memory, speed, uniformity.

1. ``build``: writes ``--steps`` transitions of synthetic compact Atari data (one 84×84 uint8
   frame per step, ``stack_num=4``, ``save_only_last_obs``; episodes of ``--episode-len``
   steps cut across shard ends, as RL Unplugged's) into shards of ``--shard-steps`` with the
   project's own ``BufferWriter(contiguous=True)``. Frames are realistically compressible
   (a static background, moving bright blocks and a score band, small noise: gzip shrinks
   them ~10×, as Atari screens), not random bytes.
2. ``run`` (one process, one run):

   - **load**: ``load_rl_unplugged(dir, memory="disk")`` and ``DiscreteCQL.process_buffer``
     (the streaming dataset) — seconds to the first gradient step;
   - **disk**: gradient steps of DiscreteCQL (the Atari QR-DQN conv net, batch 32) sampling
     from all shards; resident memory: the process's anonymous RSS (``RssAnon``, sampled
     every 50 ms: what the process holds in RAM) beyond the model, and the file pages the
     kernel keeps mapped (``RssFile``: page cache, evictable, shared);
   - **ram**: the same training from an in-RAM buffer of the first ``--ram-steps`` (1M)
     steps (``memory="ram"``: device tables), loaded after the disk-side memory figures;
   - blocks of ``--block`` steps alternate disk/ram ``--rounds`` times (same process, same
     network, batch and optimizer on both sides): steps/s per side and the ratio
     disk/ram (target ≥ 0.8), medians over the blocks;
   - **cold**: one disk block after dropping every shard from the page cache
     (``posix_fadvise(DONTNEED)``);
   - **uniformity**: every position the disk side sampled, counted per shard, χ² test
     against shard sizes (a rotation over a subset of shards is shown failing it).

Usage::

    python -m benchmarks.out_of_core build --dir /tmp/ooc --steps 5000000
    python -m benchmarks.out_of_core run --dir /tmp/ooc [--ram-steps 1000000]

Check free disk first: 5M steps are 35.3 GB of frames (plus one shard's temporary).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._lib import report, results

FRAME = (84, 84)
STACK = 4
GB = 1e9
CODE = ("benchmarks/out_of_core.py", "benchmarks/_lib/sides_discrete.py",
        "tianshou_offline/data", "tianshou_offline/algorithms", "tianshou_offline/converters")  # fmt: skip


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class AnonPeak:
    """Samples ``RssAnon`` / ``RssFile`` of this process every 50 ms (``peak`` since ``reset``)."""

    def __init__(self) -> None:
        self.peak_anon = 0
        self.peak_file = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_anon = max(self.peak_anon, _status_kb("RssAnon") * 1024)
            self.peak_file = max(self.peak_file, _status_kb("RssFile") * 1024)
            time.sleep(0.05)

    def reset(self) -> None:
        self.peak_anon = _status_kb("RssAnon") * 1024
        self.peak_file = _status_kb("RssFile") * 1024

    def stop(self) -> None:
        self._stop.set()


def frame_pool(n: int, seed: int) -> np.ndarray:
    """``n`` compressible 84×84 frames: background, bright moving blocks, a score band."""
    rng = np.random.default_rng(seed)
    bg = np.zeros(FRAME, np.uint8)
    bg[:, :4] = bg[:, -4:] = 142  # walls
    bg[8:12, :] = 87  # score band
    pool = np.repeat(bg[None], n, axis=0)
    t = np.arange(n)
    for k, (vy, vx) in enumerate(((1, 2), (2, -1), (3, 1))):
        y = (7 * k + vy * t) % 70 + 12
        x = (11 * k + vx * t) % 76 + 4
        for i in range(n):
            pool[i, y[i] : y[i] + 4, x[i] : x[i] + 2] = 236
    noise = rng.random((n, *FRAME)) < 0.002
    pool[noise] = 200
    return pool


def build(args: argparse.Namespace) -> None:
    import gymnasium as gym

    from tianshou_offline import BufferWriter, Provenance

    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    pool = frame_pool(4096, 0)
    chunk = 16_384
    t0 = time.perf_counter()
    shards = (args.steps + args.shard_steps - 1) // args.shard_steps
    for j in range(shards):
        path = out / f"shard-{j:05d}-of-{shards:05d}.hdf5"
        if path.exists():
            print(f"{path.name}: exists, kept", flush=True)
            continue
        first, last = j * args.shard_steps, min(args.steps, (j + 1) * args.shard_steps)
        ts = time.perf_counter()
        with BufferWriter(
            path,
            observation_space=gym.spaces.Box(0, 255, (STACK, *FRAME), np.uint8),
            action_space=gym.spaces.Discrete(6),
            env_id="PongNoFrameskip-v4",
            provenance=Provenance(source="synthetic", converter="benchmarks/out_of_core.py"),
            store_obs_next=False,
            stack_num=STACK,
            save_only_last_obs=True,
            contiguous=True,
        ) as writer:
            for s in range(first, last, chunk):
                rows = np.arange(s, min(last, s + chunk))
                term = (rows % args.episode_len) == args.episode_len - 1
                writer.add_transitions(
                    obs=pool[rows % len(pool)],
                    act=rng.integers(0, 6, size=len(rows)),
                    rew=rng.choice([-1.0, 0.0, 1.0], size=len(rows), p=[0.01, 0.98, 0.01]),
                    terminated=term,
                    truncated=np.zeros(len(rows), bool),
                    info={"episode_id": rows // args.episode_len},
                )
        print(
            f"{path.name}: {last - first} steps, {path.stat().st_size / GB:.2f} GB, "
            f"{time.perf_counter() - ts:.0f} s",
            flush=True,
        )
    total = sum(p.stat().st_size for p in out.glob("*.hdf5"))
    print(
        f"built {args.steps} steps in {shards} shards: {total / GB:.1f} GB, "
        f"{time.perf_counter() - t0:.0f} s"
    )


def _algorithm() -> Any:
    from benchmarks._lib.sides_discrete import ATARI, build_ours

    return build_ours("cql", ATARI)


def _steps_per_s(
    algorithm: Any, buffer: Any, steps: int, positions: list[np.ndarray] | None
) -> float:
    from tianshou.utils.torch_utils import policy_within_training_step

    dataset = algorithm.dataset_for(buffer)
    t0 = time.perf_counter()
    with policy_within_training_step(algorithm.policy):
        for _ in range(steps):
            algorithm.update(buffer=buffer, sample_size=32)
            if positions is not None and dataset.last_positions is not None:
                positions.append(dataset.last_positions)
    return steps / (time.perf_counter() - t0)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import types

    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
    import torch
    from scipy.stats import chisquare

    torch.set_num_threads(args.threads)
    from tianshou_offline.algorithms.discrete.streaming import StreamingFrameDataset
    from tianshou_offline.converters.rl_unplugged import load_rl_unplugged
    from tianshou_offline.data.ondisk import available_memory

    files = sorted(Path(args.dir).glob("*.hdf5"))
    if not files:
        raise SystemExit(f"{args.dir}: no shards; run `build` first")
    monitor = AnonPeak()
    res: dict[str, Any] = {
        "shards": len(files),
        "data_bytes": sum(p.stat().st_size for p in files),
        "mem_total": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "mem_available_at_start": available_memory(),
        "threads": args.threads,
    }
    torch.manual_seed(0)
    disk_algo = _algorithm()
    ram_algo = _algorithm()
    base_anon = _status_kb("RssAnon") * 1024  # interpreter, torch and both models
    res["anon_base"] = base_anon
    monitor.reset()
    t0 = time.perf_counter()
    disk = load_rl_unplugged(files, memory="disk", include_info=False)
    res["load_s"] = time.perf_counter() - t0
    disk = disk_algo.process_buffer(disk)
    res["prepare_s"] = time.perf_counter() - t0 - res["load_s"]
    _steps_per_s(disk_algo, disk, 1, None)
    res["first_step_s"] = time.perf_counter() - t0
    res["transitions"] = len(disk)
    ds = disk_algo.dataset_for(disk)
    assert isinstance(ds, StreamingFrameDataset)
    positions: list[np.ndarray] = []
    warm = _steps_per_s(disk_algo, disk, args.block, positions)
    res["disk_only_steps_per_s"] = warm
    res["disk_anon_peak_beyond_model"] = monitor.peak_anon - base_anon
    res["disk_file_peak"] = monitor.peak_file
    res["disk_bytes_per_transition"] = (monitor.peak_anon - base_anon) / len(disk)
    print(json.dumps(res, indent=1), flush=True)

    # the in-RAM reference: the first ram-steps transitions, device tables
    from tianshou_offline.data.format import read_metadata

    ram_files: list[Path] = []
    n_ram = 0
    for p in files:
        if n_ram >= args.ram_steps:
            break
        ram_files.append(p)
        n_ram += read_metadata(p).num_transitions
    t1 = time.perf_counter()
    ram = load_rl_unplugged(ram_files, memory="ram", include_info=False)
    ram = ram_algo.process_buffer(ram)
    res["ram_transitions"] = len(ram)
    res["ram_load_s"] = time.perf_counter() - t1
    disk_rates, ram_rates = [], []
    for r in range(args.rounds):
        disk_rates.append(_steps_per_s(disk_algo, disk, args.block, positions))
        ram_rates.append(_steps_per_s(ram_algo, ram, args.block, None))
        print(
            f"round {r}: disk {disk_rates[-1]:.1f} steps/s, ram {ram_rates[-1]:.1f} steps/s",
            flush=True,
        )
    res["disk_steps_per_s"] = float(np.median(disk_rates))
    res["ram_steps_per_s"] = float(np.median(ram_rates))
    res["ratio_disk_over_ram"] = res["disk_steps_per_s"] / res["ram_steps_per_s"]
    res["ratios_per_round"] = [d / r for d, r in zip(disk_rates, ram_rates, strict=True)]
    del ram
    ram_algo._dataset = None
    disk.drop_cache()
    res["cold_steps_per_s"] = _steps_per_s(disk_algo, disk, args.block, positions)
    res["cold_ratio_over_ram"] = res["cold_steps_per_s"] / res["ram_steps_per_s"]

    # uniformity over shards of every sampled position
    pos = np.concatenate(positions)
    sizes = np.asarray([read_metadata(p).num_transitions for p in files])
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    counts = np.histogram(pos, bins=bounds)[0]
    expected = len(pos) * sizes / sizes.sum()
    res["sampled_positions"] = len(pos)
    res["chi2_pvalue_over_shards"] = float(chisquare(counts, expected).pvalue)
    k = max(1, len(files) // 10)  # batch_rl-style rotation: k shards at a time
    rotated = pos[pos < bounds[k]]
    rot_counts = np.histogram(rotated, bins=bounds)[0]
    res["rotation_shards"] = k
    res["chi2_pvalue_rotation"] = float(
        chisquare(rot_counts, rot_counts.sum() * sizes / sizes.sum()).pvalue
    )
    res["shard_counts_min_max"] = [int(counts.min()), int(counts.max())]
    monitor.stop()
    ds.close()
    print(json.dumps(res, indent=1))
    print()
    print(
        f"data: {res['data_bytes'] / GB:.1f} GB in {len(files)} shards, RAM "
        f"{res['mem_total'] / GB:.1f} GB; {res['transitions']} transitions"
    )
    print(
        f"load to first gradient step: {res['first_step_s']:.1f} s "
        f"(load {res['load_s']:.1f} s, prepare {res['prepare_s']:.1f} s)"
    )
    print(
        f"resident beyond the model (RssAnon peak): {res['disk_anon_peak_beyond_model'] / GB:.2f} "
        f"GB = {res['disk_bytes_per_transition']:.1f} B/transition (target <= 4 GB)"
    )
    print(
        f"steps/s disk {res['disk_steps_per_s']:.1f} vs ram ({res['ram_transitions']} steps) "
        f"{res['ram_steps_per_s']:.1f}: ratio {res['ratio_disk_over_ram']:.2f} (target >= 0.8); "
        f"cold cache {res['cold_steps_per_s']:.1f} ({res['cold_ratio_over_ram']:.2f})"
    )
    print(
        f"uniformity over shards: chi2 p = {res['chi2_pvalue_over_shards']:.3f} "
        f"({len(pos)} samples); a rotation of {k} shard(s) gives p = "
        f"{res['chi2_pvalue_rotation']:.2g}"
    )
    return res


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--dir", required=True)
    b.add_argument("--steps", type=int, default=5_000_000)
    b.add_argument("--shard-steps", type=int, default=500_000)
    b.add_argument("--episode-len", type=int, default=2_700)
    r = sub.add_parser("run")
    r.add_argument("--dir", required=True)
    r.add_argument("--ram-steps", type=int, default=1_000_000)
    r.add_argument("--block", type=int, default=100)
    r.add_argument("--rounds", type=int, default=5)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--json", help="also write the results here")
    report.add_arguments(r, target="disk/ram >= 0.8 steps/s; resident beyond the model <= 4 GB")
    args = parser.parse_args(argv)
    if args.cmd == "build":
        build(args)
        return 0
    load = results.LoadMonitor().start()
    res = run(args)
    load.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    missed = [m for ok, m in (
        (res["ratio_disk_over_ram"] >= 0.8, f"disk/ram {res['ratio_disk_over_ram']:.2f} < 0.8"),
        (res["disk_anon_peak_beyond_model"] <= 4 * GB,
         f"resident beyond the model {res['disk_anon_peak_beyond_model'] / GB:.2f} GB > 4 GB"),
    ) if not ok]  # fmt: skip
    settings = {k: v for k, v in vars(args).items() if k not in ("json", "check", "dir", "cmd")}
    return report.keep(
        "out_of_core", f"{res['transitions']}", settings=settings, figures=res,
        code=CODE, load=load, missed=missed, check=args.check,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
