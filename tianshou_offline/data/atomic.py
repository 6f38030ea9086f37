"""Nothing lost, nothing left behind: the one temporary-file convention and the one
no-replace rename of the package.

Every output (a buffer file, a Minari dataset directory, a stack-patch spool, a plot, a policy
checkpoint) is written at a hidden temporary path beside it, :func:`temp_path`::

    .NAME.PID.TOKEN[.TAG].tmp

(``NAME`` the output's name, ``PID`` the writing process, ``TOKEN`` 8 random hex digits,
``TAG`` what it is, e.g. ``patches``), and moved into place by :func:`publish`. A writer
that makes its output in one go uses :func:`atomic_output`, which does all of it (sweep
stale temporaries, name the temporary, publish, remove the temporary whatever happens)::

    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)

- without ``overwrite``, with a rename that fails if the output exists *at the moment of the
  rename* (Linux ``renameat2(RENAME_NOREPLACE)``; elsewhere ``os.link`` + ``os.unlink`` for
  files; for directories a final check): whatever appeared at the output path during the run
  is left untouched and :class:`~tianshou_offline.errors.OutputExistsError` is raised; the
  caller removes its temporary (:func:`remove_temp`);
- with ``overwrite``, atomically replacing the output (``os.replace`` for files;
  ``renameat2(RENAME_EXCHANGE)`` for directories, else a move aside and back).

A write that fails (a full disk, an I/O error, a read-only or vanished directory, a
temporary on another file system than its output) raises
:class:`~tianshou_offline.errors.OutputWriteError` naming the output and the cause
(:func:`write_error`); nothing is published and the temporary is removed. Two processes
writing the same output: :func:`output_lock` lets one run and the other fail at once
(:class:`~tianshou_offline.errors.OutputBusyError`); without it the no-replace rename lets the
first to finish publish and the other fail.

A process killed mid-run leaves its temporary behind. The name says whose it was:
:func:`stale_temps` finds those beside an output whose process no longer runs and
:func:`remove_stale_temps` (called by the next run for the same output) deletes them, with a
log line. A temporary of a live process is never touched. A temporary of a temporary (a
writer staging into a converter's temporary, ``..NAME.PID.TOKEN.TAG.tmp.PID.TOKEN.tmp``)
belongs to the same output and process.

Limits: a process id is only meaningful on this machine (and in this PID namespace): on a
directory shared by several machines, a temporary of a run on another machine whose PID is
not in use here counts as stale.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import io
import logging
import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from tianshou_offline.errors import (
    OutputBusyError,
    OutputExistsError,
    OutputWriteError,
    SourceNotFoundError,
    TianshouOfflineError,
)

log = logging.getLogger(__name__)

_TAG = re.compile(r"[A-Za-z0-9_-]+")
_TEMP = re.compile(r"\.(?P<inner>.+)\.(?P<pid>\d+)\.[0-9a-f]+(?:\.[A-Za-z0-9_-]+)?\.tmp")
"""A temporary's name: ``.INNER.PID.TOKEN[.TAG].tmp``; ``INNER`` is the output's name, or
itself a temporary's name (nested staging); ``TOKEN`` hex digits (8 in those we write)."""

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2


# --------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------


def temp_path(output: str | os.PathLike[str], tag: str | None = None) -> Path:
    """A hidden temporary path beside ``output``, unique to this process and call:
    ``.NAME.PID.TOKEN[.TAG].tmp``.

    :param tag: what the temporary holds (letters, digits, ``_``, ``-``), e.g. ``"patches"``.
    """
    out = Path(output)
    if tag is not None and not _TAG.fullmatch(tag):
        raise ValueError(f"tag={tag!r}: expected letters, digits, '_' or '-'")
    suffix = f".{tag}" if tag else ""
    return out.with_name(f".{out.name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}.tmp")


