"""Fuzzing the readers with hostile input: seed files, mutants, and a pool of worker processes
that runs every entry point on every mutant under a time and a memory limit.

Used by ``tests/test_fuzz.py`` (a few hundred mutants) and ``python -m benchmarks.fuzz`` (10,000+).

- **Seeds** (:func:`make_seeds`): small valid files written by the package's own writers
  (``BufferWriter``, ``EpisodeRecorder``, the RL Unplugged converter), by Tianshou
  (``ReplayBuffer.save_hdf5``, ``VectorReplayBuffer.save_hdf5``), a D4RL-layout file, a
  Minari dataset written by Minari (``create_dataset_from_buffers``) and an RL Unplugged
  TFRecord shard (GZIP; framing and ``tf.train.Example`` records as TensorFlow writes them,
  built without TensorFlow).
- **Mutants** (:func:`make_mutant`): byte flips, overwritten ranges and truncations (biased
  towards HDF5 metadata, away from the data blocks), and semantic mutations through h5py:
  deleted, renamed and swapped datasets, groups and attributes; wrong dtypes (object, string,
  compound) and shapes (0-d, empty, null dataspace, extra axes); mismatched lengths; declared
  extents far beyond the stored data; NaN/inf; negative and huge indices; corrupt JSON
  attributes; unknown schema versions; dangling links. TFRecord shards get flipped CRCs,
  garbage and huge length fields (with valid CRCs), garbage payloads, malformed Examples,
  bad PNGs, truncation and corrupt gzip streams; Minari datasets get mutated
  ``main_data.hdf5`` and ``metadata.json``.
- **Entry points** (:data:`ENTRY_POINTS`): ``load_buffer``, the ``inspect``, ``convert
  tianshou`` and ``convert d4rl`` commands, the RL Unplugged loader (``load_rl_unplugged``)
  and converter (``convert_shard``) and the Minari converter (``convert_minari``), each with
  the option sets of :data:`OPTIONS` (every option of every entry point, ``inspect --plot``
  included).
- **Outcomes**: ``ok`` (loaded, and the buffer passes :func:`check_buffer`; a command exits
  0 and its output loads and passes), ``typed`` (a ``TianshouOfflineError``; a command exits 2
  with exactly one ``error:`` line and no traceback), and the failures ``untyped`` (any other
  exception), ``inconsistent`` (loaded, but :func:`check_buffer` finds a broken invariant),
  ``timeout``, ``memory`` (an allocation failed under the memory limit) and ``crash`` (the
  worker process died).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import logging
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import random
import resource
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# TensorBoard (imported by Tianshou) must not import TensorFlow: 10 s and 500 MB per process
import tianshou_offline.cli._no_tensorflow  # noqa: F401  (first)

os.environ.setdefault("OMP_NUM_THREADS", "1")

import h5py
import numpy as np

OUTCOMES = ("typed", "ok", "untyped", "inconsistent", "timeout", "memory", "crash")
FAILURES = ("untyped", "inconsistent", "timeout", "memory", "crash")

H5_KINDS = (
    "writer", "writer_dict", "contiguous", "recorder", "recorder_killed", "tianshou", "tianshou_vector", "d4rl",
    "framestack",
)  # fmt: skip
SEED_ENTRY_POINTS: dict[str, tuple[str, ...]] = {
    **{k: ("load_buffer", "inspect", "convert_tianshou") for k in H5_KINDS},
    "d4rl": ("load_buffer", "inspect", "convert_tianshou", "convert_d4rl"),
    "contiguous": ("load_buffer", "load_disk", "inspect", "convert_tianshou"),
    "framestack": ("load_buffer", "inspect", "load_rl_unplugged"),
    "minari": ("convert_minari",),
    "tfrecord": ("convert_shard",),
    "large_writer": ("load_buffer", "inspect", "convert_tianshou"),
    "large_frames": ("load_buffer", "load_disk", "inspect", "convert_tianshou"),
}
"""Which entry points read the mutants of each kind of seed."""


@dataclass(frozen=True)
class Seed:
    name: str
    """the seed's kind (a key of :data:`SEED_ENTRY_POINTS`)."""
    path: Path
    """the file (a directory for a Minari dataset)."""


# --------------------------------------------------------------------------------------
# seeds
# --------------------------------------------------------------------------------------


def _episodes(rng: np.random.Generator, lengths: Sequence[int], obs_dim: int = 3) -> list[Any]:
    out = []
    for e, t in enumerate(lengths):
        term = np.zeros(t, bool)
        trunc = np.zeros(t, bool)
        if e < len(lengths) - 1:
            (term if e % 2 == 0 else trunc)[-1] = True
        obs = rng.normal(size=(t + 1, obs_dim)).astype(np.float32)
        out.append(
            {
                "obs": obs[:-1],
                "obs_next": obs[1:],
                "act": rng.integers(0, 4, size=t),
                "rew": rng.normal(size=t).astype(np.float32),
                "terminated": term,
                "truncated": trunc,
            }
        )
    return out


def _seed_writer(path: Path, *, dict_obs: bool, contiguous: bool = False) -> None:
    import gymnasium as gym

    from tianshou_offline.data.format import Provenance
    from tianshou_offline.data.writer import BufferWriter

    rng = np.random.default_rng(1)
    if dict_obs:
        obs_space: Any = gym.spaces.Dict(
            {"pos": gym.spaces.Box(-1.0, 1.0, (3,), np.float32), "id": gym.spaces.Discrete(5)}
        )
    else:
        obs_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    with BufferWriter(
        path,
        observation_space=obs_space,
        action_space=gym.spaces.Discrete(4),
        env_id="CartPole-v1",
        provenance=Provenance(source="buffer", dataset_id="fuzz", extra={"seed": 1}),
        compression="gzip" if dict_obs else None,
        store_obs_next=not dict_obs,
        chunk_bytes=256,
        contiguous=contiguous,
    ) as w:
        for e, ep in enumerate(_episodes(rng, [5, 7, 4, 6])):
            t = len(ep["rew"])
            obs: Any = ep["obs"]
            if dict_obs:
                obs = {"pos": ep["obs"], "id": rng.integers(0, 5, size=t)}
            w.add_episode(
                obs=obs,
                act=ep["act"],
                rew=ep["rew"],
                terminated=ep["terminated"],
                truncated=ep["truncated"],
                obs_next=None if dict_obs else ep["obs_next"],
                info={"step": np.arange(t), "extra": {"x": rng.normal(size=(t, 2))}},
                metadata={"seed": 100 + e, "label": "fuzz", "expert": e % 2 == 0},
            )


def _seed_recorder(path: Path) -> None:
    import gymnasium as gym

    from tianshou_offline.recording.recorder import EpisodeRecorder

    env = EpisodeRecorder(
        gym.make("CartPole-v1", max_episode_steps=12),
        path,
        episode_metadata=lambda ep: {"ret": ep.episode_return},
    )
    rng = np.random.default_rng(2)
    for e in range(3):
        env.reset(seed=e)
        done = False
        while not done:
            _, _, te, tr, _ = env.step(int(rng.integers(2)))
            done = te or tr
    env.close()


