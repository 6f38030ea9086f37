"""RLDS datasets prepared with tensorflow-datasets → tianshou-offline buffers.

Reads an already prepared dataset from a local ``data_dir`` (never downloads): e.g.
``rlu_atari/Breakout_run_1``, ``d4rl_mujoco_halfcheetah/v2-medium`` or any RLDS dataset whose
episodes hold a ``steps`` dataset with ``observation``, ``action``, ``reward``, ``is_first``,
``is_last``, ``is_terminal`` (and ``discount``). Needs the optional ``tfds`` extra
(``tensorflow-datasets`` and ``tensorflow``).

RLDS step ``t`` holds ``o_t``, the action ``a_t`` taken after it and the reward ``r_t`` that
followed. An episode of ``T`` steps gives ``T - 1`` transitions ``(o_t, a_t, r_t, o_{t+1})``
for ``t < T - 1``: the last step contributes only its observation (RLDS leaves its action and
reward undefined when it is terminal; when it is not, its successor is unknown). The last
transition is ``terminated`` when the last step ``is_terminal``, else ``truncated``.
Episodes of one step give no transition and are skipped (logged).

Observations are stored as they come (nested dicts become nested columns) with ``obs_next``.
With ``frame_stack=S`` (for image observations such as ``rlu_atari``'s ``(84, 84, 1)``), the
file is compact instead: one ``(H, W)`` frame per step, Tianshou ``stack_num=S``, and the
exact final ``obs_next`` of each episode stored as a stack patch; stacks at an episode start
repeat its first frame (Tianshou's convention). Open such files with
:func:`tianshou_offline.converters.rl_unplugged.load_rl_unplugged` (or
:func:`~tianshou_offline.data.framestack.load_framestack_files`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from tianshou_offline.converters.result import ConversionResult
from tianshou_offline.data.atomic import atomic_output
from tianshou_offline.data.format import Provenance
from tianshou_offline.data.framestack import (
    KEY_OBS_NEXT,
    PatchSpool,
)
from tianshou_offline.data.writer import BufferWriter, Compression
from tianshou_offline.errors import (
    DatasetFormatError,
    OutputExistsError,
    SourceNotFoundError,
)
from tianshou_offline.progress import track

log = logging.getLogger(__name__)

CONVERTER_NAME = "tianshou_offline.converters.tfds"
_STEP_KEYS = ("observation", "action", "reward", "is_first", "is_last", "is_terminal")


def _import_tfds() -> Any:
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError(
            "convert tfds needs tensorflow-datasets and tensorflow: "
            "pip install 'tianshou-offline[tfds]'"
        ) from e
    return tfds


def _builder(tfds: Any, name: str, data_dir: Path) -> Any:
    """A prepared builder for ``name`` in ``data_dir`` (registered name or a directory)."""
    try:
        builder = tfds.builder(name, data_dir=str(data_dir))
        if builder.is_prepared():
            return builder
    except Exception as e:  # DatasetNotFoundError, unknown config, ...
        log.debug("tfds.builder(%s) failed: %s", name, e)
    # a dataset prepared elsewhere: data_dir/name[/config]/version
    base = data_dir / name
    candidates = sorted(p.parent for p in base.rglob("dataset_info.json")) if base.is_dir() else []
    if candidates:
        return tfds.builder_from_directory(str(candidates[-1]))
    raise SourceNotFoundError(
        f"{data_dir}: tensorflow-datasets dataset {name!r} is not prepared there (no "
        f"{name}/.../dataset_info.json); prepare it with tfds (download_and_prepare) first"
    )


def _as_numpy(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {k: _as_numpy(v) for k, v in x.items()}
    return np.asarray(x.numpy() if hasattr(x, "numpy") else x)


def _first(x: Any) -> np.ndarray:
    """The first leaf of a (nested) column."""
    while isinstance(x, Mapping):
        x = next(iter(x.values()))
    return np.asarray(x)


def _slice(x: Any, s: slice) -> Any:
    if isinstance(x, Mapping):
        return {k: _slice(v, s) for k, v in x.items()}
    return x[s]


def _space_of(x: Any) -> gym.Space[Any]:
    if isinstance(x, Mapping):
        return gym.spaces.Dict({k: _space_of(v) for k, v in x.items()})
    a = np.asarray(x)
    if np.issubdtype(a.dtype, np.integer) or a.dtype == bool:
        info = np.iinfo(a.dtype) if a.dtype != bool else None
        lo = 0 if info is None else info.min
        hi = 1 if info is None else info.max
        return gym.spaces.Box(lo, hi, a.shape[1:], a.dtype)
    return gym.spaces.Box(-np.inf, np.inf, a.shape[1:], a.dtype)


def iter_episodes(builder: Any, split: str) -> Iterator[dict[str, Any]]:
    """Yield RLDS episodes as ``{"steps": {key: (T, ...) array or dict}, **metadata}``."""
    import tensorflow as tf

    ds = builder.as_dataset(split=split)
    for ep in ds:
        steps_ds = ep["steps"]
        steps = tf.data.Dataset.get_single_element(steps_ds.batch(1 << 30))
        out = {k: _as_numpy(v) for k, v in ep.items() if k != "steps"}
        out["steps"] = _as_numpy(steps)
        yield out


def convert_tfds(
    source: str,
    output: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str],
    split: str = "train",
    frame_stack: int | None = None,
    overwrite: bool = False,
    compression: Compression = None,
    max_episodes: int | None = None,
    progress: bool = False,
) -> ConversionResult:
    """Convert a prepared RLDS dataset to a buffer file.

    :param source: the tfds name, with config/version as tfds accepts it
        (``rlu_atari/Breakout_run_1``), or a directory name under ``data_dir``.
    :param data_dir: the tensorflow-datasets data directory holding the prepared dataset.
    :param output: the ``.hdf5`` file (written atomically).
    :param split: the split to read.
    :param frame_stack: store image observations compactly with this Tianshou ``stack_num``.
    :param max_episodes: stop after this many episodes.
    :returns: the output and its counts; ``details["skipped_episodes"]`` counts episodes of
        fewer than 2 steps (no transition).
    :raises SourceNotFoundError: the dataset is not prepared in ``data_dir``.
    :raises DatasetFormatError: episodes lack the RLDS step fields.
    """
    start = time.perf_counter()
    name = source
    tfds = _import_tfds()
    data = Path(data_dir).expanduser()
    out = Path(output)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out}: output exists; pass overwrite=True (CLI: --overwrite)")
    if not data.is_dir():
        raise SourceNotFoundError(f"{data}: no such data directory")
    builder = _builder(tfds, name, data)
    if split not in builder.info.splits:
        raise SourceNotFoundError(
            f"{name}: no split {split!r}; it has {', '.join(builder.info.splits.keys())}"
        )
    writer: BufferWriter | None = None
    spool: PatchSpool | None = None
    n_trans = n_eps = skipped = 0
    # a file that appeared at ``out`` meanwhile is kept unless overwrite
    with atomic_output(out, overwrite=overwrite, tag="tfds") as tmp:
        try:
            total = builder.info.splits[split].num_examples
            for ep in track(
                iter_episodes(builder, split),
                total=total,
                desc=f"convert {name}",
                unit="episode",
                enabled=progress,
            ):
                steps = ep["steps"]
                missing = [k for k in _STEP_KEYS if k not in steps]
                if missing:
                    raise DatasetFormatError(
                        f"{name}: episode steps lack {', '.join(missing)}; expected RLDS steps with "
                        f"{', '.join(_STEP_KEYS)}"
                    )
                T = len(np.asarray(steps["is_last"]))
                if T < 2:
                    skipped += 1
                    continue
                obs_all = steps["observation"]
                if frame_stack:
                    frames = _first(obs_all)
                    if frames.ndim == 4 and frames.shape[-1] == 1:
                        frames = frames[..., 0]
                    if frames.ndim != 3:
                        raise DatasetFormatError(
                            f"{name}: frame_stack needs image observations (H, W[, 1]); got steps of "
                            f"shape {frames.shape[1:]}"
                        )
                    obs: Any = frames[: T - 1]
                    obs_next: Any = None
                else:
                    obs = _slice(obs_all, slice(0, T - 1))
                    obs_next = _slice(obs_all, slice(1, T))
                act = np.asarray(steps["action"])[: T - 1]
                rew = np.asarray(steps["reward"], dtype=np.float32)[: T - 1]
                terminal = bool(np.asarray(steps["is_terminal"])[-1])
                term = np.zeros(T - 1, bool)
                trunc = np.zeros(T - 1, bool)
                (term if terminal else trunc)[-1] = True
                info = {}
                if "discount" in steps:
                    info["discount"] = np.asarray(steps["discount"], dtype=np.float32)[: T - 1]
                if writer is None:
                    obs_space = (
                        gym.spaces.Box(0, 255, (frame_stack, *obs.shape[1:]), obs.dtype)
                        if frame_stack
                        else _space_of(obs)
                    )
                    act_space: gym.Space[Any] = _space_of(act)
                    writer = BufferWriter(
                        tmp,
                        observation_space=obs_space,
                        action_space=act_space,
                        provenance=Provenance(
                            source="tfds",
                            dataset_id=name,
                            converter=CONVERTER_NAME,
                            extra={
                                "split": split,
                                "data_dir": str(data),
                                "frame_stack": frame_stack,
                            },
                        ),
                        compression=compression,
                        store_obs_next=not frame_stack,
                        stack_num=frame_stack or 1,
                        save_only_last_obs=bool(frame_stack),
                        overwrite=True,
                    )
                    if frame_stack:
                        spool = PatchSpool(out, (frame_stack, *obs.shape[1:]), obs.dtype)
                writer.add_episode(
                    obs=obs,
                    act=act,
                    rew=rew,
                    terminated=term,
                    truncated=trunc,
                    obs_next=obs_next,
                    info=info or None,
                )
                if spool is not None and frame_stack:
                    # the final obs_next: the stack ending at the last step's frame
                    frames = _first(obs_all)
                    frames = frames[..., 0] if frames.ndim == 4 else frames
                    idx = [max(0, T - 1 - k) for k in range(frame_stack - 1, -1, -1)]
                    spool.add(n_trans + T - 2, KEY_OBS_NEXT, np.ascontiguousarray(frames[idx]))
                n_trans += T - 1
                n_eps += 1
                if max_episodes is not None and n_eps >= max_episodes:
                    break
            if writer is None:
                raise DatasetFormatError(
                    f"{name}: split {split!r} has no episode of 2 or more steps"
                )
            writer.close()
            if spool is not None:
                spool.attach(
                    tmp, compression=compression, attrs={"tfds.frame_stack": frame_stack or 0}
                )
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        finally:
            if spool is not None:
                spool.discard()
    if skipped:
        log.info("%s: skipped %d episodes of fewer than 2 steps", name, skipped)
    return ConversionResult(
        source=name,
        outputs=(out,),
        num_transitions=n_trans,
        num_episodes=n_eps,
        seconds=time.perf_counter() - start,
        details={"skipped_episodes": skipped},
    )
