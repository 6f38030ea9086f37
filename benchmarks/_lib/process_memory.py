"""This process's resident memory, read from ``/proc/self/status`` (Linux): a field's value
and a sampler of the anonymous and file-backed resident sizes' peaks."""

from __future__ import annotations

import threading
import time


def status_kib(field: str) -> int:
    """``field`` of ``/proc/self/status`` in KiB (``RssAnon``, ``VmHWM``); 0 when absent."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class AnonPeak:
    """Samples ``RssAnon`` / ``RssFile`` of this process every 50 ms (``peak`` since ``reset``)."""

    def __init__(self) -> None:
        self.peak_anon = 0
        self.peak_file = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_anon = max(self.peak_anon, status_kib("RssAnon") * 1024)
            self.peak_file = max(self.peak_file, status_kib("RssFile") * 1024)
            time.sleep(0.05)

    def reset(self) -> None:
        self.peak_anon = status_kib("RssAnon") * 1024
        self.peak_file = status_kib("RssFile") * 1024

    def stop(self) -> None:
        self._stop.set()
