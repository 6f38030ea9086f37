"""The seeds: small valid files written by the package's own writers, by Tianshou, a D4RL-layout
file, a Minari dataset and an RL Unplugged TFRecord shard (:func:`make_seeds`,
:func:`make_large_seeds`)."""

from __future__ import annotations

import gzip
import io
import os
import struct
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

H5_KINDS = (
    "writer", "writer_dict", "contiguous", "recorder", "recorder_killed", "tianshou", "tianshou_vector", "d4rl",
    "framestack", "framestack_contiguous",
)  # fmt: skip
_READ = ("load_buffer", "inspect", "convert_tianshou")
SEED_ENTRY_POINTS: dict[str, tuple[str, ...]] = {
    **{k: _READ for k in H5_KINDS},
    "writer": (*_READ, "repack", "repair", "export_minari"),
    "writer_dict": (*_READ, "repair", "export_minari"),
    "recorder": (*_READ, "repair", "export_minari"),
    "recorder_killed": (*_READ, "repack", "repair"),
    "tianshou": (*_READ, "repack", "export_minari"),
    "d4rl": (*_READ, "convert_d4rl", "repack", "export_minari"),
    "contiguous": ("load_buffer", "load_disk", "inspect", "convert_tianshou", "repack"),
    "framestack": ("load_buffer", "inspect", "load_rl_unplugged", "repack"),
    "framestack_contiguous": ("load_buffer", "load_disk", "load_rl_unplugged_disk", "inspect"),
    "minari": ("convert_minari",),
    "tfrecord": ("convert_shard",),
    "large_writer": (*_READ, "repack"),
    "large_frames": ("load_buffer", "load_disk", "inspect", "convert_tianshou"),
}
"""Which entry points read the mutants of each kind of seed."""


@dataclass(frozen=True)
class Seed:
    name: str
    """the seed's kind (a key of :data:`SEED_ENTRY_POINTS`)."""
    path: Path
    """the file (a directory for a Minari dataset)."""


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


def _seed_tianshou(
    path: Path, *, vector: bool, lengths: Sequence[int] = (6, 5, 9), size: int = 16
) -> None:
    """A Tianshou ``save_hdf5`` file: a ``VectorReplayBuffer`` (``vector``), else a
    ``ReplayBuffer`` of ``size`` rows holding episodes of ``lengths`` steps (it wraps around
    when they are longer)."""
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
    buf = ReplayBuffer(size)
    for ep in _episodes(rng, lengths):  # by default 20 transitions: the buffer wraps
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


def _seed_minari(
    root: Path, lengths: Sequence[int] = (5, 7, 3), *, data_format: str = "hdf5"
) -> Path:
    """A Minari dataset (``data_format``: HDF5 or Arrow storage) written by Minari
    (``create_dataset_from_buffers``: episodes of ``lengths`` steps, the last cut, the others
    terminated and truncated in turn; Box observations and actions); returns its data
    directory."""
    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    obs_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    act_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    rng = np.random.default_rng(0)
    episodes = []
    for i, t in enumerate(lengths):
        term, trunc = np.zeros(t, bool), np.zeros(t, bool)
        if i < len(lengths) - 1:  # the last episode ends with neither flag (cut)
            (term if i % 2 == 0 else trunc)[-1] = True
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
                data_format=data_format, algorithm_name="random", author="fuzz",
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
        convert_shard(shard, root / "framestack_contiguous.hdf5", task="Pong", workers=1,
                      num_actions=6, contiguous=True)  # fmt: skip
        seeds.append(Seed("framestack_contiguous", root / "framestack_contiguous.hdf5"))
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