def temp_owner(name: str, output_name: str) -> int | None:
    """The process id in ``name`` when it is a temporary of the output named
    ``output_name`` (see :func:`temp_path`; nested temporaries count), else None."""
    m = _TEMP.fullmatch(name)
    while m is not None:
        if m["inner"] == output_name:
            return int(m["pid"])
        m = _TEMP.fullmatch(m["inner"])
    return None


def _process_runs(pid: int) -> bool:
    """Whether a process with this id runs here (one we may not signal runs, too)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except OSError:  # pragma: no cover - e.g. a pid beyond the platform's range
        return False
    return True


@dataclass(frozen=True)
class TempFile:
    """A temporary file or directory beside an output (see :func:`find_temps`)."""

    path: Path
    pid: int
    """The process that wrote it."""
    running: bool
    """That process still runs: the temporary is in use."""
    is_dir: bool
    size: int
    """Bytes on disk (a directory: of the files in it)."""


def _size(path: Path) -> int:
    try:
        if path.is_dir() and not path.is_symlink():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.lstat().st_size
    except OSError:
        return 0


def find_temps(output: str | os.PathLike[str]) -> list[TempFile]:
    """Every temporary of ``output`` in its directory (sorted by name), running or not."""
    out = Path(output)
    parent = out.parent
    found: list[TempFile] = []
    try:
        entries = sorted(os.scandir(parent), key=lambda e: e.name)
    except OSError:  # no such directory, or not readable: nothing of ours there
        return found
    for entry in entries:
        if not entry.name.startswith("."):
            continue
        pid = temp_owner(entry.name, out.name)
        if pid is None:
            continue
        p = Path(entry.path)
        is_dir = entry.is_dir(follow_symlinks=False)
        found.append(TempFile(p, pid, _process_runs(pid), is_dir, _size(p)))
    return found


def stale_temps(output: str | os.PathLike[str]) -> list[TempFile]:
    """The temporaries of ``output`` whose process no longer runs."""
    return [t for t in find_temps(output) if not t.running]


def remove_temp(path: str | os.PathLike[str]) -> None:
    """Delete a temporary file or directory (nothing when it is gone already)."""
    p = Path(path)
    try:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
    except FileNotFoundError:
        pass


def remove_stale_temps(output: str | os.PathLike[str]) -> list[TempFile]:
    """Delete the temporaries of ``output`` left by processes that no longer run, logging
    each (a warning: the user may wonder where the space went).

    :returns: what was deleted.
    """
    removed: list[TempFile] = []
    for t in stale_temps(output):
        try:
            remove_temp(t.path)
        except OSError as e:  # pragma: no cover - e.g. a read-only directory
            log.warning("cannot remove stale temporary %s of a killed run: %s", t.path, e)
            continue
        removed.append(t)
        log.warning(
            "removed %s of a killed run (process %d, %s) beside %s",
            t.path.name + ("/" if t.is_dir else ""),
            t.pid,
            format_size(t.size),
            Path(output),
        )
    return removed


def format_size(n: float) -> str:
    """``n`` bytes for people: ``512 B``, ``6.1 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------
# renames
# --------------------------------------------------------------------------------------

_Renameat2 = Callable[[int, bytes, int, bytes, int], int]


@functools.cache
def _renameat2() -> _Renameat2 | None:
    """glibc's ``renameat2`` (Linux, glibc >= 2.28), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    call: _Renameat2 = fn
    return call


def _rename2(src: Path, dst: Path, flags: int) -> bool:
    """``renameat2(src, dst, flags)``: True when done, False when this system cannot (no
    such call, or a file system without the flag); any other failure raises ``OSError``
    (``FileExistsError`` when ``dst`` exists under ``RENAME_NOREPLACE``)."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(src), None, str(dst))


def _exists_error(dst: Path) -> OutputExistsError:
    return OutputExistsError(
        f"{dst}: output appeared while this run was writing it; left untouched (remove it, "
        "or pass overwrite=True, CLI: --overwrite, to replace it)"
    )


