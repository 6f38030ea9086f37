"""Finding and opening Minari datasets (ids, local directories, downloads) and choosing
episodes (``--episodes`` selections)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import numpy as np

from tianshou_offline.data.reading import read_errors
from tianshou_offline.errors import (
    DatasetFormatError,
    DataValidationError,
    MissingDependencyError,
    SourceNotFoundError,
    TianshouOfflineError,
    raised_within,
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


MAX_METADATA_BYTES = 64 << 20
"""A ``metadata.json`` larger than this is refused (Minari's are a few kilobytes)."""


MINARI_DATA_ERRORS: tuple[type[Exception], ...] = (
    AssertionError,  # Minari's checks of its metadata
    ValueError,  # json, gymnasium's space parsers, numpy casts, pyarrow's ArrowInvalid
    TypeError,  # a field of the wrong type (also pyarrow's ArrowTypeError)
    KeyError,  # a missing field or episode
    IndexError,
    AttributeError,  # a JSON value of the wrong kind where Minari expects an object
    OSError,  # pyarrow's and the file system's read errors
    EOFError,
    RecursionError,  # json of a deeply nested document
)
"""What Minari and the parsers it calls (json, gymnasium, numpy, pyarrow) raise about
malformed data."""


@contextlib.contextmanager
def minari_errors(data_path: Path) -> Iterator[None]:
    """The boundary around Minari's own reading code: h5py's errors become typed errors (as
    everywhere, :func:`~tianshou_offline.data.reading.read_errors`), and so does anything
    else Minari (or the parsers it calls: json, gymnasium, pyarrow) raises while it parses a
    dataset (it checks its metadata with ``assert`` and lets its parsers' exceptions
    through), naming the dataset directory: the exception types those raise about bad data
    (:data:`MINARI_DATA_ERRORS`), and only when they came out of Minari's code
    (:func:`~tianshou_offline.errors.raised_within`). Anything else — an exception raised by
    our own code inside the boundary, or one that never went through Minari — passes through
    as itself."""
    try:
        with read_errors(data_path / "main_data.hdf5"):
            yield
    except (TianshouOfflineError, MemoryError, KeyboardInterrupt):
        raise
    except MINARI_DATA_ERRORS as e:
        if not raised_within(e, ("minari",)):  # a bug of ours, not a fault of the data
            raise
        raise DatasetFormatError(
            f"{data_path}: Minari cannot read the dataset: {type(e).__name__}: {e}"
        ) from e


def _stored_episodes(data_path: Path, fmt: str) -> int:
    """How many episodes the storage really holds (HDF5: ``episode_<i>`` groups; Arrow and
    Parquet: one directory per episode)."""
    if fmt == "hdf5":
        from tianshou_offline.data.format import open_h5

        with open_h5(data_path / "main_data.hdf5") as f:
            return sum(1 for k in f.keys() if k.startswith("episode_"))
    return sum(1 for p in data_path.iterdir() if p.is_dir() and p.name.isdigit())


def check_minari_metadata(data_path: Path) -> dict[str, Any]:
    """``metadata.json`` of a Minari data directory, checked before Minari trusts it: a JSON
    object whose counts are integers within what the storage holds and whose spaces and
    specs are strings.

    :raises DatasetFormatError: naming the file, the field, what was found and expected.
    """
    path = data_path / "metadata.json"
    if path.stat().st_size > MAX_METADATA_BYTES:
        raise DatasetFormatError(
            f"{path}: is {path.stat().st_size} bytes; expected a Minari metadata file of at most "
            f"{MAX_METADATA_BYTES}"
        )
    try:
        doc = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError, JSONDecodeError
        raise DatasetFormatError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise DatasetFormatError(f"{path}: holds a {type(doc).__name__}; expected a JSON object")

    def fail(key: str, expected: str) -> DatasetFormatError:
        return DatasetFormatError(
            f"{path}: {key!r} is {str(doc.get(key))[:60]!r}; expected {expected}"
        )

    for key in ("total_episodes", "total_steps"):
        value = doc.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise fail(key, "an integer >= 0")
    fmt = doc.get("data_format", "hdf5")
    if fmt not in ("hdf5", "arrow", "parquet"):
        raise fail("data_format", "'hdf5', 'arrow' or 'parquet'")
    for key in ("observation_space", "action_space", "env_spec", "eval_env_spec", "dataset_id",
                "minari_version"):  # fmt: skip
        if key in doc and doc[key] is not None and not isinstance(doc[key], str):
            raise fail(key, "a string")
    stored = _stored_episodes(data_path, fmt)
    if doc.get("total_episodes", 0) > stored:
        raise DatasetFormatError(
            f"{path}: 'total_episodes' is {doc['total_episodes']} but the {fmt} storage holds "
            f"{stored} episodes"
        )
    return doc


def open_minari_dataset(data_path: Path) -> Any:
    """``minari.MinariDataset`` for a data directory, with typed errors (its metadata is
    checked first: :func:`check_minari_metadata`)."""
    minari = _import_minari()
    check_minari_metadata(data_path)
    with minari_errors(data_path):
        return minari.MinariDataset(data_path)


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
