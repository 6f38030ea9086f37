"""Gymnasium spaces of Minari datasets as trees of array leaves: which spaces the fast
readers handle, nesting/flattening of Dict/Tuple values, spaces inferred from data."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from tianshou_offline.errors import (
    DatasetFormatError,
)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------
# spaces and trees
# --------------------------------------------------------------------------------------

_ARRAY_SPACES = (
    gym.spaces.Box,
    gym.spaces.Discrete,
    gym.spaces.MultiDiscrete,
    gym.spaces.MultiBinary,
)


@dataclass(frozen=True)
class _Leaf:
    key: tuple[str, ...]
    """Path in the returned tree (Dict keys, Tuple indices as strings)."""
    hdf5: str
    """Path below ``observations`` in Minari's HDF5 storage."""
    space: gym.Space[Any]


def _is_image_space(space: gym.Space[Any]) -> bool:
    from minari.dataset.minari_storage import is_image_space

    return bool(is_image_space(space))


def _leaves(
    space: gym.Space[Any], jpeg: bool, key: tuple[str, ...] = (), hdf5: str = ""
) -> list[_Leaf] | None:
    """The array leaves of a space, or None when the fast path cannot read it."""
    if isinstance(space, gym.spaces.Dict):
        out: list[_Leaf] = []
        for name, sub in space.spaces.items():
            got = _leaves(sub, jpeg, (*key, str(name)), f"{hdf5}/{name}")
            if got is None:
                return None
            out += got
        return out
    if isinstance(space, gym.spaces.Tuple):
        out = []
        for i, sub in enumerate(space.spaces):
            got = _leaves(sub, jpeg, (*key, str(i)), f"{hdf5}/_index_{i}")
            if got is None:
                return None
            out += got
        return out
    if isinstance(space, _ARRAY_SPACES):
        if jpeg and _is_image_space(space):
            return None
        return [_Leaf(key, hdf5, space)]
    return None


def _build_tree(
    space: gym.Space[Any], values: Mapping[tuple[str, ...], Any], key: tuple[str, ...] = ()
) -> Any:
    if isinstance(space, gym.spaces.Dict):
        return {
            name: _build_tree(sub, values, (*key, str(name))) for name, sub in space.spaces.items()
        }
    if isinstance(space, gym.spaces.Tuple):
        return tuple(_build_tree(sub, values, (*key, str(i))) for i, sub in enumerate(space.spaces))
    return values[key]


def _tree_map(fn: Any, tree: Any) -> Any:
    if isinstance(tree, Mapping):
        return {k: _tree_map(fn, v) for k, v in tree.items()}
    if isinstance(tree, tuple):
        return tuple(_tree_map(fn, v) for v in tree)
    return fn(tree)


def _tree_leaves(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            yield from _tree_leaves(v, f"{prefix}/{k}" if prefix else str(k))
    elif isinstance(tree, tuple):
        for i, v in enumerate(tree):
            yield from _tree_leaves(v, f"{prefix}/{i}" if prefix else str(i))
    else:
        yield prefix, tree


def _as_storable(arr: Any, where: str) -> np.ndarray:
    """numpy array the writer accepts: object arrays of bytes/str become fixed-size bytes."""
    a = np.asarray(arr)
    if a.dtype == object or a.dtype.kind == "U":
        try:
            flat = [x.encode("utf-8") if isinstance(x, str) else bytes(x) for x in a.ravel()]
            return np.asarray(flat, dtype=np.bytes_).reshape(a.shape)
        except (TypeError, ValueError):
            raise DatasetFormatError(
                f"{where}: holds Python objects of type {type(a.ravel()[0]).__name__}; "
                "expected numeric, bool or string arrays"
            ) from None
    return a


def _has_text(space: gym.Space[Any]) -> bool:
    if isinstance(space, gym.spaces.Text):
        return True
    if isinstance(space, gym.spaces.Dict):
        return any(_has_text(s) for s in space.spaces.values())
    if isinstance(space, gym.spaces.Tuple):
        return any(_has_text(s) for s in space.spaces)
    return False


def _batch_tree(value: Any, space: gym.Space[Any] | None) -> Any:
    """A Tianshou Batch column as the structure Minari expects for ``space``: a tuple for a
    ``Tuple`` space whose keys are its indices, a dict (the space's keys first) otherwise.
    Nothing is dropped: keys the space lacks stay, so that a check against the space
    (``export._fit_space``) sees them."""
    from tianshou.data import Batch

    if isinstance(value, Batch):
        keys = list(value.get_keys())
        if isinstance(space, gym.spaces.Tuple) and sorted(keys) == sorted(
            str(i) for i in range(len(space.spaces))
        ):
            return tuple(_batch_tree(value[str(i)], sub) for i, sub in enumerate(space.spaces))
        if isinstance(space, gym.spaces.Dict):
            order = [k for k in space.spaces if k in keys] + [
                k for k in keys if k not in space.spaces
            ]
            return {k: _batch_tree(value[k], space.spaces.get(k)) for k in order}
        return {k: _batch_tree(value[k], None) for k in keys}
    return np.asarray(value)


def _infer_space(tree: Any) -> gym.Space[Any]:
    if isinstance(tree, Mapping):
        return gym.spaces.Dict({k: _infer_space(v) for k, v in tree.items()})
    if isinstance(tree, tuple):
        return gym.spaces.Tuple([_infer_space(v) for v in tree])
    arr = np.asarray(tree)
    if np.issubdtype(arr.dtype, np.integer) and arr.ndim == 1:
        return gym.spaces.Discrete(int(arr.max()) + 1 if arr.size else 1)
    if np.issubdtype(arr.dtype, np.integer):
        ii = np.iinfo(arr.dtype)
        return gym.spaces.Box(ii.min, ii.max, shape=arr.shape[1:], dtype=arr.dtype.type)
    return gym.spaces.Box(-np.inf, np.inf, shape=arr.shape[1:], dtype=arr.dtype.type)


def _tree_map2(fn: Any, a: Any, b: Any) -> Any:
    if isinstance(a, Mapping):
        return {k: _tree_map2(fn, a[k], b[k]) for k in a}
    if isinstance(a, tuple):
        return tuple(_tree_map2(fn, x, y) for x, y in zip(a, b, strict=True))
    return fn(a, b)
