"""Test helpers: RL Unplugged-style Atari shards written with real TensorFlow from real frames.

Frames come from ale-py through gymnasium's ``AtariPreprocessing`` (84×84 grayscale, frame
skip 4). Each episode of ``T`` steps has ``T + 1`` frames ``f_0..f_T``; record ``t`` holds
``o_t = [f_{t-3}, f_{t-2}, f_{t-1}, f_t]`` and ``o_tp1`` the same one step later, where frames
before ``f_0`` are ``padding`` ("zeros", as Dopamine's replay pads, or "repeat": ``f_0``).
Records are ``tf.train.Example`` protos written by ``tf.io.TFRecordWriter`` with GZIP.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Episode:
    frames: np.ndarray  # (T + 1, 84, 84) uint8
    actions: np.ndarray  # (T,) int64
    rewards: np.ndarray  # (T,) float32
    terminal: bool  # the last step reached a terminal state


def atari_episodes(
    n_episodes: int, *, max_steps: int = 400, seed: int = 0, game: str = "Breakout"
) -> list[Episode]:
    """Play ``n_episodes`` with a random policy; episodes longer than ``max_steps`` are cut."""
    import ale_py
    import gymnasium as gym
    from gymnasium.wrappers import AtariPreprocessing

    gym.register_envs(ale_py)
    env = gym.make(f"ALE/{game}-v5", frameskip=1, repeat_action_probability=0.25)
    env = AtariPreprocessing(env, frame_skip=4, screen_size=84, grayscale_obs=True, noop_max=30)
    rng = np.random.default_rng(seed)
    assert isinstance(env.action_space, gym.spaces.Discrete)
    n_act = int(env.action_space.n)
    out: list[Episode] = []
    for e in range(n_episodes):
        obs, _ = env.reset(seed=seed * 1000 + e)
        frames = [obs]
        acts: list[int] = []
        rews: list[float] = []
        terminal = False
        for _ in range(max_steps):
            a = int(rng.integers(n_act))
            obs, r, term, trunc, _ = env.step(a)
            frames.append(obs)
            acts.append(a)
            rews.append(float(r))
            if term or trunc:
                terminal = bool(term)
                break
        out.append(
            Episode(
                frames=np.stack(frames).astype(np.uint8),
                actions=np.asarray(acts, np.int64),
                rewards=np.asarray(rews, np.float32),
                terminal=terminal,
            )
        )
    env.close()
    return out


def _stack(frames: np.ndarray, t: int, padding: str, pad_frame: np.ndarray) -> list[np.ndarray]:
    out = []
    for k in range(t - 3, t + 1):
        if k >= 0:
            out.append(frames[k])
        else:
            out.append(pad_frame if padding == "zeros" else frames[0])
    return out


def episode_records(
    ep: Episode,
    episode_id: int,
    *,
    padding: str = "zeros",
    png_cache: dict[int, bytes] | None = None,
) -> list[bytes]:
    """Serialised ``tf.train.Example`` records of one episode (RL Unplugged features)."""
    import tensorflow as tf

    zeros = np.zeros_like(ep.frames[0])
    cache: dict[int, bytes] = {} if png_cache is None else png_cache

    def png(img: np.ndarray) -> bytes:
        key = hash(img.tobytes())
        if key not in cache:
            cache[key] = tf.io.encode_png(img[:, :, None]).numpy()
        return cache[key]

    T = len(ep.actions)
    ret = float(np.clip(ep.rewards, -1, 1).sum())
    recs = []
    for t in range(T):
        d_t = 0.0 if (t == T - 1 and ep.terminal) else 1.0
        a_tp1 = int(ep.actions[t + 1]) if t + 1 < T else 0
        feats = {
            "o_t": tf.train.Feature(
                bytes_list=tf.train.BytesList(
                    value=[png(f) for f in _stack(ep.frames, t, padding, zeros)]
                )
            ),
            "o_tp1": tf.train.Feature(
                bytes_list=tf.train.BytesList(
                    value=[png(f) for f in _stack(ep.frames, t + 1, padding, zeros)]
                )
            ),
            "a_t": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(ep.actions[t])])),
            "a_tp1": tf.train.Feature(int64_list=tf.train.Int64List(value=[a_tp1])),
            "r_t": tf.train.Feature(float_list=tf.train.FloatList(value=[float(ep.rewards[t])])),
            "d_t": tf.train.Feature(float_list=tf.train.FloatList(value=[d_t])),
            "episode_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[episode_id])),
            "episode_return": tf.train.Feature(float_list=tf.train.FloatList(value=[ret])),
        }
        ex = tf.train.Example(features=tf.train.Features(feature=feats))
        recs.append(ex.SerializeToString())
    return recs


def write_shard(path: Path, records: list[bytes], *, compression: str = "GZIP") -> Path:
    """Write records with TensorFlow's ``TFRecordWriter`` (GZIP by default)."""
    import tensorflow as tf

    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path), options=compression) as w:
        for r in records:
            w.write(r)
    return path


