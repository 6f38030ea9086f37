"""The out-of-core benchmark's I/O-bound configuration (:mod:`benchmarks.out_of_core` ``io``):
sampling alone and a small network, from disk and from RAM, beside the disk's own
random-read rate, every disk block from a cold cache, in an order rotated every round."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._lib.atari_frames import FRAME, GB, STACK, first_shards
from benchmarks._lib.disk_limit import (
    _io_bytes,
    cached_bytes,
    disk_limit,
    drop_files,
    fio_limit,
    frame_extents,
)


def _small_net() -> Any:
    """Behaviour cloning with a small network (one hidden layer of 32 units on the flattened
    stack): a gradient step of ~1 ms, so that the data, not the network, sets the pace."""
    import gymnasium as gym
    from tianshou.algorithm.optim import AdamOptimizerFactory

    from tianshou_offline.algorithms import (
        DiscreteActorPolicy,
        DiscreteImitationLearning,
        MLPTrunk,
        QNet,
    )

    net = QNet(MLPTrunk(STACK * FRAME[0] * FRAME[1], (32,)), 6)
    return DiscreteImitationLearning(
        policy=DiscreteActorPolicy(actor=net, action_space=gym.spaces.Discrete(6)),
        optim=AdamOptimizerFactory(lr=1e-4),
    )


def _io_block(side: str, algorithm: Any, buffer: Any, batches: int, batch: int) -> float:
    """Batches/s of ``side``: ``sample`` draws mini-batches only (the dataset's prefetch
    thread gathers them), ``net`` also takes the small network's gradient step on each."""
    from tianshou.utils.torch_utils import policy_within_training_step

    ds = algorithm.dataset_for(buffer)
    t0 = time.perf_counter()
    if side == "sample":
        for _ in range(batches):
            ds.sample(batch)
    else:
        with policy_within_training_step(algorithm.policy):
            for _ in range(batches):
                algorithm.update(buffer=buffer, sample_size=batch)
    rate = batches / (time.perf_counter() - t0)
    close = getattr(ds, "close", None)
    if callable(close):
        close()  # stop the prefetch thread: the next block starts from a cold cache
    return rate


