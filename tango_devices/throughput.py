"""Points written per second by a session's scans, over a sliding window.

Owned by one greenlet (the device's monitor), which samples the scans it lists; read
from any greenlet of the same hub.
"""

from __future__ import annotations

import time
from collections import deque

from nexus_writer_service.subscribers import ScanRecord

__all__ = ["PointRate"]


class PointRate:
    """``sample(records)`` every so often; ``per_second`` is the rate over ``window``
    seconds, summed over the scans (finished and purged ones included)."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.per_second = 0.0
        self._samples: deque[tuple[float, int]] = deque()
        self._finished_points = 0
        self._counted: set[str] = set()

    def sample(self, records: list[ScanRecord]) -> None:
        now = time.monotonic()
        live = 0
        for record in records:
            done = record.writer.progress[0]
            if not record.writer.done():
                live += done
            elif record.key not in self._counted:
                self._counted.add(record.key)
                self._finished_points += done
        self._counted &= {record.key for record in records}
        total = self._finished_points + live
        samples = self._samples
        samples.append((now, total))
        while now - samples[0][0] > self.window:
            samples.popleft()
        first_time, first_total = samples[0]
        self.per_second = (total - first_total) / (now - first_time) if now > first_time else 0.0
