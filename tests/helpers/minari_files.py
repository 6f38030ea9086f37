"""Minari datasets written by Minari's own ``create_dataset_from_buffers``, for the tests."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import h5py
import numpy as np

from tianshou_offline.data.format import EPISODES_GROUP

BOX_OBS = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
BOX_ACT = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
DICT_OBS = gym.spaces.Dict(
    {
        "position": gym.spaces.Box(-10.0, 10.0, (3,), np.float64),
        "goal": gym.spaces.Dict(
            {"id": gym.spaces.Discrete(5), "xy": gym.spaces.Box(-1.0, 1.0, (2,), np.float32)}
        ),
    }
)
TUPLE_OBS = gym.spaces.Tuple(
    (gym.spaces.Box(0.0, 1.0, (2,), np.float32), gym.spaces.MultiBinary(3))
)
IMAGE_OBS = gym.spaces.Box(0, 255, (32, 32, 3), np.uint8)
DISCRETE_ACT = gym.spaces.Discrete(4)
MULTI_DISCRETE_ACT = gym.spaces.MultiDiscrete([3, 2])

SPACES: dict[str, tuple[gym.Space[Any], gym.Space[Any]]] = {
    "box": (BOX_OBS, BOX_ACT),
    "dict": (DICT_OBS, DISCRETE_ACT),
    "tuple": (TUPLE_OBS, MULTI_DISCRETE_ACT),
    "image": (IMAGE_OBS, DISCRETE_ACT),
}


def _sample(space: gym.Space[Any], n: int, rng: np.random.Generator) -> Any:
    if isinstance(space, gym.spaces.Dict):
        return {k: _sample(s, n, rng) for k, s in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(_sample(s, n, rng) for s in space.spaces)
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(0, int(space.n), size=n).astype(np.int64)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return np.stack([rng.integers(0, k, size=n) for k in space.nvec], axis=1).astype(
            space.dtype
        )
    if isinstance(space, gym.spaces.MultiBinary):
        return rng.integers(0, 2, size=(n, *space.shape)).astype(space.dtype)
    assert isinstance(space, gym.spaces.Box)
    if np.issubdtype(space.dtype, np.integer):
        return rng.integers(0, 256, size=(n, *space.shape)).astype(space.dtype)
    return rng.uniform(-1, 1, size=(n, *space.shape)).astype(space.dtype)


def episode_buffers(
    kind: str,
    lengths: list[int],
    *,
    seed: int = 0,
    with_infos: str | None = None,
    seeds: bool = True,
    nan_reward: tuple[int, int] | None = None,
) -> list[Any]:
    """EpisodeBuffers with the given lengths. The last episode ends with neither flag (cut),
    the others alternate terminated / truncated. ``with_infos``: ``"obs"`` (T+1 rows, like
    Minari's DataCollector; nested and 1-D), ``"obs-flat"`` (T+1 rows, only >= 2-D arrays at
    the top level: Minari's Arrow storage cannot read back anything else) or ``"step"``
    (T rows)."""
    from minari.data_collector import EpisodeBuffer

    obs_space, act_space = SPACES[kind]
    rng = np.random.default_rng(seed)
    out = []
    for i, t in enumerate(lengths):
        term = np.zeros(t, dtype=bool)
        trunc = np.zeros(t, dtype=bool)
        if i < len(lengths) - 1:
            (term if i % 2 == 0 else trunc)[-1] = True
        rew = rng.normal(size=t)
        if nan_reward is not None and nan_reward[0] == i:
            rew[nan_reward[1]] = np.nan
        infos = None
        if with_infos is not None:
            rows = t + 1 if with_infos.startswith("obs") else t
            if with_infos == "obs-flat":
                # what Minari's Arrow storage can read back: arrays of >= 2 dimensions only
                infos = {
                    "energy": rng.normal(size=(rows, 2)).astype(np.float32),
                    "cell": rng.integers(0, 9, size=(rows, 2, 2)),
                }
            else:
                infos = {
                    "step": np.arange(rows, dtype=np.int64),
                    "extra": {"energy": rng.normal(size=(rows, 2)).astype(np.float32)},
                }
        out.append(
            EpisodeBuffer(
                id=i,
                seed=1000 + i if seeds and i != 1 else None,
                observations=_sample(obs_space, t + 1, rng),
                actions=_sample(act_space, t, rng),
                rewards=rew,
                terminations=term,
                truncations=trunc,
                infos=infos,
            )
        )
    return out


def make_dataset(
    dataset_id: str,
    kind: str,
    lengths: list[int],
    *,
    data_format: str,
    env: str | None = None,
    **kw: Any,
) -> Any:
    import minari

    obs_space, act_space = SPACES[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return minari.create_dataset_from_buffers(
            dataset_id,
            episode_buffers(kind, lengths, **kw),
            env=env,
            observation_space=None if env else obs_space,
            action_space=None if env else act_space,
            data_format=data_format,
            algorithm_name="random-test-policy",
            author="Tester",
            author_email="tester@example.com",
            code_permalink="https://example.com/code",
            description=f"{kind} test dataset",
        )


def episode_table(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The episode table of a tianshou-offline file: start, length, metadata/*."""
    with h5py.File(path, "r") as f:
        g = f[EPISODES_GROUP]
        out = {k: g[k][()] for k in ("start", "length")}
        if "metadata" in g:
            out.update({f"metadata/{k}": g["metadata"][k][()] for k in g["metadata"]})
        return out


def assert_tree_equal(a: Any, b: Any, where: str = "") -> None:
    """Nested dicts/tuples/Batches of arrays: same structure, dtypes and values."""
    from tianshou.data import Batch

    if isinstance(a, Batch):
        a = {k: a[k] for k in a.get_keys()}
    if isinstance(b, Batch):
        b = {k: b[k] for k in b.get_keys()}
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        assert isinstance(a, Mapping) and isinstance(b, Mapping), where
        assert sorted(a) == sorted(b), (where, sorted(a), sorted(b))
        for k in a:
            assert_tree_equal(a[k], b[k], f"{where}/{k}")
        return
    if isinstance(a, tuple) or isinstance(b, tuple):
        assert isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_tree_equal(x, y, f"{where}/{i}")
        return
    x, y = np.asarray(a), np.asarray(b)
    assert x.dtype == y.dtype, (where, x.dtype, y.dtype)
    np.testing.assert_array_equal(x, y, err_msg=where)


def tree_rows(tree: Any, rows: slice, as_tuple: Callable[[Any], bool] | None = None) -> Any:
    from tianshou.data import Batch

    if isinstance(tree, Batch):
        keys = list(tree.get_keys())
        if as_tuple is not None and as_tuple(tree):
            return tuple(tree_rows(tree[str(i)], rows) for i in range(len(keys)))
        return {k: tree_rows(tree[k], rows) for k in keys}
    if isinstance(tree, Mapping):
        return {k: tree_rows(v, rows) for k, v in tree.items()}
    if isinstance(tree, tuple):
        return tuple(tree_rows(v, rows) for v in tree)
    return np.asarray(tree)[rows]
