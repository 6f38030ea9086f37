"""The compute floor of a training step: the time the networks and the optimizer take.

Both implementations in a speed comparison run the same networks on the same batch sizes
with the same optimizer, so some work is common to any implementation: the matrix products
and convolutions (``mm``/``addmm``/``bmm``/``baddbmm``, convolution forward and backward),
the networks' activations (ReLU/tanh forward and backward) and the optimizer's arithmetic
(PyTorch's fused Adam kernel, the fastest form of it). Only its *amount* can differ — a
redundant forward pass shows up as more floor time. :func:`floor_ms_per_step` measures it
with PyTorch's profiler (self time of those operators), and

    ceiling = reference ms/step ÷ our floor ms/step

is the largest speed-up any implementation doing our amount of that work can reach on this
machine, even if everything else (sampling, losses, targets, bookkeeping, Python) were
free. When it is below a target, the target is a property of the hardware, not of the code.

CPU only: on CUDA the operators run asynchronously and the profiler's CPU self time does
not measure them (the scripts print ``n/a`` there).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile

FLOOR_OPS = frozenset(
    {
        # activations, forward and backward
        "aten::clamp_min",
        "aten::clamp_min_",
        "aten::relu",
        "aten::relu_",
        "aten::threshold_backward",
        "aten::tanh",
        "aten::tanh_backward",
        # the optimizer's arithmetic
        "aten::_fused_adam_",
        "aten::_fused_adamw_",
        # matrix products and convolutions
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


def floor_ms_per_step(step: Callable[[], object], steps: int) -> float:
    """Milliseconds per call of ``step`` spent in the :data:`FLOOR_OPS` operators (CPU).

    :param step: one training step (called ``steps`` times under the profiler; warm it up
        before).
    :param steps: how many calls to average over.
    """
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    total_us = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in FLOOR_OPS)
    return total_us / 1000.0 / steps


def floor_available(device: torch.device | str = "cpu") -> bool:
    """Whether :func:`floor_ms_per_step` measures the work on ``device`` (CPU only)."""
    return torch.device(device).type == "cpu"
