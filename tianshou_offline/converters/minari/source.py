"""Finding and opening Minari datasets (ids, local directories, downloads) and choosing
episodes (``--episodes`` selections)."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import numpy as np

from tianshou_offline.errors import (
    DatasetFormatError,
    DataValidationError,
    MissingDependencyError,
    SourceNotFoundError,
)

log = logging.getLogger(__name__)


CONVERTER_NAME = "tianshou_offline.converters.minari"
RESET_INFO_KEY = "_reset"
"""Sub-key of ``info`` holding each episode's ``reset`` info (see the module doc)."""
NO_SEED = -1
"""The ``seed`` episode-metadata value of episodes recorded without a seed."""


def _import_minari() -> ModuleType:
    try:
        import minari
    except ImportError as e:
        raise MissingDependencyError(
            f"the Minari converter needs the 'minari' package ({e}); install it with "
            "pip install 'tianshou-offline[minari]' (and pyarrow for Arrow datasets)"
        ) from None
    return cast(ModuleType, minari)


def minari_datasets_root() -> Path:
    """Minari's local dataset root: ``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``."""
    env = os.environ.get("MINARI_DATASETS_PATH")
    return Path(env).expanduser() if env else Path("~/.minari/datasets").expanduser()


def _parse_dataset_id(dataset_id: str) -> tuple[str | None, str, int]:
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        ns, name, version = parse_dataset_id(dataset_id)
    except (ValueError, TypeError):
        raise DataValidationError(
            f"{dataset_id!r} is not a valid Minari dataset id: expected (namespace/)name-vN, "
            "e.g. D4RL/door/human-v2"
        ) from None
    return ns, name, int(version)


# --------------------------------------------------------------------------------------
# locating and opening
# --------------------------------------------------------------------------------------


def resolve_minari_source(
    id_or_path: str | os.PathLike[str], *, download: bool = False
) -> tuple[Path, str | None]:
    """Find a Minari dataset's data directory (the one holding ``metadata.json``).

    :param id_or_path: a dataset id (``D4RL/door/human-v2``), a dataset directory or its
        ``data`` sub-directory.
    :param download: download a dataset id that is not available locally (needs network).
    :returns: ``(data directory, dataset id or None for a path)``.
    :raises SourceNotFoundError: not found locally (the message says where it looked).
    :raises DatasetFormatError: a directory that is not a Minari dataset.
    """
    text = os.fspath(id_or_path)
    p = Path(text).expanduser()
    if p.exists():
        if (p / "metadata.json").is_file():
            return p, None
        if (p / "data" / "metadata.json").is_file():
            return p / "data", None
        raise DatasetFormatError(
            f"{p}: not a Minari dataset directory (no metadata.json in it or in {p / 'data'})"
        )
    if text.startswith(("/", ".", "~")) or text.endswith(("/", "/data")):
        raise SourceNotFoundError(f"{p}: no such Minari dataset directory")
    minari = _import_minari()
    _parse_dataset_id(text)
    root = minari_datasets_root()
    data = root / text / "data"
    if (data / "metadata.json").is_file():
        return data, text
    if download:
        log.info("downloading Minari dataset %s into %s", text, root)
        try:
            minari.download_dataset(text)
        except Exception as e:  # network, unknown remote id, ...
            raise SourceNotFoundError(f"Minari dataset {text!r}: download failed: {e}") from e
        if (data / "metadata.json").is_file():
            return data, text
    raise SourceNotFoundError(
        f"Minari dataset {text!r} not found: looked in {data} "
        f"(MINARI_DATASETS_PATH={os.environ.get('MINARI_DATASETS_PATH', '<unset>')}, "
        "default ~/.minari/datasets); download it with `minari download "
        f"{text}` or pass --download"
    )


def open_minari_dataset(data_path: Path) -> Any:
    """``minari.MinariDataset`` for a data directory, with typed errors."""
    minari = _import_minari()
    try:
        return minari.MinariDataset(data_path)
    except (ValueError, KeyError, json.JSONDecodeError, OSError) as e:
        raise DatasetFormatError(f"{data_path}: cannot open Minari dataset: {e}") from e


# --------------------------------------------------------------------------------------
# episode selection
# --------------------------------------------------------------------------------------

_SELECTION_RE = re.compile(r"^\s*(-?\d*)\s*(?::\s*(-?\d*)\s*(?::\s*(-?\d*)\s*)?)?$")


def parse_episode_selection(spec: str) -> list[slice | int]:
    """Parse ``"0:100"``, ``":10"``, ``"5"``, ``"0:100:2"``, ``"1,3,10:20"`` (Python slice
    syntax over the dataset's episodes, in order).

    :raises DataValidationError: malformed.
    """
    parts: list[slice | int] = []
    for item in spec.split(","):
        m = _SELECTION_RE.match(item)
        if not m or not item.strip():
            raise DataValidationError(
                f"episode selection {spec!r}: {item!r} is not an index or a start:stop[:step] slice"
            )
        a, b, c = m.groups()
        if ":" not in item:
            parts.append(int(a))
        else:
            if c is not None and c.strip() == "0":
                raise DataValidationError(f"episode selection {spec!r}: slice step must not be 0")
            parts.append(slice(int(a) if a else None, int(b) if b else None, int(c) if c else None))
    return parts


def select_episodes(selection: str | slice | Sequence[int] | None, total: int) -> np.ndarray:
    """Positions (``0 .. total-1``) of the selected episodes, in selection order.

    :raises SourceNotFoundError: an index beyond the dataset.
    :raises DataValidationError: malformed selection, or nothing selected.
    """
    if selection is None:
        return np.arange(total)
    parts: list[slice | int]
    if isinstance(selection, str):
        parts = parse_episode_selection(selection)
    elif isinstance(selection, slice):
        parts = [selection]
    else:
        parts = [int(i) for i in selection]
    out: list[np.ndarray] = []
    for part in parts:
        if isinstance(part, slice):
            out.append(np.arange(total)[part])
        else:
            if not -total <= part < total:
                raise SourceNotFoundError(
                    f"episode {part} was selected but the dataset has {total} episodes"
                )
            out.append(np.array([part % total]))
    idx = np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
    if idx.size == 0:
        raise DataValidationError(
            f"episode selection {selection!r} selects no episodes (of {total})"
        )
    return idx.astype(np.int64)
