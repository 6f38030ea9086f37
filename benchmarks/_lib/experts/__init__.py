"""Caching, seeding and the command line shared by the expert-data gatherers
(:mod:`.cartpole`, :mod:`.pendulum`)."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from filelock import FileLock

if TYPE_CHECKING:
    from tianshou.env import DummyVectorEnv

Gather = Callable[[Path], Path]


def seeded_envs(task: str, seed: int, num: int = 10) -> tuple[DummyVectorEnv, DummyVectorEnv]:
    r"""``num`` training and ``num`` test environments of ``task`` (Tianshou
    ``DummyVectorEnv``\ s), after seeding numpy's and torch's global generators with
    ``seed``; the training environments are seeded with ``seed``, the test ones with
    ``seed + 100``."""
    import gymnasium as gym
    from tianshou.env import DummyVectorEnv

    train_envs = DummyVectorEnv([lambda: gym.make(task) for _ in range(num)])
    test_envs = DummyVectorEnv([lambda: gym.make(task) for _ in range(num)])
    np.random.seed(seed)
    torch.manual_seed(seed)
    train_envs.seed(seed)
    test_envs.seed(seed + 100)
    return train_envs, test_envs


def cached_file(directory: str | os.PathLike[str], file_name: str, gather: Gather) -> Path:
    """``directory / file_name`` (or in ``$TIANSHOU_OFFLINE_EXPERT_CACHE`` when set),
    gathered first with ``gather(path)`` if it does not exist yet. Concurrent callers (the
    test workers of ``pytest -n``, which share one folder) gather it once: the others wait on
    a lock file beside it (``file_name.lock``) and then find it.

    The global random generators (torch's CPU one, numpy's, Python's) are left as they were:
    a gatherer seeds them and trains an agent, and a caller that seeded them before asking
    for the data must draw the same numbers whether this call gathered it or found it (a
    test run alone gathers the session's data; in the full suite an earlier test did).
    """
    cache = os.environ.get("TIANSHOU_OFFLINE_EXPERT_CACHE")
    folder = Path(cache) if cache else Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_name
    with FileLock(folder / f"{file_name}.lock"):
        if not path.exists():
            with global_generators_kept():
                gather(path)
    return path


def cached_getter(file_name: str, gather: Gather) -> Callable[[str | os.PathLike[str]], Path]:
    """A gatherer's ``cached_expert_file(directory)``: :func:`cached_file` of ``file_name``,
    gathered with ``gather`` when it does not exist yet."""

    def cached_expert_file(directory: str | os.PathLike[str]) -> Path:
        """The expert file in ``directory`` (or in ``$TIANSHOU_OFFLINE_EXPERT_CACHE`` when
        set), gathered first if it does not exist yet."""
        return cached_file(directory, file_name, gather)

    return cached_expert_file


@contextlib.contextmanager
def global_generators_kept() -> Iterator[None]:
    """Restore torch's CPU generator, numpy's and Python's global generators on exit."""
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def script_main(file_name: str, gather: Gather) -> None:
    """``python -m benchmarks._lib.experts.X [OUT.hdf5]``: gather into OUT (default ``file_name``)."""
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(1)
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(file_name)
    print(gather(target))


def check_expert(agent: str, best_return: float, expert_return: float) -> None:
    """Refuse to gather from an online ``agent`` whose best test return stayed below the
    expert return.

    :raises RuntimeError: naming both returns.
    """
    if best_return < expert_return:
        raise RuntimeError(
            f"{agent} reached a test return of {best_return:.1f} < {expert_return}; "
            "cannot gather expert data"
        )


def save_expert(
    buffer: Any, path: str | os.PathLike[str], env: Any, task: str, *, dataset_id: str,
    converter: str, extra: dict[str, Any], stats: Any,
) -> Path:  # fmt: skip
    """Write the collected ``buffer`` to ``path`` (:func:`tianshou_offline.save_buffer`,
    replacing a file there) with ``env``'s spaces, the id ``task`` and the provenance of a
    recorded expert: ``extra`` and the collection's mean return (``stats``, a
    ``CollectStats``)."""
    from tianshou_offline import Provenance, save_buffer

    mean = float(stats.returns_stat.mean) if stats.returns_stat is not None else None
    return save_buffer(
        buffer,
        path,
        observation_space=env.observation_space,
        action_space=env.action_space,
        env_id=task,
        provenance=Provenance(
            source="recorded",
            dataset_id=dataset_id,
            converter=converter,
            extra={**extra, "collect_mean_return": mean},
        ),
        overwrite=True,
    )