def rename_noreplace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Move ``src`` (a file or directory) to ``dst``, failing if ``dst`` exists at the moment
    of the rename.

    Linux: ``renameat2(RENAME_NOREPLACE)``. Elsewhere (or on a file system without it): a file
    is hard-linked to ``dst`` (which fails if it exists) and unlinked from ``src``; a directory
    (or a file on a file system without hard links) is renamed after a final check (a window
    of microseconds remains; ``os.rename`` of a directory never replaces a non-empty one).

    :raises OutputExistsError: ``dst`` exists; ``src`` is left where it is.
    """
    s, d = Path(src), Path(dst)
    try:
        if _rename2(s, d, _RENAME_NOREPLACE):
            return
        if not s.is_dir():
            try:
                os.link(s, d, follow_symlinks=False)
            except FileExistsError:
                raise
            except OSError:  # no hard links here (e.g. FAT, some network file systems)
                pass
            else:
                os.unlink(s)
                return
        if os.path.lexists(d):
            raise FileExistsError(errno.EEXIST, "exists", str(d))
        os.rename(s, d)
    except FileExistsError as e:
        raise _exists_error(d) from e
    except OSError as e:
        if e.errno in (errno.ENOTEMPTY, errno.EEXIST):  # a directory rename onto a directory
            raise _exists_error(d) from e
        raise


def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Move ``src`` to ``dst``, atomically replacing what is there (a file, or for a
    directory ``src`` a directory).

    A directory over a directory: Linux ``renameat2(RENAME_EXCHANGE)`` swaps them in one step
    and the old one (now at ``src``) is deleted; elsewhere the old one is moved aside (to a
    temporary name), the new one moved in, and the old one deleted (readers may find no
    directory for an instant; if the second move fails the old one is moved back).
    """
    s, d = Path(src), Path(dst)
    if not s.is_dir():
        os.replace(s, d)
        return
    if not d.exists():
        try:
            rename_noreplace(s, d)
            return
        except OutputExistsError:  # it appeared just now: replace it below
            pass
    if _rename2(s, d, _RENAME_EXCHANGE):
        remove_temp(s)
        return
    old = temp_path(d, "old")
    os.rename(d, old)
    try:
        os.rename(s, d)
    except BaseException:
        os.rename(old, d)
        raise
    remove_temp(old)


def check_new_output(
    path: str | os.PathLike[str],
    *,
    overwrite: bool,
    flag: str = "--overwrite",
    directory: bool = False,
) -> None:
    """Refuse, before any work, an output that exists without ``overwrite`` (``flag``: the
    CLI's options that allow it, named in the message); with ``directory``, also one whose
    directory does not exist. The rename into place checks again (:func:`publish`).

    :raises OutputExistsError: ``path`` exists and ``overwrite`` is False.
    :raises SourceNotFoundError: (``directory``) ``path``'s directory does not exist.
    """
    out = Path(path)
    if out.exists() and not overwrite:
        raise OutputExistsError(
            f"{path}: output exists; pass overwrite=True (CLI: {flag}) to replace it"
        )
    if directory and not out.parent.is_dir():
        raise SourceNotFoundError(f"{out.parent}: output directory does not exist")


def publish(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, overwrite: bool) -> None:
    """Move a finished temporary into place: :func:`replace` with ``overwrite``, else
    :func:`rename_noreplace` (:class:`~tianshou_offline.errors.OutputExistsError` when
    ``dst`` exists)."""
    if overwrite:
        replace(src, dst)
    else:
        rename_noreplace(src, dst)


@contextmanager
def atomic_output(
    path: str | os.PathLike[str], *, overwrite: bool, tag: str | None = None
) -> Iterator[Path]:
    """Write ``path`` all or nothing: yields a fresh temporary beside it
    (:func:`temp_path`, with ``tag``) for the body to write; when the body returns, the
    temporary is published (:func:`publish`, replacing ``path`` only with ``overwrite``).
    The temporary is removed whatever happens (a failure in the body or in the publish leaves
    nothing behind and ``path`` as it was); temporaries of killed runs beside ``path`` are
    removed first (:func:`remove_stale_temps`).

    :raises OutputExistsError: without ``overwrite``, ``path`` exists at the moment of the
        rename (it is left untouched).
    :raises OutputWriteError: a write, the creation of the temporary or the rename failed
        (:func:`write_error`).
    """
    out = Path(path)
    with write_errors(out):
        remove_stale_temps(out)
        tmp = temp_path(out, tag)
        try:
            yield tmp
            publish(tmp, out, overwrite=overwrite)
        except BaseException:
            detach_files(tmp)  # a library's file left open there writes nowhere any more
            raise
        finally:
            remove_temp(tmp)


