"""Fault harness of ``tests/test_faults.py`` and ``python -m benchmarks.faults``: every writer of
the package meets a write that fails, in a child process, and the outcome is checked there.

- :mod:`~benchmarks._lib.faults.inject`: the faults (``FAULTS``: ``RLIMIT_FSIZE``,
  ``ENOSPC``/``EIO`` from a random write call through an ``LD_PRELOAD`` shim, a full tmpfs in
  a user and mount namespace, a read-only output directory, the output directory deleted at
  a random write call) and how to arm one;
- :mod:`~benchmarks._lib.faults.base`: what a writer under fault is, how its run ended, the
  checks on its outputs;
- :mod:`~benchmarks._lib.faults.converters`: the converters (``CONVERTERS``), each through
  its command;
- :mod:`~benchmarks._lib.faults.writers`: every writer (``WRITERS``: the converters and the
  package's other writers);
- :mod:`~benchmarks._lib.faults.trials`: the child's trials, each checked in the child;
- :mod:`~benchmarks._lib.faults.launch`: the parent's side, children and sweeps.

Run as a module, it is the child: ``python -m benchmarks._lib.faults SPEC.json RESULTS.jsonl``.
"""

from __future__ import annotations

from benchmarks._lib.faults.base import Ran, Writer, d4rl_source
from benchmarks._lib.faults.converters import CONVERTERS, Converter
from benchmarks._lib.faults.inject import FAULTS, build_shim, namespace_prefix
from benchmarks._lib.faults.launch import Launch, launcher, run_child, sweep
from benchmarks._lib.faults.trials import EARLIER, run_trials, temps_left
from benchmarks._lib.faults.writers import WRITERS, Grid, MakeDatasets

__all__ = [
    "CONVERTERS",
    "EARLIER",
    "FAULTS",
    "WRITERS",
    "Converter",
    "Grid",
    "Launch",
    "MakeDatasets",
    "Ran",
    "Writer",
    "build_shim",
    "d4rl_source",
    "launcher",
    "namespace_prefix",
    "run_child",
    "run_trials",
    "sweep",
    "temps_left",
]
