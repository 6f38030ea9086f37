"""tianshou-offline: offline-RL datasets as Tianshou ReplayBuffers stored as HDF5.

Public API (re-exported here):

- :func:`load_buffer` / :func:`save_buffer`: read and write the HDF5 buffer format
  (``docs/FORMAT.md``), Tianshou's own ``save_hdf5`` files and the D4RL key layout.
- :class:`BufferWriter`: the streaming, atomic writer every converter and the recorder use.
- :class:`EpisodeRecorder`: a gymnasium wrapper that records finished episodes to a file.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

from tianshou_offline._version import __version__
from tianshou_offline.errors import (
    DatasetFormatError,
    DataValidationError,
    OutputBusyError,
    OutputExistsError,
    OutputWriteError,
    SchemaVersionError,
    SourceNotFoundError,
    SpaceSerializationError,
    TianshouOfflineError,
    UnsafeDataError,
)

if TYPE_CHECKING:
    from tianshou_offline.data.buffer import load_buffer, save_buffer
    from tianshou_offline.data.format import FORMAT_VERSION, Provenance, read_metadata
    from tianshou_offline.data.writer import BufferWriter
    from tianshou_offline.recording import EpisodeRecorder

# TensorBoard (which Tianshou imports) imports TensorFlow when it is installed (the `test` and
# `tfds` extras): seconds of start-up, ~500 MB and lines of TensorFlow/CUDA log on stderr,
# although writing event files does not need it. Its documented switch, the marker module
# `tensorboard.compat.notf`, makes it use its built-in stub, as the CLI and the examples do.
# Not when TensorFlow is already imported: then the user's TensorBoard keeps it (e.g. for
# event files on gs://, which only TensorFlow's file systems write; import TensorFlow before
# tianshou_offline for that). `convert tfds` imports TensorFlow itself, where it reads RLDS.
if "tensorflow" not in sys.modules:
    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))

# Imported on first use: importing tianshou (and through it tensorboard) takes seconds, which
# commands such as `tianshou-offline inspect` should not pay.
_LAZY = {
    "load_buffer": "tianshou_offline.data.buffer",
    "save_buffer": "tianshou_offline.data.buffer",
    "FORMAT_VERSION": "tianshou_offline.data.format",
    "Provenance": "tianshou_offline.data.format",
    "read_metadata": "tianshou_offline.data.format",
    "BufferWriter": "tianshou_offline.data.writer",
    "EpisodeRecorder": "tianshou_offline.recording",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tianshou_offline' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "FORMAT_VERSION",
    "BufferWriter",
    "DataValidationError",
    "DatasetFormatError",
    "EpisodeRecorder",
    "OutputBusyError",
    "OutputExistsError",
    "OutputWriteError",
    "Provenance",
    "SchemaVersionError",
    "SourceNotFoundError",
    "SpaceSerializationError",
    "TianshouOfflineError",
    "UnsafeDataError",
    "__version__",
    "load_buffer",
    "read_metadata",
    "save_buffer",
]