@contextmanager
def write_errors(output: str | os.PathLike[str], *, kept: str | None = None) -> Iterator[None]:
    """The boundary of writing ``output``: a write the system refuses inside the block
    (:func:`is_write_failure`) becomes :class:`~tianshou_offline.errors.OutputWriteError`
    naming ``output`` and saying what is ``kept`` (:func:`write_error`; the original is the
    ``__cause__``). So does any other failure while ``output``'s directory is gone: it
    vanished during the run, and a library writing there failed on that in its own words
    (Minari: a ``ValueError`` about its data path)."""
    try:
        yield
    except OutputWriteError as e:
        # a writer inside the block wrote a temporary of ``output`` (which the block then
        # publishes) and named it: the user knows ``output`` only
        renamed = _named_for(output, e)
        if renamed is None:
            raise
        raise renamed from e
    except TianshouOfflineError:
        raise
    except Exception as e:
        cause: BaseException = e
        if not is_write_failure(e):
            parent = Path(output).parent
            if parent.exists():
                raise
            cause = FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(parent))
        raise (
            write_error(output, cause) if kept is None else write_error(output, cause, kept=kept)
        ) from e


_CANNOT_WRITE = ": cannot write the output: "


def _named_for(output: str | os.PathLike[str], e: OutputWriteError) -> OutputWriteError | None:
    """``e`` (:func:`write_error`'s) said of a temporary beside ``output``: the same error
    naming ``output``; None when it names anything else."""
    head, sep, rest = str(e).partition(_CANNOT_WRITE)
    out = Path(output)
    if not sep or Path(head).parent != out.parent or temp_owner(Path(head).name, out.name) is None:
        return None
    renamed = OutputWriteError(f"{out}{_CANNOT_WRITE}{rest}")
    renamed.errno = e.errno
    return renamed


# --------------------------------------------------------------------------------------
# failed writes
# --------------------------------------------------------------------------------------

_HDF5_ERRNO = re.compile(r"errno = (\d+), error message = '([^']*)'")
"""How libhdf5 reports the system error behind a failed write (in h5py's message)."""

_HINTS = {
    errno.ENOSPC: "the file system is full; free space (or write elsewhere) and run again",
    errno.EDQUOT: "the disk quota is exhausted; free space (or write elsewhere) and run again",
    errno.EFBIG: "the file size limit (ulimit -f) or the file system's largest file is reached",
    errno.EIO: "the storage reported an I/O error",
    errno.EROFS: "the output directory is on a read-only file system",
    errno.EACCES: "the output directory is not writable",
    errno.EPERM: "the output directory is not writable",
    errno.ENOENT: "the output directory vanished during the run",
    errno.EXDEV: "the temporary is on another file system than the output",
}


def failure_errno(exc: BaseException) -> int | None:
    """The system error number behind a failed write: ``exc.errno``, or the ``errno = N``
    libhdf5 puts in h5py's message; None when there is none."""
    m = _HDF5_ERRNO.search(str(exc))
    if m is not None:
        return int(m[1])
    err = getattr(exc, "errno", None)
    return err if isinstance(err, int) and err > 0 else None


