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
   - blocks of ``--block`` steps alternate disk/ram ``--rounds`` times, disk first in even
     rounds and RAM first in odd ones (same process, same network, batch and optimizer on
     both sides): steps/s per side and the ratio
     disk/ram (target ≥ 0.8), medians over the blocks;
   - **cold**: one disk block after dropping every shard from the page cache
     (``posix_fadvise(DONTNEED)``);
   - **uniformity**: every position the disk side sampled, counted per shard, χ² test
     against shard sizes (a rotation over a subset of shards is shown failing it).

3. ``io``: the I/O-bound configuration (the training run above is compute-bound: the conv
   net's step takes far longer than reading its batch). Blocks of ``--batches`` mini-batches
   of 32, each side's block in an order rotated every round (``--rounds``):

   - **disk sample** / **ram sample**: mini-batches drawn alone (the streaming dataset's
     prefetch thread gathers them), uniform over every transition of every shard / of the
     in-RAM buffer of the first ``--ram-steps``;
   - **disk net** / **ram net**: the same with a gradient step of a small network (behaviour
     cloning, one hidden layer of 32 units) on each;
   - **pread depth D**: the disk's random-read rate for the same pattern: as many reads as a
     block samples, each of the 5 consecutive frames a sampled transition's stack and next
     stack cover, at uniform rows over every shard, ``pread`` by D threads (files read with
     ``POSIX_FADV_RANDOM``);
   - **fio depth D** (when ``fio`` is installed): the same number of reads of the same size
     (rounded up to whole pages) with ``fio`` (``O_DIRECT``, ``libaio``, D in flight): the
     device's own rate without Python. The best of every pread and fio block (medians) is
     the physical limit.

   Every disk and limit block starts from a cold cache: the shards are evicted with
   ``posix_fadvise(POSIX_FADV_DONTNEED)`` (these files only; ``fincore`` records what was
   still cached; fio bypasses the cache) and the bytes read from storage are counted (``/proc/self/io``). Reported:
   batches/s per side (medians over rounds), achieved ÷ limit and disk ÷ RAM.

Usage::

    python -m benchmarks.out_of_core build --dir /tmp/ooc --steps 5000000
    python -m benchmarks.out_of_core run --dir /tmp/ooc [--ram-steps 1000000]
    python -m benchmarks.out_of_core io --dir /tmp/ooc [--rounds 10]
    python -m benchmarks.out_of_core table [--readme]     # the docs' section from kept results

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


def first_shards(files: Sequence[Path], steps: int) -> list[Path]:
    """The first shards of ``files`` that hold at least ``steps`` transitions (all of them
    if they hold fewer): the in-RAM reference buffer's files."""
    from tianshou_offline.data.format import read_metadata

    out: list[Path] = []
    n = 0
    for p in files:
        if n >= steps:
            break
        out.append(p)
        n += read_metadata(p).num_transitions
    return out


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


# ----------------------------------------------------------------------------- I/O-bound


def _io_bytes() -> int:
    """Bytes this process has caused to be read from storage (``read_bytes`` of
    ``/proc/self/io``: page faults, read-ahead and ``pread`` of every thread; 0 elsewhere)."""
    try:
        with open("/proc/self/io") as f:
            for line in f:
                if line.startswith("read_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def frame_extents(files: Sequence[Path]) -> list[tuple[Path, int, int]]:
    """``(file, byte offset, rows)`` of each shard's frame column, read with h5py (not the
    library's loader): where the disk-limit reads go."""
    import h5py

    out = []
    for p in files:
        with h5py.File(p, "r") as f:
            ds = f["_meta/obs"]
            offset = ds.id.get_offset()
            if offset is None:
                raise SystemExit(f"{p}: the frame column is not contiguous")
            out.append((p, int(offset), int(ds.shape[0])))
    return out


def drop_files(files: Sequence[Path]) -> None:
    """Evict the files from the page cache: ``posix_fadvise(POSIX_FADV_DONTNEED)`` on each
    (only these files; other processes' caches are left alone)."""
    for p in files:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def cached_bytes(files: Sequence[Path]) -> int | None:
    """Bytes of ``files`` in the page cache (util-linux ``fincore``; None without it)."""
    import shutil
    import subprocess

    if shutil.which("fincore") is None:
        return None
    done = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES", *map(str, files)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        return None
    return sum(int(x) for x in done.stdout.split())


def disk_limit(
    extents: Sequence[tuple[Path, int, int]], reads: int, span: int, depth: int, seed: int
) -> dict[str, float]:
    """The disk's own random-read rate for the sampler's access pattern: ``reads`` reads of
    ``span`` consecutive frames (the rows a sampled transition's stack and next stack cover)
    at storage rows uniform over every shard, issued by ``depth`` threads with ``pread``
    (files opened with ``POSIX_FADV_RANDOM``: no read-ahead, as the mapped side's
    ``MADV_RANDOM``). Returns reads/s and MB/s."""
    from concurrent.futures import ThreadPoolExecutor

    row_bytes = FRAME[0] * FRAME[1]
    sizes = np.asarray([n for _, _, n in extents], dtype=np.int64)
    ends = np.cumsum(sizes)
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, int(ends[-1]), size=reads)
    which = np.searchsorted(ends, rows, side="right")
    local = rows - (ends[which] - sizes[which])
    fds = []
    for p, _, _ in extents:
        fd = os.open(p, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        fds.append(fd)
    jobs = []
    for k, r in zip(which.tolist(), local.tolist(), strict=True):
        _, offset, n = extents[k]
        first = max(0, r - (span - 2))  # the stack ending at r and the one ending at r + 1
        last = min(n - 1, r + 1)
        jobs.append((fds[k], (last - first + 1) * row_bytes, offset + first * row_bytes))

    def one(job: tuple[int, int, int]) -> int:
        return len(os.pread(*job))

    try:
        io0 = _io_bytes()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=depth) as pool:
            got = sum(pool.map(one, jobs, chunksize=max(1, reads // (depth * 8))))
        seconds = time.perf_counter() - t0
        io = _io_bytes() - io0
    finally:
        for fd in fds:
            os.close(fd)
    return {"reads_per_s": reads / seconds, "mb_per_s": got / seconds / 1e6,
            "read_mb_from_storage": io / 1e6, "seconds": seconds}  # fmt: skip


def fio_limit(
    files: Sequence[Path], reads: int, nbytes: int, depth: int, seed: int
) -> dict[str, float] | None:
    """The same reads measured by ``fio`` (None when it is not installed): ``reads`` random
    reads of ``nbytes`` rounded up to whole 4 KiB pages (the pages a sampled span touches),
    uniform over the shard files, ``O_DIRECT`` (no page cache: cold by construction),
    ``libaio`` with ``depth`` reads in flight — the device's own rate, without Python."""
    import shutil
    import subprocess

    if shutil.which("fio") is None:
        return None
    bs = -(-nbytes // 4096) * 4096
    cmd = ["fio", "--name=limit", "--filename=" + ":".join(map(str, files)), "--readonly",
           "--rw=randread", f"--bs={bs}", "--direct=1", "--ioengine=libaio",
           f"--iodepth={depth}", f"--number_ios={reads}", f"--randseed={seed}",
           "--file_service_type=random", "--output-format=json"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    job = json.loads(done.stdout)["jobs"][0]["read"]
    return {"reads_per_s": float(job["iops"]), "mb_per_s": job["bw_bytes"] / 1e6,
            "reads": int(job["total_ios"]), "block_bytes": bs}  # fmt: skip


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


# --------------------------------------------------------------------------- continuous pixels

PIXELS = (3, 64, 64)
"""V-D4RL-style RGB observations (its 84×84 frames scaled to 64×64: one channel-first image)."""


def _pixel_file(directory: Path, steps: int, seed: int) -> Path:
    """``steps`` transitions of ``PIXELS`` uint8 images (a static background, a bright block
    whose position is the 2-D action's target, noise), contiguous, episodes of 500 steps;
    written once, reused by later runs."""
    from tianshou_offline.data.writer import BufferWriter

    path = directory / f"pixels-{steps}.hdf5"
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    c, h, w = PIXELS
    bg = (rng.random((c, h, w)) * 60).astype(np.uint8)
    with BufferWriter(path, contiguous=True, store_obs_next=False) as writer:
        for a in range(0, steps, 5_000):
            n = min(5_000, steps - a)
            xy = rng.integers(0, h - 8, (n, 2))
            img = np.repeat(bg[None], n, axis=0)
            for i, (y, x) in enumerate(xy):
                img[i, :, y : y + 8, x : x + 8] = 230
            img |= (rng.random(img.shape) < 0.01).astype(np.uint8) * 17
            truncated = (np.arange(a, a + n) % 500) == 499
            truncated[-1] |= a + n == steps
            writer.add_transitions(
                obs=img,
                act=(xy / (h - 8) * 2.0 - 1.0).astype(np.float32),
                rew=rng.normal(size=n).astype(np.float32),
                terminated=np.zeros(n, bool),
                truncated=truncated,
            )
    return path


def run_pixels(args: argparse.Namespace) -> dict[str, Any]:
    """The continuous pixel row: TD3+BC with its convolutional encoder (``encoder="auto"`` on
    ``(3, 64, 64)`` images) trained from a disk-backed buffer (``StreamingTransitionDataset``,
    prefetch thread) and from RAM (``TransitionDataset``: float32 device tables), blocks
    alternating sides every round; sampling alone likewise; the anonymous memory each side's
    load and dataset add (``RssAnon``), per transition. The disk side's blocks start from a
    cold cache."""
    import types

    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
    import gymnasium as gym
    import torch
    from tianshou.utils.torch_utils import policy_within_training_step

    from tianshou_offline import load_buffer
    from tianshou_offline.algorithms import make_algorithm

    torch.set_num_threads(args.threads)
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = _pixel_file(directory, args.steps, seed=0)
    obs_space = gym.spaces.Box(0, 255, PIXELS, np.uint8)
    act_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    algos: dict[str, Any] = {}
    buffers: dict[str, Any] = {}
    anon: dict[str, float] = {}
    # pixels: the encoder scales them (x/255 - 0.5), no per-pixel normaliser (V-D4RL's)
    settings: dict[str, Any] = {"normalize_obs": False}
    warm: Any = make_algorithm("td3bc", obs_space, act_space, **settings)  # first-use allocations
    warm_buffer = load_buffer(path, memory="disk")
    with policy_within_training_step(warm.policy):
        warm.update(warm_buffer, args.batch)
    warm.dataset_for(warm_buffer).close()
    del warm, warm_buffer
    for side in ("disk", "ram"):  # disk first: the RAM side's tables would mask its figure
        torch.manual_seed(0)
        algo = make_algorithm("td3bc", obs_space, act_space, **settings)
        before = _status_kb("RssAnon") * 1024  # the model is built: data only from here
        buffers[side] = load_buffer(path, memory="disk" if side == "disk" else "ram")
        algo.process_buffer(buffers[side])
        algos[side] = algo
        anon[side] = _status_kb("RssAnon") * 1024 - before
    n = len(buffers["disk"])
    kinds = {s: type(a.dataset_for(buffers[s])).__name__ for s, a in algos.items()}

    def block(side: str, what: str) -> float:
        algo, buffer = algos[side], buffers[side]
        dataset = algo.dataset_for(buffer)
        if side == "disk":
            buffer.drop_cache()
        t0 = time.perf_counter()
        if what == "sample":
            for _ in range(args.batches):
                dataset.sample(args.batch)
        else:
            with policy_within_training_step(algo.policy):
                for _ in range(args.steps_per_block):
                    algo.update(buffer, args.batch)
        count = int(args.batches if what == "sample" else args.steps_per_block)
        rate = count / (time.perf_counter() - t0)
        close = getattr(dataset, "close", None)
        if callable(close):
            close()
        return rate

    sides = [f"{where} {what}" for what in ("sample", "step") for where in ("disk", "ram")]
    rates: dict[str, list[float]] = {s: [] for s in sides}
    for r in range(args.rounds):
        order = sides[r % len(sides):] + sides[: r % len(sides)]  # fmt: skip
        for side in order:
            where, what = side.split()
            rates[side].append(block(where, what))
            print(f"round {r} {side}: {rates[side][-1]:.2f}/s", flush=True)
    med = {s: float(np.median(v)) for s, v in rates.items()}
    ratio = {
        w: float(np.median([a / b for a, b in zip(rates[f"disk {w}"], rates[f"ram {w}"], strict=True)]))
        for w in ("sample", "step")
    }  # fmt: skip
    res = {
        "transitions": n,
        "obs_shape": list(PIXELS),
        "data_bytes": path.stat().st_size,
        "algorithm": "td3bc (encoder='auto': ConvEncoder per network, hidden (256, 256), "
        "normalize_obs=False)",
        "datasets": kinds,
        "batch": args.batch,
        "steps_per_block": args.steps_per_block,
        "batches_per_block": args.batches,
        "rounds": args.rounds,
        "per_second": rates,
        "median_per_second": med,
        "disk_over_ram": ratio,
        "anon_bytes": anon,
        "anon_bytes_per_transition": {s: v / n for s, v in anon.items()},
    }
    print(
        f"{n} transitions of {PIXELS} uint8 ({res['data_bytes'] / 1e6:.0f} MB): RAM added by "
        f"load + dataset: disk {anon['disk'] / 1e6:.1f} MB ({anon['disk'] / n:.0f} B/transition), "
        f"ram {anon['ram'] / 1e6:.1f} MB ({anon['ram'] / n:.0f} B/transition); disk/RAM: "
        f"sampling {ratio['sample']:.2f}, TD3+BC steps {ratio['step']:.2f}"
    )
    return res


def pixels_table(record: dict[str, Any]) -> str:
    """The continuous pixel row's table."""
    f = record["figures"]
    med = f["median_per_second"]
    lines = [
        "| continuous pixels | per second (median) | min–max over rounds | RAM added per transition |",
        "|---|---:|---:|---:|",
    ]
    for side, values in f["per_second"].items():
        where, what = side.split()
        unit = "batches" if what == "sample" else "TD3+BC steps"
        lines.append(
            f"| {where} {unit} | {med[side]:,.2f} | {min(values):,.2f}–{max(values):,.2f} | "
            f"{f['anon_bytes_per_transition'][where]:,.0f} B |"
        )
    c, h, w = f["obs_shape"]
    lines += [
        "",
        f"{f['transitions']:,} transitions of {c}×{h}×{w} uint8 images "
        f"({f['data_bytes'] / 1e6:,.0f} MB), TD3+BC with a convolutional encoder per network, "
        f"batch {f['batch']}; {f['rounds']} rounds of {f['steps_per_block']} steps / "
        f"{f['batches_per_block']} batches per side, the order rotated every round, the disk "
        f"side's blocks from a cold cache. Disk ÷ RAM (medians of per-round ratios): sampling "
        f"{f['disk_over_ram']['sample']:.2f}×, gradient steps {f['disk_over_ram']['step']:.2f}×. "
        f"RAM added: `RssAnon` grown by loading and building the dataset, model built "
        f"before ({f['datasets']['disk']}: {f['anon_bytes']['disk'] / 1e6:,.0f} MB vs "
        f"{f['datasets']['ram']}: {f['anon_bytes']['ram'] / 1e6:,.0f} MB).",
    ]
    return "\n".join(lines)


BENCHMARK = "out_of_core"


def io_table(record: dict[str, Any]) -> str:
    """The I/O-bound configuration's table: every side's batches/s (median and range over the
    rounds), reads/s and its ratio to the physical limit."""
    f = record["figures"]
    med = f["median_batches_per_s"]
    limit = f["limit"]
    batch = f["batch"]
    lines = [
        "| side | batches/s (median) | min–max over rounds | reads/s | ÷ disk limit | MB read per block |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for side, rates in f["batches_per_s"].items():
        ratio = float(
            np.median([a / b for a, b in zip(rates, f["batches_per_s"][limit], strict=True)])
        )
        lines.append(
            f"| {side}{' (the limit)' if side == limit else ''} | {med[side]:,.1f} | "
            f"{min(rates):,.0f}–{max(rates):,.0f} | {med[side] * batch:,.0f} | {ratio:.2f}× | "
            f"{np.median(f['storage_mb_per_block'][side]):,.0f} |"
        )
    ach = f["median_achieved_over_limit"]
    d_r = f["disk_over_ram"]
    cached = [c for side in f["cached_mb_at_block_start"] if side.split()[0] in ("disk", "pread")
              for c in f["cached_mb_at_block_start"][side] if c is not None]  # fmt: skip
    cold = f"at most {max(cached):.1f} MB of the shards cached at a block's start" if cached else ""
    lines += [
        "",
        f"{f['transitions']:,} transitions, {f['data_bytes'] / GB:.1f} GB in {f['shards']} "
        f"shards on a machine with {f['mem_total'] / GB:.1f} GB of RAM; blocks of "
        f"{f['batches_per_block']} mini-batches of {batch} ({f['reads_per_block']:,} reads of "
        f"{f['read_bytes_each'] / 1e3:.1f} kB: the 5 frames a transition's stack and next stack "
        f"cover), {len(f['orders'])} rounds in an order rotated every round; cold cache: "
        f"{f['cold_cache']} ({cold}). RAM side: the first {f['ram_transitions']:,} "
        f"transitions in memory. Ratios are medians of the per-round ratios; MB read from "
        f"storage per block by this process and its children (`/proc/self/io`).",
        "",
        f"Sampling from disk reaches **{ach['disk sample']:.2f}× the disk's own random-read "
        f"rate** for its pattern ({limit}) and {d_r['sample']:.2f}× sampling from RAM; with the "
        f"small network's gradient step on each batch, {ach['disk net']:.2f}× the limit and "
        f"{d_r['net']:.2f}× the same training from RAM.",
    ]
    return "\n".join(lines)


def table(records: Sequence[dict[str, Any]]) -> str:
    """The kept results' tables (the I/O-bound configuration; the training runs)."""
    parts = []
    for r in records:
        if r["name"].startswith("io-"):
            parts.append(io_table(r))
        elif r["name"].startswith("pixels-"):
            parts.append(pixels_table(r))
        else:
            f, st = r["figures"], r["settings"]
            parts.append(
                f"Training run: DiscreteCQL (Atari QR-DQN net, batch 32, {f['threads']} thread(s)) "
                f"on {f['transitions']:,} transitions, {f['data_bytes'] / GB:.1f} GB in "
                f"{f['shards']} shards (RAM {f['mem_total'] / GB:.1f} GB); the RAM side the first "
                f"{f['ram_transitions']:,} in memory; {st['rounds']} rounds of {st['block']} steps "
                f"per side, which side goes first alternating. {f['first_step_s']:.1f} s from "
                f"loading to the first gradient step; {f['disk_anon_peak_beyond_model'] / GB:.2f} "
                f"GB resident beyond the model (peak `RssAnon`, "
                f"{f['disk_bytes_per_transition']:.0f} B per transition); steps/s from disk "
                f"{f['disk_steps_per_s']:.1f} vs RAM {f['ram_steps_per_s']:.1f}: "
                f"**{f['ratio_disk_over_ram']:.2f}×** (target ≥ 0.8; per round "
                f"{min(f['ratios_per_round']):.2f}–{max(f['ratios_per_round']):.2f}), from a cold "
                f"cache {f['cold_steps_per_s']:.1f} ({f['cold_ratio_over_ram']:.2f}×); χ² of the "
                f"sampled positions over shards p = {f['chi2_pvalue_over_shards']:.2f} (a rotation "
                f"of {f['rotation_shards']} shard(s): p = {f['chi2_pvalue_rotation']:.2g})."
            )
    parts.append(results.provenance_line(records))
    return "\n\n".join(parts)


def readme_section() -> str:
    """The documentation's section: :func:`table` of every kept result."""
    return table(results.read_results(BENCHMARK))


def _keep_io(args: argparse.Namespace) -> int:
    load = results.LoadMonitor().start()
    res = run_io(args)
    load.stop()
    settings = {k: v for k, v in vars(args).items() if k not in ("dir", "cmd")}
    return report.keep(
        BENCHMARK, f"io-{res['transitions']}", settings=settings, figures=res,
        code=CODE, load=load, missed=[], check=False,
    )  # fmt: skip


def _keep_pixels(args: argparse.Namespace) -> int:
    load = results.LoadMonitor().start()
    res = run_pixels(args)
    load.stop()
    settings = {k: v for k, v in vars(args).items() if k not in ("dir", "cmd")}
    return report.keep(
        BENCHMARK, f"pixels-{res['transitions']}", settings=settings, figures=res,
        code=CODE, load=load, missed=[], check=False,
    )  # fmt: skip


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
    io = sub.add_parser("io", help="the I/O-bound configuration against the disk's own rate")
    io.add_argument("--dir", required=True)
    io.add_argument("--ram-steps", type=int, default=500_000)
    io.add_argument("--batches", type=int, default=300, help="mini-batches per block")
    io.add_argument("--batch", type=int, default=32)
    io.add_argument("--rounds", type=int, default=10, help="10: each side once in each place")
    io.add_argument("--threads", type=int, default=1)
    io.add_argument("--limit-depths", type=int, nargs="+", default=[1, 32, 128],
                    help="reads in flight of the disk-limit blocks (the best is the limit)")  # fmt: skip
    # no target: the figures say how close the loader comes to the disk's own rate
    px = sub.add_parser("pixels", help="continuous pixels: TD3+BC with a conv encoder, disk vs RAM")
    px.add_argument("--dir", required=True, help="where the pixel file is written (reused)")
    px.add_argument("--steps", type=int, default=10_000, help="transitions in the file")
    px.add_argument("--batch", type=int, default=32)
    px.add_argument("--steps-per-block", type=int, default=10)
    px.add_argument("--batches", type=int, default=200, help="mini-batches per sampling block")
    px.add_argument("--rounds", type=int, default=4)
    px.add_argument("--threads", type=int, default=1)
    t = sub.add_parser("table", help="print the kept results' tables")
    report.add_arguments(t, table=True)
    args = parser.parse_args(argv)
    if args.cmd == "table":
        return report.show_kept(args, BENCHMARK, lambda rs: table(rs), lambda rs: [])
    if args.cmd == "build":
        build(args)
        return 0
    if args.cmd == "io":
        return _keep_io(args)
    if args.cmd == "pixels":
        return _keep_pixels(args)
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
