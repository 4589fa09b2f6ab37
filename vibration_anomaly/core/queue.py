"""The latest-batch queue: backpressure by dropping, never by replaying.

When the consumer falls behind (a stalled inference, a supervisor holding the
detector inactive, a firmware burst), batches pile up. This queue keeps at
most ``bound`` of them, drops the oldest first, and hands out only the newest
batch that is still fresh; everything older is dropped at that moment. Every
drop is counted, in batches and in frames, so the loss is visible.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from vibration_anomaly.core.events import DROP_CLEARED, DROP_OVERFLOW, DROP_STALE, DROP_SUPERSEDED
from vibration_anomaly.core.window import Batch


@dataclass
class QueueStats:
    put: int = 0
    taken: int = 0
    dropped_overflow: int = 0  # batches pushed out by the bound
    dropped_superseded: int = 0  # older batches dropped when a newer one was taken
    dropped_cleared: int = 0  # batches dropped by clear() (cleanup / shutdown)
    refused_stale: int = 0  # batches refused because they ended before the freshness limit
    dropped_frames: int = 0  # samples inside all the batches above
    max_depth: int = 0


class LatestBatchQueue:
    """Thread-safe bounded queue that only ever yields its newest fresh batch."""

    def __init__(self, bound: int, on_drop: Callable[[str, Batch], None] | None = None) -> None:
        if bound < 1:
            raise ValueError(f"latest-batch queue: bound must be >= 1, got {bound}")
        self.bound = int(bound)
        self._q: deque[Batch] = deque()
        self._lock = threading.Lock()
        self._on_drop = on_drop
        self.stats = QueueStats()

    def __len__(self) -> int:
        with self._lock:
            return len(self._q)

    def put(self, batch: Batch) -> None:
        dropped: list[Batch] = []
        with self._lock:
            self._q.append(batch)
            self.stats.put += 1
            while len(self._q) > self.bound:
                old = self._q.popleft()
                self.stats.dropped_overflow += 1
                self.stats.dropped_frames += old.n_samples
                dropped.append(old)
            self.stats.max_depth = max(self.stats.max_depth, len(self._q))
        for b in dropped:
            self._notify(DROP_OVERFLOW, b)

    def take_latest(self, fresh_after: float) -> Batch | None:
        """Return the newest batch whose last sample is at or after ``fresh_after``; drop all others.

        ``fresh_after`` is the start of the current duty period's sample
        window: a batch ending before it belongs to an earlier period and is
        refused, so stale data is never inferred.
        """
        dropped: list[tuple[str, Batch]] = []
        with self._lock:
            items = list(self._q)
            self._q.clear()
        chosen: Batch | None = None
        if items and items[-1].t1 >= fresh_after:
            chosen = items.pop()
        for b in items:
            reason = DROP_STALE if b.t1 < fresh_after else DROP_SUPERSEDED
            dropped.append((reason, b))
        with self._lock:
            for reason, b in dropped:
                if reason == DROP_STALE:
                    self.stats.refused_stale += 1
                else:
                    self.stats.dropped_superseded += 1
                self.stats.dropped_frames += b.n_samples
            if chosen is not None:
                self.stats.taken += 1
        for reason, b in dropped:
            self._notify(reason, b)
        return chosen

    def clear(self) -> int:
        """Drop everything (e.g. on cleanup); returns how many batches were dropped."""
        with self._lock:
            items = list(self._q)
            self._q.clear()
            self.stats.dropped_cleared += len(items)
            self.stats.dropped_frames += sum(b.n_samples for b in items)
        for b in items:
            self._notify(DROP_CLEARED, b)
        return len(items)

    def _notify(self, reason: str, batch: Batch) -> None:
        if self._on_drop is not None:
            self._on_drop(reason, batch)