def reference_decode(path: Path, *, compression: str = "GZIP") -> dict[str, np.ndarray]:
    """Decode a shard as RL Unplugged's loader does: ``parse_single_example`` + ``decode_png``.

    :returns: ``obs``/``obs_next`` ``(N, 4, 84, 84)`` uint8 (frames in record order),
        ``act``/``a_tp1``/``episode_id`` int64, ``rew``/``discount``/``episode_return``
        float32, ``terminated`` bool.
    """
    import tensorflow as tf

    spec = {
        "o_t": tf.io.FixedLenFeature([4], tf.string),
        "o_tp1": tf.io.FixedLenFeature([4], tf.string),
        "a_t": tf.io.FixedLenFeature([], tf.int64),
        "a_tp1": tf.io.FixedLenFeature([], tf.int64),
        "r_t": tf.io.FixedLenFeature([], tf.float32),
        "d_t": tf.io.FixedLenFeature([], tf.float32),
        "episode_id": tf.io.FixedLenFeature([], tf.int64),
        "episode_return": tf.io.FixedLenFeature([], tf.float32),
    }
    cols: dict[str, list[Any]] = {k: [] for k in (
        "obs", "obs_next", "act", "a_tp1", "rew", "discount", "episode_id", "episode_return"
    )}  # fmt: skip
    for raw in tf.data.TFRecordDataset(str(path), compression_type=compression):
        d = tf.io.parse_single_example(raw, spec)
        cols["obs"].append(
            np.stack(
                [tf.image.decode_png(d["o_t"][i], channels=1).numpy()[:, :, 0] for i in range(4)]
            )
        )
        cols["obs_next"].append(
            np.stack(
                [tf.image.decode_png(d["o_tp1"][i], channels=1).numpy()[:, :, 0] for i in range(4)]
            )
        )
        cols["act"].append(int(d["a_t"]))
        cols["a_tp1"].append(int(d["a_tp1"]))
        cols["rew"].append(float(d["r_t"]))
        cols["discount"].append(float(d["d_t"]))
        cols["episode_id"].append(int(d["episode_id"]))
        cols["episode_return"].append(float(d["episode_return"]))
    out = {
        "obs": np.stack(cols["obs"]),
        "obs_next": np.stack(cols["obs_next"]),
        "act": np.asarray(cols["act"], np.int64),
        "a_tp1": np.asarray(cols["a_tp1"], np.int64),
        "rew": np.asarray(cols["rew"], np.float32),
        "discount": np.asarray(cols["discount"], np.float32),
        "episode_id": np.asarray(cols["episode_id"], np.int64),
        "episode_return": np.asarray(cols["episode_return"], np.float32),
    }
    out["terminated"] = out["discount"] == 0
    return out
