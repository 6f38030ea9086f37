"""Loading one or several frame-stacked shard files (RL Unplugged Atari conversions) as one
Tianshou buffer, in RAM or memory-mapped from disk."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from tianshou_offline.data.framestack import (
    FrameStackReplayBuffer,
    load_framestack_files,
)
from tianshou_offline.data.ondisk import Memory
from tianshou_offline.errors import (
    SourceNotFoundError,
)


def load_rl_unplugged(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    join_episodes: bool = True,
    include_info: bool = True,
    progress: bool | None = None,
    memory: Memory = "ram",
) -> FrameStackReplayBuffer:
    """Open one or several converted shards as one exact Tianshou buffer.

    ``buffer[i].obs`` and ``buffer[i].obs_next`` are ``(4, 84, 84)`` uint8 stacks equal to the
    records' ``o_t``/``o_tp1``; ``act``, ``rew``, ``terminated`` as converted. Shards are
    concatenated in the given order; an episode cut at the end of one shard and continued by
    the next is joined (see :func:`~tianshou_offline.data.framestack.load_framestack_files`).

    :param paths: a file, a directory (all ``*.hdf5`` in it, sorted), or a list of files
        and directories.
    :param memory: ``"ram"`` reads the frames into memory; ``"disk"`` keeps them in the
        shards, memory-mapped (a :class:`~tianshou_offline.data.ondisk.DiskReplayBuffer`,
        sampling uniformly over all shards; shards converted with ``contiguous=True`` or
        rewritten by ``tianshou-offline repack``); ``"auto"``: disk when the frames exceed
        half of the available memory (logged).
    """
    if isinstance(paths, str | os.PathLike):
        p = Path(paths)
        files = sorted(p.glob("*.hdf5")) if p.is_dir() else [p]
        if not files:
            raise SourceNotFoundError(f"{p}: no .hdf5 files")
    else:
        files = []
        for x in paths:
            p = Path(x)
            found = sorted(p.glob("*.hdf5")) if p.is_dir() else [p]
            if not found:
                raise SourceNotFoundError(f"{p}: no .hdf5 files")
            files += found
    if memory != "ram":
        from tianshou_offline.data.ondisk import choose_memory, load_disk_files, observation_bytes

        where = f"{len(files)} shard(s)"
        if choose_memory(memory, observation_bytes(files), where) == "disk":
            return load_disk_files(files, join_episodes=join_episodes, include_info=include_info)
    return load_framestack_files(
        files, join_episodes=join_episodes, include_info=include_info, progress=progress
    )
