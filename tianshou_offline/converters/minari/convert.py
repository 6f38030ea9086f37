"""``convert_minari``: a Minari dataset → a tianshou-offline buffer file (the package
docstring has the semantics)."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from tianshou_offline.converters.minari.readers import (
    _ArrowFastReader,
    _Block,
    _block_rows,
    _check_block,
    _episode_blocks,
    _HDF5FastReader,
    _minari_episodes,
)
from tianshou_offline.converters.minari.source import (
    CONVERTER_NAME,
    NO_SEED,
    open_minari_dataset,
    resolve_minari_source,
    select_episodes,
)
from tianshou_offline.converters.minari.spaces import (
    _ARRAY_SPACES,
    _has_text,
    _leaves,
)
from tianshou_offline.converters.result import ConversionResult
from tianshou_offline.data.atomic import check_new_output
from tianshou_offline.data.format import Provenance
from tianshou_offline.data.writer import BufferWriter, Compression, NanPolicy
from tianshou_offline.errors import (
    DatasetFormatError,
    DataValidationError,
    MissingDependencyError,
)
from tianshou_offline.progress import progress as progress_bar

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------
# conversion
# --------------------------------------------------------------------------------------


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(_json_safe(v) for v in value)
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, gym.Space):
        return str(value)
    return value


def _env_id(env_spec_json: str | None) -> str | None:
    if not env_spec_json:
        return None
    try:
        doc = json.loads(env_spec_json)
    except json.JSONDecodeError:
        return None
    env_id = doc.get("id") if isinstance(doc, Mapping) else None
    return str(env_id) if env_id else None


def convert_minari(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    episodes: str | slice | Sequence[int] | None = None,
    with_infos: bool = False,
    download: bool = False,
    reader: str = "auto",
    compression: Compression = None,
    nan_policy: NanPolicy = "error",
    overwrite: bool = False,
    progress: bool | None = None,
) -> ConversionResult:
    """Convert a Minari dataset to a tianshou-offline buffer file (see the module doc).

    :param source: a dataset id (``D4RL/door/human-v2``) found under ``$MINARI_DATASETS_PATH``
        (or ``~/.minari/datasets``), or a local dataset directory.
    :param output: the ``.hdf5`` buffer file to write (atomically).
    :param episodes: which episodes (positions in the dataset): ``"0:100"``, ``"1,5,9:20"``,
        a slice or a sequence of ints; None for all.
    :param with_infos: store episode infos as ``info`` (uses Minari's episode iterator).
    :param download: download the dataset id first if it is not available locally.
    :param reader: ``"auto"`` (fast path when possible) or ``"minari"`` (always
        ``iterate_episodes``).
    :param compression: output compression: None, ``"gzip"`` or ``"lzf"``.
    :param nan_policy: non-finite rewards: ``"error"`` (refuse), ``"warn"`` or ``"ignore"``.
    :param overwrite: replace an existing output.
    :param progress: progress on stderr (a bar on a terminal, plain lines every 30 s
        otherwise; False: none).
    :returns: the output, transition and episode counts; ``details["reader"]`` names the
        reader used.
    :raises MissingDependencyError: ``minari`` (or ``pyarrow`` for Arrow data) not installed.
    :raises SourceNotFoundError: the dataset is not available locally, or an episode index
        is out of range.
    :raises DatasetFormatError: a malformed dataset, unsupported space (Text; Dict/Tuple
        actions).
    :raises DataValidationError: NaN rewards with ``nan_policy="error"``; bad selection.
    :raises OutputExistsError: ``output`` exists and ``overwrite`` is False.
    """
    if reader not in ("auto", "minari"):
        raise DataValidationError(f"reader={reader!r}: expected 'auto' or 'minari'")
    start = time.perf_counter()
    out = Path(output)
    data_path, dataset_id = resolve_minari_source(source, download=download)
    check_new_output(out, overwrite=overwrite)
    dataset = open_minari_dataset(data_path)
    metadata = dict(dataset.storage.metadata)
    obs_space: gym.Space[Any] = dataset.observation_space
    act_space: gym.Space[Any] = dataset.action_space
    if not isinstance(act_space, _ARRAY_SPACES):
        raise DatasetFormatError(
            f"{data_path}: action space {act_space} is not supported: expected Box, Discrete, "
            "MultiDiscrete or MultiBinary"
        )
    positions = select_episodes(episodes, int(dataset.total_episodes))
    ids = [int(i) for i in np.asarray(dataset.episode_indices)[positions]]
    fmt = str(metadata.get("data_format", "hdf5"))
    jpeg = bool(metadata.get("jpeg_encoding", True))
    obs_leaves = _leaves(obs_space, jpeg)
    act_ok = _leaves(act_space, jpeg) is not None
    block_iter: Iterator[_Block]
    block_rows = _block_rows(obs_space, act_space)
    total = metadata.get("total_steps")
    if isinstance(total, int) and total > 0:
        # no block needs more rows than the dataset has steps (the columns of a block are
        # allocated whole: 32 MiB for 17 steps before); an episode longer than the metadata
        # says still gets a block of its own length (_in_blocks)
        block_rows = min(block_rows, total)
    if reader == "auto" and not with_infos and obs_leaves is not None and act_ok and fmt == "hdf5":
        used = "fast-hdf5"
        block_iter = _HDF5FastReader(data_path, obs_leaves, obs_space, block_rows).blocks(ids)
    elif (
        reader == "auto"
        and not with_infos
        and obs_leaves is not None
        and act_ok
        and fmt in ("arrow", "parquet")
    ):
        used = f"fast-{fmt}"
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise MissingDependencyError(
                f"{data_path}: reading Minari '{fmt}' storage needs pyarrow: pip install pyarrow"
            ) from None
        block_iter = _ArrowFastReader(
            data_path, fmt, obs_leaves, obs_space, act_space, block_rows
        ).blocks(ids)
    else:
        used = "minari"
        if _has_text(obs_space):
            raise DatasetFormatError(
                f"{data_path}: observation space {obs_space} contains a Text space, which the "
                "buffer format does not store"
            )
        block_iter = _episode_blocks(
            _minari_episodes(dataset, ids, with_infos, data_path), data_path, with_infos
        )

    env_spec = metadata.get("env_spec")
    env_spec = env_spec if isinstance(env_spec, str) else None
    ds_id = str(metadata.get("dataset_id") or dataset_id or data_path.parent.name)
    minari_meta = {
        k: _json_safe(v)
        for k, v in metadata.items()
        if k not in ("observation_space", "action_space", "env_spec")
    }
    selection = (
        None if episodes is None else (episodes if isinstance(episodes, str) else repr(episodes))
    )
    extra = {
        "data_path": str(data_path.resolve()),
        "minari_metadata": minari_meta,
        "episodes": selection or "all",
        "reader": used,
        "with_infos": with_infos,
    }
    extra_attrs: dict[str, str] = {"minari_dataset_id": ds_id}
    for key in ("ref_min_score", "ref_max_score"):
        if metadata.get(key) is not None:
            extra_attrs[key] = repr(float(metadata[key]))
    if isinstance(metadata.get("eval_env_spec"), str):
        extra_attrs["eval_env_spec"] = metadata["eval_env_spec"]
    provenance = Provenance(
        source="minari", dataset_id=ds_id, converter=CONVERTER_NAME, extra=extra
    )

    bad_rewards = 0
    with (
        BufferWriter(
            out,
            observation_space=obs_space,
            action_space=act_space,
            env_id=_env_id(env_spec),
            env_spec=env_spec,
            provenance=provenance,
            compression=compression,
            overwrite=overwrite,
            nan_policy="ignore",  # checked per episode below, reported once
            extra_attrs=extra_attrs,
        ) as writer,
        progress_bar(
            total=len(ids), unit="episode", desc=f"converting {ds_id}", enabled=progress
        ) as bar,
    ):
        for block in block_iter:
            if not block.ids:
                bar.update(block.consumed)
                continue
            done, bad = _check_block(block, data_path, nan_policy)
            bad_rewards += bad
            try:
                writer.add_transitions(
                    obs=block.obs,
                    obs_next=block.obs_next,
                    act=block.actions,
                    rew=block.rewards,
                    terminated=block.terminations,
                    truncated=block.truncations,
                    info=block.info,
                    done=done,
                    episode_metadata=[
                        {"episode_id": ep, "seed": NO_SEED if seed is None else seed}
                        for ep, seed in zip(block.ids, block.seeds, strict=True)
                    ],
                )
            except DataValidationError as e:
                which = (
                    f"episode {block.ids[0]}"
                    if len(block.ids) == 1
                    else f"episodes {block.ids[0]}..{block.ids[-1]}"
                )
                raise DataValidationError(f"{data_path}: {which}: {e}") from None
            bar.update(block.consumed)
    if bad_rewards:
        log.warning("%s: kept %d NaN/inf rewards", data_path, bad_rewards)
    log.info(
        "%s → %s: %d episodes, %d transitions (%s reader)",
        ds_id,
        out,
        writer.num_episodes,
        writer.num_transitions,
        used,
    )
    return ConversionResult(
        source=data_path,
        outputs=(out,),
        num_transitions=writer.num_transitions,
        num_episodes=writer.num_episodes,
        seconds=time.perf_counter() - start,
        details={"reader": used, "dataset_id": ds_id},
    )
