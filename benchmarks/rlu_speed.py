#!/usr/bin/env python3
"""Speed and memory of the RL Unplugged Atari converter, against two references, in one run.

On one synthetic RL Unplugged-style shard (GZIP TFRecord of ``tf.train.Example`` records made
of real Atari frames from ale-py when installed, else of synthetic frames) this measures:

1. **decode bound**: one PNG decode per transition (the newest frame of each record),
   spread over all cores with a process pool (PNG bytes handed over in bulk, no parsing,
   no I/O) — what any exact converter storing one frame per step must at least do;
2. **converter**: :func:`tianshou_offline.converters.rl_unplugged.convert_shard` with all
   cores (read + CRC + parse + decode + verify every stack + write HDF5), its peak RSS
   (main process, and the largest worker) and the output size;
3. **per-record eager TensorFlow loop** (the approach of Tianshou's example script):
   ``TFRecordDataset`` → ``tf.io.parse_single_example`` → 8 ``tf.image.decode_png`` →
   per-record copy into preallocated ``obs``/``obs_next`` arrays.

It prints a table with transitions/s and the ratios converter/TF-loop and converter/decode
bound. Targets (``--check``: exit 1 when one is missed): the converter >= 100x the TF loop and
>= 50% of the decode bound, its peak RSS <= 2x the output file. Every run writes a result file
under ``benchmarks/results/rlu_speed/``; ``--table-only`` / ``--readme`` print / write the
documentation's table from the kept results. Usage::

    python -m benchmarks.rlu_speed [--transitions 50000] [--workers N] [--workdir DIR]
    python -m benchmarks.rlu_speed --table-only
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._lib import report, results
from benchmarks._lib.peers import child_env


def _frames(n: int, seed: int) -> tuple[list[np.ndarray], list[int], list[float], list[bool]]:
    """``n`` transitions of Atari frames: (frames incl. final ones, actions, rewards, ends)."""
    try:
        import ale_py
        import gymnasium as gym
        from gymnasium.wrappers import AtariPreprocessing
    except ImportError:  # synthetic frames: moving bars on noise
        rng = np.random.default_rng(seed)
        base = rng.integers(0, 40, (84, 84), dtype=np.uint8)
        frames = []
        for t in range(n + n // 200 + 2):
            f = base.copy()
            f[(t * 3) % 84, :] = 200
            f[:, (t * 5) % 84] = 120
            frames.append(f)
        return frames, [], [], []
    gym.register_envs(ale_py)
    env = gym.make("ALE/Breakout-v5", frameskip=1, repeat_action_probability=0.25)
    env = AtariPreprocessing(env, frame_skip=4, screen_size=84, grayscale_obs=True, noop_max=30)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    frames, acts, rews, ends = [obs], [], [], []
    steps = 0
    while steps < n:
        a = int(rng.integers(4))
        obs, r, term, trunc, _ = env.step(a)
        frames.append(obs)
        acts.append(a)
        rews.append(float(r))
        ends.append(bool(term or trunc))
        steps += 1
        if term or trunc:
            obs, _ = env.reset()
            frames.append(obs)
    env.close()
    return frames, acts, rews, ends


def make_shard(path: Path, n: int, seed: int = 0) -> int:
    """Write an RL Unplugged-style shard of ``n`` records with TensorFlow; returns ``n``."""
    import cv2
    import tensorflow as tf

    frames, acts, rews, ends = _frames(n, seed)
    if not acts:  # synthetic: episodes of 1000 steps
        acts = [t % 4 for t in range(n)]
        rews = [float(t % 7 == 0) for t in range(n)]
        ends = [(t + 1) % 1000 == 0 for t in range(n)]
    pngs = [cv2.imencode(".png", f)[1].tobytes() for f in frames]
    zero = cv2.imencode(".png", np.zeros((84, 84), np.uint8))[1].tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    fi = 0  # frame index of the current step's observation
    ep_start = 0
    ep_id = 0
    with tf.io.TFRecordWriter(str(path), options="GZIP") as w:
        for t in range(n):

            def stack(k: int, start: int = ep_start) -> list[bytes]:
                return [pngs[j] if j >= start else zero for j in range(k - 3, k + 1)]

            ex = tf.train.Example(features=tf.train.Features(feature={
                "o_t": tf.train.Feature(bytes_list=tf.train.BytesList(value=stack(fi))),
                "o_tp1": tf.train.Feature(bytes_list=tf.train.BytesList(value=stack(fi + 1))),
                "a_t": tf.train.Feature(int64_list=tf.train.Int64List(value=[acts[t]])),
                "a_tp1": tf.train.Feature(int64_list=tf.train.Int64List(value=[acts[min(t + 1, n - 1)]])),
                "r_t": tf.train.Feature(float_list=tf.train.FloatList(value=[rews[t]])),
                "d_t": tf.train.Feature(float_list=tf.train.FloatList(value=[0.0 if ends[t] else 1.0])),
                "episode_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[ep_id])),
                "episode_return": tf.train.Feature(float_list=tf.train.FloatList(value=[0.0])),
            }))  # fmt: skip
            w.write(ex.SerializeToString())
            fi += 1
            if ends[t]:
                fi += 1  # the reset frame starts the next episode
                ep_start = fi
                ep_id += 1
    return n


# --------------------------------------------------------------------------------------


def _decode_many(pngs: list[bytes]) -> int:
    from tianshou_offline.converters._tfrecord import png_decoder

    _, decode = png_decoder("auto")
    for p in pngs:
        decode(p)
    return len(pngs)


def _cpu() -> float:
    """CPU seconds (user + system) of this process and its reaped children."""
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def newest_pngs(path: Path) -> list[bytes]:
    """The PNG of the newest frame of every record (what the decode bound decodes)."""
    from tianshou_offline.converters._rlu_decode import parse_example
    from tianshou_offline.converters._tfrecord import iter_records

    return [
        parse_example(r, path=str(path), record=i, offset=0)[0][-1]
        for i, r in enumerate(iter_records(path))
    ]


def decode_bound(pngs: list[bytes], workers: int) -> tuple[float, float]:
    """(transitions/s, CPU s) of one PNG decode per transition on ``workers`` processes."""
    step = 2048
    parts = [pngs[i : i + step] for i in range(0, len(pngs), step)]
    cpu0 = _cpu()
    t = time.perf_counter()
    with cf.ProcessPoolExecutor(workers) as pool:
        done = sum(pool.map(_decode_many, parts))
    dt = time.perf_counter() - t
    return done / dt, _cpu() - cpu0


def run_converter(path: Path, out: Path, workers: int) -> tuple[float, int, float]:
    """(transitions/s, transitions, CPU s) of convert_shard, pool start-up included."""
    from tianshou_offline.converters.rl_unplugged import convert_shard

    cpu0 = _cpu()
    res = convert_shard(path, out, workers=workers, overwrite=True, num_actions=4)
    return res.transitions_per_second, res.num_transitions, _cpu() - cpu0


TF_LOOP = r"""
import sys, time, numpy as np, resource
import tensorflow as tf
tf.config.set_visible_devices([], "GPU")
path, limit = sys.argv[1], int(sys.argv[2])
spec = {
    "o_t": tf.io.FixedLenFeature([4], tf.string), "o_tp1": tf.io.FixedLenFeature([4], tf.string),
    "a_t": tf.io.FixedLenFeature([], tf.int64), "a_tp1": tf.io.FixedLenFeature([], tf.int64),
    "r_t": tf.io.FixedLenFeature([], tf.float32), "d_t": tf.io.FixedLenFeature([], tf.float32),
    "episode_id": tf.io.FixedLenFeature([], tf.int64),
    "episode_return": tf.io.FixedLenFeature([], tf.float32),
}
obs = np.empty((limit, 4, 84, 84), np.uint8); obs_next = np.empty_like(obs)
act = np.empty(limit, np.int64); rew = np.empty(limit, np.float32); done = np.empty(limit, bool)
ds = tf.data.TFRecordDataset(path, compression_type="GZIP").take(limit)
t = time.perf_counter(); n = 0
for raw in ds:
    d = tf.io.parse_single_example(raw, spec)
    o = tf.squeeze(tf.stack([tf.image.decode_png(d["o_t"][i], channels=1) for i in range(4)]))
    o1 = tf.squeeze(tf.stack([tf.image.decode_png(d["o_tp1"][i], channels=1) for i in range(4)]))
    obs[n] = o.numpy(); obs_next[n] = o1.numpy()
    act[n] = d["a_t"].numpy(); rew[n] = d["r_t"].numpy(); done[n] = d["d_t"].numpy() == 0
    n += 1
