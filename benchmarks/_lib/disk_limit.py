"""The disk's own random-read rate for the out-of-core sampler's access pattern
(``pread`` by threads, and ``fio`` where installed), the page cache of the shards evicted
and measured, and the bytes this process read from storage."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks._lib.atari_frames import FRAME


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
