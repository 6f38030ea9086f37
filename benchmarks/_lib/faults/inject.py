"""How a write is made to fail (``FAULTS``), in the child that runs a writer:

- ``fsize``: ``RLIMIT_FSIZE`` set to a random size (writes past it fail with ``EFBIG``; Python
  ignores ``SIGXFSZ``);
- ``enospc`` / ``eio``: a C shim loaded with ``LD_PRELOAD`` (built here with the system's C
  compiler) fails every ``write``/``pwrite``/``writev``/``fallocate`` into the output
  directory from a random call on, with ``ENOSPC`` or ``EIO``;
- ``full``: the output directory is a small ``tmpfs`` (mounted in a user and mount namespace
  of the child: ``unshare --user --map-root-user --mount``, no root needed) filled up to a
  random number of free bytes;
- ``readonly``: the output directory is read-only from the start (a read-only bind mount of
  itself in the child's namespace when the child is root there, who ignores permissions;
  ``chmod 555`` otherwise): there is no moment, every trial is the same;
- ``vanish``: the output directory (with everything in it) is deleted by the shim at a
  random write call into it, as a user's ``rm -rf`` during the run; the writes after it go
  to the deleted files, and the writer must notice (its publish finds no directory).

:func:`build_shim` and :func:`namespace_prefix` say whether this system can inject a fault;
:func:`armed` arms one for a block.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FAULTS = ("fsize", "enospc", "eio", "full", "readonly", "vanish")
SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static char dir[4096];
static size_t dirlen;
static long fail_at = -1; /* the watched write call from which on writes fail; -1: none */
static int fail_errno = ENOSPC; /* 0: the directory vanishes at that call instead */
/* the count of watched calls and whether the fault fired, shared with the processes this one
   forks (a writer that writes part of its output in a forked child counts those calls too) */
static long *calls;

static long *counter(void) {
    if (!calls) {
        void *p = mmap(NULL, 2 * sizeof(long), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        calls = p == MAP_FAILED ? calloc(2, sizeof(long)) : (long *)p;
    }
    return calls;
}

void fault_arm(const char *d, long at, int err) {
    strncpy(dir, d, sizeof dir - 1);
    dirlen = strlen(dir);
    fail_at = at;
    fail_errno = err;
    __atomic_store_n(counter(), 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(counter() + 1, 0, __ATOMIC_SEQ_CST);
}
long fault_fired(void) { return __atomic_load_n(counter() + 1, __ATOMIC_SEQ_CST); }

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st; (void)flag; (void)ftw;
    remove(path);
    return 0;
}
void fault_disarm(void) { fail_at = -1; dirlen = 0; }

/* a child process started by an armed one: armed by FAULT_DIR, FAULT_AT, FAULT_ERRNO */
__attribute__((constructor)) static void fault_from_env(void) {
    const char *d = getenv("FAULT_DIR"), *at = getenv("FAULT_AT"), *err = getenv("FAULT_ERRNO");
    if (d && at) fault_arm(d, atol(at), err ? atoi(err) : ENOSPC);
}
long fault_calls(void) { return __atomic_load_n(counter(), __ATOMIC_SEQ_CST); }

static int watched(int fd) {
    char link[64], target[4096];
    if (dirlen == 0) return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0) return 0;
    target[n] = 0;
    return strncmp(target, dir, dirlen) == 0;
}

/* 1 (errno set) when this call must fail */
static int fault(int fd) {
    if (!watched(fd)) return 0;
    long c = __atomic_fetch_add(counter(), 1, __ATOMIC_SEQ_CST);
    if (fail_at < 0 || c < fail_at) return 0;
    long fired = __atomic_exchange_n(counter() + 1, 1, __ATOMIC_SEQ_CST);
    if (fail_errno == 0) { /* vanish: rm -rf the directory, once; this write goes on */
        if (!fired) {
            int saved = errno;
            nftw(dir, remove_entry, 32, FTW_DEPTH | FTW_PHYS);
            errno = saved;
        }
        return 0;
    }
    errno = fail_errno;
    return 1;
}

#define REAL(name, ret, ...) \
    static ret (*real)(__VA_ARGS__); \
    if (!real) real = (ret (*)(__VA_ARGS__))dlsym(RTLD_NEXT, name)

ssize_t write(int fd, const void *buf, size_t n) {
    REAL("write", ssize_t, int, const void *, size_t);
    if (fault(fd)) return -1;
    return real(fd, buf, n);
}
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    REAL("pwrite", ssize_t, int, const void *, size_t, off_t);
    if (fault(fd)) return -1;
    return real(fd, buf, n, off);
}
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
    REAL("pwrite64", ssize_t, int, const void *, size_t, off_t);
    if (fault(fd)) return -1;
    return real(fd, buf, n, off);
}
ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    REAL("writev", ssize_t, int, const struct iovec *, int);
    if (fault(fd)) return -1;
    return real(fd, iov, cnt);
}
ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off) {
    REAL("pwritev", ssize_t, int, const struct iovec *, int, off_t);
    if (fault(fd)) return -1;
    return real(fd, iov, cnt, off);
}
int fallocate(int fd, int mode, off_t off, off_t len) {
    REAL("fallocate", int, int, int, off_t, off_t);
    if (fault(fd)) return -1;
    return real(fd, mode, off, len);
}
int fallocate64(int fd, int mode, off_t off, off_t len) {
    REAL("fallocate64", int, int, int, off_t, off_t);
    if (fault(fd)) return -1;
    return real(fd, mode, off, len);
}
int posix_fallocate(int fd, off_t off, off_t len) {
    REAL("posix_fallocate", int, int, off_t, off_t);
    if (fault(fd)) return errno;
    return real(fd, off, len);
}
int posix_fallocate64(int fd, off_t off, off_t len) {
    REAL("posix_fallocate64", int, int, off_t, off_t);
    if (fault(fd)) return errno;
    return real(fd, off, len);
}
"""


