#!/usr/bin/env python3
"""Resident memory of a 1M-step Atari buffer loaded for offline training.

Writes a synthetic compact buffer file (``--steps`` transitions, one 84×84 uint8 frame per
step, Tianshou's ``stack_num=4`` / ``save_only_last_obs`` settings, episodes of
``--episode-len`` steps) — the layout ``tianshou-offline record`` and the RL Unplugged
converter produce — then, in a fresh process per measurement:

- **ours**: ``load_buffer`` → ``DiscreteCQL.process_buffer`` (the device-resident
  :class:`~tianshou_offline.algorithms.FrameDataset`, sharing the frames with the buffer) →
  ``--updates`` gradient steps of the Atari QR-DQN net, batch 32;
- **Tianshou** (``--tianshou``): Tianshou 2.0.1's own ``ReplayBuffer.load_hdf5`` of the same
  file and ``--updates`` steps of its ``DiscreteCQL`` with the same network.

Reports the peak resident set size (``ru_maxrss``) and the RSS after each phase, next to
the frame bytes and to what holding stacked observations would take (4 frames per ``obs``;
8 with a stored stacked ``obs_next``). Target: ours ≤ 8 GB at 1M steps (``--check``: exit 1
when missed). Every run writes a result file under ``benchmarks/results/atari_memory/``;
``--table-only`` / ``--readme`` print / write the documentation's table from the kept results.

Usage: ``python -m benchmarks.atari_memory [--steps 1000000] [--workdir DIR] [--keep]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._lib import report, results
from benchmarks._lib.atari_frames import FRAME, GB, STACK, atari_writer, synthetic_steps
from benchmarks._lib.peers import child_env


def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def write_file(path: Path, steps: int, episode_len: int, seed: int = 0) -> float:
    """Write the synthetic compact buffer; returns seconds."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 255, size=(4096, *FRAME), dtype=np.uint8)  # content is irrelevant
    chunk = 16_384
    start = time.perf_counter()
    with (
        atari_writer(path, "benchmarks/atari_memory.py", overwrite=True) as writer,
        tqdm(total=steps, unit="step", desc="writing", file=sys.stderr) as bar,
    ):
        for s in range(0, steps, chunk):
            n = min(chunk, steps - s)
            writer.add_transitions(**synthetic_steps(np.arange(s, s + n), pool, rng, episode_len))
            bar.update(n)
    return time.perf_counter() - start


def measure(
    path: str, implementation: str, updates: int, threads: int, tensorflow: bool
) -> dict[str, Any]:
    """Runs in a fresh process: load, prepare, train; returns RSS figures in bytes."""
    if not tensorflow:
        # as examples/atari/_no_tensorflow.py: TensorBoard would import TensorFlow if it is
        # installed (~0.8 GB); training does not need it
        import types

        sys.modules.setdefault(
            "tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf")
        )
    import torch

    torch.set_num_threads(threads)
    import tianshou  # noqa: F401  (imports counted in the baseline)
    from tianshou.utils.torch_utils import policy_within_training_step

    from benchmarks._lib.sides_discrete import ATARI, build_ours, build_tianshou

    out: dict[str, Any] = {
        "implementation": implementation,
        "rss_start": rss_bytes(),
        "tensorflow_imported": "tensorflow" in sys.modules,
    }
    t0 = time.perf_counter()
    if implementation == "ours":
        from tianshou_offline import load_buffer

        buffer = load_buffer(path, include_info=False)
        algorithm = build_ours("cql", ATARI)
    else:
        from tianshou.data import ReplayBuffer

        buffer = ReplayBuffer.load_hdf5(path)
        algorithm = build_tianshou("cql", ATARI)
    out["load_s"] = time.perf_counter() - t0
    out["rss_after_load"] = rss_bytes()
    out["transitions"] = len(buffer)
    out["frames_bytes"] = int(np.asarray(buffer._meta.obs).nbytes)
    t0 = time.perf_counter()
    buffer = algorithm.process_buffer(buffer)
    out["prepare_s"] = time.perf_counter() - t0
    out["rss_after_prepare"] = rss_bytes()
    t0 = time.perf_counter()
    with policy_within_training_step(algorithm.policy):
        for _ in range(updates):
            algorithm.update(buffer=buffer, sample_size=32)
    out["train_s"] = time.perf_counter() - t0
    out["rss_after_train"] = rss_bytes()
    out["peak_rss"] = peak_rss_bytes()
    return out


def _child(args: argparse.Namespace, implementation: str) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.atari_memory",
        "--child",
        implementation,
        "--file",
        str(args.file),
        "--updates",
        str(args.updates),
        "--threads",
        str(args.threads),
        *(["--with-tensorflow"] if args.with_tensorflow else []),
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, env=child_env())
    if p.returncode != 0:
        raise RuntimeError(
            f"{implementation} measurement failed:\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}"
        )
    line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")][-1]
    result: dict[str, Any] = json.loads(line[len("RESULT ") :])
    return result


def ours_tf(runs: list[dict[str, Any]]) -> bool:
    return bool(runs[0].get("tensorflow_imported"))


BENCHMARK = "atari_memory"
CODE = ("benchmarks/atari_memory.py", "benchmarks/_lib/sides_discrete.py",
        "tianshou_offline/data", "tianshou_offline/algorithms")  # fmt: skip
TARGET_GB = 8.0
"""Our peak resident set at 1M steps at most this (checked for runs of >= 1M steps)."""
NAMES = {
    "ours": "tianshou-offline (`load_buffer` + `FrameDataset`)",
    "tianshou": "Tianshou 2.0.1 (`ReplayBuffer.load_hdf5` of the same file)",
}


