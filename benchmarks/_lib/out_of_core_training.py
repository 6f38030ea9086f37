"""The out-of-core benchmark's training run (:mod:`benchmarks.out_of_core` ``run``):
DiscreteCQL on the Atari net from a disk-backed buffer of every shard and from RAM, blocks
alternating sides; memory, speed and the sampler's uniformity over shards."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._lib.atari_frames import GB, first_shards
from benchmarks._lib.process_memory import AnonPeak, status_kib


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
    base_anon = status_kib("RssAnon") * 1024  # interpreter, torch and both models
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

    ram_files = first_shards(files, args.ram_steps)
    t1 = time.perf_counter()
    ram = load_rl_unplugged(ram_files, memory="ram", include_info=False)
    ram = ram_algo.process_buffer(ram)
    res["ram_transitions"] = len(ram)
    res["ram_load_s"] = time.perf_counter() - t1
    disk_rates, ram_rates = [], []
    for r in range(args.rounds):  # disk first in even rounds, RAM first in odd ones
        for side in ("disk", "ram") if r % 2 == 0 else ("ram", "disk"):
            if side == "disk":
                disk_rates.append(_steps_per_s(disk_algo, disk, args.block, positions))
            else:
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
