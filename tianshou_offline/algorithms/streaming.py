"""Mini-batches gathered from a disk-backed buffer, shared by the continuous and the discrete
streaming datasets.

A buffer whose observation columns stay in its files (``load_buffer(path, memory="disk")``,
``load_rl_unplugged(shards, memory="disk")``) offers them through a ``disk_columns()``
method (:func:`disk_columns`); the algorithms never import the loaders, they only detect that
method. A streaming dataset gathers each mini-batch from those columns in a
:class:`Prefetcher` thread (numpy's fancy-index copies release the GIL, so reading the next
batches overlaps the gradient step), which also asks the kernel to start reading the batches
after those (``MADV_WILLNEED``) so that a cold page cache is read in parallel.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import weakref
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from tianshou.data import ReplayBuffer

from tianshou_offline.algorithms.sampling import OfflineDataset, SampleStream, TBatch

log = logging.getLogger(__name__)

__all__ = [
    "BatchSource",
    "PrefetchedBatches",
    "Prefetcher",
    "RowSource",
    "StreamingDataset",
    "check_streaming_buffer",
    "disk_columns",
    "stored_obs_next",
]


@runtime_checkable
class RowSource(Protocol):
    """A column that is not in memory: ``shape``/``dtype`` and ``take(rows)``, which returns
    the rows at an integer array of any shape (``(*rows.shape, *shape[1:])``)."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> np.dtype[Any]: ...

    def take(self, rows: Any) -> np.ndarray: ...


def disk_columns(buffer: ReplayBuffer) -> Mapping[str, RowSource] | None:
    """The columns ``buffer`` leaves on disk (its ``disk_columns()``), or None for a buffer
    held in memory."""
    method = getattr(buffer, "disk_columns", None)
    if not callable(method):
        return None
    cols = method()
    if not isinstance(cols, Mapping) or not isinstance(cols.get("obs"), RowSource):
        return None
    return cols


class BatchSource(Protocol):
    """What a :class:`Prefetcher` gathers from: a read-ahead hint and the numpy arrays of a
    mini-batch at positions ``pos`` (any thread)."""

    def will_need(self, pos: np.ndarray) -> None: ...

    def gather_numpy(self, pos: np.ndarray) -> dict[str, np.ndarray]: ...


class Prefetcher(threading.Thread):
    """Draws positions (``draw()``: the next batch's ``(batch_size,)`` int64 positions, called
    in this thread only), gathers batches into a queue, ``depth`` ahead, in the order drawn;
    holds its dataset weakly (it stops when the dataset is gone or :meth:`stop` is called).
    Errors are handed to the consumer."""

    def __init__(
        self,
        dataset: BatchSource,
        batch_size: int,
        draw: Callable[[], np.ndarray],
        depth: int,
    ) -> None:
        super().__init__(name="tianshou-offline-prefetch", daemon=True)
        self.batch_size = batch_size
        self._ref = weakref.ref(dataset)
        self._draw = draw
        self._queue: queue.Queue[dict[str, np.ndarray] | BaseException] = queue.Queue(depth)
        self._ahead = depth
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def get(self) -> dict[str, np.ndarray]:
        while True:
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                if not self.is_alive():
                    raise RuntimeError("the prefetch thread stopped") from None
                continue
            if isinstance(item, BaseException):
                raise item
            return item

    def run(self) -> None:
        pending: deque[np.ndarray] = deque()
        try:
            while not self._stop_event.is_set():
                ds = self._ref()
                if ds is None:
                    return
                while len(pending) <= self._ahead:
                    pos = self._draw()
                    ds.will_need(pos)
                    pending.append(pos)
                batch = ds.gather_numpy(pending.popleft())
                del ds
                while not self._stop_event.is_set():
                    try:
                        self._queue.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        if self._ref() is None:
                            return
        except BaseException as e:  # handed to the consumer, which raises it
            self._queue.put(e)


