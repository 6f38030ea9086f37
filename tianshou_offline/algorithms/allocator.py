"""Keep freed memory in the process: large CPU tensors without a page fault per page.

PyTorch allocates CPU tensors with the C library's ``malloc``. glibc serves a block larger
than its *mmap threshold* (dynamic, at most 32 MiB on 64-bit systems) with a fresh ``mmap``
and returns it to the kernel on ``free``; it also gives the top of its heap back once more
than its *trim threshold* is free there. A training step that makes tensors above 32 MiB
therefore pays, at every step, one page fault and one kernel zero-fill per 4 KiB page of each
of them (system time, counted in the process's CPU time). Seed batches make such tensors where
a single run does not: ten seeds of the quality table's 64 × 64 CQL evaluate
``(K, E, B · 31, 64)`` float32 critic activations, 41 MB each (4 MB for one seed), and spent
more CPU time in the kernel than in PyTorch (``benchmarks/seed_batch.py``, ``--allocator``).

:func:`retain_freed_memory` is a process-wide setting, like ``torch.set_num_threads``: the
library never calls it by itself; the processes that own their allocator call it first (a
grid's seed-group task, the seed-batch benchmark's workers on both sides), and a user
training a large seed batch calls it once at start-up. It changes no result, only where
freed memory goes: the process keeps its peak memory mapped instead of returning it
between steps.
"""

from __future__ import annotations

import ctypes
import logging
import sys

__all__ = ["retain_freed_memory"]

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
"""glibc's ``mallopt`` parameter numbers (``<malloc.h>``)."""
_M_MMAP_THRESHOLD = -3
_LIMIT = 1 << 30
"""1 GiB: blocks up to this size come from the heap; larger ones (a whole dataset) are still
mapped and unmapped on their own."""


def retain_freed_memory() -> bool:
    """Make glibc's ``malloc`` serve blocks up to 1 GiB from its heap and keep up to 1 GiB
    free at the heap's top: ``mallopt(M_MMAP_THRESHOLD, 2**30)`` and
    ``mallopt(M_TRIM_THRESHOLD, 2**30)`` (as the environment variables
    ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` would). Freed blocks are then
    reused by the next step instead of being unmapped and faulted in again.

    :returns: whether the settings were applied (False on other platforms or C libraries
        without ``mallopt``, e.g. musl or macOS: nothing is changed there).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, _LIMIT)) and bool(mallopt(_M_TRIM_THRESHOLD, _LIMIT))
    if not ok:
        log.debug("mallopt refused the settings; the allocator is left as it was")
    return ok
