"""The compute floor of a training step: time spent in matrix products and convolutions.

Both implementations in a speed comparison run the same networks on the same batch sizes, so
the dense linear algebra (``mm``/``addmm``/``bmm``/``baddbmm`` and the convolutions, forward
and backward) is work neither can avoid — only its amount can differ (a redundant forward
pass shows up as more GEMM time). :func:`gemm_ms_per_step` measures it with PyTorch's
profiler (self time of those operators), and

    ceiling = reference ms/step ÷ our GEMM ms/step

is the largest speed-up any implementation with our amount of GEMM work can reach on this
machine, even if everything else (sampling, elementwise ops, the optimizer, Python) were
free. When it is below a target, the target is a property of the hardware, not of the code.

CPU only: on CUDA the operators run asynchronously and the profiler's CPU self time does
not measure them (the scripts print ``n/a`` there).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile

GEMM_OPS = frozenset(
    {
        "aten::mm",
        "aten::addmm",
        "aten::bmm",
        "aten::baddbmm",
        "aten::addbmm",
        "aten::mkldnn_convolution",
        "aten::convolution_backward",
        "aten::_convolution_mode",
        "aten::mkldnn_linear",
    }
)


def gemm_ms_per_step(step: Callable[[], object], steps: int) -> float:
    """Milliseconds per call of ``step`` spent in GEMM and convolution operators (CPU).

    :param step: one training step (called ``steps`` times under the profiler; warm it up
        before).
    :param steps: how many calls to average over.
    """
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    total_us = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in GEMM_OPS)
    return total_us / 1000.0 / steps


def floor_available(device: torch.device | str = "cpu") -> bool:
    """Whether :func:`gemm_ms_per_step` measures the work on ``device`` (CPU only)."""
    return torch.device(device).type == "cpu"
