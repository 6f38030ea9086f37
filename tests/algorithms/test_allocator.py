"""retain_freed_memory (tianshou_offline.algorithms.allocator): after it, a step that makes
and frees a tensor above glibc's 32 MiB mmap limit reuses the freed memory instead of faulting
every page in again. Counted with the process's minor page faults (not timed), before and
after the call, in a fresh interpreter because the setting is process-wide."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import resource
import torch
from tianshou_offline.algorithms.allocator import retain_freed_memory

def faults():
    x = torch.ones(12_000_000)  # 48 MB: above glibc's largest dynamic mmap threshold
    for _ in range(2):
        y = x * 2.0
        del y
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        y = x * 2.0
        del y
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

default = faults()
print(retain_freed_memory(), default, faults())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_large_tensors_are_reused_without_page_faults() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    applied, default, retained = out.stdout.split()
    assert applied == "True"
    pages = 5 * 48_000_000 // 4096  # every page of five fresh 48 MB tensors
    assert int(default) > pages // 2  # the default allocator faults them in at every step...
    assert int(retained) < pages // 20  # ...the retained heap does not