dt = time.perf_counter() - t
print(n / dt, n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def tf_loop(path: Path, limit: int) -> tuple[float, int, float]:
    """Per-record eager TensorFlow loop in a fresh process: (transitions/s, n, peak RSS MiB)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    out = subprocess.run(
        [sys.executable, "-c", TF_LOOP, str(path), str(limit)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    rate, n, rss = out.stdout.strip().splitlines()[-1].split()
    return float(rate), int(n), float(rss)


BENCHMARK = "rlu_speed"
CODE = ("benchmarks/rlu_speed.py", "tianshou_offline/converters", "tianshou_offline/data")
TF_TARGET = 100.0
"""The converter's rate at least this multiple of the per-record TF loop's."""
BOUND_TARGET = 0.5
"""The converter's rate at least this fraction of the decode bound."""
RSS_TARGET = 2.0
"""The converter's peak RSS (main process) at most this multiple of the output file."""


def missed_targets(records: Sequence[dict[str, Any]]) -> list[str]:
    """The targets each kept result misses."""
    out: list[str] = []
    for r in records:
        f = r["figures"]
        tf = f["converter_per_s"] / f["tf_loop_per_s"]
        bound = f["converter_per_s"] / f["decode_bound_per_s"]
        rss = f["peak_rss_main_mib"] / f["output_mib"]
        out += [m for ok, m in (
            (tf >= TF_TARGET, f"converter {tf:.1f}x the TF loop < {TF_TARGET:g}x"),
            (bound >= BOUND_TARGET, f"converter {bound:.0%} of the decode bound < {BOUND_TARGET:.0%}"),
            (rss <= RSS_TARGET, f"peak RSS {rss:.2f}x the file > {RSS_TARGET:g}x"),
        ) if not ok]  # fmt: skip
    return out


def _block(r: Mapping[str, Any]) -> str:
    """One kept result's table: transitions/s of the TF loop, the decode bound and the
    converter (and their CPU time per transition, which the machine's load does not
    change), and the converter's peak memory."""
    f, st = r["figures"], r["settings"]
    tf, conv, bound = f["tf_loop_per_s"], f["converter_per_s"], f["decode_bound_per_s"]
    us = {k: max(f[k])[1] * 1e6 / f["transitions"] for k in ("rounds", "decode_rounds")}
    w = st["workers"]
    rss = f["peak_rss_main_mib"] / f["output_mib"]
    return "\n".join([
        "| method | transitions/s | ÷ per-record TF loop | CPU µs / transition | target |",
        "|---|---:|---:|---:|---|",
        f"| per-record eager TensorFlow loop (Tianshou's example approach; "
        f"{f['tf_loop_records']:,} records, 1 process) | {tf:,.0f} | 1× | | |",
        f"| raw decode bound (one PNG decode per transition, {w} processes) | {bound:,.0f} "
        f"| {bound / tf:.0f}× | {us['decode_rounds']:.0f} | |",
        f"| `convert rl-unplugged-atari` ({w} workers) | {conv:,.0f} | {conv / tf:.0f}× "
        f"({conv / bound:.0%} of the decode bound) | {us['rounds']:.0f} | ≥ {TF_TARGET:g}× "
        f"{'✓' if conv / tf >= TF_TARGET else '**✗**'}, ≥ {BOUND_TARGET:.0%} of the bound "
        f"{'✓' if conv / bound >= BOUND_TARGET else '**✗**'} |",
        "",
        f"_One synthetic shard of {f['transitions']:,} transitions of real Breakout frames; "
        f"converter and decode bound: the best of {st['rounds']} interleaved rounds; the TF "
        f"loop runs once, after them, in its own process; peak RSS "
        f"{f['peak_rss_main_mib']:.0f} MiB (largest worker {f['peak_rss_worker_mib']:.0f} "
        f"MiB) for a {f['output_mib']:.0f} MiB output ({rss:.1f}×; target ≤ {RSS_TARGET:g}× "
        f"{'✓' if rss <= RSS_TARGET else '**✗**'}); {results.conditions(r)}._",
    ])  # fmt: skip


def table(records: Sequence[dict[str, Any]]) -> str:
    """The documentation's section: one :func:`_block` per kept result."""
    return report.per_result(records, _block)


def readme_section() -> str:
    """The documentation's section: :func:`table` of every kept result."""
    return table(results.read_results(BENCHMARK))


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--transitions", type=int, default=50_000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--rounds", type=int, default=3, help="best of N (interleaved) rounds")
    ap.add_argument(
        "--tf-records", type=int, default=None, help="records for the TF loop (default: all)"
    )
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--make-shard", type=Path, default=None, help=argparse.SUPPRESS)
    report.add_arguments(
        ap,
        target=f"converter >= {TF_TARGET:g}x the TF loop and >= {BOUND_TARGET:.0%} of the decode "
        f"bound; RSS <= {RSS_TARGET:g}x file",
        table=True,
    )
    args = ap.parse_args()
    if args.table_only or args.readme:
        return report.show_kept(args, BENCHMARK, table, missed_targets)
    if args.make_shard is not None:
        make_shard(args.make_shard, args.transitions)
        return 0
    work = args.workdir or Path(tempfile.mkdtemp(prefix="rlu_speed_"))
    shard = work / "Breakout" / f"synthetic-{args.transitions}"
    if not shard.exists():
        t = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.rlu_speed",
                "--make-shard",
                str(shard),
                "--transitions",
                str(args.transitions),
            ],
            check=True,
            env=child_env(),
        )
        print(
            f"made {shard} ({shard.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - t:.0f}s"
        )
    # The converter needs no TensorFlow: keep it out of this process (tianshou's tensorboard
    # import would otherwise load it when installed, adding ~1 GB of RSS to every process).
    modules: dict[str, Any] = sys.modules  # None blocks the import (Python's documented idiom)
    modules["tensorflow"] = None
    import psutil

    import tianshou_offline.converters.rl_unplugged  # noqa: F401  (imports before measuring)

    base_rss = psutil.Process().memory_info().rss / 2**20
    load = results.LoadMonitor().start()
    out = work / "out.hdf5"
    pngs = newest_pngs(shard)
    conv: list[tuple[float, float]] = []
    bound: list[tuple[float, float]] = []
    n = 0
    for _ in range(args.rounds):
        rate, n, cpu = run_converter(shard, out, args.workers)
        conv.append((rate, cpu))
        bound.append(decode_bound(pngs, args.workers))
    main_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    size = out.stat().st_size
    conv_rate, conv_cpu = max(conv)
    bound_rate, bound_cpu = max(bound)
    tf_rate, tf_n, tf_rss = tf_loop(shard, args.tf_records or n)
    us = 1e6 / n
    print()
    print(f"shard: {n} transitions (real Breakout frames), {shard.stat().st_size / 2**20:.1f} MiB "
          f"GZIP TFRecord; {args.workers} worker processes on {os.cpu_count()} cores; best of "
          f"{args.rounds} rounds; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'method':58s} {'transitions/s':>14s} {'CPU us/transition':>18s}")
    print(
        f"{'per-record eager TF loop (' + str(tf_n) + ' records, 1 process)':58s} {tf_rate:14,.0f}"
    )
    print(f"{'raw decode bound (1 PNG decode / transition, all cores)':58s} {bound_rate:14,.0f} "
          f"{bound_cpu * us:18.1f}")  # fmt: skip
    print(f"{'tianshou-offline convert_shard (all cores)':58s} {conv_rate:14,.0f} "
          f"{conv_cpu * us:18.1f}")  # fmt: skip
    print("all rounds (converter, decode bound):",
          ", ".join(f"{c:,.0f}/{b:,.0f}" for (c, _), (b, _) in zip(conv, bound, strict=True)))  # fmt: skip
    print()
    print(f"converter / TF loop      = {conv_rate / tf_rate:8.1f}x   (target >= 100x)")
    print(f"converter / decode bound = {conv_rate / bound_rate:8.1%}   (target >= 50%)"
          f"; by CPU time: {bound_cpu / conv_cpu:.1%}")  # fmt: skip
    print(f"output file {size / 2**20:.1f} MiB; peak RSS main {main_rss:.0f} MiB ({base_rss:.0f} "
          f"MiB after imports), largest worker {child_rss:.0f} MiB (pages shared with main "
          f"counted); main / file = {main_rss * 2**20 / size:.2f}x (target <= 2x); TF loop peak "
          f"RSS {tf_rss:.0f} MiB")  # fmt: skip
    load.stop()
    figures = {"transitions": n, "converter_per_s": conv_rate, "decode_bound_per_s": bound_rate,
               "tf_loop_per_s": tf_rate, "tf_loop_records": tf_n, "rounds": conv,
               "decode_rounds": bound, "output_mib": size / 2**20, "peak_rss_main_mib": main_rss,
               "peak_rss_worker_mib": child_rss, "tf_loop_peak_rss_mib": tf_rss}  # fmt: skip
    return report.keep(
        BENCHMARK, f"{args.transitions}", settings={k: v for k, v in vars(args).items()
        if k in ("transitions", "workers", "rounds", "tf_records")}, figures=figures, code=CODE,
        load=load, missed=missed_targets([{"figures": figures}]), check=args.check,
    )  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