def run_io(args: argparse.Namespace) -> dict[str, Any]:
    """The I/O-bound configuration: sampling alone and a small network, uniform over every
    transition of every shard, each disk block from a cold cache; the disk's own random-read
    rate for the same pattern; blocks in an order rotated every round."""
    import types

    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
    import torch

    from tianshou_offline.converters.rl_unplugged import load_rl_unplugged

    torch.set_num_threads(args.threads)
    files = sorted(Path(args.dir).glob("*.hdf5"))
    if not files:
        raise SystemExit(f"{args.dir}: no shards; run `build` first")
    extents = frame_extents(files)
    torch.manual_seed(0)
    algos = {"disk": _small_net(), "ram": _small_net()}
    buffers: dict[str, Any] = {
        "disk": algos["disk"].process_buffer(
            load_rl_unplugged(files, memory="disk", include_info=False)
        )
    }
    ram_files = first_shards(files, args.ram_steps)
    buffers["ram"] = algos["ram"].process_buffer(
        load_rl_unplugged(ram_files, memory="ram", include_info=False)
    )
    span = STACK + 1
    reads = args.batches * args.batch
    res: dict[str, Any] = {
        "shards": len(files),
        "data_bytes": sum(p.stat().st_size for p in files),
        "frame_bytes": sum(n for _, _, n in extents) * FRAME[0] * FRAME[1],
        "mem_total": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "transitions": len(buffers["disk"]),
        "ram_transitions": len(buffers["ram"]),
        "reads_per_block": reads,
        "read_bytes_each": span * FRAME[0] * FRAME[1],
        "cold_cache": "posix_fadvise(POSIX_FADV_DONTNEED) on every shard before each disk "
        "and pread block; fio reads with O_DIRECT",
    }
    sides = [f"{where} {what}" for what in ("sample", "net") for where in ("disk", "ram")]
    sides += [f"pread depth {d}" for d in args.limit_depths]
    fio = fio_limit(files, 16, span * FRAME[0] * FRAME[1], 1, 0) is not None
    if fio:
        import subprocess

        res["fio"] = subprocess.run(
            ["fio", "--version"], capture_output=True, text=True
        ).stdout.strip()
        sides += [f"fio depth {d}" for d in args.limit_depths]
    rates: dict[str, list[float]] = {s: [] for s in sides}
    storage_mb: dict[str, list[float]] = {s: [] for s in sides}
    cached_mb: dict[str, list[float | None]] = {s: [] for s in sides}
    orders = []
    for r in range(args.rounds):
        order = sides[r % len(sides):] + sides[: r % len(sides)]  # fmt: skip
        orders.append(order)
        for side in order:
            if side.split()[0] in ("disk", "pread"):
                buffers["disk"].drop_cache()
                drop_files(files)
            cached = cached_bytes(files)
            cached_mb[side].append(None if cached is None else cached / 1e6)
            io0 = _io_bytes()
            if side.startswith("pread"):
                lim = disk_limit(extents, reads, span, int(side.split()[-1]), seed=1000 + r)
                rate = lim["reads_per_s"] / args.batch  # in batches of the same reads
            elif side.startswith("fio"):
                got = fio_limit(
                    files, reads, span * FRAME[0] * FRAME[1], int(side.split()[-1]), 1000 + r
                )
                assert got is not None
                rate = got["reads_per_s"] / args.batch
            else:
                where, what = side.split()
                rate = _io_block(what, algos[where], buffers[where], args.batches, args.batch)
            storage_mb[side].append((_io_bytes() - io0) / 1e6)
            rates[side].append(rate)
            print(f"round {r} {side}: {rate:.1f} batches/s ({rate * args.batch:.0f} reads/s), "
                  f"{storage_mb[side][-1]:.0f} MB from storage", flush=True)  # fmt: skip
    med = {s: float(np.median(v)) for s, v in rates.items()}
    limit_side = max((s for s in sides if s.split()[0] in ("pread", "fio")), key=lambda s: med[s])
    res.update(
        {
            "batch": args.batch,
            "batches_per_block": args.batches,
            "orders": orders,
            "batches_per_s": rates,
            "median_batches_per_s": med,
            "storage_mb_per_block": storage_mb,
            "cached_mb_at_block_start": cached_mb,
            "limit": limit_side,
            "achieved_over_limit": {
                s: [a / b for a, b in zip(rates[s], rates[limit_side], strict=True)]
                for s in ("disk sample", "disk net")
            },
            "median_achieved_over_limit": {
                s: float(np.median([a / b for a, b in zip(rates[s], rates[limit_side], strict=True)]))
                for s in ("disk sample", "disk net")
            },
            "disk_over_ram": {
                w: float(np.median([a / b for a, b in zip(rates[f"disk {w}"], rates[f"ram {w}"], strict=True)]))
                for w in ("sample", "net")
            },
        }
    )  # fmt: skip
    print(
        f"\ndata: {res['data_bytes'] / GB:.1f} GB in {len(files)} shards, RAM "
        f"{res['mem_total'] / GB:.1f} GB; {res['transitions']} transitions; "
        f"{reads} reads of {res['read_bytes_each'] / 1e3:.1f} kB per block, cold cache"
    )
    for side in sides:
        print(f"  {side:<16} {med[side]:8.1f} batches/s (median of {args.rounds})")
    lim = res["median_achieved_over_limit"]
    print(
        f"achieved / disk limit ({limit_side}): sampling {lim['disk sample']:.2f}, "
        f"small network {lim['disk net']:.2f}; disk / RAM: sampling "
        f"{res['disk_over_ram']['sample']:.2f}, small network {res['disk_over_ram']['net']:.2f}"
    )
    return res
