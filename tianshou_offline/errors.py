"""The exceptions raised by tianshou-offline.

Every error names the file, the field, what was found and what was expected, in one line,
so that the CLI can print it verbatim (exit code 2) and API users can catch a precise type.
"""

from __future__ import annotations


class TianshouOfflineError(Exception):
    """Base class of every error this package raises on purpose."""


class DatasetFormatError(TianshouOfflineError, ValueError):
    """A file exists but does not hold what the format (or the source layout) requires."""


class StackNumMismatchError(DatasetFormatError):
    """A frame-stacked file is used with another ``stack_num`` than the one it stores, where its
    content depends on it: exact stacks stored for some rows (stack patches) with a
    ``stack_num`` override, an example's ``--frames-stack``, frames appended by a recorder of
    another stack size. The message names the file, the stored and the requested value."""


class SchemaVersionError(DatasetFormatError):
    """The file was written with a format version this package cannot read."""


class UnsafeDataError(DatasetFormatError):
    """The file stores pickled objects and the caller did not opt in to unpickling them."""


class SourceNotFoundError(TianshouOfflineError, FileNotFoundError):
    """A file, dataset id or directory that was asked for does not exist."""


class OutputExistsError(TianshouOfflineError, FileExistsError):
    """The output path exists and overwriting was not requested."""


class OutputWriteError(TianshouOfflineError, OSError):
    """An output could not be written: the disk is full, a write, a rename or the creation of
    a file failed (a read-only or vanished directory, a temporary on another file system).
    The message names the output and the cause; ``errno`` is the cause's error number where
    known. Nothing was published at the output path and the run's temporary was removed."""


class OutputBusyError(TianshouOfflineError, BlockingIOError):
    """Another process is writing the same output right now (it holds the output's lock);
    this run wrote nothing."""


class SpaceSerializationError(TianshouOfflineError, ValueError):
    """A gymnasium space cannot be serialised to (or read back from) the format's JSON."""


class DataValidationError(TianshouOfflineError, ValueError):
    """Arrays handed to a writer are inconsistent (lengths, dtypes, shapes, NaNs)."""


class UnknownHyperparameterError(DataValidationError):
    """A hyperparameter override (a keyword, a grid's key, a preset's entry) names no field of
    the algorithm's config; the message lists the fields there are."""


class MissingDependencyError(TianshouOfflineError, ImportError):
    """An optional dependency needed for this operation is not installed (the message names
    the pip extra that provides it)."""


class ClusterError(TianshouOfflineError, RuntimeError):
    """A Ray cluster cannot be reached, or a worker cannot use the storage a job needs (the
    message names the node, the path and what every node must see)."""


def raised_by_us(e: BaseException) -> bool:
    """Whether ``e`` was raised by this package's own code (the innermost frame of its
    traceback is a module of ``tianshou_offline``).

    An error boundary around a library (Minari's parsers, ``torch.load``) turns what the
    library raises about bad data into a typed error; an exception raised by our own code
    inside the boundary is a bug and must pass through as itself, not be counted as a
    refusal of the data."""
    tb = e.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    module = str(tb.tb_frame.f_globals.get("__name__", ""))
    return module == "tianshou_offline" or module.startswith("tianshou_offline.")


def raised_within(e: BaseException, packages: tuple[str, ...]) -> bool:
    """Whether ``e`` came out of one of ``packages`` (a frame of its traceback, after the
    boundary that caught it, is a module of one of them, e.g. ``("minari",)``) and not from
    our own code (:func:`raised_by_us`).

    An error boundary around a library converts only what passed through that library: an
    exception that never entered it (numpy refusing an operation of ours between two library
    calls, say) is a bug of ours and passes through as itself."""
    if raised_by_us(e):
        return False
    tb = e.__traceback__
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        if any(module == p or module.startswith(p + ".") for p in packages):
            return True
        tb = tb.tb_next
    return False
