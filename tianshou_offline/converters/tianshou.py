"""Tianshou ``save_hdf5`` files (``ReplayBuffer``/``VectorReplayBuffer``) and D4RL-key files
→ a tianshou-offline buffer file, carrying spaces, env id and provenance."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tianshou_offline.converters.result import ConversionResult
from tianshou_offline.data.buffer import load_buffer, save_buffer
from tianshou_offline.data.format import Provenance, read_metadata
from tianshou_offline.data.writer import Compression

if TYPE_CHECKING:
    import gymnasium as gym

CONVERTER_NAME = "tianshou-offline convert tianshou"


def convert_tianshou(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    allow_pickle: bool = False,
    include_info: bool = True,
    observation_space: gym.Space[Any] | None = None,
    action_space: gym.Space[Any] | None = None,
    env_id: str | None = None,
    compression: Compression = None,
    overwrite: bool = False,
) -> ConversionResult:
    """Rewrite a file ``load_buffer`` reads (a Tianshou ``save_hdf5`` file, a D4RL-key file or
    one of ours) as a tianshou-offline buffer file.

    :param allow_pickle: unpickle pickled data columns (only for files you trust).
    :param include_info: keep the ``info`` columns.
    :param observation_space: the gymnasium observation space to store (Tianshou files
        carry none).
    :param action_space: the gymnasium action space to store.
    :param env_id: the gymnasium id of the environment, stored in the file.
    :raises UnsafeDataError: pickled data columns without ``allow_pickle``.
    :raises OutputExistsError: ``output`` exists and ``overwrite`` is False.
    """
    start = time.perf_counter()
    src = Path(source)
    md = read_metadata(src)
    buf = load_buffer(src, allow_pickle=allow_pickle, include_info=include_info)
    out = save_buffer(
        buf,
        output,
        observation_space=observation_space,
        action_space=action_space,
        env_id=env_id,
        provenance=Provenance(
            source="tianshou" if md.layout.startswith("tianshou") else md.layout,
            dataset_id=src.name,
            converter=CONVERTER_NAME,
            extra={"input_layout": md.layout},
        ),
        compression=compression,
        overwrite=overwrite,
    )
    written = read_metadata(out)
    return ConversionResult(
        source=src,
        outputs=(out,),
        num_transitions=written.num_transitions,
        num_episodes=written.num_episodes or 0,
        seconds=time.perf_counter() - start,
        details={"input_layout": md.layout},
    )
