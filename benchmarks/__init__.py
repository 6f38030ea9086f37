"""Benchmarks of tianshou-offline (speed, memory, learning quality, robustness).

Each benchmark is a module run from the repository root as ``python -m benchmarks.NAME``;
their shared code is :mod:`benchmarks._lib`. Every run writes a result file under
``benchmarks/results/`` (:mod:`benchmarks._lib.results`), and README tables are generated
from those files (``--table-only`` / ``--readme``)."""
