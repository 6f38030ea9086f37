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
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks._lib import report, results
from benchmarks._lib.atari_frames import GB, build
from benchmarks._lib.out_of_core_io import run_io
from benchmarks._lib.out_of_core_pixels import run_pixels
from benchmarks._lib.out_of_core_tables import BENCHMARK, table
from benchmarks._lib.out_of_core_training import run

CODE = ("benchmarks/out_of_core.py", "benchmarks/_lib/sides_discrete.py",
        "tianshou_offline/data", "tianshou_offline/algorithms", "tianshou_offline/converters")  # fmt: skip


def readme_section() -> str:
    """The documentation's section: :func:`~benchmarks._lib.out_of_core_tables.table` of every
    kept result."""
    return table(results.read_results(BENCHMARK))


def _keep(args: argparse.Namespace, measure: Callable[[argparse.Namespace], dict[str, Any]]) -> int:
    """Run ``measure`` (a configuration without a target) and keep its result, named by the
    command and the transitions it ran on."""
    load = results.LoadMonitor().start()
    res = measure(args)
    load.stop()
    settings = {k: v for k, v in vars(args).items() if k not in ("dir", "cmd")}
    return report.keep(
        BENCHMARK, f"{args.cmd}-{res['transitions']}", settings=settings, figures=res,
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
        return _keep(args, run_io)
    if args.cmd == "pixels":
        return _keep(args, run_pixels)
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