class PrefetchedBatches(ABC):
    """The prefetch thread of a streaming dataset (a mixin): :meth:`next_batch` returns the
    next batch a :class:`Prefetcher` gathered, starting one when none runs for this batch
    size; :meth:`close` stops it (also when the dataset is garbage-collected)."""

    _worker: Prefetcher | None = None
    _prefetch: int = 4
    _next_k: int = -1  # the stream's batch number the running thread delivers next

    @abstractmethod
    def will_need(self, pos: np.ndarray) -> None:
        """Read-ahead hint for the rows :meth:`gather_numpy` of ``pos`` reads."""

    @abstractmethod
    def gather_numpy(self, pos: np.ndarray) -> dict[str, np.ndarray]:
        """The batch at positions ``pos`` as numpy arrays (in any thread)."""

    def next_batch(
        self,
        batch_size: int,
        new_draw: Callable[[], Callable[[], np.ndarray]],
        *,
        restart: bool = False,
    ) -> dict[str, np.ndarray]:
        """The next prefetched batch; a new thread drawing positions with ``new_draw()`` when
        none runs, it runs for another batch size, it stopped, or ``restart``."""
        worker = self._worker
        if restart or worker is None or worker.batch_size != batch_size or not worker.is_alive():
            self.close()
            worker = Prefetcher(self, batch_size, new_draw(), self._prefetch)
            worker.start()
            self._worker = worker
        return worker.get()

    def next_stream_batch(
        self, stream: SampleStream, n: int, batch_size: int
    ) -> dict[str, np.ndarray]:
        """The next batch of ``stream`` (positions in ``0..n-1``), gathered by the prefetch
        thread, which draws ahead along the stream's batch numbers (a thread drawing from
        other numbers — a stream loaded from a checkpoint — is replaced); counts the batch."""

        def new_draw() -> Callable[[], np.ndarray]:
            stream.start()
            numbers = itertools.count(stream.count)
            generator = torch.Generator()
            return lambda: stream.positions_at(next(numbers), n, batch_size, generator).numpy()

        batch = self.next_batch(batch_size, new_draw, restart=self._next_k != stream.count)
        stream.count += 1
        self._next_k = stream.count
        return batch

    def close(self) -> None:
        """Stop the prefetch thread (a later batch starts a new one)."""
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    def __del__(self) -> None:
        self.close()


class StreamingDataset(PrefetchedBatches, OfflineDataset[TBatch]):
    """What the continuous and the discrete streaming datasets share: ``_n`` transitions,
    mini-batch positions from :attr:`stream`, batches gathered as numpy arrays
    (:meth:`gather_numpy`, in any thread) and moved to the device by :meth:`_to_device`;
    Tianshou's ``obs_next`` rows (:meth:`bootstrap_next_rows`) from the buffer's ``done``
    flags (``_done``) and its row count (``_rows_total``)."""

    _n: int
    _done: np.ndarray
    _rows_total: int
    stream: SampleStream
    last_positions: np.ndarray | None = None
    """The positions of the last batch :meth:`sample` returned (``(B,)`` int64)."""

    def __len__(self) -> int:
        return self._n

    @abstractmethod
    def _to_device(self, b: dict[str, np.ndarray]) -> TBatch:
        """A :meth:`gather_numpy` batch as a mini-batch on the device."""

    def gather(self, pos: torch.Tensor) -> TBatch:
        """The transitions at positions ``pos`` (``(B,)`` int64), gathered now."""
        return self._to_device(self.gather_numpy(pos.detach().cpu().numpy().astype(np.int64)))

    def sample(self, batch_size: int) -> TBatch:
        """The stream's next mini-batch (uniform, with replacement), from the prefetch thread."""
        batch = self.next_stream_batch(self.stream, self._n, batch_size)
        self.last_positions = batch["pos"]
        return self._to_device(batch)

    def bootstrap_next_rows(self, last: np.ndarray) -> np.ndarray:
        """Tianshou's ``obs_next`` of the storage rows ``last`` (for a buffer that stores
        none): the next row's observation, the row's own at an episode end — int64 rows."""
        end = self._done[last] | (last == self._rows_total - 1)
        rows: np.ndarray = last + (~end).astype(np.int64)
        return rows

    def _log_built(self, prefetch: int) -> None:
        log.info(
            "streaming %d transitions from disk (%.1f MB of tables in RAM, %d batches prefetched)",
            self._n,
            self.nbytes / 1e6,
            prefetch,
        )


def check_streaming_buffer(buffer: ReplayBuffer, n_step: int, what: str) -> Mapping[str, RowSource]:
    """The disk columns of ``buffer`` for the streaming dataset ``what``.

    :raises ValueError: not a disk-backed buffer; ``n_step`` out of ``1..255``.
    """
    cols = disk_columns(buffer)
    if cols is None:
        raise ValueError(f"{what} needs a disk-backed buffer (disk_columns())")
    if not 1 <= n_step <= 255:
        raise ValueError(f"n_step={n_step}: expected 1..255")
    return cols


def stored_obs_next(buffer: ReplayBuffer, cols: Mapping[str, RowSource]) -> RowSource | None:
    """The buffer's stored ``obs_next`` column, or None where it keeps none (then a
    transition's ``obs_next`` is the next row's ``obs``)."""
    obs_next = cols.get("obs_next")
    if obs_next is not None and not bool(getattr(buffer, "_save_obs_next", False)):
        return None
    return obs_next