def _seed_recorder_killed(path: Path) -> None:
    """A recorder killed in its third episode (the file stays marked open for SWMR writing;
    readers see the two committed episodes)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child records, then dies without closing
        try:
            import gymnasium as gym

            from tianshou_offline.recording.recorder import EpisodeRecorder

            env = EpisodeRecorder(gym.make("CartPole-v1", max_episode_steps=9), path)
            for e in range(3):
                env.reset(seed=e)
                for t in range(9):
                    _, _, te, tr, _ = env.step(t % 2)
                    if e == 2 and t == 4:
                        os._exit(0)
                    if te or tr:
                        break
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    if status != 0 or not path.exists():
        raise RuntimeError(f"the killed recorder did not leave {path} (status {status})")


def _seed_tianshou(path: Path, *, vector: bool) -> None:
    from tianshou.data import Batch, ReplayBuffer, VectorReplayBuffer

    rng = np.random.default_rng(3)
    if vector:
        from tianshou.data.buffer.manager import ReplayBufferManager

        # its __init__ warms up numba kernels (15 s of compilation) that adding and saving
        # do not use
        manager: Any = ReplayBufferManager  # a method replaced for the block
        compile_, manager._compile = manager._compile, lambda self: None
        try:
            vb = VectorReplayBuffer(24, 3)
        finally:
            manager._compile = compile_
        for t in range(11):  # sub-buffers of 8 wrap around
            vb.add(
                Batch(
                    obs=rng.normal(size=(3, 2)),
                    act=rng.integers(0, 3, size=3),
                    rew=rng.normal(size=3),
                    terminated=np.array([t % 4 == 3, t % 5 == 4, False]),
                    truncated=np.zeros(3, bool),
                    obs_next=rng.normal(size=(3, 2)),
                    info=Batch(),
                ),
                buffer_ids=[0, 1, 2],
            )
        vb.save_hdf5(str(path))
        return
    buf = ReplayBuffer(16)
    for ep in _episodes(rng, [6, 5, 9]):  # 20 transitions: the circular buffer wraps
        for t in range(len(ep["rew"])):
            buf.add(
                Batch(
                    obs=ep["obs"][t],
                    act=ep["act"][t],
                    rew=ep["rew"][t],
                    terminated=ep["terminated"][t],
                    truncated=ep["truncated"][t],
                    obs_next=ep["obs_next"][t],
                    info=Batch(step=np.int64(t)),
                )
            )
    buf.save_hdf5(str(path))


def _seed_d4rl(path: Path) -> None:
    rng = np.random.default_rng(4)
    n = 40
    with h5py.File(path, "w") as f:
        f["observations"] = rng.normal(size=(n, 3)).astype(np.float32)
        f["actions"] = rng.uniform(-1, 1, size=(n, 2)).astype(np.float32)
        f["rewards"] = rng.normal(size=n).astype(np.float32)
        term = np.zeros(n, bool)
        term[[9, 25]] = True
        tout = np.zeros(n, bool)
        tout[[17, 33]] = True
        f["terminals"] = term
        f["timeouts"] = tout
        f["infos/qpos"] = rng.normal(size=(n, 2))
        f["infos/goal"] = rng.integers(0, 3, size=n)
        f["metadata/algorithm"] = "SAC"
        f["metadata/policy/fc0/weight"] = rng.normal(size=(8, 3)).astype(np.float32)
        f["metadata"].attrs["seed"] = 7


def _png(img: np.ndarray) -> bytes:
    from PIL import Image

    bio = io.BytesIO()
    Image.fromarray(img, mode="L").save(bio, format="PNG")
    return bio.getvalue()


def rlu_records(
    n_episodes: int = 3, *, length: int = 7, frame: int = 12, seed: int = 5
) -> list[bytes]:
    """``tf.train.Example`` records of RL Unplugged Atari episodes (tests/helpers/rlu.py's
    features; zero padding before an episode's first frame), without TensorFlow."""
    from tianshou_offline.converters._tfrecord import example_class

    example = example_class()
    rng = np.random.default_rng(seed)
    zeros = _png(np.zeros((frame, frame), np.uint8))
    recs: list[bytes] = []
    for e in range(n_episodes):
        frames = [
            _png(rng.integers(0, 255, (frame, frame), dtype=np.uint8)) for _ in range(length + 1)
        ]
        acts = rng.integers(0, 4, size=length)

        def stack(t: int, frames: list[bytes] = frames) -> list[bytes]:
            return [frames[k] if k >= 0 else zeros for k in range(t - 3, t + 1)]

        for t in range(length):
            ex = example()
            feats = ex.features.feature
            feats["o_t"].bytes_list.value.extend(stack(t))
            feats["o_tp1"].bytes_list.value.extend(stack(t + 1))
            feats["a_t"].int64_list.value.append(int(acts[t]))
            feats["a_tp1"].int64_list.value.append(int(acts[t + 1]) if t + 1 < length else 0)
            feats["r_t"].float_list.value.append(float(rng.normal()))
            terminal = t == length - 1 and e % 2 == 0
            feats["d_t"].float_list.value.append(0.0 if terminal else 1.0)
            feats["episode_id"].int64_list.value.append(e)
            feats["episode_return"].float_list.value.append(1.5)
            recs.append(ex.SerializeToString())
    return recs


def _masked_crc(data: bytes) -> int:
    import crc32c

    c = crc32c.crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame_record(payload: bytes, *, length: int | None = None) -> bytes:
    """One TFRecord record: length, masked CRC32C of the length, payload, masked CRC32C of the
    payload (``length`` overrides the length field; its CRC still matches it)."""
    head = struct.pack("<Q", len(payload) if length is None else length)
    return (
        head
        + struct.pack("<I", _masked_crc(head))
        + payload
        + struct.pack("<I", _masked_crc(payload))
    )


def write_tfrecord(path: Path, records: Sequence[bytes], *, compress: bool = True) -> Path:
    stream = b"".join(frame_record(r) for r in records)
    path.write_bytes(gzip.compress(stream, mtime=0) if compress else stream)
    return path


def _seed_minari(root: Path) -> Path:
    """A Minari dataset (HDF5 storage) written by Minari (``create_dataset_from_buffers``:
    episodes of 5, 7 and 3 steps, Box observations and actions); returns its data directory."""
    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    obs_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    act_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    rng = np.random.default_rng(0)
    episodes = []
    for i, t in enumerate((5, 7, 3)):
        term, trunc = np.zeros(t, bool), np.zeros(t, bool)
        if i < 2:  # the last episode ends with neither flag (cut)
            (term if i == 0 else trunc)[-1] = True
        episodes.append(EpisodeBuffer(
            id=i, seed=1000 + i, observations=rng.uniform(-1, 1, (t + 1, 4)).astype(np.float32),
            actions=rng.uniform(-1, 1, (t, 2)).astype(np.float32), rewards=rng.normal(size=t),
            terminations=term, truncations=trunc,
        ))  # fmt: skip
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            minari.create_dataset_from_buffers(
                "fuzz/box-v0", episodes, observation_space=obs_space, action_space=act_space,
                data_format="hdf5", algorithm_name="random", author="fuzz",
                author_email="fuzz@example.com", code_permalink="https://example.com/code",
                description="fuzz seed",
            )  # fmt: skip
    finally:
        if old is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = old
    return root / "fuzz" / "box-v0" / "data"


def make_seeds(root: Path) -> list[Seed]:
    """Write the seed files under ``root``; every one of them loads and converts cleanly."""
    from tianshou_offline.converters.rl_unplugged import convert_shard

    root.mkdir(parents=True, exist_ok=True)
    seeds: list[Seed] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _seed_writer(root / "writer.hdf5", dict_obs=False)
        seeds.append(Seed("writer", root / "writer.hdf5"))
        _seed_writer(root / "writer_dict.hdf5", dict_obs=True)
        seeds.append(Seed("writer_dict", root / "writer_dict.hdf5"))
        _seed_writer(root / "contiguous.hdf5", dict_obs=False, contiguous=True)
        seeds.append(Seed("contiguous", root / "contiguous.hdf5"))
        _seed_recorder(root / "recorder.hdf5")
        seeds.append(Seed("recorder", root / "recorder.hdf5"))
        _seed_recorder_killed(root / "recorder_killed.hdf5")
        seeds.append(Seed("recorder_killed", root / "recorder_killed.hdf5"))
        _seed_tianshou(root / "tianshou.hdf5", vector=False)
        seeds.append(Seed("tianshou", root / "tianshou.hdf5"))
        _seed_tianshou(root / "tianshou_vector.hdf5", vector=True)
        seeds.append(Seed("tianshou_vector", root / "tianshou_vector.hdf5"))
        _seed_d4rl(root / "d4rl.hdf5")
        seeds.append(Seed("d4rl", root / "d4rl.hdf5"))
        (root / "Pong").mkdir(exist_ok=True)
        shard = write_tfrecord(root / "Pong" / "shard.tfrecord", rlu_records())
        seeds.append(Seed("tfrecord", shard))
        convert_shard(shard, root / "framestack.hdf5", task="Pong", workers=1, num_actions=6)
        seeds.append(Seed("framestack", root / "framestack.hdf5"))
        seeds.append(Seed("minari", _seed_minari(root / "minari")))
    return seeds


def make_large_seeds(root: Path, megabytes: int) -> list[Seed]:
    """Two seeds of about ``megabytes`` MB each, written at run time (never committed), so
    that costs growing with the file's size show: ``large_writer`` (vector observations with
    ``obs_next``, episodes of 20–80 steps: a long episode table) and ``large_frames`` (84×84
    uint8 frames, ``stack_num=4``, one frame per step, contiguous: the disk-backed loader
    maps it; files over 64 MiB are scanned in their first and last 8 MiB only)."""
    import gymnasium as gym

    from tianshou_offline.data.format import Provenance
    from tianshou_offline.data.writer import BufferWriter

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    seeds = []
    path = root / "large_writer.hdf5"
    per_step = 2 * 17 * 4 + 8 + 4 + 3  # obs, obs_next, act, rew, flags
    steps = megabytes * 10**6 // per_step
    with BufferWriter(
        path,
        observation_space=gym.spaces.Box(-np.inf, np.inf, (17,), np.float32),
        action_space=gym.spaces.Discrete(6),
        provenance=Provenance(source="buffer", dataset_id="fuzz-large"),
    ) as w:
        done = 0
        while done < steps:
            t = int(rng.integers(20, 81))
            obs = rng.normal(size=(t + 1, 17)).astype(np.float32)
            w.add_episode(obs=obs[:-1], act=rng.integers(0, 6, size=t),
                          rew=rng.normal(size=t).astype(np.float32),
                          terminated=np.arange(t) == t - 1, truncated=np.zeros(t, bool),
                          obs_next=obs[1:])  # fmt: skip
            done += t
    seeds.append(Seed("large_writer", path))
    path = root / "large_frames.hdf5"
    frames = megabytes * 10**6 // (84 * 84)
    with BufferWriter(
        path,
        observation_space=gym.spaces.Box(0, 255, (4, 84, 84), np.uint8),
        action_space=gym.spaces.Discrete(6),
        provenance=Provenance(source="buffer", dataset_id="fuzz-large-frames"),
        store_obs_next=False,
        stack_num=4,
        save_only_last_obs=True,
        contiguous=True,
    ) as w:
        for start in range(0, frames, 1000):
            t = min(1000, frames - start)
            w.add_episode(obs=rng.integers(0, 256, size=(t, 84, 84), dtype=np.uint8),
                          act=rng.integers(0, 6, size=t), rew=np.zeros(t, np.float32),
                          terminated=np.arange(t) == t - 1, truncated=np.zeros(t, bool))  # fmt: skip
    seeds.append(Seed("large_frames", path))
    return seeds


# --------------------------------------------------------------------------------------
# mutants
# --------------------------------------------------------------------------------------


def _data_regions(path: Path) -> list[tuple[int, int]]:
    """Byte ranges of the datasets' raw data (the rest of the file is HDF5 metadata)."""
    regions: list[tuple[int, int]] = []

    def visit(_: str, obj: Any) -> None:
        if not isinstance(obj, h5py.Dataset):
            return
        with contextlib.suppress(Exception):
            layout = obj.id.get_create_plist().get_layout()
            if layout == h5py.h5d.CONTIGUOUS:
                off = obj.id.get_offset()
                if off is not None:
                    regions.append((off, off + obj.id.get_storage_size()))
            elif layout == h5py.h5d.CHUNKED:
                for i in range(obj.id.get_num_chunks()):
                    info = obj.id.get_chunk_info(i)
                    regions.append((info.byte_offset, info.byte_offset + info.size))

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except Exception:
        return []
    return sorted(regions)


def _structural_position(rng: random.Random, size: int, regions: list[tuple[int, int]]) -> int:
    for _ in range(20):
        pos = rng.randrange(size)
        if not any(a <= pos < b for a, b in regions):
            return pos
    return rng.randrange(size)


def mutate_bytes(data: bytearray, rng: random.Random, regions: list[tuple[int, int]]) -> str:
    """One byte-level mutation of ``data`` in place; returns its description."""
    size = len(data)
    if size == 0:
        data.extend(b"\x00")
        return "grow empty file"
    pick = rng.random()
    structural = rng.random() < 0.8

    def pos() -> int:
        return _structural_position(rng, size, regions) if structural else rng.randrange(size)

    if pick < 0.45:
        k = rng.choice([1, 1, 2, 3, 4, 8, 16])
        where = []
        for _ in range(k):
            p = pos()
            data[p] ^= 1 << rng.randrange(8)
            where.append(p)
        return f"flip {k} bits at {where[:4]}"
    if pick < 0.65:
        p = pos()
        n = rng.choice([1, 2, 4, 8, 16, 64])
        value = rng.choice([b"\x00", b"\xff", None])
        chunk = bytes(rng.randrange(256) for _ in range(n)) if value is None else value * n
        data[p : p + n] = chunk[: max(0, min(n, size - p))]
        return f"overwrite {n} bytes at {p} with {'random' if value is None else value.hex()}"
    if pick < 0.85:
        cut = rng.choice([0, 8, 96, 512, size // 2, size - 1, rng.randrange(size), pos(), pos()])
        del data[cut:]
        return f"truncate to {cut} bytes"
    if pick < 0.93:
        p = pos()
        n = rng.choice([1, 8, 64])
        del data[p : p + n]
        return f"delete {n} bytes at {p}"
    junk = bytes(rng.randrange(256) for _ in range(rng.choice([1, 100, 5000])))
    data.extend(junk)
    return f"append {len(junk)} bytes"


_BIG_SPACE = json.dumps(
    {
        "type": "Box",
        "shape": [100000, 100000],
        "dtype": "<f4",
        "low": {"fill": 0},
        "high": {"fill": 1},
    }
)
_HOSTILE_ATTRS: list[Any] = [
    0, -1, 1, 2, 3, 2**31, 2**62, -(2**62), np.uint64(2**64 - 1), 1e308, float("nan"),
    float("inf"), -0.5, "", "abc", "{", "[]", "null", "1", "2", "-1", '{"type": "Box"}',
    _BIG_SPACE, "[" * 50000, b"\xff\xfe\xfa", np.array([1, 2, 3]), np.zeros(0),
    np.array([[1.5]]), True, False,
]  # fmt: skip
_IMPORTANT_ATTRS = (
    "format_version", "num_episodes", "num_transitions", "stack_num", "_size", "maxsize",
    "_insertion_idx", "buffer_num", "observation_space", "action_space", "provenance.extra",
    "version", "__data_type__", "save_only_last_obs", "_save_only_last_obs", "_save_obs_next",
    "_sample_avail", "obs_next_stored", "env_spec", "total_steps", "seed", "id",
)  # fmt: skip
_HOSTILE_JSON: list[Any] = [
    None, -1, 0, 10**30, -(10**30), 1e308, "x", "inf", [], {}, [1, 2], {"a": 1}, True, 2.5,
    [10**9, 10**9], "Box", "Discrete", "<U4", "|O", "<f4",
]  # fmt: skip


def _mutate_json(doc: Any, rng: random.Random) -> Any:
    """Replace one node of a JSON document with a hostile value."""
    if isinstance(doc, dict) and doc and rng.random() < 0.8:
        key = rng.choice(list(doc))
        if rng.random() < 0.15:
            doc.pop(key)
            return doc
        doc[key] = _mutate_json(doc[key], rng)
        return doc
    if isinstance(doc, list) and doc and rng.random() < 0.8:
        i = rng.randrange(len(doc))
        doc[i] = _mutate_json(doc[i], rng)
        return doc
    return rng.choice(_HOSTILE_JSON)


def _corrupt_text(text: str, rng: random.Random) -> str:
    pick = rng.random()
    if pick < 0.4:
        try:
            return json.dumps(_mutate_json(json.loads(text), rng))
        except (ValueError, RecursionError):
            pass
    if pick < 0.7 and text:
        cut = rng.randrange(len(text))
        return text[:cut]
    if text:
        i = rng.randrange(len(text))
        return text[:i] + rng.choice(['"', "{", "]", "9", "\\", "\x00", "é"]) + text[i + 1 :]
    return rng.choice(["{", "x"])


def _hostile_attr(old: Any, rng: random.Random) -> Any:
    if rng.random() < 0.4:
        text = old.decode(errors="replace") if isinstance(old, bytes) else old
        if isinstance(text, str) and text:
            return _corrupt_text(text, rng)
        if isinstance(old, int | np.integer) and not isinstance(old, bool | np.bool_):
            return rng.choice([int(old) + 1, int(old) - 1, -int(old), int(old) * 1000, 2**40])
    return rng.choice(_HOSTILE_ATTRS)


def _objects(f: h5py.File) -> list[str]:
    names: list[str] = []
    f.visit(names.append)
    return names


def _hostile_values(data: np.ndarray, rng: random.Random) -> np.ndarray:
    out = np.array(data, copy=True)
    if out.size == 0:
        return out
    flat = out.reshape(-1)
    k = rng.choice([1, 2, max(1, flat.size // 4)])
    idx = [rng.randrange(flat.size) for _ in range(k)]
    kind = out.dtype.kind
    if kind == "f":
        flat[idx] = rng.choice([np.nan, np.inf, -np.inf, 1e38, -1e38])
    elif kind in "iu":
        n = out.shape[0] if out.ndim else 1
        info = np.iinfo(out.dtype)
        choices = [-1, -(2**62), 2**62, n, n + 1, 2**31 - 1, 0, int(info.max), int(info.min)]
        flat[idx] = rng.choice([c for c in choices if info.min <= c <= info.max])
    elif kind == "b":
        flat[idx] = ~flat[idx]
    elif rng.random() < 0.5 and out.ndim:
        out = out[::-1].copy()
    return out


def _variant(data: Any, rng: random.Random) -> tuple[str, Any]:
    """A replacement for a dataset's value: ``(description, array | spec)``."""
    arr = np.asarray(data) if not isinstance(data, h5py.Empty) else np.zeros(0)
    if arr.dtype.kind == "O":
        arr = np.asarray([str(x) for x in arr.reshape(-1)], dtype=object)
    n = arr.shape[0] if arr.ndim else 1
    ops: list[tuple[str, Callable[[], Any]]] = [
        *[("values", lambda: _hostile_values(arr, rng))] * 5,
        ("dtype f8", lambda: arr.astype(np.float64) if arr.dtype.kind in "biuf" else arr),
        ("dtype i1", lambda: arr.astype(np.int8) if arr.dtype.kind in "biuf" else arr),
        ("dtype u8", lambda: np.abs(arr).astype(np.uint64) if arr.dtype.kind in "biuf" else arr),
        ("dtype bool", lambda: arr.astype(bool) if arr.dtype.kind in "biuf" else arr),
        ("dtype f2", lambda: arr.astype(np.float16) if arr.dtype.kind in "biuf" else arr),
        ("dtype S4", lambda: arr.astype("S4")),
        ("dtype vlen str", lambda: ("vlen", np.asarray([str(x) for x in arr.reshape(-1)], object))),
        ("dtype compound", lambda: ("compound", arr)),
        ("extra axis", lambda: arr[..., None]),
        ("extra axis x2", lambda: np.stack([arr, arr], axis=-1)),
        ("flatten", lambda: arr.reshape(-1)),
        ("first column", lambda: arr[:, 0] if arr.ndim >= 2 else arr.reshape(-1)[:1]),
        ("0-d", lambda: arr.reshape(-1)[0] if arr.size else np.int64(7)),
        ("empty", lambda: arr[:0]),
        ("null dataspace", lambda: ("empty", arr.dtype)),
        ("one row fewer", lambda: arr[:-1]),
        ("one row more", lambda: np.concatenate([arr, arr[:1]]) if arr.ndim else arr),
        ("half", lambda: arr[: n // 2]),
        ("doubled", lambda: np.concatenate([arr, arr]) if arr.ndim else arr),
        ("huge extent", lambda: ("huge", arr, rng.choice([2**20, 2**31, 2**40, 2**50]))),
        ("chunked gzip", lambda: ("gzip", arr)),
        ("reversed", lambda: arr[::-1].copy() if arr.ndim else arr),
        ("scalar 7", lambda: np.int64(7)),
    ]
    name, make = rng.choice(ops)
    return name, make()


def _write_variant(group: h5py.Group, key: str, value: Any, attrs: dict[str, Any]) -> None:
    if isinstance(value, tuple) and value and isinstance(value[0], str):
        tag = value[0]
        if tag == "vlen":
            ds = group.create_dataset(key, data=value[1], dtype=h5py.string_dtype())
        elif tag == "compound":
            arr = value[1]
            if arr.ndim == 0 or arr.dtype.kind not in "biuf":
                ds = group.create_dataset(key, data=arr)
            else:
                dt = np.dtype([("a", arr.dtype, arr.shape[1:]), ("b", np.int32)])
                rec = np.zeros(arr.shape[0], dtype=dt)
                rec["a"] = arr
                ds = group.create_dataset(key, data=rec)
        elif tag == "empty":
            dtype = value[1] if value[1].kind in "biufS" else np.dtype("f4")
            ds = group.create_dataset(key, data=h5py.Empty(dtype))
        elif tag == "huge":
            arr, rows = value[1], value[2]
            if arr.ndim == 0 or arr.dtype.kind not in "biufS" or arr.shape[0] == 0:
                ds = group.create_dataset(key, data=arr)
            else:
                ds = group.create_dataset(
                    key, data=arr, maxshape=(None, *arr.shape[1:]), chunks=(1, *arr.shape[1:])
                )
                ds.resize(rows, axis=0)
        elif tag == "gzip":
            arr = value[1]
            if arr.ndim == 0 or arr.dtype.kind == "O" or arr.size == 0:
                ds = group.create_dataset(key, data=arr)
            else:
                ds = group.create_dataset(key, data=arr, compression="gzip", chunks=True)
        else:  # pragma: no cover
            raise ValueError(tag)
    else:
        ds = group.create_dataset(key, data=value)
    for k, v in attrs.items():
        with contextlib.suppress(Exception):
            ds.attrs[k] = v


def mutate_h5(path: Path, rng: random.Random) -> str:
    """One semantic mutation of an HDF5 file through h5py; returns its description (a few
    tries: h5py refuses some values, e.g. strings with NUL characters)."""
    for _ in range(5):
        try:
            return _mutate_h5_once(path, rng)
        except Exception:
            continue
    return "no-op"


def _mutate_h5_once(path: Path, rng: random.Random, only_under: str | None = None) -> str:
    with h5py.File(path, "r+") as f:
        names = [n for n in _objects(f) if only_under is None or n.startswith(only_under)]
        holders = ["/", *names]
        pick = rng.random()
        if pick < 0.3 and names:  # replace a dataset's value
            datasets = [n for n in names if isinstance(f.get(n, getlink=False), h5py.Dataset)]
            if datasets:
                name = rng.choice(datasets)
                ds = f[name]
                attrs = dict(ds.attrs)
                data = ds[()]
                what, value = _variant(data, rng)
                parent, key = ds.parent, name.rsplit("/", 1)[-1]
                del parent[key]
                if rng.random() < 0.1:
                    attrs = {}
                _write_variant(parent, key, value, attrs)
                return f"{name}: {what}"
        if pick < 0.5:  # set an attribute to a hostile value
            holder = rng.choice(holders)
            obj = f[holder]
            keys = list(obj.attrs)
            if keys and rng.random() < 0.7:
                key = rng.choice(keys)
                old = obj.attrs[key]
            else:
                key, old = rng.choice(_IMPORTANT_ATTRS), None
            value = _hostile_attr(old, rng)
            obj.attrs[key] = value
            return f"{holder}@{key} = {str(value)[:40]!r}"
        if pick < 0.6:  # delete an attribute
            holder = rng.choice(holders)
            keys = list(f[holder].attrs)
            if keys:
                key = rng.choice(keys)
                del f[holder].attrs[key]
                return f"delete {holder}@{key}"
        if pick < 0.75 and names:  # delete an object
            name = rng.choice(names)
            if name in f:
                del f[name]
                return f"delete {name}"
        if pick < 0.85 and len(names) >= 2:  # rename or swap
            a, b = rng.sample(names, 2)
            if a in f and b in f and not b.startswith(a + "/") and not a.startswith(b + "/"):
                if rng.random() < 0.5:
                    f.move(a, "__tmp__")
                    f.move(b, a)
                    f.move("__tmp__", b)
                    return f"swap {a} <-> {b}"
                f.move(a, a + "_renamed")
                return f"rename {a}"
        if pick < 0.92 and names:  # a link where an object was
            name = rng.choice(names)
            if name in f:
                target = rng.choice([*names, "/nowhere", "/"])
                del f[name]
                if rng.random() < 0.7:
                    f[name] = h5py.SoftLink(target if target.startswith("/") else "/" + target)
                    return f"{name} -> soft link {target}"
                f[name] = h5py.ExternalLink("missing.h5", "/x")
                return f"{name} -> external link"
        # a group becomes a dataset, or gains an unexpected member
        groups = [n for n in names if isinstance(f.get(n), h5py.Group)]
        if groups:
            name = rng.choice(groups)
            if rng.random() < 0.5:
                del f[name]
                f[name] = np.arange(3)
                return f"group {name} -> dataset"
            f[name].create_dataset("zzz_extra", data=np.arange(rng.choice([0, 1, 5, 1000])))
            return f"extra dataset in {name}"
    return "no-op"


def _tfrecord_stream(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def _split_records(stream: bytes) -> list[bytes]:
    recs, pos = [], 0
    while pos + 12 <= len(stream):
        (n,) = struct.unpack_from("<Q", stream, pos)
        recs.append(stream[pos + 12 : pos + 12 + n])
        pos += 16 + n
    return recs


def _mutate_example(payload: bytes, rng: random.Random) -> tuple[str, bytes]:
    from tianshou_offline.converters._tfrecord import example_class

    ex = example_class()()
    try:
        ex.ParseFromString(payload)
    except Exception:  # an earlier mutation garbled it: garble it more
        b = bytearray(payload or b"\x00")
        b[rng.randrange(len(b))] = rng.randrange(256)
        return "garbage payload byte", bytes(b)
    feats = ex.features.feature
    key = rng.choice(["o_t", "o_tp1", "a_t", "a_tp1", "r_t", "d_t", "episode_id", "episode_return"])
    pick = rng.random()
    if pick < 0.2:
        del feats[key]
        return f"delete feature {key}", ex.SerializeToString()
    if key in ("o_t", "o_tp1"):
        frames = list(feats[key].bytes_list.value)
        what = rng.choice(["drop", "add", "garbage", "rgb", "size", "16bit", "empty", "many"])
        if what == "drop":
            frames = frames[:-1]
        elif what == "add":
            frames.append(frames[0])
        elif what == "garbage":
            frames[rng.randrange(len(frames))] = bytes(rng.randrange(256) for _ in range(50))
        elif what == "rgb":
            from PIL import Image

            bio = io.BytesIO()
            Image.new("RGB", (12, 12)).save(bio, format="PNG")
            frames[-1] = bio.getvalue()
        elif what == "size":
            frames[rng.randrange(len(frames))] = _png(
                np.zeros((rng.choice([1, 13, 300]), 12), np.uint8)
            )
        elif what == "16bit":
            from PIL import Image

            bio = io.BytesIO()
            Image.fromarray(np.zeros((12, 12), np.uint16)).save(bio, format="PNG")
            frames[-1] = bio.getvalue()
        elif what == "empty":
            frames = []
        else:
            frames = frames * 500
        feats[key].ClearField("bytes_list")
        feats[key].bytes_list.value.extend(frames)
        return f"{key}: {what}", ex.SerializeToString()
    kind = feats[key].WhichOneof("kind")
    feats[key].ClearField(kind)
    value = rng.choice([-1, 2**63 - 1, -(2**63), 10**6, 0, float("nan"), float("inf")])
    if rng.random() < 0.2:
        feats[key].bytes_list.value.append(b"x")
        return f"{key}: wrong kind", ex.SerializeToString()
    if kind == "int64_list":
        feats[key].int64_list.value.extend(
            [int(value) if isinstance(value, int) else 3] * rng.choice([1, 0, 2])
        )
    else:
        feats[key].float_list.value.extend([float(value)] * rng.choice([1, 0, 2]))
    return f"{key} = {value}", ex.SerializeToString()


def mutate_tfrecord(path: Path, rng: random.Random) -> str:
    try:
        recs = _split_records(_tfrecord_stream(path))
    except (OSError, EOFError, zlib.error):
        recs = []
    if not recs:  # an earlier mutation broke the framing: mutate the bytes
        data = bytearray(path.read_bytes())
        what = mutate_bytes(data, rng, [])
        path.write_bytes(bytes(data))
        return what
    pick = rng.random()
    frames = [frame_record(r) for r in recs]
    compress = rng.random() < 0.6
    if pick < 0.15:  # flip a byte of a CRC or of a length field (CRCs left as they are)
        i = rng.randrange(len(frames))
        b = bytearray(frames[i])
        p = rng.choice([rng.randrange(8), 8 + rng.randrange(4), len(b) - 1 - rng.randrange(4)])
        b[p] ^= 1 << rng.randrange(8)
        frames[i] = bytes(b)
        what = f"record {i}: flip byte {p}"
    elif pick < 0.3:  # garbage or huge length field with a matching length CRC
        i = rng.randrange(len(frames))
        length = rng.choice(
            [0, 1, 11, len(recs[i]) + 1, len(recs[i]) - 1, 2**31, 2**40, 2**63, 2**64 - 1]
        )
        frames[i] = frame_record(recs[i], length=length)
        what = f"record {i}: length field {length}"
    elif pick < 0.45:  # garbage payload with valid CRCs
        i = rng.randrange(len(frames))
        b = bytearray(recs[i] or b"\x00")
        for _ in range(rng.choice([1, 4, 32])):
            b[rng.randrange(len(b))] = rng.randrange(256)
        frames[i] = frame_record(bytes(b))
        what = f"record {i}: garbage payload bytes"
    elif pick < 0.7:  # a malformed Example with valid CRCs
        i = rng.randrange(len(frames))
        what, payload = _mutate_example(recs[i], rng)
        frames[i] = frame_record(payload)
        what = f"record {i}: {what}"
    elif pick < 0.8:  # records dropped, duplicated, reordered, or none
        op = rng.choice(["drop", "dup", "swap", "none"])
        i = rng.randrange(len(frames))
        if op == "drop":
            del frames[i]
        elif op == "dup":
            frames.insert(i, frames[i])
        elif op == "swap":
            j = rng.randrange(len(frames))
            frames[i], frames[j] = frames[j], frames[i]
        else:
            frames = []
        what = f"records: {op} {i}"
    else:  # byte-level mutation of the stream or of the gzip file
        stream = bytearray(b"".join(frames))
        if compress and rng.random() < 0.5:
            stream = bytearray(gzip.compress(bytes(stream), mtime=0))
            what = "gzip: " + mutate_bytes(stream, rng, [])
            path.write_bytes(bytes(stream))
            return what
        what = "stream: " + mutate_bytes(stream, rng, [])
        frames = [bytes(stream)]
    stream_b = b"".join(frames)
    path.write_bytes(gzip.compress(stream_b, mtime=0) if compress else stream_b)
    return what + (" (gzip)" if compress else "")


def mutate_minari(data_dir: Path, rng: random.Random) -> str:
    h5 = data_dir / "main_data.hdf5"
    meta = data_dir / "metadata.json"
    pick = rng.random()
    if pick < 0.3:
        text = meta.read_text(errors="replace")
        try:
            doc = json.loads(text) if rng.random() < 0.7 else None
        except ValueError:
            doc = None
        if isinstance(doc, dict) and doc:
            key = rng.choice(list(doc))
            if key in ("observation_space", "action_space") and rng.random() < 0.7:
                doc[key] = _corrupt_text(doc[key], rng)
            elif rng.random() < 0.15:
                del doc[key]
            else:
                doc[key] = rng.choice(_HOSTILE_JSON)
            meta.write_text(json.dumps(doc))
            return f"metadata.json: {key} mutated"
        meta.write_text(_corrupt_text(text, rng))
        return "metadata.json: text corrupted"
    if pick < 0.75:
        what = mutate_h5(h5, rng)
        if what != "no-op":  # else an earlier mutation broke the file: mutate its bytes
            return "main_data.hdf5: " + what
    data = bytearray(h5.read_bytes())
    what = mutate_bytes(data, rng, _data_regions(h5))
    h5.write_bytes(bytes(data))
    return "main_data.hdf5: " + what


def make_mutant(seed: Seed, out: Path, rng: random.Random) -> str:
    """Write a mutant of ``seed`` at ``out`` (a directory for Minari); returns what was done."""
    if seed.name == "minari":
        shutil.copytree(seed.path, out)
        return "; ".join(mutate_minari(out, rng) for _ in range(_n_ops(rng)))
    shutil.copyfile(seed.path, out)
    if seed.name == "tfrecord":
        return "; ".join(mutate_tfrecord(out, rng) for _ in range(_n_ops(rng)))
    steps: list[str] = []
    if rng.random() < 0.55:
        for _ in range(_n_ops(rng)):
            steps.append(mutate_h5(out, rng))
            if steps[-1] == "no-op":
                break
        if rng.random() < 0.15:
            data = bytearray(out.read_bytes())
            steps.append(mutate_bytes(data, rng, _data_regions(out)))
            out.write_bytes(bytes(data))
    else:
        regions = _data_regions(out)
        data = bytearray(out.read_bytes())
        for _ in range(_n_ops(rng)):
            steps.append(mutate_bytes(data, rng, regions))
        out.write_bytes(bytes(data))
    return "; ".join(steps)


def _byte_mutant(seed: Seed, out: Path, rng: random.Random) -> str:
    """A fresh copy of ``seed`` at ``out`` with one byte-level mutation (its main file)."""
    if out.is_dir():
        shutil.rmtree(out)
    if seed.name == "minari":
        shutil.copytree(seed.path, out)
        target = out / "main_data.hdf5"
    else:
        shutil.copyfile(seed.path, out)
        target = out
    data = bytearray(target.read_bytes())
    what = mutate_bytes(data, rng, [])
    target.write_bytes(bytes(data))
    return what


def _n_ops(rng: random.Random) -> int:
    x = rng.random()
    return 1 if x < 0.65 else 2 if x < 0.9 else 3


# --------------------------------------------------------------------------------------
# checking a loaded buffer (independently of the package)
# --------------------------------------------------------------------------------------


def _leaves(batch: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    from tianshou.data import Batch

    for key in batch.get_keys():
        value = batch[key]
        if isinstance(value, Batch):
            yield from _leaves(value, f"{prefix}{key}/")
        else:
            yield f"{prefix}{key}", value


def check_buffer(buf: Any) -> str | None:
    """What is inconsistent about a loaded buffer, or None.

    Invariants: ``len == maxsize == N``; ``last_index == [N-1]``; every column has N rows;
    ``next``/``prev`` stay in range, move by one row inside an episode and stop exactly at the
    rows ``done`` marks (and at row 0 / N-1); ``buffer[i]`` of episode starts, ends and random
    rows gives one row per index for every key; ``sample`` works.
    """
    n = len(buf)
    if n == 0:
        return None if buf._size == 0 else f"len 0 but _size {buf._size}"
    if buf.maxsize != n:
        return f"maxsize {buf.maxsize} != len {n}"
    if list(np.asarray(buf.last_index).reshape(-1)) != [n - 1]:
        return f"last_index {buf.last_index} != [{n - 1}]"
    for name, leaf in _leaves(buf._meta):
        shape = np.shape(leaf)
        if not shape or shape[0] != n:
            return f"column {name} has shape {shape}; expected {n} rows"
    done = np.asarray(buf.done[:n])
    if done.dtype != np.bool_ or done.shape != (n,):
        return f"done is {done.dtype} {done.shape}"
    if not done[n - 1]:
        return "the last row does not end an episode"
    idx = np.arange(n)
    nxt = np.asarray(buf.next(idx))
    prv = np.asarray(buf.prev(idx))
    want_next = np.where(done, idx, idx + 1)
    start = np.concatenate([[True], done[:-1]])
    want_prev = np.where(start, idx, idx - 1)
    if not np.array_equal(nxt, want_next):
        i = int(np.flatnonzero(nxt != want_next)[0])
        return f"next({i}) = {nxt[i]}; expected {want_next[i]}"
    if not np.array_equal(prv, want_prev):
        i = int(np.flatnonzero(prv != want_prev)[0])
        return f"prev({i}) = {prv[i]}; expected {want_prev[i]}"
    rng = np.random.default_rng(0)
    probe = np.unique(
        np.concatenate(
            [
                [0, n - 1],
                np.flatnonzero(done)[:8],
                np.flatnonzero(start)[:8],
                rng.integers(0, n, 16),
            ]
        )
    )
    batch = buf[probe]
    for name, leaf in _leaves(batch):
        shape = np.shape(leaf)
        if not shape or shape[0] != len(probe):
            return f"buffer[indices].{name} has shape {shape}; expected {len(probe)} rows"
    one = buf[int(probe[-1])]
    if one is None:
        return "buffer[i] is None"
    _, indices = buf.sample(min(8, n))
    if len(indices) != min(8, n) or np.any((indices < 0) | (indices >= n)):
        return f"sample gave indices {indices}"
    avail = buf.sample_indices(0)
    if np.any((avail < 0) | (avail >= n)):
        return "sample_indices(0) out of range"
    return None


# --------------------------------------------------------------------------------------
# running entry points (inside a worker process)
# --------------------------------------------------------------------------------------


class _Timeout(BaseException):
    """Raised by the worker's timer (a BaseException: no ``except Exception`` swallows it)."""


class _Inconsistent(Exception):
    pass


class _StderrHandler(logging.Handler):
    """Log records to whatever ``sys.stderr`` is now (the CLI's, captured per run)."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(self.format(record) + "\n")


def _cli(argv: list[str]) -> tuple[str, str]:
    """Run ``tianshou-offline ARGV`` in-process: ``(outcome, detail)``."""
    from tianshou_offline.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse
            code = e.code if isinstance(e.code, int) else 1
    text = err.getvalue()
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    if code == 0:
        return "ok", ""
    if code == 2 and len(errors) == 1 and "Traceback" not in text:
        return "typed", errors[0][:300]
    return "untyped", f"exit {code}; stderr: {text[-600:]!r}"


def _check_file(path: Path) -> None:
    from tianshou_offline.data.buffer import load_buffer

    problem = check_buffer(load_buffer(path))
    if problem:
        raise _Inconsistent(f"output {path.name}: {problem}")


def _check_loaded(buf: Any, path: Path | None = None) -> None:
    problem = check_buffer(buf)
    if problem:
        raise _Inconsistent(problem)
    if path is not None:
        problem = check_table(buf, path)
        if problem:
            raise _Inconsistent(problem)


def check_table(buf: Any, path: Path) -> str | None:
    """What ``inspect``'s episode table (``tianshou_offline.data.stats.episode_table``) says
    differently from the loaded buffer, or None (also when the table cannot be read)."""
    from tianshou_offline.data.stats import episode_table
    from tianshou_offline.errors import TianshouOfflineError

    try:
        table = episode_table(path)
    except TianshouOfflineError:
        return None
    n = len(buf)
    # an empty Tianshou buffer has no columns at all (reading ``done`` raises)
    done = np.asarray(buf.done[:n], dtype=bool) if n else np.zeros(0, dtype=bool)
    ends = np.flatnonzero(done)
    starts = np.concatenate([[0], ends[:-1] + 1]) if len(ends) else np.zeros(0, np.int64)
    if len(table.starts) != len(starts) or not (
        np.array_equal(table.starts, starts) and np.array_equal(table.lengths, ends + 1 - starts)
    ):
        return (
            f"episode table: {len(table.starts)} episodes starting at {list(table.starts[:6])}, "
            f"the buffer: {len(starts)} starting at {list(starts[:6])}"
        )
    return None


OPTIONS: dict[str, list[Any]] = {
    # CLI entry points: argument lists after the input ("OUT": the output path, "PLOT": a PNG
    # path, "EXISTING": the output already exists, so --overwrite replaces it)
    "inspect": [[], ["--json"], ["--plot", "PLOT"], ["--json", "--plot", "PLOT"],
                ["EXISTING", "--plot", "PLOT", "--overwrite"], ["--card", "CARD"]],
    "convert_tianshou": [[], ["--compression", "gzip"], ["--compression", "lzf", "--no-info"],
                         ["--allow-pickle", "--no-progress"], ["--env-id", "CartPole-v1"],
                         ["--compression", "none", "--clean"], ["EXISTING", "--overwrite"]],
    "convert_d4rl": [[], ["--with-infos"], ["--qlearning-compat", "--max-episode-steps", "10"],
                     ["--float32", "--nan-policy", "warn"], ["--nan-policy", "ignore"],
                     ["--compression", "gzip", "--no-progress"], ["--compression", "lzf", "--clean"],
                     ["--env-id", "Hopper-v5", "EXISTING", "--overwrite"]],
    # API entry points: keyword arguments
    "load_buffer": [{}, {"include_info": False}, {"stack_num": 2}, {"sample_avail": True},
                    {"progress": True, "allow_pickle": True}],
    "load_rl_unplugged": [{}, {"join_episodes": False}, {"include_info": False},
                          {"progress": True}],
    "load_disk": [{}, {"include_info": False}, {"progress": True, "sample_avail": True}],
    "convert_minari": [{}, {"reader": "minari"}, {"with_infos": True}, {"episodes": "0:2"},
                       {"compression": "gzip", "nan_policy": "warn"},
                       {"nan_policy": "ignore", "overwrite": True, "progress": True}],
    "convert_shard": [{}, {"decoder": "pillow"}, {"decoder": "cv2", "progress": True},
                      {"chunk_records": 3, "compression": "lzf"},
                      {"contiguous": True}, {"overwrite": True}],
}  # fmt: skip
"""The option sets each entry point runs with (a run's ``variant`` picks one): together they
use every option of every entry point (``tests/test_fuzz.py`` checks this against the CLI's
parsers and the functions' signatures), so that a bug behind an option shows."""

UNFUZZED_OPTIONS = {
    "--observation-space": "a space must match the data's shapes (a mismatch is refused first)",
    "--action-space": "as --observation-space",
    "mp_context": "how worker processes start, not what is read",
    "task": "names the output (fixed: Pong)",
    "num_actions": "fixed: 6 (Pong)",
    "run_id": "names the output",
    "shard_id": "names the output",
    "download": "would fetch from the network",
    "memory": "load_buffer's memory='disk' is an entry point of its own, load_disk, run on the "
    "contiguous seed (the disk-backed loader refuses every other layout before reading)",
    "workers": "the harness's workers are daemonic processes, which cannot start a pool",
}
"""Options no variant uses, and why."""


def _cli_args(entry: str, variant: int, out: Path, workdir: Path) -> list[str]:
    args = list(OPTIONS[entry][variant % len(OPTIONS[entry])])
    if "EXISTING" in args:
        args.remove("EXISTING")
        target = workdir / "plot.png" if entry == "inspect" else out
        target.write_bytes(b"an older output")
    paths = {"PLOT": str(workdir / "plot.png"), "CARD": str(workdir / "card.md")}
    return [paths.get(a, a) for a in args]


def _check_png(path: Path) -> None:
    if not path.read_bytes().startswith(b"\x89PNG"):
        raise _Inconsistent(f"--plot wrote {path.name}, not a PNG")


def run_entry(entry: str, path: Path, workdir: Path, variant: int) -> tuple[str, str]:
    """Run one entry point on one mutant with the option set ``variant`` picks
    (:data:`OPTIONS`): ``(outcome, detail)`` (raises for untyped errors)."""
    from tianshou_offline.errors import TianshouOfflineError

    out = workdir / "out.hdf5"
    kw: dict[str, Any] = {}
    if not entry.startswith(("inspect", "convert_tianshou", "convert_d4rl")):
        kw = dict(OPTIONS[entry][variant % len(OPTIONS[entry])])
    try:
        if entry == "load_buffer":
            from tianshou_offline.data.buffer import load_buffer

            _check_loaded(load_buffer(path, **kw), path)
            return "ok", ""
        if entry == "load_disk":
            from tianshou_offline.data.buffer import load_buffer

            _check_loaded(load_buffer(path, memory="disk", **kw), path)
            return "ok", ""
        if entry == "load_rl_unplugged":
            from tianshou_offline.converters.rl_unplugged import load_rl_unplugged

            paths = [path] if variant % 2 else [path, path]
            _check_loaded(load_rl_unplugged(paths, **kw))
            return "ok", ""
        if entry == "inspect":
            args = _cli_args(entry, variant, out, workdir)
            outcome, detail = _cli(["inspect", str(path), *args])
            if outcome == "ok" and "--plot" in args:
                _check_png(workdir / "plot.png")
            if outcome == "ok" and "--card" in args:
                _check_png(workdir / "card_returns.png")
                if not (workdir / "card.md").read_text(encoding="utf-8").startswith("# "):
                    raise _Inconsistent("--card wrote card.md without its title")
            return outcome, detail
        if entry in ("convert_tianshou", "convert_d4rl"):
            command = ["convert", entry.split("_")[1], str(path), "-o", str(out)]
            args = _cli_args(entry, variant, out, workdir)
            outcome, detail = _cli([*command, *args])
            if outcome == "ok" and "--clean" not in args:  # --clean only removes temporaries
                _check_file(out)
            return outcome, detail
        if entry == "convert_minari":
            from tianshou_offline.converters.minari import convert_minari

            convert_minari(path, out, **kw)
            _check_file(out)
            return "ok", ""
        if entry == "convert_shard":
            from tianshou_offline.converters.rl_unplugged import convert_shard, load_rl_unplugged

            convert_shard(path, out, task="Pong", num_actions=6, **{"workers": 1, **kw})
            _check_loaded(load_rl_unplugged(out))
            return "ok", ""
        raise ValueError(f"unknown entry point {entry}")
    except TianshouOfflineError as e:
        return "typed", f"{type(e).__name__}: {str(e)[:300]}"
    except _Inconsistent as e:
        return "inconsistent", str(e)[:400]


ENTRY_POINTS = ("load_buffer", "load_disk", "inspect", "convert_tianshou", "convert_d4rl", "load_rl_unplugged",
                "convert_minari", "convert_shard")  # fmt: skip


@dataclass
class Job:
    entry: str
    path: str
    mutant: int
    seed: str
    description: str
    variant: int = 0


@dataclass
class Result:
    job: Job
    outcome: str
    detail: str
    seconds: float
    peak_mb: float


_ALLOCATION_FAILED = (
    "memory allocation failed", "out of memory", "cannot allocate memory",
    "can't allocate memory", "unable to allocate memory",
)  # fmt: skip
"""How libhdf5 (and the OS) say that malloc failed: a typed error, but a blow-up."""


def _status(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def _worker(conn: mpc.Connection, time_limit: float, mem_limit: int) -> None:
    """Run jobs from ``conn`` until it closes; one result per job."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    base_vm = _status("VmSize")
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = base_vm + mem_limit
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    logging.getLogger().handlers[:] = [_StderrHandler()]
    logging.getLogger().setLevel(logging.WARNING)
    warnings.simplefilter("ignore")

    def on_alarm(signum: int, frame: Any) -> None:
        raise _Timeout

    signal.signal(signal.SIGALRM, on_alarm)
    while True:
        try:
            job: Job = conn.recv()
        except EOFError:
            return
        base_rss = _status("VmRSS")
        with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset the peak resident size (VmHWM)
        workdir = Path(tempfile.mkdtemp(prefix="fuzz-run-"))
        t0 = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, time_limit)
        try:
            outcome, detail = run_entry(job.entry, Path(job.path), workdir, job.variant)
        except _Timeout:
            outcome, detail = "timeout", f"over {time_limit:.0f} s"
        except MemoryError as e:
            outcome, detail = "memory", f"{type(e).__name__}: {str(e)[:200]}"
        except BaseException as e:
            tb = traceback.extract_tb(e.__traceback__)
            where = "; ".join(f"{Path(fr.filename).name}:{fr.lineno} {fr.name}" for fr in tb[-3:])
            outcome, detail = "untyped", f"{type(e).__name__}: {str(e)[:200]} [{where}]"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        seconds = time.perf_counter() - t0
        if outcome == "typed" and any(m in detail.lower() for m in _ALLOCATION_FAILED):
            outcome, detail = _probe_refusal(job, workdir, limit, mem_limit, detail)
        peak = max(0, _status("VmHWM") - base_rss) / 2**20
        shutil.rmtree(workdir, ignore_errors=True)
        conn.send(Result(job, outcome, detail, seconds, peak))
        if _status("VmSize") > base_vm + 512 * 2**20:
            return  # memory crept up: let the pool start a fresh worker


GiB = 1 << 30
PROBE_STEPS_GIB = (3, 16, 128)
"""Address space granted beyond the run's limit when a typed error reports a failed
allocation, one rerun each, then none at all (under a memory cgroup, see
:func:`_probe_refusal`)."""


def _memory_cgroup(cap: int) -> Path | None:
    """A new memory cgroup below this process's own with a resident-memory cap of ``cap``
    bytes (cgroup v1 ``memory.limit_in_bytes`` or v2 ``memory.max``), or None where none can
    be made (not root, no memory controller)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, rel = line.split(":", 2)
        if "memory" in controllers.split(","):
            base, knob = Path("/sys/fs/cgroup/memory") / rel.lstrip("/"), "memory.limit_in_bytes"
        elif controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
            base, knob = Path("/sys/fs/cgroup") / rel.lstrip("/"), "memory.max"
        else:
            continue
        group = base / f"fuzz-probe-{os.getpid()}"
        try:
            group.mkdir(exist_ok=True)
            (group / knob).write_text(str(cap))
            return group
        except OSError:
            with contextlib.suppress(OSError):
                group.rmdir()
    return None


def _probe_once(job: Job, workdir: Path, limit: int | None, group: Path | None) -> tuple[str, str]:
    """Rerun ``job`` in a forked child with an address-space limit of ``limit`` bytes (None:
    none, only inside ``group``): its outcome and detail; ``("killed", …)`` when the cgroup's
    cap (or anything else) killed it."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            os.close(read)
            if group is not None:
                (group / "cgroup.procs").write_text(str(os.getpid()))
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            soft = (
                hard
                if limit is None
                else (limit if hard == resource.RLIM_INFINITY else min(hard, limit))
            )
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
            signal.setitimer(signal.ITIMER_REAL, 10.0)
            try:
                outcome, detail = run_entry(job.entry, Path(job.path), workdir, job.variant)
            except BaseException as e:
                outcome, detail = "untyped", f"{type(e).__name__}: {e}"
            os.write(write, json.dumps([outcome, detail[:500]]).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        data = fh.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        return (
            "killed",
            f"the rerun died ({'signal ' + str(os.WTERMSIG(status)) if os.WIFSIGNALED(status) else 'exit ' + str(os.WEXITSTATUS(status))})",
        )
    outcome, detail = json.loads(data)
    return str(outcome), str(detail)


def _probe_refusal(
    job: Job, workdir: Path, limit: int, mem_limit: int, detail: str
) -> tuple[str, str]:
    """A typed error that reports a failed allocation: rerun it with more address space
    (:data:`PROBE_STEPS_GIB` beyond ``limit``), then with no address-space limit at all —
    each rerun in a forked child inside a memory cgroup whose resident cap is ``mem_limit``
    plus the worker's size, so a request that is granted and used is stopped there. The
    request's size lies between the last refused and the first granted step. ``typed``
    (marked :data:`ALLOCATION_REFUSED`, with the size and whether it was refused without any
    limit) when every rerun fails the same way: the request was refused before any memory was
    used; ``memory`` when a rerun gets further, grows or is killed. Without a cgroup (not
    root) the unlimited rerun is skipped and the detail says so."""
    group = _memory_cgroup(_status("VmRSS") + mem_limit)
    refused_gib = 0
    try:
        for extra in (*PROBE_STEPS_GIB, None):
            if extra is None and group is None:
                return "typed", (
                    f"{ALLOCATION_REFUSED} requested > {refused_gib} GiB beyond the limit; not "
                    f"rerun without a limit (no memory cgroup) {detail}"
                )
            outcome, again = _probe_once(
                job, workdir, None if extra is None else limit + extra * GiB, group
            )
            if outcome != "typed" or again != detail:
                granted = "no limit" if extra is None else f"{extra} GiB more"
                return "memory", (
                    f"{detail} (with {granted}: {outcome}: {again[:200]}; refused up to "
                    f"{refused_gib} GiB more)"
                )
            if extra is not None:
                refused_gib = extra
        return "typed", (
            f"{ALLOCATION_REFUSED} requested > {refused_gib} GiB beyond the limit; refused "
            f"without an address-space limit too {detail}"
        )
    finally:
        if group is not None:
            with contextlib.suppress(OSError):
                group.rmdir()


ALLOCATION_REFUSED = "[allocation refused]"


class Pool:
    """Worker processes (forked from this one, after its imports) that run :class:`Job` s.

    Each job runs under a soft time limit (a timer in the worker), a hard one (the pool kills
    a worker that does not answer within ``time_limit + grace_s``) and an address-space limit of
    the worker's size at start plus ``mem_limit`` bytes (``RLIMIT_AS``).
    """

    grace_s = 5.0
    """How long past the time limit the pool waits for a worker (stuck in C code, where the
    worker's own timer cannot interrupt it) before it kills it."""

    def __init__(self, workers: int, time_limit: float, mem_limit: int) -> None:
        self.workers = workers
        self.time_limit = time_limit
        self.mem_limit = mem_limit
        self._ctx = mp.get_context("fork")

    def _start(self) -> tuple[Any, mpc.Connection]:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=_worker, args=(child, self.time_limit, self.mem_limit), daemon=True
        )
        proc.start()
        child.close()
        return proc, parent

    def run(self, jobs: Iterator[tuple[Job, Callable[[], None] | None]]) -> Iterator[Result]:
        """Run jobs, yielding results as they come; a job's callback runs once it is done."""
        slots: list[dict[str, Any]] = []
        for _ in range(self.workers):
            proc, conn = self._start()
            slots.append({"proc": proc, "conn": conn, "job": None, "t0": 0.0, "done": None})
        pending = iter(jobs)
        exhausted = False
        try:
            while True:
                for s in slots:
                    if s["job"] is None and not exhausted:
                        nxt = next(pending, None)
                        if nxt is None:
                            exhausted = True
                            break
                        s["job"], s["done"] = nxt
                        s["t0"] = time.perf_counter()
                        s["conn"].send(s["job"])
                busy = [s for s in slots if s["job"] is not None]
                if not busy:
                    return
                ready = mpc.wait([s["conn"] for s in busy], timeout=1.0)
                now = time.perf_counter()
                for s in busy:
                    res: Result | None = None
                    restart = False
                    if s["conn"] in ready:
                        try:
                            res = s["conn"].recv()
                        except (EOFError, OSError):
                            s["proc"].join(5)
                            code = s["proc"].exitcode
                            outcome = (
                                "memory" if code in (-signal.SIGKILL, -signal.SIGABRT) else "crash"
                            )
                            res = Result(s["job"], outcome, f"worker died (exit {code})",
                                         now - s["t0"], 0.0)  # fmt: skip
                            restart = True
                        if res is not None and not s["proc"].is_alive():
                            restart = True
                    elif now - s["t0"] > self.time_limit + self.grace_s:
                        s["proc"].kill()
                        s["proc"].join()
                        res = Result(s["job"], "timeout", "killed (no answer)", now - s["t0"], 0.0)
                        restart = True
                    if res is None:
                        continue
                    if restart or not s["proc"].is_alive():
                        s["conn"].close()
                        s["proc"].join(5)
                        s["proc"], s["conn"] = self._start()
                    if s["done"] is not None:
                        s["done"]()
                    s["job"], s["done"] = None, None
                    yield res
        finally:
            for s in slots:
                s["conn"].close()
                s["proc"].join(2)
                if s["proc"].is_alive():
                    s["proc"].kill()


def jobs_for(
    seeds: Sequence[Seed],
    n_mutants: int,
    seed: int,
    workdir: Path,
    *,
    entries_per_mutant: int | None = None,
    first: int = 0,
) -> Iterator[tuple[Job, Callable[[], None] | None]]:
    """Mutants of the seeds in turn, each with a job per entry point that reads it (or, with
    ``entries_per_mutant``, that many of them drawn at random); the mutant is deleted once its
    last job is done. Deterministic for a given ``seed``; mutants are numbered from
    ``first``."""
    rng = random.Random(seed)
    for m in range(first, first + n_mutants):
        s = seeds[(m - first) % len(seeds)]
        mrng = random.Random(rng.getrandbits(64))
        path = workdir / f"m{m}-{s.path.name}"
        if s.name == "tfrecord":
            path = workdir / f"Pong-{m}" / s.path.name
            path.parent.mkdir()
        try:
            desc = make_mutant(s, path, mrng)
        except Exception as e:  # a mutation that cannot apply to what earlier ones left
            desc = f"(mutation failed: {type(e).__name__}; bytes instead) " + _byte_mutant(
                s, path, mrng
            )
        entries = SEED_ENTRY_POINTS[s.name]
        if entries_per_mutant is not None and entries_per_mutant < len(entries):
            entries = tuple(mrng.sample(entries, entries_per_mutant))
        left = [len(entries)]

        def done(path: Path = path, left: list[int] = left) -> None:
            left[0] -= 1
            if left[0] == 0:
                target = path.parent if path.parent.name.startswith("Pong-") else path
                if target.is_dir():
                    shutil.rmtree(target, ignore_errors=True)
                else:
                    target.unlink(missing_ok=True)

        for entry in entries:
            yield Job(entry, str(path), m, s.name, desc, variant=mrng.randrange(1 << 16)), done


def seed_jobs(
    seeds: Sequence[Seed], variants: int = 4
) -> Iterator[tuple[Job, Callable[[], None] | None]]:
    """Every entry point on every unmutated seed, in ``variants`` option sets each (the
    sets rotate over the seeds, so that together they run every set; those of
    :data:`SEED_REFUSES` are left out): all must be ``ok``."""
    for i, s in enumerate(seeds):
        for e in SEED_ENTRY_POINTS[s.name]:
            for k in range(variants):
                v = i * variants + k
                opts = OPTIONS[e][v % len(OPTIONS[e])]
                if not set(opts) & SEED_REFUSES.get((s.name, e), set()):
                    yield Job(e, str(s.path), -1, s.name, "seed", variant=v), None


SEED_REFUSES: dict[tuple[str, str], set[str]] = {("framestack", "load_buffer"): {"stack_num"}}
"""Options a valid seed is refused with (a typed error, not ``ok``): a frame-stacked file
loaded with another ``stack_num`` than it was written with."""


# --------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------


@dataclass
class Summary:
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    failures: list[Result] = field(default_factory=list)
    slowest: list[Result] = field(default_factory=list)
    peak: list[Result] = field(default_factory=list)
    mutants: set[int] = field(default_factory=set)
    refused: list[Result] = field(default_factory=list)
    """typed errors after an allocation was refused at every probe (see
    :func:`_probe_refusal`)."""

    def add(self, r: Result) -> None:
        self.counts.setdefault(r.job.entry, Counter())[r.outcome] += 1
        if r.detail.startswith(ALLOCATION_REFUSED):
            self.refused.append(r)
        self.mutants.add(r.job.mutant)
        if r.outcome in FAILURES:
            self.failures.append(r)
        self.slowest = sorted([*self.slowest, r], key=lambda x: -x.seconds)[:10]
        self.peak = sorted([*self.peak, r], key=lambda x: -x.peak_mb)[:5]

    def table(self) -> str:
        cols = OUTCOMES
        lines = [
            "| entry point | runs | " + " | ".join(cols) + " |",
            "|---|---:|" + "---:|" * len(cols),
        ]
        total: Counter[str] = Counter()
        for entry in ENTRY_POINTS:
            c = self.counts.get(entry)
            if not c:
                continue
            total.update(c)
            lines.append(
                f"| {entry} | {sum(c.values())} | " + " | ".join(str(c[o]) for o in cols) + " |"
            )
        lines.append(
            f"| **all** | {sum(total.values())} | " + " | ".join(str(total[o]) for o in cols) + " |"
        )
        return "\n".join(lines)

    def report(self, max_failures: int = 40) -> str:
        out = [self.table(), ""]
        if self.refused:
            out.append(
                f"{len(self.refused)} typed errors came after an allocation sized by a corrupt "
                f"field was refused at every probe (no memory used), e.g. "
                f"{self.refused[0].job.seed}#{self.refused[0].job.mutant}: "
                f"{self.refused[0].detail[len(ALLOCATION_REFUSED) :][:240]}"
            )
        out.append("slowest runs:")
        for r in self.slowest:
            out.append(
                f"  {r.seconds:7.2f} s {r.peak_mb:7.1f} MB  {r.job.entry:<17} {r.outcome:<8} "
                f"{r.job.seed}#{r.job.mutant}: {r.job.description[:90]}"
            )
        out.append("largest peak memory:")
        for r in self.peak:
            out.append(
                f"  {r.peak_mb:7.1f} MB {r.seconds:7.2f} s  {r.job.entry:<17} {r.outcome:<8} "
                f"{r.job.seed}#{r.job.mutant}: {r.job.description[:90]}"
            )
        if self.failures:
            out.append(f"failures ({len(self.failures)}):")
            groups: dict[str, list[Result]] = {}
            for r in self.failures:
                key = f"{r.job.entry} {r.outcome} {r.detail.split(':')[0]} {r.detail.split('[')[-1][:80]}"
                groups.setdefault(key, []).append(r)
            for _key, rs in sorted(groups.items(), key=lambda kv: -len(kv[1]))[:max_failures]:
                r = rs[0]
                out.append(
                    f"  {len(rs):5d} x {r.job.entry} {r.outcome}: {r.detail[:300]}\n"
                    f"          e.g. {r.job.seed}#{r.job.mutant}: {r.job.description[:150]}"
                )
        return "\n".join(out)
