"""The compute floor of a training step: the time its networks and its optimizer take.

Implementations in a speed comparison run the same networks on the same batch sizes with the
same optimizer kernel, so part of each step's work is kernels that implementation cannot
avoid *for the network passes it makes*: the matrix products and convolutions
(``mm``/``addmm``/``bmm``/``baddbmm``, convolution forward and backward), the networks'
activations (ReLU/tanh forward and backward) and the optimizer's arithmetic (PyTorch's fused
Adam kernel). :func:`profile_steps` measures that time with PyTorch's profiler (self time
of those operators), for every side of a comparison: a side with more floor time makes more
(or larger) network passes, one with less makes fewer.

    ceiling = reference ms/step ÷ our floor ms/step

is the largest speed-up over the reference that an implementation doing **our amount of that
work** can reach on this machine, even if everything else (sampling, losses, targets,
bookkeeping, Python) were free. It bounds implementations that make our network passes, not
every implementation: one that makes fewer passes (a cheaper target rule, a shared trunk)
has a lower floor and a higher ceiling.

A side stepping a for-loop Adam (``torch.optim.Adam`` without ``fused``/``foreach``) spends
its optimizer time in elementwise operators that are not counted, so its floor is its
network time alone.

CPU only: on CUDA the operators run asynchronously and the profiler's CPU self time does
not measure them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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


FUSED_ADAM_OPS = frozenset({"aten::_fused_adam_", "aten::_fused_adamw_"})


def profile_steps(step: Callable[[], object], steps: int, top: int = 0) -> dict[str, Any]:
    """Profile ``steps`` calls of ``step`` (CPU): the floor and what the step runs.

    :returns: ``floor_ms`` (per step, :data:`FLOOR_OPS`), ``profiled_ms`` (wall time per step
        under the profiler), ``fused_adam_per_step`` (calls of the fused Adam kernel per step:
        0 means the optimizer is not fused), ``top``: the ``top`` operators with the most self
        time, as ``[name, ms per step, calls per step]``.
    """
    import time

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        wall = time.perf_counter() - start
    events = prof.key_averages()
    floor_us = sum(e.self_cpu_time_total for e in events if e.key in FLOOR_OPS)
    fused = sum(e.count for e in events if e.key in FUSED_ADAM_OPS)
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return {
        "floor_ms": floor_us / 1000.0 / steps,
        "profiled_ms": wall * 1000.0 / steps,
        "fused_adam_per_step": fused / steps,
        "top": [[e.key, e.self_cpu_time_total / 1000.0 / steps, e.count / steps] for e in ranked],
    }


def find_optimizers(root: object, depth: int = 4) -> list[torch.optim.Optimizer]:
    """The ``torch.optim.Optimizer`` objects reachable from ``root`` through attributes,
    lists and dicts (at most ``depth`` levels; each once)."""
    seen: set[int] = set()
    found: list[torch.optim.Optimizer] = []

    def walk(obj: object, level: int) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, torch.optim.Optimizer):
            found.append(obj)
            return
        if level == 0 or isinstance(obj, torch.Tensor | str | bytes | int | float):
            return
        children: list[object]
        if isinstance(obj, dict):
            children = list(obj.values())
        elif isinstance(obj, list | tuple):
            children = list(obj)
        elif hasattr(obj, "__dict__"):
            children = list(vars(obj).values())
        else:
            return
        for child in children:
            walk(child, level - 1)

    walk(root, depth)
    return found


def describe_optimizers(optims: list[torch.optim.Optimizer]) -> str:
    """E.g. ``Adam fused ×3``: each optimizer's class and kernel (``fused``, ``foreach`` or
    ``for-loop``: ``torch.optim.Adam``'s default on CPU)."""
    kinds: list[str] = []
    for o in optims:
        g = o.param_groups[0] if o.param_groups else {}
        kernel = "fused" if g.get("fused") else "foreach" if g.get("foreach") else "for-loop"
        kinds.append(f"{type(o).__name__} {kernel}")
    return ", ".join(f"{k} ×{kinds.count(k)}" for k in dict.fromkeys(kinds)) or "none found"