def missed_targets(records: Sequence[dict[str, Any]]) -> list[str]:
    """The kept runs of >= 1M steps whose peak RSS (ours) is over the target."""
    return [f"peak RSS {r['figures']['runs'][0]['peak_rss'] / GB:.2f} GB > {TARGET_GB:g} GB at "
            f"{r['settings']['steps']:,} steps" for r in records
            if r["settings"]["steps"] >= 1_000_000
            and r["figures"]["runs"][0]["peak_rss"] > TARGET_GB * GB]  # fmt: skip


def _block(r: Mapping[str, Any]) -> str:
    """One kept result's table: each implementation's resident set after each phase."""
    runs, st = r["figures"]["runs"], r["settings"]
    frames = runs[0]["frames_bytes"]
    lines = ["| | RSS after imports | after load | after `process_buffer` | after training "
             "| peak | load s |", "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for run in runs:
        peak = f"{run['peak_rss'] / GB:.2f} GB"
        lines.append(
            f"| {NAMES[run['implementation']]} | {run['rss_start'] / GB:.2f} GB "
            f"| {run['rss_after_load'] / GB:.2f} GB | {run['rss_after_prepare'] / GB:.2f} GB "
            f"| {run['rss_after_train'] / GB:.2f} GB "
            f"| {'**' + peak + '**' if run['implementation'] == 'ours' else peak} "
            f"| {run['load_s']:.0f} |"
        )
    lines += ["", f"_A synthetic {runs[0]['transitions']:,}-step compact file "
              f"({frames / GB:.2f} GB of 84×84 frames; stacked observations would take "
              f"{STACK * frames / GB:.0f} GB, {2 * STACK * frames / GB:.0f} GB with a stacked "
              f"`obs_next`), loaded and trained on ({st['updates']} CQL steps, batch 32, "
              f"{st['threads']} thread) in a fresh process each; TensorFlow imported: "
              f"{'yes' if ours_tf(runs) else 'no'}; target ≤ {TARGET_GB:g} GB at 1M steps; "
              f"{results.conditions(r)}._"]  # fmt: skip
    return "\n".join(lines)


def readme_section() -> str:
    """The documentation's section: one :func:`_block` per kept result."""
    return report.kept_section(BENCHMARK, _block)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1_000_000)
    p.add_argument("--episode-len", type=int, default=2000)
    p.add_argument("--updates", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workdir", type=str, default="/tmp/tianshou_offline_atari_memory")
    p.add_argument("--keep", action="store_true", help="keep (and reuse) the synthetic file")
    p.add_argument("--tianshou", action="store_true", help="also measure Tianshou's load_hdf5")
    p.add_argument(
        "--with-tensorflow",
        action="store_true",
        help="let TensorBoard import TensorFlow if installed (adds ~0.8 GB to every process)",
    )
    p.add_argument("--file", type=str, default=None, help=argparse.SUPPRESS)
    p.add_argument("--child", type=str, default=None, help=argparse.SUPPRESS)
    report.add_arguments(
        p, target=f"ours: peak RSS <= {TARGET_GB:g} GB at 1M steps (checked at >= 1M)", table=True
    )
    args = p.parse_args(argv)
    if args.table_only or args.readme:
        return report.show_blocks(args, BENCHMARK, _block, missed_targets)
    if args.child:
        result = measure(args.file, args.child, args.updates, args.threads, args.with_tensorflow)
        print("RESULT " + json.dumps(result))
        return 0
    load = results.LoadMonitor().start()

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    args.file = work / f"synthetic_atari_{args.steps}.hdf5"
    if not args.file.exists():
        seconds = write_file(args.file, args.steps, args.episode_len)
        print(f"wrote {args.file} ({args.file.stat().st_size / GB:.2f} GB) in {seconds:.0f} s")
    runs = []
    try:
        for impl in ["ours"] + (["tianshou"] if args.tianshou else []):
            runs.append(_child(args, impl))
    finally:
        if not args.keep:
            args.file.unlink(missing_ok=True)
    load.stop()
    frames = runs[0]["frames_bytes"]
    n = runs[0]["transitions"]
    print()
    print(f"{n:,} transitions, frames {FRAME[0]}x{FRAME[1]} uint8: {frames / GB:.2f} GB of frames")
    print(
        f"stacked obs in memory would take {STACK * frames / GB:.1f} GB "
        f"({2 * STACK * frames / GB:.1f} GB with a stacked obs_next)"
    )
    print()
    print(
        "| implementation | RSS after imports | after load | after process_buffer "
        "| after training | peak RSS | load s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        name = "tianshou-offline" if r["implementation"] == "ours" else "Tianshou 2.0.1 load_hdf5"
        print(
            f"| {name} | {r['rss_start'] / GB:.2f} GB | {r['rss_after_load'] / GB:.2f} GB "
            f"| {r['rss_after_prepare'] / GB:.2f} GB "
            f"| {r['rss_after_train'] / GB:.2f} GB | {r['peak_rss'] / GB:.2f} GB | {r['load_s']:.0f} |"
        )
    print(f"(TensorFlow imported: {ours_tf(runs)}; baseline = torch + tianshou imports)")
    ours = runs[0]
    verdict = "OK" if ours["peak_rss"] <= 8 * GB else "OVER"
    print(f"\ntarget: peak RSS <= 8 GB at 1M steps -> {ours['peak_rss'] / GB:.2f} GB ({verdict})")
    settings = {k: v for k, v in vars(args).items() if k in ("steps", "episode_len", "updates",
                "threads", "tianshou", "with_tensorflow")}  # fmt: skip
    return report.keep(BENCHMARK, f"{args.steps}", settings=settings, figures={"runs": runs},
                       code=CODE, load=load, missed=missed_targets([{"settings": settings,
                       "figures": {"runs": runs}}]), check=args.check)  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