def build_shim(directory: Path) -> Path | None:
    """Compile the write-failing shim into ``directory`` (None: no C compiler, or not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    src = directory / "faultshim.c"
    lib = directory / "faultshim.so"
    src.write_text(SHIM_C)
    res = subprocess.run(
        [cc, "-shared", "-fPIC", "-O1", "-o", str(lib), str(src), "-ldl"],
        capture_output=True,
        text=True,
    )
    return lib if res.returncode == 0 else None


def namespace_prefix() -> list[str] | None:
    """The command prefix that runs a child in a user and mount namespace where it may mount a
    tmpfs (None: this system does not allow it)."""
    unshare = shutil.which("unshare")
    if unshare is None or shutil.which("mount") is None:
        return None
    prefix = [unshare, "--user", "--map-root-user", "--mount"]
    with tempfile.TemporaryDirectory() as d:
        res = subprocess.run(
            [*prefix, "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", d],
            capture_output=True,
        )
    return prefix if res.returncode == 0 else None


@contextlib.contextmanager
def armed(kind: str, value: int, out: Path, shim: Any) -> Iterator[None]:
    """Arm the fault for the body: ``fsize`` (bytes), ``enospc``/``eio`` (the watched write
    call that fails first), ``vanish`` (the watched write call at which ``out`` is deleted),
    ``full`` (free bytes left on the tmpfs holding ``out``), ``readonly`` (``out`` read-only;
    ``value`` unused); ``count``/``none``: no fault (``count`` counts the watched write
    calls)."""
    if kind == "fsize":
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (value, hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    elif kind in ("enospc", "eio", "vanish", "count"):
        err = {"eio": errno.EIO, "vanish": 0}.get(kind, errno.ENOSPC)
        at = -1 if kind == "count" else value
        shim.fault_arm(str(out).encode(), at, err)
        # a process this one starts is armed the same way (LD_PRELOAD is inherited)
        os.environ.update(FAULT_DIR=str(out), FAULT_AT=str(at), FAULT_ERRNO=str(err))
        try:
            yield
        finally:
            shim.fault_disarm()
            for key in ("FAULT_DIR", "FAULT_AT", "FAULT_ERRNO"):
                os.environ.pop(key, None)
    elif kind == "full":
        st = os.statvfs(out)
        filler = out.parent / "filler"
        with open(filler, "wb") as f, contextlib.suppress(OSError):
            left = max(0, st.f_bavail * st.f_frsize - value)
            block = b"\0" * (1 << 20)
            while left > 0:
                left -= f.write(block[: min(left, len(block))])
        try:
            yield
        finally:
            filler.unlink()
    elif kind == "readonly":
        with read_only(out):
            yield
    else:
        yield


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """``directory`` read-only for this process during the body: a read-only bind mount of
    itself when this process is root (in the child's user namespace; root ignores
    permissions), ``chmod 555`` otherwise."""
    d = str(directory)
    if os.geteuid() == 0:
        subprocess.run(["mount", "--bind", d, d], check=True, capture_output=True)
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", d], check=True, capture_output=True)
            yield
        finally:
            subprocess.run(["umount", d], check=True, capture_output=True)
    else:
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(0o755)
