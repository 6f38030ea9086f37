"""The out-of-core benchmark's continuous pixel row (:mod:`benchmarks.out_of_core`
``pixels``): TD3+BC with its convolutional encoder from a disk-backed buffer and from RAM."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._lib.process_memory import status_kib

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
        before = status_kib("RssAnon") * 1024  # the model is built: data only from here
        buffers[side] = load_buffer(path, memory="disk" if side == "disk" else "ram")
        algo.process_buffer(buffers[side])
        algos[side] = algo
        anon[side] = status_kib("RssAnon") * 1024 - before
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
