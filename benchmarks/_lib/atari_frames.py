"""Synthetic compact Atari data for the out-of-core benchmarks: realistically compressible
84×84 frames, shards written with the project's ``BufferWriter(contiguous=True)``, and the
first shards that hold a number of transitions."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tianshou_offline import BufferWriter

FRAME = (84, 84)
STACK = 4
GB = 1e9


def atari_writer(path: Path, converter: str, **options: Any) -> BufferWriter:
    """A writer of compact synthetic Pong-shaped data: stacks of ``STACK`` 84×84 uint8 frames
    of which only the last is stored (``save_only_last_obs``), 6 actions, no ``obs_next``;
    ``options`` go to :class:`~tianshou_offline.BufferWriter` (``contiguous``, ``overwrite``)."""
    import gymnasium as gym

    from tianshou_offline import BufferWriter, Provenance

    return BufferWriter(
        path,
        observation_space=gym.spaces.Box(0, 255, (STACK, *FRAME), np.uint8),
        action_space=gym.spaces.Discrete(6),
        env_id="PongNoFrameskip-v4",
        provenance=Provenance(source="synthetic", converter=converter),
        store_obs_next=False,
        stack_num=STACK,
        save_only_last_obs=True,
        **options,
    )


def synthetic_steps(
    rows: np.ndarray, pool: np.ndarray, rng: np.random.Generator, episode_len: int
) -> dict[str, Any]:
    """The transitions at storage ``rows``: frames from ``pool``, uniform actions, rewards
    ±1 with probability 1% each (drawn from ``rng``, actions first), an episode ending every
    ``episode_len`` steps."""
    return {
        "obs": pool[rows % len(pool)],
        "act": rng.integers(0, 6, size=len(rows)),
        "rew": rng.choice([-1.0, 0.0, 1.0], size=len(rows), p=[0.01, 0.98, 0.01]),
        "terminated": (rows % episode_len) == episode_len - 1,
        "truncated": np.zeros(len(rows), bool),
    }


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
        with atari_writer(path, "benchmarks/out_of_core.py", contiguous=True) as writer:
            for s in range(first, last, chunk):
                rows = np.arange(s, min(last, s + chunk))
                writer.add_transitions(
                    **synthetic_steps(rows, pool, rng, args.episode_len),
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
