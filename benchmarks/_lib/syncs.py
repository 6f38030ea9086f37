"""Count the host-device synchronisations of a gradient step.

A CUDA step that reads a tensor's value on the host (``.item()``, ``.tolist()``, ``.cpu()``,
``.numpy()``, ``bool(t)`` in an ``if``, ``float(t)``) or runs an operator whose output size
depends on the data (``nonzero``, boolean-mask indexing, ``unique``, ``masked_select``) waits
for the device to finish everything queued before it. :class:`SyncCounter` counts these calls
as they are made — a ``TorchFunctionMode`` sees every tensor method and torch function,
whatever the device — so the same code path is counted on a CPU (where nothing waits, but the
same call would on a GPU) and on a GPU. On CUDA it also counts what PyTorch itself reports as
synchronising (``torch.cuda.set_sync_debug_mode("warn")``), which catches the calls made
inside C++ operators as well.
"""

from __future__ import annotations

import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from types import TracebackType
from typing import Any, cast

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["SyncCounter"]

_READS_VALUE: frozenset[Callable[..., Any]] = frozenset(
    {
        torch.Tensor.item,
        torch.Tensor.tolist,
        torch.Tensor.cpu,
        torch.Tensor.numpy,
        torch.Tensor.__bool__,
        torch.Tensor.__float__,
        torch.Tensor.__int__,
        torch.Tensor.__index__,
        torch.Tensor.__array__,
        torch.Tensor.nonzero,
        torch.nonzero,
        torch.Tensor.masked_select,
        torch.masked_select,
        torch.Tensor.unique,
        torch.unique,
        torch.unique_consecutive,
        torch.Tensor.is_nonzero,
        torch.is_nonzero,
        torch.equal,
        torch.Tensor.equal,
        torch.allclose,
        torch.Tensor.allclose,
        torch.argwhere,
        torch.Tensor.argwhere,
    }
)
"""Calls that read a device value on the host (or size an output by the data)."""


def _bool_index(index: Any) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)


def _where(limit: int = 12) -> str:
    """The innermost frame of this repository's code that made the call (for the report)."""
    for frame in reversed(traceback.extract_stack(limit=limit)[:-2]):
        if "/torch/" not in frame.filename and "syncs.py" not in frame.filename:
            return f"{frame.filename.rsplit('/', 2)[-1]}:{frame.lineno}"
    return "?"


class SyncCounter(TorchFunctionMode):
    """A ``with`` block that counts the synchronising calls made inside it.

    :param torch_functions: count the calls (a ``TorchFunctionMode``); False: only PyTorch's
        CUDA reports — for compiled networks, whose guards would see the mode and recompile.
    :ivar count: synchronising calls seen (reset with :meth:`reset`).
    :ivar sites: ``"op at file:line"`` → calls, for the report.
    """

    def __init__(self, *, torch_functions: bool = True) -> None:
        super().__init__()
        self._mode = torch_functions
        self.count = 0
        self.sites: Counter[str] = Counter()
        self._warnings: Any = None
        self._records: list[warnings.WarningMessage] = []
        initialized: Callable[[], bool] = torch.cuda.is_initialized
        self._cuda = torch.cuda.is_available() and initialized()

    def reset(self) -> None:
        """Start counting from zero (the sites are kept)."""
        self.count = 0
        self._records.clear()

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        syncs = func in _READS_VALUE or (
            func is torch.Tensor.__getitem__ and len(args) > 1 and _bool_index(args[1])
        )
        if syncs:
            self.count += 1
            self.sites[f"{getattr(func, '__name__', func)} at {_where()}"] += 1
        return func(*args, **(kwargs or {}))

    def __enter__(self) -> SyncCounter:
        if self._cuda:
            self._warnings = warnings.catch_warnings(record=True)
            self._records = self._warnings.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
        if self._mode:
            cast(Any, super()).__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._mode:
            cast(Any, super()).__exit__(exc_type, exc, tb)
        if self._warnings is not None:
            torch.cuda.set_sync_debug_mode("default")
            self._warnings.__exit__(exc_type, exc, tb)
            self._warnings = None

    def cuda_syncs(self) -> int:
        """Synchronisations PyTorch reported on CUDA since :meth:`reset`."""
        return sum("synchroniz" in str(w.message) for w in self._records)
