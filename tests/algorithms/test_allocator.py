"""retain_freed_memory (tianshou_offline.algorithms.allocator): after it, a step that makes
and frees a tensor above glibc's 32 MiB mmap limit reuses the freed memory instead of faulting
every page in again. Counted with the process's minor page faults (not timed), each side in a
fresh interpreter because the setting is process-wide."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import resource, sys
import torch
from tianshou_offline.algorithms.allocator import retain_freed_memory
applied = retain_freed_memory() if sys.argv[1] == "retain" else None
x = torch.ones(12_000_000)  # 48 MB: above glibc's largest dynamic mmap threshold
for _ in range(2):
    y = x * 2.0
    del y
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    y = x * 2.0
    del y
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_large_tensors_are_reused_without_page_faults() -> None:
    applied, retained = _faults("retain")
    _, default = _faults("default")
    assert applied == "True"
    pages = 5 * 48_000_000 // 4096  # every page of five fresh 48 MB tensors
    assert default > pages // 2  # the default allocator faults them in at every step...
    assert retained < pages // 20  # ...the retained heap does not