def is_write_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (raised while writing an output) is the system refusing the write: an
    ``OSError`` (h5py's included), or an error of libhdf5 that carries a system error
    number (h5py raises some as ``RuntimeError``)."""
    if isinstance(exc, TianshouOfflineError):
        return False
    return isinstance(exc, OSError) or failure_errno(exc) is not None


def write_error(
    output: str | os.PathLike[str],
    exc: BaseException,
    *,
    kept: str = "the output is as it was before the run",
) -> OutputWriteError:
    """The :class:`~tianshou_offline.errors.OutputWriteError` for a failed write of
    ``output``: one line naming the output, the cause (the system's words and the error's
    name, e.g. ``No space left on device (ENOSPC)``), what it means and what is ``kept``."""
    err = failure_errno(exc)
    if err is not None:
        cause = f"{os.strerror(err)} ({errno.errorcode.get(err, err)})"
        hint = _HINTS.get(err)
    else:
        first = str(exc).strip().splitlines()
        cause = first[0] if first else type(exc).__name__
        hint = None
    where = getattr(exc, "filename", None)
    if isinstance(where, str | bytes):
        name, out_name = Path(os.fsdecode(where)).name, Path(output).name
        if name != out_name and temp_owner(name, out_name) is None:
            cause += f" at {os.fsdecode(where)}"
    msg = f"{output}{_CANNOT_WRITE}{cause}"
    if hint:
        msg += f"; {hint}"
    error = OutputWriteError(f"{msg}; {kept}")
    error.errno = err
    return error


@contextmanager
def output_lock(directory: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the lock of an output directory (a family's, a grid cell's) while the body runs:
    an exclusive ``flock`` of the directory itself, so that a second process writing the same
    outputs fails at once instead of racing the first. The kernel releases it when the
    process ends, killed or not (no stale lock to clean up). Where ``fcntl`` does not exist
    (Windows) the body runs unlocked. The directory must exist.

    :raises OutputBusyError: another process holds the lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    d = Path(directory)
    try:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise write_error(d, e) from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputBusyError(
                f"{d}: another process is writing these outputs now (it holds the directory's "
                "lock); wait for it to finish, or write elsewhere"
            ) from None
        yield
    finally:
        os.close(fd)


class _KeepWriteError:
    """A binary file that remembers the ``OSError`` of a failed write."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.raw.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.raw.flush()


def torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save(obj, path)``, a write the system refuses raised as its ``OSError`` (torch
    reports it as a ``RuntimeError`` that has lost the cause: "unexpected pos")."""
    import torch

    with open(path, "wb") as raw:
        keeper = _KeepWriteError(raw)
        try:
            torch.save(obj, cast(IO[bytes], keeper))  # torch calls write and flush only
        except RuntimeError as e:
            if keeper.error is not None:
                raise keeper.error from e
            raise


@contextmanager
def h5_output(
    path: str | os.PathLike[str], mode: str = "w", *, close_on_error: bool = True, **kwargs: Any
) -> Iterator[Any]:
    """``h5py.File(path, mode, **kwargs)`` for writing a temporary, made safe for failed
    writes: the file is flushed at the end of the block, so that a write libhdf5 held back
    fails inside it (h5py only prints an error raised when it closes an object it
    collects); on any error its descriptors are detached (:func:`detach_files`) before it
    is closed, so that the close writes nowhere and cannot fail again.

    :param close_on_error: close the file after an error; False in a child process of
        :func:`in_child_process`, which ends without closing anything: libhdf5 crashed
        closing a file opened for appending (``mode="a"``) after a failed write."""
    import h5py

    f = h5py.File(path, mode, **kwargs)
    try:
        yield f
        f.flush()
    except BaseException:
        detach_files(path)
        if close_on_error:
            with contextlib.suppress(Exception):
                f.close()
        raise
    try:
        f.close()
    except Exception:
        detach_files(path)
        raise


def detach_files(under: str | os.PathLike[str]) -> None:
    """After a failed write: point every descriptor this process has open on ``under`` (a
    file) or under it (a directory) at ``/dev/null`` (Linux; elsewhere nothing). What a
    library writes into those files from now on, closing them included, goes nowhere, and
    what is on disk stays as it is, as if the process had been killed now.

    Why: libhdf5 1.14 closes a file by flushing it; when its writes keep failing (a full
    disk, an I/O error) the close fails too, leaves the file open, and the library crashes
    the process when it shuts down at exit (a segmentation fault after the error was
    reported); a library's file object that is garbage-collected later (Minari's) prints
    the failure again."""
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        return
    prefix = os.path.abspath(under)
    for entry in os.listdir(fds):
        try:
            target = os.readlink(fds / entry)
        except OSError:  # closed meanwhile (e.g. the descriptor of the listing itself)
            continue
        if target.endswith(" (deleted)"):
            target = target[: -len(" (deleted)")]
        if target != prefix and not target.startswith(prefix + os.sep):
            continue
        sink = os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(sink, int(entry))
        except OSError:  # pragma: no cover - closed meanwhile
            pass
        finally:
            os.close(sink)


def in_child_process(fn: Callable[[], object]) -> None:
    """Run ``fn`` in a forked child process and raise what it raised, for a library whose
    failed writes leave this process unusable (libhdf5 1.14 after a failed close; see
    :func:`detach_files`). The child shares this process's memory as it was (copy on write)
    and ends with ``os._exit`` (no clean-up of libraries at exit); an exception comes back
    as its type's name, message and ``errno``: a write the system refused is raised as
    ``OSError``, an error of this package as its type, a failed allocation (``MemoryError``
    and its subclasses, such as pyarrow's ``ArrowMemoryError``) as ``MemoryError``, anything
    else as ``RuntimeError``.
    Where ``os.fork`` does not exist, ``fn`` runs in this process.
    """
    if not hasattr(os, "fork"):  # pragma: no cover - Windows
        fn()
        return
    import json

    import tianshou_offline.errors as errors

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        code = 0
        # what it prints to a stream that is not a file descriptor (a captured one) comes back
        captured = {name: io.StringIO() for name in ("stdout", "stderr")
                    if not _has_fileno(getattr(sys, name))}  # fmt: skip
        for name, buf in captured.items():
            setattr(sys, name, buf)
        # h5py prints (through these hooks) the failure of an object of a file whose writes
        # failed that it collects and cannot close: the failure is reported once, below
        sys.excepthook = _quiet
        sys.unraisablehook = _quiet
        kept: list[BaseException] = []
        try:
            fn()
            report: dict[str, Any] = {}
        except BaseException as e:
            # kept until os._exit: the objects its traceback holds (those of a file whose
            # writes failed) are never collected, so they never fail to close again (h5py
            # prints a traceback then); the failure is reported once, below
            kept.append(e)
            report = {
                "type": type(e).__name__,
                "message": str(e),
                "errno": failure_errno(e) if is_write_failure(e) else None,
                "write": is_write_failure(e),
                "memory": isinstance(e, MemoryError),
            }
            code = 1
        report["printed"] = {name: buf.getvalue() for name, buf in captured.items()}
        try:
            with os.fdopen(write, "w") as f:
                f.write(json.dumps(report))
        finally:
            os._exit(code)
    os.close(write)
    try:
        with os.fdopen(read) as f:
            text = f.read()
    finally:
        _, status = os.waitpid(pid, 0)
    if not text:
        raise RuntimeError(f"the child process writing the output died (wait status {status})")
    report = json.loads(text)
    for name, printed in report.pop("printed", {}).items():
        getattr(sys, name).write(printed)
    if not report:
        return
    name, message = str(report["type"]), str(report["message"])
    if report["write"]:
        err = report["errno"]
        raise OSError(err, message) if err else OSError(message)
    kind = getattr(errors, name, None)
    if isinstance(kind, type) and issubclass(kind, errors.TianshouOfflineError):
        raise kind(message)
    if name == "KeyboardInterrupt":
        raise KeyboardInterrupt
    if report.get("memory"):  # a resource failure, not a bug: it stays one
        raise MemoryError(message if name == "MemoryError" else f"{name}: {message}")
    raise RuntimeError(f"{name}: {message}")


def _quiet(*args: object) -> None:
    """A hook that prints nothing."""


def _has_fileno(stream: Any) -> bool:
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return False
    return True
