"""Tianshou ``save_hdf5`` files (``ReplayBuffer``/``VectorReplayBuffer``) and D4RL-key files
→ a tianshou-offline buffer file, carrying spaces, env id and provenance."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tianshou_offline.converters.result import ConversionResult
from tianshou_offline.data.buffer import load_buffer, save_buffer
from tianshou_offline.data.format import Provenance, read_metadata
from tianshou_offline.data.writer import Compression

log = logging.getLogger(__name__)

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
        carry none; default: the source's, else ``env_id``'s).
    :param action_space: the gymnasium action space to store (likewise).
    :param env_id: the gymnasium id of the environment, stored in the file; its spaces are
        stored where none are given (made once to read them, checked against the data).
    :raises UnsafeDataError: pickled data columns without ``allow_pickle``.
    Where the data does not fit ``env_id``'s spaces (its shapes or action kind), a warning
    says so and no spaces are stored (``env_id`` is kept as a label).
    :raises OutputExistsError: ``output`` exists and ``overwrite`` is False.
    """
    start = time.perf_counter()
    src = Path(source)
    md = read_metadata(src)
    buf = load_buffer(src, allow_pickle=allow_pickle, include_info=include_info)
    # spaces: given, else the source's own (a file of ours), else the environment's
    if observation_space is None:
        observation_space = md.observation_space
    if action_space is None:
        action_space = md.action_space
    if env_id is not None and (observation_space is None or action_space is None):
        env_obs, env_act = _env_spaces(env_id)
        misfit = [
            m
            for m in (
                _misfit(src, "observations", np.asarray(buf.obs[:1]), env_obs, env_id)
                if observation_space is None
                else None,
                _misfit(src, "actions", np.asarray(buf.act[:1]), env_act, env_id)
                if action_space is None
                else None,
            )
            if m
        ]
        if env_obs is None:
            pass
        elif misfit:  # an env id as a label only (as before): stored, its spaces not
            log.warning("%s; no spaces stored", "; ".join(misfit))
        else:
            if observation_space is None:
                observation_space = env_obs
            if action_space is None:
                action_space = env_act
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


def _env_spaces(env_id: str) -> tuple[gym.Space[Any] | None, gym.Space[Any] | None]:
    """The spaces of ``env_id``'s environment (made once), or Nones with a warning where it
    cannot be made here (e.g. an environment registered only where the data is used)."""
    import gymnasium as gym

    try:
        env = gym.make(env_id)
    except gym.error.Error as e:
        log.warning("env_id %r: cannot make it to read its spaces (%s); no spaces stored",
                    env_id, " ".join(str(e).split()))  # fmt: skip
        return None, None
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def _misfit(
    src: Path, what: str, first: np.ndarray, space: gym.Space[Any] | None, env_id: str
) -> str | None:
    """Why the first row of a column does not fit ``space`` (its shape, and for ``Discrete``
    an integer dtype), or None: spaces taken from ``env_id`` must describe the data."""
    import gymnasium as gym

    shape = first.shape[1:]
    if space is None:
        return None
    if isinstance(space, gym.spaces.Discrete):
        ok = shape in ((), (1,)) and np.issubdtype(first.dtype, np.integer)
    else:
        ok = space.shape is None or shape == space.shape
    if ok:
        return None
    return (
        f"{src}: {what} are {first.dtype} of shape {shape}, not {env_id}'s space {space} "
        "(give the space as JSON: --observation-space/--action-space)"
    )
