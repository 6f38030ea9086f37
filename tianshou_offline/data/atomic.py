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

import ctypes
import errno
import functools
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

from tianshou_offline.errors import OutputExistsError

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
    """
    out = Path(path)
    remove_stale_temps(out)
    tmp = temp_path(out, tag)
    try:
        yield tmp
        publish(tmp, out, overwrite=overwrite)
    finally:
        remove_temp(tmp)
